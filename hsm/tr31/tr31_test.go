package tr31_test

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/mac"
	"github.com/posd-dev/posd/hsm/tr31"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vectors(t *testing.T) [][]string {
	f, err := os.Open("testdata/tr31.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && l[0] != '#' {
			rows = append(rows, strings.Fields(l))
		}
	}
	return rows
}

func TestPublishedBlocks(t *testing.T) {
	seen := map[byte]int{}
	for _, r := range vectors(t) {
		h, key, err := tr31.Unwrap(unhex(t, r[0]), r[2])
		if err != nil {
			t.Errorf("Unwrap(%s...): %v", r[2][:16], err)
			continue
		}
		if got := strings.ToUpper(hex.EncodeToString(key)); got != r[1] {
			t.Errorf("Unwrap(%s...) key %s, want %s", r[2][:16], got, r[1])
		}
		seen[h.Version]++
		// The same KBPK with one bit changed, or one character of the block
		// changed, must fail the MAC.
		kb := unhex(t, r[0])
		kb[0] ^= 0x80
		if _, _, err := tr31.Unwrap(kb, r[2]); !errors.Is(err, tr31.ErrMAC) && !errors.Is(err, tr31.ErrKBPK) {
			t.Errorf("wrong KBPK: %v", err)
		}
		alt := []byte(r[2])
		if alt[len(alt)-20] == '0' {
			alt[len(alt)-20] = '1'
		} else {
			alt[len(alt)-20] = '0'
		}
		if _, _, err := tr31.Unwrap(unhex(t, r[0]), string(alt)); !errors.Is(err, tr31.ErrMAC) {
			t.Errorf("altered block: %v", err)
		}
	}
	for _, v := range []byte("ABCD") {
		if seen[v] == 0 {
			t.Errorf("no vector of version %c", v)
		}
	}
}

func TestHeader(t *testing.T) {
	h, n, err := tr31.ParseHeader("B0120P0TE12E0100KS1800604B120F9292800000E6E2")
	if err != nil {
		t.Fatal(err)
	}
	if n != 40 || h.Version != 'B' || h.KeyUsage != "P0" || h.Algorithm != 'T' || h.ModeOfUse != 'E' || h.KeyVersion != "12" || h.Exportability != 'E' {
		t.Errorf("header %+v, length %d", h, n)
	}
	if ks, ok := h.Get("KS"); !ok || ks != "00604B120F9292800000" {
		t.Errorf("KS = %q, %v", ks, ok)
	}
	if s := h.String(); !strings.Contains(s, "usage P0 (PIN encryption)") || !strings.Contains(s, "KS=00604B120F9292800000") {
		t.Errorf("String = %q", s)
	}
	bad := []string{
		"",
		"A0072P0TE00E000",                    // short
		"E0072P0TE00E0000",                   // version
		"A0072P0TE00E0001",                   // reserved
		"A0072P0TE00EX000",                   // block count
		"A0072P0TE00E0100",                   // block runs past the end
		"A0072P0TE00E0100KS0Z0000",           // length not hex
		"A0072P0TE00E0100KS02000000000000",   // length shorter than ID and length
		"A0072P0TE00E0100KS000900000000000",  // extended length of length 9
		"A0072P0TE00E0100KS0500000000000000", // header of 21, not a multiple of 8
		"A0072P\x00TE00E0000",
	}
	for _, s := range bad {
		if _, _, err := tr31.ParseHeader(s); err == nil {
			t.Errorf("ParseHeader(%q) succeeded", s)
		}
	}
}

func TestWrapRoundTrip(t *testing.T) {
	type tc struct {
		v    byte
		kbpk string
		alg  byte
		key  string
	}
	cases := []tc{
		{'A', "89E88CF7931444F334BD7547FC3F380C", 'T', "F039121BEC83D26B169BDCD5B22AAF8F"},
		{'C', "89E88CF7931444F334BD7547FC3F380C89E88CF7931444F3", 'T', "F039121BEC83D26B169BDCD5B22AAF8FF039121BEC83D26B"},
		{'B', "DD7515F2BFC17F85CE48F3CA25CB21F6", 'T', "3F419E1CB7079442AA37474C2EFBF8B8"},
		{'D', "88E1AB2A2E3DD38C1FA039A536500CC8", 'A', "3F419E1CB7079442AA37474C2EFBF8B8"},
		{'D', "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01", 'A', "3F419E1CB7079442AA37474C2EFBF8B83F419E1CB7079442AA37474C2EFBF8B8"},
		{'D', "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6", 'A', "3F419E1CB7079442AA37474C2EFBF8B8"},
	}
	for _, c := range cases {
		for _, blocks := range [][]tr31.Block{nil, {{ID: "KS", Data: "00604B120F9292800000"}}, {{ID: "IK", Data: "1234567890123456"}, {ID: "KV", Data: strings.Repeat("X", 300)}}} {
			h := tr31.Header{Version: c.v, KeyUsage: "P0", Algorithm: c.alg, ModeOfUse: 'E', KeyVersion: "00", Exportability: 'E', Blocks: blocks}
			s, err := tr31.Wrap(unhex(t, c.kbpk), h, unhex(t, c.key), &tr31.WrapOptions{MaskedKeyLength: 24})
			if err != nil {
				t.Fatalf("Wrap %c: %v", c.v, err)
			}
			got, key, err := tr31.Unwrap(unhex(t, c.kbpk), s)
			if err != nil || !bytes.Equal(key, unhex(t, c.key)) {
				t.Fatalf("round trip %c (%s): %X, %v", c.v, s, key, err)
			}
			for _, b := range blocks {
				if d, _ := got.Get(b.ID); d != b.Data {
					t.Errorf("block %s lost", b.ID)
				}
			}
		}
	}
}

