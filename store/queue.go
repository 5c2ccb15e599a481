package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sealer encrypts sensitive data before it reaches disk and decrypts it when it is needed
// again. hsm.Module implements it. aad binds a sealed blob to where it is stored, so that a
// blob moved to another record does not open.
//
// The Store calls it from the goroutines that write and read the queue, so implementations
// must be safe for concurrent use (hsm.Module is).
type Sealer interface {
	Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, keyID string, sealed, aad []byte) ([]byte, error)
}

// Errors of the store-and-forward queue.
var (
	// ErrNoSealer means an item with sensitive data was queued on a Store opened without a
	// Sealer: posd never writes card data in the clear.
	ErrNoSealer = errors.New("no sealer configured for sensitive data")
	// ErrUnseal means a queued item's sensitive data could not be opened. The item is parked,
	// never dropped: an operator must look at it.
	ErrUnseal = errors.New("queued item cannot be unsealed")
	// ErrParked means the operation needs a pending item and the item is parked.
	ErrParked = errors.New("item is parked")
)

// QueueID identifies a queued message. IDs increase and are never reused.
//
// A plain value: safe for concurrent use when not modified.
type QueueID uint64

func (id QueueID) key() []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// Kind is what a queued message does at the host.
//
// A plain value: safe for concurrent use when not modified.
type Kind string

// Kinds of queued messages. Reversals are always sent before advices.
const (
	KindReversal Kind = "reversal" // undo what the host may have approved (0400, then 0420/0421)
	KindAdvice   Kind = "advice"   // tell the host of an offline approval (0220, then 0221)
)

// QueueState is the state of a queued message.
//
// A plain value: safe for concurrent use when not modified.
type QueueState string

// Queue states. An acknowledged item leaves the queue (its sealed data with it); the journal
// keeps what happened.
const (
	QueuePending QueueState = "pending" // to be sent when due
	QueueParked  QueueState = "parked"  // kept, not sent: retries exhausted, unsealable, or parked by an operator
)

// Item is one message waiting to be forwarded to the acquirer.
//
// A plain value: safe for concurrent use when not modified.
type Item struct {
	ID          QueueID
	TxnID       TxnID // the journal record this message settles
	Kind        Kind
	STAN        uint32 // the message's own STAN; the same on every retransmission
	State       QueueState
	Attempts    int       // sends that may have reached the host
	Created     time.Time // when it was queued
	NextAttempt time.Time // not before
	LastError   string    // why the last attempt failed; digit runs redacted
	ParkedBy    string    // who parked it ("posd" when retries ran out)
	ParkReason  string
	AmountMinor int64  // for totals and listings
	Currency    string // alphabetic
	MaskedPAN   string // for listings; Enqueue refuses an unmasked PAN
	// Payload is the message's non-sensitive fields, opaque to the store (the terminal's
	// encoding). Stored as it is.
	Payload []byte
	// Sensitive is card data needed to build the message (PAN, expiry, chip data). It is
	// sealed with the Store's Sealer before it is written and opened when the item is read
	// by Due; it is nil in items returned by List. It is purged with the item on ack.
	Sensitive []byte
	// FirstSent is the transmission time (field 7) of the item's first send, recorded by
	// MarkSending before the bytes go out. Every later send carries it again, with the same
	// STAN, so that a host keying on terminal, STAN and field 7 sees one message. Zero: the
	// item was never marked sending, so it never left posd.
	FirstSent time.Time
	// Sending: marked by MarkSending and not yet settled. An item still marked after a
	// restart may have reached the host before the crash; MarkSending counts that send as an
	// attempt, so the next one is a repeat.
	Sending bool
	// Reverses names, for a reversal, the message it undoes as that message was first sent
	// (field 90), when it is not the message the Payload describes: Store.Void sets it on the
	// reversal of an advice. Nil otherwise.
	Reverses *Sent
	// After holds the item back until the queued item After has left the queue (acknowledged
	// or deleted): Store.Void sets it on the reversal of an advice that may be on its way, so
	// that the reversal never reaches the host before the advice it undoes. Zero: not held.
	After QueueID
}

