package iso8583

// One field on the wire: the codec that packs and unpacks a field's value with its length
// prefix, for every wire encoding this package knows.

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
)

// wireEnc is how a field's value travels on the wire.
type wireEnc uint8

const (
	encASCII  wireEnc = iota // text classes: the characters as they are
	encBCD                   // n and z: two digits per byte ('=' as nibble D); an odd count gets a leading pad nibble
	encLBCD                  // like encBCD, with the pad nibble trailing
	encRaw                   // b: the bytes as they are
	encHex                   // b: each byte as two upper-case hexadecimal characters
	encEBCDIC                // text classes: each character in IBM code page 1047 (moov's encoding.EBCDIC1047)
)

// prefKind is how a variable-length field's length prefix is written.
type prefKind uint8

const (
	prefASCII  prefKind = iota // lenDigits decimal digits as ASCII characters
	prefBCD                    // lenDigits decimal digits packed two per byte (odd: a leading 0 nibble)
	prefBinary                 // a lenDigits-byte big-endian binary number
	prefHex                    // 2×lenDigits hexadecimal characters (moov-io's Hex prefixes)
	prefEBCDIC                 // lenDigits decimal digits as EBCDIC characters (0xF0-0xF9)
)

// codec packs and unpacks one field. It is the field.Packer and field.Unpacker of every
// field of [DefaultSpec] and of dialects loaded with [ParseDialect]: moov's own packers
// check neither the character class nor that a length prefix is made of digits.
//
// For text classes spec.Length is the fixed length or the maximum, in characters (digits
// for BCD). For classB it is in bytes, except when countChars is set (a variable-length
// field carried as hexadecimal characters whose prefix counts characters: the jPOS and
// Wireshark reading of field 55 in the ASCII dialect).
//
// Errors from a codec never contain the field's value: they name lengths and offsets only.
type codec struct {
	class      class
	enc        wireEnc
	pref       prefKind
	lenDigits  int  // 0 for a fixed length, else the size of the length prefix (see prefKind)
	countChars bool // classB with encHex and a prefix: prefix and Length count characters
	unpad      bool // remove spec.Pad from unpacked values (right-padded text)
}

var (
	_ field.Packer   = codec{}
	_ field.Unpacker = codec{}
)

func (c codec) fixed() bool { return c.lenDigits == 0 }

// prefixLen returns the number of bytes of the length prefix.
func (c codec) prefixLen() int {
	switch c.pref {
	case prefBCD:
		return (c.lenDigits + 1) / 2
	case prefHex:
		return 2 * c.lenDigits
	}
	return c.lenDigits
}

// maxPrefix returns the largest length the prefix can state.
func (c codec) maxPrefix() int {
	n := 1
	for i := 0; i < c.lenDigits; i++ {
		switch c.pref {
		case prefBinary, prefHex:
			n *= 256
		default:
			n *= 10
		}
		if n > 1<<30 {
			return 1 << 30
		}
	}
	return n - 1
}

// Pack implements field.Packer.
func (c codec) Pack(value []byte, spec *field.Spec) ([]byte, error) {
	return appendPacked(c, nil, value, spec)
}

// checkPacked returns the error appendPacked would return for value, packing nothing
// unless the value must be padded or re-encoded to be checked.
func checkPacked[T text](c codec, value T, spec *field.Spec) error {
	_, err := packValue(c, nil, value, spec, true)
	return err
}

// appendPacked appends the wire form of value to dst (a new slice when dst is nil).
func appendPacked[T text](c codec, dst []byte, value T, spec *field.Spec) ([]byte, error) {
	return packValue(c, dst, value, spec, false)
}

