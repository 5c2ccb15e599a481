package iso8583

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Framer puts messages on a byte stream and takes them off it: the length header (and any
// fixed header) a host expects around each packed message: [BinaryLengthFramer] (the
// default) and [LengthFramer] (4 ASCII digits, 2-byte BCD, an optional TPDU), usually made
// from configuration by [FramingConfig.Framer].
//
// A Framer is used by many connections at once and must be safe for concurrent use; each
// stream has one reader and one writer at a time.
type Framer interface {
	// WriteFrame writes b as one frame. It should write the frame with a single Write, so
	// that a frame is never interleaved with another writer's.
	WriteFrame(w io.Writer, b []byte) error
	// ReadFrame reads one frame and returns its body. It returns io.EOF only when the
	// stream ends cleanly before a frame starts. The body belongs to the caller from then
	// on (the client unpacks a message in place over it): never a buffer the Framer reuses.
	ReadFrame(r io.Reader) ([]byte, error)
}

// Framing errors, returned wrapped.
var (
	// ErrFrameSize: a frame is empty (when writing) or longer than the framer's maximum.
	// After a read fails with it the stream is out of step and must be closed.
	ErrFrameSize = errors.New("iso8583: frame size out of range")
	// ErrFrameHeader: a length header or TPDU is not what the framing says. The stream is
	// out of step and must be closed.
	ErrFrameHeader = errors.New("iso8583: bad frame header")
)

// DefaultMaxFrame is the largest frame body [BinaryLengthFramer] accepts by default.
const DefaultMaxFrame = 8192

// BinaryLengthFramer frames each message with a 2-byte big-endian binary length header that
// counts the bytes that follow (jPOS PostChannel; what Wireshark's ISO 8583 dissector reads
// with len_endian set to bigendian). It is the default framing. The zero value is ready to
// use; a BinaryLengthFramer is safe for concurrent use, but each stream needs one reader and
// one writer at a time.
type BinaryLengthFramer struct {
	// MaxFrame is the largest body accepted in either direction. Default (0):
	// DefaultMaxFrame. Values above 65535 are treated as 65535, the most the header can say.
	MaxFrame int
}

var _ Framer = BinaryLengthFramer{}

func (f BinaryLengthFramer) max() int {
	switch {
	case f.MaxFrame <= 0:
		return DefaultMaxFrame
	case f.MaxFrame > 0xFFFF:
		return 0xFFFF
	}
	return f.MaxFrame
}

// WriteFrame writes the header and b with one Write. An empty b is refused.
func (f BinaryLengthFramer) WriteFrame(w io.Writer, b []byte) error {
	buf, err := f.appendFrame(nil, b)
	if err != nil {
		return err
	}
	n, err := w.Write(buf)
	if err != nil {
		return fmt.Errorf("iso8583: write frame: %w", err)
	}
	if n != len(buf) {
		return fmt.Errorf("iso8583: write frame: %w", io.ErrShortWrite)
	}
	return nil
}

func (f BinaryLengthFramer) appendFrame(dst, b []byte) ([]byte, error) {
	if len(b) == 0 || len(b) > f.max() {
		return nil, fmt.Errorf("%w: writing %d bytes, want 1 to %d", ErrFrameSize, len(b), f.max())
	}
	if dst == nil {
		dst = make([]byte, 0, 2+len(b))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...), nil
}

// ReadFrame reads one frame. A frame with a zero length is returned as an empty, non-nil
// slice (some hosts send them to keep a link alive). A stream that ends inside a frame is
// io.ErrUnexpectedEOF, wrapped.
func (f BinaryLengthFramer) ReadFrame(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("iso8583: read frame header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > f.max() {
		return nil, fmt.Errorf("%w: header says %d bytes, the maximum is %d", ErrFrameSize, n, f.max())
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("iso8583: read frame body: %w", err)
	}
	return body, nil
}

// LengthHeader is the kind of length header before each frame. It is a plain value, safe
// for concurrent use.
type LengthHeader uint8

// Length headers in use at real hosts (jPOS channel classes in brackets).
const (
	// HeaderBinary2 is a 2-byte big-endian binary length (PostChannel; with a TPDU,
	// NACChannel). The default.
	HeaderBinary2 LengthHeader = iota
	// HeaderASCII4 is 4 ASCII decimal digits (ASCIIChannel).
	HeaderASCII4
	// HeaderBCD2 is 2 bytes of BCD, 4 decimal digits (BCDChannel).
	HeaderBCD2
)

// String returns the header's name in configuration: "binary2", "ascii4" or "bcd2".
func (h LengthHeader) String() string {
	switch h {
	case HeaderBinary2:
		return "binary2"
	case HeaderASCII4:
		return "ascii4"
	case HeaderBCD2:
		return "bcd2"
	}
	return "LengthHeader(" + strconv.Itoa(int(h)) + ")"
}

// ParseLengthHeader reads a header name as String writes it; "" is HeaderBinary2.
func ParseLengthHeader(s string) (LengthHeader, error) {
	switch s {
	case "", "binary2":
		return HeaderBinary2, nil
	case "ascii4":
		return HeaderASCII4, nil
	case "bcd2":
		return HeaderBCD2, nil
	}
	return 0, fmt.Errorf("unknown length header %q (want binary2, ascii4 or bcd2)", s)
}

// max returns the largest length the header can state.
func (h LengthHeader) max() int {
	if h == HeaderBinary2 {
		return 0xFFFF
	}
	return 9999
}

// LengthFramer frames each message with a length header and, optionally, a 5-byte TPDU
// between the header and the message. The length counts the TPDU and the message (as
// jPOS's NACChannel does). When reading, the TPDU's first byte (its ID, usually 0x60) must
// be the configured one; its addresses are not checked, since a host answers with
// destination and source swapped ([HostFramer]).
//
// A LengthFramer is a value; it is safe for concurrent use if not modified, and each
// stream needs one reader and one writer at a time.
type LengthFramer struct {
	// Header is the length header. Default (zero): HeaderBinary2.
	Header LengthHeader
	// TPDU is written before each message: nil for none, else exactly 5 bytes.
	TPDU []byte
	// MaxFrame is the largest message (TPDU excluded) accepted in either direction.
	// Default (0): DefaultMaxFrame. Values above what the header can state are capped.
	MaxFrame int
}

var _ Framer = LengthFramer{}

func (f LengthFramer) max() int {
	limit := f.Header.max() - len(f.TPDU)
	if f.MaxFrame <= 0 {
		return min(DefaultMaxFrame, limit)
	}
	return min(f.MaxFrame, limit)
}

func (f LengthFramer) check() error {
	if len(f.TPDU) != 0 && len(f.TPDU) != 5 {
		return fmt.Errorf("iso8583: framer: a TPDU is 5 bytes, not %d", len(f.TPDU))
	}
	if f.Header > HeaderBCD2 {
		return fmt.Errorf("iso8583: framer: unknown %v", f.Header)
	}
	return nil
}

// WriteFrame writes the header, the TPDU and b with one Write. An empty b is refused.
func (f LengthFramer) WriteFrame(w io.Writer, b []byte) error {
	buf, err := f.appendFrame(nil, b)
	if err != nil {
		return err
	}
	m, err := w.Write(buf)
	if err != nil {
		return fmt.Errorf("iso8583: write frame: %w", err)
	}
	if m != len(buf) {
		return fmt.Errorf("iso8583: write frame: %w", io.ErrShortWrite)
	}
	return nil
}

func (f LengthFramer) appendFrame(buf, b []byte) ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if len(b) == 0 || len(b) > f.max() {
		return nil, fmt.Errorf("%w: writing %d bytes, want 1 to %d", ErrFrameSize, len(b), f.max())
	}
	n := len(f.TPDU) + len(b)
	if buf == nil {
		buf = make([]byte, 0, 4+n)
	}
	switch f.Header {
	case HeaderASCII4:
		buf = appendLength(buf, 4, n)
	case HeaderBCD2:
		var digits [4]byte
		buf = appendBCD(buf, appendLength(digits[:0], 4, n), false)
	default:
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	}
	buf = append(buf, f.TPDU...)
	return append(buf, b...), nil
}

