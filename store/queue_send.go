package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Due returns up to limit pending items whose NextAttempt is not after now and that no
// other item holds back (Item.After): all due reversals first, then advices, each in queue
// order, with their sensitive data opened. An
// item whose data cannot be opened is parked (by "posd", with the reason) and not returned.
//
// kinds, when given, limits the result to those kinds; the other kind's bucket is not read,
// nor its items unsealed.
func (s *Store) Due(ctx context.Context, now time.Time, limit int, kinds ...Kind) ([]Item, error) {
	return s.DueAfter(ctx, now, 0, limit, kinds...)
}

// DueAfter is Due for the items after queue id after, in each kind's queue order: a
// forwarder with a window in flight (marked sending, not yet settled) asks for the items
// behind it, which Due would return again while they are unsettled. after 0: from the start.
func (s *Store) DueAfter(ctx context.Context, now time.Time, after QueueID, limit int, kinds ...Kind) ([]Item, error) {
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
			skipping := false
			c := kindBucket(tx, kind).Cursor()
			k, v := c.First()
			if after > 0 {
				if k, v = c.Seek((after + 1).key()); after == ^QueueID(0) {
					k = nil // nothing comes after the last id
				}
			}
			for ; k != nil; k, v = c.Next() {
				if limit > 0 && len(due) >= limit {
					return nil
				}
				if len(k) != 8 {
					return fmt.Errorf("queue key of %d bytes: %w", len(k), ErrCorrupt)
				}
				if skipping {
					// Peeked, not decoded (a peek costs most of a decode): items that
					// wait come in runs while the host is away.
					p, err := peekItem(k, v)
					if err != nil {
						return err
					}
					if p.NextAttempt.After(now) || !p.waiting(tx) {
						continue
					}
				}
				it, sealed, err := decodeItem(QueueID(binary.BigEndian.Uint64(k)), v)
				if err != nil {
					return err
				}
				// Due items come in runs too (a drain): decoded at once, without a peek,
				// until one turns out to wait.
				skipping = it.NextAttempt.After(now) || it.State != QueuePending || held(tx, it.After)
				if skipping {
					continue
				}
				due = append(due, raw{rememberStored(it, bytes.Clone(v), sealed), sealed})
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

// PendingReversals counts the reversals still to be sent (not parked, and not held back
// by the advice they undo: that advice must go first). It reads the reversal bucket, which
// is small, and the write-ahead log's records not yet folded, without folding them: a
// sale asks before every authorization, and its path must not write. (The log only ever
// adds queued items, with an outcome; every other change to the queue is a direct commit,
// which folds the log first. So the two together are exactly what is queued.)
func (s *Store) PendingReversals(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: pending reversals: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("store: pending reversals: %w", ErrClosed)
	}
	n := 0
	for _, e := range s.pending {
		for _, it := range e.op.Items {
			if it.Kind == KindReversal {
				n++ // queued with an outcome: pending, held by nothing
			}
		}
	}
	err := s.dbView(func(tx *bolt.Tx) error {
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
	return n, s.wrap("pending reversals", err)
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
	// Host is the acquirer host the attempt went to. Settle records it on an item that
	// has none and was reached, so that its repeats go to the same host. Default "".
	Host string
	read *storedItem // see Item.Result
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
		var lb linkedBatch // one link for the window, naming every item marked
		for _, in := range items {
			q, it, sealed, err := lookupItem(tx, in.ID, in.read)
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
			if err := lb.put(q, it.ID.key(), nv, queueRef(it.ID)); err != nil {
				return err
			}
			it = rememberStored(it, nv, sealed)
			it.Sensitive = in.Sensitive
			marked = append(marked, it)
		}
		return s.linkBatch(ctx, tx, "sending", &lb)
	})
	if err != nil {
		return nil, err
	}
	return marked, nil
}

// Settle applies the results of a batch of sends in one commit (group commit): one fsync
// for the whole window, not one per message, and one audit link naming every item and
// journal record it changed. A journal record that several results settle (a reversal and
// an advice of one sale) is read and written once.
func (s *Store) Settle(ctx context.Context, results []Result) error {
	if len(results) == 0 {
		return nil
	}
	return s.update(ctx, "settle queue", func(tx *bolt.Tx) error {
		// The kept totals, read and written once for the window (not once per item: a
		// window of 32 made the drain spend a fifth of its time on them).
		totals, kept := readTotals(tx)
		changed := false
		var lb linkedBatch
		var notes settledRecords
		for _, r := range results {
			q, it, sealed, err := lookupItem(tx, r.ID, r.read)
			if errors.Is(err, ErrNotFound) {
				// Settled already (a duplicate answer, or an operator deleted it).
				continue
			}
			if err != nil {
				return err
			}
			if r.Acked {
				totals.add(countedOf(it), -1)
				changed = true
				if err := lb.delete(q, r.ID.key(), queueRef(r.ID)); err != nil {
					return err
				}
				if err := notes.note(tx, it, r); err != nil {
					return err
				}
				continue
			}
			if r.Reached {
				it.Attempts++
				if it.Host == "" {
					it.Host = r.Host
				}
			}
			it.Sending = false
			it.LastError = r.Err
			it.NextAttempt = r.Next
			if r.Park {
				totals.add(countedOf(it), -1) // a retry keeps kind, state and amount; a park does not
				it.State, it.ParkedBy, it.ParkReason = QueueParked, "posd", "retries exhausted: "+r.Err
				totals.add(countedOf(it), +1)
				changed = true
			}
			nv, err := encodeItem(it, sealed)
			if err != nil {
				return err
			}
			if err := lb.put(q, r.ID.key(), nv, queueRef(r.ID)); err != nil {
				return err
			}
		}
		if err := notes.write(tx, &lb); err != nil {
			return err
		}
		if err := s.linkBatch(ctx, tx, "settle", &lb); err != nil {
			return err
		}
		if kept && changed {
			return writeTotals(tx, totals)
		}
		return nil // without kept totals, the next Open counts the queue whole
	})
}

// settledRecords are the journal records one Settle notes acknowledgements on, each read
// once and written once. Not safe for concurrent use; it lives for one transaction.
type settledRecords struct {
	order []TxnID
	recs  map[TxnID]*Record
}

// note records on the journal record of it that it was acknowledged (r).
func (n *settledRecords) note(tx *bolt.Tx, it Item, r Result) error {
	rec, ok := n.recs[it.TxnID]
	if !ok {
		got, err := getRecord(tx, it.TxnID)
		if errors.Is(err, ErrNotFound) {
			return nil // the record is gone; nothing to note (Check reports it)
		}
		if err != nil {
			return err
		}
		if n.recs == nil {
			n.recs = map[TxnID]*Record{}
		}
		rec = &got
		n.recs[it.TxnID] = rec
		n.order = append(n.order, it.TxnID)
	}
	if rec.Outcome == nil {
		return nil
	}
	host := it.Host // where its repeats went; else where this send went
	if host == "" {
		host = r.Host
	}
	switch it.Kind {
	case KindReversal:
		rec.Outcome.Reversed = &Settlement{Time: r.Time, ResponseCode: r.ResponseCode, STAN: it.STAN, Host: host}
	case KindAdvice:
		// The advice as sent (its STAN, first field 7 and host): what the reversal of a
		// void names in field 90, and where it goes.
		rec.Outcome.Advised = &Settlement{Time: r.Time, ResponseCode: r.ResponseCode, STAN: it.STAN, TransmissionTime: it.FirstSent, Host: host}
	}
	return nil
}

// write writes the noted records back in tx, in the order first noted, for lb's link to
// name.
func (n *settledRecords) write(tx *bolt.Tx, lb *linkedBatch) error {
	j := tx.Bucket(bucketJournal)
	for _, id := range n.order {
		rec := n.recs[id]
		if rec.Outcome == nil {
			continue
		}
		nv, err := encodeRecord(rec.Intent, rec.Outcome)
		if err != nil {
			return err
		}
		if err := lb.put(j, id.key(), nv, txnRef(id)); err != nil {
			return err
		}
	}
	return nil
}