// Sent names a message as it was first sent: what field 90 of its reversal carries.
//
// A plain value: safe for concurrent use when not modified.
type Sent struct {
	MTI  string    `json:"mti"`  // of its first transmission, e.g. "0220"
	STAN uint32    `json:"stan"` // its field 11
	Time time.Time `json:"time"` // its field 7
}

// held reports whether it waits for another item still in the queue (see Item.After).
func held(tx *bolt.Tx, after QueueID) bool {
	if after == 0 {
		return false
	}
	for _, b := range []*bolt.Bucket{tx.Bucket(bucketQueueRev), tx.Bucket(bucketQueueAdv)} {
		if b.Get(after.key()) != nil {
			return true
		}
	}
	return false
}

// queueRecordVersion is the "v" of a queued item's JSON.
const queueRecordVersion = 1

type jsonItem struct {
	V           int        `json:"v"`
	TxnID       TxnID      `json:"txn"`
	Kind        Kind       `json:"kind"`
	STAN        uint32     `json:"stan"`
	State       QueueState `json:"state"`
	Attempts    int        `json:"attempts"`
	Created     time.Time  `json:"created"`
	NextAttempt time.Time  `json:"next_attempt"`
	LastError   string     `json:"last_error,omitempty"`
	ParkedBy    string     `json:"parked_by,omitempty"`
	ParkReason  string     `json:"park_reason,omitempty"`
	AmountMinor int64      `json:"amount_minor"`
	Currency    string     `json:"currency"`
	MaskedPAN   string     `json:"masked_pan,omitempty"`
	Payload     []byte     `json:"payload,omitempty"`
	Sealed      []byte     `json:"sealed,omitempty"`
	FirstSent   time.Time  `json:"first_sent,omitzero"`
	Sending     bool       `json:"sending,omitempty"`
	Reverses    *Sent      `json:"reverses,omitempty"`
	After       QueueID    `json:"after,omitempty"`
}

func decodeItem(id QueueID, v []byte) (Item, []byte, error) {
	var j jsonItem
	d := json.NewDecoder(bytes.NewReader(v))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return Item{}, nil, fmt.Errorf("queued item %d: %w: %w", id, ErrCorrupt, err)
	}
	if j.V != queueRecordVersion {
		return Item{}, nil, fmt.Errorf("queued item %d: version %d, this posd reads %d: %w", id, j.V, queueRecordVersion, ErrCorrupt)
	}
	it := Item{ID: id, TxnID: j.TxnID, Kind: j.Kind, STAN: j.STAN, State: j.State, Attempts: j.Attempts,
		Created: j.Created, NextAttempt: j.NextAttempt, LastError: j.LastError, ParkedBy: j.ParkedBy,
		ParkReason: j.ParkReason, AmountMinor: j.AmountMinor, Currency: j.Currency, MaskedPAN: j.MaskedPAN, Payload: j.Payload,
		FirstSent: j.FirstSent, Sending: j.Sending, Reverses: j.Reverses, After: j.After}
	return it, j.Sealed, nil
}

// peeked is what peekItem reads of a queued item.
type peeked struct {
	V           int        `json:"v"`
	State       QueueState `json:"state"`
	NextAttempt time.Time  `json:"next_attempt"`
	After       QueueID    `json:"after"`
}

// peekItem reads only a queued item's state, next attempt and hold, skipping its payload
// and sealed data: for scans that look at every item but keep few.
func peekItem(k, v []byte) (peeked, error) {
	var j peeked
	if err := json.Unmarshal(v, &j); err != nil {
		return peeked{}, fmt.Errorf("queued item %x: %w: %w", k, ErrCorrupt, err)
	}
	if j.V != queueRecordVersion {
		return peeked{}, fmt.Errorf("queued item %x: version %d, this posd reads %d: %w", k, j.V, queueRecordVersion, ErrCorrupt)
	}
	return j, nil
}

// waiting reports whether a peeked item is pending and not held by another (it is sent
// when its NextAttempt comes).
func (p peeked) waiting(tx *bolt.Tx) bool { return p.State == QueuePending && !held(tx, p.After) }

