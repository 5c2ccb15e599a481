package iso8583_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	moov "github.com/moov-io/iso8583"

	"github.com/posd-dev/posd/iso8583"
)

func TestDefaultSpecDefinesEveryField(t *testing.T) {
	spec := iso8583.DefaultSpec()
	for id := 0; id <= 128; id++ {
		f, ok := spec.Fields[id]
		if !ok {
			t.Errorf("field %d is not defined", id)
			continue
		}
		if f.Spec().Description == "" {
			t.Errorf("field %d has no description", id)
		}
	}
	if len(spec.Fields) != 129 {
		t.Errorf("spec has %d fields, want 129 (0 to 128)", len(spec.Fields))
	}
	// Each call returns a spec of its own.
	if iso8583.DefaultSpec().Fields[2] == spec.Fields[2] {
		t.Error("DefaultSpec returned shared field definitions")
	}
}

// newMsg returns an empty message on the default spec with the given string fields.
func newMsg(t testing.TB, mti string, fields map[int]string) *iso8583.Message {
	t.Helper()
	m := iso8583.NewMessage(iso8583.DefaultSpec())
	m.MTI(mti)
	for id, v := range fields {
		if err := m.Field(id, v); err != nil {
			t.Fatalf("field %d: %v", id, err)
		}
	}
	return m
}

func TestPrimaryBitmapIs16HexCharacters(t *testing.T) {
	m := newMsg(t, "0800", map[int]string{7: "0314150926", 11: "000001", 41: "TERM0001"})
	b, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	// Fields 7, 11, 41 set: byte 1 = bit 7 = 0x02; byte 2 = bit 11 = 0x20; byte 6 = bit 41 = 0x80.
	want := "0800" + "0220000000800000" + "0314150926" + "000001" + "TERM0001"
	if string(b) != want {
		t.Fatalf("packed\n %q\nwant\n %q", b, want)
	}
}

