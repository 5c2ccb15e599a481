// Package hsmtest is the conformance suite for hsm backends: it drives a backend through an
// hsm.Module with published test keys and checks every result byte for byte against
// published vectors (ANSI X9.24-1 and X9.24-3, RFC 4493, TR-31) or against the pure-Go
// reference packages (dukpt, pinblock, mac, kcv). Every backend that passes therefore gives
// identical results.
//
// Like testing/fstest, it does not import package testing: Run returns a Report and an error
// that joins every failure, and a test calls it:
//
//	rep, err := hsmtest.Run(ctx, hsmtest.Config{Open: open})
//	t.Log(rep)
//	if err != nil {
//		t.Fatal(err)
//	}
//
// A case whose operation the backend does not support (an error wrapping
// hsm.ErrUnsupported) is reported as unsupported rather than failed; a test decides which
// unsupported cases it accepts.
package hsmtest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/hsm/mac"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/hsm/tr31"
	"github.com/posd-dev/posd/terminal/card"
)

// Config describes the backend under test. Run reads it from one goroutine.
//
// A plain value: safe for concurrent use when not modified.
type Config struct {
	// Open returns a new backend. Its PIN entry must ask entry for the PIN, and the
	// random fill of its PIN blocks must come from fill. A backend that can load keys
	// must hold none; one that cannot (a PIN pad) must hold those of Keys it supports,
	// under the same ids.
	Open func(entry func(ctx context.Context, req hsm.PINRequest) (string, error), fill io.Reader) (hsm.Driver, error)
}

// Status is a case's outcome. It is a value, safe for concurrent use.
type Status int

// Outcomes.
const (
	Pass Status = iota + 1
	Unsupported
	Fail
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Unsupported:
		return "unsupported"
	case Fail:
		return "FAIL"
	}
	return "?"
}

// Result is one case. It is a value, safe for concurrent use.
type Result struct {
	Name   string
	Status Status
	Detail string // why it failed or is unsupported
}

// Report lists every case in order. It is a value, safe for concurrent reading.
type Report []Result

