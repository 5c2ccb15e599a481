package iso8583_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// hostNow is the simulated host's clock: cards expiring before March 2025 are expired.
var hostNow = time.Date(2025, 3, 14, 15, 9, 27, 0, time.UTC)

// logSink collects log lines from both sides, to check that none shows card data.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startHost runs a hostsim server on 127.0.0.1 until the test ends.
func startHost(t testing.TB, opts hostsim.Options) (string, *hostsim.Server) {
	t.Helper()
	if opts.BDK == nil {
		opts.BDK = testBDK(t)
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return hostNow }
	}
	srv, err := hostsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), srv
}

func newClient(t testing.TB, opts iso8583.ClientOptions) *iso8583.Client {
	t.Helper()
	c, err := iso8583.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClientAgainstHostsim(t *testing.T) {
	var logs logSink
	addr, srv := startHost(t, hostsim.Options{Logf: logs.logf})
	c := newClient(t, iso8583.ClientOptions{Addr: addr, Logf: logs.logf})
	pad := newPINPad(t)

	tests := []struct {
		name   string
		pan    string
		pin    string
		expiry string
		amount int64
		track  bool
		want   string
	}{
		{"approve keyed", approvedPAN, "1234", "3012", 10_00, false, "00"},
		{"approve swiped", approvedPAN, "1234", "", 20_00, true, "00"},
		{"wrong PIN", approvedPAN, "4321", "3012", 10_00, false, "55"},
		{"unknown card", unknownPAN, "1234", "3012", 10_00, false, "14"},
		{"blocked card", blockedPAN, "1234", "3012", 10_00, false, "14"},
		{"expired card", approvedPAN, "1234", "2502", 10_00, false, "54"},
		{"no funds", lowFundsPAN, "1234", "3012", 5_01, false, "51"},
		{"exact funds", lowFundsPAN, "1234", "3012", 5_00, false, "00"},
		{"funds now gone", lowFundsPAN, "1234", "3012", 1, false, "51"},
	}
	var approved int64
	for i, tt := range tests {
		a := testAuth(t)
		a.STAN = uint32(100 + i)
		a.AmountMinor = tt.amount
		a.PAN = mustPAN(t, tt.pan)
		a.Expiry = tt.expiry
		if tt.track {
			a.Track2 = tt.pan + "=" + "3012" + "1010000000000"
			a.EntryMode = "021"
		}
		a.PINBlock, a.KSN = pad.block(t, tt.pin, tt.pan)
		req, err := a.Message()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp, err := c.Send(ctxTimeout(t, 5*time.Second), req)
		if err != nil {
			t.Fatalf("%s: Send: %v", tt.name, err)
		}
		r, err := iso8583.ParseAuthResponse(resp)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if r.ResponseCode != tt.want || r.STAN != a.STAN || r.TerminalID != a.TerminalID || r.MTI != "0210" || r.AmountMinor != tt.amount {
			t.Errorf("%s: got %+v, want rc %s for STAN %d", tt.name, r, tt.want, a.STAN)
		}
		if r.Approved() != (tt.want == "00") {
			t.Errorf("%s: Approved() = %t", tt.name, r.Approved())
		}
		if r.Approved() {
			approved++
			if len(r.ApprovalCode) != 6 || len(r.RRN) != 12 {
				t.Errorf("%s: approval code %q, RRN %q", tt.name, r.ApprovalCode, r.RRN)
			}
		} else if r.ApprovalCode != "" {
			t.Errorf("%s: a decline with approval code %q", tt.name, r.ApprovalCode)
		}
	}
	ledger := srv.Ledger()
	if int64(len(ledger)) != approved {
		t.Fatalf("ledger has %d entries, want %d", len(ledger), approved)
	}
	if bal, _ := srv.Balance(approvedPAN); bal != 1_000_000_00-30_00 {
		t.Errorf("balance of the approving card = %d", bal)
	}
	if bal, _ := srv.Balance(lowFundsPAN); bal != 0 {
		t.Errorf("balance of the low-funds card = %d", bal)
	}
	for _, secret := range []string{approvedPAN, lowFundsPAN, unknownPAN, "=3012101"} {
		if strings.Contains(logs.text(), secret) {
			t.Errorf("logs show %q:\n%s", secret, logs.text())
		}
	}
	if !strings.Contains(logs.text(), "476173******0010") {
		t.Errorf("logs lack the masked PAN:\n%s", logs.text())
	}
}

// The published X9.24-1 example: BDK 0123..3210, KSN FFFF9876543210E00001, PIN 1234,
// PAN 4012345678909 -> encrypted PIN block 1B9C1845EB993A7A. The host must accept it.
func TestClientPublishedPINBlockVector(t *testing.T) {
	const pan = "4012345678909"
	addr, _ := startHost(t, hostsim.Options{Cards: []hostsim.Card{{PAN: pan, PIN: "1234", BalanceMinor: 100_00, Expiry: "3012"}}})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	a := testAuth(t)
	a.PAN = mustPAN(t, pan)
	a.PINBlock, _ = hex.DecodeString("1B9C1845EB993A7A")
	a.KSN = "FFFF9876543210E00001"
	for _, tt := range []struct{ pin, want string }{{"1234", "00"}, {"wrong", "55"}} {
		pin, want := tt.pin, tt.want
		if pin == "wrong" {
			a.STAN++
			a.PINBlock[7] ^= 1 // the block no longer decrypts to a format 0 block for the PAN
		}
		req, err := a.Message()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Send(ctxTimeout(t, 5*time.Second), req)
		if err != nil {
			t.Fatal(err)
		}
		if rc, _ := resp.GetString(39); rc != want {
			t.Errorf("PIN %s: rc = %s, want %s", pin, rc, want)
		}
	}
}

func TestClientClosedPortIsNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, iso8583.ClientOptions{Addr: addr, DialTimeout: time.Second})
	req, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(ctxTimeout(t, 5*time.Second), req)
	if !errors.Is(err, iso8583.ErrNotSent) || errors.Is(err, iso8583.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrNotSent only", err)
	}
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
}

