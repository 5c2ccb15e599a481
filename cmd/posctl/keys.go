package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// keyStatus is one working key as GET /v1/keys shows it.
type keyStatus struct {
	ID         string `json:"id"`
	Generation uint64 `json:"generation"`
	KCV        string `json:"kcv"`
	Changed    string `json:"changed"`
	Alert      string `json:"alert"`
	AlertAt    string `json:"alert_at"`
	LastChange string `json:"last_change"`
}

// keys runs posctl keys status | rotate [mac|pin|data ...] (technician).
func (c *client) keys(args []string, stdout, stderr io.Writer) error {
	usage := func() error {
		fmt.Fprintln(stderr, "usage: posctl keys status | keys rotate [mac|pin|data ...] [--note TEXT]")
		return errUsage
	}
	if len(args) == 0 {
		return usage()
	}
	var out struct {
		Keys  map[string]keyStatus `json:"keys"`
		Error string               `json:"error"`
	}
	switch args[0] {
	case "status":
		if len(args) != 1 {
			return usage()
		}
		if err := c.get("/v1/keys", &out); err != nil {
			return err
		}
		printKeys(stdout, out.Keys)
		for _, k := range out.Keys {
			if k.Alert != "" {
				return errNotSuccess
			}
		}
		return nil
	case "rotate":
		fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		note := noteFlags(fs)
		// Keys first, flags after, or the other way round.
		var kinds []string
		rest := args[1:]
		for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			kinds, rest = append(kinds, rest[0]), rest[1:]
		}
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		kinds = append(kinds, fs.Args()...)
		for _, k := range kinds {
			if k != "mac" && k != "pin" && k != "data" {
				fmt.Fprintf(stderr, "posctl: keys rotate: %q is not mac, pin or data\n", k)
				return errUsage
			}
		}
		err := c.do("POST", "/v1/keys/rotate", map[string]any{"keys": kinds, "note": *note}, &out)
		if err != nil {
			// A 502 carries the keys' state beside the reason: fetch it to show the alert.
			var st struct {
				Keys map[string]keyStatus `json:"keys"`
			}
			if c.get("/v1/keys", &st) == nil {
				printKeys(stdout, st.Keys)
			}
			return errors.Join(errNotSuccess, err)
		}
		printKeys(stdout, out.Keys)
		return nil
	}
	return usage()
}

func printKeys(w io.Writer, keys map[string]keyStatus) {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, n := range names {
		k := keys[n]
		fmt.Fprintf(w, "%s key: %s (generation %d)", n, k.ID, k.Generation)
		if k.KCV != "" {
			fmt.Fprintf(w, ", KCV %s", k.KCV)
		}
		if k.Changed != "" {
			fmt.Fprintf(w, ", changed %s", k.Changed)
		}
		if k.LastChange != "" {
			fmt.Fprintf(w, ", took %s", k.LastChange)
		}
		fmt.Fprintln(w)
		if k.Alert != "" {
			fmt.Fprintf(w, "  ALERT (%s): %s\n", k.AlertAt, k.Alert)
		}
	}
}
