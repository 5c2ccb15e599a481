package kcv_test

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/kcv"
)

func TestVectors(t *testing.T) {
	f, err := os.Open("testdata/kcv.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r := strings.Fields(sc.Text())
		if len(r) == 0 || strings.HasPrefix(r[0], "#") {
			continue
		}
		key, _ := hex.DecodeString(r[2])
		var got []byte
		switch r[0] + " " + r[1] {
		case "legacy tdes":
			got, err = kcv.TDES(key, kcv.Legacy)
		case "cmac tdes":
			got, err = kcv.TDES(key, kcv.CMAC)
		case "cmac aes":
			got, err = kcv.AES(key)
		default:
			t.Fatalf("unknown row %q", r)
		}
		if err != nil || strings.ToUpper(hex.EncodeToString(got)) != r[3] {
			t.Errorf("%s %s %s = %X, %v; want %s", r[0], r[1], r[2], got, err, r[3])
		}
		n++
	}
	if n != 10 {
		t.Fatalf("%d vectors", n)
	}
}

func TestKeyLength(t *testing.T) {
	for _, n := range []int{0, 15, 17, 32} {
		if _, err := kcv.TDES(make([]byte, n), kcv.Legacy); !errors.Is(err, kcv.ErrKeyLength) {
			t.Errorf("tdes %d bytes: %v", n, err)
		}
	}
	for _, n := range []int{0, 8, 20} {
		if _, err := kcv.AES(make([]byte, n)); !errors.Is(err, kcv.ErrKeyLength) {
			t.Errorf("aes %d bytes: %v", n, err)
		}
	}
	if kcv.Legacy.Len() != 3 || kcv.CMAC.Len() != 5 || kcv.CMAC.String() != "CMAC" {
		t.Error("method lengths or names")
	}
}

func Example() {
	bdk, _ := hex.DecodeString("0123456789ABCDEFFEDCBA9876543210")
	legacy, _ := kcv.TDES(bdk, kcv.Legacy)
	aesKey, _ := hex.DecodeString("1273671EA26AC29AFA4D1084127652A1")
	cmac, _ := kcv.AES(aesKey)
	fmt.Printf("TDES %X\nAES  %X\n", legacy, cmac)
	// Output:
	// TDES 08D7B4
	// AES  05EF4531EC
}