func TestUnwrapRejects(t *testing.T) {
	kbpk := unhex(t, "89E88CF7931444F334BD7547FC3F380C")
	good := "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701"
	bad := map[string]string{
		"length field":  "A0073P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701",
		"truncated":     good[:70],
		"not hex":       good[:40] + "ZZ" + good[42:],
		"partial block": "A0064P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB31CEE8701",
		"version E":     "E" + good[1:],
		"only the MAC":  "A0024P0TE00E00001CEE8701",
	}
	for name, s := range bad {
		_, key, err := tr31.Unwrap(kbpk, s)
		if err == nil || key != nil {
			t.Errorf("%s: Unwrap succeeded", name)
			continue
		}
		if msg := strings.ToUpper(err.Error()); strings.Contains(msg, "F5161ED9") || strings.Contains(msg, "F039121B") || strings.Contains(msg, "89E88CF7") {
			t.Errorf("%s: error %q carries key data", name, err)
		}
	}
	for _, n := range []int{8, 32} {
		if _, _, err := tr31.Unwrap(make([]byte, n), good); !errors.Is(err, tr31.ErrKBPK) {
			t.Errorf("%d-byte KBPK: %v", n, err)
		}
	}
	// A key that does not suit the algorithm is refused at both ends.
	h := tr31.Header{Version: 'D', KeyUsage: "P0", Algorithm: 'A', ModeOfUse: 'E', KeyVersion: "00", Exportability: 'E'}
	if _, err := tr31.Wrap(make([]byte, 16), h, make([]byte, 8), nil); !errors.Is(err, tr31.ErrKey) {
		t.Errorf("8-byte AES key wrapped: %v", err)
	}
}

func FuzzUnwrap(f *testing.F) {
	for _, s := range []string{
		"A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701",
		"D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
		"B0120P0TE12E0100KS1800604B120F9292800000E6E28F097CB0350B2EB2DF520947F779FA34D9759CEE7E0DEEACF8353DB778D47FA4EC20DA3A9754",
		"A0112P0TE12E0200KS1400604B120F929280PB047A1BB737854CD7AF58A8A1E4506A942277EDA76EBA6BA228AF62ADDA3AD8799E8B2C8CD7",
		"B0000P0TE00E0100KS0004000A",
	} {
		f.Add(s)
	}
	kbpks := map[byte][]byte{
		'A': unhex(f, "89E88CF7931444F334BD7547FC3F380C"),
		'B': unhex(f, "89E88CF7931444F334BD7547FC3F380C"),
		'C': unhex(f, "89E88CF7931444F334BD7547FC3F380C"),
		'D': unhex(f, "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"),
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, n, err := tr31.ParseHeader(s)
		if err != nil {
			return
		}
		if n > len(s) || n < 16 {
			t.Fatalf("header length %d of %d", n, len(s))
		}
		_ = h.String()
		kbpk := kbpks[h.Version]
		h2, key, err := tr31.Unwrap(kbpk, s)
		if err != nil {
			return
		}
		// What unwraps re-wraps and unwraps to the same key and header fields.
		again, err := tr31.Wrap(kbpk, h2, key, nil)
		if err != nil {
			t.Fatalf("re-wrap: %v", err)
		}
		_, key2, err := tr31.Unwrap(kbpk, again)
		if err != nil || !bytes.Equal(key, key2) {
			t.Fatalf("re-wrapped block does not unwrap: %v", err)
		}
	})
}

func Example() {
	kbpk, _ := hex.DecodeString("89E88CF7931444F334BD7547FC3F380C")
	h, key, err := tr31.Unwrap(kbpk, "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B")
	fmt.Println(h, err)
	fmt.Printf("%d-byte key\n", len(key))
	// Output:
	// version A, usage P0 (PIN encryption), algorithm T, mode E, version 00, exportability E <nil>
	// 16-byte key
}

