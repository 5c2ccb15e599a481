package iso8583_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// pipeHost serves a hostsim on net.Pipe connections, for tests in a synctest bubble: its
// dial method is a ClientOptions.Dial. Every connection ends when the bubble's test does.
type pipeHost struct {
	srv   *hostsim.Server
	ctx   context.Context
	wg    sync.WaitGroup
	dials atomic.Int32
	fail  atomic.Int32 // dials still to refuse
	mu    sync.Mutex
	times []time.Time // when each dial came
}

func newPipeHost(t *testing.T, opts hostsim.Options) *pipeHost {
	t.Helper()
	if opts.BDK == nil {
		opts.BDK = testBDK(t)
	}
	srv, err := hostsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &pipeHost{srv: srv, ctx: ctx}
	t.Cleanup(func() { cancel(); h.wg.Wait() })
	return h
}

func (h *pipeHost) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	h.mu.Lock()
	h.times = append(h.times, time.Now())
	h.mu.Unlock()
	h.dials.Add(1)
	if h.fail.Add(-1) >= 0 {
		return nil, errors.New("connection refused (test)")
	}
	c1, c2 := net.Pipe()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.srv.ServeConn(h.ctx, c2)
	}()
	return c1, nil
}

func (h *pipeHost) dialTimes() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.times...)
}

// An idle link is kept alive with echoes; when the host stops answering, the echo fails,
// the link is declared dead and the client reconnects.
func TestClientEchoAndDeadLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var silent atomic.Bool
		h := newPipeHost(t, hostsim.Options{Drop: func(*iso8583.Message) bool { return silent.Load() }})
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial, TerminalID: "TERM0001",
			NextSTAN: stanCounter(1), EchoInterval: 30 * time.Second, DeadLinkTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if s := c.Stats(); s.Echoes != 1 || s.FramesIn != 1 || s.FramesOut != 1 || !s.Connected {
			t.Fatalf("after 31s idle: %+v", s)
		}
		// Traffic postpones the next echo.
		time.Sleep(20 * time.Second) // 51s
		req := build(t)(testAuth(t).Message())
		if _, err := c.Send(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Second) // 76s: 25s since the sale, no echo yet
		synctest.Wait()
		if s := c.Stats(); s.Echoes != 1 {
			t.Fatalf("echo sent during traffic: %+v", s)
		}
		// The host goes silent: the next echo (at 81s) gets no answer; 10s later the link is
		// dead and the client dials again at once.
		silent.Store(true)
		time.Sleep(30 * time.Second) // 106s
		synctest.Wait()
		s := c.Stats()
		if s.Echoes != 2 || s.DeadLinks != 1 || s.Reconnects != 1 || h.dials.Load() != 2 {
			t.Fatalf("after the host went silent: %+v, %d dials", s, h.dials.Load())
		}
		times := h.dialTimes()
		if d := times[1].Sub(start); d != 91*time.Second {
			t.Errorf("redialled %v after the start, want 91s (echo at 81s + 10s)", d)
		}
	})
}

// A request waiting on a link that has gone quiet ends when the dead-link timeout fires,
// before its own context does.
func TestClientDeadLinkEndsWaitingRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newPipeHost(t, hostsim.Options{Drop: func(*iso8583.Message) bool { return true }})
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial, DeadLinkTimeout: 15 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		_, err = c.Send(ctx, build(t)(testAuth(t).Message()))
		if !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, iso8583.ErrDeadLink) {
			t.Fatalf("err = %v, want ErrOutcomeUnknown and ErrDeadLink", err)
		}
		if d := time.Since(start); d != 15*time.Second {
			t.Errorf("ended after %v, want 15s", d)
		}
	})
}

