package iso8583_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/moov-io/iso8583/field"

	"github.com/posd-dev/posd/iso8583"
)

const aesPINDialectFile = "dialects/aes-pin.json"

// The X9.24-3-2017 supplement's format 4 block (PIN 1234, KSN counter 1).
const (
	aesBlockHex = "A912150391AB65A67E52883D81CE2D15"
	aesKSN      = "123456789012345600000001"
)

func aesAuth(t *testing.T, spec *iso8583.MessageSpec) iso8583.Authorization {
	t.Helper()
	a := testAuth(t)
	a.PINBlock, _ = hex.DecodeString(aesBlockHex)
	a.KSN = aesKSN
	a.Spec = spec
	return a
}

// A 16-byte PIN block travels in the AES PIN dialect's field 52 as 32 hexadecimal
// characters, its 24-digit KSN in field 62, and both come back unchanged.
func TestAESPINBlockOnTheWire(t *testing.T) {
	d, err := iso8583.LoadDialect(aesPINDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	a := aesAuth(t, d.Spec)
	a.Field55 = []byte{0x9F, 0x26, 0x02, 0xAB, 0xCD}
	m, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetSpec() != d.Spec {
		t.Error("the request is not built on the given spec")
	}
	wire, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(wire, []byte(aesBlockHex+"010"+"9F2602ABCD")) {
		t.Errorf("field 52 (32 hex characters) then field 55 (prefix counting characters) not found in\n%s", wire)
	}
	if !bytes.HasSuffix(wire, []byte("024"+aesKSN)) {
		t.Errorf("field 62 is not LLLVAR 024 + the KSN:\n%s", wire)
	}
	back, err := iso8583.Unpack(d.Spec, wire)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := back.GetBytes(52); hex.EncodeToString(b) != strings.ToLower(aesBlockHex) {
		t.Errorf("field 52 back: %X", b)
	}
	if k, _ := back.GetString(62); k != aesKSN {
		t.Errorf("field 62 back: %q", k)
	}
	if err := iso8583.CheckMandatory(back); err != nil {
		t.Errorf("CheckMandatory: %v", err)
	}

	// Built on the default spec, the same request converts to the AES dialect only
	// without its PIN block: the default field 52 takes 8 bytes.
	a.Spec = nil
	a.PINBlock, a.KSN = nil, ""
	plain, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	conv, err := iso8583.Convert(plain, d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := iso8583.Pack(conv)
	if err != nil {
		t.Fatal(err)
	}
	dw, err := iso8583.Pack(plain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cw, dw) {
		t.Errorf("without field 52 the AES dialect packs differently from the default:\n%s\n%s", cw, dw)
	}
}

// A PIN block whose length is not what field 52 of the dialect takes is an error naming
// field 52 and both lengths, never a truncated or padded field; a KSN that does not go with
// the block names field 62.
func TestPINBlockLengthMismatch(t *testing.T) {
	aes, err := iso8583.LoadDialect(aesPINDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	bcd := loadBCDDialect(t)
	tdesBlock, _ := hex.DecodeString("1B9C1845EB993A7A")
	for _, tt := range []struct {
		name  string
		spec  *iso8583.MessageSpec
		block []byte
		ksn   string
		field int
		want  []string
	}{
		{"16 bytes in the default dialect", nil, nil, aesKSN, 52,
			[]string{"field 52", "PIN block is 16 bytes", "takes exactly 8", "posd ISO 8583:1987 ASCII"}},
		{"16 bytes in the binary test dialect", bcd.Spec, nil, aesKSN, 52,
			[]string{"field 52", "PIN block is 16 bytes", "takes exactly 8"}},
		{"8 bytes in the AES dialect", aes.Spec, tdesBlock, "FFFF9876543210E00001", 52,
			[]string{"field 52", "PIN block is 8 bytes", "takes exactly 16"}},
		{"12 bytes", aes.Spec, make([]byte, 12), aesKSN, 52,
			[]string{"field 52", "PIN block is 12 bytes", "want 8", "or 16"}},
		{"a TDES KSN with an AES block", aes.Spec, nil, "FFFF9876543210E00001", 62,
			[]string{"field 62", "16-byte PIN block must be 24 hexadecimal digits", "got 20"}},
		{"an AES KSN with a TDES block", nil, tdesBlock, aesKSN, 62,
			[]string{"field 62", "must be 20 hexadecimal digits", "got 24"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := aesAuth(t, tt.spec)
			if tt.block != nil {
				a.PINBlock = tt.block
			}
			a.KSN = tt.ksn
			m, err := a.Message()
			var fe *iso8583.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || m != nil {
				t.Fatalf("Message() = %v, %v; want a FieldError on field %d", m, err, tt.field)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(strings.ToUpper(err.Error()), aesBlockHex[:8]) {
				t.Errorf("error %q shows the PIN block", err)
			}
		})
	}
}

func TestCheckPINFields(t *testing.T) {
	aes, err := iso8583.LoadDialect(aesPINDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	ok := []struct {
		spec            *iso8583.MessageSpec
		block, ksnChars int
	}{{nil, 8, 20}, {iso8583.DefaultSpec(), 8, 20}, {aes.Spec, 16, 24}, {loadBCDDialect(t).Spec, 8, 20}}
	for _, tt := range ok {
		if err := iso8583.CheckPINFields(tt.spec, tt.block, tt.ksnChars); err != nil {
			t.Errorf("CheckPINFields(%v, %d, %d) = %v", tt.spec != nil, tt.block, tt.ksnChars, err)
		}
	}
	var fe *iso8583.FieldError
	if err := iso8583.CheckPINFields(nil, 16, 24); !errors.As(err, &fe) || fe.Field != 52 || !errors.Is(err, iso8583.ErrInvalidLength) {
		t.Errorf("16 bytes in the default dialect: %v", err)
	}
	// A dialect without field 62, or whose field 62 is numeric, cannot carry the KSN.
	noKSN := &iso8583.MessageSpec{Name: "no 62", Fields: map[int]field.Field{}}
	for id, f := range aes.Spec.Fields {
		if id != 62 {
			noKSN.Fields[id] = f
		}
	}
	if err := iso8583.CheckPINFields(noKSN, 16, 24); !errors.As(err, &fe) || fe.Field != 62 || !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Errorf("dialect without field 62: %v", err)
	}
	numeric := &iso8583.MessageSpec{Name: "n 62", Fields: map[int]field.Field{}}
	for id, f := range aes.Spec.Fields {
		numeric.Fields[id] = f
	}
	numeric.Fields[62] = iso8583.DefaultSpec().Fields[3]
	if err := iso8583.CheckPINFields(numeric, 16, 24); !errors.As(err, &fe) || fe.Field != 62 || !strings.Contains(err.Error(), "class n") {
		t.Errorf("numeric field 62: %v", err)
	}
}

// Describe, Summary and MarshalJSON hide a 16-byte PIN block as they hide an 8-byte one.
func TestDescribeHidesAESPINBlock(t *testing.T) {
	d, err := iso8583.LoadDialect(aesPINDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := aesAuth(t, d.Spec).Message()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := iso8583.Describe(&b, m); err != nil {
		t.Fatal(err)
	}
	j, err := iso8583.MarshalJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(aesBlockHex)
	for _, out := range []string{b.String(), string(j), iso8583.Summary(m), iso8583.Masked{Msg: m}.String()} {
		up := strings.ToUpper(out)
		if strings.Contains(up, aesBlockHex) || strings.Contains(up, aesBlockHex[8:24]) || strings.Contains(out, string(raw)) {
			t.Errorf("the PIN block shows in\n%s", out)
		}
	}
	if !strings.Contains(b.String(), "[hidden]") || !strings.Contains(b.String(), aesKSN) {
		t.Errorf("Describe does not show field 52 as hidden and the KSN:\n%s", b.String())
	}
}
