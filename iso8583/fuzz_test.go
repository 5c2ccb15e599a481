package iso8583_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/posd-dev/posd/iso8583"
)

// FuzzUnpackDialect is FuzzUnpack for the binary test dialect (BCD, binary bitmap and
// fields): unpack, then pack and unpack again, never a panic. Seeds in
// testdata/fuzz/FuzzUnpackDialect.
func FuzzUnpackDialect(f *testing.F) {
	d := loadBCDDialect(f)
	for _, m := range []*iso8583.Message{build(f)(testAuth(f).Message()), build(f)(typicalSale(f).Message()),
		build(f)(testReversal(f).Message()), build(f)(testReconciliation().Message())} {
		c, err := iso8583.Convert(m, d.Spec)
		if err != nil {
			f.Fatal(err)
		}
		b, err := iso8583.Pack(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := iso8583.Unpack(d.Spec, data)
		if err != nil {
			return
		}
		iso8583.Summary(m)
		if js, err := iso8583.MarshalJSON(m); err != nil || !json.Valid(js) {
			t.Fatalf("MarshalJSON: %v\n%s", err, js)
		}
		b1, err := iso8583.Pack(m)
		if err != nil {
			t.Fatalf("unpacked but does not pack: %v", err)
		}
		m2, err := iso8583.Unpack(d.Spec, b1)
		if err != nil {
			t.Fatalf("repacked message does not unpack: %v", err)
		}
		if b2, err := iso8583.Pack(m2); err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("pack is not stable: %v", err)
		}
		// Back to the default dialect and out again: the same logical message.
		if def, err := iso8583.Convert(m, iso8583.DefaultDialect().Spec); err == nil {
			if _, err := iso8583.Pack(def); err == nil {
				back, err := iso8583.Convert(def, d.Spec)
				if err != nil {
					t.Fatal(err)
				}
				if b3, err := iso8583.Pack(back); err != nil || !bytes.Equal(b1, b3) {
					t.Fatalf("through the default dialect and back: %v", err)
				}
			}
		}
	})
}

// FuzzParseDialect: a dialect file never panics the loader; a dialect it accepts packs and
// unpacks a message with its MTI. Seeds in testdata/fuzz/FuzzParseDialect.
func FuzzParseDialect(f *testing.F) {
	good, err := os.ReadFile(bcdDialectFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"fields": {"0": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"},
		"2": {"type": "Numeric", "length": 19, "enc": "BCD", "prefix": "Binary.LL"}}}`))
	f.Add([]byte(`{"framing": {"length": "ascii4", "tpdu": "6000010000"}, "fields": {}}`))
	if aes, err := os.ReadFile(aesPINDialectFile); err == nil {
		f.Add(aes)
	}
	for _, name := range []string{"bcd-tpdu", "ebcdic"} { // EBCDIC, composites
		if b, err := os.ReadFile(filepath.Join("dialects", name+".json")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"fields": {"0": {"type": "String", "length": 4, "enc": "ebcdic", "prefix": "EBCDIC.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "enc": "binary", "prefix": "Binary.Fixed"},
		"48": {"type": "Composite", "length": 99, "prefix": "ASCII.LL", "tag": {"enc": "ASCII", "length": 2, "sort": "StringsByInt", "padding": {"type": "Left", "pad": "0"}},
			"subfields": {"1": {"type": "String", "length": 9, "enc": "ASCII", "prefix": "ASCII.LL"}}}}}`))
	f.Add([]byte(`{"fields": {"0": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"},
		"55": {"type": "Binary", "length": 999, "enc": "HexToASCII", "prefix": "ASCII.LLL", "prefix_unit": "characters"}}}`))
	if pc, err := os.ReadFile(posConditionsFile); err == nil {
		f.Add(pc)
	}
	f.Add([]byte(`{"messages": {"*": {"set": {"25": "00", "53": "0102030405060708"}, "mandatory": [25]},
		"0800": {"forbidden": [25]}, "0221": {"set": {"43": "SHOP"}}},
		"fields": {"0": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"},
		"25": {"type": "Numeric", "length": 2, "enc": "BCD", "prefix": "BCD.Fixed"},
		"43": {"type": "String", "length": 40, "enc": "ASCII", "prefix": "ASCII.Fixed", "padding": {"type": "Right", "pad": " "}},
		"53": {"type": "Binary", "length": 8, "enc": "HexToASCII", "prefix": "ASCII.Fixed"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := iso8583.ParseDialect(data)
		if err != nil {
			return
		}
		if d.Spec == nil || d.Framer == nil {
			t.Fatal("a dialect without spec or framer")
		}
		m := newMsgOn(t, d.Spec, "0800")
		b, err := iso8583.Pack(m)
		if err != nil {
			t.Fatalf("an MTI alone does not pack: %v", err)
		}
		if _, err := iso8583.Unpack(d.Spec, b); err != nil {
			t.Fatalf("an MTI alone does not unpack: %v", err)
		}
		// The fixed values were checked by packing them: a request they complete packs
		// and reads back, and the request given is not changed.
		for _, mti := range []string{"0200", "0221", "0800"} {
			m := newMsgOn(t, d.Spec, mti)
			p, err := d.PrepareRequest(m)
			if err != nil {
				continue // a mandatory field no fixed value supplies
			}
			if countFields(m) != 0 {
				t.Fatalf("%s: PrepareRequest changed its argument", mti)
			}
			b, err := iso8583.Pack(p)
			if err != nil {
				t.Fatalf("%s with the fixed values does not pack: %v", mti, err)
			}
			back, err := iso8583.Unpack(d.Spec, b)
			if err != nil {
				t.Fatalf("%s with the fixed values does not unpack: %v", mti, err)
			}
			if err := d.CheckRequest(back); err != nil {
				t.Fatalf("%s read back breaks the rules it was made to: %v", mti, err)
			}
		}
	})
}

// FuzzUnpackShippedDialect: the first byte picks one of the shipped dialects of networks'
// layouts (bcd-tpdu, ebcdic, binary: EBCDIC, BCD and composite BER-TLV fields), the rest
// is a message. Unpack never panics; what it accepts packs, and packs the same once
// repacked.
func FuzzUnpackShippedDialect(f *testing.F) {
	names := []string{"bcd-tpdu", "ebcdic", "binary"}
	var ds []*iso8583.Dialect
	for i, name := range names {
		d := shippedDialect(f, name)
		ds = append(ds, d)
		for _, m := range []*iso8583.Message{build(f)(typicalSale(f).Message()), build(f)(testReversal(f).Message())} {
			c, err := iso8583.Convert(m, d.Spec)
			if err != nil {
				f.Fatal(err)
			}
			b, err := iso8583.Pack(c)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(append([]byte{byte(i)}, b...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		d := ds[int(data[0])%len(ds)]
		m, err := iso8583.Unpack(d.Spec, data[1:])
		if err != nil {
			return
		}
		iso8583.Summary(m)
		if js, err := iso8583.MarshalJSON(m); err != nil || !json.Valid(js) {
			t.Fatalf("MarshalJSON: %v\n%s", err, js)
		}
		b1, err := iso8583.Pack(m)
		if err != nil {
			t.Fatalf("unpacked but does not pack: %v", err)
		}
		m2, err := iso8583.Unpack(d.Spec, b1)
		if err != nil {
			t.Fatalf("repacked message does not unpack: %v", err)
		}
		if b2, err := iso8583.Pack(m2); err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("pack is not stable: %v", err)
		}
	})
}
