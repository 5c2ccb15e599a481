package store

// Batches: which batch is open, which records belong to a batch, and the journal of a
// batch's close.
//
// Every record belongs to the batch that was open when its outcome was recorded
// (Outcome.Batch, set by FinishAndQueue in the same write: no extra write on a sale's
// path). The fold indexes it in the batch-index bucket. A close is journaled like a sale:
// BeginClose records its intent (and moves the open batch on, so that nothing finished
// afterwards can join the batch being closed), FinishClose its outcome; each is one bbolt
// commit with its link in the audit chain (Ref "batch/N"). The open batch is the one after
// the newest batch whose close began, so it needs no counter of its own.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BatchState is the state of a batch's close.
//
// A plain value: safe for concurrent use when not modified.
type BatchState string

// States of a batch. A batch with no close record is open.
const (
	BatchOpen    BatchState = "open"    // transactions join it
	BatchClosing BatchState = "closing" // its close began and has not ended: repeat it
	BatchClosed  BatchState = "closed"  // the host accepted its totals
)

// Difference is one transaction the host did not have, or had differently, found by a
// batch upload (the automatic reconciliation report).
//
// A plain value: safe for concurrent use when not modified.
type Difference struct {
	TxnID        TxnID  `json:"txn"`
	STAN         uint32 `json:"stan"`
	MaskedPAN    string `json:"masked_pan,omitempty"`
	AmountMinor  int64  `json:"amount_minor"`
	Kind         string `json:"kind"`          // the record's Intent.Kind
	ResponseCode string `json:"response_code"` // the host's answer to the upload
	What         string `json:"what"`          // in words: "missing at the host", ...
}

// Batch is a batch and its close, as journaled by [Store.BeginClose] and
// [Store.FinishClose]. Field tags are part of the file format.
//
// A plain value: safe for concurrent use when not modified.
type Batch struct {
	Number       uint64       `json:"number"`
	State        BatchState   `json:"state"`
	STAN         uint32       `json:"stan,omitempty"`     // of the first 0500 of the close
	Began        time.Time    `json:"began,omitzero"`     // when the close began
	Ended        time.Time    `json:"ended,omitzero"`     // when the host accepted it
	By           string       `json:"by,omitempty"`       // who asked for the close
	Attempts     int          `json:"attempts,omitempty"` // closes begun or repeated
	ResponseCode string       `json:"response_code,omitempty"`
	Uploaded     bool         `json:"uploaded,omitempty"` // the batch was uploaded (0320)
	Differences  []Difference `json:"differences,omitempty"`
	Summary      string       `json:"summary,omitempty"` // the totals sent, in words
}

// WireNumber is the batch number as a message carries it: 1 to 999999, then 1 again.
func (b Batch) WireNumber() uint32 { return uint32((b.Number-1)%999_999) + 1 }

// ErrNoClose means there is no close in progress to finish.
var ErrNoClose = errors.New("no batch close in progress")

func batchKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func batchRef(n uint64) string { return fmt.Sprintf("batch/%d", n) }

func batchIndexKey(n uint64, id TxnID) []byte {
	return binary.BigEndian.AppendUint64(batchKey(n), uint64(id))
}

// openBatch returns the open batch: the one after the newest batch whose close began.
func openBatch(tx *bolt.Tx) uint64 {
	k, _ := tx.Bucket(bucketBatches).Cursor().Last()
	if len(k) != 8 {
		return 1
	}
	return binary.BigEndian.Uint64(k) + 1
}

// OpenBatch returns the number of the open batch, the one that transactions finished now
// join.
func (s *Store) OpenBatch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batch
}

// BatchRecords calls fn for every record of batch n in ID order, from an index (it does not
// read the whole journal), and stops at fn's first error, which it returns. It reads in
// batches and calls fn outside any bbolt transaction.
func (s *Store) BatchRecords(ctx context.Context, n uint64, fn func(Record) error) error {
	prefix := batchKey(n)
	after := prefix
	for {
		recs := make([]Record, 0, recordsBatch)
		err := s.view(ctx, "batch records", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketBatchIdx).Cursor()
			k, _ := c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, _ = c.Next()
			}
			for ; k != nil && bytes.HasPrefix(k, prefix) && len(recs) < recordsBatch; k, _ = c.Next() {
				if len(k) != 16 {
					return fmt.Errorf("batch index key of %d bytes: %w", len(k), ErrCorrupt)
				}
				id := TxnID(binary.BigEndian.Uint64(k[8:]))
				rec, err := getRecord(tx, id)
				if err != nil {
					return fmt.Errorf("record %d is in the batch index: %w", id, err)
				}
				recs = append(recs, rec)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(recs) < recordsBatch {
			return nil
		}
		after = batchIndexKey(n, recs[len(recs)-1].ID)
	}
}

// Batches returns the batches whose close began, oldest first.
func (s *Store) Batches(ctx context.Context) ([]Batch, error) {
	var out []Batch
	err := s.view(ctx, "batches", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBatches).ForEach(func(k, v []byte) error {
			b, err := decodeBatch(k, v)
			if err != nil {
				return err
			}
			out = append(out, b)
			return nil
		})
	})
	return out, err
}