func TestClientPackFailureIsNotSent(t *testing.T) {
	addr, _ := startHost(t, hostsim.Options{})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	req := newMsg(t, "0200", map[int]string{11: "000001", 4: "12"})
	_, err := c.Send(ctxTimeout(t, 5*time.Second), req)
	var fe *iso8583.FieldError
	if !errors.Is(err, iso8583.ErrNotSent) || !errors.As(err, &fe) || fe.Field != 4 {
		t.Fatalf("err = %v, want ErrNotSent with a FieldError for field 4", err)
	}
	// A response MTI cannot be sent, and a request needs a STAN to be matched.
	for _, req := range []*iso8583.Message{
		newMsg(t, "0210", map[int]string{11: "000001"}),
		newMsg(t, "0200", map[int]string{41: "TERM0001"}),
	} {
		if _, err := c.Send(ctxTimeout(t, 5*time.Second), req); !errors.Is(err, iso8583.ErrNotSent) {
			t.Errorf("err = %v, want ErrNotSent", err)
		}
	}
}

func TestClientNoAnswerIsOutcomeUnknown(t *testing.T) {
	addr, srv := startHost(t, hostsim.Options{Drop: func(*iso8583.Message) bool { return true }})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	req, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Send(ctxTimeout(t, 100*time.Millisecond), req)
	if !errors.Is(err, iso8583.ErrOutcomeUnknown) || errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Send took %v with a 100ms context", d)
	}
	if len(srv.Ledger()) != 0 {
		t.Fatal("a dropped request was recorded")
	}
}

