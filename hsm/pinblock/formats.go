package pinblock

import (
	"crypto/aes"
	crand "crypto/rand"
	"fmt"
	"io"
)

// Encode returns the clear PIN block of format f for pin (4 to 12 digits):
// the 8-byte block for formats 0, 1 and 3, the 16-byte plain-text PIN field
// for format 4 (which [EncryptFormat4] enciphers with the PAN). Formats 0 and
// 3 need pan (8 to 19 digits); formats 1 and 4 do not read it.
//
// rand supplies the random fill; nil means crypto/rand. Formats 1 and 3 read
// one byte per fill nibble and use its low four bits, format 3 discarding
// bytes whose low bits are below A, so that a reader of the bytes 0x0A to
// 0x0F (or 0x00 to 0x0F for format 1) fixes the fill nibble by nibble.
// Format 4 reads the 8 bytes of its random field as they are.
func Encode(f Format, pin, pan string, rand io.Reader) ([]byte, error) {
	if !validPIN(pin) {
		return nil, fmt.Errorf("pinblock: encode %v: %w", f, ErrPIN)
	}
	if rand == nil {
		rand = crand.Reader
	}
	switch f {
	case Format0:
		b, err := EncodeFormat0(pin, pan)
		return b[:], err
	case Format1, Format3:
		var pf [8]byte
		if f == Format3 {
			var err error
			if pf, err = panField(pan); err != nil {
				return nil, fmt.Errorf("pinblock: encode %v: %w", f, err)
			}
		}
		var n [16]byte
		defer clear(n[:])
		n[0], n[1] = byte(f), byte(len(pin))
		for i := range len(pin) {
			n[2+i] = pin[i] - '0'
		}
		for i := 2 + len(pin); i < 16; i++ {
			x, err := fillNibble(rand, f == Format3)
			if err != nil {
				return nil, fmt.Errorf("pinblock: encode %v: random fill: %w", f, err)
			}
			n[i] = x
		}
		b := make([]byte, 8)
		for i := range b {
			b[i] = (n[2*i]<<4 | n[2*i+1]) ^ pf[i]
		}
		return b, nil
	case Format4:
		var n [32]byte
		defer clear(n[:])
		n[0], n[1] = 4, byte(len(pin))
		for i := 2; i < 16; i++ {
			n[i] = 0xA
		}
		for i := range len(pin) {
			n[2+i] = pin[i] - '0'
		}
		b := make([]byte, 16)
		for i := range 8 {
			b[i] = n[2*i]<<4 | n[2*i+1]
		}
		if _, err := io.ReadFull(rand, b[8:]); err != nil {
			clear(b)
			return nil, fmt.Errorf("pinblock: encode %v: random field: %w", f, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("pinblock: encode %v: %w", f, ErrFormat)
}

func fillNibble(r io.Reader, aToF bool) (byte, error) {
	var b [1]byte
	for range 1 << 10 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		x := b[0] & 0x0F
		if !aToF || x >= 0xA {
			return x, nil
		}
	}
	return 0, fmt.Errorf("no usable fill digit in 1024 bytes")
}

// Decode returns the PIN in a clear PIN block of format f: an 8-byte block
// for formats 0, 1 and 3, the 16-byte plain-text PIN field for format 4.
// Formats 0 and 3 need the PAN; formats 1 and 4 do not read it. It checks the
// control nibble, the PIN length and digits, and the fill (F for format 0, A
// to F for format 3, A for format 4). Every such failure returns the same
// error, wrapping [ErrBlock].
func Decode(f Format, block []byte, pan string) (string, error) {
	if f.Size() == 0 || len(block) != f.Size() {
		return "", fmt.Errorf("pinblock: decode %v: %d-byte block: %w", f, len(block), ErrFormat)
	}
	if f == Format0 {
		return DecodeFormat0([8]byte(block), pan)
	}
	var pf [8]byte
	if f == Format3 {
		var err error
		if pf, err = panField(pan); err != nil {
			return "", fmt.Errorf("pinblock: decode %v: %w", f, err)
		}
	}
	var n [16]byte
	defer clear(n[:])
	for i := range 8 {
		x := block[i] ^ pf[i]
		n[2*i], n[2*i+1] = x>>4, x&0xF
	}
	bad := fmt.Errorf("pinblock: decode %v: %w", f, ErrBlock)
	l := int(n[1])
	if n[0] != byte(f) || l < minPIN || l > maxPIN {
		return "", bad
	}
	out := make([]byte, l)
	for i := range l {
		if n[2+i] > 9 {
			return "", bad
		}
		out[i] = '0' + n[2+i]
	}
	for _, x := range n[2+l:] {
		if (f == Format3 && x < 0xA) || (f == Format4 && x != 0xA) {
			clear(out)
			return "", bad
		}
	}
	return string(out), nil
}

// Format4PANField returns the 16-byte plain-text PAN field of format 4: the
// PAN length minus 12 (0 for 12 digits or fewer) in one nibble, the PAN (a
// PAN shorter than 12 digits right-justified in 12 with leading zeros), then
// zeros. The PAN is 1 to 19 digits.
func Format4PANField(pan string) ([16]byte, error) {
	if len(pan) < 1 || len(pan) > maxPAN || !digits(pan) {
		return [16]byte{}, fmt.Errorf("pinblock: format 4 pan field: %w", ErrPAN)
	}
	var n [32]byte
	p := pan
	if len(p) < 12 {
		n[0] = 0
		for i := range len(p) {
			n[1+12-len(p)+i] = p[i] - '0'
		}
	} else {
		n[0] = byte(len(p) - 12)
		for i := range len(p) {
			n[1+i] = p[i] - '0'
		}
	}
	var f [16]byte
	for i := range f {
		f[i] = n[2*i]<<4 | n[2*i+1]
	}
	return f, nil
}

// EncryptFormat4 enciphers a format 4 PIN field for pan under a 16, 24 or
// 32-byte AES key: AES(AES(PIN field) XOR PAN field).
func EncryptFormat4(key []byte, pinField [16]byte, pan string) ([16]byte, error) {
	var out [16]byte
	c, err := aes.NewCipher(key)
	if err != nil {
		return out, fmt.Errorf("pinblock: encrypt format 4: aes key of %d bytes: %w", len(key), ErrKeyLength)
	}
	pf, err := Format4PANField(pan)
	if err != nil {
		return out, fmt.Errorf("pinblock: encrypt format 4: %w", ErrPAN)
	}
	c.Encrypt(out[:], pinField[:])
	for i := range out {
		out[i] ^= pf[i]
	}
	c.Encrypt(out[:], out[:])
	return out, nil
}

// DecryptFormat4 deciphers a format 4 block for pan under an AES key and
// returns the plain-text PIN field, for [Decode]. A wrong key or PAN gives a
// field that does not decode.
func DecryptFormat4(key []byte, block [16]byte, pan string) ([16]byte, error) {
	var out [16]byte
	c, err := aes.NewCipher(key)
	if err != nil {
		return out, fmt.Errorf("pinblock: decrypt format 4: aes key of %d bytes: %w", len(key), ErrKeyLength)
	}
	pf, err := Format4PANField(pan)
	if err != nil {
		return out, fmt.Errorf("pinblock: decrypt format 4: %w", ErrPAN)
	}
	c.Decrypt(out[:], block[:])
	for i := range out {
		out[i] ^= pf[i]
	}
	c.Decrypt(out[:], out[:])
	return out, nil
}

// Translate moves the PIN in the clear block of format from into a new clear
// block of format to, for the same pan. Only formats 0, 3 and 4 may be
// translated, to one another or to themselves (PCI PIN): anything else
// returns an error wrapping [ErrTranslation]. The PAN is given once, so the
// translated block is bound to the account the original was bound to. For
// format 4 the clear form is the PIN field; rand is as for [Encode].
func Translate(from Format, block []byte, pan string, to Format, rand io.Reader) ([]byte, error) {
	if !translatable(from) || !translatable(to) {
		return nil, fmt.Errorf("pinblock: translate %v to %v: %w (only among ISO-0, ISO-3 and ISO-4)", from, to, ErrTranslation)
	}
	if len(pan) < minPAN || len(pan) > maxPAN || !digits(pan) {
		return nil, fmt.Errorf("pinblock: translate: %w", ErrPAN)
	}
	pin, err := Decode(from, block, pan)
	if err != nil {
		return nil, fmt.Errorf("pinblock: translate: %w", err)
	}
	out, err := Encode(to, pin, pan, rand)
	if err != nil {
		return nil, fmt.Errorf("pinblock: translate: %w", err)
	}
	return out, nil
}

func translatable(f Format) bool { return f == Format0 || f == Format3 || f == Format4 }

func validPIN(pin string) bool {
	return len(pin) >= minPIN && len(pin) <= maxPIN && digits(pin)
}
