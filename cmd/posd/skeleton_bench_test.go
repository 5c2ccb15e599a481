package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/ptypair"
)

// A skeleton sale is the floor under BenchmarkSaleVsMinimum's sale on this machine: a
// daemon of its own process (this test binary as TestHelperSaleSkeleton, GOMAXPROCS 1 as
// posd runs) that does a sale's input and output and nothing else. It takes the till's
// request over HTTP on a unix socket, turns a pty line around as many times as posd turned
// the pad's (through a ptypair relay, as the pad's line is, to an echo in the benchmark's
// process), writes and fdatasyncs 4 KiB, makes one framed round trip over loopback TCP to an
// echo in the benchmark's process (the acquirer), writes and fdatasyncs 4 KiB again, and
// answers with the bytes posd answered the warm-up sale with. No parsing, no keys, no
// journal: what is left of a sale once every line of posd is gone.
//
// The minimum of the issue (two fdatasyncs, an echo and the pad's turns, each probe with both
// ends in the benchmark's process) leaves out what the skeleton pays: the till's request and
// answer, and a wake-up of another process at every hop (about 30-45 µs a round trip on this
// VM over the same echo in one process). skeleton / minimum is how far the machine alone
// puts a sale above the minimum; sale / skeleton is posd's own cost.
type skeleton struct {
	till *http.Client
	cmd  *exec.Cmd

	// What the skeleton was asked for and what reached this process's ends of its lines:
	// a skeleton that skipped a turn or the acquirer would measure low (check).
	sales, turnsAsked    int64
	lineTurns, hostTurns *atomic.Int64

	// The minimum's probes with their far ends in the skeleton's process: what the hops
	// alone cost, with no daemon's work at all.
	farEcho, farTill *echoProbe
	farPad           *ptyProbe
}

// skeletonTurns is the query parameter that says how many times to turn the line.
const skeletonTurns = "turns"

// Skeleton daemons: one on Go's net/http and runtime poller, as posd is built; one on
// blocking system calls and nothing else (as a C daemon would be), to tell the machine's
// floor from the Go runtime's.
const (
	skeletonHTTP = "http"
	skeletonRaw  = "raw"
)

// newSkeleton starts a skeleton daemon (skeletonHTTP or skeletonRaw) answering with answer,
// its pty on a new ptypair whose other end echoes in this process, and its acquirer an echo
// in this process. The far probes are the HTTP skeleton's only.
func newSkeleton(t testing.TB, dir, mode string, answer []byte) *skeleton {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	lineTurns, hostTurns := new(atomic.Int64), new(atomic.Int64)
	ptyEcho(t, openPolled(t, pair.B), lineTurns)
	host := echoServer(t, "tcp", "127.0.0.1:0", hostTurns)
	farPair, err := ptypair.Open() // its far end echoes in the skeleton's process
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farPair.Close() })

	dir = filepath.Join(dir, "skeleton-"+mode)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	answerFile := filepath.Join(dir, "answer")
	if err := os.WriteFile(answerFile, answer, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "till.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSaleSkeleton$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1",
		"POSD_SALE_SKELETON="+strings.Join([]string{mode, sock, pair.A, host, dir, answerFile, farPair.B}, " "))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if echo, ok := strings.CutPrefix(sc.Text(), "SKELETON READY "); ok {
				ready <- echo
				io.Copy(io.Discard, out)
				return
			}
		}
		close(ready)
	}()
	var echo string
	select {
	case e, ok := <-ready:
		if !ok {
			t.Fatal("the skeleton exited before it was ready")
		}
		echo = e
	case <-time.After(30 * time.Second):
		t.Fatal("the skeleton did not get ready in 30 s")
	}
	s := &skeleton{cmd: cmd, lineTurns: lineTurns, hostTurns: hostTurns, till: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
	if mode == skeletonHTTP {
		s.farEcho = dialEcho(t, "tcp", echo, 220)
		s.farTill = dialEcho(t, "unix", filepath.Join(dir, "echo.sock"), tillFrame)
		s.farPad = &ptyProbe{host: openPolled(t, farPair.A), out: make([]byte, 64), in: make([]byte, 64)}
	}
	return s
}

// tillFrame is the size of the till's share of the far minimum: a request and its answer
// of about a sale's (a payment request is ~500 bytes of JSON, its answer ~1,000).
const tillFrame = 1000

// farMinimum is the minimum's probes with their far ends in another process, the pad's
// line turned turns times, and the till's request and answer added.
func (s *skeleton) farMinimum(sync *syncProbe, turns int64) time.Duration {
	d := sync.two() + s.farEcho.roundTrip() + s.farTill.roundTrip()
	for range turns {
		d += s.farPad.roundTrip()
	}
	return d
}

// sale posts body to the skeleton as the till posts it to posd, the line to be turned
// turns times, and returns its wall time. The answer is read and decoded as a till does.
func (s *skeleton) sale(t testing.TB, body string, turns int64) time.Duration {
	url := fmt.Sprintf("http://posd/nexo?%s=%d", skeletonTurns, turns)
	start := time.Now()
	x, err := tryAt(s.till, url, body)
	d := time.Since(start)
	if err != nil {
		t.Fatalf("skeleton sale: %v", err)
	}
	if x.HTTP != http.StatusOK {
		t.Fatalf("skeleton sale: HTTP %d: %s", x.HTTP, x.Body)
	}
	s.sales++
	s.turnsAsked += turns
	return d
}

