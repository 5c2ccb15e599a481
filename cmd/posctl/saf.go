package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/posd-dev/posd/store"
)

// noteFlags adds --note and its deprecated alias --who to fs: free text that posd records
// after the caller's authenticated identity (never instead of it).
func noteFlags(fs *flag.FlagSet) *string {
	note := fs.String("note", "", "free text recorded after your identity in the audit (at most 64 characters)")
	fs.StringVar(note, "who", "", "deprecated: the old name of --note")
	return note
}

// pendingError is a dual-control request that posd answered 202: nothing was done yet.
type pendingError struct {
	Approval string
	Message  string
}

func (e *pendingError) Error() string { return e.Message }

func (e *pendingError) Is(target error) bool { return target == errPending }

// do sends an operator request and decodes the JSON answer into v. A 202 (dual control:
// waiting for a second person) is a *pendingError.
func (c *client) do(method, path string, body, v any) error {
	return c.doApproved(method, path, "", body, v)
}

// doApproved is do naming a pending dual-control approval ("" for none).
func (c *client) doApproved(method, path, approval string, body, v any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if approval != "" {
		req.Header.Set("Posd-Approval", approval)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("posd is not answering at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == http.StatusAccepted {
		var p pendingError
		if err := json.Unmarshal(b, &p); err != nil || p.Approval == "" {
			return fmt.Errorf("%s %s: HTTP 202 without an approval id: %s", method, path, strings.TrimSpace(string(b)))
		}
		return &p
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s", method, path, e.Error)
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s: unreadable answer: %w", path, err)
		}
	}
	return nil
}

// confirm asks on the terminal unless yes is set; stdin is the operator's answer.
func confirm(stdin io.Reader, stdout io.Writer, yes bool, question string) bool {
	if yes {
		return true
	}
	fmt.Fprintf(stdout, "%s [yes/no] ", question)
	line, _ := bufio.NewReader(stdin).ReadString('\n')
	return strings.TrimSpace(strings.ToLower(line)) == "yes"
}

func (c *client) saf(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: posctl saf list | flush | park ID | unpark ID | delete ID  [--note TEXT] [--reason TEXT] [--yes] [--approve ID]")
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("posctl saf "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	note := noteFlags(fs)
	approve := fs.String("approve", "", "saf delete: the pending approval id a first person got (dual control)")
	reason := fs.String("reason", "", "why (recorded)")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	var id string
	rest := args[1:]
	if sub == "park" || sub == "unpark" || sub == "delete" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "posctl saf %s: the queue id is required (see posctl saf list)\n", sub)
			return errUsage
		}
		id, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return errUsage
	}
	body := map[string]any{"note": *note, "reason": *reason, "confirm": true}
	switch sub {
	case "list":
		var items []store.ItemView
		if err := c.get("/v1/saf", &items); err != nil {
			return err
		}
		if len(items) == 0 {
			fmt.Fprintln(stdout, "the store-and-forward queue is empty")
			return nil
		}
		fmt.Fprintf(stdout, "%-5s %-8s %-6s %-7s %-8s %-19s %14s  %-20s %s\n", "ID", "KIND", "TXN", "STATE", "ATTEMPTS", "CARD", "AMOUNT", "NEXT", "NOTE")
		for _, it := range items {
			note := it.LastError
			if it.State == "parked" {
				note = "parked by " + it.ParkedBy + ": " + it.ParkReason
			}
			next := it.NextAttempt.Local().Format("2006-01-02 15:04:05")
			if it.NextAttempt.IsZero() {
				next = "now"
			}
			fmt.Fprintf(stdout, "%-5d %-8s %-6d %-7s %-8d %-19s %14s  %-20s %s\n", it.ID, it.Kind, it.TxnID, it.State, it.Attempts, it.MaskedPAN, formatAmount(it.AmountMinor, it.Currency), next, note)
		}
		return nil
	case "flush":
		var res map[string]any
		if err := c.do("POST", "/v1/saf/flush", body, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "flushed: %v sent, %v acknowledged, %v failed, %v parked\n", res["sent"], res["acked"], res["failed"], res["parked"])
		if e, ok := res["error"]; ok {
			return fmt.Errorf("flush stopped: %v", e)
		}
		return nil
	case "park", "delete":
		q := fmt.Sprintf("%s queue item %s? A parked item is not sent until unparked.", strings.ToUpper(sub[:1])+sub[1:], id)
		if sub == "delete" {
			q = fmt.Sprintf("Delete queue item %s for good? Only do this when the acquirer has confirmed it is settled.", id)
		}
		if !confirm(stdin, stdout, *yes, q) {
			return fmt.Errorf("not confirmed; nothing changed")
		}
		if *reason == "" {
			return fmt.Errorf("--reason is required for %s (it is recorded)", sub)
		}
		method, path := "POST", "/v1/saf/"+id+"/park"
		if sub == "delete" {
			method, path = "DELETE", "/v1/saf/"+id
		}
		if err := c.doApproved(method, path, *approve, body, nil); err != nil {
			var p *pendingError
			if errors.As(err, &p) {
				fmt.Fprintf(stdout, "approval %s: %s\nthe second person runs: posctl saf delete %s --approve %s --reason TEXT --yes\n", p.Approval, p.Message, id, p.Approval)
			}
			return err
		}
		fmt.Fprintf(stdout, "queue item %s %sd\n", id, strings.TrimSuffix(sub, "e")+"e")
		return nil
	case "unpark":
		if err := c.do("POST", "/v1/saf/"+id+"/unpark", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "queue item %s unparked; it is sent now\n", id)
		return nil
	}
	fmt.Fprintf(stderr, "posctl saf: unknown command %q\n", sub)
	return errUsage
}

func (c *client) storeCheck(w io.Writer) error {
	var rep struct {
		Records, Open, Queued, Parked, AuditEntries int
		Problems                                    []struct{ What, Do string }
	}
	if err := c.get("/v1/store/check", &rep); err != nil {
		return err
	}
	fmt.Fprintf(w, "journal: %d records (%d open); queue: %d (%d parked); audit chain: %d entries\n", rep.Records, rep.Open, rep.Queued, rep.Parked, rep.AuditEntries)
	if len(rep.Problems) == 0 {
		fmt.Fprintln(w, "store check: ok")
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n  what to do: %s\n", p.What, p.Do)
	}
	return fmt.Errorf("store check found %d problem(s)", len(rep.Problems))
}
