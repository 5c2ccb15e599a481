// Package mac computes the message authentication codes of payment keys:
//
//   - the retail MAC, ISO 9797-1 MAC algorithm 3 with DES (ANSI X9.19), for
//     double-length TDES keys, as ISO 8583 fields 64 and 128 carry it;
//   - CMAC (NIST SP 800-38B, ISO 9797-1 MAC algorithm 5) for AES and TDES
//     keys, as AES-based MACs and key check values use it;
//   - the CBC-MAC of ISO 9797-1 MAC algorithm 1, as TR-31 version A uses it.
//
// Padding is ISO 9797-1 method 1 (zero bits up to a whole number of blocks,
// at least one block) for the retail MAC and CBC-MAC; CMAC pads as SP 800-38B
// says. The functions return the whole MAC; callers truncate (the leftmost
// bytes are kept). They hold no state and are safe for concurrent use. No
// error contains key bytes.
package mac

import (
	"crypto/cipher"
	"crypto/des"
	"errors"
	"fmt"
)

// ErrKeyLength is returned (wrapped) for a key of the wrong length.
var ErrKeyLength = errors.New("wrong key length")

// Pad1 returns msg padded with zero bytes to a positive multiple of n bytes
// (ISO 9797-1 padding method 1). An empty message becomes one zero block.
func Pad1(msg []byte, n int) []byte {
	l := (len(msg) + n - 1) / n * n
	if l == 0 {
		l = n
	}
	out := make([]byte, l)
	copy(out, msg)
	return out
}

// CBCMAC returns the last block of the CBC encryption, with a zero IV, of msg
// padded by method 1 (ISO 9797-1 MAC algorithm 1).
func CBCMAC(b cipher.Block, msg []byte) []byte {
	n := b.BlockSize()
	data := Pad1(msg, n)
	defer clear(data)
	v := make([]byte, n)
	for i := 0; i < len(data); i += n {
		for j := range n {
			v[j] ^= data[i+j]
		}
		b.Encrypt(v, v)
	}
	return v
}

// RetailMAC returns the 8-byte ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail
// MAC) of msg under a 16-byte TDES key K1 K2: a single-DES CBC-MAC under K1,
// the last block then decrypted under K2 and encrypted under K1.
func RetailMAC(key, msg []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("mac: retail mac key is %d bytes, want 16: %w", len(key), ErrKeyLength)
	}
	k1, err := des.NewCipher(key[:8])
	if err != nil {
		return nil, fmt.Errorf("mac: retail mac: %w", err)
	}
	k2, err := des.NewCipher(key[8:])
	if err != nil {
		return nil, fmt.Errorf("mac: retail mac: %w", err)
	}
	v := CBCMAC(k1, msg)
	k2.Decrypt(v, v)
	k1.Encrypt(v, v)
	return v, nil
}

// CMAC returns the CMAC (NIST SP 800-38B) of msg under the block cipher b,
// whose block is 8 (TDES) or 16 (AES) bytes. Its length is the block size.
func CMAC(b cipher.Block, msg []byte) []byte {
	n := b.BlockSize()
	k1, k2 := cmacSubkeys(b)
	defer clear(k1)
	defer clear(k2)
	blocks := (len(msg) + n - 1) / n
	last := make([]byte, n)
	defer clear(last)
	if blocks == 0 || len(msg)%n != 0 {
		// Incomplete (or empty) last block: pad with 10* and use K2.
		if blocks == 0 {
			blocks = 1
		}
		rest := msg[(blocks-1)*n:]
		copy(last, rest)
		last[len(rest)] = 0x80
		xor(last, k2)
	} else {
		copy(last, msg[(blocks-1)*n:])
		xor(last, k1)
	}
	v := make([]byte, n)
	for i := 0; i < blocks-1; i++ {
		xor(v, msg[i*n:(i+1)*n])
		b.Encrypt(v, v)
	}
	xor(v, last)
	b.Encrypt(v, v)
	return v
}

// cmacSubkeys returns K1 and K2 of SP 800-38B 6.1.
func cmacSubkeys(b cipher.Block) (k1, k2 []byte) {
	n := b.BlockSize()
	rb := byte(0x87)
	if n == 8 {
		rb = 0x1B
	}
	l := make([]byte, n)
	b.Encrypt(l, l)
	k1 = dbl(l, rb)
	k2 = dbl(k1, rb)
	clear(l)
	return k1, k2
}

// dbl shifts x left by one bit and, if its top bit was set, XORs rb into the
// last byte (doubling in GF(2^n)).
func dbl(x []byte, rb byte) []byte {
	out := make([]byte, len(x))
	var carry byte
	for i := len(x) - 1; i >= 0; i-- {
		out[i] = x[i]<<1 | carry
		carry = x[i] >> 7
	}
	if carry != 0 {
		out[len(out)-1] ^= rb
	}
	return out
}

func xor(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
