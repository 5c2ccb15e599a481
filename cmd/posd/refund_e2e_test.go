package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/posd-dev/posd/terminal/padsim"
)

// TestRefundThroughBinaries: a cashier sells; the cashier's refund is refused with the role
// it needs; the supervisor's linked refund with the sale's card is approved and its receipt
// says REFUND; a refund above what remains and an unlinked refund (off by default) are
// refused NotAllowed with the reason, and nothing more reaches the pad or the acquirer.
func TestRefundThroughBinaries(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	sale := demoSales()[0]
	events := append(append([]padsim.Event{}, sale.events...), sale.events...)
	pair := startPad(t, c, dir, events)
	_, addr := startAcquirer(t, c)
	cfgPath, sock := writeTestConfig(t, dir, pair.A, addr)
	addCashier(t, cfgPath)
	posd := c.start(t, "posd", "run", "--config", cfgPath)
	posd.waitFor(t, "posd ready")
	shareDir(t, dir)
	api := "--api=unix:" + sock
	as := func(uid uint32, args ...string) (int, string) {
		t.Helper()
		return c.runAs(t, uid, 0, "", "posctl", append([]string{api}, args...)...)
	}

	code, out := as(cashierUID, "sale", "--amount", "12.50", "--sale-id", "TILL7")
	if code != 0 || !strings.Contains(out, "result: Success") {
		t.Fatalf("the cashier's sale: exit %d\n%s", code, out)
	}
	poi := regexp.MustCompile(`POI transaction: (\S+)`).FindStringSubmatch(out)
	if poi == nil {
		t.Fatalf("no POI transaction id in\n%s", out)
	}
	if code, out := as(cashierUID, "refund", "--amount", "5.00", "--original", poi[1]); code == 0 || !strings.Contains(out, "needs role") || !strings.Contains(out, "supervisor") {
		t.Errorf("the cashier's refund: exit %d\n%s", code, out)
	}
	code, out = as(supervisorUID, "refund", "--amount", "5.00", "--original", poi[1])
	if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "REFUND") || strings.Contains(out, " SALE ") {
		t.Fatalf("the supervisor's refund: exit %d\n%s", code, out)
	}
	code, out = as(supervisorUID, "refund", "--amount", "10.00", "--original", poi[1])
	if code == 0 || !strings.Contains(out, "NotAllowed") || !strings.Contains(out, "above what remains") {
		t.Errorf("a refund above what remains: exit %d\n%s", code, out)
	}
	code, out = as(supervisorUID, "refund", "--amount", "1.00", "--unlinked")
	if code == 0 || !strings.Contains(out, "NotAllowed") || !strings.Contains(out, "refund.unlinked") {
		t.Errorf("an unlinked refund: exit %d\n%s", code, out)
	}
	if code, out := as(supervisorUID, "refund", "--amount", "1.00"); code == 0 || !strings.Contains(out, "exactly one of") {
		t.Errorf("a refund naming neither: exit %d\n%s", code, out)
	}
}
