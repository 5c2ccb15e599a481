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
