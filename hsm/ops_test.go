package hsm_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/hsmtest"
	"github.com/posd-dev/posd/hsm/pinpad"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/hsm/tr31"
	"github.com/posd-dev/posd/terminal/card"
)

func softModule(t *testing.T, opts *hsm.Options) *hsm.Module {
	t.Helper()
	b := soft.New(&soft.Options{PINEntry: func(context.Context, hsm.PINRequest) (string, error) { return "1234", nil }})
	m, err := hsm.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range hsmtest.Keys() {
		if _, err := m.LoadKey(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestOptionsValidated(t *testing.T) {
	for _, n := range []int{-1, 3, 17} {
		if _, err := hsm.New(soft.New(nil), &hsm.Options{MACLength: n}); err == nil {
			t.Errorf("MACLength %d accepted", n)
		}
	}
}

func TestMACPolicy(t *testing.T) {
	ctx := context.Background()
	m := softModule(t, &hsm.Options{MACLength: 4})
	mac, err := m.MAC(ctx, "mac-tdes", []byte("4012345678909D987"))
	if err != nil || hex.EncodeToString(mac) != "2bf54205" {
		t.Errorf("4-byte retail MAC = %X, %v", mac, err)
	}
	if err := m.VerifyMAC(ctx, "mac-tdes", []byte("4012345678909D987"), mac[:3]); err == nil {
		t.Error("3-byte MAC verified")
	}
	if err := m.VerifyMAC(ctx, "mac-tdes", []byte("4012345678909D987"), append(mac, 0)); err == nil {
		t.Error("MAC longer than MACLength verified")
	}
	if _, err := m.MAC(ctx, "mac-aes", make([]byte, 2<<20)); err == nil {
		t.Error("MAC over 2 MiB accepted")
	}
	// The default key id.
	m = softModule(t, &hsm.Options{MACKeyID: "mac-aes"})
	if mac, err := m.MAC(ctx, "", nil); err != nil || !strings.HasPrefix(strings.ToUpper(hex.EncodeToString(mac)), "BB1D6929") || len(mac) != 8 {
		t.Errorf("default MAC key: %X, %v", mac, err)
	}
}

func TestSealFormat(t *testing.T) {
	ctx := context.Background()
	m := softModule(t, nil)
	a, err := m.Seal(ctx, "data", []byte("x"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Seal(ctx, "data", []byte("x"), []byte("1"))
	if len(a) != 1+12+1+16 || a[0] != 1 || bytes.Equal(a, b) {
		t.Errorf("sealed %X and %X: want version 1, a fresh nonce each time", a, b)
	}
	v2 := append([]byte{2}, a[1:]...)
	if _, err := m.Open(ctx, "data", v2, []byte("1")); !errors.Is(err, hsm.ErrOpen) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := m.Open(ctx, "mac-aes", a, []byte("1")); !errors.Is(err, hsm.ErrKeyUsage) {
		t.Errorf("open with a MAC key: %v", err)
	}
	if _, err := m.Seal(ctx, "tdes-dukpt", nil, nil); !errors.Is(err, hsm.ErrKeyUsage) {
		t.Errorf("seal with a TDES key: %v", err)
	}
}

func TestInvalidKeyIDs(t *testing.T) {
	ctx := context.Background()
	m := softModule(t, nil)
	pan, _ := card.ParsePAN("4012345678909")
	for _, id := range []string{"a b", "x/y", strings.Repeat("k", 65), "pin\n"} {
		if _, err := m.PINBlock(ctx, id, pan, ""); err == nil || errors.Is(err, hsm.ErrUnknownKey) {
			t.Errorf("PINBlock(%q): %v", id, err)
		}
		if _, err := m.MAC(ctx, id, nil); err == nil {
			t.Errorf("MAC(%q) succeeded", id)
		}
	}
}

// A Module over the PIN pad backend has only PIN blocks.
func TestCapabilitiesMissing(t *testing.T) {
	ctx := context.Background()
	m, _ := hsm.New(pinpad.New(&fakePad{}, nil), nil)
	if _, err := m.MAC(ctx, "", nil); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("MAC: %v", err)
	}
	if _, err := m.Seal(ctx, "", nil, nil); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("Seal: %v", err)
	}
	if _, err := m.Open(ctx, "", make([]byte, 40), nil); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("Open: %v", err)
	}
	if _, err := m.CheckValue(ctx, "pin"); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("CheckValue: %v", err)
	}
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "k"}); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("LoadKey: %v", err)
	}
	if _, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "k"}); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("ImportKeyBlock: %v", err)
	}
}

