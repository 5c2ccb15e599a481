package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotVoidable means the transaction is not an approved one, is voided already, or cannot
// be undone by posd (its error says why and what an operator must do).
var ErrNotVoidable = errors.New("transaction cannot be voided")

// mtiAdvice is the MTI of an advice's first transmission: what field 90 of its reversal
// names, whichever of 0220 and 0221 reached the host (a host takes a repeat for the
// message it repeats).
const mtiAdvice = "0220"

// VoidReport says how Store.Void undoes a transaction.
//
// A plain value: safe for concurrent use when not modified.
type VoidReport struct {
	// Withdrawn: the transaction's advice (an offline approval's, or an authorization's
	// completion) had never been marked sending, so it was removed from the queue.
	Withdrawn bool
	// Reversals is how many reversals were queued: 0 only for a withdrawn offline approval,
	// which nothing at the host knows of.
	Reversals int
	// Held: one of them undoes an advice that may be on its way and waits for it to be
	// acknowledged (Item.After).
	Held bool
}

// Void cancels the approved transaction id at the till's request, in one commit: the
// outcome notes who voided it and when, and what the host may hold of it is reversed.
//
// The rule, for a transaction whose advice is queued or was sent (an offline approval's
// 0220, or the 0220 completion of an 0100):
//   - an advice never marked sending (Item.FirstSent zero, no attempt) never left posd: it
//     is withdrawn, and nothing is reversed for it;
//   - an advice acknowledged by the host, or that may have been sent, is reversed: a copy
//     of reversal whose Reverses names the advice as sent (0220, the advice's STAN, its
//     first field 7). While the advice is still queued that reversal is held (After) until
//     the advice leaves the queue, and the advice is still sent, as a repeat if it must
//     be: so the reversal never reaches the host before the advice it undoes, where a host
//     would answer "no original" and then book the advice.
//
// The original request is reversed (reversal itself) when the host approved it (an
// online approval, 0200 or 0100). An offline approval's original was not approved by the
// host: if it may have reached the host, its reversal was queued with the outcome.
//
// Each reversal goes to a host (Item.Host) of its own: the original request's reversal to
// reversal.Host, the caller's (the host the request went to: Intent.Host); an advice's
// reversal to the host the advice went to (its Item.Host while queued, its
// Settlement.Host once acknowledged).
//
// reversal describes the transaction (amount, terminal) for the message builder; it may be
// nil only if nothing is to be reversed (Void then returns ErrInvalid and changes nothing
// when something is). Each reversal queued takes a STAN in the same commit, except that
// the first keeps reversal.STAN when it is set.
func (s *Store) Void(ctx context.Context, id TxnID, by string, reversal *Item) (VoidReport, error) {
	if reversal != nil {
		reversal.TxnID = id
		if err := s.checkItem(*reversal); err != nil {
			return VoidReport{}, fmt.Errorf("store: void %d: %w", id, err)
		}
	}
	now := s.now()
	var rep VoidReport
	err := s.update(ctx, fmt.Sprintf("void %d", id), func(tx *bolt.Tx) error {
		rep = VoidReport{}
		rec, err := getRecord(tx, id)
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
		adv, err := adviceOf(tx, id)
		if err != nil {
			return err
		}
		var sent *Sent // the advice to reverse, as it was sent
		var after QueueID
		var advHost string // the host the advice went to, where its reversal goes
		switch {
		case adv != nil && adv.FirstSent.IsZero() && adv.Attempts == 0 && !adv.Sending:
			if err := recount(tx, tx.Bucket(bucketQueueAdv), adv.ID.key(), nil); err != nil {
				return err
			}
			if err := s.deleteLinked(ctx, tx, tx.Bucket(bucketQueueAdv), adv.ID.key(), jsonLink{Kind: "withdraw", Ref: queueRef(adv.ID)}); err != nil {
				return err
			}
			rep.Withdrawn = true
		case adv != nil:
			if adv.FirstSent.IsZero() {
				return fmt.Errorf("%w: its advice (queue item %d) was sent before posd recorded transmission times, so its reversal cannot name it: settle it with the acquirer", ErrNotVoidable, adv.ID)
			}
			sent, after, advHost = &Sent{MTI: mtiAdvice, STAN: adv.STAN, Time: adv.FirstSent}, adv.ID, adv.Host
		case out.Advised != nil:
			if out.Advised.TransmissionTime.IsZero() {
				return fmt.Errorf("%w: its advice was acknowledged before posd recorded transmission times, so its reversal cannot name it: settle it with the acquirer", ErrNotVoidable)
			}
			sent, advHost = &Sent{MTI: mtiAdvice, STAN: out.Advised.STAN, Time: out.Advised.TransmissionTime}, out.Advised.Host
		case out.State == StateApprovedOffline:
			return fmt.Errorf("%w: its advice is neither queued nor acknowledged (an operator deleted it): settle it with the acquirer", ErrNotVoidable)
		}
		var items []Item
		if out.State == StateApproved {
			items = append(items, *reversal0(reversal))
		}
		if sent != nil {
			r := *reversal0(reversal)
			// It goes where the advice went, not where the original request did: "" when
			// that is not known yet (an advice on its way whose send has not reached a
			// host), and then the sender asks the journal once the advice has settled.
			r.Reverses, r.After, r.Host = sent, after, advHost
			if len(items) > 0 {
				r.STAN = 0 // a message of its own
			}
			items = append(items, r)
			rep.Held = after != 0
		}
		if len(items) > 0 && reversal == nil {
			return fmt.Errorf("%w: a reversal is needed and none was given", ErrInvalid)
		}
		for i := range items {
			if items[i].STAN == 0 {
				if items[i].STAN, err = s.stanTx(tx); err != nil {
					return err
				}
			}
		}
		if _, err := s.enqueueTx(ctx, tx, items, now); err != nil {
			return err
		}
		rep.Reversals = len(items)
		out.Voided = &Void{Time: now, By: by, Withdrawn: len(items) == 0}
		l := operatorLink(by, "void", fmt.Sprintf("transaction %d (STAN %06d, %d %s, %s): %s", id, rec.Intent.STAN, rec.Intent.AmountMinor, rec.Intent.Currency, rec.Intent.MaskedPAN, rep.how()))
		l.Time = now.UTC()
		return s.putRecord(ctx, tx, rec, l)
	})
	return rep, err
}

