//go:build pkcs11

package pkcs11

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/hsmtest"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/hsm/tr31"
	"github.com/posd-dev/posd/terminal/card"
)

// The tests make a SoftHSM2 configuration in a temporary directory and a fresh token for
// each backend they open. SoftHSM reads SOFTHSM2_CONF when the library is initialised.
var (
	tokenDir  string
	skipWhy   string
	tokenSeq  atomic.Int32
	softhsmOK bool
)

func TestMain(m *testing.M) {
	code := func() int {
		if _, err := os.Stat(DefaultModule); err != nil {
			skipWhy = fmt.Sprintf("%s is absent (apt-get install softhsm2): %v", DefaultModule, err)
			return m.Run()
		}
		if _, err := exec.LookPath("softhsm2-util"); err != nil {
			skipWhy = "softhsm2-util is not on PATH (apt-get install softhsm2)"
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "posd-softhsm-")
		if err != nil {
			skipWhy = err.Error()
			return m.Run()
		}
		defer os.RemoveAll(dir)
		tokenDir = filepath.Join(dir, "tokens")
		conf := filepath.Join(dir, "softhsm2.conf")
		os.Mkdir(tokenDir, 0o700)
		os.WriteFile(conf, []byte("directories.tokendir = "+tokenDir+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
		os.Setenv("SOFTHSM2_CONF", conf)
		softhsmOK = true
		return m.Run()
	}()
	os.Exit(code)
}

const userPIN = "7531"

// newToken initialises a fresh token and returns its label.
func newToken(t testing.TB) string {
	t.Helper()
	if !softhsmOK {
		t.Skip("SoftHSM2 unavailable: " + skipWhy)
	}
	label := fmt.Sprintf("posd-%d", tokenSeq.Add(1))
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", userPIN, "--so-pin", "86420").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return label
}

func open(t testing.TB, label string, o Options) *Backend {
	t.Helper()
	o.Token, o.PIN = label, userPIN
	b, err := Open(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// unsupportedHere are the conformance cases standard PKCS#11 mechanisms cannot do inside a
// token (see the package's Caveats); every other case must pass, with the same bytes as the
// soft backend and the published vectors.
var unsupportedHere = map[string]bool{
	"load tdes-dukpt":                         true,
	"TDES DUKPT PIN block, counter 1":         true,
	"TDES DUKPT PIN block, counter 2":         true,
	"TDES DUKPT PIN block, counter 3":         true,
	"retail MAC":                              true,
	"import DUKPT initial key":                true, // a TDES B1 key
	"load bdk-tdes":                           true,
	"translate TDES DUKPT to an AES zone key": true,
	"translate AES DUKPT to a TDES zone key":  true,
	"translate AES DUKPT to an AES zone key":  true,
	"translate refuses another PAN":           true,
	"translate refuses format 1":              true,
	"translate refuses a MAC key":             true,
}

func TestConformance(t *testing.T) {
	var backends []*Backend
	defer func() {
		for _, b := range backends {
			b.Close()
		}
	}()
	rep, err := hsmtest.Run(context.Background(), hsmtest.Config{
		Open: func(entry func(context.Context, hsm.PINRequest) (string, error), fill io.Reader) (hsm.Driver, error) {
			b, err := Open(&Options{Token: newToken(t), PIN: userPIN, PINEntry: entry, Rand: fill})
			if err == nil {
				backends = append(backends, b)
			}
			return b, err
		},
	})
	t.Logf("conformance against SoftHSM2:\n%s", rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range rep.Unsupported() {
		if !unsupportedHere[name] {
			t.Errorf("%q unsupported", name)
		}
	}
	for name := range unsupportedHere {
		for _, r := range rep {
			if r.Name == name && r.Status != hsmtest.Unsupported {
				t.Errorf("%q is %v; update unsupportedHere and the package doc", name, r.Status)
			}
		}
	}
}

func pin1234(context.Context, hsm.PINRequest) (string, error) { return "1234", nil }

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadAll(t testing.TB, m *hsm.Module) {
	t.Helper()
	for _, k := range hsmtest.Keys() {
		if _, err := m.LoadKey(context.Background(), k); err != nil && !errors.Is(err, hsm.ErrUnsupported) {
			t.Fatal(err)
		}
	}
}

// Identical results: the same operations through the soft and the PKCS#11 backend give the
// same bytes, AES DUKPT PIN blocks at several counters included.
func TestSameAsSoft(t *testing.T) {
	ctx := context.Background()
	fill := func() io.Reader { return &zeroes{} }
	sm, _ := hsm.New(soft.New(&soft.Options{PINEntry: pin1234, Rand: fill()}), nil)
	pm, _ := hsm.New(open(t, newToken(t), Options{PINEntry: pin1234, Rand: fill()}), nil)
	loadAll(t, sm)
	loadAll(t, pm)
	pan, _ := card.ParsePAN("4111111111111111")
	for i := range 20 {
		for _, id := range []string{"aes-dukpt", "aes256-dukpt"} {
			a, err1 := sm.PINBlock(ctx, id, pan, "")
			b, err2 := pm.PINBlock(ctx, id, pan, "")
			if err1 != nil || err2 != nil || hex.EncodeToString(a.Block()) != hex.EncodeToString(b.Block()) || a.KSNHex() != b.KSNHex() {
				t.Fatalf("%s #%d: soft %X %s %v, pkcs11 %X %s %v", id, i, a.Block(), a.KSNHex(), err1, b.Block(), b.KSNHex(), err2)
			}
		}
	}
	msg := []byte(strings.Repeat("0200 message ", 50))
	a, _ := sm.MAC(ctx, "mac-aes", msg)
	b, err := pm.MAC(ctx, "mac-aes", msg)
	if err != nil || hex.EncodeToString(a) != hex.EncodeToString(b) {
		t.Errorf("MAC soft %X, pkcs11 %X %v", a, b, err)
	}
	// Sealed by one, opened by the other.
	s, err := pm.Seal(ctx, "data", []byte("track 2"), []byte("id 7"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := sm.Open(ctx, "data", s, []byte("id 7")); err != nil || string(pt) != "track 2" {
		t.Errorf("soft opens pkcs11's: %q %v", pt, err)
	}
	s, _ = sm.Seal(ctx, "data", []byte("track 2"), []byte("id 7"))
	if pt, err := pm.Open(ctx, "data", s, []byte("id 7")); err != nil || string(pt) != "track 2" {
		t.Errorf("pkcs11 opens soft's: %q %v", pt, err)
	}
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// Keys cannot leave the token: reading the value fails, wrapping fails, and keys that do
// not derive cannot be used to derive a child.
func TestKeysCannotLeave(t *testing.T) {
	b := open(t, newToken(t), Options{PINEntry: pin1234})
	m, _ := hsm.New(b, nil)
	loadAll(t, m)
	ctx := context.Background()
	// A key wrapping key an attacker could use, if anything were wrappable.
	kek, err := b.ctx.CreateObject(b.session, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE, make([]byte, 16)),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_WRAP, true),
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, k := range b.keys {
		attrs, err := b.ctx.GetAttributeValue(b.session, k.handle, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if err == nil && len(attrs) > 0 && len(attrs[0].Value) > 0 {
			t.Errorf("%s: value readable", id)
		}
		for _, mech := range []uint{p11.CKM_AES_KEY_WRAP, p11.CKM_AES_CBC, p11.CKM_AES_ECB} {
			if w, err := b.ctx.WrapKey(b.session, []*p11.Mechanism{p11.NewMechanism(mech, iv(mech))}, kek, k.handle); err == nil {
				t.Errorf("%s: wrapped out with mechanism %#x: %d bytes", id, mech, len(w))
			}
		}
		a, err := b.ctx.GetAttributeValue(b.session, k.handle, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_SENSITIVE, nil), p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
			p11.NewAttribute(p11.CKA_ALWAYS_SENSITIVE, nil), p11.NewAttribute(p11.CKA_NEVER_EXTRACTABLE, nil)})
		if err != nil || a[0].Value[0] != 1 || a[1].Value[0] != 0 {
			t.Errorf("%s: sensitive %v extractable %v (%v)", id, a[0].Value, a[1].Value, err)
		}
		if k.info.Usage == hsm.UsageDUKPT || k.info.Usage == hsm.UsageBDK {
			continue
		}
		// A key that does not derive cannot be the base of an (extractable) child.
		mech, free, err := ecbDerive(p11.CKM_AES_ECB_ENCRYPT_DATA, make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.ctx.DeriveKey(b.session, []*p11.Mechanism{mech}, k.handle, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY), p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
			p11.NewAttribute(p11.CKA_VALUE_LEN, 16), p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_SENSITIVE, false), p11.NewAttribute(p11.CKA_EXTRACTABLE, true)})
		free()
		if err == nil {
			t.Errorf("%s: derived an extractable child", id)
		}
		// Nor be used with a mechanism outside its usage.
		if err := b.ctx.EncryptInit(b.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_ECB, nil)}, k.handle); err == nil && k.info.Usage != hsm.UsagePIN {
			b.ctx.Encrypt(b.session, make([]byte, 16))
			t.Errorf("%s: a %v key encrypts with ECB", id, k.info.Usage)
		}
	}
	// DUKPT initial keys derive; SoftHSM 2.6 has no CKA_DERIVE_TEMPLATE, so it lets a
	// session derive an extractable child (see the package's Caveats). Record what the
	// token does, so a token that enforces it shows in the log.
	k := b.keys["aes-dukpt"]
	mech, free, _ := ecbDerive(p11.CKM_AES_ECB_ENCRYPT_DATA, make([]byte, 16))
	_, err = b.ctx.DeriveKey(b.session, []*p11.Mechanism{mech}, k.handle, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY), p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 16), p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_SENSITIVE, false), p11.NewAttribute(p11.CKA_EXTRACTABLE, true)})
	free()
	t.Logf("extractable child of a DUKPT initial key: derive error %v (nil: the token does not enforce derive templates)", err)
	// And the DUKPT initial key is restricted to ECB_ENCRYPT_DATA: it cannot encrypt.
	if err := b.ctx.EncryptInit(b.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_ECB, nil)}, k.handle); err == nil {
		t.Error("DUKPT initial key encrypts with ECB")
	}
	_ = ctx
}

