package tr31

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// Given the padding a published block used, Wrap reproduces the block
// exactly, for every version.
func TestWrapReproducesPublishedBlocks(t *testing.T) {
	f, err := os.Open("testdata/tr31.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		r := strings.Fields(sc.Text())
		if len(r) != 3 || strings.HasPrefix(r[0], "#") {
			continue
		}
		kbpk, _ := hex.DecodeString(r[0])
		h, data, err := unwrap(kbpk, r[2])
		if err != nil {
			t.Fatal(err)
		}
		key, _ := hex.DecodeString(r[1])
		again, err := Wrap(kbpk, h, key, &WrapOptions{Rand: bytes.NewReader(data[2+len(key):]), MaskedKeyLength: len(data) - 3})
		if err != nil || again != r[2] {
			t.Errorf("Wrap = %s, %v\n          want %s", again, err, r[2])
		}
		n++
	}
	if n < 10 {
		t.Fatalf("%d blocks", n)
	}
}
