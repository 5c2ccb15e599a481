package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMarkSendingGroupCommitAndFirstSent(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	for i := uint32(1); i <= 4; i++ {
		id := begin(t, s, i)
		s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 100+i))
	}
	due, _ := s.Due(ctx, time.Now(), 0)
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	before := commits(s)
	marked, err := s.MarkSending(ctx, due, first)
	if err != nil || len(marked) != 4 {
		t.Fatalf("MarkSending = %d items, %v", len(marked), err)
	}
	if n := commits(s) - before; n != 1 {
		t.Errorf("marking 4 items took %d write transactions, want 1", n)
	}
	for i, it := range marked {
		if !it.Sending || !it.FirstSent.Equal(first) || it.Attempts != 0 || string(it.Sensitive) != string(due[i].Sensitive) {
			t.Errorf("marked item %d = %+v", i, it)
		}
	}
	// Not sent after all (host away): the mark clears, the first field 7 stays, no attempt.
	s.Settle(ctx, []Result{{ID: due[0].ID, Reached: false, Err: "refused", Next: time.Now()}})
	again, _ := s.MarkSending(ctx, due[:1], first.Add(time.Hour))
	if len(again) != 1 || !again[0].FirstSent.Equal(first) || again[0].Attempts != 0 {
		t.Errorf("second mark = %+v; want the first send's time kept and no attempt", again)
	}
	// An item that left the queue since Due read it is not marked (and so not sent).
	s.Settle(ctx, []Result{{ID: due[1].ID, Acked: true, ResponseCode: "00", Time: time.Now()}})
	s.Park(ctx, due[2].ID, "ops", "test")
	if m, _ := s.MarkSending(ctx, due[1:3], time.Now()); len(m) != 0 {
		t.Errorf("acked or parked items marked: %+v", m)
	}
	// The journal keeps the acknowledged advice as sent: its STAN and first field 7.
	rec, _ := s.Get(ctx, due[1].TxnID)
	if a := rec.Outcome.Advised; a == nil || a.STAN != due[1].STAN || !a.TransmissionTime.Equal(first) {
		t.Errorf("advised = %+v", a)
	}
}

// A crash between MarkSending and Settle: after the restart the item is still marked, and
// its next send counts the lost one as an attempt, so it goes as a repeat.
func TestMarkSendingSurvivesCrash(t *testing.T) {
	ctx := context.Background()
	g := newGCMSealer(t)
	s, path := openQ(t, &Options{Sealer: g})
	id := begin(t, s, 1)
	s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 7))
	due, _ := s.Due(ctx, time.Now(), 0)
	first := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	if _, err := s.MarkSending(ctx, due, first); err != nil {
		t.Fatal(err)
	}
	s.Close() // no Settle: the process stopped with the send in flight
	s2, err := Open(path, &Options{Sealer: g})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	due, _ = s2.Due(ctx, time.Now(), 0)
	if len(due) != 1 || !due[0].Sending || due[0].Attempts != 0 {
		t.Fatalf("after restart: %+v", due)
	}
	m, err := s2.MarkSending(ctx, due, time.Now())
	if err != nil || len(m) != 1 || m[0].Attempts != 1 || !m[0].FirstSent.Equal(first) || m[0].STAN != 7 {
		t.Fatalf("mark after restart = %+v, %v; want attempt 1, the first field 7 and STAN", m, err)
	}
	// Settled as reached: one attempt more, mark cleared.
	s2.Settle(ctx, []Result{{ID: m[0].ID, Reached: true, Err: "timeout", Next: time.Now()}})
	items, _ := s2.List(ctx)
	if len(items) != 1 || items[0].Sending || items[0].Attempts != 2 {
		t.Errorf("after settle: %+v", items)
	}
}

// A void while the advice may be on its way: the reversal is held until the advice leaves
// the queue, and holds nothing else back.
func TestVoidHoldsReversalBehindAdvice(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	id := begin(t, s, 1)
	s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 5))
	due, _ := s.Due(ctx, time.Now(), 0)
	first := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	s.MarkSending(ctx, due, first)

	rev := item(KindReversal, 0)
	rev.Sensitive = nil
	stanBefore, _ := s.NextSTAN(ctx)
	rep, err := s.Void(ctx, id, "till", &rev)
	if err != nil || !rep.Held || rep.Withdrawn || rep.Reversals != 1 {
		t.Fatalf("void while in flight: %+v %v (never withdrawn: the advice may have left)", rep, err)
	}
	if r, _ := s.Due(ctx, time.Now(), 0, KindReversal); len(r) != 0 {
		t.Errorf("the held reversal is due: %+v", r)
	}
	if n, _ := s.PendingReversals(ctx); n != 0 {
		t.Errorf("the held reversal holds advices back: %d pending", n)
	}
	if next, ok, _ := s.NextDue(ctx); !ok || next.After(time.Now()) {
		t.Errorf("NextDue = %v %v; want the advice, due now", next, ok)
	}
	// The advice is still sent (a repeat: it may have arrived), then the reversal.
	adv, _ := s.Due(ctx, time.Now(), 0, KindAdvice)
	if len(adv) != 1 {
		t.Fatalf("advice not due: %+v", adv)
	}
	s.Settle(ctx, []Result{{ID: adv[0].ID, Acked: true, ResponseCode: "00", Time: time.Now()}})
	r, _ := s.Due(ctx, time.Now(), 0, KindReversal)
	if len(r) != 1 || r[0].Reverses == nil || *r[0].Reverses != (Sent{MTI: "0220", STAN: 5, Time: first}) {
		t.Fatalf("reversal after the advice = %+v", r)
	}
	if r[0].STAN <= stanBefore {
		t.Errorf("the reversal's STAN %d is not after %d: Void must take a new one", r[0].STAN, stanBefore)
	}
	if next, _ := s.NextSTAN(ctx); next <= r[0].STAN {
		t.Errorf("NextSTAN %d after the void's %d: a STAN handed out twice", next, r[0].STAN)
	}
}