// packValue is appendPacked; with checkOnly set it stops after the checks when what is
// left cannot fail (no padding, no EBCDIC), returning dst as it is.
func packValue[T text](c codec, dst []byte, value T, spec *field.Spec, checkOnly bool) ([]byte, error) {
	count := len(value) // what the prefix states, in the field's unit
	if c.class == classB {
		if c.fixed() {
			if len(value) != spec.Length {
				return nil, fmt.Errorf("%w: value has %d bytes, want exactly %d", ErrInvalidLength, len(value), spec.Length)
			}
		} else {
			unit := "bytes"
			if c.countChars && c.enc == encHex {
				count, unit = 2*len(value), "hex characters"
			}
			if count > spec.Length {
				return nil, fmt.Errorf("%w: value has %d %s, want at most %d", ErrInvalidLength, count, unit, spec.Length)
			}
		}
	} else {
		if c.fixed() && spec.Pad != nil && len(value) < spec.Length {
			return packValue(c, dst, spec.Pad.Pad([]byte(value), spec.Length), spec, checkOnly)
		}
		switch {
		case c.fixed() && count != spec.Length:
			return nil, fmt.Errorf("%w: value has %d characters, want exactly %d", ErrInvalidLength, count, spec.Length)
		case count > spec.Length:
			return nil, fmt.Errorf("%w: value has %d characters, want at most %d", ErrInvalidLength, count, spec.Length)
		}
		if i := badChar(c.class, value); i >= 0 {
			return nil, fmt.Errorf("%w: offset %d is outside class %s", ErrInvalidCharacter, i, c.class)
		}
	}
	if checkOnly && c.enc != encEBCDIC {
		return dst, nil
	}
	if dst == nil {
		dst = make([]byte, 0, c.prefixLen()+c.wireLen(len(value)))
	}
	if !c.fixed() {
		dst = c.appendPrefix(dst, count)
	}
	const hexdigits = "0123456789ABCDEF"
	switch c.enc {
	case encHex:
		n := len(dst)
		dst = slices.Grow(dst, 2*len(value))[:n+2*len(value)]
		out := dst[n:]
		for i := 0; i < len(value); i++ {
			b := value[i]
			out[2*i], out[2*i+1] = hexdigits[b>>4], hexdigits[b&0x0f]
		}
	case encBCD, encLBCD:
		dst = appendBCD(dst, value, c.enc == encLBCD)
	case encEBCDIC:
		// The class check above let through printable ASCII only, which code page 1047
		// maps one byte to one byte.
		e, err := encoding.EBCDIC1047.Encode([]byte(value))
		if err != nil || len(e) != len(value) {
			return nil, fmt.Errorf("%w: value has a character that EBCDIC 1047 cannot carry", ErrInvalidCharacter)
		}
		dst = append(dst, e...)
	default:
		dst = append(dst, value...)
	}
	return dst, nil
}

// wireLen returns the number of bytes a value of n units takes on the wire.
func (c codec) wireLen(n int) int {
	switch c.enc {
	case encHex:
		return 2 * n
	case encBCD, encLBCD:
		return (n + 1) / 2
	}
	return n
}

// appendPrefix appends n as the length prefix; the caller has checked that it fits.
func (c codec) appendPrefix(b []byte, n int) []byte {
	switch c.pref {
	case prefBinary:
		for i := c.lenDigits - 1; i >= 0; i-- {
			b = append(b, byte(n>>(8*i)))
		}
		return b
	case prefHex:
		const hexdigits = "0123456789ABCDEF"
		for i := 2*c.lenDigits - 1; i >= 0; i-- {
			b = append(b, hexdigits[(n>>(4*i))&0x0f])
		}
		return b
	case prefBCD:
		var digits [8]byte
		d := appendLength(digits[:0], c.lenDigits, n)
		return appendBCD(b, d, false)
	case prefEBCDIC:
		start := len(b)
		b = appendLength(b, c.lenDigits, n)
		for i := start; i < len(b); i++ {
			b[i] = 0xF0 | (b[i] - '0') // EBCDIC digits
		}
		return b
	}
	return appendLength(b, c.lenDigits, n)
}

// appendLength appends n as exactly digits ASCII digits; the caller has checked that n fits.
func appendLength(b []byte, digits, n int) []byte {
	var tmp [8]byte
	for i := digits - 1; i >= 0; i-- {
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, tmp[:digits]...)
}

