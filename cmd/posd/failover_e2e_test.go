package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/padsim"
)

// TestFailoverEndToEnd runs posd against two acquirer-sim processes, a primary and a
// backup. A sale goes to the primary; the primary then hangs (SIGSTOP) with the next sale
// in its socket: that sale ends outcome-unknown when the link is declared dead and is
// reversed, not sent to the backup; the next sale approves at the backup. The primary
// comes back (SIGCONT): it books the hung sale late and gets its reversal; after
// primary_retry the sales return to it. At the end the ledgers show no sale at both hosts,
// no copy booked twice, and the hung sale reversed at the primary.
func TestFailoverEndToEnd(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	approve := demoSales()[0].events
	var events []padsim.Event
	for range 4 {
		events = append(events, approve...)
	}
	pair := startPad(t, c, dir, events)
	primary, paddr := startAcquirer(t, c)
	backup, baddr := startAcquirer(t, c)
	cfg, sock := writeTestConfig(t, dir, pair.A, paddr)
	editFile(t, cfg, fmt.Sprintf(`"address": %q, "response_timeout": "5s"`, paddr),
		fmt.Sprintf(`"addresses": [%q, %q], "primary_retry": "3s", "response_timeout": "4s", "dead_link_timeout": "1s", "reversal_wait": "2s"`, paddr, baddr))
	editFile(t, cfg, `"store": {`, `"saf": {"min_backoff": "100ms", "max_backoff": "300ms"}, "store": {`)
	posd := c.start(t, "posd", "run", "--config", cfg)
	posd.waitFor(t, "posd ready")
	api := "--api=unix:" + sock
	sale := func(amount string) (int, string) {
		t.Helper()
		return c.run(t, "posctl", api, "sale", "--amount", amount)
	}

	if code, out := sale("11.00"); code != 0 || !strings.Contains(out, "result: Success") {
		t.Fatalf("sale on the primary: exit %d\n%s", code, out)
	}
	// The primary hangs with the next sale written to it.
	if err := primary.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if code, out := sale("12.00"); code == 0 || !strings.Contains(out, "reversed") {
		t.Fatalf("sale in flight when the primary hung: exit %d\n%s", code, out)
	}
	if code, out := sale("13.00"); code != 0 || !strings.Contains(out, "result: Success") {
		t.Fatalf("sale after the primary hung: exit %d\n%s\n%s", code, out, posd.out.String())
	}
	posd.waitFor(t, "acquirer host switched: the next transactions go to "+baddr)
	// The primary comes back: the reversal reaches it.
	if err := primary.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	posd.waitFor(t, "host="+paddr) // the reversal acknowledged by the primary
	time.Sleep(3 * time.Second)    // primary_retry, on posd's real clock
	if code, out := sale("14.00"); code != 0 || !strings.Contains(out, "result: Success") {
		t.Fatalf("sale after primary_retry: exit %d\n%s", code, out)
	}
	posd.waitFor(t, "acquirer host switched: the next transactions go to "+paddr)

	if code := primary.stop(t); code != 0 {
		t.Errorf("primary exited %d", code)
	}
	if code := backup.stop(t); code != 0 {
		t.Errorf("backup exited %d", code)
	}
	p, b := simCharges(t, primary.out.String()), simCharges(t, backup.out.String())
	want := []struct {
		host     map[int]simCharge
		name     string
		amount   int
		reversed bool
	}{{p, "primary", 1100, false}, {p, "primary", 1200, true}, {b, "backup", 1300, false}, {p, "primary", 1400, false}}
	for _, w := range want {
		var found []simCharge
		for _, ch := range w.host {
			if ch.amount == w.amount {
				found = append(found, ch)
			}
		}
		if len(found) != 1 || !found[0].approved || found[0].reversed != w.reversed || found[0].times != 1 {
			t.Errorf("%d at the %s: %+v, want one copy, approved, reversed %t", w.amount, w.name, found, w.reversed)
		}
	}
	for stan, ch := range b {
		if _, ok := p[stan]; ok {
			t.Errorf("STAN %d at both hosts: %+v", stan, ch)
		}
	}
	if t.Failed() {
		t.Logf("primary:\n%s\nbackup:\n%s\nposd:\n%s", primary.out.String(), backup.out.String(), posd.out.String())
	}
}

// simCharge is one line of acquirer-sim's list of transactions.
type simCharge struct {
	amount, times, reversals int
	approved, reversed       bool
}

var simChargeLine = regexp.MustCompile(`stan=(\d+) .* amount=(\d+) .* approved=(true|false) reversed=(true|false) times=(\d+) reversals=(\d+)`)

// simCharges reads the transactions acquirer-sim printed at exit, by STAN.
func simCharges(t *testing.T, out string) map[int]simCharge {
	t.Helper()
	m := make(map[int]simCharge)
	for _, l := range strings.Split(out, "\n") {
		g := simChargeLine.FindStringSubmatch(l)
		if g == nil {
			continue
		}
		var stan int
		var ch simCharge
		fmt.Sscan(g[1], &stan)
		fmt.Sscan(g[2], &ch.amount)
		fmt.Sscan(g[5], &ch.times)
		fmt.Sscan(g[6], &ch.reversals)
		ch.approved, ch.reversed = g[3] == "true", g[4] == "true"
		m[stan] = ch
	}
	return m
}

// editFile replaces old (which must be there) with new in the file at path.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}
