// Package emv handles the EMV data of a contact chip transaction as posd sees
// it: the BER-TLV a PIN pad returns (ABECS GOC and FNC), the ISO 8583 field
// 55 built from it, the card data inside it (PAN, track 2 equivalent, expiry,
// PAN sequence number, cryptogram type), and the issuer data of the host's
// answer that goes back to the card.
//
// # Basics
//
//	data, err := emv.Parse(tlvFromPad)      // strict BER-TLV, never panics
//	c, err := emv.ExtractCard(data)         // 5A, 57, 5F24, 5F34, 9F27; checked for consistency
//	de55, err := emv.BuildDE55(data)        // the tag set sent with an ARQC
//	issuer, err := emv.IssuerData(field55)  // 91, 71, 72 from the host, for FNC
//
// # Sensitive data
//
// A [Data] holds card data (tags 5A, 57, 56, 5F20, 9F1F, 9F20, 9F6B) and
// cryptograms (9F26, 91, scripts). Its String, GoString and LogValue show the
// PAN masked to its first 6 and last 4 digits and the other sensitive values
// as their length only. Errors name tags, never values. [Describe] gives the
// same masked form for raw bytes.
//
// # Caveats
//
// TLV decoding uses github.com/moov-io/bertlv after this package has checked
// the bytes itself: bertlv v0.1.0 panics on some malformed lengths, so
// [Parse] refuses what EMV does not allow (indefinite and over-long lengths,
// tags longer than 3 bytes, nesting deeper than 4) before bertlv sees it.
// Padding bytes 00 between objects are skipped, so encoding parsed data
// again may differ from the input in padding and length form.
//
// The package is a leaf beside terminal/card: it imports nothing of posd but
// that package.
package emv

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/moov-io/bertlv"
)

// Errors. They name tags, never values.
var (
	// ErrFormat: the bytes are not well-formed EMV BER-TLV.
	ErrFormat = errors.New("emv: malformed TLV")
	// ErrMissingTag: a tag that is needed is absent.
	ErrMissingTag = errors.New("emv: tag missing")
	// ErrInconsistent: two data objects that must agree do not (PAN in 5A
	// and 57, expiry in 5F24 and 57).
	ErrInconsistent = errors.New("emv: card data objects disagree")
	// ErrTooLong: the data does not fit where it must go.
	ErrTooLong = errors.New("emv: data too long")
)

// TagError says which tag a failure is about. It unwraps to Err (one of the
// sentinels). It is plain data, safe for concurrent reads.
type TagError struct {
	Tag string // upper-case hex, e.g. "9F26"
	Err error
}

func (e *TagError) Error() string {
	return "emv: tag " + e.Tag + ": " + strings.TrimPrefix(e.Err.Error(), "emv: ")
}

func (e *TagError) Unwrap() error { return e.Err }

// maxDepth is how deeply constructed objects may nest.
const maxDepth = 4

// Data is a list of EMV data objects, in order. The zero value is empty.
// Data is immutable after Parse and safe for concurrent use; it is sensitive
// (see the package documentation).
type Data struct {
	tlvs []bertlv.TLV
}

// Parse decodes BER-TLV. It refuses indefinite lengths, lengths of more than
// two bytes, tags longer than three bytes, values running past the end and
// nesting deeper than 4; padding bytes 00 between objects are skipped. It
// never panics.
func Parse(b []byte) (Data, error) {
	if err := check(b, 0); err != nil {
		return Data{}, err
	}
	tlvs, err := bertlv.Decode(b)
	if err != nil {
		// check accepts only what bertlv decodes; keep the error generic so
		// that no value can leak through it.
		return Data{}, fmt.Errorf("%w: rejected by the decoder", ErrFormat)
	}
	return Data{tlvs: tlvs}, nil
}