// A void of an acknowledged advice names it as it was sent, from the journal; one whose
// transmission time was never recorded cannot be named, and is refused rather than
// reported voided.
func TestVoidAcknowledgedAdvice(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	id := begin(t, s, 1)
	s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 9))
	due, _ := s.Due(ctx, time.Now(), 0)
	first := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	s.MarkSending(ctx, due, first)
	s.Settle(ctx, []Result{{ID: due[0].ID, Acked: true, ResponseCode: "00", Time: time.Now()}})
	rev := item(KindReversal, 0)
	rev.Sensitive = nil
	rep, err := s.Void(ctx, id, "till", &rev)
	if err != nil || rep.Held || rep.Reversals != 1 {
		t.Fatalf("void of an acked advice: %+v %v", rep, err)
	}
	r, _ := s.Due(ctx, time.Now(), 0)
	if len(r) != 1 || r[0].Reverses == nil || *r[0].Reverses != (Sent{MTI: "0220", STAN: 9, Time: first}) || r[0].After != 0 {
		t.Fatalf("reversal = %+v", r)
	}

	// Acknowledged without a recorded time (an older posd): refused, nothing queued.
	old := begin(t, s, 2)
	s.FinishAndQueue(ctx, old, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 10))
	adv, _ := s.Due(ctx, time.Now(), 0, KindAdvice)
	s.Settle(ctx, []Result{{ID: adv[0].ID, Acked: true, ResponseCode: "00", Time: time.Now()}})
	rev2 := item(KindReversal, 0)
	rev2.Sensitive = nil
	if _, err := s.Void(ctx, old, "till", &rev2); !errors.Is(err, ErrNotVoidable) {
		t.Errorf("void of an advice sent without a recorded time: %v", err)
	}
	if rec, _ := s.Get(ctx, old); rec.Outcome.Voided != nil {
		t.Errorf("refused void recorded: %+v", rec.Outcome.Voided)
	}
}

// Dual message: an approved 0100 with its completion queued. Before the completion is
// marked, the completion is withdrawn and the 0100 reversed; after, both are reversed.
func TestVoidCompletion(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	rev := func() *Item { it := item(KindReversal, 0); it.Sensitive = nil; return &it }

	early := begin(t, s, 1)
	s.FinishAndQueue(ctx, early, Outcome{State: StateApproved, ResponseCode: "00", Time: time.Now()}, item(KindAdvice, 2))
	rep, err := s.Void(ctx, early, "till", rev())
	if err != nil || !rep.Withdrawn || rep.Reversals != 1 || rep.Held {
		t.Fatalf("void before completion: %+v %v", rep, err)
	}
	items, _ := s.List(ctx)
	if len(items) != 1 || items[0].Kind != KindReversal || items[0].Reverses != nil {
		t.Fatalf("queue after void before completion = %+v; want the 0100's reversal only", items)
	}
	if rec, _ := s.Get(ctx, early); rec.Outcome.Voided == nil || rec.Outcome.Voided.Withdrawn {
		t.Errorf("journal void = %+v; a reversal is queued, so not 'withdrawn'", rec.Outcome.Voided)
	}
	s.Settle(ctx, []Result{{ID: items[0].ID, Acked: true, ResponseCode: "00", Time: time.Now()}})

	late := begin(t, s, 3)
	s.FinishAndQueue(ctx, late, Outcome{State: StateApproved, ResponseCode: "00", Time: time.Now()}, item(KindAdvice, 4))
	due, _ := s.Due(ctx, time.Now(), 0)
	s.MarkSending(ctx, due, time.Now())
	rep, err = s.Void(ctx, late, "till", rev())
	if err != nil || rep.Withdrawn || rep.Reversals != 2 || !rep.Held {
		t.Fatalf("void after the completion may have left: %+v %v", rep, err)
	}
	revs, _ := s.Due(ctx, time.Now(), 0, KindReversal)
	if len(revs) != 1 || revs[0].Reverses != nil {
		t.Errorf("due reversals = %+v; want the 0100's, the completion's held", revs)
	}
	items, _ = s.List(ctx)
	var stans []uint32
	for _, it := range items {
		if it.Kind == KindReversal {
			stans = append(stans, it.STAN)
		}
	}
	if len(stans) != 2 || stans[0] == stans[1] || stans[0] == 0 {
		t.Errorf("reversal STANs = %v; want two distinct", stans)
	}
}
