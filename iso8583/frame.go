package iso8583

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Framer puts messages on a byte stream and takes them off it: the length header (and any
// fixed header) a host expects around each packed message. Implementations for other hosts
// (4 ASCII digits, 2-byte BCD, a TPDU after the length) can be added beside
// [BinaryLengthFramer] without changing the [Client].
//
// A Framer is used by many connections at once and must be safe for concurrent use; each
// stream has one reader and one writer at a time.
type Framer interface {
	// WriteFrame writes b as one frame. It should write the frame with a single Write, so
	// that a frame is never interleaved with another writer's.
	WriteFrame(w io.Writer, b []byte) error
	// ReadFrame reads one frame and returns its body. It returns io.EOF only when the
	// stream ends cleanly before a frame starts.
	ReadFrame(r io.Reader) ([]byte, error)
}

// Framing errors, returned wrapped.
var (
	// ErrFrameSize: a frame is empty (when writing) or longer than the framer's maximum.
	// After a read fails with it the stream is out of step and must be closed.
	ErrFrameSize = errors.New("iso8583: frame size out of range")
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
	if len(b) == 0 || len(b) > f.max() {
		return fmt.Errorf("%w: writing %d bytes, want 1 to %d", ErrFrameSize, len(b), f.max())
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	n, err := w.Write(buf)
	if err != nil {
		return fmt.Errorf("iso8583: write frame: %w", err)
	}
	if n != len(buf) {
		return fmt.Errorf("iso8583: write frame: %w", io.ErrShortWrite)
	}
	return nil
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
