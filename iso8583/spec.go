package iso8583

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"
	"github.com/moov-io/iso8583/prefix"
)

// MessageSpec describes every field of a dialect: the moov-io/iso8583 type. [DefaultSpec]
// returns this project's ISO 8583:1987 ASCII dialect. A spec must not be changed once a
// message uses it; it is then safe for concurrent use.
type MessageSpec = moov.MessageSpec

// maxField is the highest field number of a message with primary and secondary bitmaps.
const maxField = 128

// class is the set of characters a field may carry on the wire (ISO 8583:1987 clause 4.1).
type class uint8

const (
	classN   class = iota + 1 // n: digits 0-9
	classAN                   // an: letters and digits
	classANS                  // ans: printable ASCII, space to '~'
	classZ                    // z: track 2 and 3 code set as ASCII: digits and '='
	classXN                   // x+n: 'C' (credit) or 'D' (debit) then digits
	classB                    // b: binary, carried as hexadecimal characters
)

func (c class) String() string {
	switch c {
	case classN:
		return "n"
	case classAN:
		return "an"
	case classANS:
		return "ans"
	case classZ:
		return "z"
	case classXN:
		return "x+n"
	case classB:
		return "b"
	}
	return "unknown"
}

// text is a field value: a string or a byte slice.
type text interface{ ~string | ~[]byte }

// badChar returns the offset of the first byte of s that the class does not allow, or -1.
func (c class) badChar(s []byte) int { return badChar(c, s) }

func badChar[T text](c class, s T) int {
	if c == classXN {
		for i := 0; i < len(s); i++ {
			if ch := s[i]; i == 0 && ch != 'C' && ch != 'D' || i > 0 && !isDigit(ch) {
				return i
			}
		}
		return -1
	}
	if c >= class(len(classChars)) {
		if len(s) > 0 {
			return 0
		}
		return -1
	}
	allowed := &classChars[c]
	for i := 0; i < len(s); i++ {
		if !allowed[s[i]] {
			return i
		}
	}
	return -1
}

