package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSim runs the built `posd sim` (and its alias `posd demo --serve`) with the shipped
// sale script, waits for it to print the posctl commands, makes one sale with the built
// posctl on the socket it printed, and stops it with SIGINT: it must exit 0 and print no
// card data.
func TestSim(t *testing.T) {
	bin := binaries(t)
	for _, args := range [][]string{
		{"sim", "--dir", t.TempDir(), "--script", "../../examples/sale.json"},
		{"demo", "--serve", "--dir", filepath.Join(t.TempDir(), "new", "state")}, // --dir made if new
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var c captured
			p := c.start(t, "posd", args...)
			sockLine := regexp.MustCompile(`posctl --api (unix:\S+) sale --amount 12.50 --currency EUR`)
			var api string
			for deadline := time.Now().Add(60 * time.Second); api == ""; time.Sleep(50 * time.Millisecond) {
				if m := sockLine.FindStringSubmatch(p.out.String()); m != nil {
					api = m[1]
				}
				select {
				case err := <-p.done:
					p.done <- err
					t.Fatalf("posd sim exited early (%v):\n%s", err, p.out)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("posd sim printed no posctl commands within 60s:\n%s", p.out)
				}
			}
			for _, want := range []string{"posctl --api " + api + " status", "journal", "refund --amount 5.00 --original", "close", "supervisor"} {
				if !strings.Contains(p.out.String(), want) {
					t.Errorf("posd sim does not print %q", want)
				}
			}
			sale := exec.Command(filepath.Join(bin, "posctl"), "--api", api, "sale", "--amount", "12.50", "--currency", "EUR")
			out, err := sale.CombinedOutput()
			c.extra = append(c.extra, string(out))
			if err != nil || !strings.Contains(string(out), "result: Success") || !strings.Contains(string(out), "APPROVED") {
				t.Fatalf("posctl sale: %v\n%s\nposd sim:\n%s", err, out, p.out)
			}
			if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-p.done:
				p.done <- err
				if err != nil {
					t.Errorf("posd sim after SIGINT: %v\n%s", err, p.out)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("posd sim did not stop within 60s of SIGINT:\n%s", p.out)
			}
			assertNoCardData(t, c.all(), nil)
		})
	}
}
