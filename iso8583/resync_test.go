package iso8583_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// resyncHost is an acquirer on loopback whose first connection reads n requests and then
// writes bad, a frame that cannot be read, and sends nothing more; later connections answer
// every request properly (hostsim, in dialect d). It returns the address and how many
// connections it accepted so far.
func resyncHost(t *testing.T, d *iso8583.Dialect, n int, bad []byte) (string, func() int) {
	t.Helper()
	srv, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }, Dialect: d})
	if err != nil {
		t.Fatal(err)
	}
	framer := d.Framer
	accepted := make(chan struct{}, 8)
	broken := func(nc net.Conn) {
		accepted <- struct{}{}
		for range n {
			if _, err := framer.ReadFrame(nc); err != nil {
				t.Errorf("bad host: reading request: %v", err)
				return
			}
		}
		if _, err := nc.Write(bad); err != nil {
			t.Errorf("bad host: %v", err)
		}
		io.Copy(io.Discard, nc) // until the client hangs up
	}
	good := func(nc net.Conn) {
		accepted <- struct{}{}
		for {
			b, err := framer.ReadFrame(nc)
			if err != nil {
				return
			}
			req, err := iso8583.Unpack(d.Spec, b)
			if err != nil {
				t.Error(err)
				return
			}
			out, err := iso8583.Pack(srv.Respond(req))
			if err != nil {
				t.Error(err)
				return
			}
			framer.WriteFrame(nc, out)
		}
	}
	addr := rawHost(t, broken, good)
	return addr, func() int { return len(accepted) }
}

// sale returns a fresh 0200 with STAN stan.
func sale(t *testing.T, stan uint32) *iso8583.Message {
	a := testAuth(t)
	a.STAN = stan
	m, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A length header longer than the dialect allows desynchronises nothing: the request in
// flight ends outcome-unknown at once (not at its deadline, not at the frame timeout), the
// connection is dropped and dialled again at once, and the next sale is answered on the new
// connection without waiting for any backoff.
func TestResyncImpossibleHeader(t *testing.T) {
	tight, err := iso8583.ParseDialect([]byte(iso8583.TightDialectJSON))
	if err != nil {
		t.Fatal(err)
	}
	limit := 4 + 32 + 10 + 6 + 2 + 8 + 3 // MTI, bitmaps, fields 7, 11, 39, 41, 70
	for _, tc := range []struct {
		name    string
		dialect *iso8583.Dialect
		header  int // what the bad frame's header says
		request func(t *testing.T, stan uint32) *iso8583.Message
	}{
		// 9000: more than the framer's maximum (DefaultMaxFrame), in the default dialect.
		{"over the framer's maximum", iso8583.DefaultDialect(), iso8583.DefaultMaxFrame + 1, sale},
		// Within the framer's maximum, but longer than any message of the dialect.
		{"over the dialect's largest message", tight, limit + 1, func(t *testing.T, stan uint32) *iso8583.Message {
			m, err := iso8583.NetworkManagement{Code: iso8583.NMEcho, STAN: stan, TransmissionTime: hostNow, TerminalID: "TERM0001"}.Message()
			if err != nil {
				t.Fatal(err)
			}
			return m
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := binary.BigEndian.AppendUint16(nil, uint16(tc.header))
			addr, accepted := resyncHost(t, tc.dialect, 2, bad)
			var logs logSink
			c := newClient(t, iso8583.ClientOptions{Addr: addr, Dialect: tc.dialect, Logf: logs.logf,
				FrameTimeout: 10 * time.Second, ReconnectMin: 10 * time.Second})
			const timeout = 10 * time.Second // the response timeout: neither it nor FrameTimeout may be waited for
			errs := make(chan error, 2)
			start := time.Now()
			for stan := uint32(1); stan <= 2; stan++ { // two requests in flight
				go func() {
					_, err := c.Send(ctxTimeout(t, timeout), tc.request(t, stan))
					errs <- err
				}()
			}
			for range 2 {
				err := <-errs
				if !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, iso8583.ErrOutOfStep) || !errors.Is(err, iso8583.ErrFrameSize) {
					t.Fatalf("err = %v, want ErrOutcomeUnknown with ErrOutOfStep and ErrFrameSize", err)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("the requests in flight ended after %v, want at once", d)
			}
			// The next request goes out on a new connection, without a backoff.
			start = time.Now()
			resp, err := c.Send(ctxTimeout(t, timeout), tc.request(t, 3))
			if err != nil {
				t.Fatalf("Send after the drop: %v\n%s", err, logs.text())
			}
			if rc, _ := resp.GetString(39); rc != iso8583.RCApproved {
				t.Errorf("rc = %s", rc)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("the next request took %v, want about a loopback dial", d)
			}
			s := c.Stats()
			if s.OutOfStep != 1 || s.Connects != 2 || s.Reconnects != 1 || s.DialFailures != 0 || accepted() != 2 {
				t.Errorf("stats %+v, %d connections accepted", s, accepted())
			}
		})
	}
}

// A plausible length header whose bytes never come (the host said 8000 and sent 100):
// the request in flight ends outcome-unknown when the frame timeout (the response
// timeout) has passed, the link is dialled again, and the next sale is answered at once on
// the new connection.
func TestResyncBodyNeverComes(t *testing.T) {
	bad := binary.BigEndian.AppendUint16(nil, 8000)
	bad = append(bad, make([]byte, 100)...)
	addr, accepted := resyncHost(t, iso8583.DefaultDialect(), 1, bad)
	const frameTimeout = 300 * time.Millisecond
	c := newClient(t, iso8583.ClientOptions{Addr: addr, FrameTimeout: frameTimeout, ReconnectMin: 10 * time.Second})
	start := time.Now()
	_, err := c.Send(ctxTimeout(t, 10*time.Second), sale(t, 1))
	d := time.Since(start)
	if !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, iso8583.ErrOutOfStep) || errors.Is(err, iso8583.ErrNotSent) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown with ErrOutOfStep", err)
	}
	if d < frameTimeout || d > frameTimeout+2*time.Second {
		t.Errorf("ended after %v, want about the frame timeout (%v)", d, frameTimeout)
	}
	start = time.Now()
	resp, err := c.Send(ctxTimeout(t, 10*time.Second), sale(t, 2))
	if err != nil {
		t.Fatalf("Send after the drop: %v", err)
	}
	if rc, _ := resp.GetString(39); rc != iso8583.RCApproved {
		t.Errorf("rc = %s", rc)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the next request took %v, want about a loopback dial", d)
	}
	if s := c.Stats(); s.OutOfStep != 1 || s.Reconnects != 1 || accepted() != 2 {
		t.Errorf("stats %+v, %d connections accepted", s, accepted())
	}
}

// An idle link is not a slow frame: the frame timeout starts at a frame's first byte.
func TestResyncIdleLinkIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newPipeHost(t, hostsim.Options{Now: func() time.Time { return hostNow }})
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583", Dial: h.dial, FrameTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for stan := uint32(1); stan <= 2; stan++ {
			if _, err := c.Send(context.Background(), sale(t, stan)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Minute) // idle for 60 frame timeouts
			synctest.Wait()
		}
		if s := c.Stats(); s.Connects != 1 || s.OutOfStep != 0 || h.dials.Load() != 1 {
			t.Errorf("stats %+v, want one connection kept", s)
		}
	})
}
