package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// A logOp is one write of the log: what a commit of the bbolt file would have done. Field
// names are part of the file format.
type logOp struct {
	Op      string          `json:"op"` // "begin", "finish" or "stan"
	Txn     TxnID           `json:"txn,omitempty"`
	STAN    uint32          `json:"stan,omitempty"`     // begin (when it took one), finish (when its items took some) and stan: the counter's new value
	Record  json.RawMessage `json:"record,omitempty"`   // begin: the journal record as the journal bucket holds it
	PANHash string          `json:"pan_hash,omitempty"` // begin: the record's, for the pan index
	Till    []string        `json:"till,omitempty"`     // begin: the till request's keys (tillKeys)
	Outcome *jsonOutcome    `json:"outcome,omitempty"`  // finish
	Items   []logItem       `json:"items,omitempty"`    // finish: queued with the outcome, sealed
	Links   []jsonLink      `json:"links,omitempty"`    // begin, finish: the audit chain's links of this write

	// finished is, on a finish this process wrote, the record's value with the outcome as
	// Finish made it for the record's audit link, so that the fold puts those bytes
	// without decoding and encoding the record again. Not in the log: a finish read back
	// after a crash has none, and the fold makes the value from the journal's record
	// (the same bytes: Finish made them from that record the same way).
	finished []byte
	// encoded is, on a begin, that Record was made by encodeRecord in this process (not
	// read back from a log): see finishedValue.
	encoded bool
	// outcomeJSON is, on a finish this process wrote, Outcome as json.Marshal writes it
	// (made once by FinishAndQueue, for the record's value and for the log record).
	outcomeJSON []byte
}

// logItem is a queued item as its kind bucket holds it.
type logItem struct {
	ID    QueueID `json:"id"`
	Kind  Kind    `json:"kind"`
	Value []byte  `json:"value"`
}

const (
	opBegin  = "begin"
	opFinish = "finish"
	opSTAN   = "stan"
)

func decodeLogOp(b []byte) (logOp, error) {
	var op logOp
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&op); err != nil {
		return op, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	switch {
	case op.Op == opBegin && op.Txn != 0 && len(op.Record) > 0:
	case op.Op == opFinish && op.Txn != 0 && op.Outcome != nil:
	case op.Op == opSTAN && op.STAN != 0:
	default:
		return op, fmt.Errorf("%w: operation %q incomplete or unknown", ErrCorrupt, op.Op)
	}
	return op, nil
}

// applyOp does op inside tx, as the commit it stands for would have.
func applyOp(tx *bolt.Tx, op logOp) error {
	for _, l := range op.Links {
		if err := putLink(tx, l); err != nil {
			return err
		}
	}
	switch op.Op {
	case opBegin:
		j := tx.Bucket(bucketJournal)
		if err := j.Put(op.Txn.key(), op.Record); err != nil {
			return err
		}
		if err := raiseSequence(j, uint64(op.Txn)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOpen).Put(op.Txn.key(), nil); err != nil {
			return err
		}
		if op.PANHash != "" {
			if err := tx.Bucket(bucketPANIndex).Put(panIndexKey(op.PANHash, op.Txn), nil); err != nil {
				return err
			}
		}
		if err := putTillKeys(tx, op.Till, op.Txn); err != nil {
			return err
		}
		if op.STAN != 0 {
			return putSTAN(tx, op.STAN)
		}
		return nil
	case opSTAN:
		return putSTAN(tx, op.STAN)
	case opFinish:
		j := tx.Bucket(bucketJournal)
		v := j.Get(op.Txn.key())
		if v == nil {
			return fmt.Errorf("log finishes transaction %d, which is not in the journal: %w", op.Txn, ErrCorrupt)
		}
		out := Outcome(*op.Outcome)
		nv := op.finished
		if nv == nil {
			rec, err := decodeRecord(op.Txn, v)
			if err != nil {
				return err
			}
			if rec.Outcome != nil {
				return fmt.Errorf("log finishes transaction %d, which is finished (%s): %w", op.Txn, rec.Outcome.State, ErrCorrupt)
			}
			if nv, err = encodeRecord(rec.Intent, &out); err != nil {
				return err
			}
		}
		if err := j.Put(op.Txn.key(), nv); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOpen).Delete(op.Txn.key()); err != nil {
			return err
		}
		if out.Batch != 0 {
			if err := tx.Bucket(bucketBatchIdx).Put(batchIndexKey(out.Batch, op.Txn), nil); err != nil {
				return err
			}
		}
		for _, it := range op.Items {
			b := kindBucket(tx, it.Kind)
			if err := recount(tx, b, it.ID.key(), it.Value); err != nil {
				return err
			}
			if err := b.Put(it.ID.key(), it.Value); err != nil {
				return err
			}
			if err := raiseSequence(tx.Bucket(bucketQueue), uint64(it.ID)); err != nil {
				return err
			}
		}
		if op.STAN != 0 { // the items' STANs were taken in this write
			return putSTAN(tx, op.STAN)
		}
		return nil
	}
	return fmt.Errorf("log operation %q: %w", op.Op, ErrCorrupt)
}

