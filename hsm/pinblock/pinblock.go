// Package pinblock builds and reads ISO 9564-1 PIN blocks, encrypts them, and
// translates them between formats.
//
// Formats:
//
//   - 0 (ISO-0, ANSI X9.8): the PIN field (control 0, PIN length, PIN digits,
//     fill F) XORed with the PAN field (four zero nibbles and the rightmost 12
//     PAN digits excluding the check digit); 8 bytes, encrypted with TDES.
//   - 1 (ISO-1): control 1, PIN length, PIN digits, random fill; no PAN.
//   - 3 (ISO-3): as format 0 with control 3 and a random fill of A to F.
//   - 4 (ISO-4): a 16-byte PIN field (control 4, PIN length, PIN digits, fill
//     A, then 64 random bits) enciphered with AES together with a 16-byte PAN
//     field: AES(AES(PIN field) XOR PAN field).
//
// [Encode] and [Decode] handle the clear form of every format: the 8-byte
// block for formats 0, 1 and 3 and the 16-byte PIN field for format 4.
// [Translate] moves a PIN between formats 0, 3 and 4 only, for one PAN: the
// PCI PIN rule, which a caller cannot get around because the PAN is given
// once.
//
// PINs, PANs and PIN blocks are sensitive: no error returned by this package
// contains any of them, or anything from which they could be told, such as
// the PIN length. Decode returns the clear PIN: it is for the receiving side
// of simulators and for test tools; posd's own code never decodes a PIN. The
// functions hold no state and are safe for concurrent use.
package pinblock

import (
	"crypto/cipher"
	"crypto/des"
	"errors"
	"fmt"
)

// Format is an ISO 9564-1 PIN block format number. It is a value and safe
// for concurrent use.
type Format int

// ISO 9564-1 PIN block formats.
const (
	Format0 Format = 0 // ISO-0 (ANSI X9.8), PAN-bound, 8 bytes
	Format1 Format = 1 // ISO-1, no PAN, 8 bytes
	Format3 Format = 3 // ISO-3, PAN-bound, 8 bytes
	Format4 Format = 4 // ISO-4, PAN-bound, 16 bytes, AES
)

// Size returns the length of the format's blocks in bytes (8 or 16), or 0
// for a format this package does not implement.
func (f Format) Size() int {
	switch f {
	case Format0, Format1, Format3:
		return 8
	case Format4:
		return 16
	}
	return 0
}

// String returns the format's short name, such as "ISO-0".
func (f Format) String() string {
	return fmt.Sprintf("ISO-%d", int(f))
}

// Errors returned (wrapped) by this package. None of them carries the PIN,
// the PAN or the block.
var (
	// ErrPIN means the PIN is not 4 to 12 decimal digits.
	ErrPIN = errors.New("pin must be 4 to 12 decimal digits")
	// ErrPAN means the PAN is not 8 to 19 decimal digits.
	ErrPAN = errors.New("pan must be 8 to 19 decimal digits")
	// ErrBlock means a clear block does not decode as the format: a wrong
	// control nibble, PIN length, PIN digit or fill. It usually means a wrong
	// key or a wrong PAN.
	ErrBlock = errors.New("block does not decode")
	// ErrKeyLength means a TDES key is not 16 or 24 bytes, or an AES key not
	// 16, 24 or 32.
	ErrKeyLength = errors.New("key has the wrong length for its cipher")
	// ErrFormat means a format this package does not implement, or a block
	// of the wrong length for its format.
	ErrFormat = errors.New("unsupported pin block format or length")
	// ErrTranslation means a translation PCI PIN forbids: to or from a
	// format other than 0, 3 and 4.
	ErrTranslation = errors.New("pin block translation not allowed")
)

const (
	minPIN, maxPIN = 4, 12
	minPAN, maxPAN = 8, 19
)

