package abecs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// loopReader replays one buffer forever.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// The link layer's processing per frame, without any line: encoding a
// frame and decoding it, for frames of the sizes a sale uses.
func BenchmarkFrame(b *testing.B) {
	gcr := append([]byte("GCR000342"), bytes.Repeat([]byte{'0'}, 342)...)
	goc := append([]byte("GOC000402"), bytes.Repeat([]byte{'A'}, 402)...)
	worst := bytes.Repeat([]byte{abecs.SYN}, abecs.MaxData)
	for _, c := range []struct {
		name string
		data []byte
	}{{"OPN", []byte("OPN")}, {"GCR-response-351B", gcr}, {"GOC-response-411B", goc}, {"worst-2049B-all-stuffed", worst}} {
		frame, _ := abecs.AppendFrame(nil, c.data)
		b.Run("encode/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			buf := make([]byte, 0, 2*len(c.data)+8)
			for b.Loop() {
				buf, _ = abecs.AppendFrame(buf[:0], c.data)
			}
		})
		b.Run("decode/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			d := abecs.NewDecoder(&loopReader{data: frame})
			for b.Loop() {
				ev, err := d.Next()
				if err != nil || ev.Err != nil {
					b.Fatal(err, ev.Err)
				}
			}
		})
	}
}

// A command and its response through a real pty pair, with a pad that
// answers at once: two frames and an ACK per operation. A pty has no line
// time, so this is the link layer's processing plus the kernel's pty and
// the relay's copies.
func BenchmarkRoundTripPTY(b *testing.B) {
	p, err := ptypair.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	padPort, err := abecs.OpenSerial(p.B, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer padPort.Close()
	go func() {
		d := abecs.NewDecoder(padPort)
		resp, _ := abecs.AppendFrame(nil, append([]byte("GCR000342"), bytes.Repeat([]byte{'0'}, 342)...))
		for {
			ev, err := d.Next()
			if errors.Is(err, abecs.ErrTimeout) {
				continue
			}
			if err != nil {
				return
			}
			if ev.Kind == abecs.KindPacket && ev.Err == nil {
				padPort.Write(append([]byte{abecs.ACK}, resp...))
			}
		}
	}()
	c, err := abecs.Dial(p.A, 0, &abecs.Options{ACKTimeout: time.Second, ResponseTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cmd := abecs.Command{ID: "GCR", Blocks: [][]byte{bytes.Repeat([]byte{'0'}, 41)}}
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Do(ctx, cmd, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/2, "µs/frame")
}

// The same exchange (a 55-byte command, an ACK and a 355-byte answer)
// through the same pty pair and serial ports without the link layer: what
// the pty, the relay and go.bug.st/serial cost by themselves.
func BenchmarkRoundTripPTYRaw(b *testing.B) {
	p, err := ptypair.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	padPort, err := abecs.OpenSerial(p.B, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer padPort.Close()
	host, err := abecs.OpenSerial(p.A, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	cmd, _ := abecs.AppendFrame(nil, append([]byte("GCR041"), bytes.Repeat([]byte{'0'}, 41)...))
	resp, _ := abecs.AppendFrame(nil, append([]byte("GCR000342"), bytes.Repeat([]byte{'0'}, 342)...))
	resp = append([]byte{abecs.ACK}, resp...)
	go func() {
		buf := make([]byte, len(cmd))
		for {
			if _, err := io.ReadFull(padPort, buf); err != nil {
				return
			}
			padPort.Write(resp)
		}
	}()
	buf := make([]byte, len(resp))
	for b.Loop() {
		host.Write(cmd)
		if _, err := io.ReadFull(host, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/2, "µs/frame")
}

var _ = fmt.Sprint