// raiseSequence makes b's sequence at least n, so that ids handed out from it later
// follow n.
func raiseSequence(b *bolt.Bucket, n uint64) error {
	if b.Sequence() >= n {
		return nil
	}
	return b.SetSequence(n)
}

func putSTAN(tx *bolt.Tx, stan uint32) error {
	return tx.Bucket(bucketCounters).Put(keySTAN, binary.BigEndian.AppendUint32(nil, stan))
}

// note brings the Store's in-memory counters and open set up to date with op. s.mu held.
func (s *Store) note(op logOp) {
	for _, l := range op.Links {
		if l.Seq > s.auditSeq {
			s.auditSeq, s.auditHead = l.Seq, l.MAC
		}
	}
	switch op.Op {
	case opBegin:
		s.nextTxn = max(s.nextTxn, op.Txn+1)
		s.open[op.Txn] = true
		if op.STAN != 0 {
			s.stan = op.STAN
		}
	case opSTAN:
		s.stan = op.STAN
	case opFinish:
		delete(s.open, op.Txn)
		for _, it := range op.Items {
			s.nextQueue = max(s.nextQueue, it.ID+1)
		}
		if op.STAN != 0 {
			s.stan = op.STAN
		}
	}
}

// write makes op durable: appended to the log with one fdatasync, or, when it is too large
// for the log, committed straight to the bbolt file after everything before it. s.mu held.
func (s *Store) write(name string, op logOp) error {
	if s.closed {
		return fmt.Errorf("store: %s: %w", name, ErrClosed)
	}
	if s.logErr != nil {
		return fmt.Errorf("store: %s: the write-ahead log failed earlier (%w); restart posd", name, s.logErr)
	}
	payload, err := encodeLogOp(op)
	if err != nil {
		return fmt.Errorf("store: %s: %w", name, err)
	}
	lsn := s.lsn + 1
	if s.observe != nil {
		start := time.Now()
		defer func() { s.observe(time.Since(start)) }()
	}
	if !logFits(len(payload)) {
		if err := s.fold(); err != nil {
			return s.wrap(name, err)
		}
		if err := s.commit([]logEntry{{lsn, op}}); err != nil {
			return s.wrap(name, err)
		}
		s.lsn, s.applied = lsn, lsn
		s.note(op)
		return nil
	}
	err = s.log.append(lsn, payload)
	if errors.Is(err, errLogFull) {
		if ferr := s.fold(); ferr != nil {
			return s.wrap(name, ferr)
		}
		err = s.log.append(lsn, payload)
	}
	if err != nil {
		// After a failed write or fdatasync the state of the file is unknown (the kernel may
		// have dropped the pages): refuse further writes rather than guess.
		s.logErr = err
		return s.wrap(name, err)
	}
	s.lsn = lsn
	s.addPending(logEntry{lsn, op})
	s.note(op)
	s.lastWrite = time.Now()
	switch {
	case s.foldDelay < 0:
		if s.foldDue() {
			_ = s.fold() // the record is durable in the log; a failed fold is retried and reported by the next write
		}
	case s.foldDue():
		// Fold now, but not on this write's path: the caller (a sale) has its record durable
		// and goes on while the timer's goroutine commits. A timer that fired already is
		// waiting for mu and folds as soon as this write lets go of it.
		if s.timer == nil || s.timer.Stop() {
			s.timer = time.AfterFunc(0, s.foldLater)
		}
	case s.timer == nil:
		s.timer = time.AfterFunc(s.foldDelay, s.foldLater)
	}
	return nil
}

