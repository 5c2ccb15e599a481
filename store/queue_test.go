package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// gcmSealer is a real AES-GCM sealer with an in-memory key, standing in for hsm.Module.
type gcmSealer struct {
	aead     cipher.AEAD
	failOpen bool
}

func newGCMSealer(t testing.TB) *gcmSealer {
	key := make([]byte, 32)
	rand.Read(key)
	b, _ := aes.NewCipher(key)
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmSealer{aead: a}
}

func (g *gcmSealer) Seal(_ context.Context, keyID string, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, g.aead.NonceSize())
	rand.Read(nonce)
	return g.aead.Seal(nonce, nonce, plaintext, aad), nil
}

func (g *gcmSealer) Open(_ context.Context, keyID string, sealed, aad []byte) ([]byte, error) {
	if g.failOpen || len(sealed) < g.aead.NonceSize() {
		return nil, errors.New("authentication failed")
	}
	n := g.aead.NonceSize()
	return g.aead.Open(nil, sealed[:n], sealed[n:], aad)
}

const secretPAN = "4761739001010010"

func openQ(t *testing.T, opts *Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.db")
	if opts == nil {
		opts = &Options{}
	}
	if opts.Sealer == nil {
		opts.Sealer = newGCMSealer(t)
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func begin(t *testing.T, s *Store, stan uint32) TxnID {
	t.Helper()
	id, err := s.Begin(context.Background(), Intent{Kind: "sale", MTI: "0200", STAN: stan, TerminalID: "T1", AmountMinor: 1000, Currency: "EUR", MaskedPAN: "476173******0010", Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// markDue marks every item due now (of kinds, or of every kind) as being sent and returns
// them, failing t unless there are want of them.
func markDue(t *testing.T, s *Store, want int, kinds ...Kind) []Item {
	t.Helper()
	ctx := context.Background()
	due, err := s.Due(ctx, time.Now(), 0, kinds...)
	if err != nil || len(due) != want {
		t.Fatalf("Due: %d items, want %d: %v", len(due), want, err)
	}
	marked, err := s.MarkSending(ctx, due, time.Now())
	if err != nil || len(marked) != want {
		t.Fatalf("MarkSending: %d items, want %d: %v", len(marked), want, err)
	}
	return marked
}

func item(kind Kind, stan uint32) Item {
	return Item{Kind: kind, STAN: stan, AmountMinor: 1000, Currency: "EUR", MaskedPAN: "476173******0010",
		Payload: []byte(`{"mti":"0200"}`), Sensitive: []byte(`{"pan":"` + secretPAN + `","expiry":"3012"}`)}
}

func TestFinishAndQueueSealsAndIsAtomic(t *testing.T) {
	ctx := context.Background()
	s, path := openQ(t, nil)
	id := begin(t, s, 1)
	qids, err := s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Reason: "timeout", Time: time.Now()}, item(KindReversal, 2))
	if err != nil || len(qids) != 1 {
		t.Fatalf("FinishAndQueue: %v %v", qids, err)
	}
	due, err := s.Due(ctx, time.Now(), 0)
	if err != nil || len(due) != 1 {
		t.Fatalf("Due: %v %v", due, err)
	}
	if due[0].TxnID != id || due[0].Kind != KindReversal || !bytes.Contains(due[0].Sensitive, []byte(secretPAN)) {
		t.Errorf("due item = %+v", due[0])
	}
	rec, _ := s.Get(ctx, id)
	if rec.Outcome == nil || rec.Outcome.State != StateUnknown {
		t.Errorf("journal = %+v", rec)
	}
	s.Close()
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte(secretPAN)) || bytes.Contains(raw, []byte("3012\"")) {
		t.Error("the PAN or expiry is on disk in the clear")
	}
	// A failing seal leaves neither outcome nor item.
	s2, _ := openQ(t, &Options{Sealer: failingSealer{}})
	id2 := begin(t, s2, 1)
	if _, err := s2.FinishAndQueue(ctx, id2, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, 2)); err == nil {
		t.Fatal("a failed seal was accepted")
	}
	if open, _ := s2.Unfinished(ctx); len(open) != 1 {
		t.Errorf("the outcome was recorded without its reversal: open = %d", len(open))
	}
	if items, _ := s2.List(ctx); len(items) != 0 {
		t.Errorf("queue = %+v", items)
	}
}

type failingSealer struct{}

func (failingSealer) Seal(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, errors.New("token unavailable")
}
func (failingSealer) Open(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, errors.New("token unavailable")
}

func TestDueOrderAndBackoff(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	a := begin(t, s, 1)
	b := begin(t, s, 2)
	c := begin(t, s, 3)
	now := time.Now()
	s.FinishAndQueue(ctx, a, Outcome{State: StateApprovedOffline, Time: now}, item(KindAdvice, 10))
	s.FinishAndQueue(ctx, b, Outcome{State: StateUnknown, Time: now}, item(KindReversal, 11))
	s.FinishAndQueue(ctx, c, Outcome{State: StateApprovedOffline, Time: now}, item(KindAdvice, 12))
	due, _ := s.Due(ctx, now, 0)
	var kinds []string
	for _, it := range due {
		kinds = append(kinds, string(it.Kind))
	}
	if strings.Join(kinds, ",") != "reversal,advice,advice" || due[1].STAN != 10 || due[2].STAN != 12 {
		t.Fatalf("due order = %v", kinds)
	}
	if lim, _ := s.Due(ctx, now, 2); len(lim) != 2 || lim[0].Kind != KindReversal {
		t.Errorf("limit: %+v", lim)
	}
	// A failed attempt that may have reached the host counts and delays the item.
	if err := s.Settle(ctx, []Result{{ID: due[0].ID, Reached: true, Err: "timeout", Next: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	again, _ := s.Due(ctx, now, 0)
	if len(again) != 2 {
		t.Fatalf("the delayed item is due: %+v", again)
	}
	later, _ := s.Due(ctx, now.Add(2*time.Minute), 0)
	if len(later) != 3 || later[0].Attempts != 1 || later[0].LastError != "timeout" {
		t.Fatalf("after the delay: %+v", later)
	}
	// A not-sent failure does not count as an attempt.
	s.Settle(ctx, []Result{{ID: later[0].ID, Reached: false, Err: "refused", Next: now}})
	if got, _ := s.Due(ctx, now, 1); got[0].Attempts != 1 {
		t.Errorf("attempts = %d after a not-sent failure, want 1", got[0].Attempts)
	}
	tot, _ := s.QueueTotals(ctx)
	if tot.Advices != 2 || tot.Reversals != 1 || tot.AdviceAmountMinor != 2000 || tot.OldestAdvice.IsZero() {
		t.Errorf("totals = %+v", tot)
	}
}

func TestSettleAcksInOneCommitAndNotesJournal(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	var ids []TxnID
	for i := uint32(1); i <= 5; i++ {
		id := begin(t, s, i)
		s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 100+i))
		ids = append(ids, id)
	}
	due, _ := s.Due(ctx, time.Now(), 0)
	var results []Result
	for _, it := range due {
		results = append(results, Result{ID: it.ID, Acked: true, ResponseCode: "00", Time: time.Now()})
	}
	txBefore := commits(s)
	if err := s.Settle(ctx, append(results, results[0])); err != nil { // a duplicate ack is ignored
		t.Fatal(err)
	}
	if n := commits(s) - txBefore; n != 1 {
		t.Errorf("settling 5 acks took %d write transactions, want 1", n)
	}
	if items, _ := s.List(ctx); len(items) != 0 {
		t.Errorf("acked items still queued: %+v", items)
	}
	for _, id := range ids {
		rec, _ := s.Get(ctx, id)
		if rec.Outcome.Advised == nil || rec.Outcome.Advised.ResponseCode != "00" {
			t.Errorf("record %d not noted as advised: %+v", id, rec.Outcome)
		}
	}
}

func TestUnsealFailureParksNeverDrops(t *testing.T) {
	ctx := context.Background()
	g := newGCMSealer(t)
	s, _ := openQ(t, &Options{Sealer: g})
	id := begin(t, s, 1)
	s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, 2))
	g.failOpen = true
	due, err := s.Due(ctx, time.Now(), 0)
	if err != nil || len(due) != 0 {
		t.Fatalf("Due = %v, %v; want nothing due", due, err)
	}
	items, _ := s.List(ctx)
	if len(items) != 1 || items[0].State != QueueParked || !strings.Contains(items[0].ParkReason, "cannot be unsealed") {
		t.Fatalf("queue = %+v", items)
	}
}