func TestClientLateResponseReachesCallback(t *testing.T) {
	addr, srv := startHost(t, hostsim.Options{Delay: func(req *iso8583.Message) time.Duration {
		if stan, _ := req.GetString(11); stan == "000001" {
			return 300 * time.Millisecond
		}
		return 0
	}})
	late := make(chan *iso8583.Message, 1)
	c := newClient(t, iso8583.ClientOptions{Addr: addr, LateResponse: func(m *iso8583.Message) { late <- m }})

	a := testAuth(t)
	a.STAN = 1
	req, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctxTimeout(t, 100*time.Millisecond), req); !errors.Is(err, iso8583.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	select {
	case m := <-late:
		r, err := iso8583.ParseAuthResponse(m)
		if err != nil || r.STAN != 1 || r.ResponseCode != "00" {
			t.Fatalf("late response %+v, %v", r, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the late response never reached LateResponse")
	}
	// The host approved: the caller now knows it must reverse. The ledger agrees.
	if len(srv.Ledger()) != 1 {
		t.Fatalf("ledger has %d entries, want 1", len(srv.Ledger()))
	}
	// The link is still usable.
	a.STAN = 2
	req, _ = a.Message()
	if _, err := c.Send(ctxTimeout(t, 5*time.Second), req); err != nil {
		t.Fatalf("Send after a late response: %v", err)
	}
}

func TestClientRefusesDuplicateInFlight(t *testing.T) {
	received := make(chan struct{}, 1)
	addr, _ := startHost(t, hostsim.Options{Drop: func(*iso8583.Message) bool {
		received <- struct{}{}
		return true
	}})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	req, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, req)
		first <- err
	}()
	select {
	case <-received:
	case <-time.After(5 * time.Second):
		t.Fatal("the first request never reached the host")
	}
	dup, err := testAuth(t).Message() // same MTI, STAN and terminal id
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(ctxTimeout(t, 5*time.Second), dup)
	if !errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, iso8583.ErrInFlight) {
		t.Fatalf("duplicate: err = %v, want ErrNotSent and ErrInFlight", err)
	}
	cancel()
	if err := <-first; !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) {
		t.Fatalf("first: err = %v, want ErrOutcomeUnknown wrapping context.Canceled", err)
	}
	// Another terminal id or STAN is another key.
	other := testAuth(t)
	other.TerminalID = "TERM0002"
	req2, _ := other.Message()
	go func() {
		_, err := c.Send(ctxTimeout(t, 300*time.Millisecond), req2)
		first <- err
	}()
	select { // a request that fails before reaching the host must not hang the test
	case <-received:
	case err := <-first:
		t.Fatalf("other terminal id: %v before reaching the host", err)
	}
	if err := <-first; !errors.Is(err, iso8583.ErrOutcomeUnknown) {
		t.Fatalf("other terminal id: err = %v, want ErrOutcomeUnknown (dropped by the host)", err)
	}
}