// classChars says, for each class but x+n, which bytes it allows. It is built once and
// never changed.
var classChars = func() (t [classB + 1][256]bool) {
	for ch := range 256 {
		b := byte(ch)
		digit := isDigit(b)
		t[classN][ch] = digit
		t[classAN][ch] = digit || b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z'
		t[classANS][ch] = b >= ' ' && b <= '~'
		t[classZ][ch] = digit || b == '='
		t[classB][ch] = digit || b >= 'A' && b <= 'F' || b >= 'a' && b <= 'f'
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

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

// def is one row of the dialect table.
type def struct {
	class     class
	lenDigits int // 0 fixed, 2 LLVAR, 3 LLLVAR
	length    int // see codec
	name      string
}

func fixedDef(c class, length int, name string) def { return def{c, 0, length, name} }
func llvar(c class, max int, name string) def       { return def{c, 2, max, name} }
func lllvar(c class, max int, name string) def      { return def{c, 3, max, name} }

// fields87 is the default dialect: ISO 8583:1987 in ASCII, binary fields as hexadecimal
// characters. It is a function so that no mutable table is shared between callers.
func fields87() map[int]def {
	return map[int]def{
		0:   fixedDef(classN, 4, "message type indicator"),
		2:   llvar(classN, 19, "primary account number"),
		3:   fixedDef(classN, 6, "processing code"),
		4:   fixedDef(classN, 12, "amount, transaction"),
		5:   fixedDef(classN, 12, "amount, settlement"),
		6:   fixedDef(classN, 12, "amount, cardholder billing"),
		7:   fixedDef(classN, 10, "transmission date and time"),
		8:   fixedDef(classN, 8, "amount, cardholder billing fee"),
		9:   fixedDef(classN, 8, "conversion rate, settlement"),
		10:  fixedDef(classN, 8, "conversion rate, cardholder billing"),
		11:  fixedDef(classN, 6, "systems trace audit number"),
		12:  fixedDef(classN, 6, "time, local transaction"),
		13:  fixedDef(classN, 4, "date, local transaction"),
		14:  fixedDef(classN, 4, "date, expiration"),
		15:  fixedDef(classN, 4, "date, settlement"),
		16:  fixedDef(classN, 4, "date, conversion"),
		17:  fixedDef(classN, 4, "date, capture"),
		18:  fixedDef(classN, 4, "merchant type"),
		19:  fixedDef(classN, 3, "acquiring institution country code"),
		20:  fixedDef(classN, 3, "PAN extended, country code"),
		21:  fixedDef(classN, 3, "forwarding institution country code"),
		22:  fixedDef(classN, 3, "point of service entry mode"),
		23:  fixedDef(classN, 3, "card sequence number"),
		24:  fixedDef(classN, 3, "network international identifier"),
		25:  fixedDef(classN, 2, "point of service condition code"),
		26:  fixedDef(classN, 2, "point of service PIN capture code"),
		27:  fixedDef(classN, 1, "authorization identification response length"),
		28:  fixedDef(classXN, 9, "amount, transaction fee"),
		29:  fixedDef(classXN, 9, "amount, settlement fee"),
		30:  fixedDef(classXN, 9, "amount, transaction processing fee"),
		31:  fixedDef(classXN, 9, "amount, settlement processing fee"),
		32:  llvar(classN, 11, "acquiring institution identification code"),
		33:  llvar(classN, 11, "forwarding institution identification code"),
		34:  llvar(classANS, 28, "primary account number, extended"),
		35:  llvar(classZ, 37, "track 2 data"),
		36:  lllvar(classZ, 104, "track 3 data"),
		37:  fixedDef(classAN, 12, "retrieval reference number"),
		38:  fixedDef(classAN, 6, "authorization identification response"),
		39:  fixedDef(classAN, 2, "response code"),
		40:  fixedDef(classAN, 3, "service restriction code"),
		41:  fixedDef(classANS, 8, "card acceptor terminal identification"),
		42:  fixedDef(classANS, 15, "card acceptor identification code"),
		43:  fixedDef(classANS, 40, "card acceptor name/location"),
		44:  llvar(classAN, 25, "additional response data"),
		45:  llvar(classANS, 76, "track 1 data"),
		46:  lllvar(classANS, 999, "additional data, ISO"),
		47:  lllvar(classANS, 999, "additional data, national"),
		48:  lllvar(classANS, 999, "additional data, private"),
		49:  fixedDef(classN, 3, "currency code, transaction"),
		50:  fixedDef(classN, 3, "currency code, settlement"),
		51:  fixedDef(classN, 3, "currency code, cardholder billing"),
		52:  fixedDef(classB, 8, "personal identification number data"),
		53:  fixedDef(classN, 16, "security related control information"),
		54:  lllvar(classAN, 120, "additional amounts"),
		55:  lllvar(classB, 999, "ICC data"),
		56:  lllvar(classANS, 999, "reserved, ISO"),
		57:  lllvar(classANS, 999, "reserved, national"),
		58:  lllvar(classANS, 999, "reserved, national"),
		59:  lllvar(classANS, 999, "reserved, national"),
		60:  lllvar(classANS, 999, "reserved, private"),
		61:  lllvar(classANS, 999, "reserved, private"),
		62:  lllvar(classANS, 999, "reserved, private (KSN)"),
		63:  lllvar(classANS, 999, "reserved, private"),
		64:  fixedDef(classB, 8, "message authentication code"),
		65:  fixedDef(classB, 1, "bitmap, extended"),
		66:  fixedDef(classN, 1, "settlement code"),
		67:  fixedDef(classN, 2, "extended payment code"),
		68:  fixedDef(classN, 3, "receiving institution country code"),
		69:  fixedDef(classN, 3, "settlement institution country code"),
		70:  fixedDef(classN, 3, "network management information code"),
		71:  fixedDef(classN, 4, "message number"),
		72:  fixedDef(classN, 4, "message number, last"),
		73:  fixedDef(classN, 6, "date, action"),
		74:  fixedDef(classN, 10, "credits, number"),
		75:  fixedDef(classN, 10, "credits, reversal number"),
		76:  fixedDef(classN, 10, "debits, number"),
		77:  fixedDef(classN, 10, "debits, reversal number"),
		78:  fixedDef(classN, 10, "transfers, number"),
		79:  fixedDef(classN, 10, "transfers, reversal number"),
		80:  fixedDef(classN, 10, "inquiries, number"),
		81:  fixedDef(classN, 10, "authorizations, number"),
		82:  fixedDef(classN, 12, "credits, processing fee amount"),
		83:  fixedDef(classN, 12, "credits, transaction fee amount"),
		84:  fixedDef(classN, 12, "debits, processing fee amount"),
		85:  fixedDef(classN, 12, "debits, transaction fee amount"),
		86:  fixedDef(classN, 16, "credits, amount"),
		87:  fixedDef(classN, 16, "credits, reversal amount"),
		88:  fixedDef(classN, 16, "debits, amount"),
		89:  fixedDef(classN, 16, "debits, reversal amount"),
		90:  fixedDef(classN, 42, "original data elements"),
		91:  fixedDef(classAN, 1, "file update code"),
		92:  fixedDef(classAN, 2, "file security code"),
		93:  fixedDef(classAN, 5, "response indicator"),
		94:  fixedDef(classAN, 7, "service indicator"),
		95:  fixedDef(classAN, 42, "replacement amounts"),
		96:  fixedDef(classB, 8, "message security code"),
		97:  fixedDef(classXN, 17, "amount, net settlement"),
		98:  fixedDef(classANS, 25, "payee"),
		99:  llvar(classN, 11, "settlement institution identification code"),
		100: llvar(classN, 11, "receiving institution identification code"),
		101: llvar(classANS, 17, "file name"),
		102: llvar(classANS, 28, "account identification 1"),
		103: llvar(classANS, 28, "account identification 2"),
		104: lllvar(classANS, 100, "transaction description"),
		105: lllvar(classANS, 999, "reserved, ISO"),
		106: lllvar(classANS, 999, "reserved, ISO"),
		107: lllvar(classANS, 999, "reserved, ISO"),
		108: lllvar(classANS, 999, "reserved, ISO"),
		109: lllvar(classANS, 999, "reserved, ISO"),
		110: lllvar(classANS, 999, "reserved, ISO"),
		111: lllvar(classANS, 999, "reserved, ISO"),
		112: lllvar(classANS, 999, "reserved, national"),
		113: lllvar(classANS, 999, "reserved, national"),
		114: lllvar(classANS, 999, "reserved, national"),
		115: lllvar(classANS, 999, "reserved, national"),
		116: lllvar(classANS, 999, "reserved, national"),
		117: lllvar(classANS, 999, "reserved, national"),
		118: lllvar(classANS, 999, "reserved, national"),
		119: lllvar(classANS, 999, "reserved, national"),
		120: lllvar(classANS, 999, "reserved, private"),
		121: lllvar(classANS, 999, "reserved, private"),
		122: lllvar(classANS, 999, "reserved, private"),
		123: lllvar(classANS, 999, "reserved, private"),
		124: lllvar(classANS, 999, "reserved, private"),
		125: lllvar(classANS, 999, "reserved, private"),
		126: lllvar(classANS, 999, "reserved, private"),
		127: lllvar(classANS, 999, "reserved, private"),
		128: fixedDef(classB, 8, "message authentication code (secondary)"),
	}
}

// DefaultSpec returns a new copy of the project's default dialect: ISO 8583:1987 with every
// field in ASCII and binary fields as hexadecimal characters, the way jPOS's ISO87APackager
// and Wireshark's ISO 8583 dissector read it. All fields 1 to 128 are defined:
//
//   - MTI n4; bitmap: 16 hexadecimal characters, followed by 16 more for the secondary bitmap
//     exactly when a field 65 to 128 is present.
//   - n fields are digits only, with no padding: a value must have its full length
//     ("000000001000" for an amount of 10.00).
//   - Fixed ans fields (41, 42, 43, 98) are padded on the right with spaces when packed; the
//     spaces are removed when unpacked.
//   - Fields 52, 64, 96 and 128 are 8 bytes as 16 hexadecimal characters; field 55 is LLLVAR
//     binary as hexadecimal characters, its length prefix counting characters.
//   - Field 35 (track 2) is z..37 as ASCII: digits and '=' only, no sentinels.
//   - Field 62 carries the DUKPT KSN as upper-case hexadecimal characters, 20 for TDES
//     and 24 for AES (see [Authorization]); field 53 is n16 as in ISO and cannot hold a KSN.
//     Field 52's 8 bytes take a TDES PIN block only: see [CheckPINFields] for AES.
//   - Field 65 (tertiary bitmap indicator) is defined but rejected by [Pack] and [Unpack]:
//     the dialect has no tertiary bitmap.
//
// Where this departs from a literal reading of ISO 8583:1987 it follows the jPOS ASCII
// packager: track 1 (45) and the additional data fields (46-48) are ans, not an, since real
// track 1 data holds '^' and spaces.
//
// Every field's Packer and Unpacker is this package's codec, which enforces the character
// class; Enc, Pref and Pad describe the same layout in moov's terms. Use the spec with
// [Pack] and [Unpack], not with the Message methods of the same names.
func DefaultSpec() *MessageSpec {
	fields := make(map[int]field.Field, maxField+1)
	for id, d := range fields87() {
		fields[id] = d.field()
	}
	fields[1] = field.NewBitmap(&field.Spec{
		Length:      8,
		Description: "bitmap",
		Enc:         encoding.BytesToASCIIHex,
		Pref:        prefix.Hex.Fixed,
	})
	return &MessageSpec{Name: "posd ISO 8583:1987 ASCII", Fields: fields}
}

func (d def) field() field.Field {
	c := codec{class: d.class, lenDigits: d.lenDigits, enc: encASCII, pref: prefASCII}
	spec := &field.Spec{
		Length:      d.length,
		Description: d.name,
		Enc:         encoding.ASCII,
	}
	switch d.lenDigits {
	case 0:
		spec.Pref = prefix.ASCII.Fixed
	case 2:
		spec.Pref = prefix.ASCII.LL
	default:
		spec.Pref = prefix.ASCII.LLL
	}
	if d.class == classANS && d.lenDigits == 0 {
		spec.Pad = padding.Right(' ')
		c.unpad = true
	}
	if d.class == classB {
		c.enc = encHex
		c.countChars = d.lenDigits != 0
		spec.Enc = encoding.BytesToASCIIHex
		spec.Packer, spec.Unpacker = c, c
		return field.NewBinary(spec)
	}
	spec.Packer, spec.Unpacker = c, c
	return field.NewString(spec)
}

// defaultSpec is the spec shared by messages built without one. It is never handed to
// callers to change: messages built on it expose it through GetSpec, which callers must
// treat as read-only, as for any spec in use.
var defaultSpec = sync.OnceValue(DefaultSpec)