// foldOps is how many records the log holds before they are folded without waiting for
// the writes to pause. It bounds, with the log's size, what Open replays after a crash.
const foldOps = 512

// foldDue reports whether the log holds enough to fold without waiting for the writes to
// pause: foldOps records or half of the log. s.mu held.
func (s *Store) foldDue() bool {
	return len(s.pending) >= foldOps || s.log.used() >= logSize/2
}

// foldLater is the timer's fold: once no write came for foldDelay (sales back to back
// then pay no commit between them, and no commit's syncs queue at the disk in front of a
// sale's), or at once when the log holds enough (foldDue).
func (s *Store) foldLater() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	if s.closed || len(s.pending) == 0 {
		return
	}
	if !s.foldDue() {
		if wait := s.foldDelay - time.Since(s.lastWrite); wait > 0 {
			s.timer = time.AfterFunc(wait, s.foldLater)
			return
		}
	}
	_ = s.fold() // kept in s.foldErr for the next write
}

// fold commits the log's records to the bbolt file, in one commit, then rewinds the log.
// When the file is full (its size cap or the disk), it commits as long a run of the oldest
// records as fits, one commit each, so that what can be seen is, and keeps the rest in the
// log; s.foldErr then makes new transactions fail with ErrFull until a fold succeeds.
// s.mu held.
func (s *Store) fold() error {
	if len(s.pending) == 0 {
		s.foldErr = nil
		return nil
	}
	err := s.commit(s.pending)
	if err == nil {
		s.applied = s.pending[len(s.pending)-1].lsn
		s.dropPending(len(s.pending))
	} else if isFullError(err) {
		for len(s.pending) > 0 {
			if one := s.commit(s.pending[:1]); one != nil {
				break
			}
			s.applied = s.pending[0].lsn
			s.dropPending(1)
		}
	}
	if err == nil || len(s.pending) == 0 {
		if rerr := s.log.rewind(); rerr != nil {
			s.logErr = rerr
			return rerr
		}
		s.foldErr = nil
		return nil
	}
	s.foldErr = err
	return err
}

// commit applies entries to the bbolt file in one commit, with the fold mark (the last
// entry's LSN) in the same commit.
func (s *Store) commit(entries []logEntry) error {
	return s.dbUpdate(func(tx *bolt.Tx) error {
		for _, e := range entries {
			if err := applyOp(tx, e.op); err != nil {
				return fmt.Errorf("log record %d: %w", e.lsn, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keyLogLSN, binary.BigEndian.AppendUint64(nil, entries[len(entries)-1].lsn))
	})
}

func isFullError(err error) bool {
	return errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC)
}

// addPending adds e, just written to the log or read back from it, to what a fold will
// commit, and its till keys to the index LookupTill reads (a till key names one
// transaction: the first begin holding it keeps it). s.mu held.
func (s *Store) addPending(e logEntry) {
	s.pending = append(s.pending, e)
	for _, k := range e.op.Till {
		if _, ok := s.tillKeys[k]; !ok {
			s.tillKeys[k] = e.op.Txn
		}
	}
}

// dropPending removes the first n pending entries, committed to the file, and their till
// keys from the index: the file's till bucket answers for them now. s.mu held.
func (s *Store) dropPending(n int) {
	for _, e := range s.pending[:n] {
		for _, k := range e.op.Till {
			if s.tillKeys[k] == e.op.Txn {
				delete(s.tillKeys, k)
			}
		}
	}
	if n == len(s.pending) {
		s.pending = s.pending[:0]
	} else {
		s.pending = s.pending[n:]
	}
}
