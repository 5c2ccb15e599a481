package hsm_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/hsmtest"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/hsm/tr31"
	"github.com/posd-dev/posd/terminal/card"
)

// TestNothingLeaks drives every operation, the failing ones too, and greps everything a
// Module lets out besides its results (audit events, errors, and the String, GoString,
// LogValue and %v forms of every type) for clear PINs, PANs, PIN blocks, keys, key
// components and sealed plaintext, in hex (either case), base64 and raw.
func TestNothingLeaks(t *testing.T) {
	const thePIN = "7391"
	const thePAN = "4111111111111111"
	plaintext := []byte("SECRET-TRACK2=4111111111111111D2512")
	ctx := context.Background()

	var events []hsm.AuditEvent
	m, err := hsm.New(soft.New(&soft.Options{PINEntry: func(context.Context, hsm.PINRequest) (string, error) { return thePIN, nil }}),
		&hsm.Options{Audit: func(e hsm.AuditEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	var outputs []any
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range hsmtest.Keys() {
		secrets = append(secrets, r.Components...)
		info, err := m.LoadKey(ctx, r)
		keep(err)
		outputs = append(outputs, r, info, info.CheckValue)
	}
	// Two-component load, and a wrong check value (whose error names the real one).
	comp := [][]byte{bytes.Repeat([]byte{0x5A}, 16), bytes.Repeat([]byte{0xC3}, 16)}
	secrets = append(secrets, comp...)
	r := hsm.LoadRequest{ID: "two", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: comp, CheckValue: []byte{1, 2, 3}}
	_, err = m.LoadKey(ctx, r)
	keep(err)
	outputs = append(outputs, r)
	// A mistyped id that is really a key.
	_, err = m.LoadKey(ctx, hsm.LoadRequest{ID: hex.EncodeToString(comp[0]) + " ", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: comp})
	keep(err)

	pan, _ := card.ParsePAN(thePAN)
	for _, id := range []string{"aes-dukpt", "tdes-dukpt", "mac-aes", "nope"} {
		p, err := m.PINBlock(ctx, id, pan, "12.50 EUR")
		keep(err)
		if err == nil {
			secrets = append(secrets, p.Block())
		}
		outputs = append(outputs, p, hsm.PINRequest{KeyID: id, PAN: pan, Format: p.Format()})
	}
	// Translations: published blocks, the right PAN, a wrong PAN, a refused format.
	for _, c := range []struct {
		block, ksn, pan, from, to string
		f                         hsm.Format
	}{
		{"1B9C1845EB993A7A", "FFFF9876543210E00001", "4012345678909", "bdk-tdes", "zpk-aes", hsm.FormatISO0},
		{"1B9C1845EB993A7A", "FFFF9876543210E00001", "4012345678917", "bdk-tdes", "zpk-tdes", hsm.FormatISO0},
		{"1B9C1845EB993A7A", "FFFF9876543210E00001", "4012345678909", "bdk-tdes", "mac-aes", hsm.FormatISO0},
		{"1B9C1845EB993A7A", "FFFF9876543210E00001", "4012345678909", "bdk-tdes", "zpk-aes", hsm.FormatISO1},
	} {
		in, _ := hsm.NewEncryptedPIN(mustHexT(t, c.block), mustHexT(t, c.ksn), c.f)
		p, _ := card.ParsePAN(c.pan)
		secrets = append(secrets, in.Block())
		out, err := m.TranslatePIN(ctx, in, p, c.from, c.to)
		keep(err)
		if err == nil {
			secrets = append(secrets, out.Block())
		}
		outputs = append(outputs, in, out, hsm.TranslateRequest{PIN: in, PAN: p, FromKeyID: c.from, ToKeyID: c.to})
	}
	for _, id := range []string{"mac-aes", "mac-tdes", "data"} {
		mac, err := m.MAC(ctx, id, plaintext)
		keep(err)
		keep(m.VerifyMAC(ctx, id, plaintext, []byte{1, 2, 3, 4}))
		outputs = append(outputs, hsm.MACRequest{KeyID: id, Data: plaintext}, mac != nil)
	}
	sealed, err := m.Seal(ctx, "data", plaintext, []byte("42"))
	keep(err)
	_, err = m.Open(ctx, "data", sealed, []byte("43"))
	keep(err)
	_, err = m.Seal(ctx, "mac-aes", plaintext, []byte("42"))
	keep(err)
	// Imports: a good one, one under the wrong KBPK, an altered one.
	kbpk, _ := hex.DecodeString(hsmtest.KBPKD)
	imported := bytes.Repeat([]byte{0x3C}, 16)
	secrets = append(secrets, imported)
	blk, err := tr31.Wrap(kbpk, tr31.Header{Version: 'D', KeyUsage: "M6", Algorithm: 'A', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'N'}, imported, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []hsm.ImportRequest{
		{ID: "imp", KBPKID: "kbpk-d", Block: blk},
		{ID: "imp2", KBPKID: "kbpk-b", Block: blk},
		{ID: "imp3", KBPKID: "kbpk-d", Block: blk[:40] + "00" + blk[42:]},
		{ID: "imp4", KBPKID: "data", Block: blk},
	} {
		info, err := m.ImportKeyBlock(ctx, req)
		keep(err)
		outputs = append(outputs, req, info)
	}
	if len(errs) < 12 {
		t.Fatalf("only %d failing calls; the test must exercise the error paths", len(errs))
	}

	// Everything that leaves the Module but its results.
	var text strings.Builder
	for _, e := range events {
		fmt.Fprintf(&text, "%v\n%+v\n%#v\n", e, e, e)
	}
	var js bytes.Buffer
	// No time: its nanoseconds can hold any digits, "04173" as well (the PIN field needle).
	log := slog.New(slog.NewJSONHandler(&js, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	for _, e := range errs {
		fmt.Fprintf(&text, "%v\n%+v\n%#v\n", e, e, e)
		log.Info("x", "err", e)
	}
	for _, o := range outputs {
		fmt.Fprintf(&text, "%v\n%+v\n%#v\n%s\n%x\n", o, o, o, o, o)
		log.Info("x", "v", o)
		if lv, ok := o.(slog.LogValuer); ok {
			log.Info("x", "lv", lv.LogValue())
		}
	}
	for _, e := range events {
		log.Info("audit", "event", e)
	}
	all := text.String() + js.String()
	if !strings.Contains(all, "411111******1111") || !strings.Contains(all, "hidden") {
		t.Fatal("the test did not capture the Module's output")
	}
	// The secrets, and the PIN's digits as a format 0 or 4 PIN field would show them.
	needles := []string{thePAN, "4012345678909", "4012345678917", string(plaintext), "SECRET", "041" + thePIN[:2], "44" + thePIN}
	for _, s := range secrets {
		needles = append(needles, strings.ToUpper(hex.EncodeToString(s))[:12], hex.EncodeToString(s)[:12],
			base64.StdEncoding.EncodeToString(s)[:12], string(s))
	}
	for _, n := range needles {
		if i := strings.Index(all, n); i >= 0 {
			lo, hi := max(0, i-60), min(len(all), i+len(n)+20)
			t.Errorf("%q leaked: ...%s...", n, all[lo:hi])
		}
	}
	// The PIN itself, as a word: it must not appear anywhere beside other digits.
	for _, f := range strings.FieldsFunc(all, func(r rune) bool { return r < '0' || r > '9' }) {
		if f == thePIN {
			t.Errorf("the PIN %s appears in the output", thePIN)
		}
	}
	if t.Failed() {
		t.Logf("%d events, %d errors, %d values checked", len(events), len(errs), len(outputs))
	}
}

func mustHexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
