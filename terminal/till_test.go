package terminal_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/padsim"
)

func tillReq(service, ref string, minor int64) terminal.SaleRequest {
	return terminal.SaleRequest{SaleID: "TILL", ServiceID: service, SaleTransactionID: ref, Amount: money.Amount{Minor: minor, Currency: eur}}
}

// financial counts the 0200s the host received.
func (r *rig) financial() int {
	r.sent.mu.Lock()
	defer r.sent.mu.Unlock()
	n := 0
	for _, m := range r.sent.msgs {
		if mti, _ := m.GetMTI(); mti == iso8583.MTIFinancialRequest {
			n++
		}
	}
	return n
}

// A till that repeats a request (same SaleID and ServiceID, or same SaleID and
// SaleTransactionID) gets the first answer; the card is read once and the host charged
// once. The pad's script holds one card only: a second sale would time out at the pad.
func TestRepeatedRequestGetsTheFirstAnswer(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{})
	ctx := context.Background()
	first, err := r.term.Sale(ctx, tillReq("S1", "R-1", 1250))
	if err != nil || !first.Approved {
		t.Fatalf("first: %+v, %v", first, err)
	}
	for _, again := range []terminal.SaleRequest{tillReq("S1", "R-1", 1250), tillReq("S2", "R-1", 1250)} {
		res, err := r.term.Sale(ctx, again)
		if err != nil {
			t.Fatalf("repeat %+v: %v", again, err)
		}
		if !reflect.DeepEqual(res, first) {
			t.Errorf("repeat %s/%s answered\n%+v\nwant the first answer\n%+v", again.ServiceID, again.SaleTransactionID, res, first)
		}
	}
	if n := r.financial(); n != 1 {
		t.Errorf("%d authorizations sent, want 1", n)
	}
	if n := charged(r.host.Charges()); n != 1 {
		t.Errorf("%d charges at the host, want 1", n)
	}
	// The same keys with other content are refused, naming what differs.
	for _, c := range []struct {
		req        terminal.SaleRequest
		key, field string
	}{
		{tillReq("S1", "R-1", 999), "ServiceID", "amount"},
		{tillReq("S1", "R-9", 1250), "ServiceID", "SaleTransactionID"},
		{tillReq("S3", "R-1", 1), "SaleTransactionID", "amount"},
	} {
		_, err := r.term.Sale(ctx, c.req)
		var ce *terminal.ConflictError
		if !errors.As(err, &ce) || ce.Key != c.key || ce.Field != c.field {
			t.Errorf("Sale(%+v) = %v, want a conflict on %s naming %s", c.req, err, c.key, c.field)
		}
	}
	if n := r.financial(); n != 1 {
		t.Errorf("%d authorizations sent after the conflicts, want 1", n)
	}
}

// Repeats that arrive while the first request still runs wait for it and get its answer:
// never a second sale, never Busy.
func TestConcurrentRepeatsWaitForTheFirst(t *testing.T) {
	r := newRig(t, []padsim.Event{{Delay: 300 * time.Millisecond}, swipe(goodT1, goodT2), pin("1234")}, hostFaults{})
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]terminal.SaleResult, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			results[i], errs[i] = r.term.Sale(ctx, tillReq("S1", "R-1", 1250))
		}()
	}
	time.Sleep(150 * time.Millisecond)
	st, err := r.term.TransactionStatus(ctx, store.ServiceKey("TILL", "S1"))
	if err != nil || !st.Running {
		t.Errorf("status while running = %+v, %v; want Running", st, err)
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || !reflect.DeepEqual(results[i], results[0]) || !results[i].Approved {
			t.Errorf("request %d: %+v, %v; want the first approval", i, results[i], errs[i])
		}
	}
	if n := charged(r.host.Charges()); n != 1 {
		t.Errorf("%d charges at the host, want 1", n)
	}
}