// A backend returning the wrong format is a device failure, not a PIN block.
type wrongFormat struct{ *soft.Backend }

func (w wrongFormat) PINBlock(ctx context.Context, req hsm.PINRequest) (hsm.EncryptedPIN, error) {
	return hsm.NewEncryptedPIN(make([]byte, 8), make([]byte, 10), hsm.FormatISO0)
}

func TestPINBlockFormatPolicy(t *testing.T) {
	ctx := context.Background()
	b := soft.New(nil)
	m, _ := hsm.New(wrongFormat{b}, nil)
	aesIK, _ := hex.DecodeString(hsmtest.AESIK)
	ksn, _ := hex.DecodeString(hsmtest.AESKSN)
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "pin", Algorithm: hsm.AES128, Usage: hsm.UsageDUKPT, Components: [][]byte{aesIK}, KSN: ksn}); err != nil {
		t.Fatal(err)
	}
	pan, _ := card.ParsePAN("4111111111111111")
	if _, err := m.PINBlock(ctx, "", pan, ""); !errors.Is(err, hsm.ErrDevice) {
		t.Errorf("format 0 from an AES key: %v", err)
	}
}

func TestNewEncryptedPINFormats(t *testing.T) {
	if _, err := hsm.NewEncryptedPIN(make([]byte, 16), make([]byte, 12), hsm.FormatISO4); err != nil {
		t.Error(err)
	}
	if _, err := hsm.NewEncryptedPIN(make([]byte, 8), make([]byte, 12), hsm.FormatISO4); err == nil {
		t.Error("8-byte format 4 block accepted")
	}
	if _, err := hsm.NewEncryptedPIN(make([]byte, 8), nil, hsm.Format(2)); err == nil {
		t.Error("format 2 accepted")
	}
}

// Operations other than PIN entry time out on Options.OpTimeout.
type slowMAC struct{ *soft.Backend }

func (s slowMAC) MAC(ctx context.Context, req hsm.MACRequest) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestOpTimeout(t *testing.T) {
	b := soft.New(nil)
	m, _ := hsm.New(slowMAC{b}, &hsm.Options{OpTimeout: 20 * time.Millisecond})
	key, _ := hex.DecodeString(hsmtest.AESMACKey)
	m.LoadKey(context.Background(), hsm.LoadRequest{ID: "mac", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: [][]byte{key}})
	if _, err := m.MAC(context.Background(), "", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow MAC: %v", err)
	}
}

// The ids the Module uses itself take only keys that can do their job, from components or
// from key blocks, and a refused key is not stored; other ids take anything.
func TestKeyRoles(t *testing.T) {
	ctx := context.Background()
	m, err := hsm.New(soft.New(nil), &hsm.Options{DataKeyID: "data", MACKeyID: "mac", PINKeyID: "pin"})
	if err != nil {
		t.Fatal(err)
	}
	kbpkD := mustHexT(t, hsmtest.KBPKD)
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "kbpk", Algorithm: hsm.AES256, Usage: hsm.UsageKBPK, Components: [][]byte{kbpkD}}); err != nil {
		t.Fatal(err)
	}
	wrap := func(usage string, alg byte, n int) string {
		h := tr31.Header{Version: 'D', KeyUsage: usage, Algorithm: alg, ModeOfUse: 'N', KeyVersion: "00", Exportability: 'N'}
		s, err := tr31.Wrap(kbpkD, h, bytes.Repeat([]byte{0x5A}, n), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	refused := []struct {
		id, block, want string
	}{
		{"data", wrap("P0", 'A', 16), `key id "data" is the data key`},
		{"data", wrap("D0", 'T', 16), "algorithm T"},
		{"mac", wrap("D0", 'A', 32), `key id "mac" is the MAC key`},
		{"pin", wrap("M0", 'A', 16), `key id "pin" is the PIN key`},
		{"pin", wrap("K1", 'A', 16), "usage K1"},
	}
	for _, c := range refused {
		_, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: c.id, KBPKID: "kbpk", Block: c.block})
		if !errors.Is(err, hsm.ErrKeyUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("import %s into %q: %v", c.block[:16], c.id, err)
		}
		if _, err := m.KeyInfo(ctx, c.id); !errors.Is(err, hsm.ErrUnknownKey) {
			t.Errorf("%q stored after a refusal: %v", c.id, err)
		}
	}
	if _, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "data", KBPKID: "kbpk", Block: "D0016"}); err == nil || !strings.Contains(err.Error(), "malformed key block") {
		t.Errorf("malformed block into a role id: %v", err)
	}
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "data", Algorithm: hsm.TDES2, Usage: hsm.UsageData, Components: [][]byte{make([]byte, 16)}}); !errors.Is(err, hsm.ErrKeyUsage) || !strings.Contains(err.Error(), "the data key") {
		t.Errorf("TDES data key loaded: %v", err)
	}
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "mac", Algorithm: hsm.AES128, Usage: hsm.UsageKBPK, Components: [][]byte{make([]byte, 16)}}); !errors.Is(err, hsm.ErrKeyUsage) {
		t.Errorf("KBPK loaded as the MAC key: %v", err)
	}
	accepted := []struct{ id, block string }{
		{"data", wrap("D0", 'A', 16)},
		{"mac", wrap("M6", 'A', 16)},
		{"pin", wrap("P0", 'A', 16)},
		{"anything", wrap("P0", 'T', 16)},
	}
	for _, c := range accepted {
		if info, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: c.id, KBPKID: "kbpk", Block: c.block}); err != nil {
			t.Errorf("import %s into %q: %v %v", c.block[:16], c.id, info, err)
		}
	}
	keys, err := m.Keys(ctx)
	var got []string
	for _, k := range keys {
		got = append(got, k.ID+" "+k.Usage.String())
	}
	if err != nil || strings.Join(got, ",") != "anything PIN,data data,kbpk KBPK,mac MAC,pin PIN" {
		t.Errorf("Keys = %q, %v", got, err)
	}
	pm, _ := hsm.New(pinpad.New(&fakePad{}, nil), nil)
	if _, err := pm.Keys(ctx); !errors.Is(err, hsm.ErrUnsupported) {
		t.Errorf("Keys on the PIN pad: %v", err)
	}
}