// appendBCD packs digits ('0'-'9', '=' as nibble D) two per byte; an odd count gets a 0
// nibble in front (or behind, when trailing is set). The caller has checked the characters.
func appendBCD[T text](b []byte, digits T, trailing bool) []byte {
	nib := func(c byte) byte {
		if c == '=' {
			return 0x0D
		}
		return c - '0'
	}
	i := 0
	if len(digits)%2 == 1 && !trailing {
		b = append(b, nib(digits[0]))
		i = 1
	}
	for ; i+1 < len(digits); i += 2 {
		b = append(b, nib(digits[i])<<4|nib(digits[i+1]))
	}
	if i < len(digits) { // odd and trailing
		b = append(b, nib(digits[i])<<4)
	}
	return b
}

// Unpack implements field.Unpacker. A text value it returns may share data's memory; a
// binary one has memory of its own.
func (c codec) Unpack(data []byte, spec *field.Spec) ([]byte, int, error) {
	buf, lo, hi, n, err := c.unpackTo(data[:len(data):len(data)], 0, len(data), spec)
	if err != nil {
		return nil, 0, err
	}
	v := buf[lo:hi]
	if c.enc == encRaw {
		v = bytes.Clone(v)
	}
	return v, n, nil
}

// unpackTo reads one field from buf[pos:end] and returns buf, its value's place in it
// (buf[lo:hi]) and the number of bytes the field took. A value that travels as it is
// (ASCII text, raw binary) is its part of the input; one that is decoded (hexadecimal
// characters, BCD, EBCDIC) is appended to buf, whose bytes up to end are not changed (an
// append may move them: use the returned buf).
func (c codec) unpackTo(buf []byte, pos, end int, spec *field.Spec) (_ []byte, lo, hi, read int, err error) {
	data := buf[pos:end]
	count := spec.Length
	if !c.fixed() {
		if count, err = c.readPrefix(data); err != nil {
			return buf, 0, 0, 0, err
		}
		if count > spec.Length {
			return buf, 0, 0, 0, fmt.Errorf("%w: length prefix says %d, the field allows at most %d", ErrInvalidLength, count, spec.Length)
		}
		read = c.prefixLen()
	}
	wire := c.wireLen(count)
	if c.class == classB && c.enc == encHex && c.countChars && !c.fixed() {
		if count%2 != 0 {
			return buf, 0, 0, 0, fmt.Errorf("%w: odd number (%d) of hex characters", ErrInvalidLength, count)
		}
		wire = count
	}
	if len(data)-read < wire {
		return buf, 0, 0, 0, fmt.Errorf("%w: field needs %d bytes, %d left", ErrTruncated, wire, len(data)-read)
	}
	raw := data[read : read+wire]
	lo, hi = pos+read, pos+read+wire
	read += wire
	switch c.enc {
	case encHex:
		lo = len(buf)
		buf = slices.Grow(buf, len(raw)/2)[:lo+len(raw)/2]
		out := buf[lo:]
		for i := range out {
			h, l := hexValue[raw[2*i]], hexValue[raw[2*i+1]]
			if h|l > 0x0f {
				if h > 0x0f {
					return buf[:lo], 0, 0, 0, fmt.Errorf("%w: offset %d is not a hexadecimal character", ErrInvalidCharacter, 2*i)
				}
				return buf[:lo], 0, 0, 0, fmt.Errorf("%w: offset %d is not a hexadecimal character", ErrInvalidCharacter, 2*i+1)
			}
			out[i] = h<<4 | l
		}
		return buf, lo, len(buf), read, nil
	case encRaw:
		return buf, lo, hi, read, nil
	case encBCD, encLBCD:
		lo = len(buf)
		if buf, err = c.decodeBCD(buf, raw, count); err != nil {
			return buf, 0, 0, 0, err
		}
		return buf, lo, len(buf), read, nil
	case encEBCDIC:
		dec, _, err := encoding.EBCDIC1047.Decode(raw, len(raw))
		if err != nil || len(dec) != len(raw) {
			// A byte that is not a printable ASCII character decodes to more than one byte.
			return buf, 0, 0, 0, fmt.Errorf("%w: a byte is outside class %s in EBCDIC 1047", ErrInvalidCharacter, c.class)
		}
		lo = len(buf)
		buf = append(buf, dec...)
		hi = len(buf)
		raw = dec
	}
	if i := c.class.badChar(raw); i >= 0 {
		return buf, 0, 0, 0, fmt.Errorf("%w: offset %d is outside class %s", ErrInvalidCharacter, i, c.class)
	}
	if c.unpad && spec.Pad != nil {
		// Right padding: the value is a prefix of what came.
		hi = lo + len(spec.Pad.Unpad(raw))
	}
	return buf, lo, hi, read, nil
}

