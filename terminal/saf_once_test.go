package terminal_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

// These tests hold under a host that knows a message only by terminal + STAN + field 7:
// they check directly that every resend carries the first send's STAN and field 7, and
// that a reversal's field 90 names its original exactly as that was sent.

const cardPAN = "4761739001010010" // the PAN of goodT2 and sigT2

// sentWith returns the requests the rig sent whose MTI is one of mtis, in order.
func (r *rig) sentWith(mtis ...string) []*iso8583.Message {
	r.sent.mu.Lock()
	defer r.sent.mu.Unlock()
	var out []*iso8583.Message
	for _, m := range r.sent.msgs {
		mti, _ := m.GetMTI()
		for _, w := range mtis {
			if mti == w {
				out = append(out, m)
			}
		}
	}
	return out
}

func get(m *iso8583.Message, id int) string {
	v, _ := m.GetString(id)
	return v
}

// field90 is what a reversal or completion of m carries: m's MTI, STAN and field 7, and
// zero institution ids.
func field90(m *iso8583.Message) string {
	mti, _ := m.GetMTI()
	if mti == "0221" {
		mti = "0220" // a repeat is named as its first transmission
	}
	return mti + get(m, 11) + get(m, 7) + strings.Repeat("0", 22)
}

// withhold makes the host process a request and keep its answer, n times for the MTIs
// given: the request has arrived, the terminal never hears so.
func withhold(n int, mtis ...string) func(*iso8583.Message, []byte) []byte {
	var mu sync.Mutex
	return func(req *iso8583.Message, wire []byte) []byte {
		mti, _ := req.GetMTI()
		mu.Lock()
		defer mu.Unlock()
		for _, w := range mtis {
			if mti == w && n > 0 {
				n--
				return nil
			}
		}
		return wire
	}
}

// forwarder returns a forwarder over the rig's store and acq whose clock starts an hour
// back and steps a minute per reading: a send whose field 7 came from the clock, or from
// the time of day, instead of the first send's, would show.
func forwarder(r *rig, acq terminal.Acquirer, opts terminal.ForwardOptions) *terminal.Forwarder {
	var mu sync.Mutex
	at := time.Now().Add(-time.Hour)
	opts.Now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		at = at.Add(time.Minute)
		return at
	}
	if opts.SendTimeout == 0 {
		opts.SendTimeout = 300 * time.Millisecond
	}
	return terminal.NewForwarder(r.st, acq, opts)
}

// drainAll drains until the queue is empty, making every item due at once between
// drains instead of waiting out the backoff.
func drainAll(t *testing.T, r *rig, f *terminal.Forwarder) {
	t.Helper()
	ctx := context.Background()
	for range 8 {
		if _, err := f.Drain(ctx, false); err != nil {
			t.Fatal(err)
		}
		items, _ := r.st.List(ctx)
		if len(items) == 0 {
			return
		}
		r.st.Reschedule(ctx, "test")
	}
	items, _ := r.st.List(ctx)
	t.Fatalf("queue not drained: %+v", items)
}

// standing returns the host's charges that stand (approved, not reversed, not replaced by
// a completion).
func standing(r *rig) []hostsim.Charge {
	var out []hostsim.Charge
	for _, c := range r.host.Charges() {
		if c.Charged() {
			out = append(out, c)
		}
	}
	return out
}

func sameSTANAndField7(t *testing.T, msgs []*iso8583.Message) {
	t.Helper()
	for _, m := range msgs[1:] {
		if get(m, 11) != get(msgs[0], 11) || get(m, 7) != get(msgs[0], 7) {
			t.Errorf("resend STAN %s field 7 %s, first send STAN %s field 7 %s", get(m, 11), get(m, 7), get(msgs[0], 11), get(msgs[0], 7))
		}
	}
}

func TestSAFAdviceResendsKeepSTANAndField7(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2)}, hostFaults{later: true, sealer: newGCM(t),
		offline: terminal.DefaultOfflinePolicy(), corrupt: withhold(2, "0220", "0221")})
	if res := r.sale(t, 1500); !res.ApprovedOffline {
		t.Fatalf("sale = %+v", res)
	}
	r.startHost(t)
	drainAll(t, r, forwarder(r, r.sent, terminal.ForwardOptions{}))
	advs := r.sentWith("0220", "0221")
	var mtis []string
	for _, m := range advs {
		mti, _ := m.GetMTI()
		mtis = append(mtis, mti)
	}
	if strings.Join(mtis, ",") != "0220,0221,0221" {
		t.Fatalf("advices sent: %v; want the first, then repeats", mtis)
	}
	sameSTANAndField7(t, advs)
	ch := r.host.Charges()
	if len(ch) != 1 || ch[0].MTI != "0220" || ch[0].Times != 3 || len(standing(r)) != 1 {
		t.Errorf("host charges = %+v; want one advice, received three times, charged once", ch)
	}
}