func TestClientConcurrentSends(t *testing.T) {
	addr, srv := startHost(t, hostsim.Options{})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := testAuth(t)
			a.STAN = uint32(1000 + i)
			a.AmountMinor = int64(i + 1)
			req, err := a.Message()
			if err != nil {
				errs <- err
				return
			}
			resp, err := c.Send(ctxTimeout(t, 10*time.Second), req)
			if err != nil {
				errs <- err
				return
			}
			r, err := iso8583.ParseAuthResponse(resp)
			if err != nil || r.STAN != a.STAN || r.AmountMinor != a.AmountMinor || !r.Approved() {
				errs <- fmt.Errorf("STAN %d: %+v, %v", a.STAN, r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(srv.Ledger()) != n {
		t.Fatalf("ledger has %d entries, want %d", len(srv.Ledger()), n)
	}
}

// rawHost accepts connections and hands each to handle, in order.
func rawHost(t *testing.T, handle ...func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, h := range handle {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				h(nc)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestClientDisconnectAfterWriteIsOutcomeUnknown(t *testing.T) {
	srv, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }})
	if err != nil {
		t.Fatal(err)
	}
	framer := iso8583.BinaryLengthFramer{}
	addr := rawHost(t,
		func(nc net.Conn) { framer.ReadFrame(nc) }, // read the request, then hang up
		func(nc net.Conn) { // answer properly
			for {
				b, err := framer.ReadFrame(nc)
				if err != nil {
					return
				}
				req, err := iso8583.Unpack(nil, b)
				if err != nil {
					t.Error(err)
					return
				}
				out, _ := iso8583.Pack(srv.Respond(req))
				framer.WriteFrame(nc, out)
			}
		})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	a := testAuth(t)
	req, _ := a.Message()
	_, err = c.Send(ctxTimeout(t, 5*time.Second), req)
	if !errors.Is(err, iso8583.ErrOutcomeUnknown) || errors.Is(err, iso8583.ErrNotSent) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	// The next Send dials again.
	a.STAN++
	req, _ = a.Message()
	resp, err := c.Send(ctxTimeout(t, 5*time.Second), req)
	if err != nil {
		t.Fatalf("Send after a reconnect: %v", err)
	}
	if rc, _ := resp.GetString(39); rc != "00" {
		t.Fatalf("rc = %s", rc)
	}
}

func TestClientUnmatchedResponse(t *testing.T) {
	framer := iso8583.BinaryLengthFramer{}
	addr := rawHost(t, func(nc net.Conn) {
		if _, err := framer.ReadFrame(nc); err != nil {
			return
		}
		// Answer another STAN; then a frame that is not ISO 8583 at all; then nothing.
		wrong := newMsg(t, "0210", map[int]string{11: "999999", 39: "00", 41: "TERM0001"})
		out, _ := iso8583.Pack(wrong)
		framer.WriteFrame(nc, out)
		framer.WriteFrame(nc, []byte("garbage"))
		framer.ReadFrame(nc) // until the client goes
	})
	late := make(chan *iso8583.Message, 2)
	var logs logSink
	c := newClient(t, iso8583.ClientOptions{Addr: addr, Logf: logs.logf, LateResponse: func(m *iso8583.Message) { late <- m }})
	req, _ := testAuth(t).Message()
	_, err := c.Send(ctxTimeout(t, 300*time.Millisecond), req)
	if !errors.Is(err, iso8583.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	select {
	case m := <-late:
		if stan, _ := m.GetString(11); stan != "999999" {
			t.Fatalf("LateResponse got STAN %s", stan)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no LateResponse call")
	}
	if !strings.Contains(logs.text(), "unreadable frame of 7 bytes") {
		t.Errorf("the garbage frame was not logged:\n%s", logs.text())
	}
}

func TestClientClose(t *testing.T) {
	received := make(chan struct{}, 1)
	addr, _ := startHost(t, hostsim.Options{Drop: func(*iso8583.Message) bool {
		received <- struct{}{}
		return true
	}})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	req, _ := testAuth(t).Message()
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctxTimeout(t, 10*time.Second), req)
		done <- err
	}()
	select {
	case <-received: // the request is on the wire
	case err := <-done:
		t.Fatalf("Send ended before reaching the host: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, iso8583.ErrOutcomeUnknown) || !errors.Is(err, iso8583.ErrClosed) {
		t.Fatalf("in-flight Send: err = %v, want ErrOutcomeUnknown wrapping ErrClosed", err)
	}
	_, err := c.Send(ctxTimeout(t, 5*time.Second), req)
	if !errors.Is(err, iso8583.ErrNotSent) || !errors.Is(err, iso8583.ErrClosed) {
		t.Fatalf("Send after Close: err = %v, want ErrNotSent and ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewClientChecksOptions(t *testing.T) {
	for _, opts := range []iso8583.ClientOptions{{}, {Addr: "no-port"}} {
		if _, err := iso8583.NewClient(opts); err == nil {
			t.Errorf("NewClient(%+v) succeeded", opts)
		}
	}
}

// The reader reads each frame into the memory of the one before: a response already
// delivered must keep its values after the frames that follow it are read.
func TestClientResponsesOutliveTheNextFrames(t *testing.T) {
	const n = 4
	framer := iso8583.BinaryLengthFramer{}
	addr := rawHost(t, func(nc net.Conn) {
		var stans []string
		for range n {
			b, err := framer.ReadFrame(nc)
			if err != nil {
				return
			}
			req, err := iso8583.Unpack(nil, b)
			if err != nil {
				t.Error(err)
				return
			}
			stan, _ := req.GetString(11)
			stans = append(stans, stan)
		}
		var out []byte // every answer in one write: the client reads them in one go
		for _, stan := range stans {
			resp := newMsg(t, "0210", map[int]string{11: stan, 37: "RRN000" + stan, 38: "A" + stan[1:], 39: "00", 41: "TERM0001"})
			if err := resp.BinaryField(55, []byte{0x9F, 0x36, 0x02, stan[4], stan[5]}); err != nil {
				t.Error(err)
				return
			}
			b, err := iso8583.Pack(resp)
			if err != nil {
				t.Error(err)
				return
			}
			if err := framer.WriteFrame(appendWriter{&out}, b); err != nil {
				t.Error(err)
				return
			}
		}
		nc.Write(out)
		framer.ReadFrame(nc) // until the client goes
	})
	c := newClient(t, iso8583.ClientOptions{Addr: addr})
	resps := make([]*iso8583.Message, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := testAuth(t)
			a.STAN = uint32(100 + i)
			req, err := a.Message()
			if err != nil {
				t.Error(err)
				return
			}
			if resps[i], err = c.Send(ctxTimeout(t, 10*time.Second), req); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, resp := range resps {
		if resp == nil {
			continue
		}
		stan := fmt.Sprintf("%06d", 100+i)
		rrn, _ := resp.GetString(37)
		auth, _ := resp.GetString(38)
		icc, _ := resp.GetBytes(55)
		if rrn != "RRN000"+stan || auth != "A"+stan[1:] || string(icc) != "\x9F\x36\x02"+stan[4:] {
			t.Errorf("response to STAN %s: 37=%q 38=%q 55=% X after the next frames were read", stan, rrn, auth, icc)
		}
	}
}

// appendWriter lets a Framer write into a buffer.
type appendWriter struct{ b *[]byte }

func (a appendWriter) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}