func encodeItem(it Item, sealed []byte) ([]byte, error) {
	return json.Marshal(jsonItem{V: queueRecordVersion, TxnID: it.TxnID, Kind: it.Kind, STAN: it.STAN, State: it.State,
		Attempts: it.Attempts, Created: it.Created, NextAttempt: it.NextAttempt, LastError: redactDigitRuns(it.LastError),
		ParkedBy: it.ParkedBy, ParkReason: redactDigitRuns(it.ParkReason), AmountMinor: it.AmountMinor, Currency: it.Currency,
		MaskedPAN: it.MaskedPAN, Payload: it.Payload, Sealed: sealed, FirstSent: it.FirstSent, Sending: it.Sending,
		Reverses: it.Reverses, After: it.After})
}

// kindBucket returns the bucket holding items of kind: reversals and advices are kept apart
// so that Due reads the (usually few) reversals and then only as many advices as it needs.
func kindBucket(tx *bolt.Tx, kind Kind) *bolt.Bucket {
	if kind == KindReversal {
		return tx.Bucket(bucketQueueRev)
	}
	return tx.Bucket(bucketQueueAdv)
}

// findItem looks id up in both kind buckets.
func findItem(tx *bolt.Tx, id QueueID) (*bolt.Bucket, Item, []byte, error) {
	for _, b := range []*bolt.Bucket{tx.Bucket(bucketQueueRev), tx.Bucket(bucketQueueAdv)} {
		if v := b.Get(id.key()); v != nil {
			it, sealed, err := decodeItem(id, v)
			return b, it, sealed, err
		}
	}
	return nil, Item{}, nil, ErrNotFound
}

// forEachItem calls fn for every queued item, reversals first, each kind in id order.
func forEachItem(tx *bolt.Tx, fn func(it Item, sealed []byte) error) error {
	return forEachQueued(tx, func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("queue key of %d bytes: %w", len(k), ErrCorrupt)
		}
		it, sealed, err := decodeItem(QueueID(binary.BigEndian.Uint64(k)), v)
		if err != nil {
			return err
		}
		return fn(it, sealed)
	})
}

// forEachQueued calls fn with the key and encoded value of every queued item, reversals
// first, each kind in id order.
func forEachQueued(tx *bolt.Tx, fn func(k, v []byte) error) error {
	for _, b := range []*bolt.Bucket{tx.Bucket(bucketQueueRev), tx.Bucket(bucketQueueAdv)} {
		if err := b.ForEach(fn); err != nil {
			return err
		}
	}
	return nil
}

// aad is what a sealed blob is bound to: the item's id and the journal record it settles.
func aad(id QueueID, txn TxnID) []byte {
	return fmt.Appendf(nil, "posd-queue/%d/%d", id, txn)
}

// prepare checks a new item and reserves its id inside tx; sealing happens outside bbolt's
// lock by the caller, see enqueueTx.
func (s *Store) checkItem(it Item) error {
	if longestDigitRun(it.MaskedPAN) > maxDigitRun {
		return fmt.Errorf("enqueue: %w", ErrUnmaskedPAN)
	}
	if it.Kind != KindReversal && it.Kind != KindAdvice {
		return fmt.Errorf("enqueue: kind %q: %w", it.Kind, ErrInvalid)
	}
	if len(it.Sensitive) > 0 && s.sealer == nil {
		return fmt.Errorf("enqueue: %w", ErrNoSealer)
	}
	return nil
}

