package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// startTap listens on loopback and relays each connection to target, teeing the
// terminal's side into the tap.
func startTap(t *testing.T, target string) (*syncBuffer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tap := &syncBuffer{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, io.TeeReader(c, tap)); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return tap, ln.Addr().String()
}

// pinBlocksSent reads the frames posd sent (2-byte length, the AES PIN dialect) and
// returns field 52 and 62 of each request that has them.
func pinBlocksSent(t *testing.T, wire []byte, d *iso8583.Dialect) (blocks [][]byte, ksns []string) {
	t.Helper()
	for len(wire) >= 2 {
		n := int(binary.BigEndian.Uint16(wire))
		if len(wire) < 2+n {
			t.Fatalf("a frame of %d bytes is cut short", n)
		}
		m, err := iso8583.Unpack(d.Spec, wire[2:2+n])
		if err != nil {
			t.Fatalf("posd sent a frame that does not unpack: %v", err)
		}
		wire = wire[2+n:]
		if b, _ := m.GetBytes(52); b != nil {
			k, _ := m.GetString(62)
			blocks, ksns = append(blocks, b), append(ksns, k)
		}
	}
	return blocks, ksns
}

// TestEndToEndAES: posd with an AES DUKPT PIN pad (pinpad-sim --dukpt aes128 over a pty)
// and an acquirer on the 16-byte field 52 dialect (acquirer-sim --dialect, over TCP): the
// right PIN is approved, a wrong one declined with 55, and the ISO 9564 format 4 blocks
// that crossed the wire (taken from the wire itself, since format 4 blocks carry random
// fill) appear nowhere else: not in any program's output (posd logs at debug, with the
// request trace) and not in the journal, in hex or raw, encrypted or clear.
func TestEndToEndAES(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	dialectPath, err := filepath.Abs(filepath.Join("..", "..", "iso8583", "dialects", "aes-pin.json"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := iso8583.LoadDialect(dialectPath)
	if err != nil {
		t.Fatal(err)
	}

	const t1, t2 = "B4761739001010010^DEMO/AES^3012106000000000000", "4761739001010010=30121060000000000"
	events := []padsim.Event{
		{Swipe: &padsim.Swipe{Track1: t1, Track2: t2}}, {PIN: "1234"},
		{Swipe: &padsim.Swipe{Track1: t1, Track2: t2}}, {PIN: "4321"},
	}
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	pad := c.start(t, "pinpad-sim", "--port", pair.B, "--script", writeScript(t, dir, events), "--dukpt", "aes128",
		"--state", filepath.Join(dir, "pad.state"))
	if line := pad.waitFor(t, pair.B); !strings.Contains(line, "AES-128 DUKPT") {
		t.Fatalf("pinpad-sim: %s", line)
	}
	acq := c.start(t, "acquirer-sim", "--listen", "127.0.0.1:0", "--dialect", dialectPath)
	line := acq.waitFor(t, "listening on ")
	addr := strings.Fields(line[strings.Index(line, "listening on ")+len("listening on "):])[0]
	tap, tapAddr := startTap(t, addr)

	cfgPath, sock := writeTestConfig(t, dir, pair.A, tapAddr)
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for _, r := range [][2]string{
		{`"response_timeout": "2s"}`, `"response_timeout": "2s", "dukpt": "aes"}`},
		{`"dial_timeout": "2s"}`, `"dial_timeout": "2s", "dialect": "` + dialectPath + `"}`},
		{`"version": 1,`, `"version": 1, "log": {"level": "debug"},`},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("test config lacks %q", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	posd := c.start(t, "posd", "run", "--config", cfgPath)
	posd.waitFor(t, "posd ready")
	api := "--api=unix:" + sock

	code, out := c.run(t, "posctl", api, "sale", "--amount", "12.50")
	if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "476173******0010") {
		t.Errorf("approved AES sale: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "sale", "--amount", "30.00")
	if code != 3 || !strings.Contains(out, "result: Failure (WrongPIN)") {
		t.Errorf("wrong PIN AES sale: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "journal")
	if code != 0 || !strings.Contains(out, "approved 00") || !strings.Contains(out, "declined 55") {
		t.Errorf("journal: exit %d\n%s", code, out)
	}
	if code := posd.stop(t); code != 0 {
		t.Errorf("posd exited %d on SIGTERM:\n%s", code, posd.out.String())
	}
	if code := acq.stop(t); code != 0 {
		t.Errorf("acquirer-sim exited %d", code)
	}
	if n := strings.Count(acq.out.String(), "tid=E2E00001 pan=476173******0010 amount=1250"); n < 1 {
		t.Errorf("acquirer ledger lacks the approval:\n%s", acq.out.String())
	}

	// What crossed the wire: two 16-byte blocks with 24-digit KSNs of the pad's key.
	blocks, ksns := pinBlocksSent(t, tap.bytes(), d)
	if len(blocks) != 2 {
		t.Fatalf("%d PIN blocks on the wire, want 2", len(blocks))
	}
	bdk, _ := hex.DecodeString("FEDCBA9876543210F1F1F1F1F1F1F1F1")
	var secrets []string
	var raws [][]byte
	for i, b := range blocks {
		if len(b) != 16 || len(ksns[i]) != 24 || !strings.HasPrefix(ksns[i], "FFFF9876543210E0") {
			t.Fatalf("request %d: %d-byte block, KSN %q", i+1, len(b), ksns[i])
		}
		k, _ := dukpt.ParseAESKSN(ksns[i])
		key, err := dukpt.AESWorkingKey(bdk, k, dukpt.UsagePINEncryption, dukpt.KeyAES128)
		if err != nil {
			t.Fatal(err)
		}
		field, _ := pinblock.DecryptFormat4(key, [16]byte(b), "4761739001010010")
		if pin, err := pinblock.Decode(pinblock.Format4, field[:], "4761739001010010"); err != nil || pin != []string{"1234", "4321"}[i] {
			t.Errorf("request %d: the block does not hold the PIN typed (%v)", i+1, err)
		}
		secrets = append(secrets, hex.EncodeToString(b), hex.EncodeToString(field[:]))
		raws = append(raws, b, field[:])
	}
	all := c.all()
	if !strings.Contains(all, "ISO 9564 format 4") || !strings.Contains(all, "[hidden]") {
		t.Errorf("posd's debug trace did not describe the requests (field 52 hidden):\n%s", posd.out.String())
	}
	assertNoCardData(t, all, secrets)
	for _, r := range raws {
		if bytes.Contains([]byte(all), r) {
			t.Error("an output holds a PIN block (raw bytes)")
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "posd.db*"))
	if len(files) == 0 {
		t.Fatal("no journal file")
	}
	for _, f := range files {
		db, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		assertNoCardData(t, string(db), secrets)
		for _, r := range raws {
			if bytes.Contains(db, r) {
				t.Errorf("%s holds a PIN block (raw bytes)", filepath.Base(f))
			}
		}
	}
}