// check walks b as bertlv.Decode does, refusing what it cannot decode safely
// and what EMV does not allow.
func check(b []byte, depth int) error {
	for off := 0; len(b) > 0; {
		n := 1
		if b[0]&0x1F == 0x1F {
			for n < len(b) && b[n]&0x80 != 0 {
				n++
			}
			if n == len(b) {
				return fmt.Errorf("%w: tag at offset %d is cut short", ErrFormat, off)
			}
			n++
		}
		if n > 3 {
			return fmt.Errorf("%w: tag at offset %d is longer than 3 bytes", ErrFormat, off)
		}
		constructed := b[0]&0x20 != 0
		if b[0] == 0x00 { // padding
			b, off = b[1:], off+1
			continue
		}
		b, off = b[n:], off+n
		if len(b) == 0 {
			return fmt.Errorf("%w: length at offset %d missing", ErrFormat, off)
		}
		l, ll := int(b[0]), 1
		if b[0] >= 0x80 {
			k := int(b[0] & 0x7F)
			if k == 0 || k > 2 {
				return fmt.Errorf("%w: length form at offset %d is not allowed", ErrFormat, off)
			}
			if len(b) < 1+k {
				return fmt.Errorf("%w: length at offset %d is cut short", ErrFormat, off)
			}
			l = 0
			for i := 1; i <= k; i++ {
				l = l<<8 | int(b[i])
			}
			ll = 1 + k
		}
		b, off = b[ll:], off+ll
		if l > len(b) {
			return fmt.Errorf("%w: value at offset %d runs past the end", ErrFormat, off)
		}
		if constructed {
			if depth+1 >= maxDepth {
				return fmt.Errorf("%w: nesting deeper than %d", ErrFormat, maxDepth)
			}
			if err := check(b[:l], depth+1); err != nil {
				return err
			}
		}
		b, off = b[l:], off+l
	}
	return nil
}

// Len returns the number of top-level data objects.
func (d Data) Len() int { return len(d.tlvs) }

// Tags returns the top-level tags in order, upper-case hex.
func (d Data) Tags() []string {
	tags := make([]string, len(d.tlvs))
	for i, t := range d.tlvs {
		tags[i] = t.Tag
	}
	return tags
}

// Has reports whether tag (hex, any case) is present at the top level.
func (d Data) Has(tag string) bool {
	_, ok := d.find(tag)
	return ok
}

// Value returns a copy of the value of the first top-level object with tag
// (hex, any case): for a constructed object, its encoded content.
func (d Data) Value(tag string) ([]byte, bool) {
	t, ok := d.find(tag)
	if !ok {
		return nil, false
	}
	if len(t.TLVs) > 0 {
		b, err := bertlv.Encode(t.TLVs)
		return b, err == nil
	}
	return append([]byte(nil), t.Value...), true
}

func (d Data) find(tag string) (bertlv.TLV, bool) {
	tag = strings.ToUpper(tag)
	for _, t := range d.tlvs {
		if t.Tag == tag {
			return t, true
		}
	}
	return bertlv.TLV{}, false
}

// Select returns the objects with the given tags (hex, any case), in the
// order of tags; a tag that is absent is skipped, one present twice is taken
// once.
func (d Data) Select(tags ...string) Data {
	var out []bertlv.TLV
	seen := make(map[string]bool, len(tags))
	for _, tag := range tags {
		if t, ok := d.find(tag); ok && !seen[t.Tag] {
			seen[t.Tag] = true
			out = append(out, t)
		}
	}
	return Data{tlvs: out}
}

// Encode returns the data as BER-TLV.
func (d Data) Encode() ([]byte, error) {
	if len(d.tlvs) == 0 {
		return nil, nil
	}
	b, err := bertlv.Encode(d.tlvs)
	if err != nil {
		return nil, fmt.Errorf("%w: does not encode", ErrFormat)
	}
	return b, nil
}

// String returns the masked form: each tag with its value in hex, or for a
// sensitive tag its masked form or its length.
func (d Data) String() string {
	var sb strings.Builder
	sb.WriteString("emv[")
	describe(&sb, d.tlvs)
	sb.WriteString("]")
	return sb.String()
}

// GoString returns the masked form.
func (d Data) GoString() string { return d.String() }