// enqueueTx stores items in tx, sealed, with ids from the Store's queue counter (one
// sequence for both kinds). Sealing inside the transaction keeps id and blob together; the
// sealer must not call back into the store. s.mu held.
func (s *Store) enqueueTx(ctx context.Context, tx *bolt.Tx, items []Item, now time.Time) ([]QueueID, error) {
	ids := make([]QueueID, 0, len(items))
	for _, it := range items {
		id := s.nextQueue
		s.nextQueue++ // an id lost to a rolled-back commit leaves a gap, never a reuse
		v, err := s.sealItem(ctx, id, it, now)
		if err != nil {
			return nil, err
		}
		if err := s.putLinked(ctx, tx, kindBucket(tx, it.Kind), id.key(), v, jsonLink{Kind: linkEnqueue, Ref: queueRef(id)}); err != nil {
			return nil, err
		}
		if err := raiseSequence(tx.Bucket(bucketQueue), uint64(id)); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// sealItem returns the stored form of the new item it with id: pending, its sensitive data
// sealed, created now unless it says when.
func (s *Store) sealItem(ctx context.Context, id QueueID, it Item, now time.Time) ([]byte, error) {
	var sealed []byte
	if len(it.Sensitive) > 0 {
		var err error
		if sealed, err = s.sealer.Seal(ctx, s.sealKeyID, it.Sensitive, aad(id, it.TxnID)); err != nil {
			return nil, fmt.Errorf("sealing item for transaction %d: %w", it.TxnID, err)
		}
	}
	it.State = QueuePending
	if it.Created.IsZero() {
		it.Created = now
	}
	return encodeItem(it, sealed)
}

// Enqueue queues messages on their own (for example the reversal of a voided sale) and
// returns their ids. The items are committed, sealed, before Enqueue returns.
func (s *Store) Enqueue(ctx context.Context, items ...Item) ([]QueueID, error) {
	for _, it := range items {
		if err := s.checkItem(it); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	var ids []QueueID
	err := s.update(ctx, "enqueue", func(tx *bolt.Tx) error {
		j := tx.Bucket(bucketJournal)
		for _, it := range items {
			if j.Get(it.TxnID.key()) == nil {
				return fmt.Errorf("transaction %d: %w", it.TxnID, ErrNotFound)
			}
		}
		var err error
		ids, err = s.enqueueTx(ctx, tx, items, s.now())
		return err
	})
	return ids, err
}

// Due returns up to limit pending items whose NextAttempt is not after now and that no
// other item holds back (Item.After): all due reversals first, then advices, each in queue
// order, with their sensitive data opened. An
// item whose data cannot be opened is parked (by "posd", with the reason) and not returned.
//
// kinds, when given, limits the result to those kinds; the other kind's bucket is not read,
// nor its items unsealed.
func (s *Store) Due(ctx context.Context, now time.Time, limit int, kinds ...Kind) ([]Item, error) {
	want := func(k Kind) bool {
		if len(kinds) == 0 {
			return true
		}
		for _, w := range kinds {
			if w == k {
				return true
			}
		}
		return false
	}
	type raw struct {
		it     Item
		sealed []byte
	}
	var due []raw
	err := s.view(ctx, "due", func(tx *bolt.Tx) error {
		for _, kind := range []Kind{KindReversal, KindAdvice} {
			if !want(kind) {
				continue
			}
			c := kindBucket(tx, kind).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if limit > 0 && len(due) >= limit {
					return nil
				}
				if len(k) != 8 {
					return fmt.Errorf("queue key of %d bytes: %w", len(k), ErrCorrupt)
				}
				p, err := peekItem(k, v)
				if err != nil {
					return err
				}
				if p.NextAttempt.After(now) || !p.waiting(tx) {
					continue // not decoded: most items wait while the host is away
				}
				it, sealed, err := decodeItem(QueueID(binary.BigEndian.Uint64(k)), v)
				if err != nil {
					return err
				}
				due = append(due, raw{it, sealed})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, r := range due {
		if len(r.sealed) > 0 {
			if s.sealer == nil {
				return nil, fmt.Errorf("store: due: item %d: %w", r.it.ID, ErrNoSealer)
			}
			clear, err := s.sealer.Open(ctx, s.sealKeyID, r.sealed, aad(r.it.ID, r.it.TxnID))
			if err != nil {
				perr := s.Park(ctx, r.it.ID, "posd", fmt.Sprintf("%v: %v", ErrUnseal, err))
				if perr != nil {
					return nil, perr
				}
				continue
			}
			r.it.Sensitive = clear
		}
		out = append(out, r.it)
	}
	return out, nil
}

// List returns every queued item (pending and parked) in queue order, without their
// sensitive data.
func (s *Store) List(ctx context.Context) ([]Item, error) {
	var items []Item
	err := s.view(ctx, "list queue", func(tx *bolt.Tx) error {
		return forEachItem(tx, func(it Item, _ []byte) error {
			items = append(items, it)
			return nil
		})
	})
	sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	return items, err
}

// NextDue returns the earliest NextAttempt of the pending items not held by another (see
// Item.After), and false when there is none. It reads the queue without collecting or sorting it, for a forwarder that waits
// between drains.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var next time.Time
	found := false
	err := s.view(ctx, "next due", func(tx *bolt.Tx) error {
		return forEachQueued(tx, func(k, v []byte) error {
			p, err := peekItem(k, v)
			if err != nil {
				return err
			}
			if p.waiting(tx) && (!found || p.NextAttempt.Before(next)) {
				next, found = p.NextAttempt, true
			}
			return nil
		})
	})
	if err != nil {
		return time.Time{}, false, err
	}
	return next, found, nil
}

// Totals sums the queue: what posd holds for the host. Offline limits use the advices.
//
// A plain value: safe for concurrent use when not modified.
type Totals struct {
	Reversals, Advices, Parked int
	AdviceAmountMinor          int64     // sum of pending and parked advices
	OldestAdvice               time.Time // zero when there is none
}

// QueueTotals returns the queue's totals.
func (s *Store) QueueTotals(ctx context.Context) (Totals, error) {
	var t Totals
	items, err := s.List(ctx)
	if err != nil {
		return t, err
	}
	for _, it := range items {
		if it.State == QueueParked {
			t.Parked++
		}
		switch it.Kind {
		case KindReversal:
			t.Reversals++
		case KindAdvice:
			t.Advices++
			t.AdviceAmountMinor += it.AmountMinor
			if t.OldestAdvice.IsZero() || it.Created.Before(t.OldestAdvice) {
				t.OldestAdvice = it.Created
			}
		}
	}
	return t, nil
}

// Result is what happened to one send of a queued item, applied by Settle.
//
// A plain value: safe for concurrent use when not modified.
type Result struct {
	ID QueueID
	// Acked: the host answered. The item leaves the queue with its sealed data, and its
	// journal record notes the acknowledgement.
	Acked        bool
	ResponseCode string
	// Otherwise the attempt failed: Reached says whether the message may have reached the
	// host (it counts as an attempt, and the next send is a repeat), Err why, and Next when
	// to try again. Park parks it instead (retries exhausted).
	Reached bool
	Err     string
	Next    time.Time
	Park    bool
	Time    time.Time
}

// MarkSending records, in one commit for the whole batch (group commit), that items are
// about to be sent with transmission time at, before any of their bytes go out: a crash
// after this may have sent them, and the next send is then a repeat. An item's first mark
// sets its FirstSent to at; later sends keep the first one. An item still marked from a
// send that was never settled (posd stopped mid-send) has that send counted as an attempt
// (Attempts+1) first.
//
// It returns the items it marked, as marked, with the Sensitive data of the argument's:
// an item that left the queue since it was read (acknowledged, withdrawn by a void,
// deleted), was parked, or is held back (Item.After) is left out and must not be sent.
func (s *Store) MarkSending(ctx context.Context, items []Item, at time.Time) ([]Item, error) {
	if len(items) == 0 {
		return nil, nil
	}
	var marked []Item
	err := s.update(ctx, "mark sending", func(tx *bolt.Tx) error {
		marked = marked[:0]
		for _, in := range items {
			q, it, sealed, err := findItem(tx, in.ID)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if it.State != QueuePending || held(tx, it.After) {
				continue
			}
			if it.Sending {
				it.Attempts++ // the unsettled send of a process that stopped may have arrived
			}
			it.Sending = true
			if it.FirstSent.IsZero() {
				it.FirstSent = at
			}
			nv, err := encodeItem(it, sealed)
			if err != nil {
				return err
			}
			if err := s.putLinked(ctx, tx, q, it.ID.key(), nv, jsonLink{Kind: "sending", Ref: queueRef(it.ID)}); err != nil {
				return err
			}
			it.Sensitive = in.Sensitive
			marked = append(marked, it)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return marked, nil
}

// Settle applies the results of a batch of sends in one commit (group commit): one fsync
// for the whole window, not one per message.
func (s *Store) Settle(ctx context.Context, results []Result) error {
	if len(results) == 0 {
		return nil
	}
	return s.update(ctx, "settle queue", func(tx *bolt.Tx) error {
		for _, r := range results {
			q, it, sealed, err := findItem(tx, r.ID)
			if errors.Is(err, ErrNotFound) {
				// Settled already (a duplicate answer, or an operator deleted it).
				continue
			}
			if err != nil {
				return err
			}
			if r.Acked {
				if err := s.deleteLinked(ctx, tx, q, r.ID.key(), jsonLink{Kind: "acked", Ref: queueRef(r.ID)}); err != nil {
					return err
				}
				if err := s.noteSettled(ctx, tx, it, r); err != nil {
					return err
				}
				continue
			}
			if r.Reached {
				it.Attempts++
			}
			it.Sending = false
			it.LastError = r.Err
			it.NextAttempt = r.Next
			kind := "retry"
			if r.Park {
				it.State, it.ParkedBy, it.ParkReason = QueueParked, "posd", "retries exhausted: "+r.Err
				kind = "park"
			}
			nv, err := encodeItem(it, sealed)
			if err != nil {
				return err
			}
			if err := s.putLinked(ctx, tx, q, r.ID.key(), nv, jsonLink{Kind: kind, Ref: queueRef(r.ID)}); err != nil {
				return err
			}
		}
		return nil
	})
}

// noteSettled records on the journal record that its reversal or advice was acknowledged.
func (s *Store) noteSettled(ctx context.Context, tx *bolt.Tx, it Item, r Result) error {
	rec, err := getRecord(tx, it.TxnID)
	if errors.Is(err, ErrNotFound) {
		return nil // the record is gone; nothing to note (Check reports it)
	}
	if err != nil {
		return err
	}
	if rec.Outcome == nil {
		return nil
	}
	switch it.Kind {
	case KindReversal:
		rec.Outcome.Reversed = &Settlement{Time: r.Time, ResponseCode: r.ResponseCode, STAN: it.STAN}
	case KindAdvice:
		// The advice as sent (its STAN and first field 7): what the reversal of a void
		// names in field 90.
		rec.Outcome.Advised = &Settlement{Time: r.Time, ResponseCode: r.ResponseCode, STAN: it.STAN, TransmissionTime: it.FirstSent}
	}
	return s.putRecord(ctx, tx, rec, jsonLink{Kind: "settle " + string(it.Kind)})
}

// Park stops an item from being sent, keeping it. by says who (an operator's name, or
// "posd"); the action goes to the audit chain.
func (s *Store) Park(ctx context.Context, id QueueID, by, reason string) error {
	return s.update(ctx, fmt.Sprintf("park %d", id), func(tx *bolt.Tx) error {
		q, it, sealed, err := findItem(tx, id)
		if err != nil {
			return err
		}
		it.State, it.ParkedBy, it.ParkReason = QueueParked, by, reason
		nv, err := encodeItem(it, sealed)
		if err != nil {
			return err
		}
		l := operatorLink(by, "park", fmt.Sprintf("queue item %d (%s of transaction %d): %s", id, it.Kind, it.TxnID, redactDigitRuns(reason)))
		l.Ref = queueRef(id)
		return s.putLinked(ctx, tx, q, id.key(), nv, l)
	})
}

// Unpark makes a parked item pending again, due now.
func (s *Store) Unpark(ctx context.Context, id QueueID, by string) error {
	return s.update(ctx, fmt.Sprintf("unpark %d", id), func(tx *bolt.Tx) error {
		q, it, sealed, err := findItem(tx, id)
		if err != nil {
			return err
		}
		it.State, it.ParkedBy, it.ParkReason, it.NextAttempt = QueuePending, "", "", time.Time{}
		nv, err := encodeItem(it, sealed)
		if err != nil {
			return err
		}
		l := operatorLink(by, "unpark", fmt.Sprintf("queue item %d (%s of transaction %d)", id, it.Kind, it.TxnID))
		l.Ref = queueRef(id)
		return s.putLinked(ctx, tx, q, id.key(), nv, l)
	})
}

// Delete removes a queued item for good, with its sealed data, and records who did it and
// why in the audit chain. Only a parked item can be deleted: a pending one must be parked
// first, so that nothing is deleted while it is being sent.
func (s *Store) Delete(ctx context.Context, id QueueID, by, reason string) error {
	return s.update(ctx, fmt.Sprintf("delete %d", id), func(tx *bolt.Tx) error {
		q, it, _, err := findItem(tx, id)
		if err != nil {
			return err
		}
		if it.State != QueueParked {
			return fmt.Errorf("%w: park item %d before deleting it", ErrInvalid, id)
		}
		l := operatorLink(by, "delete", fmt.Sprintf("queue item %d (%s of transaction %d, %d %s, %s): %s", id, it.Kind, it.TxnID, it.AmountMinor, it.Currency, it.MaskedPAN, redactDigitRuns(reason)))
		l.Ref = queueRef(id)
		return s.deleteLinked(ctx, tx, q, id.key(), l)
	})
}

// Reschedule makes every pending item due at once (an operator's flush).
func (s *Store) Reschedule(ctx context.Context, by string) (int, error) {
	n := 0
	err := s.update(ctx, "reschedule", func(tx *bolt.Tx) error {
		if err := s.roomForAudit(tx); err != nil {
			return err
		}
		type change struct {
			b    *bolt.Bucket
			k, v []byte
		}
		var changed []change
		err := forEachItem(tx, func(it Item, sealed []byte) error {
			if it.State != QueuePending || it.NextAttempt.IsZero() {
				return nil
			}
			it.NextAttempt = time.Time{}
			nv, err := encodeItem(it, sealed)
			if err != nil {
				return err
			}
			changed = append(changed, change{kindBucket(tx, it.Kind), it.ID.key(), nv})
			return nil
		})
		if err != nil {
			return err
		}
		n = len(changed)
		if err := s.linkTx(ctx, tx, operatorLink(by, "flush", fmt.Sprintf("%d pending items made due", n))); err != nil {
			return err
		}
		for _, c := range changed {
			if err := s.putLinked(ctx, tx, c.b, c.k, c.v, jsonLink{Kind: "flush", Ref: queueRef(QueueID(binary.BigEndian.Uint64(c.k)))}); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// CanSeal reports whether the Store has a Sealer, so that items may carry sensitive data.
func (s *Store) CanSeal() bool { return s.sealer != nil }

// ItemView is a queued item as an operator sees it (posctl saf list): masked, without its
// payload or card data. It is the JSON form of posd's queue listing.
//
// A plain value: safe for concurrent use when not modified.
type ItemView struct {
	ID          uint64    `json:"id"`
	TxnID       uint64    `json:"txn"`
	Kind        string    `json:"kind"`
	STAN        uint32    `json:"stan"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	Created     time.Time `json:"created"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	ParkedBy    string    `json:"parked_by,omitempty"`
	ParkReason  string    `json:"park_reason,omitempty"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	MaskedPAN   string    `json:"masked_pan"`
	// FirstSent is field 7 of its first send (zero: never sent); After, the queue item it
	// waits for (the advice a reversal undoes), 0 when none.
	FirstSent time.Time `json:"first_sent,omitzero"`
	After     uint64    `json:"after,omitempty"`
}

// View returns the operator's view of it.
func (it Item) View() ItemView {
	return ItemView{uint64(it.ID), uint64(it.TxnID), string(it.Kind), it.STAN, string(it.State), it.Attempts,
		it.Created, it.NextAttempt, it.LastError, it.ParkedBy, it.ParkReason, it.AmountMinor, it.Currency, it.MaskedPAN,
		it.FirstSent, uint64(it.After)}
}

// PendingReversals counts the reversals still to be sent (not parked, and not held back
// by the advice they undo: that advice must go first). It reads the reversal bucket only,
// which is small, so a drain may ask before every window.
func (s *Store) PendingReversals(ctx context.Context) (int, error) {
	n := 0
	err := s.view(ctx, "pending reversals", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueueRev).ForEach(func(k, v []byte) error {
			p, err := peekItem(k, v)
			if err != nil {
				return err
			}
			if p.waiting(tx) {
				n++
			}
			return nil
		})
	})
	return n, err
}
