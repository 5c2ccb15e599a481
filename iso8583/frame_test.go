package iso8583_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/posd-dev/posd/iso8583"
)

func TestBinaryLengthFramerHeader(t *testing.T) {
	body := bytes.Repeat([]byte{'A'}, 300)
	var buf bytes.Buffer
	if err := (iso8583.BinaryLengthFramer{}).WriteFrame(&buf, body); err != nil {
		t.Fatal(err)
	}
	// 300 = 0x012C, big-endian.
	if got := buf.Bytes()[:2]; !bytes.Equal(got, []byte{0x01, 0x2C}) {
		t.Fatalf("header = % X, want 01 2C", got)
	}
	if buf.Len() != 302 {
		t.Fatalf("frame is %d bytes, want 302", buf.Len())
	}
}

func TestBinaryLengthFramerRoundTripSlowReaders(t *testing.T) {
	f := iso8583.BinaryLengthFramer{}
	frames := [][]byte{[]byte("0800"), bytes.Repeat([]byte("x"), 1000), []byte("0810abc")}
	var stream bytes.Buffer
	for _, fr := range frames {
		if err := f.WriteFrame(&stream, fr); err != nil {
			t.Fatal(err)
		}
	}
	readers := map[string]func(io.Reader) io.Reader{
		"plain":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			r := wrap(bytes.NewReader(stream.Bytes()))
			for i, want := range frames {
				got, err := f.ReadFrame(r)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("frame %d = %q, want %q", i, got, want)
				}
			}
			if _, err := f.ReadFrame(r); err != io.EOF {
				t.Fatalf("after the last frame: err = %v, want io.EOF", err)
			}
		})
	}
}

func TestBinaryLengthFramerErrors(t *testing.T) {
	f := iso8583.BinaryLengthFramer{MaxFrame: 100}
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"half header", []byte{0x00}, io.ErrUnexpectedEOF},
		{"short body", []byte{0x00, 0x05, 'a', 'b'}, io.ErrUnexpectedEOF},
		{"too large", []byte{0x00, 101}, iso8583.ErrFrameSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.ReadFrame(bytes.NewReader(tt.input))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}

	// The header's read succeeds, the body's times out: the error must say so.
	_, err := f.ReadFrame(iotest.TimeoutReader(strings.NewReader("\x00\x05abcde")))
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("timeout: err = %v, want iotest.ErrTimeout", err)
	}

	if err := f.WriteFrame(io.Discard, nil); !errors.Is(err, iso8583.ErrFrameSize) {
		t.Errorf("empty frame: err = %v, want ErrFrameSize", err)
	}
	if err := f.WriteFrame(io.Discard, make([]byte, 101)); !errors.Is(err, iso8583.ErrFrameSize) {
		t.Errorf("oversized frame: err = %v, want ErrFrameSize", err)
	}
	if err := f.WriteFrame(io.Discard, make([]byte, 100)); err != nil {
		t.Errorf("frame at the limit: %v", err)
	}
}

func TestBinaryLengthFramerZeroLength(t *testing.T) {
	got, err := (iso8583.BinaryLengthFramer{}).ReadFrame(strings.NewReader("\x00\x00"))
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("ReadFrame = %q, %v; want an empty non-nil frame", got, err)
	}
}

func TestBinaryLengthFramerMaxCap(t *testing.T) {
	// A maximum above what two bytes can say is capped at 65535.
	f := iso8583.BinaryLengthFramer{MaxFrame: 1 << 20}
	if err := f.WriteFrame(io.Discard, make([]byte, 0x10000)); !errors.Is(err, iso8583.ErrFrameSize) {
		t.Fatalf("65536-byte frame: err = %v, want ErrFrameSize", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0x00, 0x04, '0', '8', '0', '0'})
	f.Add([]byte{0x00, 0x00})
	f.Add([]byte{0xFF, 0xFF, 0x00})
	f.Add([]byte{0x00})
	fr := iso8583.BinaryLengthFramer{MaxFrame: 512}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		consumed := 0
		for {
			body, err := fr.ReadFrame(r)
			if err != nil {
				if err == io.EOF && consumed != len(data) {
					t.Fatalf("io.EOF with %d of %d bytes consumed", consumed, len(data))
				}
				return
			}
			if len(body) > 512 {
				t.Fatalf("frame of %d bytes above the maximum", len(body))
			}
			consumed += 2 + len(body)
			if len(body) == 0 {
				continue
			}
			var buf bytes.Buffer
			if err := fr.WriteFrame(&buf, body); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), data[consumed-len(buf.Bytes()):consumed]) {
				t.Fatalf("rewritten frame differs from the input")
			}
			// The body is what a client would unpack; it must never panic.
			iso8583.Unpack(nil, body)
		}
	})
}
