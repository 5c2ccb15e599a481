package store

import (
	"context"
	"encoding/binary"
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
	// Host is the acquirer host (host:port) the message must go to when the terminal has
	// backup hosts: the host that got the original request (a reversal, a completion), or
	// the one the item's first send went to (recorded by Settle from Result.Host), so that
	// its repeats go there too. "" : not recorded, any host.
	Host string
	// read is the item as Due read it or MarkSending wrote it (nil: not known), so that the
	// next write of the same window need not decode it again: it is used only while the
	// stored value is, byte for byte, the one it holds.
	read *storedItem
}

// storedItem is a queued item's stored value and what it decodes to.
type storedItem struct {
	value  []byte // as stored: a copy, not bbolt's memory
	it     Item   // decoded from value: without Sensitive, read nil
	sealed []byte
}

// rememberStored returns it with its stored value v, which it keeps (the caller's copy,
// never bbolt's memory), and its sealed data.
func rememberStored(it Item, v, sealed []byte) Item {
	it.read = nil
	kept := it
	kept.Sensitive = nil
	it.read = &storedItem{value: v, it: kept, sealed: sealed}
	return it
}

// Result returns the result of a send of it at t, for the caller to fill in and Settle to
// apply. Settle then takes the item as MarkSending wrote it, while the file still holds
// that, instead of decoding it again; a Result{ID: it.ID} works as well, at that cost.
func (it Item) Result(t time.Time) Result {
	return Result{ID: it.ID, Time: t, read: it.read}
}

// Sent names a message as it was first sent: what field 90 of its reversal carries.
//
// A plain value: safe for concurrent use when not modified.
type Sent struct {
	MTI  string    `json:"mti"`  // of its first transmission, e.g. "0220"
	STAN uint32    `json:"stan"` // its field 11
	Time time.Time `json:"time"` // its field 7
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
		if err := recount(tx, kindBucket(tx, it.Kind), id.key(), v); err != nil {
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

// CanSeal reports whether the Store has a Sealer, so that items may carry sensitive data.
func (s *Store) CanSeal() bool { return s.sealer != nil }

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

// Totals sums the queue: what posd holds for the host. Offline limits use the advices.
//
// A plain value: safe for concurrent use when not modified.
type Totals struct {
	Reversals, Advices, Parked int
	AdviceAmountMinor          int64     // sum of pending and parked advices
	OldestAdvice               time.Time // zero when there is none
}

// QueueTotals returns the queue's totals. They are kept in the file, updated with every
// change to the queue, and the write-ahead log's records not yet folded are added: it reads
// a few keys, not the queue, and does not fold the log (an offline decision asks on a
// sale's path). OldestAdvice is when the first queued advice still queued was queued.
func (s *Store) QueueTotals(ctx context.Context) (Totals, error) {
	if err := ctx.Err(); err != nil {
		return Totals{}, fmt.Errorf("store: queue totals: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Totals{}, fmt.Errorf("store: queue totals: %w", ErrClosed)
	}
	var t jsonTotals
	var oldest time.Time
	err := s.dbView(func(tx *bolt.Tx) error {
		var ok bool
		if t, ok = readTotals(tx); !ok {
			var err error
			if t, err = countQueue(tx); err != nil {
				return err
			}
		}
		var err error
		oldest, err = oldestAdvice(tx)
		return err
	})
	if err != nil {
		return Totals{}, s.wrap("queue totals", err)
	}
	for _, e := range s.pending {
		for _, it := range e.op.Items { // queued with an outcome: pending, after those in the file
			c, err := peekCounted(it.Value)
			if err != nil {
				return Totals{}, s.wrap("queue totals", err)
			}
			t.add(c, +1)
			if c.Kind == KindAdvice && oldest.IsZero() {
				oldest = c.Created
			}
		}
	}
	return Totals{Reversals: t.Reversals, Advices: t.Advices, Parked: t.Parked, AdviceAmountMinor: t.AdviceAmountMinor, OldestAdvice: oldest}, nil
}

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
