package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/padsim"
)

// The KBPK of REFERENCE.md's TR-31 version A example, used as the KEK: a public test key.
const kekHex = "89E88CF7931444F334BD7547FC3F380C"

var macByKey = regexp.MustCompile(`request MACs by key: (.*)`)

// TestEndToEndKeyChange: posd, pinpad-sim and acquirer-sim on the retail MAC dialect with
// working-key exchange. A sale under the loaded MAC key; posctl keys rotate mac; the next
// sale is MACed under the new key and verified at the sim under it; after a restart posd
// signs on and sells under the new key still (the key persisted in its key store, the
// generation in use in its state file). A change with a wrong KEK at posd leaves the key
// in use, with an alert.
func TestEndToEndKeyChange(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	dialect, err := filepath.Abs(filepath.Join("..", "..", "iso8583", "dialects", "mac-retail-keyx.json"))
	if err != nil {
		t.Fatal(err)
	}
	macFile, kekFile := filepath.Join(dir, "mac.key"), filepath.Join(dir, "kek.key")
	for f, v := range map[string]string{macFile: macKeyHex, kekFile: kekHex} {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keys := "kek kbpk TDES-2key " + strings.ToLower(kekHex) + "\nmac mac TDES-2key " + strings.ToLower(macKeyHex) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "data.key.keys"), []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	sale := demoSales()[0]
	var events []padsim.Event
	for range 3 {
		events = append(events, sale.events...)
	}
	pair := startPad(t, c, dir, events)
	acq := c.start(t, "acquirer-sim", "--listen", "127.0.0.1:0", "--dialect", dialect, "--mac-key-file", macFile, "--kek-file", kekFile)
	line := acq.waitFor(t, "listening on ")
	addr := strings.Fields(line[strings.Index(line, "listening on ")+len("listening on "):])[0]
	cfg, sock := writeTestConfig(t, dir, pair.A, addr)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), `"dial_timeout": "2s"}`, `"dial_timeout": "2s", "dialect": "`+dialect+`", "key_change": {"keys": ["mac"], "at_sign_on": false}}`, 1)
	s = strings.Replace(s, `"roles": {`, fmt.Sprintf(`"roles": {"technician": {"groups": ["%d"]}, `, os.Getgid()), 1)
	if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	api := "--api=unix:" + sock
	posd := c.start(t, "posd", "run", "--config", cfg)
	posd.waitFor(t, "posd ready")

	sell := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		code, out := c.run(t, "posctl", api, "sale", "--amount", "12.50")
		took := time.Since(start)
		if code != 0 || !strings.Contains(out, "APPROVED") {
			t.Fatalf("%s: exit %d\n%s\n%s", what, code, out, c.all())
		}
		return took
	}
	first := sell("sale under the loaded key")

	start := time.Now()
	code, out := c.run(t, "posctl", api, "keys", "rotate", "mac")
	rotate := time.Since(start)
	if code != 0 || !strings.Contains(out, "mac key: mac.g1 (generation 1)") {
		t.Fatalf("keys rotate: exit %d\n%s\n%s", code, out, c.all())
	}
	second := sell("sale under the new key")
	t.Logf("sale before the change %v, key change (two 0800 round trips and the import) %v, sale after %v", first, rotate, second)

	// A restart: the new key is still the one in use.
	posd.stop(t)
	posd = c.start(t, "posd", "run", "--config", cfg)
	posd.waitFor(t, "posd ready")
	if code, out := c.run(t, "posctl", api, "keys", "status"); code != 0 || !strings.Contains(out, "mac key: mac.g1 (generation 1)") {
		t.Fatalf("keys status after a restart: exit %d\n%s", code, out)
	}
	sell("sale after a restart")
	posd.stop(t)

	verified, failed, report := macCounts(t, acq)
	if failed != 0 {
		t.Fatalf("%d request MACs failed at the acquirer:\n%s", failed, report)
	}
	m := macByKey.FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no MAC counts by key:\n%s", report)
	}
	byKey := map[string]int{}
	for _, f := range strings.Fields(m[1]) {
		id, n, _ := strings.Cut(f, "=")
		byKey[id], _ = strconv.Atoi(n)
	}
	// Under "mac": sign-on, the first sale and both key-change 0800s. Under "mac.g1": the
	// second sale, the first sign-off, the second sign-on, the third sale, the last
	// sign-off.
	if byKey["mac"] < 4 || byKey["mac.g1"] < 5 || byKey["mac"]+byKey["mac.g1"] != verified {
		t.Fatalf("MACs verified by key %v (of %d):\n%s", byKey, verified, report)
	}
	if !strings.Contains(report, "key changes confirmed: 1") {
		t.Fatalf("the acquirer did not confirm one change:\n%s", report)
	}
}