func TestSecondaryBitmapOnlyWhenNeeded(t *testing.T) {
	m := newMsg(t, "0800", map[int]string{7: "0314150926", 11: "000001", 70: "301"})
	b, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	// Bit 1 (secondary present) = 0x80 and bit 7 = 0x02 -> 0x82; bit 11 -> 0x20; then the
	// secondary bitmap with bit 70 (the 6th bit of its first byte) = 0x04.
	want := "0800" + "8220000000000000" + "0400000000000000" + "0314150926" + "000001" + "301"
	if string(b) != want {
		t.Fatalf("packed\n %q\nwant\n %q", b, want)
	}
	back, err := iso8583.Unpack(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := back.GetString(70); got != "301" {
		t.Fatalf("field 70 = %q after the round trip", got)
	}

	// Field 128 alone in the secondary bitmap: its last bit.
	m = newMsg(t, "0200", map[int]string{11: "000002"})
	if err := m.BinaryField(128, []byte{1, 2, 3, 4, 5, 6, 7, 8}); err != nil {
		t.Fatal(err)
	}
	b, err = iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	want = "0200" + "8020000000000000" + "0000000000000001" + "000002" + "0102030405060708"
	if string(b) != want {
		t.Fatalf("packed\n %q\nwant\n %q", b, want)
	}
}

// allClasses returns a message with fields of every class and length type, primary and
// secondary.
func allClasses(t *testing.T) *iso8583.Message {
	m := newMsg(t, "0200", map[int]string{
		2:   "4761739001010010",                           // LLVAR n
		3:   "000000",                                     // n fixed
		4:   "000000001234",                               // n fixed
		11:  "000042",                                     // n fixed
		28:  "D00000150",                                  // x+n
		32:  "12345",                                      // LLVAR n
		35:  "4761739001010010=30121010000000",            // LLVAR z
		37:  "5073ABC12345",                               // an
		41:  "TERM01",                                     // ans fixed, padded
		43:  "Cafe Example, 1 Main St.  Lisbon PT",        // ans fixed
		45:  "B4761739001010010^DOE/JOHN^3012101",         // LLVAR ans
		48:  "free text: {with} ~symbols~",                // LLLVAR ans
		54:  "0040978C000000001000",                       // LLLVAR an
		62:  "FFFF9876543210E00001",                       // LLLVAR ans
		70:  "301",                                        // secondary, n
		90:  "020000004203141509260000000000000000000000", // n42
		102: "ACCT-1",                                     // LLVAR ans, secondary
	})
	for id, v := range map[int][]byte{
		52:  {0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A},
		55:  {0x9F, 0x26, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x95, 0x05, 0, 0, 0, 0, 0},
		64:  {0xAA, 0xBB, 0xCC, 0xDD, 0, 1, 2, 3},
		128: {0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 0},
	} {
		if err := m.BinaryField(id, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestPackUnpackRoundTrip(t *testing.T) {
	m := allClasses(t)
	b, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := iso8583.Unpack(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	for id := range m.Present() {
		want, _ := m.GetBytes(id)
		got, err := back.GetBytes(id)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("field %d = %q, %v; want %q", id, got, err, want)
		}
	}
	if n, m := countFields(back), countFields(m); n != m {
		t.Errorf("unpacked %d fields, packed %d", n, m)
	}
	again, err := iso8583.Pack(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Fatalf("repacked message differs:\n%q\n%q", again, b)
	}

	// Hand-checked pieces of the wire form.
	for _, want := range []string{
		"164761739001010010",            // field 2: LL 16
		"TERM01  ",                      // field 41 padded to 8
		"1B9C1845EB993A7A",              // field 52 as 16 hex characters
		"0369F260801020304050607089505", // field 55: LLL counts 36 characters
		"020FFFF9876543210E00001",       // field 62: LLL 020
		"DEADBEEF00000000",              // field 128
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("packed message lacks %q", want)
		}
	}
	// moov's own Pack agrees with ours on this dialect.
	mm := moov.NewMessage(iso8583.DefaultSpec())
	mti, _ := m.GetMTI()
	mm.MTI(mti)
	for id := range m.Present() {
		v, _ := m.Bytes(id)
		if err := mm.BinaryField(id, bytes.Clone(v)); err != nil {
			t.Fatal(err)
		}
	}
	theirs, err := mm.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(theirs, b) {
		t.Errorf("moov Message.Pack differs from Pack:\n%q\n%q", theirs, b)
	}
}

func TestUnpackRejectsTrailingBytes(t *testing.T) {
	b, err := iso8583.Pack(allClasses(t))
	if err != nil {
		t.Fatal(err)
	}
	withTail := append(bytes.Clone(b), "0000"...)
	_, err = iso8583.Unpack(nil, withTail)
	if !errors.Is(err, iso8583.ErrTrailingBytes) {
		t.Fatalf("err = %v, want ErrTrailingBytes", err)
	}
	// The library's own Unpack accepts them, which is why Unpack exists.
	if err := moov.NewMessage(iso8583.DefaultSpec()).Unpack(withTail); err != nil {
		t.Logf("note: moov's Unpack now rejects trailing bytes too: %v", err)
	}
}

func TestUnpackRejectsEveryTruncation(t *testing.T) {
	b, err := iso8583.Pack(allClasses(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(b); i++ {
		if _, err := iso8583.Unpack(nil, b[:i]); err == nil {
			t.Fatalf("a message cut to %d of %d bytes unpacked without error", i, len(b))
		}
	}
}

func TestPackRejectsWrongCharacterClass(t *testing.T) {
	tests := []struct {
		field int
		value string
	}{
		{4, "00000000123A"}, // n
		{11, "00004 "},      // n
		{2, "476173900101001X"},
		{39, "0 "},                       // an: no space
		{37, "5073-BC12345"},             // an: no '-'
		{41, "TERM\x0101"},               // ans: no control characters
		{43, "caf\xc3\xa9"},              // ans: ASCII only
		{35, "4761739001010010D3012101"}, // z: '=' only as separator
		{28, "X00000150"},                // x+n: C or D first
		{62, "KSN\tTAB"},
	}
	for _, tt := range tests {
		m := newMsg(t, "0200", map[int]string{tt.field: tt.value})
		_, err := iso8583.Pack(m)
		var fe *iso8583.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || fe.Op != "pack" || !errors.Is(err, iso8583.ErrInvalidCharacter) {
			t.Errorf("field %d = %q: err = %v, want a pack FieldError for field %d wrapping ErrInvalidCharacter", tt.field, tt.value, err, tt.field)
			continue
		}
		if !strings.Contains(err.Error(), "field "+strconv.Itoa(tt.field)+":") {
			t.Errorf("error %q does not name field %d", err, tt.field)
		}
	}
}

func TestUnpackRejectsWrongCharacterClass(t *testing.T) {
	good := "0800" + "0220000000800000" + "0314150926" + "000001" + "TERM0001"
	tests := []struct {
		name  string
		wire  string
		field int
	}{
		{"letter in n field 11", strings.Replace(good, "000001", "00000A", 1), 11},
		{"control in ans field 41", strings.Replace(good, "TERM0001", "TERM\x00001", 1), 41},
		{"non-hex bitmap", strings.Replace(good, "0220000000800000", "0220000000800G00", 1), 1},
		{"letter in MTI", strings.Replace(good, "0800", "08O0", 1), 0},
	}
	for _, tt := range tests {
		_, err := iso8583.Unpack(nil, []byte(tt.wire))
		var fe *iso8583.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || fe.Op != "unpack" || !errors.Is(err, iso8583.ErrInvalidCharacter) {
			t.Errorf("%s: err = %v, want an unpack FieldError for field %d wrapping ErrInvalidCharacter", tt.name, err, tt.field)
		}
	}
}

func TestUnpackRejectsBadLengthPrefix(t *testing.T) {
	// Field 2 present (bitmap 4000...), its LL prefix not digits; then too long.
	for _, wire := range []string{
		"0200" + "4000000000000000" + "+9476173900",
		"0200" + "4000000000000000" + "204761739001010010123",
	} {
		_, err := iso8583.Unpack(nil, []byte(wire))
		var fe *iso8583.FieldError
		if !errors.As(err, &fe) || fe.Field != 2 || !errors.Is(err, iso8583.ErrInvalidLength) {
			t.Errorf("%q: err = %v, want FieldError 2 wrapping ErrInvalidLength", wire, err)
		}
	}
	// Field 55 must have an even number of hex characters.
	wire := "0200" + "0000000000000200" + "0039F2"
	if _, err := iso8583.Unpack(nil, []byte(wire)); !errors.Is(err, iso8583.ErrInvalidLength) {
		t.Errorf("odd field 55: err = %v, want ErrInvalidLength", err)
	}
}

func TestPackRejectsWrongLength(t *testing.T) {
	for id, v := range map[int]string{3: "0000", 4: "1234", 2: "12345678901234567890", 41: "TERMINAL9"} {
		_, err := iso8583.Pack(newMsg(t, "0200", map[int]string{id: v}))
		var fe *iso8583.FieldError
		if !errors.As(err, &fe) || fe.Field != id || !errors.Is(err, iso8583.ErrInvalidLength) {
			t.Errorf("field %d = %q: err = %v, want FieldError wrapping ErrInvalidLength", id, v, err)
		}
	}
	m := newMsg(t, "0200", nil)
	m.BinaryField(52, []byte{1, 2, 3})
	if _, err := iso8583.Pack(m); !errors.Is(err, iso8583.ErrInvalidLength) {
		t.Errorf("3-byte PIN block: err = %v, want ErrInvalidLength", err)
	}
}

func TestField65IsRejected(t *testing.T) {
	m := newMsg(t, "0200", map[int]string{11: "000001"})
	m.BinaryField(65, []byte{1})
	_, err := iso8583.Pack(m)
	var fe *iso8583.FieldError
	if !errors.As(err, &fe) || fe.Field != 65 || !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Errorf("pack: err = %v, want FieldError 65 wrapping ErrUnsupportedField", err)
	}
	// Bit 65 set on the wire: a tertiary bitmap would follow.
	wire := "0200" + "8000000000000000" + "8000000000000000" + "0000000000000000"
	_, err = iso8583.Unpack(nil, []byte(wire))
	if !errors.As(err, &fe) || fe.Field != 65 || !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Errorf("unpack: err = %v, want FieldError 65 wrapping ErrUnsupportedField", err)
	}
}

// Errors about fields with card or PIN data must not show the data.
func TestSensitiveFieldErrorsHideValues(t *testing.T) {
	const pan = "4761739001010010"
	secrets := []string{pan, "476173900101", "3012101"}
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q contains %q", what, err, s)
			}
		}
	}
	_, err := iso8583.Pack(newMsg(t, "0200", map[int]string{2: pan + "X"}))
	check("pack field 2", err)
	_, err = iso8583.Pack(newMsg(t, "0200", map[int]string{35: pan + "D3012101"}))
	check("pack field 35", err)
	_, err = iso8583.Pack(newMsg(t, "0200", map[int]string{35: pan + "=30121019999999999999999"}))
	check("pack field 35 too long", err)
	_, err = iso8583.Pack(newMsg(t, "0200", map[int]string{45: "B" + pan + "^DOE^3012101\x00"}))
	check("pack field 45", err)

	// Track 2 with a bad character on the wire (bitmap: bit 35 = 0x20 in byte 5).
	wire := "0200" + "0000000020000000" + "25" + pan + "=3012101?"
	_, err = iso8583.Unpack(nil, []byte(wire))
	check("unpack field 35", err)
	if !errors.Is(err, iso8583.ErrInvalidCharacter) {
		t.Errorf("unpack field 35: err = %v, want ErrInvalidCharacter", err)
	}

	// A cause from elsewhere is withheld for a sensitive field, kept for others.
	foreign := errors.New("bad value " + pan)
	fe := &iso8583.FieldError{Field: 35, Op: "unpack", Err: foreign}
	check("foreign cause on field 35", fe)
	if !errors.Is(fe, foreign) {
		t.Error("FieldError does not unwrap to its cause")
	}
	if s := (&iso8583.FieldError{Field: 48, Op: "pack", Err: foreign}).Error(); !strings.Contains(s, "bad value") {
		t.Errorf("non-sensitive field error %q lost its cause", s)
	}
}