func iv(mech uint) any {
	if mech == p11.CKM_AES_CBC {
		return make([]byte, 16)
	}
	return nil
}

// A Backend opened again on the same token finds its keys, and with the same StateDir
// continues the DUKPT counter after the last one used.
func TestRestart(t *testing.T) {
	label := newToken(t)
	dir := t.TempDir()
	ctx := context.Background()
	pan, _ := card.ParsePAN("4111111111111111")
	var last string
	for run := range 2 {
		b, err := Open(&Options{Token: label, PIN: userPIN, PINEntry: pin1234, StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := hsm.New(b, nil)
		if run == 0 {
			loadAll(t, m)
		} else if info, err := m.KeyInfo(ctx, "aes-dukpt"); err != nil || info.CheckValue.String() != "05EF4531EC" {
			t.Fatalf("after reopening: %v %v", info, err)
		}
		for range 3 {
			p, err := m.PINBlock(ctx, "aes-dukpt", pan, "")
			if err != nil {
				t.Fatal(err)
			}
			if p.KSNHex() <= last {
				t.Fatalf("run %d: KSN %s after %s", run, p.KSNHex(), last)
			}
			last = p.KSNHex()
		}
		b.Close()
	}
	if last != "123456789012345600000006" {
		t.Errorf("last KSN %s", last)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(&Options{}); err == nil {
		t.Error("opened without a token label")
	}
	label := newToken(t)
	if _, err := Open(&Options{Token: label, PIN: "0000"}); err == nil {
		t.Error("opened with a wrong PIN")
	}
	if _, err := Open(&Options{Token: "no-such-token", PIN: userPIN}); err == nil || !strings.Contains(err.Error(), "no-such-token") {
		t.Errorf("missing token: %v", err)
	}
	if _, err := Open(&Options{Module: "/nonexistent/lib.so", Token: label, PIN: userPIN}); err == nil {
		t.Error("opened a missing library")
	}
}

// A TR-31 D block under the KBPK in the token, with an AES DUKPT initial key (B1 with an IK
// block), then PIN blocks under it matching the published ones.
func TestImportDUKPTKey(t *testing.T) {
	ctx := context.Background()
	m, _ := hsm.New(open(t, newToken(t), Options{PINEntry: pin1234, Rand: repeatFill()}), nil)
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "kbpk", Algorithm: hsm.AES256, Usage: hsm.UsageKBPK, Components: [][]byte{mustHex(t, hsmtest.KBPKD)}}); err != nil {
		t.Fatal(err)
	}
	blk, err := tr31.Wrap(mustHex(t, hsmtest.KBPKD), tr31.Header{Version: 'D', KeyUsage: "B1", Algorithm: 'A', ModeOfUse: 'X', KeyVersion: "00", Exportability: 'N',
		Blocks: []tr31.Block{{ID: "IK", Data: "1234567890123456"}}}, mustHex(t, hsmtest.AESIK), nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "pin", KBPKID: "kbpk", Block: blk})
	if err != nil || info.CheckValue.String() != "05EF4531EC" || info.Usage != hsm.UsageDUKPT {
		t.Fatalf("import: %v %v", info, err)
	}
	pan, _ := card.ParsePAN("4111111111111111")
	p, err := m.PINBlock(ctx, "", pan, "")
	if err != nil || strings.ToUpper(hex.EncodeToString(p.Block())) != "A912150391AB65A67E52883D81CE2D15" {
		t.Errorf("PIN block %X %v", p.Block(), err)
	}
}

