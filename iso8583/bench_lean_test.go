package iso8583_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
)

// The link against the physical limit: the client with a lean host (unpack, approve,
// pack; no ledger, no PIN check) beside a raw framed echo of the same 0200 on the same
// loopback, with the same 2-byte length framing and the same server loop, measured in
// interleaved pairs (link, echo, link, echo, ...) in one run so that both see the same
// machine. The figures:
//
//	ns/op, roundtrips/s           the link
//	echo-ns/op, echo-roundtrips/s the raw echo
//	x-echo-time                   the link's time per round trip over the echo's (median of pairs)
//	x-echo-rate                   the link's rate over the echo's (median of pairs)
//	µs-cpu/op                     CPU of the whole process (client and host) per link round trip
//	echo-µs-cpu/op                the same for the echo
//
// `make bench-compare` calls BenchmarkLinkVsEcho1, 32, Remote1 and Remote32 by name, at
// -cpu 1 (posd run's GOMAXPROCS) and 2.

// linkPairs is how many link/echo pairs a run is cut into.
const linkPairs = 8

func BenchmarkLinkVsEcho1(b *testing.B)  { benchLinkVsEcho(b, 1, false) }
func BenchmarkLinkVsEcho32(b *testing.B) { benchLinkVsEcho(b, 32, false) }

// BenchmarkLinkVsEchoRemote1 and 32 are the same with the lean host and the echo server in
// a process of their own (hostProcess), as an acquirer is a machine of its own: the
// client's GOMAXPROCS (1 in posd) then limits the client alone. Their CPU figures add the
// host process's.
func BenchmarkLinkVsEchoRemote1(b *testing.B)  { benchLinkVsEcho(b, 1, true) }
func BenchmarkLinkVsEchoRemote32(b *testing.B) { benchLinkVsEcho(b, 32, true) }