// TransactionStatus: the answer as first given, found by either key, also after posd
// restarts (from the journal); NotFound for a request never seen.
func TestTransactionStatusAndRestart(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{})
	ctx := context.Background()
	first, err := r.term.Sale(ctx, tillReq("S1", "R-1", 1250))
	if err != nil || !first.Approved {
		t.Fatalf("first: %+v, %v", first, err)
	}
	for _, k := range []store.TillKey{store.ServiceKey("TILL", "S1"), store.SaleTxnKey("TILL", "R-1")} {
		st, err := r.term.TransactionStatus(ctx, k)
		if err != nil || st.Running || !reflect.DeepEqual(st.Result, first) || st.Request.ServiceID != "S1" {
			t.Errorf("status %q = %+v, %v; want the first answer", k, st, err)
		}
	}
	if _, err := r.term.TransactionStatus(ctx, store.ServiceKey("TILL", "S9")); !errors.Is(err, terminal.ErrUnknownTransaction) {
		t.Errorf("status of an unknown request: %v, want ErrUnknownTransaction", err)
	}

	// A new Terminal on the same store: what the first process knew in memory is gone;
	// the journal still answers, with the same answer.
	t2, err := terminal.New(r.pp, r.pp, r.pins, r.sent, r.st, r.topts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := t2.Sale(ctx, tillReq("S1", "R-1", 1250))
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Errorf("repeat after a restart = %+v, %v\nwant %+v", again, err, first)
	}
	st, err := t2.TransactionStatus(ctx, store.SaleTxnKey("TILL", "R-1"))
	if err != nil || !reflect.DeepEqual(st.Result, first) {
		t.Errorf("status after a restart = %+v, %v", st, err)
	}
	if n := r.financial(); n != 1 {
		t.Errorf("%d authorizations sent, want 1", n)
	}
}

// An abort before anything went online cancels the pad: the sale ends Aborted, nothing is
// journaled or sent.
func TestAbortBeforeOnline(t *testing.T) {
	r := newRig(t, []padsim.Event{{Delay: 2 * time.Second}, swipe(goodT1, goodT2), pin("1234")}, hostFaults{})
	ctx := context.Background()
	done := make(chan terminal.SaleResult, 1)
	go func() {
		res, err := r.term.Sale(ctx, tillReq("S1", "R-1", 1250))
		if err != nil {
			t.Errorf("Sale: %v", err)
		}
		done <- res
	}()
	time.Sleep(200 * time.Millisecond)
	ab, err := r.term.Abort(ctx, store.ServiceKey("TILL", "S1"))
	if err != nil || ab.Online {
		t.Fatalf("Abort = %+v, %v; want a stop before going online", ab, err)
	}
	var res terminal.SaleResult
	select {
	case res = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the aborted sale did not end")
	}
	if res.Approved || res.Condition != terminal.CondAborted || res.TxnID != 0 {
		t.Errorf("aborted sale = %+v", res)
	}
	if n := r.financial(); n != 0 || len(r.records(t)) != 0 {
		t.Errorf("%d authorizations sent, journal %+v: want nothing", n, r.records(t))
	}
	if _, err := r.term.Abort(ctx, store.ServiceKey("TILL", "S1")); !errors.Is(err, terminal.ErrTooLate) {
		t.Errorf("second abort: %v, want ErrTooLate", err)
	}
	if _, err := r.term.Abort(ctx, store.ServiceKey("TILL", "S7")); !errors.Is(err, terminal.ErrUnknownTransaction) {
		t.Errorf("abort of an unknown request: %v, want ErrUnknownTransaction", err)
	}
}

// An abort while the request is at the host takes the outcome as it comes: the host's
// approval is recorded, voided and reversed in the same write, and the till is told
// Aborted. After the drain nothing stands at the host.
func TestAbortWhileOnline(t *testing.T) {
	atHost := make(chan struct{}, 1)
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{
		delay: func(m *iso8583.Message) time.Duration {
			if mti, _ := m.GetMTI(); mti == iso8583.MTIFinancialRequest {
				atHost <- struct{}{}
				return 300 * time.Millisecond
			}
			return 0
		},
	})
	ctx := context.Background()
	done := make(chan terminal.SaleResult, 1)
	go func() {
		res, _ := r.term.Sale(ctx, tillReq("S1", "R-1", 1250))
		done <- res
	}()
	select {
	case <-atHost:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the host")
	}
	ab, err := r.term.Abort(ctx, store.ServiceKey("TILL", "S1"))
	if err != nil || !ab.Online {
		t.Fatalf("Abort = %+v, %v; want the online case", ab, err)
	}
	res := <-done
	if res.Approved || res.Condition != terminal.CondAborted || !strings.Contains(res.Message, "reversed") {
		t.Errorf("sale aborted online = %+v", res)
	}
	recs := r.records(t)
	if len(recs) != 1 || recs[0].Outcome.Voided == nil {
		t.Fatalf("journal = %+v: want the approval voided", recs)
	}
	if st := drain(t, r); st.Acked != 1 {
		t.Errorf("drain = %+v, want the reversal acknowledged", st)
	}
	if n := charged(r.host.Charges()); n != 0 {
		t.Errorf("%d charges stand at the host after the abort: %+v", n, r.host.Charges())
	}
	// The answer stays what the till was told.
	st, err := r.term.TransactionStatus(ctx, store.ServiceKey("TILL", "S1"))
	if err != nil || !reflect.DeepEqual(st.Result, res) {
		t.Errorf("status = %+v, %v\nwant %+v", st.Result, err, res)
	}
}