func TestNoSealerRefusesSensitive(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "n.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := begin(t, s, 1)
	if _, err := s.FinishAndQueue(context.Background(), id, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, 2)); !errors.Is(err, ErrNoSealer) {
		t.Errorf("err = %v, want ErrNoSealer", err)
	}
	it := item(KindReversal, 2)
	it.Sensitive = nil
	if _, err := s.FinishAndQueue(context.Background(), id, Outcome{State: StateUnknown, Time: time.Now()}, it); err != nil {
		t.Errorf("an item without sensitive data needs no sealer: %v", err)
	}
}

func TestParkDeleteAuditAndCheck(t *testing.T) {
	ctx := context.Background()
	s, path := openQ(t, nil)
	id := begin(t, s, 1)
	qids, _ := s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, 2))
	if err := s.Delete(ctx, qids[0], "alice", "settled by phone"); !errors.Is(err, ErrInvalid) {
		t.Errorf("deleting a pending item: %v", err)
	}
	if err := s.Park(ctx, qids[0], "alice", "host refuses it"); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Check(ctx)
	if err != nil || rep.Parked != 1 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Do, "unpark") {
		t.Errorf("check with a parked item: %+v %v", rep, err)
	}
	if err := s.Unpark(ctx, qids[0], "bob"); err != nil {
		t.Fatal(err)
	}
	s.Park(ctx, qids[0], "alice", "again")
	if err := s.Delete(ctx, qids[0], "alice", "acquirer confirmed reversal 4761739001010010"); err != nil {
		t.Fatal(err)
	}
	log, _ := s.AuditLog(ctx)
	var acts []string
	for _, e := range log {
		acts = append(acts, e.Who+":"+e.Action)
		if strings.Contains(e.Detail, secretPAN) {
			t.Errorf("audit entry carries a PAN: %q", e.Detail)
		}
	}
	if strings.Join(acts, ",") != "alice:park,bob:unpark,alice:park,alice:delete" {
		t.Errorf("audit = %v", acts)
	}
	if rep, _ := s.Check(ctx); !rep.OK() {
		t.Errorf("check after delete: %+v", rep.Problems)
	}
	// Edit an audit entry behind the store's back: the chain breaks.
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		c := b.Cursor()
		k, v := c.First()
		for k != nil && !bytes.Contains(v, []byte("alice")) { // the first operator action
			k, v = c.Next()
		}
		return b.Put(append([]byte(nil), k...), bytes.Replace(v, []byte("alice"), []byte("mallory"), 1))
	})
	db.Close()
	s2, err := Open(path, &Options{Sealer: newGCMSealer(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rep, _ = s2.Check(ctx)
	if rep.OK() || !strings.Contains(rep.Problems[0].What, "breaks the hash chain") {
		t.Errorf("tampered audit not detected: %+v", rep.Problems)
	}
}

func TestFullStoreKeepsQueue(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, &Options{MaxSize: 256 << 10})
	id := begin(t, s, 1)
	if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 2)); err != nil {
		t.Fatal(err)
	}
	var err error
	big := strings.Repeat("x", 4000)
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = s.Begin(ctx, Intent{Kind: "sale", SaleTransactionID: big, Time: time.Now()})
	}
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "queued messages are kept") {
		t.Fatalf("filling the store: %v, want ErrFull", err)
	}
	items, lerr := s.List(ctx)
	if lerr != nil || len(items) != 1 {
		t.Errorf("queue after the store filled: %+v %v", items, lerr)
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("check of the full store: %+v %v", rep.Problems, err)
	}
}

