package mac_test

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/mac"
)

type vector struct {
	line           int
	alg            string
	key, msg, want []byte
}

func readVectors(t *testing.T, name string) []vector {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		var v vector
		if len(f) == 4 {
			v.alg, f = f[0], f[1:]
		}
		if len(f) != 3 {
			t.Fatalf("%s:%d: want 3 fields", name, n)
		}
		if f[1] == "-" {
			f[1] = ""
		}
		v.line = n
		for i, p := range []*[]byte{&v.key, &v.msg, &v.want} {
			if *p, err = hex.DecodeString(f[i]); err != nil {
				t.Fatalf("%s:%d: %v", name, n, err)
			}
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		t.Fatalf("%s: no vectors", name)
	}
	return vs
}

func blockCipher(t *testing.T, alg string, key []byte) cipher.Block {
	t.Helper()
	var (
		b   cipher.Block
		err error
	)
	if alg == "tdes" {
		b, err = des.NewTripleDESCipher(key)
	} else {
		b, err = aes.NewCipher(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCMACVectors(t *testing.T) {
	for _, v := range readVectors(t, "cmac.txt") {
		if got := mac.CMAC(blockCipher(t, v.alg, v.key), v.msg); hex.EncodeToString(got) != hex.EncodeToString(v.want) {
			t.Errorf("cmac.txt:%d: CMAC = %X, want %X", v.line, got, v.want)
		}
	}
}

func TestRetailMACVectors(t *testing.T) {
	for _, v := range readVectors(t, "retail.txt") {
		got, err := mac.RetailMAC(v.key, v.msg)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != hex.EncodeToString(v.want) {
			t.Errorf("retail.txt:%d: RetailMAC = %X, want %X", v.line, got, v.want)
		}
	}
}

// With K1 = K2 the retail MAC is the single-DES CBC-MAC.
func TestRetailMACDegeneratesToCBCMAC(t *testing.T) {
	key, _ := hex.DecodeString("0123456789ABCDEF0123456789ABCDEF")
	b, _ := des.NewCipher(key[:8])
	msg := []byte("4012345678909D987")
	r, _ := mac.RetailMAC(key, msg)
	if c := mac.CBCMAC(b, msg); hex.EncodeToString(r) != hex.EncodeToString(c) {
		t.Errorf("retail %X != cbc-mac %X with K1 = K2", r, c)
	}
}

func TestRetailMACKeyLength(t *testing.T) {
	for _, n := range []int{0, 8, 24, 32} {
		if _, err := mac.RetailMAC(make([]byte, n), nil); !errors.Is(err, mac.ErrKeyLength) {
			t.Errorf("%d-byte key: %v", n, err)
		}
	}
}

func TestPad1(t *testing.T) {
	for _, tc := range []struct{ in, n, want int }{{0, 8, 8}, {1, 8, 8}, {8, 8, 8}, {9, 8, 16}, {17, 16, 32}} {
		if got := len(mac.Pad1(make([]byte, tc.in), tc.n)); got != tc.want {
			t.Errorf("Pad1(%d bytes, %d) = %d bytes, want %d", tc.in, tc.n, got, tc.want)
		}
	}
}

func BenchmarkCMACAES(b *testing.B) {
	c, _ := aes.NewCipher(make([]byte, 16))
	msg := make([]byte, 256)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		mac.CMAC(c, msg)
	}
}