func BenchmarkPack0200(b *testing.B) {
	m := benchMessage(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iso8583.Pack(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnpack0200(b *testing.B) {
	wire, err := iso8583.Pack(benchMessage(b))
	if err != nil {
		b.Fatal(err)
	}
	spec := iso8583.DefaultSpec()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iso8583.Unpack(spec, wire); err != nil {
			b.Fatal(err)
		}
	}
}

func benchMessage(b *testing.B) *iso8583.Message {
	a := testAuth(b)
	a.PAN = mustPAN(b, approvedPAN)
	a.PINBlock = []byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A}
	a.KSN = "FFFF9876543210E00001"
	m, err := a.Message()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func FuzzUnpack(f *testing.F) {
	// More seeds (the golden messages, every field class) are in testdata/fuzz/FuzzUnpack.
	f.Add([]byte("0800" + "0220000000800000" + "0314150926" + "000001" + "TERM0001"))
	f.Add([]byte("0800" + "8220000000000000" + "0400000000000000" + "0314150926" + "000001" + "301"))
	f.Add([]byte("0200" + "8000000000000000" + "8000000000000000"))
	f.Add([]byte("0200" + "4000000000000000" + "99"))
	spec := iso8583.DefaultSpec()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := iso8583.Unpack(spec, data)
		if err != nil {
			if m != nil {
				t.Fatal("Unpack returned a message with an error")
			}
			return
		}
		iso8583.Summary(m)
		if err := iso8583.Describe(io.Discard, m); err != nil {
			t.Fatal(err)
		}
		if js, err := iso8583.MarshalJSON(m); err != nil || !json.Valid(js) {
			t.Fatalf("MarshalJSON: %v\n%s", err, js)
		}
		// What unpacks must pack, and packing is stable from then on. (The first repack may
		// differ from data: lower-case hex becomes upper case, trailing spaces of fixed ans
		// fields are normalized, an empty secondary bitmap is dropped.)
		b1, err := iso8583.Pack(m)
		if err != nil {
			t.Fatalf("unpacked but does not pack: %v", err)
		}
		m2, err := iso8583.Unpack(spec, b1)
		if err != nil {
			t.Fatalf("repacked message does not unpack: %v", err)
		}
		b2, err := iso8583.Pack(m2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("pack is not stable: %v\n%q\n%q", err, b1, b2)
		}
		if len(b1) > len(data) {
			t.Fatalf("repacked message is longer (%d) than the input (%d)", len(b1), len(data))
		}
	})
}
