package iso8583_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

const bcdDialectFile = "testdata/dialects/bcd87.json"

func loadBCDDialect(t testing.TB) *iso8583.Dialect {
	t.Helper()
	d, err := iso8583.LoadDialect(bcdDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The binary dialect puts the same logical message on the wire in BCD and binary; the
// bytes are checked by hand.
func TestBCDDialectWireForm(t *testing.T) {
	d := loadBCDDialect(t)
	if d.Name != "ISO 8583:1987 binary (test dialect)" {
		t.Errorf("name %q", d.Name)
	}
	a := testAuth(t)
	a.PINBlock = []byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A}
	a.KSN = "FFFF9876543210E00001"
	a.Field55 = []byte{0x9F, 0x26, 0x02, 0xAB, 0xCD}
	logical, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	m, err := iso8583.Convert(logical, d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	want := "0200" + // MTI in BCD
		"723C040000C09204" + // bitmap: 2 3 4 7 | 11 12 13 14 | 22 | 41 42 | 49 52 55 | 62
		"16" + "4761739001010010" + // field 2: BCD LL 16, 8 bytes
		"000000" + "000000001234" + "0314150926" + "000042" + "160926" + "0314" + "3012" +
		"0012" + // field 22, n3 in BCD: left pad nibble
		hex.EncodeToString([]byte("TERM0001")) + hex.EncodeToString([]byte("MERCHANT0000001")) +
		"0978" + // field 49
		"1b9c1845eb993a7a" + // field 52 raw
		"0005" + "9f2602abcd" + // field 55: BCD LLL counts bytes
		"0020" + hex.EncodeToString([]byte("FFFF9876543210E00001"))
	if got := hex.EncodeToString(wire); got != strings.ToLower(want) {
		t.Fatalf("wire\n %s\nwant\n %s", got, strings.ToLower(want))
	}
	back, err := iso8583.Unpack(d.Spec, wire)
	if err != nil {
		t.Fatal(err)
	}
	for id := range logical.Present() {
		w, _ := logical.GetBytes(id)
		g, err := back.GetBytes(id)
		if err != nil || !bytes.Equal(g, w) {
			t.Errorf("field %d = %q after the round trip, want %q", id, g, w)
		}
	}
	if _, err := iso8583.Unpack(d.Spec, append(wire, 0)); !errors.Is(err, iso8583.ErrTrailingBytes) {
		t.Errorf("trailing byte: err = %v", err)
	}
	// An odd BCD value padded with F (as some hosts send) is read; a bad pad nibble is not.
	f22 := bytes.Index(wire, []byte{0x00, 0x12, 'T'})
	alt := bytes.Clone(wire)
	alt[f22] = 0xF0
	if m, err := iso8583.Unpack(d.Spec, alt); err != nil {
		t.Errorf("F pad nibble: %v", err)
	} else if v, _ := m.GetString(22); v != "012" {
		t.Errorf("field 22 = %q", v)
	}
	alt[f22] = 0x50
	var fe *iso8583.FieldError
	if _, err := iso8583.Unpack(d.Spec, alt); !errors.As(err, &fe) || fe.Field != 22 || !errors.Is(err, iso8583.ErrInvalidCharacter) {
		t.Errorf("pad nibble 5: err = %v", err)
	}
	// A letter nibble in a numeric BCD field.
	alt = bytes.Clone(wire)
	alt[bytes.Index(wire, []byte{0x03, 0x14, 0x15, 0x09})] = 0x0A
	if _, err := iso8583.Unpack(d.Spec, alt); !errors.As(err, &fe) || fe.Field != 7 || !errors.Is(err, iso8583.ErrInvalidCharacter) {
		t.Errorf("nibble A in field 7: err = %v", err)
	}
}

// Track 2 in BCD carries '=' as nibble D; an odd length gets a pad nibble.
func TestBCDDialectTrack2(t *testing.T) {
	d := loadBCDDialect(t)
	odd := testTrack2[:33]
	m := newMsg(t, "0200", map[int]string{35: odd})
	m, err := iso8583.Convert(m, d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	// 33 characters: BCD LL "33", then a 0 pad nibble and the digits.
	want := "0200" + "0000000020000000" + "33" + "04761739001010010d3012101000000000"
	if got := hex.EncodeToString(wire); got != want {
		t.Fatalf("wire %s\nwant %s", got, want)
	}
	back, err := iso8583.Unpack(d.Spec, wire)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := back.GetString(35); v != odd {
		t.Fatalf("track 2 = %q", v)
	}
}

// A sale, a reversal and a sign-on through the binary dialect read from its file, client and
// simulated host each loading it: BCD length header, TPDU, binary bitmap.
func TestBCDDialectSaleEndToEnd(t *testing.T) {
	dc, dh := loadBCDDialect(t), loadBCDDialect(t)
	var rec wireRecorder
	srv, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }, Dialect: dh})
	if err != nil {
		t.Fatal(err)
	}
	addr := listenHost(t, srv)
	c := newClient(t, iso8583.ClientOptions{Addr: addr, Dialect: dc, SignOn: true, TerminalID: "TERM0001",
		NextSTAN: stanCounter(500), Now: func() time.Time { return fixedUTC },
		Dial: rec.dial})
	a := typicalSale(t)
	req, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Send(ctxTimeout(t, 5*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := iso8583.ParseAuthResponse(resp)
	if err != nil || !r.Approved() || r.STAN != a.STAN {
		t.Fatalf("response %+v, %v", r, err)
	}
	if !srv.SignedOn("TERM0001") {
		t.Error("the client did not sign on through the dialect")
	}
	rev := reversalOf(t, a, 43)
	rm, err := rev.Message()
	if err != nil {
		t.Fatal(err)
	}
	resp, err = c.Send(ctxTimeout(t, 5*time.Second), rm)
	if err != nil {
		t.Fatal(err)
	}
	if rr, err := iso8583.ParseResponse(resp); err != nil || rr.ResponseCode != "00" || rr.MTI != "0410" {
		t.Fatalf("reversal response %+v, %v", rr, err)
	}
	ch := srv.Charges()
	if len(ch) != 1 || !ch[0].Approved || !ch[0].Reversed || ch[0].Charged() {
		t.Fatalf("charges %v", ch)
	}
	// What went out: a BCD length, then the TPDU, then a BCD MTI.
	c.Close()
	out := rec.bytes()
	if len(out) < 9 || !bytes.Equal(out[2:7], []byte{0x60, 0x00, 0x01, 0x00, 0x00}) || !bytes.Equal(out[7:9], []byte{0x08, 0x00}) {
		t.Fatalf("first frame starts % X", out[:min(len(out), 12)])
	}
	n := int(out[0]>>4)*1000 + int(out[0]&0x0f)*100 + int(out[1]>>4)*10 + int(out[1]&0x0f)
	if n < 5 || 2+n > len(out) {
		t.Fatalf("BCD length %d", n)
	}
}

func TestLoadDialectErrorsNameTheSetting(t *testing.T) {
	good, err := os.ReadFile(bcdDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		s := string(good)
		if !strings.Contains(s, old) {
			t.Fatalf("test data lacks %q", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	f2 := `"2": {
			"type": "Numeric",
			"length": 19,`
	tests := []dialectErrorCase{
		{"not JSON", "{", ""},
		{"unknown top key", edit(`"name"`, `"nmae": "x", "name"`), ""},
		{"no fields", `{"name": "x", "fields": {}}`, "fields"},
		{"old moov keys", edit(`"0": {`, `"Field000": {`), "fields.Field000"},
		{"key out of range", edit(`"128": {`, `"129": {`), "fields.129"},
		{"unknown encoding", edit(`"enc": "BCD",
			"prefix": "BCD.LL"`, `"enc": "Zebra",
			"prefix": "BCD.LL"`), "fields.2.enc"},
		{"EBCDIC for a b field", edit(`"enc": "Binary",
			"prefix": "BCD.LLL"`, `"enc": "EBCDIC",
			"prefix": "BCD.LLL"`), "fields.55.enc"},
		{"unknown prefix", edit(`"prefix": "BCD.LL"`, `"prefix": "BCD.LLLLL"`), "fields.2.prefix"},
		{"prefix without kind", edit(`"prefix": "BCD.LL"`, `"prefix": "LL"`), "fields.2.prefix"},
		{"unknown type", edit(f2, `"2": {
			"type": "Numerical",
			"length": 19,`), "fields.2.type"},
		{"length does not fit", edit(f2, `"2": {
			"type": "Numeric",
			"length": 190,`), "fields.2.length"},
		{"zero length", edit(f2, `"2": {
			"type": "Numeric",
			"length": 0,`), "fields.2.length"},
		{"unknown key in a field", edit(f2, `"2": {
			"colour": "red",
			"type": "Numeric",
			"length": 19,`), "fields.2"},
		{"composite", edit(f2, `"2": {
			"subfields": {},
			"type": "Numeric",
			"length": 19,`), "fields.2.type"},
		{"bitmap of 16 bytes", edit(`"type": "Bitmap",
			"length": 8,`, `"type": "Bitmap",
			"length": 16,`), "fields.1.length"},
		{"no MTI", strings.Replace(edit(`"0": {`, `"0x": {`), `"0x": {`, `"130": {`, 1), "fields.130"},
		{"BCD for letters", edit(`"enc": "ASCII",
			"prefix": "ASCII.Fixed"`, `"enc": "BCD",
			"prefix": "ASCII.Fixed"`), "fields.28.enc"},
		{"bad class", edit(f2, `"2": {
			"class": "q",
			"type": "Numeric",
			"length": 19,`), "fields.2.class"},
		{"bad padding", edit(`"pad": " "`, `"pad": "ab"`), "fields.41.padding.pad"},
		{"characters counted of raw bytes", edit(`"55": {
			"type": "Binary",`, `"55": {
			"prefix_unit": "characters",
			"type": "Binary",`), "fields.55.prefix_unit"},
		{"unknown prefix unit", edit(`"55": {
			"type": "Binary",`, `"55": {
			"prefix_unit": "nibbles",
			"type": "Binary",`), "fields.55.prefix_unit"},
		{"bad framing length", edit(`"length": "bcd2"`, `"length": "bcd4"`), "framing.length"},
		{"bad TPDU", edit(`"tpdu": "6000010000"`, `"tpdu": "60000100"`), "framing.tpdu"},
		{"unknown framing key", edit(`"tpdu": "6000010000"`, `"tpdu": "6000010000", "speed": 9600`), ""},
		{"trailing data", string(good) + "{}", ""},
		{"entry mode of 2 digits", edit(`"name"`, `"entry_modes": {"contactless_emv": "07"}, "name"`), "entry_modes.contactless_emv"},
		{"entry mode with a letter", edit(`"name"`, `"entry_modes": {"contactless_emv": "072", "contactless_magstripe": "91a"}, "name"`), "entry_modes.contactless_magstripe"},
		{"entry mode of 4 digits", edit(`"name"`, `"entry_modes": {"contactless_emv": "0712"}, "name"`), "entry_modes.contactless_emv"},
		{"unknown entry mode", edit(`"name"`, `"entry_modes": {"chip": "051"}, "name"`), "entry_modes"},
		{"entry mode a number", edit(`"name"`, `"entry_modes": {"contactless_emv": 71}, "name"`), "entry_modes"},
	}
	dialectErrorsNameTheSetting(t, tests)
	if _, err := iso8583.LoadDialect(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

// A dialect's entry_modes are read into Dialect.EntryModes; a file without them leaves
// them empty (the terminal's defaults apply).
func TestDialectEntryModes(t *testing.T) {
	good, err := os.ReadFile(bcdDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := iso8583.ParseDialect(good)
	if err != nil {
		t.Fatal(err)
	}
	if d.EntryModes != (iso8583.EntryModes{}) {
		t.Errorf("no entry_modes: EntryModes = %+v, want zero", d.EntryModes)
	}
	s := strings.Replace(string(good), `"name"`, `"entry_modes": {"contactless_emv": "072", "contactless_magstripe": "912"}, "name"`, 1)
	if d, err = iso8583.ParseDialect([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if want := (iso8583.EntryModes{ContactlessEMV: "072", ContactlessMagstripe: "912"}); d.EntryModes != want {
		t.Errorf("EntryModes = %+v, want %+v", d.EntryModes, want)
	}
	s = strings.Replace(string(good), `"name"`, `"entry_modes": {"contactless_magstripe": "912"}, "name"`, 1)
	if d, err = iso8583.ParseDialect([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if want := (iso8583.EntryModes{ContactlessMagstripe: "912"}); d.EntryModes != want {
		t.Errorf("magstripe only: EntryModes = %+v, want %+v", d.EntryModes, want)
	}
}

// The default dialect's framing settings, and the zero FramingConfig, give the default framer.
func TestFramingConfig(t *testing.T) {
	for _, tt := range []struct {
		cfg  iso8583.FramingConfig
		want iso8583.Framer
	}{
		{iso8583.FramingConfig{}, iso8583.BinaryLengthFramer{}},
		{iso8583.FramingConfig{Length: "binary2", MaxFrame: 100}, iso8583.BinaryLengthFramer{MaxFrame: 100}},
		{iso8583.FramingConfig{Length: "ascii4"}, iso8583.LengthFramer{Header: iso8583.HeaderASCII4}},
	} {
		got, err := tt.cfg.Framer()
		if err != nil || !framersEqual(got, tt.want) {
			t.Errorf("%+v: %#v, %v", tt.cfg, got, err)
		}
	}
	got, err := iso8583.FramingConfig{Length: "bcd2", TPDU: "60000A000B"}.Framer()
	if err != nil {
		t.Fatal(err)
	}
	if lf, ok := got.(iso8583.LengthFramer); !ok || lf.Header != iso8583.HeaderBCD2 || !bytes.Equal(lf.TPDU, []byte{0x60, 0, 0x0A, 0, 0x0B}) {
		t.Errorf("bcd2 + TPDU: %#v", got)
	}
	for _, bad := range []iso8583.FramingConfig{{Length: "hex4"}, {TPDU: "6000"}, {TPDU: "60000100zz"}, {MaxFrame: -1}, {Length: "ascii4", MaxFrame: 10000}} {
		var de *iso8583.DialectError
		if _, err := bad.Framer(); !errors.As(err, &de) || !strings.HasPrefix(de.Setting, "framing.") {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
}

func framersEqual(a, b iso8583.Framer) bool {
	la, oka := a.(iso8583.LengthFramer)
	lb, okb := b.(iso8583.LengthFramer)
	if oka && okb {
		return la.Header == lb.Header && bytes.Equal(la.TPDU, lb.TPDU) && la.MaxFrame == lb.MaxFrame
	}
	return a == b
}

// A message that uses a field the target dialect lacks, or that is binary in one and text
// in the other, cannot be converted.
func TestConvertRefusesMismatches(t *testing.T) {
	d, err := iso8583.ParseDialect([]byte(`{"fields": {
		"0": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"},
		"11": {"type": "Numeric", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"52": {"type": "String", "length": 16, "enc": "ASCII", "prefix": "ASCII.Fixed"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var fe *iso8583.FieldError
	m := newMsg(t, "0800", map[int]string{11: "000001", 41: "TERM0001"})
	if _, err := iso8583.Convert(m, d.Spec); !errors.As(err, &fe) || fe.Field != 41 || !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Errorf("field 41: err = %v", err)
	}
	m = newMsg(t, "0800", map[int]string{11: "000001"})
	m.BinaryField(52, make([]byte, 8))
	if _, err := iso8583.Convert(m, d.Spec); !errors.As(err, &fe) || fe.Field != 52 {
		t.Errorf("field 52: err = %v", err)
	}
	m = newMsg(t, "0800", map[int]string{11: "000001"})
	c, err := iso8583.Convert(m, d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := iso8583.Pack(c); err != nil || string(b) != "0800"+"0020000000000000"+"000001" {
		t.Errorf("packed %q, %v", b, err)
	}
	if same, _ := iso8583.Convert(c, d.Spec); same != c {
		t.Error("Convert to the message's own spec made a copy")
	}
}

// moov's own example spec (examples/specs/spec87ascii.json) is refused for its 16-byte
// bitmap, with a reason an operator can act on.
func TestMoovSpec87ASCIIBitmapRefused(t *testing.T) {
	_, err := iso8583.ParseDialect([]byte(`{"name": "ISO 8583 v1987 ASCII", "fields": {
		"0": {"type": "String", "length": 4, "description": "Message Type Indicator", "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 16, "description": "Bitmap", "enc": "HexToASCII", "prefix": "Hex.Fixed"},
		"3": {"type": "Numeric", "length": 6, "description": "Processing Code", "enc": "ASCII", "prefix": "ASCII.Fixed",
		      "padding": {"type": "Left", "pad": "0"}}}}`))
	var de *iso8583.DialectError
	if !errors.As(err, &de) || de.Setting != "fields.1.length" || !strings.Contains(err.Error(), "8 bytes") {
		t.Fatalf("err = %v", err)
	}
	// With the bitmap fixed, the rest of moov's format loads, padding included.
	d, err := iso8583.ParseDialect([]byte(`{"name": "ISO 8583 v1987 ASCII", "fields": {
		"0": {"type": "String", "length": 4, "description": "Message Type Indicator", "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "description": "Bitmap", "enc": "HexToASCII", "prefix": "Hex.Fixed"},
		"3": {"type": "Numeric", "length": 6, "description": "Processing Code", "enc": "ASCII", "prefix": "ASCII.Fixed",
		      "padding": {"type": "Left", "pad": "0"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	m := newMsg(t, "0200", nil)
	m, _ = iso8583.Convert(m, d.Spec)
	m.Field(3, "42")
	b, err := iso8583.Pack(m)
	if err != nil || string(b) != "0200"+"2000000000000000"+"000042" {
		t.Fatalf("packed %q, %v", b, err)
	}
	back, err := iso8583.Unpack(d.Spec, b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := back.GetString(3); v != "000042" {
		t.Errorf("left zero padding is kept when unpacking: %q", v)
	}
}

// listenHost serves srv on 127.0.0.1 until the test ends.
func listenHost(t testing.TB, srv *hostsim.Server) string {
	t.Helper()
	addr, _ := serveOn(t, srv, nil)
	return addr
}

func stanCounter(start uint32) func(context.Context) (uint32, error) {
	ch := make(chan uint32, 1)
	ch <- start
	return func(context.Context) (uint32, error) {
		n := <-ch
		ch <- n + 1
		return n, nil
	}
}

// dialectErrorCase is a dialect file that must be refused, and the setting its error names
// ("" for a file that is not a JSON object of the expected shape).
type dialectErrorCase struct{ name, data, setting string }

// dialectErrorsNameTheSetting loads each case's file and checks that the error is a
// DialectError naming the file and the setting, and that its text names the setting.
func dialectErrorsNameTheSetting(t *testing.T, tests []dialectErrorCase) {
	t.Helper()
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "dialect.json")
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := iso8583.LoadDialect(path)
			var de *iso8583.DialectError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a DialectError", err)
			}
			if de.File != path || de.Setting != tt.setting {
				t.Fatalf("err = %v: file %q setting %q, want setting %q", err, de.File, de.Setting, tt.setting)
			}
			if tt.setting != "" && !strings.Contains(err.Error(), tt.setting+":") {
				t.Errorf("error %q does not name %s", err, tt.setting)
			}
		})
	}
}
