package terminal_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

// Signature cards (service code 101): no PIN, so they may be approved offline.
const (
	sigT2 = "4761739001010010=30121010000000000"
	sigT1 = "B4761739001010010^SIGNATURE/CARD^3012101000000000000"
)

type gcm struct{ a cipher.AEAD }

func newGCM(t *testing.T) *gcm { return newGCMB(t) }

func newGCMB(t testing.TB) *gcm {
	k := make([]byte, 32)
	rand.Read(k)
	b, _ := aes.NewCipher(k)
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &gcm{a}
}

func (g *gcm) Seal(_ context.Context, _ string, p, aad []byte) ([]byte, error) {
	n := make([]byte, g.a.NonceSize())
	rand.Read(n)
	return g.a.Seal(n, n, p, aad), nil
}

func (g *gcm) Open(_ context.Context, _ string, s, aad []byte) ([]byte, error) {
	if len(s) < g.a.NonceSize() {
		return nil, errors.New("short")
	}
	return g.a.Open(nil, s[:g.a.NonceSize()], s[g.a.NonceSize():], aad)
}

func drain(t *testing.T, r *rig) terminal.DrainStats {
	t.Helper()
	st, err := r.term.Forwarder().Drain(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func charged(charges []hostsim.Charge) (n int) {
	for _, c := range charges {
		if c.Approved && !c.Reversed {
			n++
		}
	}
	return n
}

func TestOfflineApprovalThenAdvice(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2), swipe(sigT1, sigT2), swipe(goodT1, goodT2), pin("1234")},
		hostFaults{later: true, sealer: newGCM(t), offline: terminal.DefaultOfflinePolicy()})
	// The host is away: a signature card under the floor limit is approved offline.
	res := r.sale(t, 1999)
	if !res.Approved || !res.ApprovedOffline || len(res.ApprovalCode) != 6 || !strings.Contains(res.Message, "offline") {
		t.Fatalf("result = %+v", res)
	}
	// Above the floor limit: declined offline, with the reason.
	res = r.sale(t, 5001)
	if res.Approved || res.Condition != terminal.CondUnreachableHost || !strings.Contains(res.Message, "floor limit") {
		t.Fatalf("over the floor limit: %+v", res)
	}
	// A PIN card is never approved offline.
	res = r.sale(t, 100)
	if res.Approved || !strings.Contains(res.Message, "PIN") {
		t.Fatalf("PIN card offline: %+v", res)
	}
	items, _ := r.st.List(context.Background())
	if len(items) != 1 || items[0].Kind != store.KindAdvice || items[0].AmountMinor != 1999 {
		t.Fatalf("queue = %+v", items)
	}
	// The host comes back: the advice goes and is acknowledged once.
	r.startHost(t)
	st := drain(t, r)
	if st.Acked != 1 {
		items, _ := r.st.List(context.Background())
		t.Fatalf("drain = %+v, queue %+v", st, items)
	}
	if items, _ := r.st.List(context.Background()); len(items) != 0 {
		t.Errorf("queue after drain = %+v", items)
	}
	recs := r.records(t)
	if recs[0].Outcome.State != store.StateApprovedOffline || recs[0].Outcome.Advised == nil {
		t.Errorf("journal = %+v", recs[0].Outcome)
	}
	ch := r.host.Charges()
	if len(ch) != 1 || !ch[0].Approved || ch[0].MTI != "0220" || ch[0].AmountMinor != 1999 || ch[0].Times != 1 {
		t.Errorf("host charges = %+v", ch)
	}
	r.checkNoCardData(t)
}

func TestTimeoutQueuesReversalSentBeforeNextSale(t *testing.T) {
	dropped := 0
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")},
		hostFaults{sealer: newGCM(t), dropFn: func(m *iso8583.Message) bool {
			mti, _ := m.GetMTI()
			if mti == "0200" && dropped == 0 {
				dropped++
				return true // the first sale's answer never comes
			}
			return false
		}})
	res := r.sale(t, 1250)
	if res.Condition != terminal.CondInProgress || !strings.Contains(res.Message, "reversed") {
		t.Fatalf("first sale = %+v", res)
	}
	items, _ := r.st.List(context.Background())
	if len(items) != 1 || items[0].Kind != store.KindReversal {
		t.Fatalf("queue = %+v", items)
	}
	// The next sale sends the pending reversal first, then authorizes.
	res2 := r.sale(t, 700)
	if !res2.Approved {
		t.Fatalf("second sale = %+v", res2)
	}
	if items, _ := r.st.List(context.Background()); len(items) != 0 {
		t.Errorf("the reversal is still queued: %+v", items)
	}
	recs := r.records(t)
	if recs[0].Outcome.State != store.StateUnknown || recs[0].Outcome.Reversed == nil {
		t.Errorf("first record = %+v", recs[0].Outcome)
	}
	if n := charged(r.host.Charges()); n != 1 {
		t.Errorf("%d charges stand at the host, want 1 (the second sale): %+v", n, r.host.Charges())
	}
}

