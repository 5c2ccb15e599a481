package store

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Problem is one thing Check found wrong, with what to do about it.
//
// A plain value: safe for concurrent use when not modified.
type Problem struct {
	What string
	Do   string
}

func (p Problem) String() string { return p.What + ": " + p.Do }

// Report is the result of Check.
//
// A plain value: safe for concurrent use when not modified.
type Report struct {
	Records, Open, Queued, Parked, AuditEntries int
	// Audit is the verification of the audit chain (see Store.VerifyAudit).
	Audit    AuditReport
	Problems []Problem
}

// OK reports whether Check found nothing wrong.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Check verifies the file (every page walked safely, then bbolt's own page check) and the
// store's invariants: every record decodes and has a valid state; the open index holds
// exactly the records without an outcome; every queued item decodes, names a journal
// record and carries no unmasked PAN; the audit chain verifies (Store.VerifyAudit). It
// reads only.
func (s *Store) Check(ctx context.Context) (Report, error) {
	var r Report
	add := func(what, do string) { r.Problems = append(r.Problems, Problem{what, do}) }
	salvage := fmt.Sprintf("stop posd and run `posd store salvage --path %s --out NEWFILE`: it copies everything readable into a new file and lists what is lost", s.path)
	keep := "; keep this file (do not delete it while it may hold queued messages), or restore it from backup"
	err := s.view(ctx, "check", func(tx *bolt.Tx) error {
		// Open checked only the pages start-up reads: walk every page now, safely, before
		// bbolt's own check (which panics, in a goroutine of its own, on some damage). The
		// read transaction keeps the pages walked from being reused meanwhile.
		if err := probePages(ctx, s.path); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			add("page check: "+err.Error(), salvage+keep)
			return nil
		}
		for err := range tx.Check() {
			add("bbolt page check: "+err.Error(), salvage+keep)
		}
		j, open := tx.Bucket(bucketJournal), tx.Bucket(bucketOpen)
		err := j.ForEach(func(k, v []byte) error {
			r.Records++
			if len(k) != 8 {
				add(fmt.Sprintf("journal key of %d bytes", len(k)), salvage+"; or restore the file from backup")
				return nil
			}
			id := TxnID(binary.BigEndian.Uint64(k))
			rec, err := decodeRecord(id, v)
			if err != nil {
				add(err.Error(), "this record cannot be read: "+salvage+"; or restore the file from backup")
				return nil
			}
			isOpen := open.Get(k) != nil
			switch {
			case rec.Outcome == nil && !isOpen:
				add(fmt.Sprintf("record %d has no outcome and is not in the open index", id), "restart posd: it marks open records outcome-unknown and reverses them")
			case rec.Outcome != nil && isOpen:
				add(fmt.Sprintf("record %d has an outcome but is in the open index", id), "report this to support; the record itself is complete")
			case rec.Outcome != nil && !rec.Outcome.State.final():
				add(fmt.Sprintf("record %d has the non-final state %q", id, rec.Outcome.State), salvage+" (the record is copied as open, and reversed at start); or restore the file from backup")
			}
			if longestDigitRun(rec.Intent.MaskedPAN) > maxDigitRun {
				add(fmt.Sprintf("record %d holds an unmasked PAN", id), "the file holds card data in the clear: report it as a security incident")
			}
			if rec.Outcome == nil {
				r.Open++
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = open.ForEach(func(k, _ []byte) error {
			if j.Get(k) == nil {
				add(fmt.Sprintf("open index names record %x that is not in the journal", k), "report this to support")
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, b := range []*bolt.Bucket{tx.Bucket(bucketQueueRev), tx.Bucket(bucketQueueAdv)} {
			err = b.ForEach(func(k, v []byte) error {
				r.Queued++
				id := QueueID(binary.BigEndian.Uint64(k))
				it, _, err := decodeItem(id, v)
				if err != nil {
					add(err.Error(), "this queued message cannot be read: keep the file and report it; do not delete it before the acquirer confirms; "+salvage)
					return nil
				}
				if it.State == QueueParked {
					r.Parked++
					add(fmt.Sprintf("queue item %d (%s of transaction %d) is parked: %s", id, it.Kind, it.TxnID, it.ParkReason), "fix the cause, then `posctl saf unpark` it; or settle it with the acquirer and `posctl saf delete` it")
				}
				if j.Get(it.TxnID.key()) == nil {
					add(fmt.Sprintf("queue item %d names transaction %d, which is not in the journal", id, it.TxnID), "report this to support; the item is kept")
				}
				if longestDigitRun(it.MaskedPAN) > maxDigitRun {
					add(fmt.Sprintf("queue item %d holds an unmasked PAN", id), "the file holds card data in the clear: report it as a security incident")
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if kept, ok := readTotals(tx); ok {
			if counted, err := countQueue(tx); err == nil && counted != kept {
				add(fmt.Sprintf("the kept queue totals (%+v) differ from the queue (%+v)", kept, counted), "report this to support; the queue itself is kept (offline limits use these totals)")
			}
		}
		r.AuditEntries = tx.Bucket(bucketAudit).Stats().KeyN
		ar, err := verifyChain(ctx, tx, s.auditor, nil)
		if err != nil {
			return err
		}
		r.Audit = ar
		if ar.Broken != nil {
			add(fmt.Sprintf("audit link %d breaks the hash chain: %s (%d problem(s) in all)", ar.Broken.Seq, ar.Broken.What, ar.Problems),
				"the journal, the queue or the audit chain was altered behind posd's back: keep the file as evidence and report it as a security incident; `posd audit verify` names the first broken link")
		}
		return nil
	})
	return r, err
}