// A partial approval (10) completes for the amount approved; the till hears Partial's
// amounts, the receipt shows what is left to pay.
func TestPartialApprovalCompletes(t *testing.T) {
	const pan = "4761739001010010"
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{
		cards: partialCard(pan, 700),
	})
	res := r.sale(t, 1250)
	if !res.Approved || res.AuthorizedMinor != 700 || res.ResponseCode != iso8583.RCPartialApproval {
		t.Fatalf("partial approval = %+v", res)
	}
	if !strings.Contains(res.Message, "5.50 EUR remains") || !strings.Contains(strings.Join(res.Receipt.Customer, "\n"), "REMAINING") {
		t.Errorf("message %q / receipt %q should name the remainder", res.Message, res.Receipt.Customer)
	}
	if n := charged(r.host.Charges()); n != 1 {
		t.Errorf("%d charges at the host, want the partial one", n)
	}
	if items, _ := r.st.List(context.Background()); len(items) != 0 {
		t.Errorf("queue = %+v: a completed partial approval needs no reversal", items)
	}
}

// A response code posd does not know may be an approval: the outcome is unknown and the
// sale reversed, never booked as a plain decline.
func TestUnknownResponseCodeIsReversed(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{
		override: func(m *iso8583.Message) string { return "Z9" },
	})
	res := r.sale(t, 1250)
	if res.Approved || res.Condition != terminal.CondInProgress {
		t.Errorf("sale answered Z9 = %+v, want outcome unknown", res)
	}
	recs := r.records(t)
	items, _ := r.st.List(context.Background())
	if len(recs) != 1 || recs[0].Outcome.State != store.StateUnknown || len(items) != 1 || items[0].Kind != store.KindReversal {
		t.Errorf("journal %+v, queue %+v: want outcome-unknown with its reversal", recs, items)
	}
}

// Reversals go first: while one is pending and the host does not acknowledge it, no
// authorization goes out; the sale ends UnreachableHost with nothing charged.
func TestPendingReversalKeepsTheSaleOffline(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")}, hostFaults{
		dropFn: func(m *iso8583.Message) bool {
			mti, _ := m.GetMTI()
			return mti == iso8583.MTIFinancialRequest || strings.HasPrefix(mti, "04")
		},
		opts: func(o *terminal.Options) { o.ReversalWait = 500 * time.Millisecond },
	})
	first := r.sale(t, 1250) // dropped: outcome unknown, reversal queued
	if first.Approved || first.Condition != terminal.CondInProgress {
		t.Fatalf("first sale = %+v", first)
	}
	second := r.sale(t, 500)
	if second.Approved || second.Condition != terminal.CondUnreachableHost || !strings.Contains(second.Message, "nothing was charged") {
		t.Errorf("second sale = %+v, want UnreachableHost", second)
	}
	if n := r.financial(); n != 1 {
		t.Errorf("%d authorizations sent, want only the first", n)
	}
}

func partialCard(pan string, balance int64) []hostsim.Card {
	return []hostsim.Card{{PAN: pan, PIN: "1234", BalanceMinor: balance, Expiry: "3012", PartialApproval: true}}
}

// A completed partial approval voided later is reversed for the amount the host holds.
func TestPartialApprovalVoided(t *testing.T) {
	const pan = "4761739001010010"
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{cards: partialCard(pan, 700)})
	res := r.sale(t, 1250)
	if !res.Approved || res.AuthorizedMinor != 700 {
		t.Fatalf("partial approval = %+v", res)
	}
	if _, err := r.term.Void(context.Background(), res.POITransactionID, "test"); err != nil {
		t.Fatal(err)
	}
	if st := drain(t, r); st.Acked != 1 {
		t.Fatalf("drain = %+v", st)
	}
	if n := charged(r.host.Charges()); n != 0 {
		t.Errorf("%d charges stand after the void: %+v", n, r.host.Charges())
	}
	if got, _ := r.host.Balance(pan); got != 700 {
		t.Errorf("balance %d after the void, want 700 back", got)
	}
}
