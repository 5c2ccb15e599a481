package store

import (
	"context"
	"testing"
	"time"
)

// TestItemHost: the host an item must go to survives queueing (through the write-ahead
// log and after folding) and a reopen; a reached attempt records its host on an item that
// had none, and never changes one that had.
func TestItemHost(t *testing.T) {
	ctx := context.Background()
	s, path := openQ(t, nil)
	withHost := item(KindReversal, 101)
	withHost.Host = "127.0.0.1:9001"
	if _, err := s.FinishAndQueue(ctx, begin(t, s, 1), Outcome{State: StateUnknown, Time: time.Now()}, withHost); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishAndQueue(ctx, begin(t, s, 2), Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 102)); err != nil {
		t.Fatal(err)
	}
	marked := markDue(t, s, 2)
	var results []Result
	for _, it := range marked {
		results = append(results, Result{ID: it.ID, Reached: true, Host: "127.0.0.1:9002", Err: "no answer", Next: time.Now(), Time: time.Now()})
	}
	if err := s.Settle(ctx, results); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(path, &Options{Sealer: newGCMSealer(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[Kind]string{}
	for _, it := range items {
		got[it.Kind] = it.Host
	}
	if got[KindReversal] != "127.0.0.1:9001" || got[KindAdvice] != "127.0.0.1:9002" {
		t.Errorf("hosts after a reached attempt and a reopen: %v, want the reversal's own and the advice's first send's", got)
	}
}

// TestVoidReversalHosts: the host a request was for is journaled with its intent and
// survives a reopen; an acknowledged advice's host is noted with its acknowledgement; a
// void sends the original's reversal to the caller's host and an advice's reversal where
// the advice went (queued, or acknowledged), never where the original request went.
func TestVoidReversalHosts(t *testing.T) {
	const reqHost, advHost = "127.0.0.1:9001", "127.0.0.1:9002"
	ctx := context.Background()
	s, path := openQ(t, nil)
	rev := func() *Item { it := item(KindReversal, 0); it.Sensitive, it.Host = nil, reqHost; return &it }
	beginAt := func(stan uint32) TxnID {
		id, err := s.Begin(ctx, Intent{Kind: "sale", MTI: "0200", STAN: stan, TerminalID: "T1", AmountMinor: 1000, Currency: "EUR", MaskedPAN: "476173******0010", Time: time.Now(), Host: reqHost})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	send := func(kind Kind, acked bool) {
		t.Helper()
		marked := markDue(t, s, 1, kind)
		r := Result{ID: marked[0].ID, Host: advHost, Time: time.Now(), Acked: acked, ResponseCode: "00"}
		if !acked {
			r.Reached, r.Err, r.ResponseCode = true, "no answer", ""
		}
		if err := s.Settle(ctx, []Result{r}); err != nil {
			t.Fatal(err)
		}
	}
	reversalHosts := func(id TxnID) (orig, ofAdvice []string) {
		t.Helper()
		items, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			switch {
			case it.TxnID != id || it.Kind != KindReversal:
			case it.Reverses == nil:
				orig = append(orig, it.Host)
			default:
				ofAdvice = append(ofAdvice, it.Host)
			}
		}
		return orig, ofAdvice
	}

	// An offline approval whose advice the backup acknowledged.
	offline := beginAt(1)
	if _, err := s.FinishAndQueue(ctx, offline, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 2)); err != nil {
		t.Fatal(err)
	}
	send(KindAdvice, true)
	s.Close()
	var err error
	if s, err = Open(path, &Options{Sealer: newGCMSealer(t)}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, err := s.Get(ctx, offline)
	if err != nil || rec.Intent.Host != reqHost || rec.Outcome.Advised == nil || rec.Outcome.Advised.Host != advHost {
		t.Fatalf("after a reopen: intent host %q, advised %+v, %v; want %s and %s", rec.Intent.Host, rec.Outcome.Advised, err, reqHost, advHost)
	}
	if _, err := s.Void(ctx, offline, "till", rev()); err != nil {
		t.Fatal(err)
	}
	if orig, adv := reversalHosts(offline); len(orig) != 0 || len(adv) != 1 || adv[0] != advHost {
		t.Errorf("void of an acknowledged advice: reversal hosts %v (original) %v (advice), want none and [%s]", orig, adv, advHost)
	}

	// Dual message: the completion reached the backup, unanswered, and is still queued.
	dual := beginAt(3)
	if _, err := s.FinishAndQueue(ctx, dual, Outcome{State: StateApproved, ResponseCode: "00", Time: time.Now()}, item(KindAdvice, 4)); err != nil {
		t.Fatal(err)
	}
	send(KindAdvice, false)
	if _, err := s.Void(ctx, dual, "till", rev()); err != nil {
		t.Fatal(err)
	}
	if orig, adv := reversalHosts(dual); len(orig) != 1 || orig[0] != reqHost || len(adv) != 1 || adv[0] != advHost {
		t.Errorf("void of a completion on its way: reversal hosts %v (original) %v (advice), want [%s] and [%s]", orig, adv, reqHost, advHost)
	}
}
