package terminal_test

import (
	"testing"

	"github.com/posd-dev/posd/hsm/pinblock"
)

func formatZero(t *testing.T, pin, pan string) [8]byte {
	t.Helper()
	b, err := pinblock.EncodeFormat0(pin, pan)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encrypt(t *testing.T, key []byte, clear [8]byte) []byte {
	t.Helper()
	b, err := pinblock.EncryptTDES(key, clear)
	if err != nil {
		t.Fatal(err)
	}
	return b[:]
}