// readPrefix reads the length prefix at the start of data.
func (c codec) readPrefix(data []byte) (int, error) {
	pl := c.prefixLen()
	if len(data) < pl {
		return 0, fmt.Errorf("%w: length prefix needs %d bytes, %d left", ErrTruncated, pl, len(data))
	}
	p := data[:pl]
	n := 0
	switch c.pref {
	case prefBinary:
		for _, b := range p {
			n = n<<8 | int(b)
		}
	case prefHex:
		if classB.badChar(p) >= 0 {
			return 0, fmt.Errorf("%w: length prefix is not %d hexadecimal characters", ErrInvalidLength, pl)
		}
		for _, b := range p {
			n = n<<4 | int(unhex(b))
		}
	case prefBCD:
		for i, b := range p {
			hi, lo := b>>4, b&0x0f
			if hi > 9 || lo > 9 || i == 0 && c.lenDigits%2 == 1 && hi != 0 {
				return 0, fmt.Errorf("%w: length prefix is not %d BCD digits", ErrInvalidLength, c.lenDigits)
			}
			n = n*100 + int(hi)*10 + int(lo)
		}
	case prefEBCDIC:
		for _, b := range p {
			if b < 0xF0 || b > 0xF9 {
				return 0, fmt.Errorf("%w: length prefix is not %d EBCDIC digits", ErrInvalidLength, c.lenDigits)
			}
			n = n*10 + int(b-0xF0)
		}
	default:
		for _, b := range p {
			if !isDigit(b) {
				return 0, fmt.Errorf("%w: length prefix is not %d digits", ErrInvalidLength, c.lenDigits)
			}
			n = n*10 + int(b-'0')
		}
	}
	return n, nil
}

// decodeBCD appends the count digits of raw to out. The pad nibble of an odd count may be 0
// or F.
func (c codec) decodeBCD(out, raw []byte, count int) ([]byte, error) {
	start := len(out)
	skip := -1 // index of the pad nibble
	if count%2 == 1 {
		skip = 0
		if c.enc == encLBCD {
			skip = 2*len(raw) - 1
		}
	}
	for i := 0; i < 2*len(raw); i++ {
		nib := raw[i/2] >> 4
		if i%2 == 1 {
			nib = raw[i/2] & 0x0f
		}
		switch {
		case i == skip:
			if nib != 0 && nib != 0x0f {
				return out, fmt.Errorf("%w: pad nibble at offset %d is not 0 or F", ErrInvalidCharacter, i/2)
			}
			continue
		case nib <= 9:
			out = append(out, '0'+nib)
		case nib == 0x0D && c.class == classZ:
			out = append(out, '=')
		default:
			return out, fmt.Errorf("%w: offset %d is outside class %s", ErrInvalidCharacter, len(out)-start, c.class)
		}
	}
	return out, nil
}

// hexValue maps each byte to its value as a hexadecimal digit, 0xFF when it is not one. It
// is built once and never changed.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := range 10 {
		t['0'+i] = byte(i)
	}
	for i := range 6 {
		t['A'+i], t['a'+i] = byte(10+i), byte(10+i)
	}
	return t
}()

// unhex returns the value of a hexadecimal digit the caller has checked.
func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
