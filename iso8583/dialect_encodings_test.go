package iso8583_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/posd-dev/posd/iso8583"
)

// codedDialect is a dialect file of MTI, bitmap and the given fields (JSON members).
func codedDialect(mti, bitmap string, fields ...string) string {
	return `{"name": "t", "fields": {` + strings.Join(append([]string{`"0": ` + mti, `"1": ` + bitmap}, fields...), ", ") + `}}`
}

const (
	ebcdicMTI    = `{"type": "String", "length": 4, "enc": "ebcdic", "prefix": "EBCDIC.Fixed", "class": "n"}`
	binaryBitmap = `{"type": "Bitmap", "length": 8, "enc": "binary", "prefix": "Binary.Fixed"}`
)

// EBCDIC fields and EBCDIC length prefixes put code page 1047 bytes on the wire, checked
// by hand, and read back to the same values; a byte that is not a character of the
// field's class is refused.
func TestEBCDICFieldsWireForm(t *testing.T) {
	d, err := iso8583.ParseDialect([]byte(codedDialect(ebcdicMTI, binaryBitmap,
		`"2": {"type": "Numeric", "length": 19, "enc": "EBCDIC", "prefix": "EBCDIC.LL"}`,
		`"41": {"type": "String", "length": 8, "enc": "EBCDIC1047", "prefix": "EBCDIC.Fixed", "padding": {"type": "Right", "pad": " "}}`,
		`"45": {"type": "Track1", "length": 76, "enc": "ebcdic", "prefix": "ebcdic.LL"}`,
	)))
	if err != nil {
		t.Fatal(err)
	}
	m := newMsgOn(t, d.Spec, "0200")
	for id, v := range map[int]string{2: "4761739001010010", 41: "T1", 45: "B4761^A/B^30"} {
		if err := m.Field(id, v); err != nil {
			t.Fatal(err)
		}
	}
	wire, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	want := "f0f2f0f0" + // MTI "0200"
		"4000000000880000" + // bitmap: 2 | 41 45
		"f1f6" + "f4f7f6f1f7f3f9f0f0f1f0f1f0f0f1f0" + // 2: LL "16", the digits
		"e3f1404040404040" + // 41: "T1" and 6 spaces
		"f1f2" + "c2f4f7f6f1" + "5f" + "c161c2" + "5f" + "f3f0" // 45: '^' is 0x5F and '/' 0x61 in code page 1047
	if got := hex.EncodeToString(wire); got != want {
		t.Fatalf("wire\n got %s\nwant %s", got, want)
	}
	back, err := iso8583.Unpack(d.Spec, wire)
	if err != nil {
		t.Fatal(err)
	}
	for id, v := range map[int]string{0: "0200", 2: "4761739001010010", 41: "T1", 45: "B4761^A/B^30"} {
		if got, _ := back.GetString(id); got != v {
			t.Errorf("field %d read back %q, want %q", id, got, v)
		}
	}
	// An ASCII digit where an EBCDIC one belongs: not a character of class n in code page
	// 1047 (0x31 is a control character there), nor an EBCDIC length prefix.
	bad := bytes.Clone(wire)
	bad[12+2] = '4'
	if _, err := iso8583.Unpack(d.Spec, bad); !errors.Is(err, iso8583.ErrInvalidCharacter) {
		t.Errorf("ASCII digit in an EBCDIC field: err = %v", err)
	}
	bad = bytes.Clone(wire)
	bad[12] = '1'
	if _, err := iso8583.Unpack(d.Spec, bad); !errors.Is(err, iso8583.ErrInvalidLength) {
		t.Errorf("ASCII length prefix: err = %v", err)
	}
}

