package pinpad_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/hsmtest"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/hsm/pinpad"
	"github.com/posd-dev/posd/terminal/card"
)

// pad is a PIN pad holding the suite's TDES DUKPT key in slot 1.
type pad struct {
	orig  *dukpt.Originator
	entry func(context.Context, hsm.PINRequest) (string, error)
}

func (p *pad) EncryptPIN(ctx context.Context, pan card.PAN, keyIndex int, prompt string) ([8]byte, [10]byte, error) {
	if keyIndex != 1 {
		return [8]byte{}, [10]byte{}, fmt.Errorf("no key in slot %d", keyIndex)
	}
	pin, err := p.entry(ctx, hsm.PINRequest{PAN: pan, Prompt: prompt})
	if err != nil {
		return [8]byte{}, [10]byte{}, err
	}
	clearBlock, err := pinblock.EncodeFormat0(pin, pan.Digits())
	if err != nil {
		return [8]byte{}, [10]byte{}, err
	}
	key, ksn, err := p.orig.NextPINKey()
	if err != nil {
		return [8]byte{}, [10]byte{}, err
	}
	b, err := pinblock.EncryptTDES(key, clearBlock)
	return b, ksn, err
}

// The PIN pad backend passes the PIN block cases of the conformance suite; it has no other
// capability.
func TestConformance(t *testing.T) {
	rep, err := hsmtest.Run(context.Background(), hsmtest.Config{
		Open: func(entry func(context.Context, hsm.PINRequest) (string, error), _ io.Reader) (hsm.Driver, error) {
			ipek, _ := hex.DecodeString(hsmtest.TDESIPEK)
			ksn, _ := dukpt.ParseKSN(hsmtest.TDESKSN)
			o, err := dukpt.NewOriginator(ipek, ksn)
			if err != nil {
				return nil, err
			}
			return pinpad.New(&pad{orig: o, entry: entry}, &pinpad.Options{Keys: map[string]int{"tdes-dukpt": 1}}), nil
		},
	})
	t.Logf("conformance:\n%s", rep)
	if err != nil {
		t.Fatal(err)
	}
	passed := map[string]bool{}
	for _, r := range rep {
		if r.Status == hsmtest.Pass {
			passed[r.Name] = true
		}
	}
	for _, want := range []string{"TDES DUKPT PIN block, counter 1", "TDES DUKPT PIN block, counter 3", "cancelled PIN entry", "no counter used by a cancelled entry"} {
		if !passed[want] {
			t.Errorf("%q did not pass", want)
		}
	}
	for name := range passed {
		if strings.Contains(name, "AES DUKPT") || strings.Contains(name, "seal") {
			t.Errorf("%q passed on a PIN pad", name)
		}
	}
}
