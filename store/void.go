package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotVoidable means the transaction is not an approved one, or is voided already.
var ErrNotVoidable = errors.New("transaction cannot be voided")

// Void cancels the approved transaction id at the till's request, in one commit: the
// outcome notes who voided it and when; an offline approval whose advice was never sent
// has the advice withdrawn from the queue (nothing reached the host); anything else gets
// reversal queued. It reports whether the advice was withdrawn. reversal may be nil only if
// the caller knows the advice is unsent; when a reversal is needed and reversal is nil,
// Void returns ErrInvalid and changes nothing.
func (s *Store) Void(ctx context.Context, id TxnID, by string, reversal *Item) (withdrawn bool, err error) {
	if reversal != nil {
		reversal.TxnID = id
		if err := s.checkItem(*reversal); err != nil {
			return false, fmt.Errorf("store: void %d: %w", id, err)
		}
	}
	now := s.now()
	err = s.update(ctx, fmt.Sprintf("void %d", id), func(tx *bolt.Tx) error {
		j := tx.Bucket(bucketJournal)
		v := j.Get(id.key())
		if v == nil {
			return ErrNotFound
		}
		rec, err := decodeRecord(id, v)
		if err != nil {
			return err
		}
		out := rec.Outcome
		switch {
		case out == nil || (out.State != StateApproved && out.State != StateApprovedOffline):
			state := StateIntent
			if out != nil {
				state = out.State
			}
			return fmt.Errorf("%w: it is %s, not approved", ErrNotVoidable, state)
		case out.Voided != nil:
			return fmt.Errorf("%w: voided already by %s at %s", ErrNotVoidable, out.Voided.By, out.Voided.Time.Format(time.RFC3339))
		}
		if out.State == StateApprovedOffline {
			adv := tx.Bucket(bucketQueueAdv)
			c := adv.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				it, _, err := decodeItem(QueueID(binary.BigEndian.Uint64(k)), v)
				if err != nil {
					return err
				}
				if it.TxnID == id && it.Attempts == 0 {
					if err := adv.Delete(k); err != nil {
						return err
					}
					withdrawn = true
					break
				}
			}
		}
		if !withdrawn {
			if reversal == nil {
				return fmt.Errorf("%w: a reversal is needed and none was given", ErrInvalid)
			}
			if _, err := s.enqueueTx(ctx, tx, []Item{*reversal}, now); err != nil {
				return err
			}
		}
		out.Voided = &Void{Time: now, By: by, Withdrawn: withdrawn}
		nv, err := encodeRecord(rec.Intent, out)
		if err != nil {
			return err
		}
		if err := j.Put(id.key(), nv); err != nil {
			return err
		}
		how := "reversal queued"
		if withdrawn {
			how = "unsent offline advice withdrawn"
		}
		return appendAudit(tx, now, by, "void", fmt.Sprintf("transaction %d (STAN %06d, %d %s, %s): %s", id, rec.Intent.STAN, rec.Intent.AmountMinor, rec.Intent.Currency, rec.Intent.MaskedPAN, how))
	})
	return withdrawn, err
}
