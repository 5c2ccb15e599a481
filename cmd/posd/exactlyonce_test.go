package main

import (
	"fmt"
	"github.com/posd-dev/posd/store"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestExactlyOnce is the black-box exactly-once test of issue 12: the real posd binary,
// a strict acquirer (in this process; it identifies each message by terminal id, STAN and
// field 7 only, so a resend that takes a new field 7 books the sale again) and a scripted
// PIN pad, driven through the till API over posd's unix socket. Each scenario is a subtest
// and checks the host's charges for its own till transactions once posd's queue has
// drained; the last subtest stops posd and checks the whole journal against every charge
// at the host: each charge standing belongs to a sale posd calls completed, no sale is
// charged twice, and each completed sale is charged exactly once.
//
// POSD_XO_ROUNDS repeats the scenarios (default 1, what make test runs; `make
// exactly-once` runs 25) and POSD_XO_KILLS sets the kills of each round's advice scenario
// (default 2).
func TestExactlyOnce(t *testing.T) {
	rounds, kills := envInt("POSD_XO_ROUNDS", 1), envInt("POSD_XO_KILLS", 2)
	r := newXORig(t)
	if !r.start(t) {
		t.Fatalf("posd exited at start:\n%s", tail(r.logs.String()))
	}
	scenarios := []struct {
		name string
		run  func(t *testing.T, r *xoRig, round int)
	}{
		{"duplicate-requests", xoDuplicates},
		{"till-connection-cut", xoCut},
		{"abort", xoAbort},
		{"void-offline", xoVoidOffline},
		{"kill-during-advices", func(t *testing.T, r *xoRig, round int) { xoKillAdvices(t, r, round, kills) }},
	}
	for round := 1; round <= rounds; round++ {
		for _, sc := range scenarios {
			if !t.Run(sc.name, func(t *testing.T) {
				r.reset(t)
				sc.run(t, r, round)
			}) {
				r.dirty = true
			}
		}
	}
	t.Run("final-account", func(t *testing.T) {
		r.reset(t)
		r.waitDrained(t)
		r.stop(t)
		checkExactlyOnce(t, readJournal(t, r.db), r.host.Charges(), r.tid)
	})
	if t.Failed() {
		t.Logf("posd's log (tail):\n%s", tail(r.logs.String()))
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// reset puts the world back to normal between scenarios: the host up and answering at
// once, posd running. After a failed scenario posd is killed and restarted, so that a
// sale it left running does not hold the next scenario's pad (recovery reverses it).
func (r *xoRig) reset(t *testing.T) {
	t.Helper()
	r.setDelay(nil)
	if r.dirty && r.running() {
		r.killPosd()
		r.waitExit(t, "SIGKILL after a failed scenario")
	}
	r.dirty = false
	r.hostUp(t)
	if !r.running() && !r.start(t) {
		t.Fatalf("posd exited at start:\n%s", tail(r.logs.String()))
	}
}

func xoTxn(round int, name string) string { return fmt.Sprintf("R%d-%s", round, name) }

// xoDuplicates: a till that retries. The same PaymentRequest sent again (sequentially and
// concurrently) gets the first answer and never a second sale; the same TransactionID
// under a new ServiceID too; the same key with another amount is refused (NotAllowed,
// naming the amount) and runs nothing.
func xoDuplicates(t *testing.T, r *xoRig, round int) {
	r.pad(t, xoSwipes(12))
	txn, svc := xoTxn(round, "dup"), r.svc()
	first := r.pay(t, svc, txn, "12.34").payment(t)
	wantResult(t, "first payment", first.Response, "Success", "")
	for i := 2; i <= 3; i++ {
		samePayment(t, fmt.Sprintf("repeat %d, same ServiceID", i), first, r.pay(t, svc, txn, "12.34").payment(t))
	}
	samePayment(t, "same TransactionID, new ServiceID", first, r.pay(t, r.svc(), txn, "12.34").payment(t))
	for _, x := range []struct{ what, svc string }{{"same ServiceID", svc}, {"same TransactionID, new ServiceID", r.svc()}} {
		p := r.pay(t, x.svc, txn, "99.99").payment(t)
		wantResult(t, x.what+", another amount", p.Response, "Failure", "NotAllowed")
		if !strings.Contains(p.Response.AdditionalResponse, "RequestedAmount") {
			t.Errorf("%s, another amount: the refusal does not name RequestedAmount: %q", x.what, p.Response.AdditionalResponse)
		}
	}

	// Three copies at once, while the first waits for the card.
	r.pad(t, xoDelayed(700*time.Millisecond, 6))
	ctxn, csvc := xoTxn(round, "dupc"), r.svc()
	replies := make([]xoReply, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 50 * time.Millisecond) // the first is running when the others come
			replies[i], errs[i] = r.try(r.client, r.paymentBody(csvc, ctxn, "5.67"))
		}()
	}
	wg.Wait()
	var cfirst xoPayment
	for i, x := range replies {
		if errs[i] != nil {
			t.Fatalf("concurrent copy %d: %v", i, errs[i])
		}
		p := x.payment(t)
		if i == 0 {
			cfirst = p
			wantResult(t, "concurrent copy 0", p.Response, "Success", "")
			continue
		}
		samePayment(t, fmt.Sprintf("concurrent copy %d", i), cfirst, p)
	}

	r.wantCharged(t, map[string]int{txn: 1, ctxn: 1})
	l := r.ledger(t)
	for _, x := range []string{txn, ctxn} {
		if n := len(l.records(x)); n != 1 {
			t.Errorf("till transaction %s: %d journal records, want 1 (one sale)", x, n)
		}
	}
}

// xoCut: the till gives up before the answer (a client timeout; a connection closed). The
// sale ends normally; TransactionStatus says InProgress meanwhile, then returns the stored
// answer (by ServiceID and by TransactionID); a retry gets the same answer; the customer is
// charged once. An unknown reference is NotFound, a malformed one HTTP 400.
func xoCut(t *testing.T, r *xoRig, round int) {
	r.pad(t, xoDelayed(1500*time.Millisecond, 1))
	txn, svc := xoTxn(round, "cut"), r.svc()
	short := unixClient(r.sock)
	short.Timeout = 300 * time.Millisecond
	if x, err := r.try(short, r.paymentBody(svc, txn, "7.00")); err == nil {
		t.Fatalf("the till's request did not time out: HTTP %d %s", x.HTTP, x.Body)
	}
	res, _, _ := r.status(t, svc, false)
	wantResult(t, "TransactionStatus while the card is awaited", res, "Failure", "InProgress")
	done := r.waitDone(t, svc, false)
	wantResult(t, "the cut-off payment's stored answer", done.Response, "Success", "")
	samePayment(t, "TransactionStatus by TransactionID", done, r.waitDone(t, txn, true))
	samePayment(t, "a retry of the cut-off payment", done, r.pay(t, svc, txn, "7.00").payment(t))

	r.pad(t, xoDelayed(1500*time.Millisecond, 1))
	txn2, svc2 := xoTxn(round, "cut2"), r.svc()
	r.rawPost(t, r.paymentBody(svc2, txn2, "7.01"), 200*time.Millisecond)
	done2 := r.waitDone(t, txn2, true)
	wantResult(t, "the hung-up payment's stored answer", done2.Response, "Success", "")

	res, _, found := r.status(t, "NOSUCH", false)
	wantResult(t, "TransactionStatus of an unknown ServiceID", res, "Failure", "NotFound")
	if found {
		t.Error("TransactionStatus of an unknown ServiceID carries an answer")
	}
	bad := r.post(t, strings.Replace(r.statusBody(r.svc(), svc, false), `"MessageReference":{`, `"MessageReference":{"ServiceID":7,`, 1))
	if bad.HTTP != http.StatusBadRequest || !strings.Contains(bad.Body, "MessageReference") {
		t.Errorf("a malformed MessageReference: HTTP %d %s, want 400 naming MessageReference", bad.HTTP, bad.Body)
	}
	r.wantCharged(t, map[string]int{txn: 1, txn2: 1})
	// The journal says that neither till heard its answer.
	var recs []store.Record
	r.getJSON(t, "/v1/journal", &recs)
	for _, ref := range []string{txn, txn2} {
		found := false
		for _, rec := range recs {
			if rec.Intent.SaleTransactionID == ref {
				found = true
				if rec.Outcome == nil || rec.Outcome.Undelivered == nil {
					t.Errorf("journal record of %s does not record that the till did not hear its answer: %+v", ref, rec.Outcome)
				}
			}
		}
		if !found {
			t.Errorf("no journal record of %s", ref)
		}
	}
}

// xoAbort: an Abort before the card is presented ends the payment Failure/Aborted with
// nothing sent; an Abort while the authorization is at the host takes the outcome as it
// comes and reverses the approval (approved, then reversed: nothing charged net). An
// Abort naming nothing running is NotFound; one naming a finished payment NotAllowed.
func xoAbort(t *testing.T, r *xoRig, round int) {
	type result struct {
		x   xoReply
		err error
	}
	payAsync := func(svc, txn, amount string) chan result {
		ch := make(chan result, 1)
		go func() {
			x, err := r.try(r.client, r.paymentBody(svc, txn, amount))
			ch <- result{x, err}
		}()
		return ch
	}
	abort := func(ref string) xoResult {
		t.Helper()
		x := r.post(t, r.abortBody(r.svc(), ref))
		ar := x.Env.SaleToPOIResponse.AbortResponse
		if x.HTTP != http.StatusOK || ar == nil {
			t.Fatalf("Abort of %s: HTTP %d %s, want 200 and an AbortResponse", ref, x.HTTP, x.Body)
		}
		return ar.Response
	}
	paid := func(ch chan result) xoPayment {
		t.Helper()
		select {
		case res := <-ch:
			if res.err != nil {
				t.Fatalf("the aborted payment: %v", res.err)
			}
			return res.x.payment(t)
		case <-time.After(20 * time.Second):
			t.Fatal("the aborted payment never answered")
		}
		return xoPayment{}
	}

	// Before the card: the pad keeps the customer waiting.
	r.pad(t, xoDelayed(3*time.Second, 1))
	txn, svc := xoTxn(round, "abort-card"), r.svc()
	from := r.mark()
	ch := payAsync(svc, txn, "8.00")
	// Wait until it runs (TransactionStatus says so; without it, a second at most).
	for deadline := time.Now().Add(time.Second); !r.inProgress(svc) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	wantResult(t, "Abort before the card", abort(svc), "Success", "")
	wantResult(t, "the payment aborted before the card", paid(ch).Response, "Failure", "Aborted")
	r.mu.Lock()
	for _, m := range r.arrived[from:] {
		if m.Amount == 800 {
			t.Errorf("the payment aborted before the card reached the host: %+v", m)
		}
	}
	r.mu.Unlock()

	// At the host: the host decides, then keeps the answer 1.5s.
	r.pad(t, xoSwipes(1))
	txn2, svc2 := xoTxn(round, "abort-host"), r.svc()
	r.setDelay(func(m xoMsg) time.Duration {
		if m.Amount == 901 && (m.MTI == "0200" || m.MTI == "0100") {
			return 1500 * time.Millisecond
		}
		return 0
	})
	from = r.mark()
	ch = payAsync(svc2, txn2, "9.01")
	r.waitArrival(t, from, "the authorization of 9.01", func(m xoMsg) bool { return m.Amount == 901 && (m.MTI == "0200" || m.MTI == "0100") })
	wantResult(t, "Abort while at the host", abort(svc2), "Success", "")
	wantResult(t, "the payment aborted at the host", paid(ch).Response, "Failure", "Aborted")
	r.setDelay(nil)

	wantResult(t, "Abort of nothing running", abort("NOSUCH"), "Failure", "NotFound")
	wantResult(t, "Abort of a finished payment", abort(svc2), "Failure", "NotAllowed")

	r.wantCharged(t, map[string]int{txn: 0, txn2: 0})
	l := r.ledger(t)
	approvedThenReversed := false
	for _, c := range l.chargesOf(r.tid, txn2) {
		approvedThenReversed = approvedThenReversed || (c.Approved && c.Reversed)
	}
	if !approvedThenReversed {
		t.Errorf("the payment aborted at the host: no approval reversed at the host: %+v", l.chargesOf(r.tid, txn2))
	}
}

// xoVoidOffline: sales approved offline (the host unreachable) are voided before their
// advice is sent, while it is at the host, and after the host acknowledged it; a fourth is
// kept. In the end none of the voided sales is charged and the kept one exactly once.
func xoVoidOffline(t *testing.T, r *xoRig, round int) {
	r.pad(t, xoSwipes(4))
	r.hostDown()
	sales := []struct{ name, amount string }{{"void-before", "11.11"}, {"void-during", "22.22"}, {"void-after", "33.33"}, {"kept", "44.44"}}
	poi := map[string]string{}
	for _, s := range sales {
		txn := xoTxn(round, s.name)
		p := r.pay(t, r.svc(), txn, s.amount).payment(t)
		wantResult(t, s.name+" payment", p.Response, "Success", "")
		if !strings.Contains(p.Response.AdditionalResponse, "offline") {
			t.Fatalf("%s: not approved offline (the scenario needs offline approvals): %v", s.name, p.Response)
		}
		poi[s.name] = p.POIData.POITransactionID.TransactionID
	}
	void := func(name string) {
		t.Helper()
		x := r.post(t, r.voidBody(r.svc(), poi[name]))
		rv := x.Env.SaleToPOIResponse.ReversalResponse
		if x.HTTP != http.StatusOK || rv == nil {
			t.Fatalf("void %s: HTTP %d %s", name, x.HTTP, x.Body)
		}
		wantResult(t, "void "+name, rv.Response, "Success", "")
	}
	void("void-before")

	// The host comes back and keeps the answer to void-during's advice a second.
	r.setDelay(func(m xoMsg) time.Duration {
		if isAdvice(m) && m.Amount == 2222 {
			return time.Second
		}
		return 0
	})
	from := r.mark()
	r.hostUp(t)
	r.waitArrival(t, from, "the advice of 22.22", func(m xoMsg) bool { return isAdvice(m) && m.Amount == 2222 })
	void("void-during")

	// void-after: once the journal says the host acknowledged its advice.
	after := xoTxn(round, "void-after")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		recs := r.ledger(t).records(after)
		if len(recs) == 1 && recs[0].Outcome != nil && recs[0].Outcome.Advised != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the advice of void-after was never acknowledged: %+v", recs)
		}
	}
	void("void-after")
	r.setDelay(nil)

	want := map[string]int{}
	for _, s := range sales {
		want[xoTxn(round, s.name)] = 0
	}
	want[xoTxn(round, "kept")] = 1
	r.wantCharged(t, want)
}

