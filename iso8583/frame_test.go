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

func TestLengthFramerHeaders(t *testing.T) {
	body := bytes.Repeat([]byte{'A'}, 300)
	tpdu := []byte{0x60, 0x00, 0x01, 0x00, 0x02}
	tests := []struct {
		name string
		f    iso8583.LengthFramer
		head []byte
	}{
		{"binary2", iso8583.LengthFramer{}, []byte{0x01, 0x2C}},
		{"ascii4", iso8583.LengthFramer{Header: iso8583.HeaderASCII4}, []byte("0300")},
		{"bcd2", iso8583.LengthFramer{Header: iso8583.HeaderBCD2}, []byte{0x03, 0x00}},
		// With a TPDU the length counts it: 305.
		{"binary2+tpdu", iso8583.LengthFramer{TPDU: tpdu}, append([]byte{0x01, 0x31}, tpdu...)},
		{"ascii4+tpdu", iso8583.LengthFramer{Header: iso8583.HeaderASCII4, TPDU: tpdu}, append([]byte("0305"), tpdu...)},
		{"bcd2+tpdu", iso8583.LengthFramer{Header: iso8583.HeaderBCD2, TPDU: tpdu}, append([]byte{0x03, 0x05}, tpdu...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.f.WriteFrame(&buf, body); err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(buf.Bytes(), tt.head) || buf.Len() != len(tt.head)+len(body) {
				t.Fatalf("frame starts % X (%d bytes), want % X", buf.Bytes()[:len(tt.head)], buf.Len(), tt.head)
			}
			// Read back one byte at a time, twice in a row.
			stream := append(bytes.Clone(buf.Bytes()), buf.Bytes()...)
			r := iotest.OneByteReader(bytes.NewReader(stream))
			for i := range 2 {
				got, err := tt.f.ReadFrame(r)
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("frame %d: %d bytes, %v", i, len(got), err)
				}
			}
			if _, err := tt.f.ReadFrame(r); err != io.EOF {
				t.Fatalf("after the frames: %v", err)
			}
		})
	}
}

func TestLengthFramerErrors(t *testing.T) {
	tpdu := []byte{0x60, 0x00, 0x01, 0x00, 0x02}
	tests := []struct {
		name  string
		f     iso8583.LengthFramer
		input []byte
		want  error
	}{
		{"ascii4 not digits", iso8583.LengthFramer{Header: iso8583.HeaderASCII4}, []byte("00x5abcde"), iso8583.ErrFrameHeader},
		{"bcd2 not BCD", iso8583.LengthFramer{Header: iso8583.HeaderBCD2}, []byte{0x00, 0x0A, 1, 2, 3}, iso8583.ErrFrameHeader},
		{"shorter than TPDU", iso8583.LengthFramer{TPDU: tpdu}, []byte{0x00, 0x03, 0x60, 0, 1}, iso8583.ErrFrameSize},
		{"other TPDU ID", iso8583.LengthFramer{TPDU: tpdu}, []byte{0x00, 0x06, 0x68, 0, 1, 0, 2, 'x'}, iso8583.ErrFrameHeader},
		{"too large", iso8583.LengthFramer{MaxFrame: 10}, []byte{0x00, 11}, iso8583.ErrFrameSize},
		{"cut body", iso8583.LengthFramer{Header: iso8583.HeaderASCII4}, []byte("0005ab"), io.ErrUnexpectedEOF},
		{"cut header", iso8583.LengthFramer{Header: iso8583.HeaderASCII4}, []byte("00"), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.f.ReadFrame(bytes.NewReader(tt.input)); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// The host answers with the TPDU's addresses swapped; the terminal reads that.
	f := iso8583.LengthFramer{TPDU: tpdu}
	var buf bytes.Buffer
	if err := iso8583.HostFramer(f).WriteFrame(&buf, []byte("0810")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes()[2:7], []byte{0x60, 0x00, 0x02, 0x00, 0x01}) {
		t.Fatalf("host TPDU % X", buf.Bytes()[2:7])
	}
	if got, err := f.ReadFrame(&buf); err != nil || string(got) != "0810" {
		t.Fatalf("ReadFrame = %q, %v", got, err)
	}
	if iso8583.HostFramer(iso8583.BinaryLengthFramer{}) != (iso8583.BinaryLengthFramer{}) {
		t.Error("HostFramer changed a framer without TPDU")
	}
	// Writing: empty, oversized, a bad TPDU, and the ascii4 limit.
	for _, tt := range []struct {
		f iso8583.LengthFramer
		n int
	}{{iso8583.LengthFramer{}, 0}, {iso8583.LengthFramer{MaxFrame: 10}, 11},
		{iso8583.LengthFramer{Header: iso8583.HeaderASCII4, MaxFrame: 20000}, 10000}} {
		if err := tt.f.WriteFrame(io.Discard, make([]byte, tt.n)); !errors.Is(err, iso8583.ErrFrameSize) {
			t.Errorf("%+v, %d bytes: err = %v", tt.f, tt.n, err)
		}
	}
	if err := (iso8583.LengthFramer{TPDU: []byte{1, 2}}).WriteFrame(io.Discard, []byte("x")); err == nil {
		t.Error("a 2-byte TPDU was accepted")
	}
	if h, err := iso8583.ParseLengthHeader("ascii4"); err != nil || h != iso8583.HeaderASCII4 || h.String() != "ascii4" {
		t.Errorf("ParseLengthHeader: %v %v", h, err)
	}
}

func FuzzLengthFramer(f *testing.F) {
	f.Add(uint8(0), []byte{0x00, 0x09, 0x60, 0, 1, 0, 2, '0', '8', '0', '0'})
	f.Add(uint8(1), []byte("00040800"))
	f.Add(uint8(2), []byte{0x00, 0x04, '0', '8', '1', '0'})
	f.Add(uint8(2), []byte{0x99, 0x99})
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		fr := iso8583.LengthFramer{Header: iso8583.LengthHeader(kind % 3), MaxFrame: 512}
		if kind&4 != 0 {
			fr.TPDU = []byte{0x60, 0, 1, 0, 2}
		}
		r := bytes.NewReader(data)
		for {
			body, err := fr.ReadFrame(r)
			if err != nil {
				return
			}
			if len(body) > 512 {
				t.Fatalf("frame of %d bytes above the maximum", len(body))
			}
			if len(body) == 0 {
				continue
			}
			var buf bytes.Buffer
			if err := fr.WriteFrame(&buf, body); err != nil {
				t.Fatal(err)
			}
			again, err := fr.ReadFrame(&buf)
			if err != nil || !bytes.Equal(again, body) {
				t.Fatalf("rewritten frame reads back as %q, %v", again, err)
			}
		}
	})
}