// A composite field with positional subfields and one of BER-TLV subfields pack as moov
// packs them, read back subfield by subfield, and convert from and to the default
// dialect's text and binary fields; an unknown EMV tag is kept, not dropped.
func TestCompositeFields(t *testing.T) {
	d, err := iso8583.ParseDialect([]byte(codedDialect(ebcdicMTI, binaryBitmap,
		`"48": {"type": "Composite", "length": 99, "prefix": "ASCII.LL", "tag": {"sort": "StringsByInt"}, "subfields": {
			"1": {"type": "String", "length": 2, "enc": "ASCII", "prefix": "ASCII.Fixed", "class": "n"},
			"2": {"type": "String", "length": 10, "enc": "ASCII", "prefix": "ASCII.LL"}}}`,
		`"55": {"type": "Composite", "length": 255, "prefix": "Binary.L", "tag": {"enc": "BerTLVTag", "sort": "StringsByHex",
			"skipUnknownTLVTags": true, "storeUnknownTLVTags": true}, "subfields": {
			"9F26": {"type": "Binary", "length": 8, "enc": "Binary", "prefix": "BerTLV"},
			"9F27": {"type": "Binary", "length": 1, "enc": "Binary", "prefix": "BerTLV"}}}`,
	)))
	if err != nil {
		t.Fatal(err)
	}
	logical := newMsgOn(t, iso8583.DefaultSpec(), "0200")
	if err := logical.Field(48, "0705HELLO"); err != nil {
		t.Fatal(err)
	}
	icc := tlvBytes(t, "9F27", "80", "9F26", "0102030405060708", "9F36", "0042") // 9F36 is not in the dialect
	if err := logical.BinaryField(55, icc); err != nil {
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
	sorted := "9f26080102030405060708" + "9f270180" + "9f36020042"                           // moov packs tags in hexadecimal order
	want := "f0f2f0f0" + "0000000000010200" + hex.EncodeToString([]byte("09"+"0705HELLO")) + // ASCII LL counts bytes
		"14" + sorted // binary L: 20 bytes
	if got := hex.EncodeToString(wire); got != want {
		t.Fatalf("wire\n got %s\nwant %s", got, want)
	}
	back, err := iso8583.Unpack(d.Spec, wire)
	if err != nil {
		t.Fatal(err)
	}
	var f48 struct {
		Kind string `iso8583:"1"`
		Text string `iso8583:"2"`
	}
	if err := back.Composite(48).Unmarshal(&f48); err != nil || f48.Kind != "07" || f48.Text != "HELLO" {
		t.Errorf("field 48 subfields %+v (%v)", f48, err)
	}
	if b, err := back.GetBytes(55); err != nil || hex.EncodeToString(b) != sorted {
		t.Errorf("field 55 read back %x (%v), want %s", b, err, sorted)
	}
	// And back to the default dialect, as posd reads responses.
	again, err := iso8583.Convert(back, iso8583.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := again.GetString(48); v != "0705HELLO" {
		t.Errorf("field 48 in the default dialect %q", v)
	}
	if b, _ := again.GetBytes(55); hex.EncodeToString(b) != sorted {
		t.Errorf("field 55 in the default dialect %x", b)
	}
	// A subfield that does not fit its class is a FieldError naming field 48.
	if err := logical.Field(48, "A705HELLO"); err != nil {
		t.Fatal(err)
	}
	_, err = iso8583.Convert(logical, d.Spec)
	var fe *iso8583.FieldError
	if !errors.As(err, &fe) || fe.Field != 48 {
		t.Errorf("subfield 1 not n: err = %v", err)
	}
}

// Impossible encodings and combinations are refused, naming the field and the key.
func TestDialectEncodingErrorsNameTheSetting(t *testing.T) {
	f := func(fields ...string) string { return codedDialect(ebcdicMTI, binaryBitmap, fields...) }
	const pos = `"tag": {"sort": "StringsByInt"}`
	tests := []dialectErrorCase{
		{"unknown encoding", f(`"3": {"type": "Numeric", "length": 6, "enc": "EBCDIC500", "prefix": "EBCDIC.Fixed"}`), "fields.3.enc"},
		{"unknown prefix kind", f(`"2": {"type": "Numeric", "length": 19, "enc": "EBCDIC", "prefix": "Morse.LL"}`), "fields.2.prefix"},
		{"EBCDIC bitmap", codedDialect(ebcdicMTI, `{"type": "Bitmap", "length": 8, "enc": "EBCDIC", "prefix": "EBCDIC.Fixed"}`), "fields.1.enc"},
		{"BCD letters", f(`"41": {"type": "String", "length": 8, "enc": "bcd", "prefix": "BCD.Fixed"}`), "fields.41.enc"},
		{"EBCDIC b field", f(`"52": {"type": "Binary", "length": 8, "enc": "EBCDIC", "prefix": "Binary.Fixed"}`), "fields.52.enc"},
		{"composite MTI", codedDialect(`{"type": "Composite", "length": 4, "prefix": "ASCII.Fixed", `+pos+`, "subfields": {"1": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"}}}`, binaryBitmap), "fields.0.type"},
		{"subfields without Composite", f(`"48": {"type": "String", "length": 9, "prefix": "ASCII.LL", ` + pos + `, "subfields": {}}`), "fields.48.type"},
		{"composite without tag", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", "subfields": {"1": {}}}`), "fields.48.tag"},
		{"composite with enc", f(`"48": {"type": "Composite", "enc": "ASCII", "length": 9, "prefix": "ASCII.LL", ` + pos + `, "subfields": {}}`), "fields.48"},
		{"composite with bitmap", f(`"48": {"type": "Composite", "bitmap": {}, "length": 9, "prefix": "ASCII.LL", ` + pos + `}`), "fields.48.bitmap"},
		{"no subfields", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", ` + pos + `, "subfields": {}}`), "fields.48.subfields"},
		{"unknown sort", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", "tag": {"sort": "ByName"}, "subfields": {"1": {}}}`), "fields.48.tag.sort"},
		{"unknown tag enc", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", "tag": {"enc": "Zebra", "length": 2, "sort": "StringsByInt"}, "subfields": {"1": {}}}`), "fields.48.tag.enc"},
		{"tag enc without length", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", "tag": {"enc": "ASCII", "sort": "StringsByInt"}, "subfields": {"1": {}}}`), "fields.48.tag.length"},
		{"skip without store", f(`"55": {"type": "Composite", "length": 99, "prefix": "Binary.L", "tag": {"enc": "BerTLVTag", "sort": "StringsByHex", "skipUnknownTLVTags": true}, "subfields": {"9F26": {}}}`), "fields.55.tag.skipUnknownTLVTags"},
		{"positional key not a number", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", ` + pos + `, "subfields": {"a": {}}}`), "fields.48.subfields.a"},
		{"subfield unknown encoding", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", ` + pos + `, "subfields": {"1": {"type": "String", "length": 2, "enc": "UTF8", "prefix": "ASCII.Fixed"}}}`), "fields.48.subfields.1.enc"},
		{"subfield BCD letters", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", ` + pos + `, "subfields": {"1": {"type": "String", "length": 2, "enc": "BCD", "prefix": "ASCII.Fixed"}}}`), "fields.48.subfields.1.enc"},
		{"nested composite", f(`"48": {"type": "Composite", "length": 9, "prefix": "ASCII.LL", ` + pos + `, "subfields": {"1": {"type": "Composite"}}}`), "fields.48.subfields.1.type"},
		{"BER-TLV subfield without BerTLV prefix", f(`"55": {"type": "Composite", "length": 99, "prefix": "Binary.L", "tag": {"enc": "BerTLVTag", "sort": "StringsByHex"}, "subfields": {"9F26": {"type": "Binary", "length": 8, "enc": "Binary", "prefix": "Binary.Fixed"}}}`), "fields.55.subfields.9F26.prefix"},
		{"BER-TLV subfield text", f(`"55": {"type": "Composite", "length": 99, "prefix": "Binary.L", "tag": {"enc": "BerTLVTag", "sort": "StringsByHex"}, "subfields": {"9F26": {"type": "String", "length": 8, "enc": "ASCII", "prefix": "BerTLV"}}}`), "fields.55.subfields.9F26.type"},
		{"BER-TLV tag not hex", f(`"55": {"type": "Composite", "length": 99, "prefix": "Binary.L", "tag": {"enc": "BerTLVTag", "sort": "StringsByHex"}, "subfields": {"9G26": {"type": "Binary", "length": 8, "enc": "Binary", "prefix": "BerTLV"}}}`), "fields.55.subfields.9G26"},
		{"composite length over prefix", f(`"48": {"type": "Composite", "length": 100, "prefix": "ASCII.LL", ` + pos + `, "subfields": {"1": {}}}`), "fields.48.length"},
	}
	dialectErrorsNameTheSetting(t, tests)
}