func TestSAFReversalResendsKeepSTANAndField7(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{sealer: newGCM(t),
		corrupt: withhold(2, "0200", "0400", "0420", "0421")})
	// The sale's answer is withheld: outcome unknown, reversal queued; its first answer
	// is withheld too.
	if res := r.sale(t, 1250); res.Condition != terminal.CondInProgress {
		t.Fatalf("sale = %+v", res)
	}
	drainAll(t, r, forwarder(r, r.sent, terminal.ForwardOptions{}))
	revs := r.sentWith("0400", "0420", "0421")
	var mtis []string
	for _, m := range revs {
		mti, _ := m.GetMTI()
		mtis = append(mtis, mti)
	}
	if strings.Join(mtis, ",") != "0400,0420" {
		t.Fatalf("reversals sent: %v", mtis)
	}
	sameSTANAndField7(t, revs)
	auth := r.sentWith("0200")[0]
	for _, m := range revs {
		if get(m, 90) != field90(auth) {
			t.Errorf("field 90 = %s, want %s", get(m, 90), field90(auth))
		}
	}
	if s := standing(r); len(s) != 0 {
		t.Errorf("charges standing: %+v", s)
	}
}

// posd stops after the advice went out and was answered, before the answer was recorded:
// after the restart it is sent again as a repeat with the same STAN and field 7, and the
// host books it once.
func TestSAFCrashBetweenMarkAndSettleResendsRepeat(t *testing.T) {
	sealer := newGCM(t)
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2)}, hostFaults{later: true, sealer: sealer, offline: terminal.DefaultOfflinePolicy()})
	if res := r.sale(t, 1800); !res.ApprovedOffline {
		t.Fatalf("sale = %+v", res)
	}
	r.startHost(t)
	type crash struct{}
	f := forwarder(r, r.sent, terminal.ForwardOptions{SendTimeout: 2 * time.Second, Failpoint: func(name string) {
		if name == "mid-drain" {
			panic(crash{})
		}
	}})
	func() {
		defer func() {
			if v := recover(); v != (crash{}) {
				t.Fatalf("drain did not stop at the failpoint: %v", v)
			}
		}()
		f.Drain(context.Background(), false)
	}()
	if len(r.host.Charges()) != 1 {
		t.Fatalf("the advice did not reach the host before the crash: %+v", r.host.Charges())
	}
	path := r.st.Path()
	r.st.Close()
	st, err := store.Open(path, &store.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f2 := terminal.NewForwarder(st, r.sent, terminal.ForwardOptions{SendTimeout: 2 * time.Second}) // the time of day: an hour after the first send
	if ds, err := f2.Drain(context.Background(), false); err != nil || ds.Acked != 1 {
		t.Fatalf("drain after restart = %+v, %v", ds, err)
	}
	advs := r.sentWith("0220", "0221")
	if len(advs) != 2 {
		t.Fatalf("%d advices sent, want 2", len(advs))
	}
	if mti, _ := advs[1].GetMTI(); mti != "0221" {
		t.Errorf("resend after the restart is %s, want the repeat 0221", mti)
	}
	sameSTANAndField7(t, advs)
	if ch := r.host.Charges(); len(ch) != 1 || ch[0].Times != 2 || len(standing(r)) != 1 {
		t.Errorf("host charges = %+v", ch)
	}
	var rec store.Record
	st.Records(context.Background(), func(x store.Record) error { rec = x; return nil })
	if rec.Outcome == nil || rec.Outcome.Advised == nil || rec.Outcome.Advised.TransmissionTime.IsZero() {
		t.Errorf("journal = %+v", rec.Outcome)
	}
}

