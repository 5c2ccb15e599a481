package pinblock_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
)

// ANSI X9.24-1:2009 Annex A vectors (see REFERENCE.md).
const (
	vecPIN   = "1234"
	vecPAN   = "4012345678909"
	vecClear = "041274EDCBA9876F"
	vecBDK   = "0123456789ABCDEFFEDCBA9876543210"
	vecKSN   = "FFFF9876543210E00000"
)

func block(t testing.TB, s string) [8]byte {
	t.Helper()
	var b [8]byte
	if n, err := hex.Decode(b[:], []byte(s)); err != nil || n != 8 {
		t.Fatalf("bad hex block %q: %v", s, err)
	}
	return b
}

func TestEncodeFormat0Vector(t *testing.T) {
	got, err := pinblock.EncodeFormat0(vecPIN, vecPAN)
	if err != nil {
		t.Fatal(err)
	}
	if got != block(t, vecClear) {
		t.Fatalf("EncodeFormat0 = %X, want %s", got, vecClear)
	}
	pin, err := pinblock.DecodeFormat0(got, vecPAN)
	if err != nil || pin != vecPIN {
		t.Fatalf("DecodeFormat0 = %q, %v", pin, err)
	}
}

// Hand-computed blocks: PIN field XOR PAN field.
func TestEncodeFormat0HandComputed(t *testing.T) {
	tests := []struct{ pin, pan, want string }{
		// PIN field 0C123456789012FF; PAN 19 digits, without check digit 999999912345678901,
		// rightmost 12 -> PAN field 0000912345678901.
		{"123456789012", "9999999123456789012", "0C12 A575 3DF7 9BFE"},
		// PIN field 041234FFFFFFFFFF; PAN 8 digits -> body 7 digits 1234567 -> PAN field 0000000001234567.
		{"1234", "12345678", "0412 34FF FEDC BA98"},
		// PIN field 06000000FFFFFFFF; PAN field 0000 + 555555555555.
		{"000000", "5555555555555554", "0600 5555 AAAA AAAA"},
	}
	for _, tc := range tests {
		got, err := pinblock.EncodeFormat0(tc.pin, tc.pan)
		if err != nil {
			t.Fatalf("EncodeFormat0: %v", err)
		}
		if want := block(t, strings.ReplaceAll(tc.want, " ", "")); got != want {
			t.Errorf("EncodeFormat0(pin len %d, pan len %d) = %X, want %X", len(tc.pin), len(tc.pan), got, want)
		}
	}
}

func TestFormat0RoundTrip(t *testing.T) {
	pans := []string{"12345678", vecPAN, "4111111111111111", "6011000990139424123"}
	for _, pan := range pans {
		for l := 4; l <= 12; l++ {
			pin := "987654321098"[:l]
			b, err := pinblock.EncodeFormat0(pin, pan)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pinblock.DecodeFormat0(b, pan)
			if err != nil || got != pin {
				t.Fatalf("round trip pin len %d pan len %d: %q, %v", l, len(pan), got, err)
			}
		}
	}
}

func TestEncodeFormat0Rejects(t *testing.T) {
	tests := []struct {
		pin, pan string
		want     error
	}{
		{"123", vecPAN, pinblock.ErrPIN},
		{"1234567890123", vecPAN, pinblock.ErrPIN},
		{"12a4", vecPAN, pinblock.ErrPIN},
		{"", vecPAN, pinblock.ErrPIN},
		{vecPIN, "1234567", pinblock.ErrPAN},
		{vecPIN, "12345678901234567890", pinblock.ErrPAN},
		{vecPIN, "4012 3456 7890 9", pinblock.ErrPAN},
		{vecPIN, "", pinblock.ErrPAN},
	}
	for _, tc := range tests {
		_, err := pinblock.EncodeFormat0(tc.pin, tc.pan)
		if !errors.Is(err, tc.want) {
			t.Errorf("EncodeFormat0(%q, %q) err = %v, want %v", tc.pin, tc.pan, err, tc.want)
		}
		if err != nil {
			assertNoSecrets(t, err, tc.pin, tc.pan)
		}
	}
}

