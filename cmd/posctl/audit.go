package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
)

// audit runs posctl audit verify: posd verifies its audit chain under its audit key
// (GET /v1/audit/verify) and posctl prints the result; an error when the chain is broken.
func (c *client) audit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: posctl audit verify [--head SEQ:MAC]")
		return errUsage
	}
	fs := flag.NewFlagSet("posctl audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	head := fs.String("head", "", "a chain head printed earlier (posctl status, a batch report): a cut tail is found against it")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	path := "/v1/audit/verify"
	if *head != "" {
		path += "?head=" + url.QueryEscape(*head)
	}
	var v struct {
		OK                     bool
		Mode                   string
		Links                  uint64
		Keyed, Unkeyed, Legacy int
		Records, Items         int
		PreChain               int    `json:"pre_chain"`
		HeadSeq                uint64 `json:"head_seq"`
		HeadMAC                string `json:"head_mac"`
		BrokenSeq              uint64 `json:"broken_seq"`
		Broken                 string
		Problems               int
	}
	if err := c.get(path, &v); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit chain: %d links (%d keyed, %d unkeyed, %d of an older release's chain); head %d:%.16s; %s\n",
		v.Links, v.Keyed, v.Unkeyed, v.Legacy, v.HeadSeq, v.HeadMAC, v.Mode)
	fmt.Fprintf(stdout, "checked against it: %d journal records, %d queued items", v.Records, v.Items)
	if v.PreChain > 0 {
		fmt.Fprintf(stdout, " (%d from before the chain began, not covered)", v.PreChain)
	}
	fmt.Fprintln(stdout)
	if !v.OK {
		fmt.Fprintf(stdout, "BROKEN at link %d: %s (%d problem(s) in all)\n", v.BrokenSeq, v.Broken, v.Problems)
		return errors.New("audit verify: the chain is broken: keep the store file as evidence and report it as a security incident")
	}
	fmt.Fprintln(stdout, "audit verify: ok")
	return nil
}
