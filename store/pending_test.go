package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// PendingReversals answers from the file and the write-ahead log's unfolded records
// without folding them: a sale asks it before every authorization, and its path must be
// its own two writes (issue 16). It must still count a reversal queued with an outcome
// that is only in the log.
func TestPendingReversalsDoesNotFold(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	defer s.Close()
	id := begin(t, s, 1)
	rev := Item{Kind: KindReversal, STAN: 2, AmountMinor: 1000, Currency: "EUR", MaskedPAN: "476173******0010", Payload: []byte(`{}`)}
	if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Time: time.Now()}, rev); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	before := len(s.pending)
	s.mu.Unlock()
	n, err := s.PendingReversals(ctx)
	if err != nil || n != 1 {
		t.Fatalf("pending reversals with the reversal in the log = %d, %v; want 1", n, err)
	}
	s.mu.Lock()
	after := len(s.pending)
	s.mu.Unlock()
	if before == 0 || after != before {
		t.Errorf("the log held %d records before and %d after: PendingReversals folded it", before, after)
	}
	// Folded (a read folds), the same answer; acknowledged, none.
	items, err := s.List(ctx)
	if err != nil || len(items) != 1 {
		t.Fatalf("queue = %+v, %v", items, err)
	}
	if n, err := s.PendingReversals(ctx); err != nil || n != 1 {
		t.Fatalf("pending reversals once folded = %d, %v; want 1", n, err)
	}
	if _, err := s.MarkSending(ctx, items, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, []Result{{ID: items[0].ID, Acked: true, ResponseCode: "00", Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PendingReversals(ctx); err != nil || n != 0 {
		t.Errorf("pending reversals after the acknowledgement = %d, %v; want 0", n, err)
	}
}

// FinishAndQueue takes the STANs of items that have none in the outcome's own write: after
// the counter, distinct, and kept by the counter across a crash (the log replayed).
func TestFinishAndQueueTakesSTANs(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	id, stan, err := s.BeginWithSTAN(ctx, Intent{Kind: "sale", MTI: "0200", TerminalID: "T1", AmountMinor: 1000, Currency: "EUR", MaskedPAN: "476173******0010", Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	rev := Item{Kind: KindReversal, AmountMinor: 1000, Currency: "EUR", MaskedPAN: "476173******0010", Payload: []byte(`{}`)}
	adv := rev
	adv.Kind = KindAdvice
	if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, rev, adv); err != nil {
		t.Fatal(err)
	}
	s2 := openNoFold(t, crashCopy(t, s)) // the log as a kill leaves it
	defer s2.Close()
	items, err := s2.List(ctx)
	if err != nil || len(items) != 2 {
		t.Fatalf("queue after a crash = %+v, %v", items, err)
	}
	got := map[uint32]bool{items[0].STAN: true, items[1].STAN: true}
	if !got[stan+1] || !got[stan+2] {
		t.Errorf("item STANs %d and %d, want %d and %d after the intent's %d", items[0].STAN, items[1].STAN, stan+1, stan+2, stan)
	}
	if next, err := s2.NextSTAN(ctx); err != nil || next != stan+3 {
		t.Errorf("NextSTAN after the crash = %d, %v; want %d", next, err, stan+3)
	}
	s.Close()
}
