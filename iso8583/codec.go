package iso8583

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/moov-io/iso8583/encoding"
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
	// ErrForbiddenField: the message carries a field that its dialect's message rules
	// forbid for its MTI (the "forbidden" lists of a dialect file, see [ParseDialect]).
	ErrForbiddenField = errors.New("field not allowed")
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
	Op    string // "pack", "unpack", "build", "convert", "check" (a dialect's message rules), "set" or "get" (a Message's setters and getters)
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
	for _, s := range []error{ErrInvalidCharacter, ErrInvalidLength, ErrTruncated, ErrMissingField, ErrUnsupportedField, ErrInvalidValue, ErrForbiddenField} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// Pack returns the wire form of msg in its spec's dialect (without any framing): MTI,
// bitmap, then the present fields in order. A field that does not fit its definition is a
// [*FieldError] naming it.
func Pack(msg *Message) ([]byte, error) { return AppendPack(nil, msg) }

// AppendPack appends the wire form of msg (see [Pack]) to dst and returns the extended
// slice; with a nil dst it allocates one buffer of the message's size. On error dst's
// contents past its length are undefined.
func AppendPack(dst []byte, msg *Message) ([]byte, error) {
	if msg == nil {
		return nil, errors.New("iso8583: pack: nil message")
	}
	if !msg.Has(0) {
		return nil, &FieldError{Field: 0, Op: "pack", Err: ErrMissingField}
	}
	tab := msg.tab
	if !tab.bitmapOK {
		_, err := bitmapForm(msg.spec, "pack")
		return nil, err
	}

	var bits [16]byte
	size, last := 4+32, 0
	for id := range msg.Present() {
		if id == 65 {
			return nil, &FieldError{Field: id, Op: "pack", Err: ErrUnsupportedField}
		}
		bits[(id-1)/8] |= 0x80 >> ((id - 1) % 8)
		s := msg.span(id)
		d := &tab.defs[id]
		size += d.c.prefixLen() + d.c.wireLen(int(s.end-s.off))
		last = id
	}
	bitmapLen := 8
	if last > 64 {
		bits[0] |= 0x80
		bitmapLen = 16
	}
	if dst == nil {
		dst = make([]byte, 0, size)
	}

	out, err := msg.appendField(dst, 0)
	if err != nil {
		return nil, err
	}
	if tab.hexBitmap {
		const hexdigits = "0123456789ABCDEF"
		for _, b := range bits[:bitmapLen] {
			out = append(out, hexdigits[b>>4], hexdigits[b&0x0f])
		}
	} else {
		out = append(out, bits[:bitmapLen]...)
	}
	for id := range msg.Present() {
		if out, err = msg.appendField(out, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkPack returns the error [Pack] would return for msg, whose fields other than the MTI
// and the bitmap are among ids (ascending; absent ones are skipped), without packing it.
// Builders use it to check that every field fits before a message is handed out.
func checkPack(msg *Message, ids []int) error {
	if msg == nil {
		return errors.New("iso8583: pack: nil message")
	}
	if !msg.Has(0) {
		return &FieldError{Field: 0, Op: "pack", Err: ErrMissingField}
	}
	if !msg.tab.bitmapOK {
		_, err := bitmapForm(msg.spec, "pack")
		return err
	}
	if err := msg.checkField(0); err != nil {
		return err
	}
	for _, id := range ids {
		if id < 2 || !msg.Has(id) {
			continue
		}
		if id == 65 {
			return &FieldError{Field: id, Op: "pack", Err: ErrUnsupportedField}
		}
		if err := msg.checkField(id); err != nil {
			return err
		}
	}
	return nil
}

// packField appends the wire form of field f (number id) to dst.
func packField(dst []byte, id int, f field.Field) ([]byte, error) {
	spec := f.Spec()
	var err error
	if c, ok := spec.Packer.(codec); ok {
		switch v := f.(type) {
		case *field.String:
			dst, err = appendPacked(c, dst, v.Value(), spec)
		case *field.Binary:
			dst, err = appendPacked(c, dst, v.Value(), spec)
		default:
			ok = false
		}
		if ok {
			if err != nil {
				return nil, &FieldError{Field: id, Op: "pack", Err: err}
			}
			return dst, nil
		}
	}
	p, err := f.Pack()
	if err != nil {
		return nil, &FieldError{Field: id, Op: "pack", Err: err}
	}
	return append(dst, p...), nil
}

// bitmapForm reports whether spec's bitmap travels as hexadecimal characters (true) or as
// binary bytes (false). Other bitmap layouts are refused.
func bitmapForm(spec *MessageSpec, op string) (hexChars bool, err error) {
	bitmap, ok := spec.Fields[1].(*field.Bitmap)
	if !ok || bitmap.Spec() == nil {
		return false, &FieldError{Field: 1, Op: op, Err: fmt.Errorf("%w: spec's field 1 is not a bitmap", ErrUnsupportedField)}
	}
	bs := bitmap.Spec()
	if bs.Length != 8 && bs.Length != 0 {
		return false, &FieldError{Field: 1, Op: op, Err: fmt.Errorf("%w: a bitmap must be 8 bytes (64 bits), the spec says %d", ErrUnsupportedField, bs.Length)}
	}
	switch bs.Enc {
	case encoding.BytesToASCIIHex:
		return true, nil
	case encoding.Binary:
		return false, nil
	}
	return false, &FieldError{Field: 1, Op: op, Err: fmt.Errorf("%w: a bitmap must be binary or hexadecimal characters", ErrUnsupportedField)}
}

// Unpack reads one message (without framing) in spec's dialect; a nil spec means the
// [DefaultSpec] dialect. It is strict: every field must fit its definition, its characters
// its class, and the message must end exactly after the last field ([ErrTrailingBytes]).
// A secondary bitmap with no bits set is accepted. The bitmap is read as the spec defines
// it: 16 hexadecimal characters (the default) or 8 binary bytes. On error it returns no
// message.

func Unpack(spec *MessageSpec, b []byte) (*Message, error) {
	msg, err := unpack(spec, b)
	if err != nil {
		return nil, err
	}
	return msg, nil
}

// unpack is Unpack, but on error it also returns the fields read before the error (nil if
// the spec is unusable), so that the client can tell which request a broken response was
// meant for.
//
// The message keeps one copy of b: text values are parts of it, decoded values (binary
// fields as hexadecimal characters, BCD, EBCDIC) are appended to the same buffer.
func unpack(spec *MessageSpec, b []byte) (*Message, error) {
	// Room for the values decoded from hexadecimal characters (half their size) without
	// growing; BCD dialects may grow it once.
	buf := make([]byte, len(b), len(b)+len(b)/2+16)
	copy(buf, b)
	return unpackOwned(spec, buf)
}

// unpackOwned is unpack without the copy: the message keeps b, which nobody may change
// afterwards (reading it stays fine: decoded values go after its end, never into it).
func unpackOwned(spec *MessageSpec, b []byte) (msg *Message, err error) {
	if spec == nil {
		spec = defaultSpec()
	}
	msg = NewMessage(spec)
	tab := msg.tab
	if tab.validErr != nil {
		return nil, fmt.Errorf("iso8583: unpack: invalid spec: %w", tab.validErr)
	}
	if !tab.bitmapOK {
		_, err := bitmapForm(spec, "unpack")
		return nil, err
	}
	// The codec cannot panic; a custom spec may hold moov field types that can on hostile
	// input. Outside bytes must never crash the daemon.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("iso8583: unpack: malformed message (field decoder panicked)")
		}
	}()
	// The buffer grows in a local variable and goes into the message at the end (one
	// pointer write, not one per field).
	buf, end := b, len(b)
	defer func() { msg.buf = buf }()

	off := 0
	if buf, off, err = msg.unpackField(buf, 0, end, 0); err != nil {
		return msg, err
	}
	bitmap, size, n, err := unpackBitmap(b[off:end], tab.hexBitmap)
	if err != nil {
		return msg, err
	}
	bits := bitmap[:size]
	off += n
	last := 1
	for id := 2; id <= 8*len(bits); id++ {
		if !isSet(bits, id) {
			continue
		}
		if id == 65 {
			return msg, &FieldError{Field: 65, Op: "unpack", Err: fmt.Errorf("%w: tertiary bitmap", ErrUnsupportedField)}
		}
		if buf, off, err = msg.unpackField(buf, id, end, off); err != nil {
			return msg, err
		}
		last = id
	}
	if off != end {
		return msg, fmt.Errorf("iso8583: unpack: %w: %d bytes after field %d", ErrTrailingBytes, end-off, last)
	}
	return msg, nil
}

// unpackField reads field id of msg from buf[off:end] (buf is to be the message's buffer)
// and returns buf, which may have grown, and the offset after the field.
func (msg *Message) unpackField(buf []byte, id, end, off int) ([]byte, int, error) {
	d := &msg.tab.defs[id]
	switch d.kind {
	case kindNone, kindBitmap:
		return buf, 0, &FieldError{Field: id, Op: "unpack", Err: fmt.Errorf("%w: not defined in the spec", ErrUnsupportedField)}
	case kindText, kindBinary:
		buf, lo, hi, n, err := d.c.unpackTo(buf, off, end, d.fs)
		if err != nil {
			return buf, 0, &FieldError{Field: id, Op: "unpack", Err: err}
		}
		msg.setSpan(id, span{uint32(lo), uint32(hi)})
		return buf, off + n, nil
	}
	b := buf[off:end:end]
	if isComposite(d.proto) {
		n, err := unpackComposite(msg, id, d.proto, b)
		return buf, off + n, err
	}
	f := field.NewInstanceOf(d.proto)
	n, err := f.Unpack(b)
	if err != nil {
		return buf, 0, &FieldError{Field: id, Op: "unpack", Err: err}
	}
	msg.keepOther(id, f)
	return buf, off + n, nil
}

// unpackBitmap reads the primary bitmap (16 hexadecimal characters, or 8 bytes) and, when
// its first bit is set, the secondary one.
func unpackBitmap(b []byte, hexChars bool) (bits [16]byte, size, read int, err error) {
	chunk := 8
	if hexChars {
		chunk = 16
	}
	for {
		if len(b)-read < chunk {
			return bits, 0, 0, &FieldError{Field: 1, Op: "unpack", Err: fmt.Errorf("%w: bitmap needs %d bytes, %d left", ErrTruncated, chunk, len(b)-read)}
		}
		part := b[read : read+chunk]
		if hexChars {
			if i := classB.badChar(part); i >= 0 {
				return bits, 0, 0, &FieldError{Field: 1, Op: "unpack", Err: fmt.Errorf("%w: bitmap character at offset %d is not hexadecimal", ErrInvalidCharacter, read+i)}
			}
			for i := 0; i < 16; i += 2 {
				bits[size] = unhex(part[i])<<4 | unhex(part[i+1])
				size++
			}
		} else {
			size += copy(bits[size:], part)
		}
		read += chunk
		if size == 16 || bits[0]&0x80 == 0 {
			return bits, size, read, nil
		}
	}
}

// isSet reports whether bit n (1-based, MSB first) of bits is set.
func isSet(bits []byte, n int) bool {
	i := n - 1
	return i/8 < len(bits) && bits[i/8]&(0x80>>(i%8)) != 0
}

// Convert returns a copy of msg on spec: the same fields with the same values, to be packed
// in another dialect. Messages are built on [DefaultSpec]; a [Client] on another dialect
// converts each request itself. A field that spec does not define, or that is text in one
// dialect and binary in the other, is a [*FieldError]. Values are checked against the new
// dialect only when the result is packed.
func Convert(msg *Message, spec *MessageSpec) (*Message, error) {
	if msg == nil || spec == nil {
		return nil, errors.New("iso8583: convert: nil message or spec")
	}
	if err := tableFor(spec).validErr; err != nil {
		return nil, fmt.Errorf("iso8583: convert: invalid spec: %w", err)
	}
	if msg.GetSpec() == spec {
		return msg, nil
	}
	return convert(msg, spec)
}

// convert is Convert without its checks, always making a copy: a spec that is msg's own
// gives a copy on the same spec, which may be changed without changing msg.
func convert(msg *Message, spec *MessageSpec) (*Message, error) {
	out := NewMessage(spec)
	if spec == msg.spec {
		// The same table: copy the values as they are.
		out.set, out.n, out.few = msg.set, msg.n, msg.few
		if msg.many != nil {
			out.many = append(make([]span, 0, maxField+1), msg.many...)
		}
		out.buf = msg.buf[:len(msg.buf):len(msg.buf)]
		for id, f := range msg.other {
			v, err := f.Bytes()
			if err != nil {
				return nil, &FieldError{Field: id, Op: "convert", Err: err}
			}
			if err := out.setOther(id, bytes.Clone(v)); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	ids := func(yield func(int) bool) {
		if msg.Has(0) && !yield(0) {
			return
		}
		msg.Present()(yield)
	}
	for id := range ids {
		src, target := &msg.tab.defs[id], &out.tab.defs[id]
		if target.kind == kindNone {
			return nil, &FieldError{Field: id, Op: "convert", Err: fmt.Errorf("%w: not defined in the target dialect", ErrUnsupportedField)}
		}
		if src.binary != target.binary && !isComposite(src.proto) && !isComposite(target.proto) {
			return nil, &FieldError{Field: id, Op: "convert", Err: fmt.Errorf("%w: the field is binary in one dialect and text in the other", ErrUnsupportedField)}
		}
		v, ok := msg.Bytes(id)
		if !ok {
			return nil, &FieldError{Field: id, Op: "convert", Err: fmt.Errorf("%w: the value cannot be read", ErrInvalidValue)}
		}
		if err := out.BinaryField(id, v); err != nil {
			return nil, &FieldError{Field: id, Op: "convert", Err: err}
		}
	}
	return out, nil
}