// Failed dials back off exponentially, with ±20% jitter, up to the maximum; a sale whose
// deadline comes before the next dial fails at once, not sent.
func TestClientReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newPipeHost(t, hostsim.Options{})
		h.fail.Store(7)
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial,
			ReconnectMin: time.Second, ReconnectMax: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Connect without a deadline waits through the backoff until a dial works.
		for {
			if err := c.Connect(context.Background()); err == nil {
				break
			}
		}
		times := h.dialTimes()
		if len(times) != 8 {
			t.Fatalf("%d dials, want 8", len(times))
		}
		for i, want := range []time.Duration{1, 2, 4, 8, 10, 10, 10} {
			want *= time.Second
			gap := times[i+1].Sub(times[i])
			if gap < want*8/10 || gap > want*12/10 {
				t.Errorf("gap %d = %v, want %v ±20%%", i+1, gap, want)
			}
		}
		if s := c.Stats(); s.DialFailures != 7 || s.Connects != 1 || s.Reconnects != 0 {
			t.Errorf("stats %+v", s)
		}

		// Now refuse again: the first Send fails (not sent); the next, with 100ms to live,
		// fails at once since the next dial is a second away.
		c.Close()
		h.fail.Store(100)
		c2, _ := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial})
		defer c2.Close()
		req := build(t)(testAuth(t).Message())
		if _, err := c2.Send(context.Background(), req); !errors.Is(err, iso8583.ErrNotSent) {
			t.Fatalf("first: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = c2.Send(ctx, req)
		if !errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, iso8583.ErrLinkDown) || time.Since(start) != 0 {
			t.Fatalf("second: %v after %v", err, time.Since(start))
		}
	})
}

// A host that reads nothing: the write blocks until the deadline and nothing was sent. A
// host that reads part of a frame and stops: what was written cannot be taken back, so the
// outcome is unknown and the connection (out of step) is closed.
func TestClientSlowReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var conns []net.Conn
		readFirst := 0
		var wg sync.WaitGroup
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			c1, c2 := net.Pipe()
			mu.Lock()
			defer mu.Unlock()
			conns = append(conns, c2)
			if n := readFirst; n > 0 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, n)
					c2.Read(buf)
				}()
			}
			return c1, nil
		}
		defer func() {
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		}()
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: dial})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := build(t)(testAuth(t).Message())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Send(ctx, req)
		cancel()
		if !errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("nothing read: err = %v, want ErrNotSent after the deadline", err)
		}
		// The next connection's host reads 10 bytes.
		c.Close()
		mu.Lock()
		readFirst = 10
		mu.Unlock()
		c, _ = iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: dial})
		defer c.Close()
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Send(ctx, req)
		cancel()
		if !errors.Is(err, iso8583.ErrOutcomeUnknown) {
			t.Fatalf("10 bytes read: err = %v, want ErrOutcomeUnknown", err)
		}
		synctest.Wait()
		mu.Lock()
		second := conns[1]
		mu.Unlock()
		if _, err := second.Write([]byte{0}); err == nil {
			t.Error("the connection out of step is still open")
		}
	})
}

// The window bounds the requests in flight; a request that finds it full until its
// deadline is not sent.
func TestClientWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newPipeHost(t, hostsim.Options{Delay: func(*iso8583.Message) time.Duration { return 10 * time.Second }})
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial, MaxInFlight: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := testAuth(t)
				a.STAN = uint32(10 + i)
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				_, errs[i] = c.Send(ctx, build(t)(a.Message()))
			}()
			synctest.Wait()
		}
		synctest.Wait()
		if s := c.Stats(); s.InFlight != 2 {
			t.Errorf("%d in flight, window 2", s.InFlight)
		}
		wg.Wait()
		// Two answered at 10s; the other two entered the window then, and their 15s
		// deadlines end them at 15s with their answers 5s away.
		ok, unknown := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, iso8583.ErrOutcomeUnknown):
				unknown++
			default:
				t.Errorf("err = %v", err)
			}
		}
		if ok != 2 || unknown != 2 {
			t.Errorf("%d answered, %d unknown; want 2 and 2", ok, unknown)
		}
		// A window that stays full: not sent.
		c2, _ := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial, MaxInFlight: 1})
		defer c2.Close()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			a := testAuth(t)
			a.STAN = 20
			c2.Send(ctx, build(t)(a.Message()))
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a := testAuth(t)
		a.STAN = 21
		if _, err := c2.Send(ctx, build(t)(a.Message())); !errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("full window: %v", err)
		}
	})
}

