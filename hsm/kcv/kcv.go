// Package kcv computes key check values: short, public values that let a
// technician confirm a key was loaded correctly without showing the key.
//
//   - Legacy (TDES): the leftmost 3 bytes of the key encrypting a block of
//     binary zeros (ANSI X9.24-1 "legacy" KCV).
//   - CMAC (AES, and TDES where asked): the leftmost 5 bytes of the CMAC of a
//     block of binary zeros (ANSI X9.24-1:2017, and TR-31's KC block).
//
// A check value reveals nothing useful about its key, but the functions here
// take clear keys; posd's own code gets check values through package hsm,
// whose backends compute them inside the secure device. The functions hold no
// state and are safe for concurrent use. No error contains key bytes.
package kcv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"errors"
	"fmt"

	"github.com/posd-dev/posd/hsm/mac"
)

// Method is how a check value is computed. It is a value; safe for
// concurrent use.
type Method int

// Check value methods.
const (
	Legacy Method = iota + 1 // encrypt a zero block, keep 3 bytes
	CMAC                     // CMAC of a zero block, keep 5 bytes
)

// String names the method.
func (m Method) String() string {
	switch m {
	case Legacy:
		return "legacy"
	case CMAC:
		return "CMAC"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// Len returns the length in bytes of the method's check values.
func (m Method) Len() int {
	if m == Legacy {
		return 3
	}
	return 5
}

// ErrKeyLength is returned (wrapped) for a key of the wrong length.
var ErrKeyLength = errors.New("wrong key length")

// Compute returns the check value of the key behind b by method m.
func Compute(b cipher.Block, m Method) ([]byte, error) {
	zero := make([]byte, b.BlockSize())
	switch m {
	case Legacy:
		out := make([]byte, len(zero))
		b.Encrypt(out, zero)
		return out[:3], nil
	case CMAC:
		return mac.CMAC(b, zero)[:5], nil
	}
	return nil, fmt.Errorf("kcv: unknown method %v", m)
}

// TDES returns the check value of an 8, 16 or 24-byte TDES key (a 16-byte key
// is K1 K2 K1) by method m.
func TDES(key []byte, m Method) ([]byte, error) {
	b, err := TDESCipher(key)
	if err != nil {
		return nil, err
	}
	return Compute(b, m)
}

// AES returns the CMAC check value of a 16, 24 or 32-byte AES key.
func AES(key []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kcv: aes key is %d bytes: %w", len(key), ErrKeyLength)
	}
	return Compute(b, CMAC)
}

// TDESCipher returns the TDES cipher of an 8, 16 or 24-byte key.
func TDESCipher(key []byte) (cipher.Block, error) {
	var k [24]byte
	defer clear(k[:])
	switch len(key) {
	case 8:
		copy(k[:], key)
		copy(k[8:], key)
		copy(k[16:], key)
	case 16:
		copy(k[:], key)
		copy(k[16:], key[:8])
	case 24:
		copy(k[:], key)
	default:
		return nil, fmt.Errorf("kcv: tdes key is %d bytes: %w", len(key), ErrKeyLength)
	}
	return des.NewTripleDESCipher(k[:])
}
