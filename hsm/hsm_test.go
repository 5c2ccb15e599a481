package hsm_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/pinpad"
	"github.com/posd-dev/posd/terminal/card"
)

// fakePad is a Device that returns a fixed block, or waits for the context.
type fakePad struct {
	block    [8]byte
	ksn      [10]byte
	wait     bool
	gotKey   int
	inFlight atomic.Int32
	maxSeen  atomic.Int32
}

func (f *fakePad) EncryptPIN(ctx context.Context, pan card.PAN, keyIndex int, prompt string) ([8]byte, [10]byte, error) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	if n > f.maxSeen.Load() {
		f.maxSeen.Store(n)
	}
	f.gotKey = keyIndex
	if f.wait {
		<-ctx.Done()
		return [8]byte{}, [10]byte{}, ctx.Err()
	}
	time.Sleep(time.Millisecond)
	return f.block, f.ksn, nil
}

var testPAN = func() card.PAN { p, _ := card.ParsePAN("4012345678909"); return p }()

func TestPINBlockThroughPinpad(t *testing.T) {
	pad := &fakePad{block: [8]byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A}, ksn: [10]byte{0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0, 1}}
	var events []hsm.AuditEvent
	m, err := hsm.New(pinpad.New(pad, &pinpad.Options{Keys: map[string]int{"pin": 3}}), &hsm.Options{Audit: func(e hsm.AuditEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.PINBlock(context.Background(), "", testPAN, "12.50 EUR")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%X", p.Block()) != "1B9C1845EB993A7A" || p.KSNHex() != "FFFF9876543210E00001" || p.Format() != hsm.FormatISO0 {
		t.Errorf("got block %X ksn %s", p.Block(), p.KSNHex())
	}
	if pad.gotKey != 3 {
		t.Errorf("key index %d, want 3 (from the key map)", pad.gotKey)
	}
	for _, s := range []string{p.String(), fmt.Sprintf("%v %+v %#v", p, p, p)} {
		if strings.Contains(strings.ToUpper(s), "1B9C1845EB993A7A") || strings.Contains(s, "1b9c") {
			t.Errorf("block visible in %q", s)
		}
	}
	if len(events) != 1 || events[0].MaskedPAN != "401234***8909" || events[0].Err != "" || events[0].KeyID != "pin" {
		t.Errorf("audit = %+v", events)
	}
	// The caller cannot change the module's copy through the returned slice.
	b := p.Block()
	b[0] = 0
	if p.Block()[0] != 0x1B {
		t.Error("Block returned shared storage")
	}
}

func TestPINBlockErrors(t *testing.T) {
	pad := &fakePad{wait: true}
	var events []hsm.AuditEvent
	m, _ := hsm.New(pinpad.New(pad, nil), &hsm.Options{PINTimeout: 20 * time.Millisecond, Audit: func(e hsm.AuditEvent) { events = append(events, e) }})
	_, err := m.PINBlock(context.Background(), "", testPAN, "")
	if !errors.Is(err, hsm.ErrTimeout) {
		t.Errorf("err = %v, want ErrTimeout", err)
	}
	if len(events) != 1 || events[0].Err == "" {
		t.Errorf("audit = %+v", events)
	}
	if _, err := m.PINBlock(context.Background(), "nope", testPAN, ""); !errors.Is(err, hsm.ErrUnknownKey) {
		t.Errorf("unknown key: err = %v", err)
	}
	if _, err := m.PINBlock(context.Background(), "", card.PAN{}, ""); err == nil {
		t.Error("zero PAN accepted")
	}
	if _, err := hsm.New(nil, nil); err == nil {
		t.Error("nil driver accepted")
	}
}

func TestModuleSerialisesDevice(t *testing.T) {
	pad := &fakePad{}
	m, _ := hsm.New(pinpad.New(pad, nil), nil)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.PINBlock(context.Background(), "", testPAN, ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := pad.maxSeen.Load(); got != 1 {
		t.Errorf("device saw %d concurrent calls, want 1", got)
	}
}

func TestNewEncryptedPINChecksLengths(t *testing.T) {
	if _, err := hsm.NewEncryptedPIN(make([]byte, 7), make([]byte, 10), hsm.FormatISO0); err == nil {
		t.Error("7-byte block accepted")
	}
	if _, err := hsm.NewEncryptedPIN(make([]byte, 8), make([]byte, 9), hsm.FormatISO0); err == nil {
		t.Error("9-byte KSN accepted")
	}
}

// TestNoNetworking enforces the package rule that hsm and its backends import no networking.
func TestNoNetworking(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/posd-dev/posd/hsm/...").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net" || strings.HasPrefix(dep, "net/") {
			t.Errorf("hsm depends on %s", dep)
		}
	}
}
