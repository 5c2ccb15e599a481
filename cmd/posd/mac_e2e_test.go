package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/posd-dev/posd/terminal/padsim"
)

// The ISO 9797-1 B.4 / X9.19 example key: a public test key.
const macKeyHex = "0123456789ABCDEFFEDCBA9876543210"

// startMACRig starts pinpad-sim (one approved swipe sale), acquirer-sim on the retail MAC
// dialect with the MAC key in a file, and posd on the same dialect with the same key in its
// soft key store ("mac" in key_file + ".keys", as posd key import writes it).
func startMACRig(t *testing.T, c *captured, tamper bool) (acq, posd *proc, api string) {
	t.Helper()
	dir := t.TempDir()
	dialect, err := filepath.Abs(filepath.Join("..", "..", "iso8583", "dialects", "mac-retail.json"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "mac.key")
	if err := os.WriteFile(keyFile, []byte(macKeyHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The data key file itself is created by posd at its first start.
	if err := os.WriteFile(filepath.Join(dir, "data.key.keys"), []byte("mac mac TDES-2key "+strings.ToLower(macKeyHex)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pair := startPad(t, c, dir, []padsim.Event(demoSales()[0].events))
	args := []string{"--listen", "127.0.0.1:0", "--dialect", dialect, "--mac-key-file", keyFile}
	if tamper {
		args = append(args, "--tamper-mac")
	}
	acq = c.start(t, "acquirer-sim", args...)
	line := acq.waitFor(t, "listening on ")
	addr := strings.Fields(line[strings.Index(line, "listening on ")+len("listening on "):])[0]
	cfg, sock := writeTestConfig(t, dir, pair.A, addr)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	withDialect := strings.Replace(string(b), `"dial_timeout": "2s"}`, `"dial_timeout": "2s", "dialect": "`+dialect+`"}`, 1)
	if withDialect == string(b) {
		t.Fatal("test config has no acquirer dial_timeout to add the dialect after")
	}
	if err := os.WriteFile(cfg, []byte(withDialect), 0o600); err != nil {
		t.Fatal(err)
	}
	posd = c.start(t, "posd", "run", "--config", cfg)
	posd.waitFor(t, "posd ready")
	return acq, posd, "--api=unix:" + sock
}

var macCount = regexp.MustCompile(`request MACs: (\d+) verified, (\d+) failed`)

// macCounts stops the acquirer and returns what it verified and failed.
func macCounts(t *testing.T, acq *proc) (verified, failed int, out string) {
	t.Helper()
	if code := acq.stop(t); code != 0 {
		t.Errorf("acquirer-sim exited %d", code)
	}
	out = acq.out.String()
	m := macCount.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("acquirer-sim reported no MAC counts:\n%s", out)
	}
	verified, _ = strconv.Atoi(m[1])
	failed, _ = strconv.Atoi(m[2])
	return verified, failed, out
}

// TestEndToEndMAC: posd, pinpad-sim and acquirer-sim on the retail MAC dialect with the
// same key: the sale is approved and every request (sign-on, sale) verified at the host.
func TestEndToEndMAC(t *testing.T) {
	c := &captured{}
	acq, posd, api := startMACRig(t, c, false)
	code, out := c.run(t, "posctl", api, "sale", "--amount", "12.50")
	if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "APPROVED") {
		t.Fatalf("sale: exit %d\n%s\n%s", code, out, c.all())
	}
	posd.stop(t) // signs off: a third MACed request
	verified, failed, ledger := macCounts(t, acq)
	if verified < 3 || failed != 0 {
		t.Fatalf("acquirer verified %d request MACs, %d failed; want sign-on, sale and sign-off verified, none failed:\n%s", verified, failed, ledger)
	}
	if !strings.Contains(ledger, "amount=1250") || !strings.Contains(ledger, "approved=true reversed=false") {
		t.Fatalf("the sale is not charged at the acquirer:\n%s", ledger)
	}
}

// TestEndToEndMACTampered: the acquirer approves but corrupts its answer's MAC. posd must
// not approve on an unverified answer: the sale ends outcome-unknown, the reason is logged,
// and the reversal (itself MACed and verified) undoes the charge at the acquirer.
func TestEndToEndMACTampered(t *testing.T) {
	c := &captured{}
	acq, posd, api := startMACRig(t, c, true)
	code, out := c.run(t, "posctl", api, "sale", "--amount", "12.50")
	if code == 0 || strings.Contains(out, "result: Success") || strings.Contains(out, "APPROVED") {
		t.Fatalf("sale on a tampered answer: exit %d\n%s", code, out)
	}
	acq.waitFor(t, "0410") // the reversal's answer
	posd.waitFor(t, "MAC does not verify")
	verified, failed, ledger := macCounts(t, acq)
	if failed != 0 || verified < 3 {
		t.Fatalf("acquirer verified %d request MACs, %d failed; want sign-on, sale and reversal verified:\n%s", verified, failed, ledger)
	}
	if !strings.Contains(ledger, "approved=true reversed=true") || !strings.Contains(ledger, "standing charges: 0") {
		t.Fatalf("the tampered sale was not reversed at the acquirer:\n%s", ledger)
	}
	posd.stop(t)
}
