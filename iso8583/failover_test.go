package iso8583_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// restartableHost is a hostsim server on a fixed loopback address that a test can stop
// (the host dies: its listener and connections close) and start again on the same
// address, its ledger kept, as a host process restarted on its database would.
type restartableHost struct {
	t      *testing.T
	srv    *hostsim.Server
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func newRestartableHost(t *testing.T, opts hostsim.Options) *restartableHost {
	t.Helper()
	opts.BDK = testBDK(t)
	opts.Now = func() time.Time { return hostNow }
	srv, err := hostsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := &restartableHost{t: t, srv: srv, addr: "127.0.0.1:0"}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *restartableHost) start() {
	h.t.Helper()
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.srv.Serve(ctx, ln) }()
}

func (h *restartableHost) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Serve: %v", err)
	}
	h.cancel = nil
}

// charged returns the host's charges by STAN.
func (h *restartableHost) charges() map[uint32]hostsim.Charge {
	m := make(map[uint32]hostsim.Charge)
	for _, c := range h.srv.Charges() {
		m[c.STAN] = c
	}
	return m
}

// TestFailoverMovesBetweenTransactions runs the failover rules against two real hosts on
// loopback: sales on the primary; a sale in flight when the primary dies ends
// outcome-unknown and is not sent to the backup; the next sale goes to the backup; the
// reversal is held for the primary (the host that got the sale) and reaches it when it is
// back; after PrimaryRetry the terminal returns to the primary.
func TestFailoverMovesBetweenTransactions(t *testing.T) {
	const slowSTAN = "000002"
	arrived := make(chan struct{}, 1)
	primary := newRestartableHost(t, hostsim.Options{Delay: func(req *iso8583.Message) time.Duration {
		if s, _ := req.GetString(11); s == slowSTAN {
			arrived <- struct{}{}
			return time.Hour // the host dies before it answers
		}
		return 0
	}})
	backup := newRestartableHost(t, hostsim.Options{})

	var mu sync.Mutex
	now := hostNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var switches []iso8583.Switch
	f, err := iso8583.NewFailover(iso8583.FailoverOptions{
		Addrs: []string{primary.addr, backup.addr},
		Client: iso8583.ClientOptions{SignOn: true, TerminalID: "TERM0001", NextSTAN: stanCounter(900),
			ReconnectMin: 20 * time.Millisecond, ReconnectMax: 50 * time.Millisecond},
		PrimaryRetry: 10 * time.Minute,
		Now:          clock,
		OnSwitch:     func(s iso8583.Switch) { mu.Lock(); switches = append(switches, s); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	pad := newPINPad(t)
	sale := func(stan uint32) iso8583.Authorization {
		a := testAuth(t)
		a.STAN = stan
		a.TransmissionTime = fixedUTC.Add(time.Duration(stan) * time.Minute)
		a.PINBlock, a.KSN = pad.block(t, "1234", approvedPAN)
		return a
	}
	send := func(a iso8583.Authorization) (string, *iso8583.Message, error) {
		t.Helper()
		req, err := a.Message()
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctxTimeout(t, 5*time.Second)
		host := f.NextHost(ctx)
		resp, err := f.SendTo(ctx, host, req)
		return host, resp, err
	}
	approved := func(a iso8583.Authorization, wantHost string) {
		t.Helper()
		host, resp, err := send(a)
		if err != nil {
			t.Fatalf("sale %d: %v", a.STAN, err)
		}
		if r, err := iso8583.ParseResponse(resp); err != nil || !r.Approved() {
			t.Fatalf("sale %d: %+v, %v", a.STAN, r, err)
		}
		if host != wantHost || f.ActiveAddr() != wantHost {
			t.Fatalf("sale %d went to %s (active %s), want %s", a.STAN, host, f.ActiveAddr(), wantHost)
		}
	}

	// 1. On the primary.
	if err := f.Connect(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	approved(sale(1), primary.addr)

	// 2. In flight when the primary dies: outcome unknown, never resent.
	slow := sale(2)
	errc := make(chan error, 1)
	go func() { _, _, err := send(slow); errc <- err }()
	<-arrived
	primary.stop()
	if err := <-errc; !errors.Is(err, iso8583.ErrOutcomeUnknown) {
		t.Fatalf("sale in flight when the primary died: %v, want ErrOutcomeUnknown", err)
	}

	// 3. The next sale approves at the backup; the move is reported with its reason.
	approved(sale(3), backup.addr)
	mu.Lock()
	if len(switches) != 1 || switches[0].From != primary.addr || switches[0].To != backup.addr || !strings.Contains(switches[0].Reason, "does not answer") {
		t.Errorf("switches = %+v, want one from the primary to the backup because it does not answer", switches)
	}
	mu.Unlock()

	// 4. The reversal of sale 2 belongs to the primary; while it is down it is not sent
	// (and not to the backup).
	rev, err := reversalOf(t, slow, 4).Message()
	if err != nil {
		t.Fatal(err)
	}
	to := f.RouteTo(primary.addr, true)
	if to != primary.addr {
		t.Fatalf("RouteTo(primary, reversal) = %s, want the primary", to)
	}
	if _, err := f.SendTo(ctxTimeout(t, 5*time.Second), to, rev); !errors.Is(err, iso8583.ErrNotSent) {
		t.Fatalf("reversal to the dead primary: %v, want ErrNotSent", err)
	}
	approved(sale(5), backup.addr) // before PrimaryRetry, the backup keeps the sales

	// 5. The primary comes back: the reversal reaches it; after PrimaryRetry sales return.
	primary.start()
	if err := f.Host(primary.addr).Connect(ctxTimeout(t, 5*time.Second)); err != nil { // within its redial backoff
		t.Fatalf("the restarted primary: %v", err)
	}
	resp, err := f.SendTo(ctxTimeout(t, 5*time.Second), to, rev)
	if err != nil {
		t.Fatalf("reversal to the restarted primary: %v", err)
	}
	if r, err := iso8583.ParseResponse(resp); err != nil || !r.Approved() {
		t.Fatalf("reversal: %+v, %v", r, err)
	}
	approved(sale(6), backup.addr)
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	approved(sale(7), primary.addr)

	// 6. No sale at both hosts; the one in flight reversed where it was sent.
	p, b := primary.charges(), backup.charges()
	for stan := range p {
		if _, ok := b[stan]; ok {
			t.Errorf("STAN %d reached both hosts", stan)
		}
	}
	for _, want := range []struct {
		host    map[uint32]hostsim.Charge
		stan    uint32
		charged bool
	}{{p, 1, true}, {p, 2, false}, {b, 3, true}, {b, 5, true}, {b, 6, true}, {p, 7, true}} {
		c, ok := want.host[want.stan]
		if !ok || c.Charged() != want.charged || c.Times != 1 {
			t.Errorf("STAN %d: %+v (found %t), want charged %t once", want.stan, c, ok, want.charged)
		}
	}
	if c := p[2]; !c.Reversed || c.Reversals != 1 {
		t.Errorf("sale in flight: %+v, want reversed once at the primary", c)
	}
}

// TestFailoverReversalToAny: a dialect whose network passes reversals between hosts sends
// them to the active host; an advice's repeat still goes to its host.
func TestFailoverReversalToAny(t *testing.T) {
	d, err := iso8583.ParseDialect([]byte(`{"name": "any", "reversal_to": "any", "fields": {
		"0": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	f, err := iso8583.NewFailover(iso8583.FailoverOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"},
		Client: iso8583.ClientOptions{Dialect: d}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tt := range []struct {
		origin   string
		reversal bool
		want     string
	}{
		{"127.0.0.1:2", true, "127.0.0.1:1"},
		{"127.0.0.1:2", false, "127.0.0.1:2"},
		{"", false, "127.0.0.1:1"},
		{"127.0.0.1:9", false, "127.0.0.1:1"}, // no longer configured
	} {
		if got := f.RouteTo(tt.origin, tt.reversal); got != tt.want {
			t.Errorf("RouteTo(%q, %t) = %s, want %s", tt.origin, tt.reversal, got, tt.want)
		}
	}
	if _, err := iso8583.ParseDialect([]byte(`{"reversal_to": "nearest", "fields": {}}`)); err == nil || !strings.Contains(err.Error(), "reversal_to") {
		t.Errorf("reversal_to nearest: %v, want an error naming reversal_to", err)
	}
	if _, err := iso8583.NewFailover(iso8583.FailoverOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:1"}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("an address twice: %v, want an error", err)
	}
}

// TestFailoverLetsIdleHostsGo: a host other than the active one is let go once nothing has
// gone to it for IdleClose (on the Failover's clock): after the move back to the primary,
// the backup's connection closes; a dead host's client stops redialling; a host that came
// back with a message waiting for it is kept until that message has gone. Counters add up
// across hosts and across the clients a host has had.
func TestFailoverLetsIdleHostsGo(t *testing.T) {
	primary := newRestartableHost(t, hostsim.Options{})
	backup := newRestartableHost(t, hostsim.Options{})
	var mu sync.Mutex
	now := hostNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f, err := iso8583.NewFailover(iso8583.FailoverOptions{
		Addrs: []string{primary.addr, backup.addr},
		Client: iso8583.ClientOptions{SignOn: true, TerminalID: "TERM0001", NextSTAN: stanCounter(100),
			ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond},
		PrimaryRetry: 10 * time.Minute,
		IdleClose:    time.Minute,
		Now:          clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	stan := uint32(500)
	echo := func(addr string) error {
		t.Helper()
		stan++
		m, err := iso8583.NetworkManagement{Code: iso8583.NMEcho, STAN: stan, TransmissionTime: fixedUTC, TerminalID: "TERM0001"}.Message()
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.SendTo(ctxTimeout(t, 5*time.Second), addr, m)
		return err
	}
	host := func(i int) iso8583.Stats {
		t.Helper()
		st, ok := f.HostStats(f.Addrs()[i])
		if !ok {
			t.Fatalf("HostStats(%s): not a host", f.Addrs()[i])
		}
		return st
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 5s", what)
			}
		}
	}

	// 1. The primary dies; the terminal moves to the backup, then back after PrimaryRetry.
	if err := f.Connect(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	primary.stop()
	eventually("primary seen down", func() bool { return !host(0).Connected })
	if got := f.NextHost(ctxTimeout(t, 5*time.Second)); got != backup.addr {
		t.Fatalf("with the primary down: next host %s, want the backup", got)
	}
	if err := echo(backup.addr); err != nil {
		t.Fatal(err)
	}
	primary.start()
	eventually("primary redialled", func() bool { return host(0).Connected })
	advance(10 * time.Minute)
	if got := f.NextHost(ctxTimeout(t, 5*time.Second)); got != primary.addr {
		t.Fatalf("after PrimaryRetry: next host %s, want the primary", got)
	}
	if err := echo(backup.addr); err != nil { // e.g. an advice's repeat, just now
		t.Fatal(err)
	}
	advance(30 * time.Second)
	if n := f.LetIdleGo(); n != 0 || !host(1).Connected {
		t.Fatalf("backup used 30s ago: %d let go, connected %t; want kept", n, host(1).Connected)
	}
	before := host(1)
	advance(time.Minute)
	if n := f.LetIdleGo(); n != 1 {
		t.Fatalf("backup idle for IdleClose: %d hosts let go, want 1", n)
	}
	after := host(1)
	if after.Connected || after.Connects < before.Connects || after.FramesOut < before.FramesOut || after.Connects == 0 {
		t.Errorf("backup let go: %+v (before %+v); want not connected, its counters kept", after, before)
	}
	if p, sum := host(0), f.Stats(); !sum.Connected || sum.Connects != p.Connects+after.Connects || sum.FramesOut != p.FramesOut+after.FramesOut {
		t.Errorf("Stats() = %+v; want the active host connected and the hosts' counters added (%+v + %+v)", sum, p, after)
	}
	if _, ok := f.HostStats("127.0.0.1:1"); ok {
		t.Errorf("HostStats of an address that is not a host: ok")
	}
	if n := f.LetIdleGo(); n != 0 {
		t.Errorf("let go again: %d; a host let go and unused has nothing running", n)
	}
	// Needed again: a message to the backup dials it in the background, as any host.
	if err := echo(backup.addr); !errors.Is(err, iso8583.ErrNotSent) {
		t.Errorf("message to the backup let go: %v, want ErrNotSent while it dials", err)
	}
	eventually("backup dialled again", func() bool { return host(1).Connected })
	if err := echo(backup.addr); err != nil {
		t.Errorf("message to the backup dialled again: %v", err)
	}

	// 2. A dead host with a message for it redials in the background; once nothing has
	// gone to it for IdleClose its client stops.
	backup.stop()
	eventually("backup seen down", func() bool { return !host(1).Connected })
	if err := echo(backup.addr); !errors.Is(err, iso8583.ErrNotSent) {
		t.Fatalf("message to the dead backup: %v, want ErrNotSent", err)
	}
	start := host(1).DialFailures
	eventually("redialling the dead backup", func() bool { return host(1).DialFailures >= start+3 })
	advance(2 * time.Minute)
	if n := f.LetIdleGo(); n != 1 {
		t.Fatalf("dead backup idle: %d let go, want 1", n)
	}
	stopped := host(1).DialFailures
	time.Sleep(100 * time.Millisecond) // five times ReconnectMax: a redial loop would have dialled
	if n := host(1).DialFailures; n != stopped {
		t.Errorf("the dead backup was dialled %d more times after it was let go", n-stopped)
	}

	// 3. The backup returns while a message waits for it: connected by its background
	// dial, it is kept however long the sender's retry takes, until the message has gone.
	backup.start()
	if err := echo(backup.addr); !errors.Is(err, iso8583.ErrNotSent) {
		t.Fatalf("message to the backup let go: %v, want ErrNotSent while it dials", err)
	}
	eventually("backup back", func() bool { return host(1).Connected })
	advance(10 * time.Minute)
	if n := f.LetIdleGo(); n != 0 {
		t.Errorf("backup with a message waiting: %d let go, want kept", n)
	}
	if err := echo(backup.addr); err != nil {
		t.Fatalf("the waiting message: %v", err)
	}
	advance(2 * time.Minute)
	if n := f.LetIdleGo(); n != 1 {
		t.Errorf("backup idle after the message went: %d let go, want 1", n)
	}
}