// EncodeFormat0 returns the clear format 0 PIN block for pin (4 to 12
// digits) and pan (the full PAN, 8 to 19 digits, check digit included).
func EncodeFormat0(pin, pan string) ([8]byte, error) {
	if len(pin) < minPIN || len(pin) > maxPIN || !digits(pin) {
		return [8]byte{}, fmt.Errorf("pinblock: encode format 0: %w", ErrPIN)
	}
	pf, err := panField(pan)
	if err != nil {
		return [8]byte{}, fmt.Errorf("pinblock: encode format 0: %w", err)
	}
	var n [16]byte // nibbles of the PIN field
	n[0] = 0
	n[1] = byte(len(pin))
	for i := 2; i < len(n); i++ {
		if i-2 < len(pin) {
			n[i] = pin[i-2] - '0'
		} else {
			n[i] = 0xF
		}
	}
	var b [8]byte
	for i := range b {
		b[i] = (n[2*i]<<4 | n[2*i+1]) ^ pf[i]
	}
	clear(n[:])
	return b, nil
}

// DecodeFormat0 returns the PIN in a clear format 0 block for pan. It checks
// the control nibble, the PIN length, that the PIN is decimal and that the
// fill is F. Every such failure returns the same error, wrapping [ErrBlock],
// so that the error says nothing about which part of the clear block was
// wrong.
func DecodeFormat0(block [8]byte, pan string) (pin string, err error) {
	pf, err := panField(pan)
	if err != nil {
		return "", fmt.Errorf("pinblock: decode format 0: %w", err)
	}
	var n [16]byte
	defer clear(n[:])
	for i := range block {
		x := block[i] ^ pf[i]
		n[2*i], n[2*i+1] = x>>4, x&0xF
	}
	if n[0] != 0 {
		return "", fmt.Errorf("pinblock: decode format 0: %w", ErrBlock)
	}
	l := int(n[1])
	if l < minPIN || l > maxPIN {
		return "", fmt.Errorf("pinblock: decode format 0: %w", ErrBlock)
	}
	out := make([]byte, l)
	for i := range l {
		d := n[2+i]
		if d > 9 {
			return "", fmt.Errorf("pinblock: decode format 0: %w", ErrBlock)
		}
		out[i] = '0' + d
	}
	for _, f := range n[2+l:] {
		if f != 0xF {
			return "", fmt.Errorf("pinblock: decode format 0: %w", ErrBlock)
		}
	}
	return string(out), nil
}

// panField returns the format 0 PAN field: 0000 then the rightmost 12 digits
// of pan excluding the check digit, left-padded with zeros.
func panField(pan string) ([8]byte, error) {
	if len(pan) < minPAN || len(pan) > maxPAN || !digits(pan) {
		return [8]byte{}, ErrPAN
	}
	body := pan[:len(pan)-1]
	var n [16]byte
	for i := 0; i < 12 && i < len(body); i++ {
		n[15-i] = body[len(body)-1-i] - '0'
	}
	var f [8]byte
	for i := range f {
		f[i] = n[2*i]<<4 | n[2*i+1]
	}
	return f, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// EncryptTDES encrypts one PIN block with TDES in ECB mode. A 16-byte key
// is used as K1 K2 K1; a 24-byte key as K1 K2 K3.
func EncryptTDES(key []byte, clear [8]byte) ([8]byte, error) {
	var out [8]byte
	c, err := tdes(key)
	if err != nil {
		return out, fmt.Errorf("pinblock: encrypt: %w", err)
	}
	c.Encrypt(out[:], clear[:])
	return out, nil
}

// DecryptTDES decrypts one PIN block with TDES in ECB mode. Keys are as for
// [EncryptTDES].
func DecryptTDES(key []byte, enc [8]byte) ([8]byte, error) {
	var out [8]byte
	c, err := tdes(key)
	if err != nil {
		return out, fmt.Errorf("pinblock: decrypt: %w", err)
	}
	c.Decrypt(out[:], enc[:])
	return out, nil
}

func tdes(key []byte) (cipher.Block, error) {
	var k [24]byte
	defer clear(k[:])
	switch len(key) {
	case 16:
		copy(k[:], key)
		copy(k[16:], key[:8])
	case 24:
		copy(k[:], key)
	default:
		return nil, ErrKeyLength
	}
	c, err := des.NewTripleDESCipher(k[:])
	if err != nil {
		return nil, err
	}
	return c, nil
}