func TestVoidOfflineApprovalBeforeAdvice(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2)}, hostFaults{later: true, sealer: newGCM(t), offline: terminal.DefaultOfflinePolicy()})
	res := r.sale(t, 1000)
	if !res.ApprovedOffline {
		t.Fatalf("sale = %+v", res)
	}
	v, err := r.term.Void(context.Background(), res.POITransactionID, "till")
	if err != nil || !v.Withdrawn || v.Reversals != 0 {
		t.Fatalf("void = %+v, %v", v, err)
	}
	r.startHost(t)
	if st := drain(t, r); st.Sent != 0 {
		t.Errorf("drain = %+v; nothing should be sent", st)
	}
	if ch := r.host.Charges(); len(ch) != 0 || len(r.sentWith("0220", "0221", "0400", "0420", "0421")) != 0 {
		t.Errorf("the host heard of a withdrawn approval: %+v", ch)
	}
}

// gate passes the first request of mti through to the host, then holds its answer until
// released: the message has arrived, posd does not know it yet.
type gate struct {
	terminal.Acquirer
	mti     string
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	resp, err := g.Acquirer.Send(ctx, m)
	if mti, _ := m.GetMTI(); mti == g.mti {
		g.once.Do(func() { close(g.entered); <-g.release })
	}
	return resp, err
}

func TestVoidOfflineApprovalWhileAdviceInFlight(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2)}, hostFaults{later: true, sealer: newGCM(t), offline: terminal.DefaultOfflinePolicy()})
	res := r.sale(t, 1200)
	if !res.ApprovedOffline {
		t.Fatalf("sale = %+v", res)
	}
	r.startHost(t)
	bal0, _ := r.host.Balance(cardPAN)
	g := &gate{Acquirer: r.sent, mti: "0220", entered: make(chan struct{}), release: make(chan struct{})}
	f := forwarder(r, g, terminal.ForwardOptions{SendTimeout: 5 * time.Second})
	done := make(chan error, 1)
	go func() { _, err := f.Drain(context.Background(), false); done <- err }()
	<-g.entered
	v, err := r.term.Void(context.Background(), res.POITransactionID, "till")
	if err != nil || v.Withdrawn || !v.AwaitingAdvice || v.Reversals != 1 {
		t.Fatalf("void while the advice is in flight = %+v, %v; never 'withdrawn'", v, err)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	drainAll(t, r, f)
	adv := r.sentWith("0220", "0221")
	revs := r.sentWith("0400", "0420", "0421")
	if len(adv) != 1 || len(revs) != 1 {
		t.Fatalf("sent %d advices and %d reversals", len(adv), len(revs))
	}
	if get(revs[0], 90) != field90(adv[0]) {
		t.Errorf("reversal field 90 = %s, want the advice as sent %s", get(revs[0], 90), field90(adv[0]))
	}
	if s := standing(r); len(s) != 0 {
		t.Errorf("charges standing after the void: %+v", s)
	}
	if bal, _ := r.host.Balance(cardPAN); bal != bal0 {
		t.Errorf("balance %d, want %d", bal, bal0)
	}
}

func TestVoidOfflineApprovalAfterAdvice(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2)}, hostFaults{later: true, sealer: newGCM(t), offline: terminal.DefaultOfflinePolicy()})
	res := r.sale(t, 1300)
	if !res.ApprovedOffline {
		t.Fatalf("sale = %+v", res)
	}
	r.startHost(t)
	bal0, _ := r.host.Balance(cardPAN)
	f := forwarder(r, r.sent, terminal.ForwardOptions{}) // the advice's field 7 is not the sale's time
	if st, err := f.Drain(context.Background(), false); err != nil || st.Acked != 1 {
		t.Fatalf("advice drain = %+v, %v", st, err)
	}
	v, err := r.term.Void(context.Background(), res.POITransactionID, "till")
	if err != nil || v.Withdrawn || v.AwaitingAdvice || v.Reversals != 1 {
		t.Fatalf("void after the advice = %+v, %v", v, err)
	}
	drainAll(t, r, f)
	adv, revs := r.sentWith("0220"), r.sentWith("0400", "0420", "0421")
	if len(adv) != 1 || len(revs) != 1 || get(revs[0], 90) != field90(adv[0]) {
		t.Fatalf("advice %d, reversals %d; field 90 %q, want %q", len(adv), len(revs), get(revs[0], 90), field90(adv[0]))
	}
	if s := standing(r); len(s) != 0 {
		t.Errorf("charges standing after the void: %+v", s)
	}
	if bal, _ := r.host.Balance(cardPAN); bal != bal0 {
		t.Errorf("balance %d, want %d: the advice charged, its reversal undone", bal, bal0)
	}
	if rec := r.records(t)[0]; rec.Outcome.Voided == nil || rec.Outcome.Reversed == nil {
		t.Errorf("journal = %+v", rec.Outcome)
	}
}

