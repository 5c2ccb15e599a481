package hsmtest_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/hsmtest"
	"github.com/posd-dev/posd/hsm/soft"
)

// broken is the soft backend with one bit of every MAC flipped.
type broken struct{ *soft.Backend }

func (b broken) MAC(ctx context.Context, req hsm.MACRequest) ([]byte, error) {
	m, err := b.Backend.MAC(ctx, req)
	if err == nil {
		m[0] ^= 1
	}
	return m, err
}

// onlyPIN hides every capability but PINBlock.
type onlyPIN struct{ d hsm.Driver }

func (o onlyPIN) PINBlock(ctx context.Context, req hsm.PINRequest) (hsm.EncryptedPIN, error) {
	return o.d.PINBlock(ctx, req)
}

// The suite can fail: a backend with wrong MACs fails exactly the MAC cases.
func TestSuiteCatchesWrongResults(t *testing.T) {
	rep, err := hsmtest.Run(context.Background(), hsmtest.Config{
		Open: func(entry func(context.Context, hsm.PINRequest) (string, error), fill io.Reader) (hsm.Driver, error) {
			return broken{soft.New(&soft.Options{PINEntry: entry, Rand: fill})}, nil
		},
	})
	if err == nil {
		t.Fatal("a backend with wrong MACs passed")
	}
	for _, r := range rep {
		mac := strings.Contains(r.Name, "MAC") && !strings.Contains(r.Name, "refuses") && !strings.Contains(r.Name, "load") &&
			!strings.Contains(r.Name, "altered") // an altered message fails to verify either way
		if mac != (r.Status == hsmtest.Fail) {
			t.Errorf("%s: %v", r.Name, r.Status)
		}
	}
}

// A backend with PINBlock alone, holding its keys already (as a PIN pad does), passes the
// PIN block cases and reports the rest unsupported, not failed.
func TestSuiteReportsUnsupported(t *testing.T) {
	rep, err := hsmtest.Run(context.Background(), hsmtest.Config{
		Open: func(entry func(context.Context, hsm.PINRequest) (string, error), fill io.Reader) (hsm.Driver, error) {
			b := soft.New(&soft.Options{PINEntry: entry, Rand: fill})
			for _, k := range hsmtest.Keys()[:1] { // the TDES DUKPT key only
				if _, err := b.LoadKey(context.Background(), k); err != nil {
					return nil, err
				}
			}
			return onlyPIN{b}, nil
		},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, rep)
	}
	passed := 0
	for _, r := range rep {
		if r.Status == hsmtest.Pass {
			passed++
			if !strings.Contains(r.Name, "PIN") && !strings.Contains(r.Name, "counter") && !strings.Contains(r.Name, "altered") && r.Name != "import refuses an altered block" {
				t.Errorf("%s passed without the capability", r.Name)
			}
		}
	}
	if passed < 5 || len(rep.Unsupported()) < 25 {
		t.Errorf("%d passed, %d unsupported:\n%s", passed, len(rep.Unsupported()), rep)
	}
}