// check fails t unless every sale of the skeleton turned the line as often as it was asked
// and made its round trip with the acquirer.
func (s *skeleton) check(t testing.TB, mode string) {
	t.Helper()
	if got := s.lineTurns.Load(); got != s.turnsAsked {
		t.Fatalf("%s skeleton: the line turned %d times, asked for %d", mode, got, s.turnsAsked)
	}
	if got := s.hostTurns.Load(); got != s.sales {
		t.Fatalf("%s skeleton: %d round trips with the acquirer for %d sales", mode, got, s.sales)
	}
}

// ptyEcho echoes every 64 bytes read from f back to it, until f closes, counting the
// echoes in n (nil: not counted).
func ptyEcho(t testing.TB, f *os.File, n *atomic.Int64) {
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(f, buf); err != nil {
				return
			}
			if n != nil {
				n.Add(1)
			}
			if _, err := f.Write(buf); err != nil {
				return
			}
		}
	}()
}

// echoServer is a framed echo (a 2-byte length, then the frame back) on network and
// address ("tcp" on loopback, or "unix"), serving every connection and counting the frames
// in n (nil: not counted); it returns its address.
func echoServer(t testing.TB, network, address string, n *atomic.Int64) string {
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1<<16)
				for {
					if _, err := io.ReadFull(c, buf[:2]); err != nil {
						return
					}
					size := int(binary.BigEndian.Uint16(buf))
					if _, err := io.ReadFull(c, buf[2:2+size]); err != nil {
						return
					}
					if n != nil {
						n.Add(1)
					}
					if _, err := c.Write(buf[:2+size]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestHelperSaleSkeleton is a skeleton daemon of BenchmarkSaleVsMinimum
// (POSD_SALE_SKELETON="MODE SOCKET PTY HOST DIR ANSWER-FILE ECHO-PTY"), and, the HTTP one,
// the far end of the far minimum's probes; it serves until killed.
func TestHelperSaleSkeleton(t *testing.T) {
	args := strings.Fields(os.Getenv("POSD_SALE_SKELETON"))
	if len(args) != 7 {
		t.Skip("a skeleton daemon of BenchmarkSaleVsMinimum (POSD_SALE_SKELETON)")
	}
	mode, sock, ptyPath, hostAddr, dir, answerFile := args[0], args[1], args[2], args[3], args[4], args[5]
	answer, err := os.ReadFile(answerFile)
	if err != nil {
		t.Fatal(err)
	}
	if mode == skeletonRaw {
		if err := rawSkeleton(sock, ptyPath, hostAddr, filepath.Join(dir, "log"), answer); err != nil {
			t.Fatal(err)
		}
		return
	}
	// The far ends of the far minimum's probes.
	ptyEcho(t, openPolled(t, args[6]), nil)
	echo := echoServer(t, "tcp", "127.0.0.1:0", nil)
	echoServer(t, "unix", filepath.Join(dir, "echo.sock"), nil)

	line := openPolled(t, ptyPath)
	host, err := net.Dial("tcp", hostAddr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var (
		page        = make([]byte, 4096)
		lineBuf     = make([]byte, 64)
		frame, back = make([]byte, 2+220), make([]byte, 2+220)
	)
	binary.BigEndian.PutUint16(frame, 220)
	turn := func() error {
		if _, err := line.Write(lineBuf); err != nil {
			return err
		}
		_, err := io.ReadFull(line, lineBuf)
		return err
	}
	durable := func(at int64) error {
		if _, err := f.WriteAt(page, at); err != nil {
			return err
		}
		return syscall.Fdatasync(int(f.Fd()))
	}
	sale := skeletonSale{turn: turn, durable: durable, acquirer: func() error {
		if _, err := host.Write(frame); err != nil {
			return err
		}
		_, err := io.ReadFull(host, back)
		return err
	}}.run
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		turns, err := strconv.Atoi(r.URL.Query().Get(skeletonTurns))
		if err != nil {
			http.Error(w, "turns: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := sale(turns); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	})}
	fmt.Println("SKELETON READY " + echo)
	if err := srv.Serve(ln); err != nil {
		t.Fatal(err)
	}
}

// skeletonSale is a skeleton's sale, in posd's order: the card (all but the last turn of
// the pad's line), the intent (durable at 0), the acquirer's round trip, the outcome
// (durable at 4096), the result on the pad (the last turn); the answer is the caller's.
type skeletonSale struct {
	turn     func() error
	durable  func(at int64) error
	acquirer func() error
}

func (s skeletonSale) run(turns int) error {
	for range turns - 1 {
		if err := s.turn(); err != nil {
			return err
		}
	}
	if err := s.durable(0); err != nil {
		return err
	}
	if err := s.acquirer(); err != nil {
		return err
	}
	if err := s.durable(4096); err != nil {
		return err
	}
	if turns > 0 {
		return s.turn()
	}
	return nil
}