// ReadFrame reads one frame and returns the message after the TPDU. A frame whose length
// is zero is returned as an empty, non-nil slice. A header that is not digits (ascii4,
// bcd2), a frame shorter than the TPDU or a TPDU with another ID is [ErrFrameSize] or
// [ErrFrameHeader]: the stream is out of step and must be closed.
func (f LengthFramer) ReadFrame(r io.Reader) ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	var hdr [4]byte
	hl := 2
	if f.Header == HeaderASCII4 {
		hl = 4
	}
	if _, err := io.ReadFull(r, hdr[:hl]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("iso8583: read frame header: %w", err)
	}
	n := 0
	switch f.Header {
	case HeaderASCII4:
		for _, c := range hdr[:4] {
			if !isDigit(c) {
				return nil, fmt.Errorf("%w: length header is not 4 digits", ErrFrameHeader)
			}
			n = n*10 + int(c-'0')
		}
	case HeaderBCD2:
		for _, c := range hdr[:2] {
			if c>>4 > 9 || c&0x0f > 9 {
				return nil, fmt.Errorf("%w: length header is not 4 BCD digits", ErrFrameHeader)
			}
			n = n*100 + int(c>>4)*10 + int(c&0x0f)
		}
	default:
		n = int(binary.BigEndian.Uint16(hdr[:2]))
	}
	if n == 0 {
		return []byte{}, nil
	}
	if n < len(f.TPDU) {
		return nil, fmt.Errorf("%w: frame of %d bytes is shorter than its TPDU", ErrFrameSize, n)
	}
	if n-len(f.TPDU) > f.max() {
		return nil, fmt.Errorf("%w: header says %d bytes, the maximum is %d", ErrFrameSize, n-len(f.TPDU), f.max())
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("iso8583: read frame body: %w", err)
	}
	if len(f.TPDU) > 0 && body[0] != f.TPDU[0] {
		return nil, fmt.Errorf("%w: TPDU ID %02X, want %02X", ErrFrameHeader, body[0], f.TPDU[0])
	}
	return body[len(f.TPDU):], nil
}

// HostFramer returns the framer a host answering f's terminals writes with: f itself,
// except that a [LengthFramer]'s TPDU has its destination and source addresses swapped.
func HostFramer(f Framer) Framer {
	lf, ok := f.(LengthFramer)
	if !ok || len(lf.TPDU) != 5 {
		return f
	}
	t := lf.TPDU
	lf.TPDU = []byte{t[0], t[3], t[4], t[1], t[2]}
	return lf
}
