package emv_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/posd-dev/posd/terminal/emv"
)

// FuzzParse: any bytes parse or fail cleanly; what parses encodes and parses
// back to the same objects, and the masked form of 5A and 57 never shows
// the card number.
func FuzzParse(f *testing.F) {
	f.Add(gocData(f))
	f.Add([]byte{0x5A, 0x88, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0x71, 0x04, 0x72, 0x02, 0x86, 0x00})
	f.Add([]byte{0x00, 0x00, 0x9C, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := emv.Parse(in)
		if err != nil {
			return
		}
		out, err := d.Encode()
		if err != nil {
			t.Fatalf("parsed data does not encode: %v", err)
		}
		d2, err := emv.Parse(out)
		if err != nil {
			t.Fatalf("encoded data does not parse: %v", err)
		}
		if d.String() != d2.String() {
			t.Fatalf("round trip differs:\n%s\n%s", d, d2)
		}
		out2, _ := d2.Encode()
		if !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable")
		}
		emv.BuildDE55(d)
		d.CryptogramType()
		if c, err := emv.ExtractCard(d); err == nil {
			if s := d.Select("5A", "57").String() + c.String(); strings.Contains(s, c.PAN().Digits()) {
				t.Fatalf("masked form shows the PAN")
			}
		}
	})
}

// FuzzIssuerData: the host's field 55 never makes IssuerData panic, and what
// it returns parses and holds only 91, 71 and 72.
func FuzzIssuerData(f *testing.F) {
	f.Add([]byte{0x91, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x71, 0x02, 0x86, 0x00})
	f.Add([]byte{0x72, 0x81, 0x02, 0x86, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := emv.IssuerData(in)
		if err != nil || out == nil {
			return
		}
		d, err := emv.Parse(out)
		if err != nil {
			t.Fatalf("issuer data does not parse: %v", err)
		}
		for _, tag := range d.Tags() {
			if tag != "91" && tag != "71" && tag != "72" {
				t.Fatalf("issuer data holds %s", tag)
			}
		}
		if len(out) > 499 {
			t.Fatalf("issuer data is %d bytes", len(out))
		}
	})
}