// Shutdown lets requests in flight finish, signs off, and refuses new requests; one that
// outlives Shutdown's context ends outcome-unknown.
func TestClientShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newPipeHost(t, hostsim.Options{Delay: func(req *iso8583.Message) time.Duration {
			if stan, _ := req.GetString(11); stan == "000031" {
				return time.Hour
			}
			if mti, _ := req.GetMTI(); mti == "0200" {
				return 2 * time.Second
			}
			return 0
		}})
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial, SignOn: true,
			TerminalID: "TERM0001", NextSTAN: stanCounter(900)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !h.srv.SignedOn("TERM0001") {
			t.Fatal("not signed on after Connect")
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Send(context.Background(), build(t)(testAuth(t).Message()))
			done <- err
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("in-flight request: %v", err)
		}
		if h.srv.SignedOn("TERM0001") {
			t.Error("no sign-off")
		}
		if _, err := c.Send(context.Background(), build(t)(testAuth(t).Message())); !errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, iso8583.ErrClosed) {
			t.Fatalf("after Shutdown: %v", err)
		}

		c, _ = iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial})
		go func() {
			a := testAuth(t)
			a.STAN = 31
			_, err := c.Send(context.Background(), build(t)(a.Message()))
			done <- err
		}()
		synctest.Wait()
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, iso8583.ErrClosed) {
			t.Fatalf("request cut by Shutdown: %v", err)
		}
	})
}

// Fault injection against hostsim over TCP: each case ends answered, or outcome-unknown
// with any late answer delivered to LateResponse, and the link stays usable.
func TestClientHostFaults(t *testing.T) {
	type outcome int
	const (
		answered outcome = iota
		unknownFast
		unknownTimeout
	)
	tests := []struct {
		name      string
		opts      func(stan string) hostsim.Options
		want      outcome
		wantCause error
		late      int // LateResponse calls
		stats     func(iso8583.Stats) bool
	}{
		{"duplicate response", func(stan string) hostsim.Options {
			return hostsim.Options{Duplicate: func(m *iso8583.Message) bool { s, _ := m.GetString(11); return s == stan }}
		}, answered, nil, 0, func(s iso8583.Stats) bool { return s.Duplicates == 1 && s.Late == 0 }},
		{"malformed response", func(stan string) hostsim.Options {
			return hostsim.Options{Corrupt: func(m *iso8583.Message, wire []byte) []byte {
				if s, _ := m.GetString(11); s != stan {
					return wire
				}
				// Field 39 "00" becomes "0!": the response is read up to there.
				i := bytes.LastIndex(wire, []byte("00TERM0001"))
				return append(append(bytes.Clone(wire[:i]), "0!"...), wire[i+2:]...)
			}}
		}, unknownFast, iso8583.ErrMalformedResponse, 0, func(s iso8583.Stats) bool { return s.Malformed == 1 }},
		{"garbage frame", func(stan string) hostsim.Options {
			return hostsim.Options{Corrupt: func(m *iso8583.Message, wire []byte) []byte {
				if s, _ := m.GetString(11); s != stan {
					return wire
				}
				return []byte("\x00\x01garbage")
			}}
		}, unknownTimeout, context.DeadlineExceeded, 0, func(s iso8583.Stats) bool { return s.Malformed == 1 }},
		{"late response", func(stan string) hostsim.Options {
			return hostsim.Options{Delay: func(m *iso8583.Message) time.Duration {
				if s, _ := m.GetString(11); s == stan {
					return 700 * time.Millisecond
				}
				return 0
			}}
		}, unknownTimeout, context.DeadlineExceeded, 1, func(s iso8583.Stats) bool { return s.Late == 1 }},
		{"late and duplicated", func(stan string) hostsim.Options {
			return hostsim.Options{
				Delay: func(m *iso8583.Message) time.Duration {
					s, _ := m.GetString(11)
					return map[bool]time.Duration{true: 700 * time.Millisecond}[s == stan]
				},
				Duplicate: func(m *iso8583.Message) bool { s, _ := m.GetString(11); return s == stan },
			}
		}, unknownTimeout, context.DeadlineExceeded, 1, func(s iso8583.Stats) bool { return s.Late == 1 && s.Duplicates == 1 }},
		{"hang-up after the request", func(stan string) hostsim.Options {
			return hostsim.Options{Hangup: func(m *iso8583.Message) bool { s, _ := m.GetString(11); return s == stan }}
		}, unknownFast, nil, 0, func(s iso8583.Stats) bool { return s.Reconnects == 1 }},
		{"no answer", func(stan string) hostsim.Options {
			return hostsim.Options{Drop: func(m *iso8583.Message) bool { s, _ := m.GetString(11); return s == stan }}
		}, unknownTimeout, context.DeadlineExceeded, 0, func(s iso8583.Stats) bool { return s.Late == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, srv := startHost(t, tt.opts("000077"))
			var lateN atomic.Int32
			lateSeen := make(chan struct{}, 4)
			var logs logSink
			c := newClient(t, iso8583.ClientOptions{Addr: addr, Logf: logs.logf, LateResponse: func(m *iso8583.Message) {
				lateN.Add(1)
				lateSeen <- struct{}{}
			}})
			a := testAuth(t)
			a.STAN = 77
			start := time.Now()
			timeout := 400 * time.Millisecond // the host answers at once, late (700ms) or never
			if tt.want != unknownTimeout {
				timeout = 2 * time.Second
			}
			resp, err := c.Send(ctxTimeout(t, timeout), build(t)(a.Message()))
			elapsed := time.Since(start)
			switch tt.want {
			case answered:
				if err != nil || resp == nil {
					t.Fatalf("err = %v, want a response", err)
				}
			case unknownFast, unknownTimeout:
				if !errors.Is(err, iso8583.ErrOutcomeUnknown) || errors.Is(err, iso8583.ErrNotSent) {
					t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
				}
				if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
					t.Fatalf("err = %v, want it to wrap %v", err, tt.wantCause)
				}
				if tt.want == unknownFast && elapsed > timeout/2 {
					t.Errorf("took %v: the failure was not noticed at once", elapsed)
				}
			}
			for range tt.late {
				select {
				case <-lateSeen:
				case <-time.After(5 * time.Second):
					t.Fatal("the late response never reached LateResponse")
				}
			}
			// The link (or its replacement) still works, and the host charged at most once.
			b := testAuth(t)
			b.STAN = 78
			var err2 error
			for range 50 {
				if _, err2 = c.Send(ctxTimeout(t, 5*time.Second), build(t)(b.Message())); !errors.Is(err2, iso8583.ErrNotSent) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err2 != nil {
				t.Fatalf("next request: %v", err2)
			}
			time.Sleep(10 * time.Millisecond) // a second copy, if any, arrives
			if n := int(lateN.Load()); n != tt.late {
				t.Errorf("LateResponse called %d times, want %d", n, tt.late)
			}
			if s := c.Stats(); !tt.stats(s) {
				t.Errorf("stats %+v", s)
			}
			for _, ch := range srv.Charges() {
				if ch.Times != 1 {
					t.Errorf("charge %v processed %d times", ch, ch.Times)
				}
			}
			if strings.Contains(logs.text(), approvedPAN) {
				t.Errorf("logs show the PAN:\n%s", logs.text())
			}
		})
	}
}

