package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
	Host        string     `json:"host,omitempty"`
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
		FirstSent: j.FirstSent, Sending: j.Sending, Reverses: j.Reverses, After: j.After, Host: j.Host}
	return it, j.Sealed, nil
}

func encodeItem(it Item, sealed []byte) ([]byte, error) {
	return json.Marshal(jsonItem{V: queueRecordVersion, TxnID: it.TxnID, Kind: it.Kind, STAN: it.STAN, State: it.State,
		Attempts: it.Attempts, Created: it.Created, NextAttempt: it.NextAttempt, LastError: redactDigitRuns(it.LastError),
		ParkedBy: it.ParkedBy, ParkReason: redactDigitRuns(it.ParkReason), AmountMinor: it.AmountMinor, Currency: it.Currency,
		MaskedPAN: it.MaskedPAN, Payload: it.Payload, Sealed: sealed, FirstSent: it.FirstSent, Sending: it.Sending,
		Reverses: it.Reverses, After: it.After, Host: it.Host})
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

// lookupItem is findItem for an item the caller read earlier in this window (known, nil
// when not): when the file still holds the value it was read from, byte for byte, it is
// taken as it was decoded then, without decoding it again.
func lookupItem(tx *bolt.Tx, id QueueID, known *storedItem) (*bolt.Bucket, Item, []byte, error) {
	if known != nil && known.it.ID == id {
		b := kindBucket(tx, known.it.Kind)
		if v := b.Get(id.key()); v != nil && bytes.Equal(v, known.value) {
			return b, known.it, known.sealed, nil
		}
	}
	return findItem(tx, id)
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
