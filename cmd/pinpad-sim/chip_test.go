package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/emv"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// The simulator's main in-process: a chip card with an online PIN, the
// pad's tables in another currency, and an unplug that closes and reopens
// the port.
func TestChipAndUnplugInProcess(t *testing.T) {
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	script := writeScript(t, `{"events":[
		{"insert":{"pan":"`+pan+`","online_pin":true}},{"pin":"1234"},{"delay":"1ms"},
		{"fault":{"kind":"unplug","delay":"500ms"}},
		{"swipe":{"track2":"`+track2+`"}}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	var stderr lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--port", pair.B, "--script", script, "--currency", "986", "--country", "076", "--serial", "SIM-42"}, out, &stderr)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "listening on"); {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line; stderr %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := abecs.Dial(pair.A, 0, &abecs.Options{ACKTimeout: 150 * time.Millisecond, ResponseTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bg := context.Background()
	info, err := c.Info(bg)
	if err != nil || info.Serial != "SIM-42" {
		t.Fatalf("Info %+v %v", info, err)
	}
	cd, err := c.GetCard(bg, abecs.CardRequest{AmountMinor: 100, Timeout: 2 * time.Second})
	if err != nil || !cd.Chip() {
		t.Fatalf("GetCard %v %v", cd, err)
	}
	res, err := c.GoOnChip(bg, abecs.GoChipRequest{AmountMinor: 100, Tags: emv.GoOnChipTags(), Timeout: 2 * time.Second})
	if err != nil || !res.OnlinePIN {
		t.Fatalf("GoOnChip %v %v", res, err)
	}
	d, _ := emv.Parse(res.EMVData)
	if v, _ := d.Value("5F2A"); len(v) != 2 || v[0] != 0x09 || v[1] != 0x86 {
		t.Fatalf("currency %X", v)
	}
	if fin, err := c.FinishChip(bg, abecs.FinishChipRequest{HostResponded: true, ResponseCode: "00", Tags: emv.FinishChipTags()}); err != nil || !fin.Approved {
		t.Fatalf("FinishChip %v %v", fin, err)
	}
	if err := c.Finish(bg, "OK"); !errors.Is(err, abecs.ErrNoACK) {
		t.Fatalf("Finish while unplugged: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	if cd, err := c.GetCard(bg, abecs.CardRequest{Timeout: 2 * time.Second}); err != nil || cd.Track2() != track2 {
		t.Fatalf("GetCard after the pad came back: %v", err)
	}
	cancel()
	if got := <-code; got != 0 {
		t.Fatalf("exit %d: %s", got, stderr.String())
	}
	text := out.String()
	for _, want := range []string{"insert chip 476173******0010 -> 000", "online PIN: pin -> KSN", "fault unplug", "port reopened", "stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, pan) {
		t.Errorf("output shows the PAN:\n%s", text)
	}
}