// A host that sends an 0800 gets an 0810 back.
func TestClientAnswersHostEcho(t *testing.T) {
	framer := iso8583.BinaryLengthFramer{}
	got := make(chan *iso8583.Message, 1)
	addr := rawHost(t, func(nc net.Conn) {
		echo := build(t)(iso8583.NetworkManagement{Code: "301", STAN: 5, TransmissionTime: fixedUTC}.Message())
		b, _ := iso8583.Pack(echo)
		framer.WriteFrame(nc, b)
		body, err := framer.ReadFrame(nc)
		if err != nil {
			t.Error(err)
			return
		}
		m, err := iso8583.Unpack(nil, body)
		if err != nil {
			t.Error(err)
			return
		}
		got <- m
		framer.ReadFrame(nc)
	})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		r, err := iso8583.ParseResponse(m)
		if err != nil || r.MTI != "0810" || r.STAN != 5 || r.ResponseCode != "00" || r.NetworkCode != "301" {
			t.Fatalf("%+v, %v", r, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to the host's echo")
	}
}

// Sign-on refused: the connection is not used and the request is not sent.
func TestClientSignOnRefused(t *testing.T) {
	framer := iso8583.BinaryLengthFramer{}
	refuse := func(nc net.Conn) {
		body, err := framer.ReadFrame(nc)
		if err != nil {
			return
		}
		m, _ := iso8583.Unpack(nil, body)
		m.MTI("0810")
		m.Field(39, "91")
		b, _ := iso8583.Pack(m)
		framer.WriteFrame(nc, b)
		framer.ReadFrame(nc)
	}
	addr := rawHost(t, refuse, refuse)
	c := newClient(t, iso8583.ClientOptions{Addr: addr, SignOn: true, TerminalID: "TERM0001", NextSTAN: stanCounter(1), ReconnectMin: time.Millisecond})
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); !errors.Is(err, iso8583.ErrSignOnRefused) {
		t.Fatalf("Connect: %v", err)
	}
	_, err := c.Send(ctxTimeout(t, 5*time.Second), build(t)(testAuth(t).Message()))
	if !errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, iso8583.ErrSignOnRefused) {
		t.Fatalf("Send: %v", err)
	}
	if s := c.Stats(); s.DialFailures != 2 || s.Connects != 0 {
		t.Errorf("stats %+v", s)
	}
	if _, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr, SignOn: true}); err == nil {
		t.Error("SignOn without NextSTAN accepted")
	}
}

