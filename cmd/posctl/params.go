package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const paramsUsage = `usage:
  posctl params install FILE   install a signed EMV parameter file (fwtool sign-params) into posd and the PIN pad
  posctl params status         the parameter file in use and the PIN pad's table version
`

type paramsStatus struct {
	Installed       bool   `json:"installed"`
	Acquirer        string `json:"acquirer"`
	Version         int64  `json:"version"`
	TableVersion    string `json:"table_version"`
	AIDs            int    `json:"aids"`
	CAPKs           int    `json:"capks"`
	Revoked         int    `json:"revoked"`
	PadTableVersion string `json:"pad_table_version"`
	PadError        string `json:"pad_error"`
}

func (s paramsStatus) write(w io.Writer) {
	if !s.Installed {
		fmt.Fprintln(w, "EMV parameters: none installed")
	} else {
		fmt.Fprintf(w, "EMV parameters: %s version %d (table version %s): %d AIDs, %d CA keys, %d revoked\n",
			s.Acquirer, s.Version, s.TableVersion, s.AIDs, s.CAPKs, s.Revoked)
	}
	if s.PadError != "" {
		fmt.Fprintf(w, "PIN pad: table version unknown: %s\n", s.PadError)
	} else {
		fmt.Fprintf(w, "PIN pad: table version %s\n", s.PadTableVersion)
	}
}

// params runs posctl params install FILE and posctl params status.
func (c *client) params(args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "status":
		var s paramsStatus
		if err := c.get("/v1/params", &s); err != nil {
			return err
		}
		s.write(stdout)
		return nil
	case len(args) == 2 && args[0] == "install":
		b, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		// The file goes as it is: its signature covers its bytes.
		req, err := http.NewRequest("POST", c.base+"/v1/params", bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		hc := *c.http
		hc.Timeout = 10 * time.Minute // a full table set takes tens of seconds at 19200 baud
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("posd is not answering at %s: %w", c.base, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			var e struct{ Error string }
			if json.Unmarshal(body, &e) == nil && e.Error != "" {
				return fmt.Errorf("params install: %s", e.Error)
			}
			return fmt.Errorf("params install: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		var s paramsStatus
		if err := json.Unmarshal(body, &s); err != nil {
			return fmt.Errorf("params install: unreadable answer: %w", err)
		}
		fmt.Fprintln(stdout, "installed")
		s.write(stdout)
		return nil
	}
	fmt.Fprint(stderr, paramsUsage)
	return errUsage
}
