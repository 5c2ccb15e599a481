package terminal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

// Two backup hosts by name: the router below never dials them, it passes every message it
// lets through to the rig's one simulator, and records which host it was for.
const (
	hostA = "127.0.0.1:1001"
	hostB = "127.0.0.1:1002"
)

// routed is one message as a router sent it: to which host, its MTI, its STAN, and for a
// reversal the STAN of the original it names (field 90).
type routed struct{ host, mti, stan, orig string }

func (m routed) String() string {
	return fmt.Sprintf("%s %s stan=%s orig=%s", m.host, m.mti, m.stan, m.orig)
}

// fakeRouter is a terminal.HostRouter over one real link: hosts are names; a host marked
// down fails with ErrNotSent; lose[mti] messages of that MTI are taken and never answered
// (outcome unknown). It follows iso8583.Failover's RouteTo rule.
type fakeRouter struct {
	link terminal.Acquirer

	mu     sync.Mutex
	active string
	anyRev bool // the dialect's reversal_to "any"
	down   map[string]bool
	lose   map[string]int
	sent   []routed
}

var _ terminal.HostRouter = (*fakeRouter)(nil)

func newFakeRouter(link terminal.Acquirer) *fakeRouter {
	return &fakeRouter{link: link, active: hostA, down: map[string]bool{}, lose: map[string]int{}}
}

func (f *fakeRouter) Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	return f.SendTo(ctx, f.NextHost(ctx), req)
}

func (f *fakeRouter) NextHost(context.Context) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active
}

func (f *fakeRouter) RouteTo(origin string, reversal bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if origin == "" || reversal && f.anyRev {
		return f.active
	}
	return origin
}

func (f *fakeRouter) SendTo(ctx context.Context, host string, req *iso8583.Message) (*iso8583.Message, error) {
	m := routed{host: host}
	m.mti, _ = req.GetMTI()
	m.stan, _ = req.GetString(11)
	if s, err := req.GetString(90); err == nil && len(s) >= 10 {
		m.orig = s[4:10]
	}
	f.mu.Lock()
	f.sent = append(f.sent, m)
	down, lose := f.down[host], f.lose[m.mti] > 0
	if lose {
		f.lose[m.mti]--
	}
	f.mu.Unlock()
	switch {
	case down:
		return nil, fmt.Errorf("%w: %s is down (test)", iso8583.ErrNotSent, host)
	case lose:
		return nil, fmt.Errorf("%w: taken and never answered (test)", iso8583.ErrOutcomeUnknown)
	}
	return f.link.Send(ctx, req)
}

// set makes active the active host and down the hosts that are down.
func (f *fakeRouter) set(active string, down ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active = active
	clear(f.down)
	for _, h := range down {
		f.down[h] = true
	}
}