func TestVoidAfterApproval(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{sealer: newGCM(t)})
	res := r.sale(t, 4200)
	if !res.Approved {
		t.Fatalf("sale = %+v", res)
	}
	v, err := r.term.Void(context.Background(), res.POITransactionID, "till TILL")
	if err != nil || v.Withdrawn {
		t.Fatalf("void = %+v, %v", v, err)
	}
	if _, err := r.term.Void(context.Background(), res.POITransactionID, "till TILL"); !errors.Is(err, store.ErrNotVoidable) {
		t.Errorf("second void: %v", err)
	}
	if _, err := r.term.Void(context.Background(), "TERM0001-00000099", "till"); !errors.Is(err, terminal.ErrUnknownTransaction) {
		t.Errorf("void of an unknown transaction: %v", err)
	}
	if st := drain(t, r); st.Acked != 1 {
		t.Fatalf("drain = %+v", st)
	}
	ch := r.host.Charges()
	if len(ch) != 1 || !ch[0].Reversed || ch[0].Reversals != 1 {
		t.Errorf("host charges = %+v", ch)
	}
	recs := r.records(t)
	if recs[0].Outcome.Voided == nil || recs[0].Outcome.Reversed == nil {
		t.Errorf("journal = %+v", recs[0].Outcome)
	}
}

func TestVoidWithdrawsUnsentOfflineApproval(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2)}, hostFaults{later: true, sealer: newGCM(t), offline: terminal.DefaultOfflinePolicy()})
	res := r.sale(t, 1000)
	if !res.ApprovedOffline {
		t.Fatalf("sale = %+v", res)
	}
	v, err := r.term.Void(context.Background(), res.POITransactionID, "till")
	if err != nil || !v.Withdrawn {
		t.Fatalf("void = %+v, %v", v, err)
	}
	if items, _ := r.st.List(context.Background()); len(items) != 0 {
		t.Errorf("queue = %+v", items)
	}
}

func TestForwarderParksAfterMaxAttempts(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{sealer: newGCM(t), drop: true})
	res := r.sale(t, 1250)
	if res.Condition != terminal.CondInProgress {
		t.Fatalf("sale = %+v", res)
	}
	// The host swallows everything: each drain is one attempt; after MaxAttempts (3) the
	// reversal is parked, not dropped.
	for i := 0; i < 20; i++ {
		drain(t, r)
		items, _ := r.st.List(context.Background())
		if len(items) == 1 && items[0].State == store.QueueParked {
			if items[0].Attempts != 3 || !strings.Contains(items[0].ParkReason, "retries exhausted") {
				t.Errorf("parked item = %+v", items[0])
			}
			return
		}
		time.Sleep(60 * time.Millisecond) // past the test's MaxBackoff
	}
	items, _ := r.st.List(context.Background())
	t.Fatalf("reversal never parked: %+v", items)
}

func TestNoSealerStillReverses(t *testing.T) {
	// Without a data key no card data is queued: the reversal carries field 90 only, and
	// offline approval is refused with that reason.
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2), pin("1234")}, hostFaults{drop: true, offline: terminal.DefaultOfflinePolicy()})
	res := r.sale(t, 1000)
	if res.Condition != terminal.CondInProgress || !strings.Contains(res.Message, "no data key") {
		t.Fatalf("sale = %+v", res)
	}
	items, _ := r.st.List(context.Background())
	if len(items) != 1 || items[0].Kind != store.KindReversal {
		t.Fatalf("queue = %+v", items)
	}
}

func TestRecoverQueuesReversal(t *testing.T) {
	r := newRig(t, nil, hostFaults{})
	ctx := context.Background()
	id, err := r.st.Begin(ctx, store.Intent{Kind: "sale", MTI: "0200", STAN: 77, TerminalID: "TERM0001", AmountMinor: 500, Currency: "EUR", MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.term.Recover(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	rec, _ := r.st.Get(ctx, id)
	items, _ := r.st.List(ctx)
	if rec.Outcome == nil || rec.Outcome.State != store.StateUnknown || len(items) != 1 || items[0].Kind != store.KindReversal || items[0].TxnID != id {
		t.Fatalf("record %+v, queue %+v", rec.Outcome, items)
	}
	// The host never saw it: it answers "no original", which settles the reversal.
	if st := drain(t, r); st.Acked != 1 {
		t.Fatalf("drain = %+v", st)
	}
	if rec, _ := r.st.Get(ctx, id); rec.Outcome.Reversed == nil {
		t.Errorf("not noted reversed: %+v", rec.Outcome)
	}
}
