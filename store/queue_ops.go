package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
		if err := recount(tx, q, id.key(), nv); err != nil {
			return err
		}
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
		if err := recount(tx, q, id.key(), nv); err != nil {
			return err
		}
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
		if err := recount(tx, q, id.key(), nil); err != nil {
			return err
		}
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
