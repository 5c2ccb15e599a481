package iso8583_test

import (
	"context"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/mac"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

const (
	macDialectFile = "dialects/mac-retail.json"
	// The ISO 9797-1 B.4 / X9.19 example key (K || K').
	retailKeyHex = "0123456789ABCDEFFEDCBA9876543210"
	aesKeyHex    = "2B7E151628AED2A6ABF7158809CF4F3C" // SP 800-38B D.1
)

func unhexT(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// macModule returns an hsm Module over the soft backend holding key keyHex as "mac".
func macModule(t testing.TB, alg hsm.Algorithm, keyHex string) *hsm.Module {
	t.Helper()
	m, err := hsm.New(soft.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.LoadKey(context.Background(), hsm.LoadRequest{ID: "mac", Algorithm: alg, Usage: hsm.UsageMAC, Components: [][]byte{unhexT(t, keyHex)}}); err != nil {
		t.Fatal(err)
	}
	return m
}

func loadMACDialect(t testing.TB, edit func(string) string) *iso8583.Dialect {
	t.Helper()
	b, err := os.ReadFile(macDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if edit != nil {
		s = edit(s)
	}
	d, err := iso8583.ParseDialect([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// replaceMAC returns an edit of the dialect file that replaces its "mac" object.
func replaceMAC(t testing.TB, obj string) func(string) string {
	return func(s string) string {
		const old = `"mac": {
		"field": 64,
		"algorithm": "retail",
		"length": 8,
		"covers": "message"
	},`
		if !strings.Contains(s, old) {
			t.Fatalf("dialect file lacks %q", old)
		}
		return strings.Replace(s, old, `"mac": `+obj+`,`, 1)
	}
}

// The MAC of a signed message is the retail MAC, computed independently with the clear key,
// of the packed message up to field 64, with bit 64 set; the signed message verifies, and
// any changed byte, a missing MAC or another key does not.
func TestMACSignAndVerifyMessage(t *testing.T) {
	ctx := context.Background()
	d := loadMACDialect(t, nil)
	mod := macModule(t, hsm.TDES2, retailKeyHex)
	req, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	wire, err := iso8583.Convert(req, d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := iso8583.Pack(wire)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := d.MAC.SignMessage(ctx, mod, "", wire)
	if err != nil {
		t.Fatal(err)
	}
	if wire.Has(64) {
		t.Fatal("SignMessage changed its message")
	}
	if len(signed) != len(plain)+16 {
		t.Fatalf("signed message is %d bytes, want %d + 16 hex characters", len(signed), len(plain))
	}
	body := signed[:len(signed)-16]
	want, err := mac.RetailMAC(unhexT(t, retailKeyHex), body)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(signed[len(signed)-16:]); got != strings.ToUpper(hex.EncodeToString(want)) {
		t.Fatalf("field 64 = %s, want %X", got, want)
	}
	// The bitmap (after the 4-character MTI) has bit 64 set, which the plain one had not.
	if bm := signed[4:20]; bm[15]&1 == 0 || plain[19]&1 != 0 {
		t.Fatalf("bitmap %s (plain %s): bit 64", bm, plain[4:20])
	}

	back, err := iso8583.Unpack(d.Spec, signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.MAC.VerifyMessage(ctx, mod, "", back, signed); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// Each byte of the body matters: change one digit of the amount.
	tampered := []byte(string(signed))
	i := strings.Index(string(tampered), "000000001234")
	tampered[i+11] = '5'
	tb, err := iso8583.Unpack(d.Spec, tampered)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.MAC.VerifyMessage(ctx, mod, "", tb, tampered); !errors.Is(err, iso8583.ErrMACInvalid) || !errors.Is(err, hsm.ErrMACMismatch) {
		t.Fatalf("tampered amount: %v, want ErrMACInvalid", err)
	}
	var fe *iso8583.FieldError
	if err := d.MAC.VerifyMessage(ctx, mod, "", wire, plain); !errors.Is(err, iso8583.ErrMACMissing) || !errors.As(err, &fe) || fe.Field != 64 {
		t.Fatalf("no MAC: %v, want ErrMACMissing naming field 64", err)
	}
	other := macModule(t, hsm.TDES2, "89E88CF7931444F334BD7547FC3F380C")
	if err := d.MAC.VerifyMessage(ctx, other, "", back, signed); !errors.Is(err, iso8583.ErrMACInvalid) {
		t.Fatalf("other key: %v", err)
	}
}

// A message with a secondary bitmap (a reversal's field 90) carries its MAC in field 128.
func TestMACSecondaryBitmapUsesField128(t *testing.T) {
	ctx := context.Background()
	d := loadMACDialect(t, nil)
	mod := macModule(t, hsm.TDES2, retailKeyHex)
	rm, err := reversalOf(t, testAuth(t), 43).Message()
	if err != nil {
		t.Fatal(err)
	}
	wire, err := iso8583.Convert(rm, d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := d.MAC.SignMessage(ctx, mod, "", wire)
	if err != nil {
		t.Fatal(err)
	}
	back, err := iso8583.Unpack(d.Spec, signed)
	if err != nil {
		t.Fatal(err)
	}
	if back.Has(64) || !back.Has(128) {
		t.Fatal("the reversal's MAC is not in field 128 alone")
	}
	want, _ := mac.RetailMAC(unhexT(t, retailKeyHex), signed[:len(signed)-16])
	if v, _ := back.GetBytes(128); hex.EncodeToString(v) != hex.EncodeToString(want) {
		t.Fatalf("field 128 = %X, want %X", v, want)
	}
	if err := d.MAC.VerifyMessage(ctx, mod, "", back, signed); err != nil {
		t.Fatal(err)
	}
}

// Elavon's style: the MAC covers the packed values of listed fields; AES-CMAC, 4 bytes.
func TestMACFieldListAESCMAC(t *testing.T) {
	ctx := context.Background()
	d := loadMACDialect(t, func(s string) string {
		s = replaceMAC(t, `{"field": 64, "algorithm": "aes-cmac", "length": 4, "covers": [2, 3, 4, 11, 38, 39]}`)(s)
		for _, name := range []string{`code"`, `code (secondary)"`} {
			s = strings.Replace(s, `"length": 8,
			"description": "message authentication `+name, `"length": 4,
			"description": "message authentication `+name, 1)
		}
		return s
	})
	mod := macModule(t, hsm.AES128, aesKeyHex)
	wire, err := iso8583.Convert(mustMsg(t, testAuth(t)), d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := d.MAC.SignMessage(ctx, mod, "", wire)
	if err != nil {
		t.Fatal(err)
	}
	// 2 (LL + 16 digits), 3, 4, 11 as on the wire; 38 and 39 absent.
	data := "16" + approvedPAN + "000000" + "000000001234" + "000042"
	b, err := aes.NewCipher(unhexT(t, aesKeyHex))
	if err != nil {
		t.Fatal(err)
	}
	want := mac.CMAC(b, []byte(data))[:4]
	if got := string(signed[len(signed)-8:]); got != strings.ToUpper(hex.EncodeToString(want)) {
		t.Fatalf("MAC %s, want %X", got, want)
	}
	back, err := iso8583.Unpack(d.Spec, signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.MAC.VerifyMessage(ctx, mod, "", back, signed); err != nil {
		t.Fatal(err)
	}
	// A field outside the list may change: field 41.
	s := strings.Replace(string(signed), "TERM0001", "TERM0002", 1)
	back, _ = iso8583.Unpack(d.Spec, []byte(s))
	if err := d.MAC.VerifyMessage(ctx, mod, "", back, []byte(s)); err != nil {
		t.Fatalf("field 41 is not MACed: %v", err)
	}
}

func mustMsg(t testing.TB, a iso8583.Authorization) *iso8583.Message {
	t.Helper()
	m, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A dialect file's impossible MAC is refused, naming the setting and the field.
func TestMACDialectErrors(t *testing.T) {
	for _, tc := range []struct {
		name, obj string
		edit      func(string) string
		setting   string
		says      string
	}{
		{name: "field 63", obj: `{"field": 63, "algorithm": "retail"}`, setting: "mac.field", says: "64 or 128"},
		{name: "no algorithm", obj: `{"field": 64}`, setting: "mac.algorithm", says: "required"},
		{name: "unknown algorithm", obj: `{"field": 64, "algorithm": "x9.9"}`, setting: "mac.algorithm", says: "x9.9"},
		{name: "wrong length", obj: `{"field": 64, "algorithm": "retail", "length": 4}`, setting: "mac.field", says: "field 64 must be fixed length 4"},
		{name: "retail 16", obj: `{"field": 64, "algorithm": "retail", "length": 16}`, setting: "mac.length", says: "4 to 8"},
		{name: "covers 64", obj: `{"field": 128, "algorithm": "retail", "covers": [2, 64]}`, setting: "mac.covers", says: "field 64"},
		{name: "covers junk", obj: `{"field": 64, "algorithm": "retail", "covers": "all"}`, setting: "mac.covers", says: "message"},
		{name: "mti", obj: `{"field": 64, "algorithm": "retail", "mtis": ["0210"]}`, setting: "mac.mtis", says: "0210"},
		{name: "unknown key", obj: `{"field": 64, "algorithm": "retail", "key": "x"}`, setting: "mac", says: "unknown field"},
		{name: "failure code", obj: `{"field": 64, "algorithm": "retail", "failure_code": "A"}`, setting: "mac.failure_code", says: "2 characters"},
		{name: "field 64 missing", obj: `{"field": 64, "algorithm": "retail"}`, setting: "mac.field", says: "field 64 is not defined",
			edit: func(s string) string { return strings.Replace(s, `"64": {`, `"99x": {`, 1) }},
		{name: "field 128 text", obj: `{"field": 128, "algorithm": "retail"}`, setting: "mac.field", says: "field 128 must be binary",
			edit: func(s string) string {
				return strings.Replace(s, `"type": "Binary",
			"length": 8,
			"description": "message authentication code (secondary)",
			"enc": "HexToASCII",
			"prefix": "ASCII.Fixed",
			"class": "b"`, `"type": "String",
			"length": 8,
			"description": "message authentication code (secondary)",
			"enc": "ASCII",
			"prefix": "ASCII.Fixed"`, 1)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(macDialectFile)
			if err != nil {
				t.Fatal(err)
			}
			s := replaceMAC(t, tc.obj)(string(b))
			if tc.edit != nil {
				s = tc.edit(s)
				s = strings.Replace(s, `"99x": {`, `"99": {`, 1)
			}
			_, err = iso8583.ParseDialect([]byte(s))
			var de *iso8583.DialectError
			if !errors.As(err, &de) || de.Setting != tc.setting || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v; want setting %q saying %q", err, tc.setting, tc.says)
			}
		})
	}
	// "x9.19" is the retail MAC.
	d := loadMACDialect(t, replaceMAC(t, `{"field": 64, "algorithm": "x9.19"}`))
	if d.MAC.Algorithm != iso8583.MACRetail || d.MAC.Length != 8 || d.MAC.FailureCode != "96" || d.MAC.Covers != nil {
		t.Fatalf("x9.19: %+v", d.MAC)
	}
}

// macHost runs hostsim on loopback with the MAC dialect and its own Module over the soft
// backend holding hostKey; tamper corrupts the MACs of its 0210s.
func macHost(t *testing.T, hostKey string, tamper bool) (*hostsim.Server, string) {
	t.Helper()
	opts := hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }, Dialect: loadMACDialect(t, nil),
		MAC: macModule(t, hsm.TDES2, hostKey)}
	if tamper {
		opts.TamperMAC = func(req *iso8583.Message) bool { mti, _ := req.GetMTI(); return mti == "0200" }
	}
	srv, err := hostsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	return srv, listenHost(t, srv)
}

// macClient is a client of the MAC dialect with the test key.
func macClient(t *testing.T, addr string, signOn bool) *iso8583.Client {
	o := iso8583.ClientOptions{Addr: addr, Dialect: loadMACDialect(t, nil), MAC: macModule(t, hsm.TDES2, retailKeyHex)}
	if signOn {
		o.SignOn, o.TerminalID, o.NextSTAN, o.Now = true, "TERM0001", stanCounter(500), func() time.Time { return fixedUTC }
	}
	return newClient(t, o)
}

// Over the link: sign-on, sale and reversal all MACed and verified at the host; the
// responses verified at the client.
func TestMACLinkSaleAndReversal(t *testing.T) {
	srv, addr := macHost(t, retailKeyHex, false)
	c := macClient(t, addr, true)
	a := testAuth(t)
	resp, err := c.Send(ctxTimeout(t, 5*time.Second), mustMsg(t, a))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := iso8583.ParseAuthResponse(resp); err != nil || !r.Approved() {
		t.Fatalf("response %+v, %v", r, err)
	}
	rm, err := reversalOf(t, a, 43).Message()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctxTimeout(t, 5*time.Second), rm); err != nil {
		t.Fatal(err)
	}
	if good, bad := srv.MACStats(); good != 3 || bad != 0 {
		t.Fatalf("host verified %d MACs, %d failed; want 3 (sign-on, sale, reversal) and 0", good, bad)
	}
	if s := c.Stats(); s.BadMACs != 0 {
		t.Fatalf("client: %d bad MACs", s.BadMACs)
	}
}

// A response whose MAC does not verify is no answer: the outcome is unknown.
func TestMACLinkTamperedResponseIsOutcomeUnknown(t *testing.T) {
	srv, addr := macHost(t, retailKeyHex, true)
	c := macClient(t, addr, false)
	_, err := c.Send(ctxTimeout(t, 5*time.Second), mustMsg(t, testAuth(t)))
	if !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, iso8583.ErrMACInvalid) {
		t.Fatalf("err %v; want ErrOutcomeUnknown and ErrMACInvalid", err)
	}
	if ch := srv.Charges(); len(ch) != 1 || !ch[0].Approved {
		t.Fatalf("the host approved the sale it answered: %v", ch)
	}
	if s := c.Stats(); s.BadMACs != 1 {
		t.Fatalf("BadMACs %d, want 1", s.BadMACs)
	}
}

// A host with another key refuses the sale's MAC with the dialect's failure code (nothing
// charged); its answer, MACed under its key, does not verify at the client either.
func TestMACLinkWrongKey(t *testing.T) {
	srv, addr := macHost(t, "89E88CF7931444F334BD7547FC3F380C", false)
	_, err := macClient(t, addr, false).Send(ctxTimeout(t, 5*time.Second), mustMsg(t, testAuth(t)))
	if !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, iso8583.ErrMACInvalid) {
		t.Fatalf("err %v", err)
	}
	if good, bad := srv.MACStats(); good != 0 || bad != 1 {
		t.Fatalf("host: %d verified, %d failed", good, bad)
	}
	if ch := srv.Charges(); len(ch) != 0 {
		t.Fatalf("charged on a bad MAC: %v", ch)
	}
}

// A client of a MAC dialect needs a MACer; one without a MAC dialect refuses one.
func TestMACClientOptions(t *testing.T) {
	if _, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "127.0.0.1:1", Dialect: loadMACDialect(t, nil)}); err == nil || !strings.Contains(err.Error(), "MAC is required") {
		t.Fatalf("no MACer: %v", err)
	}
	if _, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "127.0.0.1:1", MAC: macModule(t, hsm.TDES2, retailKeyHex)}); err == nil {
		t.Fatal("a MACer without a MAC dialect was accepted")
	}
	if _, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Dialect: loadMACDialect(t, nil)}); err == nil {
		t.Fatal("hostsim: a MAC dialect without a MACer was accepted")
	}
}

// BenchmarkMACSale: the typical sale packed on the MAC dialect, alone and with its retail
// MAC computed by an hsm Module over the soft backend. The difference is a MAC'd sale's
// added time (issue 17: at most 50 µs).
func BenchmarkMACSale(b *testing.B) {
	ctx := context.Background()
	d := loadMACDialect(b, nil)
	mod := macModule(b, hsm.TDES2, retailKeyHex)
	wire, err := iso8583.Convert(mustMsg(b, typicalSale(b)), d.Spec)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("pack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := iso8583.Pack(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pack+mac", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.MAC.SignMessage(ctx, mod, "", wire); err != nil {
				b.Fatal(err)
			}
		}
	})
	signed, err := d.MAC.SignMessage(ctx, mod, "", wire)
	if err != nil {
		b.Fatal(err)
	}
	back, err := iso8583.Unpack(d.Spec, signed)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := d.MAC.VerifyMessage(ctx, mod, "", back, signed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