func TestComponentCheckValue(t *testing.T) {
	for _, c := range []struct {
		a             hsm.Algorithm
		key, want, by string
	}{
		{hsm.TDES2, "F039121BEC83D26B169BDCD5B22AAF8F", "CB9DEA", "legacy"},
		{hsm.AES128, hsmtest.AESMACKey, "", "CMAC"},
		{hsm.AES256, hsmtest.DataKey, "", "CMAC"},
	} {
		cv, err := hsm.ComponentCheckValue(c.a, mustHexT(t, c.key))
		// The value a key of these bytes gets when loaded.
		m, _ := hsm.New(soft.New(nil), nil)
		info, lerr := m.LoadKey(context.Background(), hsm.LoadRequest{ID: "k", Algorithm: c.a, Usage: hsm.UsageKBPK, Components: [][]byte{mustHexT(t, c.key)}})
		if err != nil || lerr != nil || cv.String() != info.CheckValue.String() || cv.Method != c.by || (c.want != "" && cv.String() != c.want) {
			t.Errorf("%v: %v %s %v, loaded %v %v", c.a, cv, cv.Method, err, info, lerr)
		}
	}
	if _, err := hsm.ComponentCheckValue(hsm.AES256, make([]byte, 16)); err == nil {
		t.Error("a 16-byte AES-256 component was accepted")
	}
	if _, err := hsm.ComponentCheckValue(hsm.Algorithm(0), make([]byte, 16)); err == nil {
		t.Error("an unknown algorithm was accepted")
	}
}

func TestFitsRole(t *testing.T) {
	m, _ := hsm.New(soft.New(nil), &hsm.Options{DataKeyID: "seal"})
	for _, c := range []struct {
		id string
		a  hsm.Algorithm
		u  hsm.Usage
		ok bool
	}{
		{"seal", hsm.AES128, hsm.UsageData, true},
		{"seal", hsm.AES256, hsm.UsageKBPK, false},
		{"seal", hsm.TDES2, hsm.UsageData, false},
		{"data", hsm.TDES2, hsm.UsageKBPK, true}, // not this Module's data key id
		{"mac", hsm.AES128, hsm.UsageMAC, true},
		{"mac", hsm.AES128, hsm.UsagePIN, false},
		{"pin", hsm.AES128, hsm.UsageDUKPT, true},
		{"pin", hsm.TDES2, hsm.UsagePIN, true},
		{"pin", hsm.TDES2, hsm.UsageBDK, false},
		{"kbpk", hsm.TDES2, hsm.UsageKBPK, true},
	} {
		err := m.FitsRole(c.id, c.a, c.u)
		if (err == nil) != c.ok || (err != nil && (!errors.Is(err, hsm.ErrKeyUsage) || !strings.Contains(err.Error(), `"`+c.id+`"`))) {
			t.Errorf("FitsRole(%s, %v, %v) = %v", c.id, c.a, c.u, err)
		}
	}
}