// commits returns the id of the last committed write transaction: bbolt numbers them.
func commits(s *Store) int {
	var id int
	s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

func TestVoid(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	rev := func() *Item { it := item(KindReversal, 50); it.Sensitive = nil; return &it }

	online := begin(t, s, 1)
	s.Finish(ctx, online, Outcome{State: StateApproved, ResponseCode: "00", Time: time.Now()})
	if rep, err := s.Void(ctx, online, "till:T1", rev()); err != nil || rep.Withdrawn || rep.Reversals != 1 || rep.Held {
		t.Fatalf("void of an online approval: %+v %v", rep, err)
	}
	if _, err := s.Void(ctx, online, "till:T1", rev()); !errors.Is(err, ErrNotVoidable) {
		t.Errorf("second void: %v", err)
	}
	if due, _ := s.Due(ctx, time.Now(), 0); len(due) != 1 || due[0].Kind != KindReversal || due[0].TxnID != online || due[0].Reverses != nil || due[0].STAN != 50 {
		t.Errorf("queue after void = %+v", due)
	}

	offline := begin(t, s, 2)
	s.FinishAndQueue(ctx, offline, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 51))
	if rep, err := s.Void(ctx, offline, "till:T1", nil); err != nil || !rep.Withdrawn || rep.Reversals != 0 {
		t.Fatalf("void of an unsent offline approval: %+v %v", rep, err)
	}
	rec, _ := s.Get(ctx, offline)
	if rec.Outcome.Voided == nil || !rec.Outcome.Voided.Withdrawn || rec.Outcome.Voided.By != "till:T1" {
		t.Errorf("voided record = %+v", rec.Outcome)
	}
	tot, _ := s.QueueTotals(ctx)
	if tot.Advices != 0 || tot.Reversals != 1 {
		t.Errorf("totals = %+v", tot)
	}

	declined := begin(t, s, 3)
	s.Finish(ctx, declined, Outcome{State: StateDeclined, Time: time.Now()})
	if _, err := s.Void(ctx, declined, "x", rev()); !errors.Is(err, ErrNotVoidable) {
		t.Errorf("void of a decline: %v", err)
	}
	// An offline approval whose advice was already attempted needs a reversal naming the
	// advice as sent, held until the advice is settled.
	sent := begin(t, s, 4)
	qids, _ := s.FinishAndQueue(ctx, sent, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 52))
	due, _ := s.Due(ctx, time.Now(), 0, KindAdvice)
	first := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if _, err := s.MarkSending(ctx, due, first); err != nil {
		t.Fatal(err)
	}
	s.Settle(ctx, []Result{{ID: qids[0], Reached: true, Err: "timeout", Next: time.Now()}})
	if _, err := s.Void(ctx, sent, "x", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("void without a reversal where one is needed: %v", err)
	}
	rep, err := s.Void(ctx, sent, "x", rev())
	if err != nil || rep.Withdrawn || rep.Reversals != 1 || !rep.Held {
		t.Errorf("void of an attempted advice: %+v %v", rep, err)
	}
	items, _ := s.List(ctx)
	var r *Item
	for i := range items {
		if items[i].TxnID == sent && items[i].Kind == KindReversal {
			r = &items[i]
		}
	}
	if r == nil || r.Reverses == nil || *r.Reverses != (Sent{MTI: "0220", STAN: 52, Time: first}) || r.After != qids[0] {
		t.Errorf("reversal of the attempted advice = %+v", r)
	}
	log, _ := s.AuditLog(ctx)
	if len(log) != 3 || log[0].Action != "void" || !strings.Contains(log[2].Detail, "held") {
		t.Errorf("audit = %+v", log)
	}
}