// A request missing a mandatory field is refused before sending.
func TestClientChecksMandatoryFields(t *testing.T) {
	addr, srv := startHost(t, hostsim.Options{})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	m := build(t)(testAuth(t).Message())
	m.UnsetField(42)
	_, err := c.Send(ctxTimeout(t, 5*time.Second), m)
	var fe *iso8583.FieldError
	if !errors.Is(err, iso8583.ErrNotSent) || !errors.As(err, &fe) || fe.Field != 42 || !errors.Is(err, iso8583.ErrMissingField) {
		t.Fatalf("err = %v", err)
	}
	if c.Stats().FramesOut != 0 || len(srv.Charges()) != 0 {
		t.Error("something was sent")
	}
}

// sleepyConn is the host's end of a pipe that waits before its first read.
type sleepyConn struct {
	net.Conn
	once sync.Once
	wait time.Duration
}

func (c *sleepyConn) Read(b []byte) (int, error) {
	c.once.Do(func() { time.Sleep(c.wait) })
	return c.Conn.Read(b)
}

// countingConn counts the writes on the client's end.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// Frames that queue while another Send writes go out together in one write, and each
// request still gets its own answer.
func TestClientCombinesQueuedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer func() { cancel(); wg.Wait() }()
		var writes atomic.Int32
		dial := func(context.Context, string, string) (net.Conn, error) {
			c1, c2 := net.Pipe()
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(ctx, &sleepyConn{Conn: c2, wait: time.Second})
			}()
			return countingConn{c1, &writes}, nil
		}
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: dial})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		const n = 6
		errs := make(chan error, n)
		for i := range n {
			go func() {
				a := testAuth(t)
				a.STAN = uint32(100 + i)
				resp, err := c.Send(context.Background(), build(t)(a.Message()))
				if err == nil {
					if r, perr := iso8583.ParseAuthResponse(resp); perr != nil || r.STAN != a.STAN || !r.Approved() {
						err = fmt.Errorf("STAN %d: %+v %v", a.STAN, r, perr)
					}
				}
				errs <- err
			}()
			synctest.Wait() // the first blocks writing (the host sleeps); the others queue
		}
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if w, s := writes.Load(), c.Stats(); w != 2 || s.FramesOut != n {
			t.Errorf("%d writes for %d frames (stats %+v), want 2: the first, then the five queued together", w, s.FramesOut, s)
		}
	})
}

// With a host that reads nothing: the writer's own frame is not sent when its deadline
// passes; a queued frame whose context ends before it is taken is not sent either; a
// frame whose context ends inside a combined write may have gone out: outcome unknown.
func TestClientQueuedWritesOnAStuckHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var peers []net.Conn
		dial := func(context.Context, string, string) (net.Conn, error) {
			c1, c2 := net.Pipe()
			peers = append(peers, c2)
			return c1, nil
		}
		defer func() {
			for _, p := range peers {
				p.Close()
			}
		}()
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: dial})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		send := func(stan uint32, timeout time.Duration) chan error {
			ch := make(chan error, 1)
			go func() {
				a := testAuth(t)
				a.STAN = stan
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				_, err := c.Send(ctx, build(t)(a.Message()))
				ch <- err
			}()
			synctest.Wait()
			return ch
		}
		leader := send(1, 10*time.Second)
		early := send(2, 5*time.Second)   // gives up while queued
		inside := send(3, 20*time.Second) // taken into the combined write at 10s
		later := send(4, 60*time.Second)  // the same write, which may run until 60s
		if err := <-early; !errors.Is(err, iso8583.ErrNotSent) {
			t.Errorf("queued, gave up: %v", err)
		}
		if err := <-leader; !errors.Is(err, iso8583.ErrNotSent) {
			t.Errorf("writer: %v", err)
		}
		if err := <-inside; !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("inside the combined write: %v", err)
		}
		// The combined write's deadline is later's own: whichever timer fires first decides
		// between "not sent" (the write's result came first) and "unknown" (conservative).
		if err := <-later; !errors.Is(err, iso8583.ErrNotSent) && !errors.Is(err, iso8583.ErrOutcomeUnknown) {
			t.Errorf("the combined write's own deadline: %v", err)
		}
	})
}

