package iso8583

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// The largest message of the default dialect is what a message with every field at its
// longest packs to: maxMessageLen is exact, not merely an upper bound.
func TestResyncMaxMessageLenIsTheLongestMessage(t *testing.T) {
	spec := DefaultSpec()
	m := NewMessage(spec)
	m.MTI("0200")
	for id, d := range fields87() {
		if id < 2 || id == 65 {
			continue
		}
		n := d.length
		var err error
		switch d.class {
		case classB:
			if d.lenDigits != 0 {
				n /= 2 // the prefix counts hexadecimal characters
			}
			err = m.BinaryField(id, bytes.Repeat([]byte{0xA5}, n))
		case classXN:
			err = m.Field(id, "C"+strings.Repeat("9", n-1))
		case classN, classZ:
			err = m.Field(id, strings.Repeat("9", n))
		default:
			err = m.Field(id, strings.Repeat("A", n))
		}
		if err != nil {
			t.Fatalf("field %d: %v", id, err)
		}
	}
	b, err := Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := maxMessageLen(spec)
	if !ok || got != len(b) {
		t.Fatalf("maxMessageLen = %d, %t; the longest message packs to %d bytes", got, ok, len(b))
	}
	if _, err := Unpack(spec, b); err != nil {
		t.Fatalf("the longest message does not unpack: %v", err)
	}
}

// A dialect with few fields has a small largest message: a length header above it is
// refused by the client's read framer as soon as it is read, below the framer's own maximum.
func TestResyncLimitFramerLowersTheMaximum(t *testing.T) {
	d := tightDialect(t)
	limit, ok := maxMessageLen(d.Spec)
	if !ok || limit >= DefaultMaxFrame {
		t.Fatalf("maxMessageLen = %d, %t", limit, ok)
	}
	for _, f := range []Framer{BinaryLengthFramer{}, LengthFramer{Header: HeaderASCII4, TPDU: []byte{0x60, 0, 1, 0, 0}}} {
		rf := limitFramer(f, d.Spec)
		var frame []byte
		switch f.(type) {
		case BinaryLengthFramer:
			frame = binary.BigEndian.AppendUint16(nil, uint16(limit+1))
		default:
			frame = appendLength(nil, 4, limit+1+5)
		}
		frame = append(frame, bytes.Repeat([]byte{0x60}, limit+1+5)...)
		if _, err := rf.ReadFrame(bytes.NewReader(frame)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("%T: a frame of %d bytes: err = %v, want ErrFrameSize", f, limit+1, err)
		}
		// The largest message still goes through.
		var buf bytes.Buffer
		if err := rf.WriteFrame(&buf, bytes.Repeat([]byte{'9'}, limit)); err != nil {
			t.Fatalf("%T: %v", f, err)
		}
		if b, err := rf.ReadFrame(&buf); err != nil || len(b) != limit {
			t.Errorf("%T: a frame of %d bytes: %d bytes, %v", f, limit, len(b), err)
		}
	}
	// A framer this package does not know, or a spec it cannot bound, is left as it is.
	type other struct{ BinaryLengthFramer }
	if f := limitFramer(other{}, d.Spec); f != (other{}) {
		t.Errorf("an unknown framer was changed: %#v", f)
	}
}

// tightDialect is a dialect of network management messages only: fields 0, 1, 7, 11, 39,
// 41 and 70.
func tightDialect(t testing.TB) *Dialect {
	t.Helper()
	d, err := ParseDialect([]byte(TightDialectJSON))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TightDialectJSON is the dialect of tightDialect, exported to the external tests.
const TightDialectJSON = `{"name": "network management only", "fields": {
	"0":  {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"1":  {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"},
	"7":  {"type": "String", "length": 10, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"11": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"39": {"type": "String", "length": 2, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"41": {"type": "String", "length": 8, "enc": "ASCII", "prefix": "ASCII.Fixed", "padding": {"type": "Right", "pad": " "}},
	"70": {"type": "String", "length": 3, "enc": "ASCII", "prefix": "ASCII.Fixed"}}}`
