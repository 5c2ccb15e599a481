package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// TestTapEndToEnd: posd with a contactless pinpad-sim (over a pty) and acquirer-sim
// behind a wire tap. A tap under the CVM limit goes with field 22 071 and the card's
// field 55 (cryptogram 9F26, form factor 9F6E); a tap above the contactless limit is
// refused by the pad (087) and the sale continues by chip (051).
func TestTapEndToEnd(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	script, _ := json.Marshal(padsim.Script{Events: []padsim.Event{
		{Tap: &padsim.Tap{Chip: padsim.Chip{PAN: "4761739001010010"}, FormFactor: "20700000"}},
		{Tap: &padsim.Tap{Chip: padsim.Chip{PAN: "4761739001010010"}}},
		{Insert: &padsim.Chip{PAN: "4761739001010010"}},
	}})
	scriptPath := filepath.Join(dir, "script.json")
	if err := os.WriteFile(scriptPath, script, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	pad := c.start(t, "pinpad-sim", "--port", pair.B, "--script", scriptPath, "--contactless", "--ctls-limit", "5000", "--ctls-cvm-limit", "3000")
	pad.waitFor(t, pair.B)
	_, addr := startAcquirer(t, c)
	tap, tapAddr := startTap(t, addr)
	cfg, sock := writeTestConfig(t, dir, pair.A, tapAddr)
	posd := c.start(t, "posd", "run", "--config", cfg)
	posd.waitFor(t, "posd ready")
	api := "--api=unix:" + sock

	code, out := c.run(t, "posctl", api, "sale", "--amount", "12.50")
	if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "CONTACTLESS") {
		t.Fatalf("tap sale: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "sale", "--amount", "60.00")
	if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "CHIP") {
		t.Fatalf("tap above the contactless limit: exit %d\n%s", code, out)
	}
	var modes []string
	var f55 []string
	wire := tap.bytes()
	for len(wire) >= 2 {
		n := int(binary.BigEndian.Uint16(wire))
		if len(wire) < 2+n {
			t.Fatalf("a frame of %d bytes is cut short", n)
		}
		m, err := iso8583.Unpack(iso8583.DefaultSpec(), wire[2:2+n])
		wire = wire[2+n:]
		if err != nil {
			t.Fatalf("posd sent a frame that does not unpack: %v", err)
		}
		if mti, _ := m.GetMTI(); mti != "0200" {
			continue
		}
		em, _ := m.GetString(22)
		b, _ := m.GetBytes(55)
		modes, f55 = append(modes, em), append(f55, strings.ToUpper(hex.EncodeToString(b)))
	}
	if len(modes) != 2 || modes[0] != "071" || modes[1] != "051" {
		t.Fatalf("field 22 of the 0200s: %v", modes)
	}
	if !strings.Contains(f55[0], "9F26") || !strings.Contains(f55[0], "9F6E0420700000") || !strings.Contains(f55[1], "9F26") {
		t.Errorf("field 55: %v", f55)
	}
	if !strings.Contains(pad.out.String(), "-> 087") {
		t.Errorf("the pad did not refuse the tap above the limit:\n%s", pad.out.String())
	}
}