func TestPendingReversals(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	a, b := begin(t, s, 1), begin(t, s, 2)
	q1, _ := s.FinishAndQueue(ctx, a, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, 3))
	s.FinishAndQueue(ctx, b, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, 4), item(KindAdvice, 5))
	if n, err := s.PendingReversals(ctx); err != nil || n != 2 {
		t.Fatalf("PendingReversals = %d, %v; want 2", n, err)
	}
	s.Park(ctx, q1[0], "ops", "test")
	if n, _ := s.PendingReversals(ctx); n != 1 {
		t.Errorf("after parking one: %d, want 1 (parked ones are not pending)", n)
	}
}

func TestDueByKind(t *testing.T) {
	ctx := context.Background()
	g := newGCMSealer(t)
	s, _ := openQ(t, &Options{Sealer: g})
	a := begin(t, s, 1)
	s.FinishAndQueue(ctx, a, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindReversal, 2), item(KindAdvice, 3))
	// Asking for reversals neither returns nor unseals advices: with unsealing broken, the
	// reversal is parked as unsealable, and the advice, never read, stays pending.
	g.failOpen = true
	if due, err := s.Due(ctx, time.Now(), 0, KindReversal); err != nil || len(due) != 0 {
		t.Fatalf("reversals with failing unseal: %v %v", due, err)
	}
	items, _ := s.List(ctx)
	for _, it := range items {
		if want := map[Kind]QueueState{KindReversal: QueueParked, KindAdvice: QueuePending}[it.Kind]; it.State != want {
			t.Errorf("%s is %s, want %s", it.Kind, it.State, want)
		}
	}
	g.failOpen = false
	s2, _ := openQ(t, nil)
	b := begin(t, s2, 1)
	s2.FinishAndQueue(ctx, b, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindReversal, 2), item(KindAdvice, 3))
	revs, _ := s2.Due(ctx, time.Now(), 0, KindReversal)
	advs, _ := s2.Due(ctx, time.Now(), 0, KindAdvice)
	all, _ := s2.Due(ctx, time.Now(), 0)
	if len(revs) != 1 || revs[0].Kind != KindReversal || len(advs) != 1 || advs[0].Kind != KindAdvice || len(all) != 2 {
		t.Errorf("by kind: %d reversals, %d advices, %d in all", len(revs), len(advs), len(all))
	}
}

