package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/ptypair"
)

// BenchmarkSaleVsMinimum measures a whole sale on the real daemon (the built posd binary,
// a till on its unix socket, a scripted pad over a pty, the strict host simulator over
// loopback TCP, a bbolt store on the test's file system) against the physical minimum of a
// sale measured in the same run, round by round: two 4 KiB writes each followed by
// fdatasync on the store's file system, one framed request/response echo over loopback TCP
// (the acquirer's round trip), and the pad's share: as many raw pty round trips as the sale
// turned the pad's line around. Each round also runs a skeleton sale (see skeleton): the
// same hops and writes in a daemon without logic. Each b.N is one round; run it with
// -benchtime 12x or more.
//
// It reports the CPU time per sale of posd, of the skeleton and of the rig (this test
// process: the till's client, the simulators and the probes), and the medians: sale-ms,
// min-ms (2 fdatasyncs + echo), pad-ms, pad-turns, skeleton-ms; x-min-pad, the median over
// rounds of sale / (min + pad): the daemon's cost over the minimum (issue 16's target:
// ≤ 1.25); skeleton-x-min-pad, the same for the skeleton (the machine's floor under
// x-min-pad); and x-skeleton, sale / skeleton: posd's cost over a daemon that does
// nothing but a sale's I/O. The skeleton's pad and acquirer answer at once; the sale's are
// simulators with work of their own: sims-ms is the time they took from reading a request
// to the last byte of their answer, and x-skeleton-own is (sale - sims) / skeleton, posd's
// own. far-x-min-pad is the minimum measured with each probe's far end in the skeleton's
// process and a till-sized echo over a unix socket added, over the minimum: what the hops
// between processes alone cost, with no daemon's work at all. raw-skeleton-x-min-pad is the
// skeleton on blocking system calls alone (rawSkeleton) over the minimum: the floor of any
// daemon on this machine, Go's runtime and net/http taken away.
func BenchmarkSaleVsMinimum(b *testing.B) {
	r := newXORig(b)
	r.pad(b, xoSwipes(b.N+1))
	var env []string // POSD_BENCH_ENV="K=V K=V": posd's own environment, for a comparison (GOMAXPROCS, GODEBUG)
	if e := os.Getenv("POSD_BENCH_ENV"); e != "" {
		env = strings.Fields(e)
	}
	if !r.start(b, env...) {
		b.Fatalf("posd exited at start:\n%s", tail(r.logs.String()))
	}
	b.Cleanup(func() { r.stop(b) })
	till := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", r.sock)
		},
	}}
	// One sale first: connections, the sign-on and the first pages are not the subject.
	warm, err := r.try(till, r.paymentBody(r.svc(), "WARM", "1.00"))
	if err != nil || warm.payment(b).Response.Result != "Success" {
		b.Fatalf("warm-up sale: %v %s", err, warm.Body)
	}
	skel := newSkeleton(b, r.dir, skeletonHTTP, []byte(warm.Body))
	skel.sale(b, r.paymentBody(r.svc(), "SKELETON-WARM", "1.00"), 3)
	raw := newSkeleton(b, r.dir, skeletonRaw, []byte(warm.Body))
	raw.sale(b, r.paymentBody(r.svc(), "RAW-WARM", "1.00"), 3)
	sync := newSyncProbe(b, r.dir)
	echo := newEchoProbe(b)
	pty := newPTYProbe(b)

	var sale, minimum, pad, turns, ratio, bare, bareRatio, overBare, sims, overBareOwn, far, rawRatio []float64
	cpu0 := processCPU(b, r.posd.Process.Pid)
	rigCPU0 := processCPU(b, os.Getpid())
	skelCPU0 := processCPU(b, skel.cmd.Process.Pid)
	lines0 := strings.Count(r.logs.String(), "\n")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := r.line.turns.Load()
		busy0 := r.line.busy.Load() + r.hostClock.busy.Load()
		start := time.Now()
		x, err := r.try(till, r.paymentBody(r.svc(), fmt.Sprintf("BENCH-%d", i), "1.00"))
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if p := x.payment(b); p.Response.Result != "Success" {
			b.Fatalf("sale %d: %v", i, p.Response)
		}
		n := r.line.turns.Load() - t0
		sim := time.Duration(r.line.busy.Load() + r.hostClock.busy.Load() - busy0)
		sk := skel.sale(b, r.paymentBody(r.svc(), fmt.Sprintf("SKELETON-%d", i), "1.00"), n)
		rs := raw.sale(b, r.paymentBody(r.svc(), fmt.Sprintf("RAW-%d", i), "1.00"), n)
		m := sync.two() + echo.roundTrip()
		p := time.Duration(n) * pty.roundTrip()
		fm := skel.farMinimum(sync, n)
		sale, minimum, pad, turns = append(sale, ms(d)), append(minimum, ms(m)), append(pad, ms(p)), append(turns, float64(n))
		ratio = append(ratio, float64(d)/float64(m+p))
		bare, bareRatio, overBare = append(bare, ms(sk)), append(bareRatio, float64(sk)/float64(m+p)), append(overBare, float64(d)/float64(sk))
		sims, overBareOwn = append(sims, ms(sim)), append(overBareOwn, float64(d-sim)/float64(sk))
		far = append(far, float64(fm)/float64(m+p))
		rawRatio = append(rawRatio, float64(rs)/float64(m+p))
	}
	b.StopTimer()
	skel.check(b, skeletonHTTP)
	raw.check(b, skeletonRaw)
	b.ReportMetric(ms(processCPU(b, r.posd.Process.Pid)-cpu0)/float64(b.N), "posd-cpu-ms/sale")
	// The rig's own: the till's client, the simulated pad and host, and the probes.
	b.ReportMetric(ms(processCPU(b, os.Getpid())-rigCPU0)/float64(b.N), "rig-cpu-ms/sale")
	b.ReportMetric(ms(processCPU(b, skel.cmd.Process.Pid)-skelCPU0)/float64(b.N), "skeleton-cpu-ms/sale")
	b.ReportMetric(float64(strings.Count(r.logs.String(), "\n")-lines0)/float64(b.N), "log-lines/sale")
	if os.Getenv("POSD_BENCH_LOGTAIL") != "" {
		b.Log(tail(r.logs.String()))
	}
	b.ReportMetric(median(sale), "sale-ms")
	b.ReportMetric(median(minimum), "min-ms")
	b.ReportMetric(median(pad), "pad-ms")
	b.ReportMetric(median(turns), "pad-turns")
	b.ReportMetric(median(ratio), "x-min-pad")
	b.ReportMetric(median(bare), "skeleton-ms")
	b.ReportMetric(median(bareRatio), "skeleton-x-min-pad")
	b.ReportMetric(median(overBare), "x-skeleton")
	b.ReportMetric(median(sims), "sims-ms")
	b.ReportMetric(median(overBareOwn), "x-skeleton-own")
	b.ReportMetric(median(far), "far-x-min-pad")
	b.ReportMetric(median(rawRatio), "raw-skeleton-x-min-pad")
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// syncProbe times a 4 KiB write + fdatasync, twice (a sale's two durable writes).
type syncProbe struct {
	f   *os.File
	buf []byte
}