func benchLinkVsEcho(b *testing.B, inFlight int, remote bool) {
	var host, echo string
	hostCPU := func(*testing.B) time.Duration { return 0 } // in this process: counted in processCPU
	if remote {
		hp := startHostProcess(b)
		host, echo, hostCPU = hp.host, hp.echo, hp.cpu
	} else {
		host = serveFrames(b, leanApprove())
		echo = serveFrames(b, func(req, dst []byte) ([]byte, error) { return append(dst, req...), nil })
	}

	base := typicalSale(b)
	var stan atomic.Uint32
	// As posd runs it: echo after 60 s of silence, and the dead-link watch that comes with it.
	c := newClient(b, iso8583.ClientOptions{Addr: host, MaxInFlight: inFlight, EchoInterval: time.Minute,
		TerminalID: base.TerminalID, NextSTAN: func(context.Context) (uint32, error) { return stan.Add(1)%999_999 + 1, nil }})
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	req, err := base.Message()
	if err != nil {
		b.Fatal(err)
	}
	frameBody, err := iso8583.Pack(req)
	if err != nil {
		b.Fatal(err)
	}
	raw := dialEcho(b, echo)

	per := max(1, (b.N+linkPairs-1)/linkPairs)
	var linkWall, echoWall, linkCPU, echoCPU time.Duration
	var ratios, rates []float64
	b.ReportAllocs()
	b.ResetTimer()
	for range linkPairs {
		cpu0, t0 := processCPU()+hostCPU(b), time.Now()
		runLink(b, c, base, &stan, inFlight, per)
		lw := time.Since(t0)
		lc := processCPU() + hostCPU(b) - cpu0
		cpu0, t0 = processCPU()+hostCPU(b), time.Now()
		raw.run(b, frameBody, inFlight, per)
		ew := time.Since(t0)
		ec := processCPU() + hostCPU(b) - cpu0
		linkWall, linkCPU, echoWall, echoCPU = linkWall+lw, linkCPU+lc, echoWall+ew, echoCPU+ec
		ratios = append(ratios, float64(lw)/float64(ew))
		rates = append(rates, float64(ew)/float64(lw)) // rate ratio: (per/lw)/(per/ew)
	}
	b.StopTimer()
	n := float64(per * linkPairs)
	b.ReportMetric(float64(linkWall.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(echoWall.Nanoseconds())/n, "echo-ns/op")
	b.ReportMetric(n/linkWall.Seconds(), "roundtrips/s")
	b.ReportMetric(n/echoWall.Seconds(), "echo-roundtrips/s")
	b.ReportMetric(median(ratios), "x-echo-time")
	b.ReportMetric(median(rates), "x-echo-rate")
	b.ReportMetric(float64(linkCPU.Nanoseconds())/n/1e3, "µs-cpu/op")
	b.ReportMetric(float64(echoCPU.Nanoseconds())/n/1e3, "echo-µs-cpu/op")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// runLink makes n round trips through c with inFlight requests outstanding: build the 0200,
// send it, read the answer, as a terminal does.
func runLink(b *testing.B, c *iso8583.Client, base iso8583.Authorization, stan *atomic.Uint32, inFlight, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	for range inFlight {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && !failed.Load() {
				a := base
				a.STAN = stan.Add(1)%999_999 + 1
				req, err := a.Message()
				if err == nil {
					var resp *iso8583.Message
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err = c.Send(ctx, req)
					cancel()
					if err == nil {
						var r iso8583.AuthResponse
						if r, err = iso8583.ParseAuthResponse(resp); err == nil && !r.Approved() {
							err = errors.New("declined: " + r.String())
						}
					}
				}
				if err != nil && !failed.Swap(true) {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// leanApprove is the least a host does: read the request and answer it approved, echoing
// its fields without the card and PIN data.
func leanApprove() func(req, dst []byte) ([]byte, error) {
	spec := iso8583.DefaultSpec()
	return func(req, dst []byte) ([]byte, error) {
		m, err := iso8583.Unpack(spec, req)
		if err != nil {
			return nil, err
		}
		mti, err := m.GetMTI()
		if err != nil {
			return nil, err
		}
		rmti, err := iso8583.ResponseMTI(mti)
		if err != nil {
			return nil, err
		}
		m.MTI(rmti)
		for _, id := range []int{22, 35, 52, 55, 62} {
			m.UnsetField(id)
		}
		if err := m.Field(38, "A1B2C3"); err != nil {
			return nil, err
		}
		if err := m.Field(39, iso8583.RCApproved); err != nil {
			return nil, err
		}
		return iso8583.AppendPack(dst, m)
	}
}

// serveFrames serves 2-byte-length frames on 127.0.0.1 until the benchmark ends: each
// frame's answer is handle's, written when no further request is already buffered (so
// answers to requests that came together go out together).
func serveFrames(b testing.TB, handle func(req, dst []byte) ([]byte, error)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() { serveConn(nc, handle) })
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func serveConn(nc net.Conn, handle func(req, dst []byte) ([]byte, error)) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	var body, out []byte
	for {
		var err error
		if body, err = readFrame(br, body); err != nil {
			return
		}
		start := len(out)
		out = append(out, 0, 0)
		if out, err = handle(body, out); err != nil {
			return
		}
		binary.BigEndian.PutUint16(out[start:], uint16(len(out)-start-2))
		if br.Buffered() == 0 {
			if _, err := nc.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// readFrame reads one 2-byte-length frame into buf's memory.
func readFrame(br *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	buf = slices.Grow(buf[:0], n)[:n]
	_, err := io.ReadFull(br, buf)
	return buf, err
}

// rawEcho is the client side of the raw framed echo: frames written with one Write each,
// answers read by one reader, at most inFlight outstanding.
type rawEcho struct {
	nc net.Conn
	br *bufio.Reader
}

func dialEcho(b *testing.B, addr string) *rawEcho {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	return &rawEcho{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

func (e *rawEcho) run(b *testing.B, body []byte, inFlight, n int) {
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	frame = append(frame, body...)
	window := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for range n {
			window <- struct{}{}
			if _, err := e.nc.Write(frame); err != nil {
				werr = err
				return
			}
		}
	})
	var buf []byte
	var err error
	for range n {
		if buf, err = readFrame(e.br, buf); err != nil {
			b.Fatal(err)
		}
		if len(buf) != len(body) {
			b.Fatalf("echo of %d bytes, sent %d", len(buf), len(body))
		}
		<-window
	}
	wg.Wait()
	if werr != nil {
		b.Fatal(werr)
	}
}

// hostProcess is the far end of the link benchmarks: the lean host and the raw echo server
// in a process of their own (this test binary again, as TestHelperLeanHost), as an
// acquirer is a machine of its own. The client's GOMAXPROCS (posd runs with 1; -cpu sets
// it for the benchmark) is then not the host's, and the host's work does not queue behind
// the client's on one P.
type hostProcess struct {
	host, echo string
	in         io.Writer
	out        *bufio.Reader
}

func startHostProcess(b *testing.B) *hostProcess {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLeanHost$", "-test.count=1")
	cmd.Env = append(os.Environ(), "POSD_LEAN_HOST=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close() // the helper ends at the end of its input
		cmd.Wait()
	})
	hp := &hostProcess{in: in, out: bufio.NewReader(outPipe)}
	for {
		line, err := hp.out.ReadString('\n')
		if err != nil {
			b.Fatalf("lean host process: %v", err)
		}
		if rest, ok := strings.CutPrefix(line, "lean-host: "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				b.Fatalf("lean host process said %q", line)
			}
			hp.host, hp.echo = f[0], f[1]
			return hp
		}
	}
}

// cpu asks the host process for its CPU time so far (user + system, from getrusage).
func (hp *hostProcess) cpu(b *testing.B) time.Duration {
	if _, err := io.WriteString(hp.in, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	line, err := hp.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "cpu ")), 10, 64)
	if err != nil {
		b.Fatalf("lean host process said %q", line)
	}
	return time.Duration(ns)
}

// TestHelperLeanHost is the host process of the link benchmarks (POSD_LEAN_HOST=1): it
// serves the lean host and the raw echo, prints their addresses, answers each "cpu" line
// on its input with its CPU time in nanoseconds, and ends when its input ends.
func TestHelperLeanHost(t *testing.T) {
	if os.Getenv("POSD_LEAN_HOST") != "1" {
		t.Skip("the host process of BenchmarkLinkVsEcho* (POSD_LEAN_HOST=1)")
	}
	host := serveFrames(t, leanApprove())
	echo := serveFrames(t, func(req, dst []byte) ([]byte, error) { return append(dst, req...), nil })
	fmt.Printf("lean-host: %s %s\n", host, echo)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Printf("cpu %d\n", processCPU().Nanoseconds())
	}
}
