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
	due, err := s.Due(ctx, time.Now(), 0)
	if err != nil || len(due) != 2 {
		t.Fatalf("Due: %d items, %v", len(due), err)
	}
	marked, err := s.MarkSending(ctx, due, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var results []Result
	for _, it := range marked {
		results = append(results, Result{ID: it.ID, Reached: true, Host: "127.0.0.1:9002", Err: "no answer", Next: time.Now(), Time: time.Now()})
	}
	if err := s.Settle(ctx, results); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, &Options{Sealer: newGCMSealer(t)})
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
