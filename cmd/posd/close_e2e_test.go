package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/posd-dev/posd/terminal/padsim"
)

// startCloseRig starts pinpad-sim with sales for n sales of the demo's approved card,
// acquirer-sim with extra flags, and posd with a cashier (uid 60001) in its roles.
func startCloseRig(t *testing.T, c *captured, n int, acqArgs ...string) (api string) {
	t.Helper()
	dir := t.TempDir()
	sale := demoSales()[0]
	var events []padsim.Event
	for range n {
		events = append(events, sale.events...)
	}
	pair := startPad(t, c, dir, events)
	acq := c.start(t, "acquirer-sim", append([]string{"--listen", "127.0.0.1:0"}, acqArgs...)...)
	line := acq.waitFor(t, "listening on ")
	addr := strings.Fields(strings.TrimSpace(line[strings.Index(line, "listening on ")+len("listening on "):]))[0]
	cfgPath, sock := writeTestConfig(t, dir, pair.A, addr)
	addCashier(t, cfgPath)
	posd := c.start(t, "posd", "run", "--config", cfgPath)
	posd.waitFor(t, "posd ready")
	shareDir(t, dir)
	return "--api=unix:" + sock
}

// TestCloseThroughBinaries: two sales, posctl totals shows them (a cashier may ask), a
// cashier may not close (403), the supervisor's posctl close balances (00), prints the
// totals and the audit head, and the next batch opens empty.
func TestCloseThroughBinaries(t *testing.T) {
	c := &captured{}
	api := startCloseRig(t, c, 2)
	amount := demoSales()[0].amount
	for range 2 {
		if code, out := c.run(t, "posctl", api, "sale", "--amount", amount); code != 0 {
			t.Fatalf("sale: exit %d\n%s", code, out)
		}
	}
	code, out := c.runAs(t, cashierUID, 0, "", "posctl", api, "totals")
	if code != 0 || !strings.Contains(out, "open batch 1") || !regexp.MustCompile(`sales +2 `).MatchString(out) || !strings.Contains(out, "Visa") {
		t.Errorf("posctl totals as a cashier: exit %d\n%s", code, out)
	}
	code, out = c.runAs(t, cashierUID, 0, "", "posctl", api, "close")
	if code != 1 || !strings.Contains(out, "403") {
		t.Errorf("posctl close as a cashier: exit %d, want 1 with HTTP 403\n%s", code, out)
	}
	code, out = c.runAs(t, supervisorUID, 0, "", "posctl", api, "close")
	if code != 0 || !strings.Contains(out, "batch 1 closed, host answered 00") || !strings.Contains(out, "in balance") ||
		!regexp.MustCompile(`sales +2 `).MatchString(out) || !regexp.MustCompile(`audit head \d+:`).MatchString(out) {
		t.Fatalf("posctl close as the supervisor: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "totals")
	if code != 0 || !strings.Contains(out, "open batch 2") || !strings.Contains(out, "no transactions") {
		t.Errorf("posctl totals after the close: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "close")
	if code != 0 || !strings.Contains(out, "batch 2 closed, host answered 00") {
		t.Errorf("closing the empty batch 2: exit %d\n%s", code, out)
	}
}

// TestCloseOutOfBalance: the host loses every second transaction; the close uploads the
// batch and reports the lost one by its STAN, amount and what differed.
func TestCloseOutOfBalance(t *testing.T) {
	c := &captured{}
	api := startCloseRig(t, c, 2, "--lose-every", "2")
	amount := demoSales()[0].amount
	for range 2 {
		if code, out := c.run(t, "posctl", api, "sale", "--amount", amount); code != 0 {
			t.Fatalf("sale: exit %d\n%s", code, out)
		}
	}
	code, out := c.run(t, "posctl", api, "close")
	if code != 0 || !strings.Contains(out, "batch 1 closed, host answered 00") || !strings.Contains(out, "out of balance: batch uploaded, reconciled; 1 difference(s)") ||
		!regexp.MustCompile(`stan \d{6}  E2E00001-\d{8}  sale 12\.50  476173\*{6}0010  missing at the host \(now uploaded\) \(host answered 25\)`).MatchString(out) {
		t.Fatalf("posctl close out of balance: exit %d\n%s\nall:\n%s", code, out, tail(c.all()))
	}
}
