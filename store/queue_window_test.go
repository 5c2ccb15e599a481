package store

import (
	"context"
	"testing"
	"time"
)

// A window reads each item once (Due) and takes it from there in MarkSending and Settle,
// but only while the file holds what it read: an item changed in between (here by an
// earlier send's settlement) is read again, and its new state is what is marked and
// settled, never the stale copy.
func TestWindowTakesNoStaleItem(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	id := begin(t, s, 1)
	if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 9)); err != nil {
		t.Fatal(err)
	}
	stale, err := s.Due(ctx, time.Now(), 0)
	if err != nil || len(stale) != 1 {
		t.Fatalf("due: %+v %v", stale, err)
	}
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m1, err := s.MarkSending(ctx, stale, first)
	if err != nil || len(m1) != 1 {
		t.Fatalf("mark: %+v %v", m1, err)
	}
	// The send may have reached host h1: one attempt, the host recorded.
	r := m1[0].Result(time.Now())
	r.Reached, r.Err, r.Host = true, "timeout", "h1:1"
	if err := s.Settle(ctx, []Result{r}); err != nil {
		t.Fatal(err)
	}
	// Marked again from the copy Due read before all that.
	m2, err := s.MarkSending(ctx, stale, first.Add(time.Hour))
	if err != nil || len(m2) != 1 {
		t.Fatalf("second mark: %+v %v", m2, err)
	}
	if got := m2[0]; got.Attempts != 1 || got.Host != "h1:1" || !got.FirstSent.Equal(first) || got.LastError != "timeout" {
		t.Errorf("marked from a stale copy: attempts %d, host %q, first sent %v, last error %q; want 1, h1:1, %v, timeout",
			got.Attempts, got.Host, got.FirstSent, got.LastError, first)
	}
	// A result of the first mark settles the item as the file holds it now: it is reached
	// again, so two attempts, the host kept.
	r.Err = "timeout again"
	if err := s.Settle(ctx, []Result{r}); err != nil {
		t.Fatal(err)
	}
	items, err := s.List(ctx)
	if err != nil || len(items) != 1 {
		t.Fatalf("list: %+v %v", items, err)
	}
	if it := items[0]; it.Attempts != 2 || it.Host != "h1:1" || it.Sending || it.LastError != "timeout again" {
		t.Errorf("after a settle from a stale result: %+v", it)
	}
	if rep, err := s.VerifyAudit(ctx); err != nil || !rep.OK() {
		t.Errorf("audit: %+v %v", rep.Broken, err)
	}
}

// Settle notes every acknowledgement of a window on its journal record, also when one
// record has two messages in the window, and the queue totals follow.
func TestSettleWindowNotesEachRecord(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	var txns []TxnID
	for i := uint32(1); i <= 3; i++ {
		id := begin(t, s, i)
		txns = append(txns, id)
		if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 10+i)); err != nil {
			t.Fatal(err)
		}
	}
	rev := item(KindReversal, 20)
	rev.TxnID, rev.Sensitive = txns[1], nil
	if _, err := s.Enqueue(ctx, rev); err != nil {
		t.Fatal(err)
	}
	marked := markDue(t, s, 4)
	var results []Result
	for _, it := range marked {
		r := it.Result(time.Now())
		r.Acked, r.ResponseCode = true, "00"
		if it.TxnID == txns[2] {
			r.Acked, r.Reached, r.Err = false, true, "timeout"
		}
		results = append(results, r)
	}
	if err := s.Settle(ctx, results); err != nil {
		t.Fatal(err)
	}
	for i, id := range txns {
		rec, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		adv, revd := rec.Outcome.Advised, rec.Outcome.Reversed
		switch {
		case i < 2 && (adv == nil || adv.STAN != uint32(11+i)):
			t.Errorf("record %d: advised %+v, want STAN %d", id, adv, 11+i)
		case i == 1 && (revd == nil || revd.STAN != 20):
			t.Errorf("record %d: reversed %+v, want STAN 20", id, revd)
		case i == 2 && adv != nil:
			t.Errorf("record %d: advised %+v, its advice was not acknowledged", id, adv)
		}
	}
	tot, err := s.QueueTotals(ctx)
	if err != nil || tot.Advices != 1 || tot.Reversals != 0 || tot.AdviceAmountMinor != 1000 {
		t.Errorf("totals %+v %v; want the one advice left", tot, err)
	}
	if rep, err := s.VerifyAudit(ctx); err != nil || !rep.OK() || rep.Items != 1 {
		t.Errorf("audit: %+v %+v %v", rep, rep.Broken, err)
	}
}

// DueAfter reads behind a window in flight: the items after the id, in queue order.
func TestDueAfter(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	items, qids := enqueueAdvices(t, s, 5)
	for _, c := range []struct {
		after QueueID
		limit int
		want  []QueueID
	}{
		{0, 2, qids[:2]},
		{qids[1], 2, qids[2:4]},
		{qids[3], 0, qids[4:]},
		{qids[4], 0, nil},
		{^QueueID(0), 0, nil},
	} {
		got, err := s.DueAfter(ctx, time.Now(), c.after, c.limit, KindAdvice)
		if err != nil {
			t.Fatal(err)
		}
		var ids []QueueID
		for _, it := range got {
			ids = append(ids, it.ID)
			if string(it.Sensitive) != string(items[0].Sensitive) {
				t.Errorf("item %d: sensitive data not opened", it.ID)
			}
		}
		if len(ids) != len(c.want) || (len(ids) > 0 && (ids[0] != c.want[0] || ids[len(ids)-1] != c.want[len(c.want)-1])) {
			t.Errorf("DueAfter(%d, limit %d) = %v, want %v", c.after, c.limit, ids, c.want)
		}
	}
}

// Due passes over items that wait among items that are due, whichever comes first.
func TestDueSkipsWaitingAmongDue(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	_, qids := enqueueAdvices(t, s, 6)
	later := time.Now().Add(time.Hour)
	var wait []Result
	for _, i := range []int{0, 2, 3} { // waiting: the first, and two in a row
		wait = append(wait, Result{ID: qids[i], Reached: true, Err: "timeout", Next: later})
	}
	if err := s.Settle(ctx, wait); err != nil {
		t.Fatal(err)
	}
	if err := s.Park(ctx, qids[5], "ops", "test"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Due(ctx, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != qids[1] || got[1].ID != qids[4] {
		var ids []QueueID
		for _, it := range got {
			ids = append(ids, it.ID)
		}
		t.Errorf("due %v, want %v", ids, []QueueID{qids[1], qids[4]})
	}
	if got, _ := s.Due(ctx, later.Add(time.Second), 0); len(got) != 5 {
		t.Errorf("an hour later %d due, want 5 (the parked one is not)", len(got))
	}
}

// enqueueAdvices queues n advices (STANs 11 on) of one new transaction in s.
func enqueueAdvices(t *testing.T, s *Store, n int) ([]Item, []QueueID) {
	t.Helper()
	id := begin(t, s, 1)
	items := make([]Item, n)
	for i := range items {
		items[i] = item(KindAdvice, 11+uint32(i))
		items[i].TxnID = id
	}
	qids, err := s.Enqueue(context.Background(), items...)
	if err != nil {
		t.Fatal(err)
	}
	return items, qids
}
