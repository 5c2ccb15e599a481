package abecs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/posd-dev/posd/terminal/abecs"
)

func TestCRC16CheckValues(t *testing.T) {
	// REFERENCE.md: CRC-16/XMODEM of "123456789" is 0x31C3 (the catalogue
	// check value), and SYN 'OPN' ETB carries CRC A8 A9.
	if got := abecs.CRC16([]byte("123456789")); got != 0x31C3 {
		t.Errorf("CRC16(123456789) = %04X, want 31C3", got)
	}
	if got := abecs.CRC16([]byte("OPN\x17")); got != 0xA8A9 {
		t.Errorf("CRC16(OPN ETB) = %04X, want A8A9", got)
	}
	if got := abecs.CRC16(nil); got != 0 {
		t.Errorf("CRC16(nil) = %04X, want 0", got)
	}
}

func TestAppendFrameOPN(t *testing.T) {
	got, err := abecs.AppendFrame(nil, []byte("OPN"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x16, 'O', 'P', 'N', 0x17, 0xA8, 0xA9}
	if !bytes.Equal(got, want) {
		t.Fatalf("frame % X, want % X", got, want)
	}
}

func TestStuffing(t *testing.T) {
	// Hand-stuffed: 13 -> 13 33, 16 -> 13 36, 17 -> 13 37; other bytes as is.
	data := []byte{0x41, 0x13, 0x16, 0x17, 0x06, 0x15, 0x18, 0x04, 0x33}
	frame, err := abecs.AppendFrame(nil, data)
	if err != nil {
		t.Fatal(err)
	}
	crc := abecs.CRC16(append(append([]byte(nil), data...), 0x17))
	want := []byte{0x16, 0x41, 0x13, 0x33, 0x13, 0x36, 0x13, 0x37, 0x06, 0x15, 0x18, 0x04, 0x33, 0x17, byte(crc >> 8), byte(crc)}
	if !bytes.Equal(frame, want) {
		t.Fatalf("frame\n% X\nwant\n% X", frame, want)
	}
}

func allBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func decodeAll(t *testing.T, r io.Reader) []abecs.Event {
	t.Helper()
	d := abecs.NewDecoder(r)
	var evs []abecs.Event
	for {
		ev, err := d.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		evs = append(evs, ev)
	}
}

func TestRoundTrip(t *testing.T) {
	cases := [][]byte{
		{},
		[]byte("OPN"),
		allBytes(256),
		bytes.Repeat([]byte{0x16}, abecs.MaxData), // worst case: every byte stuffed
		bytes.Repeat([]byte{0x13, 0x17}, abecs.MaxData/2),
	}
	for _, data := range cases {
		frame, err := abecs.AppendFrame(nil, data)
		if err != nil {
			t.Fatal(err)
		}
		// Between SYN and ETB no raw SYN, ETB can appear.
		body := frame[1 : len(frame)-3]
		if bytes.IndexByte(body, 0x16) >= 0 || bytes.IndexByte(body, 0x17) >= 0 {
			t.Fatalf("unstuffed control byte in % X", body)
		}
		for name, r := range map[string]io.Reader{
			"plain":    bytes.NewReader(frame),
			"one-byte": iotest.OneByteReader(bytes.NewReader(frame)),
			"half":     iotest.HalfReader(bytes.NewReader(frame)),
		} {
			evs := decodeAll(t, r)
			if len(evs) != 1 || evs[0].Kind != abecs.KindPacket || evs[0].Err != nil || !bytes.Equal(evs[0].Data, data) {
				t.Fatalf("%s: %d bytes: got %+v", name, len(data), evs)
			}
		}
	}
	if _, err := abecs.AppendFrame(nil, make([]byte, abecs.MaxData+1)); !errors.Is(err, abecs.ErrFrameTooLong) {
		t.Fatalf("2050 bytes: err %v, want ErrFrameTooLong", err)
	}
}

func frameOf(t *testing.T, s string) []byte {
	t.Helper()
	f, err := abecs.AppendFrame(nil, []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func kinds(evs []abecs.Event) string {
	var b bytes.Buffer
	for _, e := range evs {
		b.WriteString(e.Kind.String())
		if e.Kind == abecs.KindPacket {
			if e.Err != nil {
				b.WriteString("(bad)")
			} else {
				b.WriteString("(" + string(e.Data) + ")")
			}
		}
		b.WriteByte(' ')
	}
	return b.String()
}

func TestDecoderResync(t *testing.T) {
	var in bytes.Buffer
	in.Write([]byte("garbage\x13\x17\x33\xff")) // noise, including lone DC3 and ETB
	in.Write(frameOf(t, "OPN000"))
	in.Write([]byte{0x06, 0x15, 0x04, 0x18, 0x00})
	// A packet cut short by a new SYN is abandoned.
	in.Write([]byte{0x16, 'X', 'Y'})
	in.Write(frameOf(t, "DSP000"))
	// Bad CRC.
	bad := frameOf(t, "GCR013")
	bad[len(bad)-1] ^= 0xFF
	in.Write(bad)
	// Bad escape.
	in.Write([]byte{0x16, 'A', 0x13, 0x41, 0x17, 0, 0})
	in.Write(frameOf(t, "CLO000"))

	d := abecs.NewDecoder(iotest.OneByteReader(&in))
	var evs []abecs.Event
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	want := "packet(OPN000) ACK NAK EOT CAN packet(DSP000) packet(bad) packet(bad) packet(CLO000) "
	if got := kinds(evs); got != want {
		t.Fatalf("events\n%s\nwant\n%s", got, want)
	}
	if !errors.Is(evs[6].Err, abecs.ErrBadCRC) || !errors.Is(evs[7].Err, abecs.ErrBadEscape) {
		t.Errorf("errors %v, %v", evs[6].Err, evs[7].Err)
	}
	// "garbage" 7 + DC3 ETB 33 FF 4, trailing 00 after CAN 1, abandoned SYN X Y 3.
	if got := d.Skipped(); got != 15 {
		t.Errorf("Skipped = %d, want 15", got)
	}
}

func TestDecoderTooLong(t *testing.T) {
	var in bytes.Buffer
	in.WriteByte(0x16)
	in.Write(bytes.Repeat([]byte{'A'}, abecs.MaxData+10))
	in.Write([]byte{0x17, 0, 0})
	in.Write(frameOf(t, "OPN000"))
	evs := decodeAll(t, &in)
	if len(evs) != 2 || !errors.Is(evs[0].Err, abecs.ErrFrameTooLong) || string(evs[1].Data) != "OPN000" {
		t.Fatalf("got %s", kinds(evs))
	}
}

func TestDecoderErrors(t *testing.T) {
	frame := frameOf(t, "OPN000")
	// EOF inside a packet.
	d := abecs.NewDecoder(bytes.NewReader(frame[:4]))
	if _, err := d.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v, want io.ErrUnexpectedEOF", err)
	}
	// Data and error together (iotest.DataErrReader) still yield the packet.
	d = abecs.NewDecoder(iotest.DataErrReader(bytes.NewReader(frame)))
	ev, err := d.Next()
	if err != nil || string(ev.Data) != "OPN000" {
		t.Fatalf("DataErrReader: %v %v", ev, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("after packet: %v, want io.EOF", err)
	}
	// A recoverable error in the middle of a packet keeps the packet.
	r := &flakyReader{data: frame, failAt: 3}
	d = abecs.NewDecoder(r)
	if _, err := d.Next(); !errors.Is(err, abecs.ErrTimeout) {
		t.Fatalf("first Next: %v, want ErrTimeout", err)
	}
	ev, err = d.Next()
	if err != nil || string(ev.Data) != "OPN000" {
		t.Fatalf("after timeout: %v %v", ev, err)
	}
	// A reader error before anything passes through.
	d = abecs.NewDecoder(iotest.ErrReader(errors.New("boom")))
	if _, err := d.Next(); err == nil || err.Error() != "boom" {
		t.Fatalf("ErrReader: %v", err)
	}
}

// flakyReader returns ErrTimeout once after failAt bytes, one byte per read.
type flakyReader struct {
	data   []byte
	failAt int
	n      int
	failed bool
}

func (r *flakyReader) Read(p []byte) (int, error) {
	if r.n == r.failAt && !r.failed {
		r.failed = true
		return 0, abecs.ErrTimeout
	}
	if r.n >= len(r.data) {
		return 0, io.EOF
	}
	p[0] = r.data[r.n]
	r.n++
	return 1, nil
}

func FuzzDecoder(f *testing.F) {
	f.Add([]byte{0x16, 'O', 'P', 'N', 0x17, 0xA8, 0xA9})
	f.Add(frameOfF("GCR000342" + string(bytes.Repeat([]byte{'0'}, 342))))
	f.Add(frameOfF("\x13\x16\x17"))
	f.Add([]byte("noise\x06\x15\x04\x18\x16AB\x16CD\x17\x00\x00"))
	f.Add([]byte{0x16, 0x13, 0x13, 0x33, 0x17, 0x00})
	f.Add(append([]byte{0x16}, bytes.Repeat([]byte{0x13, 0x36}, 1100)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		d := abecs.NewDecoder(iotest.OneByteReader(bytes.NewReader(in)))
		for range len(in) + 1 {
			ev, err := d.Next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if ev.Kind == abecs.KindPacket && ev.Err == nil {
				if len(ev.Data) > abecs.MaxData {
					t.Fatalf("packet of %d bytes", len(ev.Data))
				}
				frame, err := abecs.AppendFrame(nil, ev.Data)
				if err != nil {
					t.Fatal(err)
				}
				ev2, err := abecs.NewDecoder(bytes.NewReader(frame)).Next()
				if err != nil || !bytes.Equal(ev2.Data, ev.Data) {
					t.Fatalf("re-encoded packet does not decode the same: %v", err)
				}
			}
		}
		t.Fatal("decoder produced more events than input bytes")
	})
}

func frameOfF(s string) []byte {
	f, _ := abecs.AppendFrame(nil, []byte(s))
	return f
}

// FuzzDecoderChunking: the decoder yields the same events whatever the
// reads' sizes (its fast path works on whatever is buffered).
func FuzzDecoderChunking(f *testing.F) {
	f.Add([]byte{0x16, 'O', 'P', 'N', 0x17, 0xA8, 0xA9}, uint8(3))
	f.Add(frameOfF("\x13\x16\x17"+string(bytes.Repeat([]byte{'x'}, 40))), uint8(2))
	f.Add([]byte("\x16A\x13\x41\x17\x00\x00\x16AB\x13"), uint8(1))
	f.Add(append([]byte{0x16}, bytes.Repeat([]byte{0x13, 0x36}, 1100)...), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		all := func(r io.Reader) string {
			d := abecs.NewDecoder(r)
			var b bytes.Buffer
			for {
				ev, err := d.Next()
				if err != nil {
					fmt.Fprintf(&b, "end %v skipped %d", err, d.Skipped())
					return b.String()
				}
				fmt.Fprintf(&b, "%v %q %v|", ev.Kind, ev.Data, ev.Err)
			}
		}
		whole := all(bytes.NewReader(in))
		if one := all(iotest.OneByteReader(bytes.NewReader(in))); one != whole {
			t.Fatalf("one byte at a time:\n%s\nwhole:\n%s", one, whole)
		}
		if n := int(chunk%16) + 1; true {
			if got := all(&chunkReader{data: in, n: n}); got != whole {
				t.Fatalf("%d bytes at a time:\n%s\nwhole:\n%s", n, got, whole)
			}
		}
	})
}

type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}
