package pinpad_test

import (
	"context"
	"encoding/hex"
	"errors"
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

// aesPad is a PIN pad holding the suite's TDES DUKPT key in slot 1 and its AES-128 and
// AES-256 DUKPT keys in slots 2 and 3.
type aesPad struct {
	pad
	aes  map[int]*dukpt.AESOriginator
	fill io.Reader
}

func (p *aesPad) EncryptPINAES(ctx context.Context, pan card.PAN, keyIndex int, prompt string) ([16]byte, [12]byte, error) {
	o := p.aes[keyIndex]
	if o == nil {
		return [16]byte{}, [12]byte{}, fmt.Errorf("no AES key in slot %d", keyIndex)
	}
	pin, err := p.entry(ctx, hsm.PINRequest{PAN: pan, Prompt: prompt})
	if err != nil {
		return [16]byte{}, [12]byte{}, err
	}
	field, err := pinblock.Encode(pinblock.Format4, pin, "", p.fill)
	if err != nil {
		return [16]byte{}, [12]byte{}, err
	}
	key, ksn, err := o.NextPINKey(o.KeyType())
	if err != nil {
		return [16]byte{}, [12]byte{}, err
	}
	b, err := pinblock.EncryptFormat4(key, [16]byte(field), pan.Digits())
	return b, ksn, err
}

func aesOriginator(t testing.TB, ikHex string) *dukpt.AESOriginator {
	ik, _ := hex.DecodeString(ikHex)
	ksn, _ := dukpt.ParseAESKSN(hsmtest.AESKSN)
	o, err := dukpt.NewAESOriginator(ik, ksn, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// A pad with AES DUKPT keys passes the suite's AES PIN block cases (the published X9.24-3
// vectors) as well as the TDES ones: the Module asks it for format 4 for the keys
// Options.Algorithms names AES.
func TestConformanceAES(t *testing.T) {
	rep, err := hsmtest.Run(context.Background(), hsmtest.Config{
		Open: func(entry func(context.Context, hsm.PINRequest) (string, error), fill io.Reader) (hsm.Driver, error) {
			ipek, _ := hex.DecodeString(hsmtest.TDESIPEK)
			ksn, _ := dukpt.ParseKSN(hsmtest.TDESKSN)
			o, err := dukpt.NewOriginator(ipek, ksn)
			if err != nil {
				return nil, err
			}
			p := &aesPad{pad: pad{orig: o, entry: entry}, fill: fill, aes: map[int]*dukpt.AESOriginator{
				2: aesOriginator(t, hsmtest.AESIK), 3: aesOriginator(t, hsmtest.AES256IK)}}
			return pinpad.New(p, &pinpad.Options{
				Keys:       map[string]int{"tdes-dukpt": 1, "aes-dukpt": 2, "aes256-dukpt": 3},
				Algorithms: map[string]hsm.Algorithm{"aes-dukpt": hsm.AES128, "aes256-dukpt": hsm.AES256},
			}), nil
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
	for _, want := range []string{"TDES DUKPT PIN block, counter 1", "AES DUKPT PIN block, counter 1", "AES DUKPT PIN block, counter 2",
		"AES-256 DUKPT PIN block", "cancelled PIN entry"} {
		if !passed[want] {
			t.Errorf("%q did not pass", want)
		}
	}
}

// An AES key over a device without AES keys, or an algorithm a pad cannot have, is an
// error naming the problem; the format asked must be the key's.
func TestAESKeyErrors(t *testing.T) {
	entry := func(context.Context, hsm.PINRequest) (string, error) { return "1234", nil }
	ipek, _ := hex.DecodeString(hsmtest.TDESIPEK)
	ksn, _ := dukpt.ParseKSN(hsmtest.TDESKSN)
	o, _ := dukpt.NewOriginator(ipek, ksn)
	tdesOnly := pinpad.New(&pad{orig: o, entry: entry}, &pinpad.Options{
		Keys: map[string]int{"pin": 1, "mac": 2}, Algorithms: map[string]hsm.Algorithm{"pin": hsm.AES128, "mac": hsm.TDES3}})
	m, err := hsm.New(tdesOnly, nil)
	if err != nil {
		t.Fatal(err)
	}
	pan, _ := card.ParsePAN("4111111111111111")
	if _, err := m.PINBlock(context.Background(), "pin", pan, ""); !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "AES") {
		t.Errorf("AES key on a TDES-only device: %v", err)
	}
	if _, err := m.PINBlock(context.Background(), "mac", pan, ""); !errors.Is(err, hsm.ErrKeyUsage) {
		t.Errorf("3TDEA pad key: %v", err)
	}
	if _, err := m.PINBlock(context.Background(), "nope", pan, ""); !errors.Is(err, hsm.ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
	if a, err := tdesOnly.PINKeyAlgorithm("pin"); err != nil || a != hsm.AES128 {
		t.Errorf("PINKeyAlgorithm(pin) = %v, %v", a, err)
	}
	// Asked directly for the other format, the driver refuses.
	if _, err := tdesOnly.PINBlock(context.Background(), hsm.PINRequest{KeyID: "pin", PAN: pan, Format: hsm.FormatISO0}); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("format 0 from an AES key: %v", err)
	}

	// Through the Module, the AES key gives a format 4 block with a 12-byte KSN.
	p := &aesPad{pad: pad{orig: o, entry: entry}, fill: strings.NewReader(strings.Repeat("x", 64)),
		aes: map[int]*dukpt.AESOriginator{1: aesOriginator(t, hsmtest.AESIK)}}
	m, _ = hsm.New(pinpad.New(p, &pinpad.Options{Algorithms: map[string]hsm.Algorithm{"pin": hsm.AES128}}), nil)
	epb, err := m.PINBlock(context.Background(), "", pan, "1.00 EUR")
	if err != nil {
		t.Fatal(err)
	}
	if epb.Format() != hsm.FormatISO4 || len(epb.Block()) != 16 || epb.KSNHex() != "123456789012345600000001" {
		t.Errorf("got %v, %d-byte block", epb, len(epb.Block()))
	}
	if strings.Contains(strings.ToUpper(fmt.Sprint(epb)), strings.ToUpper(hex.EncodeToString(epb.Block()))) {
		t.Error("the EncryptedPIN prints its block")
	}
}