// UnwrapCMAC with a CMAC function over the KBPK unwraps what Unwrap does, for versions B
// and D, and refuses A.
func TestUnwrapCMAC(t *testing.T) {
	for _, r := range vectors(t) {
		kbpk := unhex(t, r[0])
		var cmac func([]byte) ([]byte, error)
		switch r[2][0] {
		case 'B':
			k := append(append([]byte{}, kbpk...), kbpk[:8]...)
			if len(kbpk) == 24 {
				k = kbpk
			}
			c, _ := des.NewTripleDESCipher(k)
			cmac = func(d []byte) ([]byte, error) { return mac.CMAC(c, d), nil }
		case 'D':
			c, _ := aes.NewCipher(kbpk)
			cmac = func(d []byte) ([]byte, error) { return mac.CMAC(c, d), nil }
		default:
			if _, _, err := tr31.UnwrapCMAC(func([]byte) ([]byte, error) { return make([]byte, 8), nil }, len(kbpk), r[2]); !errors.Is(err, tr31.ErrVersion) {
				t.Errorf("version %c: %v", r[2][0], err)
			}
			continue
		}
		_, key, err := tr31.UnwrapCMAC(cmac, len(kbpk), r[2])
		if err != nil || strings.ToUpper(hex.EncodeToString(key)) != r[1] {
			t.Errorf("UnwrapCMAC(%s...) = %X, %v", r[2][:16], key, err)
		}
	}
	if _, _, err := tr31.UnwrapCMAC(func([]byte) ([]byte, error) { return nil, errors.New("token gone") }, 16,
		"D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34"); err == nil {
		t.Error("a failing CMAC unwrapped")
	}
}

// UnwrapVariant with CBC functions over the variant keys unwraps what Unwrap does, for
// versions A and C, refuses B and D, and refuses altered blocks and the wrong KBPK.
func TestUnwrapVariant(t *testing.T) {
	variant := func(kbpk []byte) (func([]byte) ([]byte, error), func(iv, d []byte) ([]byte, error)) {
		ke, km, err := tr31.VariantKeys(kbpk)
		if err != nil {
			t.Fatal(err)
		}
		tdes := func(k []byte) cipher.Block {
			if len(k) == 16 {
				k = append(append([]byte{}, k...), k[:8]...)
			}
			c, err := des.NewTripleDESCipher(k)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		e, m := tdes(ke), tdes(km)
		cbcMAC := func(d []byte) ([]byte, error) {
			out := make([]byte, len(d))
			cipher.NewCBCEncrypter(m, make([]byte, 8)).CryptBlocks(out, d)
			return out, nil
		}
		dec := func(iv, d []byte) ([]byte, error) {
			out := make([]byte, len(d))
			cipher.NewCBCDecrypter(e, iv).CryptBlocks(out, d)
			return out, nil
		}
		return cbcMAC, dec
	}
	n := 0
	for _, r := range vectors(t) {
		kbpk := unhex(t, r[0])
		v := r[2][0]
		if v == 'D' {
			continue
		}
		cbcMAC, dec := variant(kbpk)
		_, key, err := tr31.UnwrapVariant(cbcMAC, dec, r[2])
		if v == 'B' {
			if !errors.Is(err, tr31.ErrVersion) {
				t.Errorf("version B: %v", err)
			}
			continue
		}
		if err != nil || strings.ToUpper(hex.EncodeToString(key)) != r[1] {
			t.Errorf("UnwrapVariant(%s...) = %X, %v", r[2][:16], key, err)
		}
		n++
		alt := []byte(r[2])
		alt[len(alt)-12] ^= 1
		if _, _, err := tr31.UnwrapVariant(cbcMAC, dec, string(alt)); !errors.Is(err, tr31.ErrMAC) && !errors.Is(err, tr31.ErrFormat) {
			t.Errorf("altered %c block: %v", v, err)
		}
		other := append([]byte{}, kbpk...)
		other[3] ^= 0x10
		m2, d2 := variant(other)
		if _, key, err := tr31.UnwrapVariant(m2, d2, r[2]); !errors.Is(err, tr31.ErrMAC) || key != nil {
			t.Errorf("wrong KBPK on a %c block: %v", v, err)
		}
	}
	if n < 5 {
		t.Fatalf("only %d version A and C blocks", n)
	}
	gone := errors.New("token gone")
	good := "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B"
	if _, _, err := tr31.UnwrapVariant(func([]byte) ([]byte, error) { return nil, gone }, nil, good); !errors.Is(err, gone) {
		t.Errorf("failing MAC function: %v", err)
	}
	if _, _, err := tr31.UnwrapVariant(func([]byte) ([]byte, error) { return []byte{1, 2, 3}, nil }, nil, good); err == nil {
		t.Error("a 3-byte CBC-MAC was accepted")
	}
	if _, _, err := tr31.VariantKeys(make([]byte, 32)); !errors.Is(err, tr31.ErrKBPK) {
		t.Errorf("32-byte KBPK: %v", err)
	}
}
