package iso8583

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
)

// Errors about message content, returned wrapped (usually inside a [*FieldError]); test for
// them with errors.Is. None of them carries a field's value.
var (
	// ErrInvalidCharacter: a field holds a character its class (n, an, ans, z, x+n, b) does
	// not allow.
	ErrInvalidCharacter = errors.New("character not allowed")
	// ErrInvalidLength: a value or a length prefix does not fit the field's length.
	ErrInvalidLength = errors.New("invalid length")
	// ErrTruncated: the message ends inside a field.
	ErrTruncated = errors.New("message truncated")
	// ErrTrailingBytes: bytes remain after the last field the bitmap announces.
	ErrTrailingBytes = errors.New("trailing bytes after the last field")
	// ErrMissingField: a field the message type requires is absent.
	ErrMissingField = errors.New("mandatory field missing")
	// ErrUnsupportedField: the field is outside what the dialect handles (field 65, the
	// tertiary bitmap indicator; a field the spec does not define).
	ErrUnsupportedField = errors.New("field not supported")
	// ErrInvalidValue: a field is well formed on the wire but its value makes no sense for
	// the message (an MTI that is not a request, a month 13).
	ErrInvalidValue = errors.New("invalid value")
)

// FieldError reports a problem with one field. Field 0 is the MTI, field 1 the bitmap.
//
// Its Error text never contains the field's value. For fields that carry card or PIN data
// (2, 34, 35, 36, 45, 52, 55) it shows the cause's text only when the cause is one of this
// package's sentinel errors, whose texts hold nothing but lengths and offsets.
//
// A FieldError is not changed after it is returned; it is safe for concurrent use.
type FieldError struct {
	Field int
	Op    string // "pack", "unpack" or "build"
	Err   error
}

func (e *FieldError) Error() string {
	cause := "<nil>"
	if e.Err != nil {
		cause = e.Err.Error()
		if sensitiveField(e.Field) && !ownError(e.Err) {
			cause = "invalid value (details withheld: sensitive field)"
		}
	}
	return "iso8583: " + e.Op + " field " + strconv.Itoa(e.Field) + ": " + cause
}

func (e *FieldError) Unwrap() error { return e.Err }

// sensitiveField reports whether a field carries card data, PIN data or data that must not
// appear in logs and errors.
func sensitiveField(id int) bool {
	switch id {
	case 2, 34, 35, 36, 45, 52, 55:
		return true
	}
	return false
}