// String lists the cases, one a line.
func (r Report) String() string {
	var b strings.Builder
	for _, c := range r {
		fmt.Fprintf(&b, "%-12s %s", c.Status, c.Name)
		if c.Detail != "" {
			fmt.Fprintf(&b, ": %s", c.Detail)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Unsupported returns the names of the unsupported cases.
func (r Report) Unsupported() []string {
	var out []string
	for _, c := range r {
		if c.Status == Unsupported {
			out = append(out, c.Name)
		}
	}
	return out
}

// mustHex decodes the hex constants of this file (checked by the package's tests).
func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// The suite's keys: public test keys of the standards, never real ones.
const (
	// ANSI X9.24-1:2009 Annex A: IPEK for BDK 0123456789ABCDEFFEDCBA9876543210.
	TDESIPEK = "6AC292FAA1315B4D858AB3A3D7D5933A"
	TDESKSN  = "FFFF9876543210E00000"
	// ANSI X9.24-3-2017 supplement: initial keys for BDKs FEDC...F1F1 (AES-128 and AES-256).
	AESIK    = "1273671EA26AC29AFA4D1084127652A1"
	AES256IK = "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F"
	AESKSN   = "123456789012345600000000"
	// RFC 4493 AES-128 key, as a MAC key; the X9.24-1 BDK as a TDES MAC key.
	AESMACKey  = "2B7E151628AED2A6ABF7158809CF4F3C"
	TDESMACKey = "0123456789ABCDEFFEDCBA9876543210"
	// An AES-256 data key (NIST SP 800-38B's).
	DataKey = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"
	// TR-31 KBPKs of the published example blocks (versions A, B and D).
	KBPKA = "89E88CF7931444F334BD7547FC3F380C"
	KBPKB = "DD7515F2BFC17F85CE48F3CA25CB21F6"
	KBPKD = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"
	// The BDKs of X9.24-1:2009 Annex A and of the X9.24-3-2017 supplement (AES-128).
	TDESBDK = "0123456789ABCDEFFEDCBA9876543210"
	AESBDK  = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	// Zone PIN keys: the key of REFERENCE.md's format 4 example, and the X9.24-1 PIN key of
	// counter 1 as a static TDES key.
	ZPKAES  = "00112233445566778899AABBCCDDEEFF"
	ZPKTDES = "042666B49184CF5C68DE9628D0397B36"
)

// The random part of the X9.24-3 format 4 PIN field; the suite's fill repeats it.
const fill4 = "2F69ADDE2E9E7ACE"

// Keys returns the keys the suite loads, by id.
func Keys() []hsm.LoadRequest {
	k := func(id string, a hsm.Algorithm, u hsm.Usage, value, ksn string) hsm.LoadRequest {
		r := hsm.LoadRequest{ID: id, Algorithm: a, Usage: u, Components: [][]byte{mustHex(value)}}
		if ksn != "" {
			r.KSN = mustHex(ksn)
		}
		return r
	}
	return []hsm.LoadRequest{
		k("tdes-dukpt", hsm.TDES2, hsm.UsageDUKPT, TDESIPEK, TDESKSN),
		k("aes-dukpt", hsm.AES128, hsm.UsageDUKPT, AESIK, AESKSN),
		k("aes256-dukpt", hsm.AES256, hsm.UsageDUKPT, AES256IK, AESKSN),
		k("mac-tdes", hsm.TDES2, hsm.UsageMAC, TDESMACKey, ""),
		k("mac-aes", hsm.AES128, hsm.UsageMAC, AESMACKey, ""),
		k("data", hsm.AES256, hsm.UsageData, DataKey, ""),
		k("kbpk-a", hsm.TDES2, hsm.UsageKBPK, KBPKA, ""),
		k("kbpk-b", hsm.TDES2, hsm.UsageKBPK, KBPKB, ""),
		k("kbpk-d", hsm.AES256, hsm.UsageKBPK, KBPKD, ""),
		k("bdk-tdes", hsm.TDES2, hsm.UsageBDK, TDESBDK, ""),
		k("bdk-aes", hsm.AES128, hsm.UsageBDK, AESBDK, ""),
		k("zpk-aes", hsm.AES128, hsm.UsagePIN, ZPKAES, ""),
		k("zpk-tdes", hsm.TDES2, hsm.UsagePIN, ZPKTDES, ""),
	}
}

type suite struct {
	ctx    context.Context
	m      *hsm.Module
	report Report
	errs   []error
	pins   []string // PINs the entry callback hands out, in order
	cancel bool     // the entry callback cancels
	nonce  *recorder
	// preloaded is set when the backend cannot load keys: a key it lacks is then
	// unsupported, not a failure.
	preloaded bool
	// missing holds the keys the backend could not load (ErrUnsupported).
	missing map[string]bool
}

// skip records name as unsupported if it needs a key the backend could not load.
func (s *suite) skip(name string, ids ...string) bool {
	for _, id := range ids {
		if s.missing[id] {
			s.report = append(s.report, Result{Name: name, Status: Unsupported, Detail: "needs key " + id + ", which the backend could not load"})
			return true
		}
	}
	return false
}

// Run runs the suite against a new backend from cfg.Open.
func Run(ctx context.Context, cfg Config) (Report, error) {
	s := &suite{ctx: ctx, missing: map[string]bool{}}
	entry := func(ctx context.Context, req hsm.PINRequest) (string, error) {
		if s.cancel {
			return "", fmt.Errorf("hsmtest: customer pressed cancel: %w", hsm.ErrCancelled)
		}
		if len(s.pins) == 0 {
			return "", errors.New("hsmtest: no PIN queued")
		}
		p := s.pins[0]
		s.pins = s.pins[1:]
		return p, nil
	}
	drv, err := cfg.Open(entry, &repeat{b: mustHex(fill4)})
	if err != nil {
		return nil, fmt.Errorf("hsmtest: open backend: %w", err)
	}
	s.nonce = &recorder{r: &repeat{b: mustHex("CAFEBABEFACEDBADDECAF888")}}
	_, canLoad := drv.(hsm.KeyLoader)
	s.preloaded = !canLoad
	s.m, err = hsm.New(drv, &hsm.Options{Rand: s.nonce})
	if err != nil {
		return nil, err
	}
	s.keys()
	s.pinBlocks()
	s.macs()
	s.seal()
	s.importBlocks()
	s.translate()
	return s.report, errors.Join(s.errs...)
}

// check records a case: err wrapping ErrUnsupported makes it unsupported, another error
// or a false ok fails it.
func (s *suite) check(name string, err error, ok bool, format string, a ...any) {
	switch {
	case errors.Is(err, hsm.ErrUnsupported) || (s.preloaded && errors.Is(err, hsm.ErrUnknownKey)):
		s.report = append(s.report, Result{Name: name, Status: Unsupported, Detail: err.Error()})
	case err != nil:
		s.fail(name, "unexpected error: %v", err)
	case !ok:
		s.fail(name, format, a...)
	default:
		s.report = append(s.report, Result{Name: name, Status: Pass})
	}
}

func (s *suite) fail(name, format string, a ...any) {
	d := fmt.Sprintf(format, a...)
	s.report = append(s.report, Result{Name: name, Status: Fail, Detail: d})
	s.errs = append(s.errs, fmt.Errorf("%s: %s", name, d))
}

// expectErr records a case that must fail with want.
func (s *suite) expectErr(name string, err, want error) {
	switch {
	case !errors.Is(err, want) && (errors.Is(err, hsm.ErrUnsupported) || (s.preloaded && errors.Is(err, hsm.ErrUnknownKey))):
		s.report = append(s.report, Result{Name: name, Status: Unsupported, Detail: err.Error()})
	case !errors.Is(err, want):
		s.fail(name, "error %v, want %v", err, want)
	default:
		s.report = append(s.report, Result{Name: name, Status: Pass})
	}
}

func up(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func expectedKCV(r hsm.LoadRequest) string {
	v := make([]byte, len(r.Components[0]))
	for _, c := range r.Components {
		for i := range v {
			v[i] ^= c[i]
		}
	}
	var cv []byte
	if r.Algorithm.IsAES() {
		cv, _ = kcv.AES(v)
	} else {
		cv, _ = kcv.TDES(v, kcv.Legacy)
	}
	return up(cv)
}

func (s *suite) keys() {
	for _, r := range Keys() {
		info, err := s.m.LoadKey(s.ctx, r)
		if s.preloaded {
			// A backend that cannot load keys holds them already, or lacks them.
			info, err = s.m.KeyInfo(s.ctx, r.ID)
			if errors.Is(err, hsm.ErrUnknownKey) {
				err = fmt.Errorf("%w: key %s not held", hsm.ErrUnsupported, r.ID)
			}
		}
		if errors.Is(err, hsm.ErrUnsupported) && !s.preloaded {
			s.missing[r.ID] = true
		}
		want := expectedKCV(r)
		s.check("load "+r.ID, err, info.CheckValue.String() == want && info.Algorithm == r.Algorithm && info.Usage == r.Usage,
			"info %v, want KCV %s", info, want)
	}
	// Two components XORed, with the check value the technician expects.
	c1, c2 := mustHex("0123456789ABCDEF0123456789ABCDEF"), mustHex(AESMACKey)
	for i := range c2 {
		c2[i] ^= c1[i]
	}
	two := hsm.LoadRequest{ID: "mac-aes-2", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: [][]byte{c1, c2}}
	two.CheckValue = mustHex(expectedKCV(two))
	info, err := s.m.LoadKey(s.ctx, two)
	s.check("load two components", err, info.CheckValue.String() == expectedKCV(hsm.LoadRequest{Algorithm: hsm.AES128, Components: [][]byte{mustHex(AESMACKey)}}),
		"KCV %s, want that of the RFC 4493 key", info.CheckValue)
	bad := two
	bad.ID = "mac-aes-3"
	bad.CheckValue = []byte{1, 2, 3}
	_, err = s.m.LoadKey(s.ctx, bad)
	s.expectErr("load refuses a wrong check value", err, hsm.ErrCheckValue)
	if err == nil || errors.Is(err, hsm.ErrCheckValue) {
		_, err = s.m.KeyInfo(s.ctx, "mac-aes-3")
		s.expectErr("nothing stored after a wrong check value", err, hsm.ErrUnknownKey)
	}
	dup := Keys()[3]
	_, err = s.m.LoadKey(s.ctx, dup)
	s.expectErr("load refuses a used id", err, hsm.ErrKeyExists)
	_, err = s.m.KeyInfo(s.ctx, "no-such-key")
	s.expectErr("unknown key", err, hsm.ErrUnknownKey)
	cv, err := s.m.CheckValue(s.ctx, "mac-tdes")
	s.check("check value", err, cv.String() == expectedKCV(Keys()[3]) && cv.Method == "legacy", "got %v %s", cv, cv.Method)
	info, err = s.m.KeyInfo(s.ctx, "aes-dukpt")
	s.check("DUKPT key info", err, up(info.KSN) == AESKSN && info.Remaining == 2448023842,
		"KSN %X, %d left", info.KSN, info.Remaining)
}

// panOf parses the test PANs of this file.
func panOf(s string) card.PAN {
	p, _ := card.ParsePAN(s)
	return p
}

func (s *suite) pinBlocks() {
	ctx := s.ctx
	// X9.24-1:2009 A.4.2: PIN 1234, PAN 4012345678909, counters 1-3.
	pan := panOf("4012345678909")
	for i, want := range []string{"1B9C1845EB993A7A", "10A01C8D02C69107", "18DC07B94797B466"} {
		if s.skip(fmt.Sprintf("TDES DUKPT PIN block, counter %d", i+1), "tdes-dukpt") {
			continue
		}
		s.pins = []string{"1234"}
		p, err := s.m.PINBlock(ctx, "tdes-dukpt", pan, "12.50 EUR")
		ksn := fmt.Sprintf("FFFF9876543210E0000%d", i+1)
		s.check(fmt.Sprintf("TDES DUKPT PIN block, counter %d", i+1), err,
			up(p.Block()) == want && p.KSNHex() == ksn && p.Format() == hsm.FormatISO0,
			"got %X KSN %s %v, want %s KSN %s", p.Block(), p.KSNHex(), p.Format(), want, ksn)
	}
	// A cancelled entry consumes no counter.
	dukptKey, wantKSN, wantBlock := "tdes-dukpt", "FFFF9876543210E00004", "0BC79509D5645DF7"
	if s.missing[dukptKey] {
		pan = panOf("4111111111111111")
		dukptKey, wantKSN, wantBlock = "aes-dukpt", "123456789012345600000001", "A912150391AB65A67E52883D81CE2D15"
	}
	s.cancel = true
	_, err := s.m.PINBlock(ctx, dukptKey, pan, "")
	s.cancel = false
	s.expectErr("cancelled PIN entry", err, hsm.ErrCancelled)
	s.pins = []string{"1234"}
	p, err := s.m.PINBlock(ctx, dukptKey, pan, "")
	s.check("no counter used by a cancelled entry", err, p.KSNHex() == wantKSN && up(p.Block()) == wantBlock,
		"got %X KSN %s", p.Block(), p.KSNHex())

	// X9.24-3-2017 supplement, AES-128 BDK: PIN 1234, PAN 4111111111111111, format 4.
	pan = panOf("4111111111111111")
	aesBlocks := []string{"A912150391AB65A67E52883D81CE2D15", "52A00503BD34BA1383F6A7EE9FE2547F"}
	if dukptKey == "aes-dukpt" { // counter 1 was used above
		aesBlocks[0] = ""
	}
	for i, want := range aesBlocks {
		if want == "" {
			continue
		}
		s.pins = []string{"1234"}
		p, err := s.m.PINBlock(ctx, "aes-dukpt", pan, "")
		ksn := fmt.Sprintf("12345678901234560000000%d", i+1)
		s.check(fmt.Sprintf("AES DUKPT PIN block, counter %d", i+1), err,
			up(p.Block()) == want && p.KSNHex() == ksn && p.Format() == hsm.FormatISO4,
			"got %X KSN %s %v, want %s KSN %s", p.Block(), p.KSNHex(), p.Format(), want, ksn)
	}
	// AES-256 BDK, AES-256 PIN key of counter 1 (published), block by the reference.
	s.pins = []string{"1234"}
	p, err = s.m.PINBlock(ctx, "aes256-dukpt", pan, "")
	field, _ := pinblock.Encode(pinblock.Format4, "1234", "", bytes.NewReader(mustHex(fill4)))
	want, _ := pinblock.EncryptFormat4(mustHex("8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502"), [16]byte(field), pan.Digits())
	s.check("AES-256 DUKPT PIN block", err, up(p.Block()) == up(want[:]) && p.KSNHex() == "123456789012345600000001",
		"got %X KSN %s, want %X", p.Block(), p.KSNHex(), want)

	s.pins = []string{"1234"}
	_, err = s.m.PINBlock(ctx, "mac-aes", pan, "")
	s.expectErr("PIN block refuses a MAC key", err, hsm.ErrKeyUsage)
	_, err = s.m.PINBlock(ctx, "no-such-key", pan, "")
	s.expectErr("PIN block under an unknown key", err, hsm.ErrUnknownKey)
	s.pins = nil
}

func (s *suite) macs() {
	ctx := s.ctx
	msg := []byte("4012345678909D987")
	var m []byte
	var err error
	if !s.skip("retail MAC", "mac-tdes") {
		m, err = s.m.MAC(ctx, "mac-tdes", msg)
		s.check("retail MAC", err, up(m) == "2BF54205792892A6", "got %X", m)
	}
	msg40 := mustHex("6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E5130C81C46A35CE411")
	m, err = s.m.MAC(ctx, "mac-aes", msg40)
	s.check("AES-CMAC (RFC 4493 example 3)", err, up(m) == "DFA66747DE9AE630", "got %X", m)
	err = s.m.VerifyMAC(ctx, "mac-aes", msg40, mustHex("DFA66747DE9AE630"))
	s.check("verify MAC", err, true, "")
	err = s.m.VerifyMAC(ctx, "mac-aes", append([]byte{0}, msg40[1:]...), mustHex("DFA66747DE9AE630"))
	s.expectErr("verify MAC of an altered message", err, hsm.ErrMACMismatch)
	_, err = s.m.MAC(ctx, "data", msg)
	s.expectErr("MAC refuses a data key", err, hsm.ErrKeyUsage)
	// A long message against the reference.
	long := bytes.Repeat([]byte("0200 ISO 8583 message body "), 40)
	c, _ := aes.NewCipher(mustHex(AESMACKey))
	m, err = s.m.MAC(ctx, "mac-aes", long)
	s.check("AES-CMAC of a long message", err, up(m) == up(mac.CMAC(c, long)[:8]), "got %X", m)
}

func (s *suite) seal() {
	ctx := s.ctx
	pt := []byte("track 2: 4012345678909=25121010000000000000")
	aad := []byte("record 42")
	sealed, err := s.m.Seal(ctx, "data", pt, aad)
	nonce := s.nonce.last
	if err != nil || len(nonce) != 12 {
		s.check("seal (AES-256-GCM)", err, false, "the Module read a %d-byte nonce", len(nonce))
		return
	}
	c, _ := aes.NewCipher(mustHex(DataKey))
	g, _ := cipher.NewGCM(c)
	want := append(append([]byte{1}, nonce...), g.Seal(nil, nonce, pt, append([]byte{1}, aad...))...)
	s.check("seal (AES-256-GCM)", err, bytes.Equal(sealed, want), "got %X, want %X", sealed, want)
	got, err := s.m.Open(ctx, "data", sealed, aad)
	s.check("open", err, bytes.Equal(got, pt), "opened to something else")
	_, err = s.m.Open(ctx, "data", sealed, []byte("record 43"))
	s.expectErr("open for another record", err, hsm.ErrOpen)
	alt := append([]byte(nil), sealed...)
	alt[len(alt)-1] ^= 1
	_, err = s.m.Open(ctx, "data", alt, aad)
	s.expectErr("open altered data", err, hsm.ErrOpen)
	_, err = s.m.Open(ctx, "data", sealed[:20], aad)
	s.expectErr("open truncated data", err, hsm.ErrOpen)
	_, err = s.m.Seal(ctx, "mac-aes", pt, aad)
	s.expectErr("seal refuses a MAC key", err, hsm.ErrKeyUsage)
}

func (s *suite) importBlocks() {
	ctx := s.ctx
	cases := []struct {
		name, kbpk, block, key string
		alg                    hsm.Algorithm
	}{
		{"version A", "kbpk-a", "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701", "F039121BEC83D26B169BDCD5B22AAF8F", hsm.TDES2},
		{"version B", "kbpk-b", "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E", "3F419E1CB7079442AA37474C2EFBF8B8", hsm.TDES2},
		{"version D", "kbpk-d", "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34", "3F419E1CB7079442AA37474C2EFBF8B8", hsm.AES128},
	}
	for _, c := range cases {
		if s.skip("import TR-31 "+c.name, c.kbpk) {
			continue
		}
		info, err := s.m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "imported-" + c.name[8:], KBPKID: c.kbpk, Block: c.block})
		want := expectedKCV(hsm.LoadRequest{Algorithm: c.alg, Components: [][]byte{mustHex(c.key)}})
		s.check("import TR-31 "+c.name, err, info.CheckValue.String() == want && info.Usage == hsm.UsagePIN && info.Algorithm == c.alg,
			"info %v, want KCV %s", info, want)
	}
	_, err := s.m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "x", KBPKID: "mac-aes", Block: cases[2].block})
	s.expectErr("import refuses a non-KBPK", err, hsm.ErrKeyUsage)
	_, err = s.m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "x", KBPKID: "kbpk-b", Block: cases[1].block[:40] + "0" + cases[1].block[41:]})
	if err == nil {
		s.fail("import refuses an altered block", "imported")
	} else {
		s.check("import refuses an altered block", nil, errors.Is(err, tr31.ErrMAC) || errors.Is(err, hsm.ErrUnsupported) || strings.Contains(err.Error(), "MAC"), "error %v", err)
	}
	// A DUKPT initial key block (B1, with its KSN in a KS block), then a PIN block under it
	// that matches X9.24-1 counter 1.
	h := tr31.Header{Version: 'B', KeyUsage: "B1", Algorithm: 'T', ModeOfUse: 'X', KeyVersion: "00", Exportability: 'N',
		Blocks: []tr31.Block{{ID: "KS", Data: TDESKSN}}}
	blk, err := tr31.Wrap(mustHex(KBPKB), h, mustHex(TDESIPEK), nil)
	if err != nil {
		s.fail("import DUKPT initial key", "wrap: %v", err)
		return
	}
	info, err := s.m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: "tdes-dukpt-2", KBPKID: "kbpk-b", Block: blk})
	s.check("import DUKPT initial key", err, info.Usage == hsm.UsageDUKPT && up(info.KSN) == TDESKSN, "info %v", info)
	if err == nil {
		s.pins = []string{"1234"}
		p, err := s.m.PINBlock(ctx, "tdes-dukpt-2", panOf("4012345678909"), "")
		s.check("PIN block under the imported DUKPT key", err, up(p.Block()) == "1B9C1845EB993A7A", "got %X", p.Block())
	}
}