// TestClientSignedOnHook: SignedOn is called after each sign-on the host approves, the
// first and the one after a dropped connection, and not after a refused one.
func TestClientSignedOnHook(t *testing.T) {
	framer := iso8583.BinaryLengthFramer{}
	drop := make(chan struct{}) // closed once the first connection is up: the host drops it
	answer := func(rc string, stay bool, wait <-chan struct{}) func(net.Conn) {
		return func(nc net.Conn) {
			body, err := framer.ReadFrame(nc)
			if err != nil {
				return
			}
			m, _ := iso8583.Unpack(nil, body)
			m.MTI("0810")
			m.Field(39, rc)
			b, _ := iso8583.Pack(m)
			framer.WriteFrame(nc, b)
			if wait != nil {
				<-wait
			}
			for stay {
				if _, err := framer.ReadFrame(nc); err != nil {
					return
				}
			}
		}
	}
	// Signed on, then dropped; refused once; signed on and kept.
	addr := rawHost(t, answer("00", false, drop), answer("91", false, nil), answer("00", true, nil))
	signedOn := make(chan string, 4)
	c := newClient(t, iso8583.ClientOptions{Addr: addr, SignOn: true, TerminalID: "TERM0001", NextSTAN: stanCounter(1),
		ReconnectMin: time.Millisecond, ReconnectMax: 5 * time.Millisecond, SignedOn: func(a string) { signedOn <- a }})
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"first sign-on", "sign-on after the drop"} {
		select {
		case a := <-signedOn:
			if a != addr {
				t.Fatalf("%s: hook got %q, want %q", want, a, addr)
			}
			if i == 0 {
				close(drop)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no SignedOn call (%d so far; stats %+v)", want, i, c.Stats())
		}
	}
	if s := c.Stats(); s.Connects != 2 || s.DialFailures < 1 {
		t.Errorf("stats %+v: want 2 connects and the refused sign-on counted as a failure", s)
	}
	select {
	case <-signedOn:
		t.Fatal("SignedOn called more often than the host approved a sign-on")
	default:
	}
}

// Requests that become ready together (a batch of answers wakes their senders at once)
// go out in a few writes, not one each: the sender that takes the writing lets the others
// queue behind it first. Each still gets its own answer. Real TCP on loopback, where a
// write does not wait for the reader.
func TestClientBurstSharesWrites(t *testing.T) {
	addr, srv := startHost(t, hostsim.Options{})
	var writes atomic.Int32
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		return countingConn{nc, &writes}, nil
	}
	const n = 32
	c := newClient(t, iso8583.ClientOptions{Addr: addr, Dial: dial, MaxInFlight: n})
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	reqs := make([]*iso8583.Message, n)
	for i := range reqs {
		a := testAuth(t)
		a.STAN = uint32(2000 + i)
		reqs[i] = build(t)(a.Message())
	}
	before := writes.Load()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := c.Send(ctxTimeout(t, 10*time.Second), reqs[i])
			if err == nil {
				if r, perr := iso8583.ParseAuthResponse(resp); perr != nil || r.STAN != uint32(2000+i) || !r.Approved() {
					err = fmt.Errorf("request %d: %+v %v", i, r, perr)
				}
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// With the sender yielding, a burst of 32 took 2 to 10 writes here (-race too); each
	// sender writing its own frame took 17 to 32 mostly (and 2 when the first write was
	// slow enough for all the others to queue behind it).
	if w := writes.Load() - before; w > n/2 {
		t.Errorf("%d writes for a burst of %d requests, want at most %d", w, n, n/2)
	}
	if len(srv.Ledger()) != n {
		t.Errorf("the host booked %d sales, want %d", len(srv.Ledger()), n)
	}
}