// xoKillAdvices: posd is killed while it sends advices of offline approvals (after the
// sends, before it records their answers; and by the host the instant an advice arrives),
// restarted, and left to drain. Each offline sale is booked exactly once: a resend must
// be a repeat of the same message (STAN and field 7), never a new one. After every kill
// the journal is checked as TestCrashKill does.
func xoKillAdvices(t *testing.T, r *xoRig, round, kills int) {
	var txns []string
	offline := func(n int) {
		t.Helper()
		r.pad(t, xoSwipes(n))
		r.hostDown()
		for i := 0; i < n; i++ {
			txn := xoTxn(round, fmt.Sprintf("adv%d", len(txns)+1))
			p := r.pay(t, r.svc(), txn, fmt.Sprintf("6.%02d", len(txns)+1)).payment(t)
			wantResult(t, txn, p.Response, "Success", "")
			if !strings.Contains(p.Response.AdditionalResponse, "offline") {
				t.Fatalf("%s: not approved offline: %v", txn, p.Response)
			}
			txns = append(txns, txn)
		}
	}
	for k := 0; k < kills; k++ {
		offline(3)
		r.killPosd()
		r.waitExit(t, "SIGKILL")
		r.hostUp(t)
		if k%2 == 0 {
			// posd drains at start, and dies after the sends, before the answers are recorded.
			if r.start(t, "POSD_FAILPOINT=mid-drain") {
				r.waitExit(t, "failpoint mid-drain")
			}
		} else {
			// The host kills posd the instant the first advice arrives (decided and booked).
			var once sync.Once
			r.setDelay(func(m xoMsg) time.Duration {
				if isAdvice(m) {
					once.Do(r.killPosd)
				}
				return 0
			})
			if r.start(t) {
				r.waitExit(t, "killed by the host at an advice")
			}
			r.setDelay(nil)
		}
		checkAfterKill(t, k, r.db, r.host)
		if !r.start(t) {
			t.Fatalf("posd exited at start:\n%s", tail(r.logs.String()))
		}
	}
	want := map[string]int{}
	for _, txn := range txns {
		want[txn] = 1
	}
	r.wantCharged(t, want)
}