// PendingClose returns the close in progress (state BatchClosing), if there is one.
func (s *Store) PendingClose(ctx context.Context) (Batch, bool, error) {
	var b Batch
	var ok bool
	err := s.view(ctx, "pending close", func(tx *bolt.Tx) error {
		var err error
		b, ok, err = pendingClose(tx)
		return err
	})
	return b, ok, err
}

func pendingClose(tx *bolt.Tx) (Batch, bool, error) {
	k, v := tx.Bucket(bucketBatches).Cursor().Last()
	if k == nil {
		return Batch{}, false, nil
	}
	b, err := decodeBatch(k, v)
	if err != nil || b.State != BatchClosing {
		return Batch{}, false, err
	}
	return b, true, nil
}

func decodeBatch(k, v []byte) (Batch, error) {
	if len(k) != 8 {
		return Batch{}, fmt.Errorf("batch key of %d bytes: %w", len(k), ErrCorrupt)
	}
	var b Batch
	if err := jsonUnmarshalStrict(v, &b); err != nil {
		return Batch{}, fmt.Errorf("batch %d: %w: %w", binary.BigEndian.Uint64(k), ErrCorrupt, err)
	}
	return b, nil
}

// BeginClose journals the intent to close the open batch, durably, before its 0500 goes
// out: it takes a STAN for the 0500 and moves the open batch on in the same commit, so that
// transactions finished from now on join the next batch. When a close is already in
// progress (a crash or a failure left it), BeginClose returns that one instead, with
// resumed true and its Attempts counted: the caller repeats it. by names who asked.
func (s *Store) BeginClose(ctx context.Context, by string) (b Batch, resumed bool, err error) {
	err = s.update(ctx, "begin close", func(tx *bolt.Tx) error {
		var ok bool
		if b, ok, err = pendingClose(tx); err != nil {
			return err
		}
		if ok {
			resumed = true
		} else {
			if len(s.open) > 0 {
				// A record still open would finish into the next batch while the host may
				// count it in this one: the caller resolves it first.
				return fmt.Errorf("%d transaction(s) without an outcome: %w", len(s.open), ErrInvalid)
			}
			b = Batch{Number: s.batch, State: BatchClosing, Began: s.now().UTC(), By: by}
			if b.STAN, err = s.stanTx(tx); err != nil {
				return err
			}
			s.batch = b.Number + 1 // s.mu held: no outcome can be recorded in between
		}
		b.Attempts++
		return s.putBatch(ctx, tx, b, jsonLink{Kind: "close-begin", Who: by,
			Detail: fmt.Sprintf("batch %d, attempt %d", b.Number, b.Attempts)})
	})
	if err != nil && !resumed && b.Number != 0 {
		s.mu.Lock()
		s.batch = b.Number // the commit failed: the batch is still open
		s.mu.Unlock()
	}
	return b, resumed, err
}

// FinishClose journals the end of the close of batch b.Number (state BatchClosed, with the
// host's answer, whether it was uploaded and the differences found), with an entry in the
// audit log that names them. It returns an error wrapping ErrNoClose when that batch is not
// being closed.
func (s *Store) FinishClose(ctx context.Context, b Batch) error {
	b.Differences = append([]Difference(nil), b.Differences...)
	for i := range b.Differences {
		if longestDigitRun(b.Differences[i].MaskedPAN) > maxDigitRun {
			return fmt.Errorf("store: finish close: %w", ErrUnmaskedPAN)
		}
	}
	return s.update(ctx, "finish close", func(tx *bolt.Tx) error {
		cur, ok, err := pendingClose(tx)
		if err != nil {
			return err
		}
		if !ok || cur.Number != b.Number {
			return fmt.Errorf("batch %d: %w", b.Number, ErrNoClose)
		}
		cur.State, cur.Ended = BatchClosed, s.now().UTC()
		cur.ResponseCode, cur.Uploaded, cur.Differences, cur.Summary = b.ResponseCode, b.Uploaded, b.Differences, redactDigitRuns(b.Summary)
		detail := fmt.Sprintf("batch %d closed (%s), response %s", cur.Number, cur.Summary, cur.ResponseCode)
		if cur.Uploaded {
			detail += fmt.Sprintf(", uploaded, %d difference(s)", len(cur.Differences))
			for _, d := range cur.Differences {
				detail += fmt.Sprintf("; txn %d stan %06d %d: %s", d.TxnID, d.STAN, d.AmountMinor, d.What)
			}
		}
		return s.putBatch(ctx, tx, cur, jsonLink{Kind: "close", Who: cur.By, Detail: redactDigitRuns(detail)})
	})
}

// putBatch writes b with its link l. s.mu held (inside update).
func (s *Store) putBatch(ctx context.Context, tx *bolt.Tx, b Batch, l jsonLink) error {
	v, err := json.Marshal(b)
	if err != nil {
		return err
	}
	if l.Who == "" {
		l.Who = "posd"
	}
	l.Ref = batchRef(b.Number)
	return s.putLinked(ctx, tx, tx.Bucket(bucketBatches), batchKey(b.Number), v, l)
}