// translate moves published DUKPT PIN blocks to zone PIN keys; the expected blocks come from
// the reference packages with the suite's fill.
func (s *suite) translate() {
	ctx := s.ctx
	field, _ := pinblock.Encode(pinblock.Format4, "1234", "", bytes.NewReader(mustHex(fill4)))
	cases := []struct {
		name, from, to, block, ksn, pan string
		format                          hsm.Format
	}{
		{"translate TDES DUKPT to an AES zone key", "bdk-tdes", "zpk-aes", "1B9C1845EB993A7A", "FFFF9876543210E00001", "4012345678909", hsm.FormatISO0},
		{"translate AES DUKPT to a TDES zone key", "bdk-aes", "zpk-tdes", "A912150391AB65A67E52883D81CE2D15", "123456789012345600000001", "4111111111111111", hsm.FormatISO4},
		{"translate AES DUKPT to an AES zone key", "bdk-aes", "zpk-aes", "52A00503BD34BA1383F6A7EE9FE2547F", "123456789012345600000002", "4111111111111111", hsm.FormatISO4},
	}
	for _, c := range cases {
		if s.skip(c.name, c.from, c.to) {
			continue
		}
		pin, _ := hsm.NewEncryptedPIN(mustHex(c.block), mustHex(c.ksn), c.format)
		got, err := s.m.TranslatePIN(ctx, pin, panOf(c.pan), c.from, c.to)
		var want []byte
		if c.to == "zpk-aes" {
			w, _ := pinblock.EncryptFormat4(mustHex(ZPKAES), [16]byte(field), c.pan)
			want = w[:]
		} else {
			b0, _ := pinblock.EncodeFormat0("1234", c.pan)
			w, _ := pinblock.EncryptTDES(mustHex(ZPKTDES), b0)
			want = w[:]
		}
		s.check(c.name, err, bytes.Equal(got.Block(), want) && got.KSN() == nil, "got %X KSN %X, want %X", got.Block(), got.KSN(), want)
	}
	if s.skip("translate refuses another PAN", "bdk-tdes", "zpk-aes") {
		return
	}
	pin, _ := hsm.NewEncryptedPIN(mustHex("1B9C1845EB993A7A"), mustHex("FFFF9876543210E00001"), hsm.FormatISO0)
	_, err := s.m.TranslatePIN(ctx, pin, panOf("4012345678917"), "bdk-tdes", "zpk-aes")
	if errors.Is(err, hsm.ErrUnsupported) {
		s.check("translate refuses another PAN", err, false, "")
	} else {
		s.check("translate refuses another PAN", nil, err != nil, "translated a block to another PAN")
	}
	f1, _ := hsm.NewEncryptedPIN(mustHex("1B9C1845EB993A7A"), mustHex("FFFF9876543210E00001"), hsm.FormatISO1)
	_, err = s.m.TranslatePIN(ctx, f1, panOf("4012345678909"), "bdk-tdes", "zpk-aes")
	s.expectErr("translate refuses format 1", err, hsm.ErrKeyUsage)
	_, err = s.m.TranslatePIN(ctx, pin, panOf("4012345678909"), "bdk-tdes", "mac-aes")
	s.expectErr("translate refuses a MAC key", err, hsm.ErrKeyUsage)
}

// recorder keeps the bytes of the last read.
type recorder struct {
	r    io.Reader
	last []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.last = append([]byte(nil), p[:n]...)
	return n, err
}

// repeat is an endless reader of b, over and over.
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
