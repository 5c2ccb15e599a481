package soft_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/hsmtest"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/terminal/card"
)

func TestConformance(t *testing.T) {
	rep, err := hsmtest.Run(context.Background(), hsmtest.Config{
		Open: func(entry func(context.Context, hsm.PINRequest) (string, error), fill io.Reader) (hsm.Driver, error) {
			return soft.New(&soft.Options{PINEntry: entry, Rand: fill}), nil
		},
	})
	t.Logf("conformance:\n%s", rep)
	if err != nil {
		t.Fatal(err)
	}
	if u := rep.Unsupported(); len(u) != 0 {
		t.Errorf("the reference backend must support every case; unsupported: %v", u)
	}
	if len(rep) < 30 {
		t.Errorf("only %d cases ran", len(rep))
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pan(t testing.TB, s string) card.PAN {
	p, err := card.ParsePAN(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t testing.TB, m *hsm.Module, id string, a hsm.Algorithm, u hsm.Usage, key, ksn string) {
	t.Helper()
	r := hsm.LoadRequest{ID: id, Algorithm: a, Usage: u, Components: [][]byte{mustHex(t, key)}}
	if ksn != "" {
		r.KSN = mustHex(t, ksn)
	}
	if _, err := m.LoadKey(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func pin1234(context.Context, hsm.PINRequest) (string, error) { return "1234", nil }

// A restart with the same StateDir continues after the last counter used: the key is loaded
// again with its initial KSN, as a simulator does at every start.
func TestRestartContinuesCounter(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var last string
	for run := range 2 {
		m, _ := hsm.New(soft.New(&soft.Options{PINEntry: pin1234, StateDir: dir}), nil)
		load(t, m, "pin", hsm.AES128, hsm.UsageDUKPT, hsmtest.AESIK, hsmtest.AESKSN)
		for range 3 {
			p, err := m.PINBlock(ctx, "", pan(t, "4111111111111111"), "")
			if err != nil {
				t.Fatal(err)
			}
			if p.KSNHex() <= last {
				t.Fatalf("run %d: KSN %s after %s", run, p.KSNHex(), last)
			}
			last = p.KSNHex()
		}
	}
	if last != "123456789012345600000006" {
		t.Errorf("after two runs of three, KSN %s", last)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "pin.ksn"))
	if strings.TrimSpace(string(b)) != last {
		t.Errorf("state file holds %q", b)
	}
}

func TestNoPINEntry(t *testing.T) {
	m, _ := hsm.New(soft.New(nil), nil)
	load(t, m, "pin", hsm.TDES2, hsm.UsageDUKPT, hsmtest.TDESIPEK, hsmtest.TDESKSN)
	if _, err := m.PINBlock(context.Background(), "", pan(t, "4012345678909"), ""); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("PINBlock without PIN entry: %v", err)
	}
}

func TestBadPINWastesNoCounter(t *testing.T) {
	pins := []string{"12", "1234"}
	var mu sync.Mutex
	entry := func(context.Context, hsm.PINRequest) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		p := pins[0]
		pins = pins[1:]
		return p, nil
	}
	m, _ := hsm.New(soft.New(&soft.Options{PINEntry: entry}), nil)
	load(t, m, "pin", hsm.TDES2, hsm.UsageDUKPT, hsmtest.TDESIPEK, hsmtest.TDESKSN)
	if _, err := m.PINBlock(context.Background(), "", pan(t, "4012345678909"), ""); !errors.Is(err, pinblock.ErrPIN) {
		t.Fatalf("2-digit PIN: %v", err)
	}
	p, err := m.PINBlock(context.Background(), "", pan(t, "4012345678909"), "")
	if err != nil || p.KSNHex() != "FFFF9876543210E00001" {
		t.Errorf("next block: %v %v", p, err)
	}
}

func TestExhaustion(t *testing.T) {
	m, _ := hsm.New(soft.New(&soft.Options{PINEntry: pin1234}), nil)
	load(t, m, "pin", hsm.TDES2, hsm.UsageDUKPT, hsmtest.TDESIPEK, "FFFF9876543210FFF7FE")
	info, _ := m.KeyInfo(context.Background(), "pin")
	if info.Remaining != 1 {
		t.Fatalf("Remaining = %d, want 1", info.Remaining)
	}
	if _, err := m.PINBlock(context.Background(), "", pan(t, "4012345678909"), ""); err != nil {
		t.Fatal(err)
	}
	_, err := m.PINBlock(context.Background(), "", pan(t, "4012345678909"), "")
	if !errors.Is(err, hsm.ErrExhausted) || !errors.Is(err, dukpt.ErrExhausted) {
		t.Errorf("exhausted key: %v", err)
	}
}

func TestLoadKeyRejects(t *testing.T) {
	b := soft.New(nil)
	ctx := context.Background()
	for name, r := range map[string]hsm.LoadRequest{
		"short component":   {ID: "k", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: [][]byte{make([]byte, 15)}},
		"TDES data key":     {ID: "k", Algorithm: hsm.TDES2, Usage: hsm.UsageData, Components: [][]byte{make([]byte, 16)}},
		"DUKPT without KSN": {ID: "k", Algorithm: hsm.AES128, Usage: hsm.UsageDUKPT, Components: [][]byte{make([]byte, 16)}},
		"TDES3 DUKPT":       {ID: "k", Algorithm: hsm.TDES3, Usage: hsm.UsageDUKPT, Components: [][]byte{make([]byte, 24)}, KSN: make([]byte, 10)},
		"path in id":        {ID: "../k", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: [][]byte{make([]byte, 16)}},
		"unknown algorithm": {ID: "k", Usage: hsm.UsageMAC, Components: [][]byte{make([]byte, 16)}},
		"no components":     {ID: "k", Algorithm: hsm.AES128, Usage: hsm.UsageMAC},
		"unknown usage":     {ID: "k", Algorithm: hsm.AES128, Components: [][]byte{make([]byte, 16)}},
	} {
		if _, err := b.LoadKey(ctx, r); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if s := b.String(); !strings.Contains(s, "0 keys") {
		t.Errorf("String = %q", s)
	}
}

// The Module may run a MAC while a PIN entry waits for the customer; the soft backend
// does not hold its lock across the entry.
func TestMACDuringPINEntry(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	entry := func(ctx context.Context, _ hsm.PINRequest) (string, error) {
		close(entered)
		<-release
		return "1234", nil
	}
	m, _ := hsm.New(soft.New(&soft.Options{PINEntry: entry}), nil)
	load(t, m, "pin", hsm.TDES2, hsm.UsageDUKPT, hsmtest.TDESIPEK, hsmtest.TDESKSN)
	load(t, m, "mac", hsm.AES128, hsm.UsageMAC, hsmtest.AESMACKey, "")
	done := make(chan error)
	go func() {
		_, err := m.PINBlock(context.Background(), "", pan(t, "4012345678909"), "")
		done <- err
	}()
	<-entered
	if _, err := m.MAC(context.Background(), "", []byte("0200")); err != nil {
		t.Errorf("MAC during PIN entry: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestConcurrentUse(t *testing.T) {
	m, _ := hsm.New(soft.New(&soft.Options{PINEntry: pin1234}), nil)
	load(t, m, "pin", hsm.AES128, hsm.UsageDUKPT, hsmtest.AESIK, hsmtest.AESKSN)
	load(t, m, "data", hsm.AES256, hsm.UsageData, hsmtest.DataKey, "")
	var wg sync.WaitGroup
	seen := sync.Map{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				p, err := m.PINBlock(context.Background(), "", pan(t, "4111111111111111"), "")
				if err != nil {
					t.Error(err)
					return
				}
				if _, dup := seen.LoadOrStore(p.KSNHex(), true); dup {
					t.Errorf("KSN %s used twice", p.KSNHex())
				}
				s, err := m.Seal(context.Background(), "", []byte("x"), []byte("r"))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := m.Open(context.Background(), "", s, []byte("r")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkPINBlock(b *testing.B) {
	for _, c := range []struct {
		name string
		alg  hsm.Algorithm
		key  string
		ksn  string
		pan  string
	}{
		{"TDES-DUKPT", hsm.TDES2, hsmtest.TDESIPEK, hsmtest.TDESKSN, "4012345678909"},
		{"AES-DUKPT", hsm.AES128, hsmtest.AESIK, hsmtest.AESKSN, "4111111111111111"},
	} {
		b.Run(c.name, func(b *testing.B) {
			m, _ := hsm.New(soft.New(&soft.Options{PINEntry: pin1234}), nil)
			load(b, m, "pin", c.alg, hsm.UsageDUKPT, c.key, c.ksn)
			p := pan(b, c.pan)
			for b.Loop() {
				if _, err := m.PINBlock(context.Background(), "", p, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