func TestDualMessageCompletion(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{dual: true, sealer: newGCM(t)})
	bal0, _ := r.host.Balance(cardPAN)
	res := r.sale(t, 2500)
	if !res.Approved {
		t.Fatalf("sale = %+v", res)
	}
	items, _ := r.st.List(context.Background())
	if len(items) != 1 || items[0].Kind != store.KindAdvice || items[0].AmountMinor != 2500 {
		t.Fatalf("queue = %+v; want the completion", items)
	}
	drainAll(t, r, forwarder(r, r.sent, terminal.ForwardOptions{}))
	auth, comp := r.sentWith("0100"), r.sentWith("0220", "0221")
	if len(auth) != 1 || len(comp) != 1 {
		t.Fatalf("sent %d 0100 and %d completions", len(auth), len(comp))
	}
	if get(comp[0], 90) != field90(auth[0]) || get(comp[0], 4) != "000000002500" {
		t.Errorf("completion field 90 %s (want %s), field 4 %s", get(comp[0], 90), field90(auth[0]), get(comp[0], 4))
	}
	var hold, done *hostsim.Charge
	for _, c := range r.host.Charges() {
		switch c.MTI {
		case "0100":
			hold = &c
		case "0220":
			done = &c
		}
	}
	if hold == nil || !hold.Completed || done == nil || !done.Charged() || done.Times != 1 || len(standing(r)) != 1 {
		t.Errorf("host charges = %+v", r.host.Charges())
	}
	if bal, _ := r.host.Balance(cardPAN); bal != bal0-2500 {
		t.Errorf("balance %d, want %d: charged once", bal, bal0-2500)
	}
	if rec := r.records(t)[0]; rec.Outcome.Advised == nil {
		t.Errorf("journal = %+v", rec.Outcome)
	}
}

func TestDualMessageVoidBeforeCompletion(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{dual: true, sealer: newGCM(t)})
	bal0, _ := r.host.Balance(cardPAN)
	res := r.sale(t, 2600)
	if !res.Approved {
		t.Fatalf("sale = %+v", res)
	}
	v, err := r.term.Void(context.Background(), res.POITransactionID, "till")
	if err != nil || v.Withdrawn || v.Reversals != 1 || v.AwaitingAdvice {
		t.Fatalf("void = %+v, %v", v, err)
	}
	drainAll(t, r, forwarder(r, r.sent, terminal.ForwardOptions{}))
	if n := len(r.sentWith("0220", "0221")); n != 0 {
		t.Errorf("%d completions sent for a voided authorization", n)
	}
	revs := r.sentWith("0400", "0420", "0421")
	if len(revs) != 1 || get(revs[0], 90) != field90(r.sentWith("0100")[0]) {
		t.Errorf("reversals = %d, want one naming the 0100", len(revs))
	}
	if s := standing(r); len(s) != 0 {
		t.Errorf("charges standing: %+v", s)
	}
	if bal, _ := r.host.Balance(cardPAN); bal != bal0 {
		t.Errorf("balance %d, want %d", bal, bal0)
	}
}

func TestDualMessageVoidAfterCompletion(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{dual: true, sealer: newGCM(t)})
	bal0, _ := r.host.Balance(cardPAN)
	res := r.sale(t, 2700)
	if !res.Approved {
		t.Fatalf("sale = %+v", res)
	}
	f := forwarder(r, r.sent, terminal.ForwardOptions{})
	drainAll(t, r, f)
	v, err := r.term.Void(context.Background(), res.POITransactionID, "till")
	if err != nil || v.Withdrawn || v.Reversals != 2 {
		t.Fatalf("void = %+v, %v", v, err)
	}
	drainAll(t, r, f)
	want := map[string]bool{field90(r.sentWith("0100")[0]): true, field90(r.sentWith("0220")[0]): true}
	for _, m := range r.sentWith("0400", "0420", "0421") {
		if !want[get(m, 90)] {
			t.Errorf("a reversal names %s", get(m, 90))
		}
		delete(want, get(m, 90))
	}
	if len(want) != 0 {
		t.Errorf("not reversed: %v", want)
	}
	if s := standing(r); len(s) != 0 {
		t.Errorf("charges standing: %+v", s)
	}
	if bal, _ := r.host.Balance(cardPAN); bal != bal0 {
		t.Errorf("balance %d, want %d", bal, bal0)
	}
}