func TestDecodeFormat0Rejects(t *testing.T) {
	good := block(t, vecClear)
	flip := func(i int, x byte) [8]byte { b := good; b[i] ^= x; return b }
	tests := []struct {
		name string
		b    [8]byte
		pan  string
	}{
		{"control nibble", flip(0, 0x10), vecPAN},
		{"length 3", flip(0, 0x04^0x03), vecPAN},
		{"length 13", flip(0, 0x04^0x0D), vecPAN},
		{"non-digit", flip(1, 0xF0), vecPAN},  // first PIN digit 1 -> E
		{"fill not F", flip(7, 0x01), vecPAN}, // last fill nibble F -> E
		{"wrong pan", good, "4012345678919"},  // PAN field differs in a fill nibble
		{"garbage", block(t, "FFFFFFFFFFFFFFFF"), vecPAN},
	}
	for _, tc := range tests {
		pin, err := pinblock.DecodeFormat0(tc.b, tc.pan)
		if !errors.Is(err, pinblock.ErrBlock) || pin != "" {
			t.Errorf("%s: DecodeFormat0 = %q, %v; want ErrBlock", tc.name, pin, err)
			continue
		}
		assertNoSecrets(t, err, vecPIN, tc.pan, vecClear, hex.EncodeToString(tc.b[:]))
	}
	if _, err := pinblock.DecodeFormat0(good, "40123"); !errors.Is(err, pinblock.ErrPAN) {
		t.Errorf("short pan: %v", err)
	}
}

func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	msg := strings.ToUpper(err.Error())
	for _, s := range secrets {
		if len(s) >= 4 && strings.Contains(msg, strings.ToUpper(s)) {
			t.Errorf("error %q contains sensitive data", err)
		}
	}
}

func TestTDESWithDUKPTVectors(t *testing.T) {
	bdk, _ := hex.DecodeString(vecBDK)
	base, err := dukpt.ParseKSN(vecKSN)
	if err != nil {
		t.Fatal(err)
	}
	clear, err := pinblock.EncodeFormat0(vecPIN, vecPAN)
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range map[uint32]string{1: "1B9C1845EB993A7A", 2: "10A01C8D02C69107", 3: "18DC07B94797B466"} {
		key, err := dukpt.TDESPINKey(bdk, base.WithCounter(c))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := pinblock.EncryptTDES(key, clear)
		if err != nil {
			t.Fatal(err)
		}
		if enc != block(t, want) {
			t.Errorf("counter %d: EncryptTDES = %X, want %s", c, enc, want)
		}
		// The same key as 24 bytes K1 K2 K1 gives the same block.
		enc24, err := pinblock.EncryptTDES(append(append([]byte{}, key...), key[:8]...), clear)
		if err != nil || enc24 != enc {
			t.Errorf("counter %d: 24-byte key: %X, %v", c, enc24, err)
		}
		dec, err := pinblock.DecryptTDES(key, enc)
		if err != nil || dec != clear {
			t.Errorf("counter %d: DecryptTDES = %X, %v", c, dec, err)
		}
	}
}

func TestTDESKeyLength(t *testing.T) {
	for _, n := range []int{0, 8, 15, 17, 32} {
		if _, err := pinblock.EncryptTDES(make([]byte, n), [8]byte{}); !errors.Is(err, pinblock.ErrKeyLength) {
			t.Errorf("EncryptTDES %d-byte key: %v", n, err)
		}
		if _, err := pinblock.DecryptTDES(make([]byte, n), [8]byte{}); !errors.Is(err, pinblock.ErrKeyLength) {
			t.Errorf("DecryptTDES %d-byte key: %v", n, err)
		}
	}
}

func TestFormatString(t *testing.T) {
	if got := pinblock.Format0.String(); got != "ISO-0" {
		t.Errorf("Format0.String() = %q", got)
	}
}

func FuzzDecodeFormat0(f *testing.F) {
	f.Add([]byte{0x04, 0x12, 0x74, 0xED, 0xCB, 0xA9, 0x87, 0x6F}, vecPAN)
	f.Add(make([]byte, 8), "12345678")
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, "")
	f.Fuzz(func(t *testing.T, raw []byte, pan string) {
		var b [8]byte
		copy(b[:], raw)
		pin, err := pinblock.DecodeFormat0(b, pan)
		if err != nil {
			if pin != "" {
				t.Fatal("pin returned with an error")
			}
			return
		}
		// Whatever decodes must encode back to the same block.
		again, err := pinblock.EncodeFormat0(pin, pan)
		if err != nil {
			t.Fatalf("decoded pin does not encode: %v", err)
		}
		if again != b {
			t.Fatalf("re-encoded block %X != %X", again, b)
		}
	})
}