func TestNextDue(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	if _, ok, err := s.NextDue(ctx); err != nil || ok {
		t.Fatalf("empty queue: ok %v, err %v", ok, err)
	}
	a, b := begin(t, s, 1), begin(t, s, 2)
	now := time.Now().Round(0)
	qa, _ := s.FinishAndQueue(ctx, a, Outcome{State: StateUnknown, Time: now}, item(KindReversal, 3))
	qb, _ := s.FinishAndQueue(ctx, b, Outcome{State: StateApprovedOffline, Time: now}, item(KindAdvice, 4))
	err := s.Settle(ctx, []Result{
		{ID: qa[0], Reached: true, Err: "timeout", Next: now.Add(2 * time.Minute)},
		{ID: qb[0], Reached: true, Err: "timeout", Next: now.Add(time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if next, ok, err := s.NextDue(ctx); err != nil || !ok || !next.Equal(now.Add(time.Minute)) {
		t.Fatalf("NextDue = %v, %v, %v; want the advice's %v", next, ok, err, now.Add(time.Minute))
	}
	s.Park(ctx, qb[0], "ops", "test")
	if next, ok, _ := s.NextDue(ctx); !ok || !next.Equal(now.Add(2*time.Minute)) {
		t.Errorf("after parking the advice: %v, %v; want the reversal's %v (parked items wait for an operator)", next, ok, now.Add(2*time.Minute))
	}
	s.Park(ctx, qa[0], "ops", "test")
	if _, ok, _ := s.NextDue(ctx); ok {
		t.Error("only parked items: NextDue reports one pending")
	}
}

func TestNextDueCorruptItem(t *testing.T) {
	ctx := context.Background()
	s, _ := openQ(t, nil)
	for _, v := range []string{`{"v":1,"state":`, `{"v":9,"state":"pending"}`} {
		err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketQueueAdv).Put([]byte{0, 0, 0, 0, 0, 0, 0, 7}, []byte(v))
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.NextDue(ctx); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "0000000000000007") {
			t.Errorf("%s: err %v, want ErrCorrupt naming the item", v, err)
		}
	}
}