// LogValue implements slog.LogValuer with the masked form.
func (d Data) LogValue() slog.Value { return slog.StringValue(d.String()) }

// Describe returns the masked form of BER-TLV bytes, for logs and dumps, or
// a note of their length when they do not parse.
func Describe(b []byte) string {
	d, err := Parse(b)
	if err != nil {
		return fmt.Sprintf("emv[malformed, %d bytes]", len(b))
	}
	return d.String()
}

// shown is the set of tags whose values the masked form shows in hex: data
// about the transaction, the terminal and the application, none of it card
// data or cryptograms. Every other tag shows its length only.
var shown = map[string]bool{
	"4F": true, "50": true, "82": true, "84": true, "8A": true, "95": true, "9A": true, "9B": true,
	"9C": true, "5F24": true, "5F25": true, "5F28": true, "5F2A": true, "5F30": true, "5F34": true,
	"5F36": true, "9F02": true, "9F03": true, "9F06": true, "9F07": true, "9F08": true, "9F09": true,
	"9F0D": true, "9F0E": true, "9F0F": true, "9F10": true, "9F1A": true, "9F1E": true, "9F21": true,
	"9F27": true, "9F33": true, "9F34": true, "9F35": true, "9F36": true, "9F37": true, "9F39": true,
	"9F40": true, "9F41": true, "9F53": true, "9F5B": true,
}

// Sensitive reports whether the value of tag (hex, any case) is kept out of
// the masked form: every tag but those known to carry no card data (such
// as 9F02, 95, 9F27). 5A and 57 show the masked PAN; the others, their
// length.
func Sensitive(tag string) bool { return !shown[strings.ToUpper(tag)] }

func describe(sb *strings.Builder, tlvs []bertlv.TLV) {
	for i, t := range tlvs {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(t.Tag)
		switch {
		case t.Tag == "5A":
			if pan, err := unpackDigits(t.Value, false); err == nil {
				sb.WriteString("=" + maskPAN(pan))
				continue
			}
		case t.Tag == "57":
			if t2, err := unpackDigits(t.Value, true); err == nil {
				pan, _, _ := strings.Cut(t2, "=")
				sb.WriteString("=" + maskPAN(pan) + "=****")
				continue
			}
		}
		if Sensitive(t.Tag) { // every constructed tag too
			fmt.Fprintf(sb, "(%d bytes)", encodedLen(t))
			continue
		}
		sb.WriteString("=" + strings.ToUpper(hex.EncodeToString(t.Value)))
	}
}

func encodedLen(t bertlv.TLV) int {
	if len(t.TLVs) > 0 {
		b, _ := bertlv.Encode(t.TLVs)
		return len(b)
	}
	return len(t.Value)
}

// maskPAN keeps the first 6 and last 4 digits (terminal/card.MaskPAN).
func maskPAN(pan string) string {
	b := []byte(pan)
	if len(b) < 11 {
		return strings.Repeat("*", len(b))
	}
	for i := 6; i < len(b)-4; i++ {
		b[i] = '*'
	}
	return string(b)
}

// unpackDigits turns compressed numeric nibbles into text: digits, and for
// track 2 equivalent data (track true) the separator D as '='. Trailing F
// nibbles are padding; any other nibble is an error.
func unpackDigits(b []byte, track bool) (string, error) {
	out := make([]byte, 0, 2*len(b))
	padding := false
	for _, c := range b {
		for _, n := range [2]byte{c >> 4, c & 0x0F} {
			switch {
			case padding && n != 0x0F:
				return "", ErrFormat
			case n <= 9:
				out = append(out, '0'+n)
			case n == 0x0D && track:
				out = append(out, '=')
			case n == 0x0F:
				padding = true
			default:
				return "", ErrFormat
			}
		}
	}
	return string(out), nil
}