// change changes the router's rules under its lock.
func (f *fakeRouter) change(fn func(*fakeRouter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// take returns the messages sent since the last take.
func (f *fakeRouter) take() []routed {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sent
	f.sent = nil
	return s
}

// wantSent fails unless the messages sent since the last take are want, as "host mti".
func wantSent(t *testing.T, f *fakeRouter, step string, want ...string) []routed {
	t.Helper()
	got := f.take()
	var s []string
	for _, m := range got {
		s = append(s, m.host+" "+m.mti)
	}
	if !slices.Equal(s, want) {
		t.Errorf("%s: sent %v, want %v", step, got, want)
	}
	return got
}

// queued returns the queue's items of transaction id.
func queuedOf(t *testing.T, r *rig, id store.TxnID) []store.Item {
	t.Helper()
	items, err := r.st.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(items, func(it store.Item) bool { return it.TxnID != id })
}

func txnOf(t *testing.T, r *rig, res terminal.SaleResult) store.TxnID {
	t.Helper()
	id, err := r.term.TxnIDFromPOI(res.POITransactionID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestHostRouting follows each kind of message the terminal sends to the host it must go
// to, with two hosts and the active one moving between steps: a sale goes to the active
// host and journals it; a timeout's reversal, a later void's, and Recover's after a crash
// go to the host that got the request, even when it is down and another is active; an
// advice's first send goes to the active host, its repeat to the host that may hold it;
// the reversal of a voided advice goes where the advice went; with reversal_to "any" a
// reversal goes to the active host.
func TestHostRouting(t *testing.T) {
	ctx := context.Background()
	var router *fakeRouter
	var sales0200 int
	// The forwarder's clock: drainLater moves it past every backoff.
	var skew atomic.Int64
	later := func() { skew.Add(int64(time.Hour)) }
	good := []padsim.Event{swipe(goodT1, goodT2), pin("1234")}
	events := slices.Concat(good, good, []padsim.Event{swipe(sigT1, sigT2)}, good)
	r := newRig(t, events, hostFaults{sealer: newGCM(t), offline: terminal.DefaultOfflinePolicy(),
		dropFn: func(m *iso8583.Message) bool {
			if mti, _ := m.GetMTI(); mti == "0200" {
				sales0200++
				return sales0200 == 2 // the second sale's answer never comes
			}
			return false
		},
		wrap: func(a terminal.Acquirer) terminal.Acquirer { router = newFakeRouter(a); return router },
		opts: func(o *terminal.Options) {
			o.Forward.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		}})

	// 1. A sale goes to the active host, which its intent journals.
	s1 := r.sale(t, 1100)
	if !s1.Approved {
		t.Fatalf("sale 1 = %+v", s1)
	}
	wantSent(t, router, "sale", hostA+" 0200")
	if rec, _ := r.st.Get(ctx, txnOf(t, r, s1)); rec.Intent.Host != hostA {
		t.Errorf("sale 1 journaled host %q, want %s", rec.Intent.Host, hostA)
	}

	// 2. A sale whose answer never comes: its reversal is for A, and waits for A while A
	// is down and B active; it is never sent to B.
	s2 := r.sale(t, 1200)
	if s2.Condition != terminal.CondInProgress {
		t.Fatalf("sale 2 = %+v", s2)
	}
	wantSent(t, router, "sale without an answer", hostA+" 0200")
	router.set(hostB, hostA)
	drain(t, r)
	wantSent(t, router, "timeout reversal while its host is down", hostA+" 0400")
	router.set(hostB)
	later()
	if st := drain(t, r); st.Acked != 1 {
		t.Errorf("timeout reversal drain = %+v", st)
	}
	wantSent(t, router, "timeout reversal", hostA+" 0400") // the first did not leave: not a repeat

	// 3. A void made later, with B active: the reversal goes to A, which approved.
	if _, err := r.term.Void(ctx, s1.POITransactionID, "till"); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	wantSent(t, router, "void", hostA+" 0400")

	// 4. A request journaled at A when posd crashed: Recover's reversal goes to A.
	crashed, err := r.st.Begin(ctx, store.Intent{Kind: "sale", MTI: "0200", STAN: 77, TerminalID: "TERM0001", AmountMinor: 500, Currency: "EUR",
		MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now(), Host: hostA})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.term.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if q := queuedOf(t, r, crashed); len(q) != 1 || q[0].Host != hostA {
		var hosts []string
		for _, it := range q {
			hosts = append(hosts, string(it.Kind)+" for "+it.Host)
		}
		t.Errorf("Recover queued %q, want one reversal for %s", hosts, hostA)
	}
	drain(t, r)
	if got := wantSent(t, router, "recover", hostA+" 0400"); len(got) == 1 && got[0].orig != "000077" {
		t.Errorf("recover's reversal names STAN %s, want 000077", got[0].orig)
	}

	// 5. An offline approval while A is down: its advice's first send is a transaction of
	// its own, to the active host B; taken and unanswered there, its repeat goes to B
	// although A is active again.
	router.set(hostA, hostA)
	s3 := r.sale(t, 1300)
	if !s3.ApprovedOffline {
		t.Fatalf("sale 3 = %+v", s3)
	}
	wantSent(t, router, "offline sale", hostA+" 0200")
	router.set(hostB, hostA)
	router.change(func(f *fakeRouter) { f.lose["0220"] = 1 })
	drain(t, r)
	wantSent(t, router, "advice, first send", hostB+" 0220")
	router.set(hostA)
	later()
	if st := drain(t, r); st.Acked != 1 {
		t.Errorf("advice repeat drain = %+v", st)
	}
	wantSent(t, router, "advice, repeat", hostB+" 0221")
	if rec, _ := r.st.Get(ctx, txnOf(t, r, s3)); rec.Outcome.Advised == nil || rec.Outcome.Advised.Host != hostB {
		t.Errorf("advice acknowledged: %+v, want host %s", rec.Outcome.Advised, hostB)
	}

	// 6. A void of that offline approval: the advice's reversal goes to B, where the
	// advice went, though A is active and the sale was meant for A.
	if _, err := r.term.Void(ctx, s3.POITransactionID, "till"); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	wantSent(t, router, "void of an advice", hostB+" 0400")

	// 7. reversal_to "any": a void's reversal goes to the active host.
	s4 := r.sale(t, 1400)
	if !s4.Approved {
		t.Fatalf("sale 4 = %+v", s4)
	}
	wantSent(t, router, "sale 4", hostA+" 0200")
	router.set(hostB)
	router.change(func(f *fakeRouter) { f.anyRev = true })
	if _, err := r.term.Void(ctx, s4.POITransactionID, "till"); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	wantSent(t, router, "void, reversal_to any", hostB+" 0400")
	r.checkNoCardData(t)
}

// TestReversalHoldsOnlyItsHost: store-and-forward order is per host. A reversal waiting
// for a host that is down holds that host's completion (it may be the same customer's),
// not the completion of a sale at another host; the held one follows its reversal once
// the host is back.
func TestReversalHoldsOnlyItsHost(t *testing.T) {
	ctx := context.Background()
	var router *fakeRouter
	var auths int
	// The forwarder's clock stands still but for later: what a failed send puts off stays
	// put off until the test says.
	base := time.Now()
	var skew atomic.Int64
	later := func() { skew.Add(int64(time.Hour)) }
	good := []padsim.Event{swipe(goodT1, goodT2), pin("1234")}
	r := newRig(t, slices.Concat(good, good, good), hostFaults{sealer: newGCM(t), dual: true,
		dropFn: func(m *iso8583.Message) bool {
			if mti, _ := m.GetMTI(); mti == "0100" {
				auths++
				return auths == 2 // the second authorization's answer never comes
			}
			return false
		},
		wrap: func(a terminal.Acquirer) terminal.Acquirer { router = newFakeRouter(a); return router },
		opts: func(o *terminal.Options) {
			o.Forward.Now = func() time.Time { return base.Add(time.Duration(skew.Load())) }
		}})

	// At A: one authorization approved (its completion queued for A), one unanswered
	// (its reversal queued for A).
	s0 := r.sale(t, 1000)
	s1 := r.sale(t, 1100)
	if !s0.Approved || s1.Condition != terminal.CondInProgress {
		t.Fatalf("sales at A: %+v, %+v", s0, s1)
	}
	// A goes down: the next sale goes to B; the reversal waiting for A does not stop it.
	router.set(hostB, hostA)
	s2 := r.sale(t, 1200)
	if !s2.Approved {
		t.Fatalf("sale at B: %+v", s2)
	}
	wantSent(t, router, "sales", hostA+" 0100", hostA+" 0100", hostA+" 0400", hostB+" 0100")

	later()
	drain(t, r) // the reversal, due: A is down
	wantSent(t, router, "reversal to A, down", hostA+" 0400")
	drain(t, r) // the reversal waits out its backoff: B's completion goes, A's waits
	wantSent(t, router, "completions while A's reversal waits", hostB+" 0220")
	if q := queuedOf(t, r, txnOf(t, r, s0)); len(q) != 1 || q[0].Kind != store.KindAdvice || !q[0].FirstSent.IsZero() {
		t.Errorf("A's completion: %d items, want it queued and never sent", len(q))
	}
	if q := queuedOf(t, r, txnOf(t, r, s2)); len(q) != 0 {
		t.Errorf("B's completion still queued: %d items", len(q))
	}

	// A is back: its reversal goes first, then its completion.
	router.set(hostB)
	later()
	if st := drain(t, r); st.Acked != 2 {
		t.Errorf("drain with A back = %+v, want 2 acknowledged", st)
	}
	wantSent(t, router, "A back", hostA+" 0400", hostA+" 0220")
	if items, _ := r.st.List(ctx); len(items) != 0 {
		t.Errorf("queue = %d items, want empty", len(items))
	}
}

// acqFunc is an Acquirer made of a function.
type acqFunc func(context.Context, *iso8583.Message) (*iso8583.Message, error)

func (f acqFunc) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	return f(ctx, m)
}

// TestReversalWithoutFixedHostHoldsEveryHost: a waiting reversal holds the host it goes to
// now when that is the host of its original (where the same sale's advice goes); one
// whose host is not recorded (queued by an older release), or that the network moves
// elsewhere (reversal_to any, another host active), may reach any host and holds them all.
func TestReversalWithoutFixedHostHoldsEveryHost(t *testing.T) {
	const original = `"orig_mti":"0200","orig_stan":1,"orig_transmission":"2026-01-02T03:04:05Z","local_time":"2026-01-02T03:04:05Z",` +
		`"amount_minor":500,"currency_numeric":"978","processing_code":"000000","entry_mode":"021","terminal_id":"TERM0001","merchant_id":"MERCHANT0001"`
	for _, tt := range []struct {
		name             string
		revHost, advHost string
		active           string // and down: the reversal waits
		anyRev           bool
		want             []string // sent by the second drain, the reversal waiting
	}{
		{"host not recorded", "", hostB, hostA, false, nil},
		{"reversal_to any, another host active", hostA, hostA, hostB, true, nil},
		{"reversal_to any, its host active", hostA, hostB, hostA, true, []string{hostB + " 0220"}},
		{"fixed to A", hostA, hostB, hostA, false, []string{hostB + " 0220"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.Open(filepath.Join(t.TempDir(), "posd.db"), &store.Options{Sealer: newGCM(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			queue := func(state store.State, it store.Item) {
				t.Helper()
				id, err := st.Begin(ctx, store.Intent{Kind: "sale", MTI: "0200", STAN: it.STAN - 1, TerminalID: "TERM0001", AmountMinor: 500, Currency: "EUR",
					MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now()})
				if err != nil {
					t.Fatal(err)
				}
				it.AmountMinor, it.Currency, it.MaskedPAN = 500, "EUR", "476173******0010"
				if _, err := st.FinishAndQueue(ctx, id, store.Outcome{State: state, Time: time.Now()}, it); err != nil {
					t.Fatal(err)
				}
			}
			queue(store.StateUnknown, store.Item{Kind: store.KindReversal, STAN: 2, Host: tt.revHost,
				Payload: []byte(`{` + original + `,"reason_code":"06"}`)})
			queue(store.StateApprovedOffline, store.Item{Kind: store.KindAdvice, STAN: 4, Host: tt.advHost,
				Payload:   []byte(`{` + original + `,"approval_code":"Y10003"}`),
				Sensitive: []byte(`{"pan":"4761739001010010","expiry":"3012"}`)})

			router := newFakeRouter(acqFunc(func(context.Context, *iso8583.Message) (*iso8583.Message, error) {
				return nil, fmt.Errorf("%w: no host behind this test", iso8583.ErrOutcomeUnknown)
			}))
			router.set(tt.active, tt.active) // down: the reversal stays waiting
			router.change(func(f *fakeRouter) { f.anyRev = tt.anyRev })
			base := time.Now()
			fwd := terminal.NewForwarder(st, router, terminal.ForwardOptions{Now: func() time.Time { return base }})
			if _, err := fwd.Drain(ctx, false); err != nil {
				t.Fatal(err)
			}
			wantSent(t, router, "the reversal", tt.active+" 0400")
			if _, err := fwd.Drain(ctx, false); err != nil {
				t.Fatal(err)
			}
			wantSent(t, router, "while the reversal waits", tt.want...)
		})
	}
}
