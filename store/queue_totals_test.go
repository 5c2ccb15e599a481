package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// countedTotals is what the queue sums to, counted item by item (List), as QueueTotals did
// before the totals were kept.
func countedTotals(t *testing.T, s *Store) Totals {
	t.Helper()
	items, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var want Totals
	for _, it := range items {
		if it.State == QueueParked {
			want.Parked++
		}
		if it.Kind == KindReversal {
			want.Reversals++
			continue
		}
		want.Advices++
		want.AdviceAmountMinor += it.AmountMinor
		if want.OldestAdvice.IsZero() || it.Created.Before(want.OldestAdvice) {
			want.OldestAdvice = it.Created
		}
	}
	return want
}

// The kept queue totals follow every change to the queue (queued with an outcome and only
// in the log, folded, parked, unparked, acknowledged, retried, deleted, withdrawn by a
// void) and survive a reopen; QueueTotals does not fold the log.
func TestQueueTotalsKept(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posd.db")
	s := openNoFold(t, path)
	base := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	var n int
	queue := func(kind Kind, amount int64, state State) TxnID {
		n++
		id := begin(t, s, uint32(n))
		it := Item{Kind: kind, AmountMinor: amount, Currency: "EUR", MaskedPAN: "476173******0010", Payload: []byte(`{}`), Created: base.Add(time.Duration(n) * time.Minute)}
		if _, err := s.FinishAndQueue(ctx, id, Outcome{State: state, Time: base}, it); err != nil {
			t.Fatal(err)
		}
		return id
	}
	check := func(step string) {
		t.Helper()
		s.mu.Lock()
		before := len(s.pending)
		s.mu.Unlock()
		got, err := s.QueueTotals(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		s.mu.Lock()
		after := len(s.pending)
		s.mu.Unlock()
		if after != before {
			t.Errorf("%s: QueueTotals folded the log (%d records before, %d after)", step, before, after)
		}
		if want := countedTotals(t, s); got != want {
			t.Errorf("%s: QueueTotals = %+v, the queue sums to %+v", step, got, want)
		}
		// The file's own record, after the fold List made, is the count of its queue.
		err = s.db.View(func(tx *bolt.Tx) error {
			kept, ok := readTotals(tx)
			counted, err := countQueue(tx)
			if !ok || err != nil || kept != counted {
				t.Errorf("%s: kept totals %+v (%v), counted %+v (%v)", step, kept, ok, counted, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	queue(KindReversal, 500, StateUnknown)
	queue(KindAdvice, 1200, StateApprovedOffline)
	voidable := queue(KindAdvice, 700, StateApprovedOffline)
	queue(KindAdvice, 300, StateApprovedOffline)
	check("queued, in the log")
	items, err := s.List(ctx)
	if err != nil || len(items) != 4 {
		t.Fatalf("queue = %+v, %v", items, err)
	}
	rev, adv1, adv3 := items[0], items[1], items[3]
	if err := s.Park(ctx, adv1.ID, "alice", "ask the acquirer"); err != nil {
		t.Fatal(err)
	}
	check("parked")
	if err := s.Unpark(ctx, adv1.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	check("unparked")
	if _, err := s.MarkSending(ctx, []Item{rev, adv3}, base); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, []Result{{ID: rev.ID, Acked: true, ResponseCode: "00", Time: base}, {ID: adv3.ID, Reached: true, Err: "timeout", Park: true}}); err != nil {
		t.Fatal(err)
	}
	check("acknowledged and parked by posd")
	if err := s.Delete(ctx, adv3.ID, "alice", "settled by phone"); err != nil {
		t.Fatal(err)
	}
	check("deleted")
	if _, err := s.Void(ctx, voidable, "bob", nil); err != nil {
		t.Fatal(err)
	}
	check("withdrawn by a void")
	want := countedTotals(t, s)
	if want.Advices != 1 || want.Reversals != 0 || want.AdviceAmountMinor != 1200 || want.Parked != 0 {
		t.Errorf("the queue sums to %+v, want the one advice of 1200", want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openNoFold(t, path)
	defer s.Close()
	if got, err := s.QueueTotals(ctx); err != nil || got != want {
		t.Errorf("reopened: QueueTotals = %+v, %v; want %+v", got, err, want)
	}
}

// A file without kept totals (an older release's) gets them at Open, counted once.
func TestQueueTotalsCountedAtOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posd.db")
	s := openNoFold(t, path)
	id := begin(t, s, 1)
	adv := Item{Kind: KindAdvice, AmountMinor: 900, Currency: "EUR", MaskedPAN: "476173******0010", Payload: []byte(`{}`)}
	if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, adv); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCounters).Delete(keyQueueTotals) })
	db.Close()
	s = openNoFold(t, path)
	defer s.Close()
	s.db.View(func(tx *bolt.Tx) error {
		if kept, ok := readTotals(tx); !ok || kept.Advices != 1 || kept.AdviceAmountMinor != 900 {
			t.Errorf("kept totals after Open = %+v, %v; want 1 advice of 900", kept, ok)
		}
		return nil
	})
}