// packDigits is the inverse of unpackDigits: digits (and '=' as D), padded
// with F to whole bytes.
func packDigits(s string) ([]byte, error) {
	out := make([]byte, 0, (len(s)+1)/2)
	for i := 0; i < len(s); i += 2 {
		var pair [2]byte
		for j := range 2 {
			n := byte(0x0F)
			if i+j < len(s) {
				switch c := s[i+j]; {
				case c >= '0' && c <= '9':
					n = c - '0'
				case c == '=' || c == 'D':
					n = 0x0D
				default:
					return nil, ErrFormat
				}
			}
			pair[j] = n
		}
		out = append(out, pair[0]<<4|pair[1])
	}
	return out, nil
}

// bcd returns the decimal digits of b, two per byte, or an error if a nibble
// is not 0-9.
func bcd(b []byte) (string, error) {
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		hi, lo := c>>4, c&0x0F
		if hi > 9 || lo > 9 {
			return "", ErrFormat
		}
		out = append(out, '0'+hi, '0'+lo)
	}
	return string(out), nil
}

// Object is one primitive data object to build Data from. Its String shows
// the tag and the value's length only. It is plain data, safe for concurrent
// reads.
type Object struct {
	Tag   string // hex, 1 to 3 bytes, e.g. "9F02"
	Value []byte
}

// String returns the tag and the value's length.
func (o Object) String() string {
	return fmt.Sprintf("%s(%d bytes)", strings.ToUpper(o.Tag), len(o.Value))
}

// GoString returns the same as String.
func (o Object) GoString() string { return "emv.Object{" + o.String() + "}" }

// New returns Data holding objs in order. Each tag must be 1 to 3 bytes of
// hex with the BER form of a primitive tag; values are copied.
func New(objs ...Object) (Data, error) {
	tlvs := make([]bertlv.TLV, 0, len(objs))
	for _, o := range objs {
		tag, err := hex.DecodeString(o.Tag)
		if err != nil || !primitiveTag(tag) {
			return Data{}, &TagError{Tag: strings.ToUpper(o.Tag), Err: fmt.Errorf("%w: not a primitive BER-TLV tag of 1 to 3 bytes", ErrFormat)}
		}
		if len(o.Value) > 0xFFFF {
			return Data{}, &TagError{Tag: strings.ToUpper(o.Tag), Err: ErrTooLong}
		}
		tlvs = append(tlvs, bertlv.TLV{Tag: strings.ToUpper(o.Tag), Value: append([]byte{}, o.Value...)})
	}
	return Data{tlvs: tlvs}, nil
}

// primitiveTag reports whether b is one complete primitive tag of 1 to 3
// bytes.
func primitiveTag(b []byte) bool {
	if len(b) == 0 || len(b) > 3 || b[0] == 0 || b[0]&0x20 != 0 {
		return false
	}
	if b[0]&0x1F != 0x1F {
		return len(b) == 1
	}
	if len(b) == 1 || b[len(b)-1]&0x80 != 0 {
		return false
	}
	for _, c := range b[1 : len(b)-1] {
		if c&0x80 == 0 {
			return false
		}
	}
	return true
}

// PackDigits packs decimal digits as compressed numeric (cn) data: two per
// byte, '=' or 'D' as the separator nibble D, padded with F. It is how 5A and
// 57 carry the PAN and track 2 equivalent data.
func PackDigits(s string) ([]byte, error) { return packDigits(s) }

// PackBCD packs decimal digits as n (BCD) data of exactly size bytes, right
// aligned with leading zeros: 9F02 amounts, 9A dates, 5F2A currency codes.
func PackBCD(digits string, size int) ([]byte, error) {
	if len(digits) > 2*size {
		return nil, ErrTooLong
	}
	for len(digits) < 2*size {
		digits = "0" + digits
	}
	out := make([]byte, size)
	for i := range out {
		hi, lo := digits[2*i], digits[2*i+1]
		if hi < '0' || hi > '9' || lo < '0' || lo > '9' {
			return nil, ErrFormat
		}
		out[i] = (hi-'0')<<4 | (lo - '0')
	}
	return out, nil
}

// UnpackBCD returns the decimal digits of n (BCD) data.
func UnpackBCD(b []byte) (string, error) { return bcd(b) }
