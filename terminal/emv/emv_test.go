package emv_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/posd-dev/posd/terminal/emv"
)

const (
	testPAN = "4761739001010010"
	// A GOC answer as the simulator gives it: DE 55 tags, then 5A, 57, 5F24.
	gocHex = "9F2608C2A1B3D4E5F60718" + "9F270180" + "9F100706010A03A00000" + "9F36020011" +
		"82021C00" + "8407A0000000031010" + "5F340101" + "9F370411223344" + "950500000080 00" +
		"9A03250314" + "9C0100" + "9F0206000000001234" + "9F0306000000000000" + "5F2A020978" +
		"9F1A020250" + "9F3303E0F8C8" + "9F3403420300" + "9F350122" + "9F09020096" +
		"9F1E0853494D3030303031" + "9F410400000001" +
		"5A08476173900101001 0" + "5713476173900101001 0D25122011234000001230F" + "5F2403251231"
)

func gocData(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(gocHex, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSelectEncode(t *testing.T) {
	raw := gocData(t)
	d, err := emv.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 24 || d.Tags()[0] != "9F26" || d.Tags()[23] != "5F24" {
		t.Fatalf("tags %v", d.Tags())
	}
	if v, ok := d.Value("9f02"); !ok || hex.EncodeToString(v) != "000000001234" {
		t.Fatalf("9F02 = %X %v", v, ok)
	}
	back, err := d.Encode()
	if err != nil || !bytes.Equal(back, raw) {
		t.Fatalf("encode differs: %v\n% X\n% X", err, back, raw)
	}
	sel := d.Select("9F27", "5A", "DF01", "9F27")
	if got := strings.Join(sel.Tags(), ","); got != "9F27,5A" {
		t.Fatalf("Select: %s", got)
	}
	if ct, ok := d.CryptogramType(); !ok || ct != emv.ARQC {
		t.Fatalf("cryptogram %v %v", ct, ok)
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		"value past end":      "9F260811",
		"tag cut short":       "9F",
		"tag cut mid":         "9F81",
		"tag of 4 bytes":      "9F81818101 00",
		"no length":           "5A",
		"indefinite length":   "5A80",
		"3-byte length":       "5A83000001 00",
		"8-byte length":       "5A88FFFFFFFFFFFFFFFF",
		"long length short":   "5A82 01",
		"nested too deep":     "7106 7104 7102 7100",
		"bad inner":           "7103 9F2605",
		"overflowing length":  "5A84FFFFFFFF",
		"overflowing length2": "5A84 7FFFFFFF",
	}
	for name, h := range cases {
		b, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := emv.Parse(b); !errors.Is(err, emv.ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
	// Padding between objects is skipped; empty input is empty data.
	d, err := emv.Parse([]byte{0x00, 0x9C, 0x01, 0x00, 0x00, 0x00})
	if err != nil || d.Len() != 1 {
		t.Fatalf("padding: %v %v", d, err)
	}
	if d, err := emv.Parse(nil); err != nil || d.Len() != 0 {
		t.Fatalf("empty: %v", err)
	}
}

func TestBuildDE55(t *testing.T) {
	d, err := emv.Parse(gocData(t))
	if err != nil {
		t.Fatal(err)
	}
	de55, err := emv.BuildDE55(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := emv.Parse(de55)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Tags(), ",") != strings.Join(emv.DE55Tags(), ",") {
		t.Fatalf("DE 55 tags %v", got.Tags())
	}
	if got.Has("5A") || got.Has("57") || got.Has("5F24") {
		t.Fatal("DE 55 carries card data objects outside its tag set")
	}
	// Optional tags may be missing; required ones may not.
	part := d.Select("9F26", "9F27", "9F10", "9F36", "82", "9F37", "95", "9A", "9C", "9F02", "5F2A", "9F1A")
	if _, err := emv.BuildDE55(part); err != nil {
		t.Fatalf("required only: %v", err)
	}
	part = d.Select("9F26", "9F27", "9F10", "9F36", "82", "9F37", "95", "9A", "9C", "9F02", "5F2A")
	_, err = emv.BuildDE55(part)
	var te *emv.TagError
	if !errors.As(err, &te) || te.Tag != "9F1A" || !errors.Is(err, emv.ErrMissingTag) {
		t.Fatalf("missing 9F1A: %v", err)
	}
	if got := emv.GoOnChipTags(); len(got) != 24 || got[21] != "5A" {
		t.Fatalf("GoOnChipTags %v", got)
	}
}

func TestExtractCard(t *testing.T) {
	d, err := emv.Parse(gocData(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := emv.ExtractCard(d)
	if err != nil {
		t.Fatal(err)
	}
	if c.PAN().Digits() != testPAN || c.Expiry().YYMM() != "2512" || c.Track2().Equivalent() != testPAN+"=25122011234000001230" {
		t.Fatalf("card %v expiry %v", c, c.Expiry())
	}
	if psn, ok := c.PANSequence(); !ok || psn != "001" {
		t.Fatalf("PSN %q %v", psn, ok)
	}

	obj := func(tag, h string) emv.Object {
		v, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		return emv.Object{Tag: tag, Value: v}
	}
	build := func(objs ...emv.Object) emv.Data {
		d, err := emv.New(objs...)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	pan := obj("5A", "4761739001010010")
	t2 := obj("57", "4761739001010010D25122011234000001230F")
	exp := obj("5F24", "251231")
	cases := []struct {
		name string
		d    emv.Data
		tag  string
		want error
	}{
		{"PAN only, no expiry", build(pan), "5F24", emv.ErrMissingTag},
		{"no PAN", build(exp), "5A", emv.ErrMissingTag},
		{"PANs differ", build(obj("5A", "4111111111111111"), t2), "5A", emv.ErrInconsistent},
		{"expiry differs", build(t2, obj("5F24", "261231")), "5F24", emv.ErrInconsistent},
		{"bad Luhn", build(obj("5A", "4761739001010011"), exp), "5A", emv.ErrFormat},
		{"bad nibble", build(obj("5A", "47617390010100AF"), exp), "5A", emv.ErrFormat},
		{"digit after padding", build(obj("5A", "476173900101001F1F"), exp), "5A", emv.ErrFormat},
		{"bad track", build(obj("57", "4761739001010010D25F"), exp), "57", emv.ErrFormat},
		{"bad month", build(pan, obj("5F24", "251331")), "5F24", emv.ErrFormat},
		{"PSN two bytes", build(pan, exp, obj("5F34", "0101")), "5F34", emv.ErrFormat},
	}
	for _, tc := range cases {
		_, err := emv.ExtractCard(tc.d)
		var te *emv.TagError
		if !errors.As(err, &te) || te.Tag != tc.tag || !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want tag %s %v", tc.name, err, tc.tag, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "476173") {
			t.Errorf("%s: error shows card digits: %v", tc.name, err)
		}
	}
	// PAN and expiry from 57 alone.
	if c, err := emv.ExtractCard(build(t2)); err != nil || c.PAN().Digits() != testPAN || c.Expiry().YYMM() != "2512" {
		t.Fatalf("57 only: %v %v", c, err)
	}
}

func TestIssuerData(t *testing.T) {
	h := "8A023030" + "910A0102030405060708090A" + "7209 9F180400000001 8600" + "710B 9F180400000002 860200FF" + "9F3602FFFF"
	in, _ := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	out, dropped, err := emv.IssuerData(in)
	if err != nil || dropped != 0 {
		t.Fatal(err, dropped)
	}
	got, _ := emv.Parse(out)
	if strings.Join(got.Tags(), ",") != "91,71,72" {
		t.Fatalf("tags %v", got.Tags())
	}
	if out, _, err := emv.IssuerData(nil); out != nil || err != nil {
		t.Fatal("nil input")
	}
	if _, _, err := emv.IssuerData([]byte{0x91, 0x02, 1, 2}); !errors.Is(err, emv.ErrFormat) {
		t.Fatalf("short 91: %v", err)
	}
	// A script that does not fit is dropped; 91 stays.
	big := append([]byte{0x71, 0x82, 0x01, 0xF4}, bytes.Repeat([]byte{0x86, 0x00}, 250)...)
	out, dropped, err = emv.IssuerData(append(in[4:16:16], big...))
	if err != nil || dropped != 1 {
		t.Fatalf("big script: %v dropped %d", err, dropped)
	}
	if got, _ := emv.Parse(out); strings.Join(got.Tags(), ",") != "91" {
		t.Fatalf("after drop: %v", got.Tags())
	}
}

func TestMasking(t *testing.T) {
	d, err := emv.Parse(gocData(t))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := emv.ExtractCard(d)
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "emv", d, "card", c)
	out := fmt.Sprintf("%v %+v %#v %s %v %#v", d, d, d, d, c, c) + logBuf.String() + emv.Describe(gocData(t))
	for _, secret := range []string{testPAN, "4761739001010010", "2512201123400001230", "C2A1B3D4E5F60718"} {
		if strings.Contains(out, secret) {
			t.Errorf("output shows %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"5A=476173******0010", "57=476173******0010=****", "9F26(8 bytes)", "9F02=000000001234"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := emv.Describe([]byte{0x5A, 0x09, 1}); got != "emv[malformed, 3 bytes]" {
		t.Errorf("Describe malformed: %s", got)
	}
}

func TestNewAndPack(t *testing.T) {
	if _, err := emv.New(emv.Object{Tag: "71", Value: nil}); err == nil {
		t.Error("constructed tag accepted by New")
	}
	if _, err := emv.New(emv.Object{Tag: "9F", Value: nil}); err == nil {
		t.Error("incomplete tag accepted")
	}
	b, _ := emv.PackBCD("1234", 6)
	if hex.EncodeToString(b) != "000000001234" {
		t.Fatalf("PackBCD %x", b)
	}
	if _, err := emv.PackBCD("1234567", 3); err == nil {
		t.Error("PackBCD overflow accepted")
	}
	b, _ = emv.PackDigits("123=45")
	if hex.EncodeToString(b) != "123d45" {
		t.Fatalf("PackDigits %x", b)
	}
	b, _ = emv.PackDigits("12345")
	if hex.EncodeToString(b) != "12345f" {
		t.Fatalf("PackDigits odd %x", b)
	}
}
