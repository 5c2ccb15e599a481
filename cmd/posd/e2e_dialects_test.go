package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// requestsSent reads the frames posd sent in dialect d (its framing, TPDU included) and
// returns the MTI of each request; every frame must unpack strictly in the dialect.
func requestsSent(t *testing.T, wire []byte, d *iso8583.Dialect) (mtis []string, msgs []*iso8583.Message) {
	t.Helper()
	r := bytes.NewReader(wire)
	for {
		body, err := d.Framer.ReadFrame(r)
		if errors.Is(err, io.EOF) {
			return mtis, msgs
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return mtis, msgs // a frame still on its way
			}
			t.Fatalf("posd sent a frame the dialect's framing does not read: %v", err)
		}
		m, err := iso8583.Unpack(d.Spec, body)
		if err != nil {
			t.Fatalf("posd sent a frame that does not unpack in the dialect: %v", err)
		}
		mti, _ := m.GetMTI()
		mtis, msgs = append(mtis, mti), append(msgs, m)
	}
}

// TestEndToEndDialects: for each shipped dialect of a network's layout, posd,
// pinpad-sim (over a pty) and acquirer-sim run the same dialect file. A chip sale
// (field 55 as the dialect's BER-TLV composite) and a swiped sale with a PIN are
// approved; the till voids the chip sale and its reversal reaches the acquirer. Every
// frame posd sent reads strictly in the dialect (TPDU included), and the acquirer's
// ledger shows the two approvals, the chip sale reversed.
func TestEndToEndDialects(t *testing.T) {
	for _, name := range []string{"bcd-tpdu", "ebcdic", "binary"} {
		t.Run(name, func(t *testing.T) {
			c := &captured{}
			dir := t.TempDir()
			dialectPath, err := filepath.Abs(filepath.Join("..", "..", "iso8583", "dialects", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			d, err := iso8583.LoadDialect(dialectPath)
			if err != nil {
				t.Fatal(err)
			}
			events := []padsim.Event{{Insert: &padsim.Chip{PAN: "4761739001010010"}}}
			events = append(events, demoSales()[0].events...) // swipe, PIN 1234
			pair, err := ptypair.Open()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pair.Close() })
			script, err := json.Marshal(padsim.Script{Events: events})
			if err != nil {
				t.Fatal(err)
			}
			scriptPath := filepath.Join(dir, "script.json")
			if err := os.WriteFile(scriptPath, script, 0o600); err != nil {
				t.Fatal(err)
			}
			pad := c.start(t, "pinpad-sim", "--port", pair.B, "--script", scriptPath)
			pad.waitFor(t, pair.B)
			acq := c.start(t, "acquirer-sim", "--listen", "127.0.0.1:0", "--dialect", dialectPath)
			line := acq.waitFor(t, "listening on ")
			addr := strings.Fields(line[strings.Index(line, "listening on ")+len("listening on "):])[0]
			tap, tapAddr := startTap(t, addr)

			cfgPath, sock := writeTestConfig(t, dir, pair.A, tapAddr)
			cfg, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			const old = `"dial_timeout": "2s"}`
			if !bytes.Contains(cfg, []byte(old)) {
				t.Fatalf("test config lacks %q", old)
			}
			cfg = bytes.Replace(cfg, []byte(old), []byte(`"dial_timeout": "2s", "dialect": "`+dialectPath+`"}`), 1)
			if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
				t.Fatal(err)
			}
			posd := c.start(t, "posd", "run", "--config", cfgPath)
			posd.waitFor(t, "posd ready")
			api := "--api=unix:" + sock

			code, out := c.run(t, "posctl", api, "sale", "--amount", "12.50")
			if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "CHIP") {
				t.Fatalf("chip sale: exit %d\n%s", code, out)
			}
			code, out = c.run(t, "posctl", api, "sale", "--amount", "30.00")
			if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "476173******0010") {
				t.Fatalf("swiped sale: exit %d\n%s", code, out)
			}
			code, out = c.run(t, "posctl", api, "void", "E2E00001-00000001")
			if code != 0 || !strings.Contains(out, "result: Success") {
				t.Fatalf("void: exit %d\n%s", code, out)
			}
			// The reversal is queued and sent by the store-and-forward drain: wait until it
			// has crossed the wire and the queue is empty.
			deadline := time.Now().Add(15 * time.Second)
			for {
				mtis, _ := requestsSent(t, tap.bytes(), d)
				_, list := c.run(t, "posctl", api, "saf", "list")
				if strings.Contains(strings.Join(mtis, " "), "0400") && !strings.Contains(list, "reversal") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the reversal did not go: requests %v, queue:\n%s", mtis, list)
				}
				time.Sleep(50 * time.Millisecond)
			}

			if code := posd.stop(t); code != 0 {
				t.Errorf("posd exited %d on SIGTERM:\n%s", code, posd.out.String())
			}
			if code := acq.stop(t); code != 0 {
				t.Errorf("acquirer-sim exited %d:\n%s", code, acq.out.String())
			}
			mtis, msgs := requestsSent(t, tap.bytes(), d)
			var sales, chip int
			for i, mti := range mtis {
				if mti != "0200" {
					continue
				}
				sales++
				if b, _ := msgs[i].GetBytes(55); len(b) > 0 {
					chip++
				}
			}
			if sales != 2 || chip != 1 || !strings.Contains(strings.Join(mtis, " "), "0400") {
				t.Errorf("requests on the wire %v: %d sales (%d with field 55), want 2 (1) and a reversal", mtis, sales, chip)
			}
			ledger := acq.out.String()
			if strings.Contains(ledger, "format error") || strings.Contains(ledger, " rc=30") {
				t.Errorf("the acquirer found a format error:\n%s", ledger)
			}
			var reversed, charged int
			for _, l := range strings.Split(ledger, "\n") {
				if !strings.Contains(l, "tid=E2E00001") || !strings.Contains(l, "approved=true") {
					continue
				}
				switch {
				case strings.Contains(l, "amount=1250") && strings.Contains(l, "reversed=true"):
					reversed++
				case strings.Contains(l, "amount=3000") && strings.Contains(l, "reversed=false"):
					charged++
				}
			}
			if reversed != 1 || charged != 1 {
				t.Errorf("ledger: %d reversed 12.50, %d charged 30.00; want 1 and 1:\n%s", reversed, charged, ledger)
			}
			assertNoCardData(t, c.all(), nil)
		})
	}
}