// ownError reports whether err comes from this package's codec, whose texts are known to
// hold no field values.
func ownError(err error) bool {
	for _, s := range []error{ErrInvalidCharacter, ErrInvalidLength, ErrTruncated, ErrMissingField, ErrUnsupportedField, ErrInvalidValue} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// Pack returns the wire form of msg in its spec's dialect (without any framing): MTI,
// bitmap, then the present fields in order. A field that does not fit its definition is a
// [*FieldError] naming it.
//
// Use Pack rather than msg.Pack: it names the failing field in a typed error and rejects
// field 65.
func Pack(msg *Message) ([]byte, error) {
	if msg == nil {
		return nil, errors.New("iso8583: pack: nil message")
	}
	spec := msg.GetSpec()
	fields := msg.GetFields()
	mti := fields[0]
	if mti == nil {
		return nil, &FieldError{Field: 0, Op: "pack", Err: ErrMissingField}
	}
	bitmap, ok := spec.Fields[1].(*field.Bitmap)
	if !ok {
		return nil, &FieldError{Field: 1, Op: "pack", Err: fmt.Errorf("%w: spec's field 1 is not a bitmap", ErrUnsupportedField)}
	}
	bm, ok := field.NewInstanceOf(bitmap).(*field.Bitmap)
	if !ok {
		return nil, &FieldError{Field: 1, Op: "pack", Err: fmt.Errorf("%w: spec's field 1 is not a bitmap", ErrUnsupportedField)}
	}
	bm.Reset()

	ids := make([]int, 0, len(fields))
	for id := range fields {
		if id < 2 {
			continue
		}
		if id == 65 || id > maxField {
			return nil, &FieldError{Field: id, Op: "pack", Err: ErrUnsupportedField}
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		bm.Set(id) // setting a bit above 64 adds the secondary bitmap and sets bit 1
	}

	out := make([]byte, 0, 256)
	p, err := mti.Pack()
	if err != nil {
		return nil, &FieldError{Field: 0, Op: "pack", Err: err}
	}
	out = append(out, p...)
	p, err = bm.Pack()
	if err != nil {
		return nil, &FieldError{Field: 1, Op: "pack", Err: err}
	}
	out = append(out, p...)
	for _, id := range ids {
		p, err := fields[id].Pack()
		if err != nil {
			return nil, &FieldError{Field: id, Op: "pack", Err: err}
		}
		out = append(out, p...)
	}
	return out, nil
}

// Unpack reads one message (without framing) in spec's dialect; a nil spec means the
// [DefaultSpec] dialect. It is strict: every field must fit its definition, its characters
// its class, and the message must end exactly after the last field ([ErrTrailingBytes]).
// A secondary bitmap with no bits set is accepted. The bitmap is always read as
// hexadecimal characters, the only form of this ASCII dialect. On error it returns no
// message.
//
// Use Unpack rather than msg.Unpack, which accepts trailing bytes silently.
func Unpack(spec *MessageSpec, b []byte) (msg *Message, err error) {
	if spec == nil {
		spec = defaultSpec()
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("iso8583: unpack: invalid spec: %w", err)
	}
	// The default spec's fields cannot panic; a custom spec may hold moov field types that
	// can on hostile input. Outside bytes must never crash the daemon.
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("iso8583: unpack: malformed message (field decoder panicked)")
		}
	}()

	msg = moov.NewMessage(spec)
	off, err := unpackField(msg, 0, b)
	if err != nil {
		return nil, err
	}
	bits, n, err := unpackBitmap(b[off:])
	if err != nil {
		return nil, err
	}
	off += n
	if err := msg.Bitmap().SetBytes(bits); err != nil {
		return nil, &FieldError{Field: 1, Op: "unpack", Err: err}
	}
	last := 1
	for id := 2; id <= 8*len(bits); id++ {
		if id == 65 && isSet(bits, id) {
			return nil, &FieldError{Field: 65, Op: "unpack", Err: fmt.Errorf("%w: tertiary bitmap", ErrUnsupportedField)}
		}
		if id == 65 || !isSet(bits, id) {
			continue
		}
		n, err := unpackField(msg, id, b[off:])
		if err != nil {
			return nil, err
		}
		off += n
		last = id
	}
	if off != len(b) {
		return nil, fmt.Errorf("iso8583: unpack: %w: %d bytes after field %d", ErrTrailingBytes, len(b)-off, last)
	}
	return msg, nil
}

// unpackField creates field id in msg and unpacks it from the start of b, returning the
// number of bytes it took.
func unpackField(msg *Message, id int, b []byte) (int, error) {
	if _, ok := msg.GetSpec().Fields[id]; !ok {
		return 0, &FieldError{Field: id, Op: "unpack", Err: fmt.Errorf("%w: not defined in the spec", ErrUnsupportedField)}
	}
	// BinaryField creates the field in the message (its value is replaced just below);
	// GetField then returns that live instance.
	if err := msg.BinaryField(id, nil); err != nil {
		return 0, &FieldError{Field: id, Op: "unpack", Err: err}
	}
	f := msg.GetField(id)
	n, err := f.Unpack(b)
	if err != nil {
		return 0, &FieldError{Field: id, Op: "unpack", Err: err}
	}
	return n, nil
}

// unpackBitmap reads the primary bitmap (16 hexadecimal characters) and, when its first bit
// is set, the secondary one.
func unpackBitmap(b []byte) (bits []byte, read int, err error) {
	bits = make([]byte, 0, 16)
	for {
		if len(b)-read < 16 {
			return nil, 0, &FieldError{Field: 1, Op: "unpack", Err: fmt.Errorf("%w: bitmap needs 16 characters, %d left", ErrTruncated, len(b)-read)}
		}
		chunk := b[read : read+16]
		if i := classB.badChar(chunk); i >= 0 {
			return nil, 0, &FieldError{Field: 1, Op: "unpack", Err: fmt.Errorf("%w: bitmap character at offset %d is not hexadecimal", ErrInvalidCharacter, read+i)}
		}
		for i := 0; i < 16; i += 2 {
			bits = append(bits, unhex(chunk[i])<<4|unhex(chunk[i+1]))
		}
		read += 16
		if len(bits) == 16 || bits[0]&0x80 == 0 {
			return bits, read, nil
		}
	}
}

// isSet reports whether bit n (1-based, MSB first) of bits is set.
func isSet(bits []byte, n int) bool {
	i := n - 1
	return i/8 < len(bits) && bits[i/8]&(0x80>>(i%8)) != 0
}