// reversal0 returns r, or an empty item when r is nil (Void then refuses to queue it).
func reversal0(r *Item) *Item {
	if r == nil {
		return &Item{}
	}
	return r
}

// how says in words what the void did, for the audit chain.
func (r VoidReport) how() string {
	switch {
	case r.Reversals == 0:
		return "unsent offline advice withdrawn"
	case r.Withdrawn:
		return fmt.Sprintf("unsent completion withdrawn, %d reversal(s) queued", r.Reversals)
	case r.Held:
		return fmt.Sprintf("%d reversal(s) queued, one held until its advice is acknowledged", r.Reversals)
	}
	return fmt.Sprintf("%d reversal(s) queued", r.Reversals)
}

// adviceOf returns the queued advice of transaction id, nil when none is queued.
func adviceOf(tx *bolt.Tx, id TxnID) (*Item, error) {
	c := tx.Bucket(bucketQueueAdv).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			return nil, fmt.Errorf("queue key of %d bytes: %w", len(k), ErrCorrupt)
		}
		it, _, err := decodeItem(QueueID(binary.BigEndian.Uint64(k)), v)
		if err != nil {
			return nil, err
		}
		if it.TxnID == id {
			return &it, nil
		}
	}
	return nil, nil
}

// stanTx takes the next STAN for a message queued inside tx, the counter written in the
// same commit. The counter moves in memory at once: if the commit fails the STAN is
// skipped, never handed out twice. s.mu held, the log folded (see update).
func (s *Store) stanTx(tx *bolt.Tx) (uint32, error) {
	s.stan = s.peekSTAN()
	return s.stan, putSTAN(tx, s.stan)
}