type repeat struct {
	b []byte
	i int
}

func (r *repeat) Read(p []byte) (int, error) {
	for n := range p {
		p[n] = r.b[r.i%len(r.b)]
		r.i++
	}
	return len(p), nil
}

func repeatFill() io.Reader { b, _ := hex.DecodeString("2F69ADDE2E9E7ACE"); return &repeat{b: b} }

// PIN block generation through the Module, soft against PKCS#11, AES DUKPT from counter
// 0xFFF00000: the counters that follow have 13 to 16 one bits (15.2 on average), so each
// block takes 14 to 17 derivations. The key is loaded again, off the clock, when its 6195
// counters run out.
func BenchmarkPINBlock(b *testing.B) {
	ctx := context.Background()
	pan, _ := card.ParsePAN("4111111111111111")
	for _, c := range []struct {
		name string
		new  func(b *testing.B) hsm.Driver
	}{
		{"soft", func(*testing.B) hsm.Driver { return soft.New(&soft.Options{PINEntry: pin1234}) }},
		{"pkcs11", func(b *testing.B) hsm.Driver { return open(b, newToken(b), Options{PINEntry: pin1234}) }},
	} {
		b.Run(c.name+"/AES-DUKPT", func(b *testing.B) {
			m, _ := hsm.New(c.new(b), nil)
			reload := func() {
				_, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "pin", Algorithm: hsm.AES128, Usage: hsm.UsageDUKPT, Replace: true,
					Components: [][]byte{mustHex(b, hsmtest.AESIK)}, KSN: mustHex(b, "1234567890123456FFF00000")})
				if err != nil {
					b.Fatal(err)
				}
			}
			reload()
			for b.Loop() {
				_, err := m.PINBlock(ctx, "pin", pan, "")
				if errors.Is(err, hsm.ErrExhausted) {
					b.StopTimer()
					reload()
					b.StartTimer()
					_, err = m.PINBlock(ctx, "pin", pan, "")
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The full AES DUKPT derivation inside the token at a worst-case counter (16 one bits):
// 16 intermediate derivations and the PIN working key, each CKM_AES_ECB_ENCRYPT_DATA.
func BenchmarkTokenDerivationWorstCase(b *testing.B) {
	bk := open(b, newToken(b), Options{})
	m, _ := hsm.New(bk, nil)
	if _, err := m.LoadKey(context.Background(), hsm.LoadRequest{ID: "ik", Algorithm: hsm.AES128, Usage: hsm.UsageDUKPT,
		Components: [][]byte{mustHex(b, hsmtest.AESIK)}, KSN: mustHex(b, hsmtest.AESKSN)}); err != nil {
		b.Fatal(err)
	}
	ksn, _ := dukpt.ParseAESKSN("1234567890123456FFFF0000")
	path, err := dukpt.AESDerivationPath(dukpt.KeyAES128, ksn, dukpt.UsagePINEncryption, dukpt.KeyAES128)
	if err != nil || len(path) != 17 {
		b.Fatalf("%d steps, %v", len(path), err)
	}
	k := bk.keys["ik"].handle
	last := []*p11.Attribute{p11.NewAttribute(p11.CKA_ENCRYPT, true), p11.NewAttribute(p11.CKA_ALLOWED_MECHANISMS, mechs(p11.CKM_AES_ECB))}
	for b.Loop() {
		h, err := bk.deriveChain(k, path, last)
		if err != nil {
			b.Fatal(err)
		}
		bk.ctx.DestroyObject(bk.session, h)
	}
}

// TR-31 versions A and C import inside the token through the variant keys created beside a
// TDES KBPK: published version A blocks (two KBPKs, one block with optional blocks) and a
// version C block give the keys and check values the soft backend gives; the variant keys
// cannot leave the token or do anything but their one CBC operation; they follow the KBPK
// across a restart and a replacement; a KBPK without them says to load it again.
func TestImportVersionsAandC(t *testing.T) {
	ctx := context.Background()
	label := newToken(t)
	b := open(t, label, Options{})
	m, _ := hsm.New(b, nil)
	sm, _ := hsm.New(soft.New(nil), nil)
	kbpkA2 := "B8ED59E0A279A295E9F5ED7944FD06B9"
	for _, mod := range []*hsm.Module{m, sm} {
		for id, v := range map[string]string{"kbpk-a": hsmtest.KBPKA, "kbpk-a2": kbpkA2, "kbpk-d": hsmtest.KBPKD} {
			a := hsm.TDES2
			if len(v) == 64 {
				a = hsm.AES256
			}
			if _, err := mod.LoadKey(ctx, hsm.LoadRequest{ID: id, Algorithm: a, Usage: hsm.UsageKBPK, Components: [][]byte{mustHex(t, v)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	blockC, err := tr31.Wrap(mustHex(t, kbpkA2), tr31.Header{Version: 'C', KeyUsage: "M3", Algorithm: 'T', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'N'}, mustHex(t, hsmtest.TDESMACKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ id, kbpk, block string }{
		{"a1", "kbpk-a", "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B"},
		{"a2", "kbpk-a", "A0088P0TE00E00007DD4DD9566DC0E2F956DCAC0FDE9153159539373E9D82D3CD4AFD305A7EF1BA67FE03712"},
		{"a3", "kbpk-a2", "A0112P0TE12E0200KS1400604B120F929280PB047A1BB737854CD7AF58A8A1E4506A942277EDA76EBA6BA228AF62ADDA3AD8799E8B2C8CD7"},
		{"c1", "kbpk-a2", blockC},
	}
	for _, c := range cases {
		want, err := sm.ImportKeyBlock(ctx, hsm.ImportRequest{ID: c.id, KBPKID: c.kbpk, Block: c.block})
		if err != nil {
			t.Fatalf("soft %s: %v", c.id, err)
		}
		got, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: c.id, KBPKID: c.kbpk, Block: c.block})
		if err != nil || got.String() != want.String() {
			t.Errorf("%s: pkcs11 %v %v, soft %v", c.id, got, err, want)
		}
	}
	if got, _ := m.KeyInfo(ctx, "a1"); got.CheckValue.String() != "CB9DEA" {
		t.Errorf("a1: KCV %s", got.CheckValue) // openssl enc -des-ede -K F039...AF8F -nopad of 8 zero bytes
	}
	// The C block's MAC key MACs as the soft backend's does.
	msg := []byte("0200 with a MAC")
	if x, err := m.MAC(ctx, "c1", msg); err == nil {
		t.Errorf("a TDES-2key MAC key gave a retail MAC in the token: %X", x)
	}
	// Altered blocks and the wrong KBPK are refused, and nothing is stored.
	alt := []byte(cases[0].block)
	alt[40] ^= 1
	for name, req := range map[string]hsm.ImportRequest{
		"altered":    {ID: "bad1", KBPKID: "kbpk-a", Block: string(alt)},
		"wrong KBPK": {ID: "bad2", KBPKID: "kbpk-a2", Block: cases[0].block},
	} {
		if _, err := m.ImportKeyBlock(ctx, req); !errors.Is(err, tr31.ErrMAC) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := m.KeyInfo(ctx, req.ID); !errors.Is(err, hsm.ErrUnknownKey) {
			t.Errorf("%s: stored anyway: %v", name, err)
		}
	}
	if _, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "bad3", KBPKID: "kbpk-d", Block: cases[0].block}); !errors.Is(err, tr31.ErrKBPK) {
		t.Errorf("version A under an AES KBPK: %v", err)
	}

	// The variant keys cannot leave the token, and each does one thing.
	for _, id := range []string{"kbpk-a", "kbpk-a2"} {
		k := b.keys[id]
		for i, h := range k.variant {
			if h == 0 {
				t.Fatalf("%s: variant %d missing", id, i)
			}
			if a, err := b.ctx.GetAttributeValue(b.session, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)}); err == nil && len(a) > 0 && len(a[0].Value) > 0 {
				t.Errorf("%s: variant %d value readable", id, i)
			}
			a, err := b.ctx.GetAttributeValue(b.session, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_SENSITIVE, nil), p11.NewAttribute(p11.CKA_EXTRACTABLE, nil)})
			if err != nil || a[0].Value[0] != 1 || a[1].Value[0] != 0 {
				t.Errorf("%s: variant %d sensitive %v extractable %v (%v)", id, i, a[0].Value, a[1].Value, err)
			}
			if err := b.ctx.EncryptInit(b.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_DES3_ECB, nil)}, h); err == nil {
				b.ctx.Encrypt(b.session, make([]byte, 8))
				t.Errorf("%s: variant %d encrypts with ECB", id, i)
			}
		}
		if err := b.ctx.EncryptInit(b.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_DES3_CBC, make([]byte, 8))}, k.variant[0]); err == nil {
			b.ctx.Encrypt(b.session, make([]byte, 8))
			t.Errorf("%s: the encryption variant encrypts (it may only decrypt)", id)
		}
		if err := b.ctx.DecryptInit(b.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_DES3_CBC, make([]byte, 8))}, k.variant[1]); err == nil {
			b.ctx.Decrypt(b.session, make([]byte, 8))
			t.Errorf("%s: the MAC variant decrypts (it may only encrypt)", id)
		}
	}
	count := func(label string) int {
		hs, err := b.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, label)})
		if err != nil {
			t.Fatal(err)
		}
		return len(hs)
	}
	// Replacing the KBPK replaces its variants; a replacement by another key drops them.
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "kbpk-a", Algorithm: hsm.TDES2, Usage: hsm.UsageKBPK, Components: [][]byte{mustHex(t, kbpkA2)}, Replace: true}); err != nil {
		t.Fatal(err)
	}
	if n1, n2 := count("kbpk-a"+variantEnc), count("kbpk-a"+variantMAC); n1 != 1 || n2 != 1 {
		t.Errorf("after replacing kbpk-a: %d and %d variant keys", n1, n2)
	}
	if _, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "a4", KBPKID: "kbpk-a", Block: cases[2].block}); err != nil {
		t.Errorf("under the replaced KBPK: %v", err)
	}
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "kbpk-a2", Algorithm: hsm.AES256, Usage: hsm.UsageKBPK, Components: [][]byte{mustHex(t, hsmtest.KBPKD)}, Replace: true}); err != nil {
		t.Fatal(err)
	}
	if n := count("kbpk-a2" + variantEnc); n != 0 {
		t.Errorf("an AES KBPK replaced a TDES one: %d variant keys left", n)
	}
	// After a restart the variants are found again; without them, version A says why.
	b.Close()
	b = open(t, label, Options{})
	m, _ = hsm.New(b, nil)
	if _, err := m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "a5", KBPKID: "kbpk-a", Block: cases[2].block}); err != nil {
		t.Errorf("after a restart: %v", err)
	}
	b.ctx.DestroyObject(b.session, b.keys["kbpk-a"].variant[1])
	b.Close()
	b = open(t, label, Options{})
	m, _ = hsm.New(b, nil)
	_, err = m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "a6", KBPKID: "kbpk-a", Block: cases[2].block})
	if !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "load the KBPK again") {
		t.Errorf("KBPK without variant keys: %v", err)
	}
	// Keys lists what the backend created, sorted, and nothing else (no variant keys).
	keys, err := m.Keys(ctx)
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	if err != nil || strings.Join(ids, " ") != "a1 a2 a3 a4 a5 c1 kbpk-a kbpk-a2 kbpk-d" {
		t.Errorf("Keys: %v %v", ids, err)
	}
}