func newSyncProbe(t testing.TB, dir string) *syncProbe {
	f, err := os.OpenFile(filepath.Join(dir, "fsync-probe"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &syncProbe{f: f, buf: make([]byte, 4096)}
}

func (s *syncProbe) two() time.Duration {
	start := time.Now()
	for i := range 2 {
		s.buf[0] = byte(i)
		if _, err := s.f.WriteAt(s.buf, 0); err != nil {
			panic(err)
		}
		if err := syscall.Fdatasync(int(s.f.Fd())); err != nil {
			panic(err)
		}
	}
	return time.Since(start)
}

// echoProbe is a framed echo over loopback TCP: a 2-byte length and a request the size of
// a sale's 0200 out, the same frame back.
type echoProbe struct {
	c   net.Conn
	out []byte
	in  []byte
}

func newEchoProbe(t testing.TB) *echoProbe {
	return dialEcho(t, "tcp", echoServer(t, "tcp", "127.0.0.1:0", nil), 220)
}

// dialEcho connects an echoProbe of size-byte frames to the echo server at address.
func dialEcho(t testing.TB, network, address string, size int) *echoProbe {
	c, err := net.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e := &echoProbe{c: c, out: make([]byte, 2+size), in: make([]byte, 2+size)}
	binary.BigEndian.PutUint16(e.out, uint16(size))
	return e
}

func (e *echoProbe) roundTrip() time.Duration {
	start := time.Now()
	if _, err := e.c.Write(e.out); err != nil {
		panic(err)
	}
	if _, err := io.ReadFull(e.c, e.in); err != nil {
		panic(err)
	}
	return time.Since(start)
}

// ptyProbe is a raw round trip over a pty pair, as the pad's line is: 64 bytes out, the
// same back. Both ends are plain files on the runtime's poller: a read blocked in a
// system call (go.bug.st/serial's select) holds one of the process's Ps, and with both
// held a runnable goroutine waits for the runtime's monitor, up to 10 ms, which would be
// the probe's cost, not the line's.
type ptyProbe struct {
	host    *os.File
	out, in []byte
}

func newPTYProbe(t testing.TB) *ptyProbe {
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	host := openPolled(t, pair.A)
	ptyEcho(t, openPolled(t, pair.B), nil)
	return &ptyProbe{host: host, out: make([]byte, 64), in: make([]byte, 64)}
}

// openPolled opens a pty slave (raw already: ptypair made it so) as a file on the poller.
func openPolled(t testing.TB, path string) *os.File {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func (p *ptyProbe) roundTrip() time.Duration {
	start := time.Now()
	if _, err := p.host.Write(p.out); err != nil {
		panic(err)
	}
	if _, err := io.ReadFull(p.host, p.in); err != nil {
		panic(err)
	}
	return time.Since(start)
}

// processCPU is the CPU time pid's threads have run (the sum of their
// /proc/PID/task/TID/schedstat, in nanoseconds; a thread that has exited no longer counts,
// and Go's threads live as long as the process).
func processCPU(t testing.TB, pid int) time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			t.Fatalf("%s/%s/schedstat: empty", dir, task.Name())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("%s/%s/schedstat: %v", dir, task.Name(), err)
		}
		sum += time.Duration(ns)
	}
	return sum
}
