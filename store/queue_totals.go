package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The queue's totals are kept, not recomputed: a record in the counters bucket that every
// commit changing the queue updates in the same commit (recount), so that start-up and an
// offline decision read one key, not the whole queue. A file without it (written by an
// older release) gets it at Open, counted once (countQueue).

var keyQueueTotals = []byte("queue-totals")

// jsonTotals is the kept record. Field names are part of the file format.
type jsonTotals struct {
	V                 int   `json:"v"`
	Reversals         int   `json:"reversals"`
	Advices           int   `json:"advices"`
	Parked            int   `json:"parked"`
	AdviceAmountMinor int64 `json:"advice_amount_minor"`
}

const totalsVersion = 1

// counted is what of a queued item its totals count.
type counted struct {
	Kind        Kind       `json:"kind"`
	State       QueueState `json:"state"`
	AmountMinor int64      `json:"amount_minor"`
	Created     time.Time  `json:"created"`
}

func peekCounted(v []byte) (counted, error) {
	var c counted
	if err := json.Unmarshal(v, &c); err != nil {
		return c, fmt.Errorf("queued item: %w: %w", ErrCorrupt, err)
	}
	return c, nil
}

// countedOf is what of it the totals count.
func countedOf(it Item) counted {
	return counted{Kind: it.Kind, State: it.State, AmountMinor: it.AmountMinor, Created: it.Created}
}

// add counts c into t, sign +1, or out of it, sign -1.
func (t *jsonTotals) add(c counted, sign int) {
	if c.State == QueueParked {
		t.Parked += sign
	}
	switch c.Kind {
	case KindReversal:
		t.Reversals += sign
	case KindAdvice:
		t.Advices += sign
		t.AdviceAmountMinor += int64(sign) * c.AmountMinor
	}
}

// readTotals returns the kept totals of tx, and false when the file has none (or they do
// not decode: they are then counted again).
func readTotals(tx *bolt.Tx) (jsonTotals, bool) {
	var t jsonTotals
	v := tx.Bucket(bucketCounters).Get(keyQueueTotals)
	if v == nil || json.Unmarshal(v, &t) != nil || t.V != totalsVersion {
		return jsonTotals{}, false
	}
	return t, true
}

func writeTotals(tx *bolt.Tx, t jsonTotals) error {
	t.V = totalsVersion
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketCounters).Put(keyQueueTotals, v)
}

// recount updates the kept totals for the change of the item at key in the kind bucket b to
// v (nil: its removal). Call it before the change is made, inside the same commit. A change
// that keeps the item's kind, state and amount (a send marked, a flush) needs none.
func recount(tx *bolt.Tx, b *bolt.Bucket, key, v []byte) error {
	t, ok := readTotals(tx)
	if !ok {
		return nil // counted whole at the next Open
	}
	if old := b.Get(key); old != nil {
		c, err := peekCounted(old)
		if err != nil {
			return fmt.Errorf("queue item %x: %w", key, err)
		}
		t.add(c, -1)
	}
	if v != nil {
		c, err := peekCounted(v)
		if err != nil {
			return fmt.Errorf("queue item %x: %w", key, err)
		}
		t.add(c, +1)
	}
	return writeTotals(tx, t)
}

// countQueue counts the queue of tx whole: at the first Open of a file without kept totals,
// after a salvage, and in Check.
func countQueue(tx *bolt.Tx) (jsonTotals, error) {
	t := jsonTotals{V: totalsVersion}
	err := forEachQueued(tx, func(k, v []byte) error {
		c, err := peekCounted(v)
		if err != nil {
			return fmt.Errorf("queue item %x: %w", k, err)
		}
		t.add(c, +1)
		return nil
	})
	return t, err
}

// oldestAdvice returns when the first queued advice (the lowest id) was queued: items are
// queued with the time of their queueing and ids in that order, so it is the oldest unless
// the clock was set back in between. Zero when there is none.
func oldestAdvice(tx *bolt.Tx) (time.Time, error) {
	k, v := tx.Bucket(bucketQueueAdv).Cursor().First()
	if k == nil {
		return time.Time{}, nil
	}
	c, err := peekCounted(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("queue item %x: %w", k, err)
	}
	return c.Created, nil
}
