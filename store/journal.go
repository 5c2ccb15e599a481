package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TxnID identifies a journal record. IDs are assigned by [Store.Begin] in
// increasing order, starting at 1, and never reused.
//
// A plain value: safe for concurrent use when not modified.
type TxnID uint64

func (id TxnID) key() []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// Intent is what posd is about to ask the acquirer, journaled by
// [Store.Begin] before the request is sent.
//
// A plain value: safe for concurrent use when not modified.
type Intent struct {
	Kind              string // "sale", or "refund" (money to the cardholder; see Original)
	MTI               string // ISO 8583 message type, e.g. "0200" or "0100"
	STAN              uint32 // system trace audit number, field 11
	TerminalID        string // field 41
	SaleID            string // from the till
	SaleTransactionID string // from the till
	// ServiceID is the till request's nexo ServiceID. With SaleID it keys the request (and
	// SaleID with SaleTransactionID keys it too): see Store.LookupTill. "" when the
	// transaction did not come from a till request.
	ServiceID   string
	AmountMinor int64  // amount in minor units of Currency
	Currency    string // alphabetic ISO 4217 code, e.g. "EUR"
	MaskedPAN   string // already masked (first 6, last 4); Begin refuses 7 or more digits in a row
	// PANHash is a keyed hash of the full PAN (posd: a CMAC under a key in its hsm), for
	// finding a card's transactions with Store.FindByPANHash. Opaque to the store; Begin
	// refuses one with 7 or more digits in a row, as it refuses an unmasked MaskedPAN.
	PANHash    string
	EntryMode  string    // POS entry mode, field 22, e.g. "021"
	Time       time.Time // when the transaction started
	Chip       bool      // the card was read from its chip
	PINEntered bool      // the customer entered a PIN (online PIN)
	// What the sale's receipt prints of how the card was verified and of its chip, none of
	// it card data: CVM is the cardholder verification ("OnlinePIN", "OfflinePIN", ""),
	// Signature that a signature is required; AID, AppLabel, TVR and TSI are the chip
	// application's (hex, label as printed), Cryptogram its type and first 8 hex digits
	// ("ARQC 1A2B3C4D"). All "" or false in records of older releases and for swipes.
	CVM        string
	Signature  bool
	AID        string
	AppLabel   string
	TVR        string
	TSI        string
	Cryptogram string
	// FormFactor is a tap's tag 9F6E in upper-case hex as the receipt prints it (Visa form
	// factor indicator, Mastercard third party data); "" for other cards and in records of
	// older releases.
	FormFactor string
	// ProcessingCode is the ISO 8583 field 3 the request carried ("200000" for a refund);
	// "" means the default purchase, "000000" (sales, and records of older releases).
	ProcessingCode string
	// Original is the sale a linked refund refunds (Kind "refund"); 0 for an unlinked
	// refund and for everything else. Begin indexes it: see Store.RefundsOf.
	Original TxnID
	// Host is the acquirer host (host:port) the request was for, chosen before it was sent
	// when the terminal has backup hosts: the host that may hold it, where its reversal
	// goes (a void's, or Recover's after a crash). "" without backup hosts, for a
	// transaction that never went online, and in records of older releases.
	Host string
}

// State is the state of a journal record.
//
// A plain value: safe for concurrent use when not modified.
type State string

// States of a journal record. StateIntent is the state of an open record;
// the others are outcomes passed to [Store.Finish].
const (
	StateIntent   State = "intent"          // begun, no outcome yet
	StateApproved State = "approved"        // the host approved
	StateDeclined State = "declined"        // the host declined
	StateNotSent  State = "not-sent"        // the request never left posd: nothing to reverse
	StateUnknown  State = "outcome-unknown" // the host may have acted: reverse, never resend
	// StateApprovedOffline: the host could not be reached and posd approved within its
	// offline policy; an advice (0220) is queued.
	StateApprovedOffline State = "approved-offline"
)

// final reports whether s is a state [Store.Finish] accepts.
func (s State) final() bool {
	switch s {
	case StateApproved, StateDeclined, StateNotSent, StateUnknown, StateApprovedOffline:
		return true
	}
	return false
}

// Outcome is how a journaled transaction ended, recorded by [Store.Finish].
//
// A plain value: safe for concurrent use when not modified.
type Outcome struct {
	State        State     // a final state, never StateIntent
	ResponseCode string    // ISO 8583 field 39, "" when none
	ApprovalCode string    // field 38
	RRN          string    // retrieval reference number, field 37
	Reason       string    // human-readable; runs of 7 or more digits are stored as '*'
	Time         time.Time // when the outcome was known
	// Reversed is set when the host acknowledged a reversal of this transaction.
	Reversed *Settlement
	// Advised is set when the host acknowledged the advice of an offline approval.
	Advised *Settlement
	// Voided is set when the till cancelled the approved transaction (see Store.Void).
	Voided *Void
	// Condition is the till's error condition of a sale that did not succeed (nexo's
	// vocabulary, e.g. "Refusal"); Message what the till was told, in words. Both "" in
	// records of older releases, whose answers are rebuilt from State and Reason.
	Condition string
	Message   string
	// AuthorizedMinor is the amount the host approved when it approved part of the amount
	// asked (a partial approval, 10); 0 when it approved all of it or nothing.
	AuthorizedMinor int64
	// Undelivered is set when the till did not hear the answer (its connection closed
	// first): the answer waits for a TransactionStatus request.
	Undelivered *time.Time
	// Batch is the batch the transaction belongs to: the batch that was open when its
	// outcome was recorded (Store.FinishAndQueue sets it). 0 in records of older releases,
	// which belong to no batch.
	Batch uint64
}

// Void records who cancelled an approved transaction, when, and how it is undone.
//
// A plain value: safe for concurrent use when not modified.
type Void struct {
	Time time.Time
	By   string
	// Withdrawn: the offline approval's advice had never been sent, so it was removed from
	// the queue and nothing needs reversing. Otherwise a reversal was queued.
	Withdrawn bool
}

// Settlement is the host's acknowledgement of a queued reversal or advice.
//
// A plain value: safe for concurrent use when not modified.
type Settlement struct {
	Time         time.Time
	ResponseCode string // field 39 of the host's answer
	STAN         uint32 // of the reversal or advice
	// TransmissionTime is field 7 of the advice's first send, which all its sends carried:
	// with STAN, what the reversal of a voided offline approval names. Zero for reversals,
	// and for advices acknowledged before posd recorded it.
	TransmissionTime time.Time `json:",omitzero"`
	// Host is the acquirer host (host:port) that acknowledged it, where the reversal of a
	// voided advice goes. "" without backup hosts and in records of older releases.
	Host string `json:",omitempty"`
}

// Record is one journal entry. Outcome is nil while the record is open.
//
// Record, [Intent], [Outcome], [State] and [TxnID] are plain values that the
// Store copies in and out; they share nothing with it and are safe for
// concurrent use as values are.
type Record struct {
	ID      TxnID
	Intent  Intent
	Outcome *Outcome
}

// recordVersion is the "v" of the JSON encoding of a record.
const recordVersion = 1

// The JSON encoding of a record. Field names are part of the file format:
// rename a Go field freely, never a tag.
type (
	jsonRecord struct {
		V       int          `json:"v"`
		Intent  jsonIntent   `json:"intent"`
		Outcome *jsonOutcome `json:"outcome,omitempty"`
	}
	jsonIntent struct {
		Kind              string    `json:"kind"`
		MTI               string    `json:"mti"`
		STAN              uint32    `json:"stan"`
		TerminalID        string    `json:"terminal_id"`
		SaleID            string    `json:"sale_id"`
		SaleTransactionID string    `json:"sale_transaction_id"`
		ServiceID         string    `json:"service_id,omitempty"`
		AmountMinor       int64     `json:"amount_minor"`
		Currency          string    `json:"currency"`
		MaskedPAN         string    `json:"masked_pan"`
		PANHash           string    `json:"pan_hash,omitempty"`
		EntryMode         string    `json:"entry_mode"`
		Time              time.Time `json:"time"`
		Chip              bool      `json:"chip,omitempty"`
		PINEntered        bool      `json:"pin_entered,omitempty"`
		CVM               string    `json:"cvm,omitempty"`
		Signature         bool      `json:"signature,omitempty"`
		AID               string    `json:"aid,omitempty"`
		AppLabel          string    `json:"app_label,omitempty"`
		TVR               string    `json:"tvr,omitempty"`
		TSI               string    `json:"tsi,omitempty"`
		Cryptogram        string    `json:"cryptogram,omitempty"`
		FormFactor        string    `json:"form_factor,omitempty"`
		ProcessingCode    string    `json:"processing_code,omitempty"`
		Original          TxnID     `json:"original,omitempty"`
		Host              string    `json:"host,omitempty"`
	}
	jsonOutcome struct {
		State           State       `json:"state"`
		ResponseCode    string      `json:"response_code,omitempty"`
		ApprovalCode    string      `json:"approval_code,omitempty"`
		RRN             string      `json:"rrn,omitempty"`
		Reason          string      `json:"reason,omitempty"`
		Time            time.Time   `json:"time"`
		Reversed        *Settlement `json:"reversed,omitempty"`
		Advised         *Settlement `json:"advised,omitempty"`
		Voided          *Void       `json:"voided,omitempty"`
		Condition       string      `json:"condition,omitempty"`
		Message         string      `json:"message,omitempty"`
		AuthorizedMinor int64       `json:"authorized_minor,omitempty"`
		Undelivered     *time.Time  `json:"undelivered,omitempty"`
		Batch           uint64      `json:"batch,omitempty"`
	}
)

// maxDigitRun is the longest run of digits a masked PAN may hold: a PAN
// masked to its first 6 and last 4 digits has runs of 6 and 4.
const maxDigitRun = 6

// longestDigitRun returns the length of the longest run of ASCII digits in
// s, where spaces, '-' and '.' between digits do not end a run (so a full
// PAN written in groups is still a run).
func longestDigitRun(s string) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			run++
			longest = max(longest, run)
		case c == ' ' || c == '-' || c == '.':
		default:
			run = 0
		}
	}
	return longest
}

// redactDigitRuns replaces every run of more than maxDigitRun digits in s
// with '*', digit for digit.
func redactDigitRuns(s string) string {
	b := []byte(s)
	start := -1
	flush := func(end int) {
		if start >= 0 && end-start > maxDigitRun {
			for i := start; i < end; i++ {
				b[i] = '*'
			}
		}
		start = -1
	}
	for i, c := range b {
		if c >= '0' && c <= '9' {
			if start < 0 {
				start = i
			}
		} else {
			flush(i)
		}
	}
	flush(len(b))
	return string(b)
}

// Begin journals the intent of a new transaction and returns its ID. The
// record is durable before Begin returns (see the package documentation,
// "Durability"). An intent whose MaskedPAN holds
// more than 6 digits in a row (spaces, '-' and '.' between digits count as
// part of the run) is refused with [ErrUnmaskedPAN]; the error does not
// contain the value.
func (s *Store) Begin(ctx context.Context, in Intent) (TxnID, error) {
	id, _, err := s.begin(ctx, in, false)
	return id, err
}

// BeginWithSTAN is Begin taking the next STAN (as NextSTAN does) for the intent in the same
// write: one fdatasync instead of two before a request can go out. It returns the
// transaction's id and its STAN; in.STAN is ignored.
func (s *Store) BeginWithSTAN(ctx context.Context, in Intent) (TxnID, uint32, error) {
	return s.begin(ctx, in, true)
}

func (s *Store) begin(ctx context.Context, in Intent, takeSTAN bool) (TxnID, uint32, error) {
	if longestDigitRun(in.MaskedPAN) > maxDigitRun || longestDigitRun(in.PANHash) > maxDigitRun {
		return 0, 0, fmt.Errorf("store: begin: %w", ErrUnmaskedPAN)
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("store: begin: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.roomForNew("begin"); err != nil {
		return 0, 0, err
	}
	op := logOp{Op: opBegin, Txn: s.nextTxn, PANHash: in.PANHash, Till: append(tillKeys(in), refundKeys(in, s.nextTxn)...)}
	if takeSTAN {
		op.STAN = s.peekSTAN()
		in.STAN = op.STAN
	}
	var err error
	if op.Record, err = encodeRecord(in, nil); err != nil {
		return 0, 0, fmt.Errorf("store: begin: %w", err)
	}
	op.encoded = true
	saved := s.saveChain()
	l, err := s.newLink(ctx, refLink(linkBegin, txnRef(op.Txn), op.Record))
	if err != nil {
		s.restoreChain(saved)
		return 0, 0, fmt.Errorf("store: begin: %w", err)
	}
	op.Links = []jsonLink{l}
	if err := s.write("begin", op); err != nil {
		s.restoreChain(saved)
		return 0, 0, err
	}
	return op.Txn, in.STAN, nil
}

// Finish records the outcome of the transaction id. The outcome is durable
// before Finish returns. It returns an error wrapping [ErrNotFound] for an
// unknown id, [ErrFinished] if the record already has an outcome and
// [ErrInvalid] if out.State is not one of the final states. Runs of 7 or
// more digits in out.Reason are stored as '*', so that a PAN that found
// its way into an error message is not journaled.
func (s *Store) Finish(ctx context.Context, id TxnID, out Outcome) error {
	_, err := s.FinishAndQueue(ctx, id, out)
	return err
}

// FinishAndQueue records the outcome of the transaction id and queues items (its reversal,
// or the advice of an offline approval) in the same write, so that a crash can never leave
// an outcome without the message that settles it, or the reverse. Each item's TxnID is set
// to id; an item without a STAN takes the next ones of the counter in the same write (as
// NextSTAN would, without a write of its own). Errors are those of [Store.Finish] and
// [Store.Enqueue].
func (s *Store) FinishAndQueue(ctx context.Context, id TxnID, out Outcome, items ...Item) ([]QueueID, error) {
	if !out.State.final() {
		return nil, fmt.Errorf("store: finish %d: state %q is not a final state: %w", id, out.State, ErrInvalid)
	}
	for i := range items {
		items[i].TxnID = id
		if err := s.checkItem(items[i]); err != nil {
			return nil, fmt.Errorf("store: finish %d: %w", id, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: finish %d: %w", id, err)
	}
	out.Reason = redactDigitRuns(out.Reason)
	out.Message = redactDigitRuns(out.Message)
	name := "finish " + strconv.FormatUint(uint64(id), 10)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("store: %s: %w", name, ErrClosed)
	}
	if !s.open[id] {
		return nil, s.notOpen(name, id)
	}
	out.Batch = s.batch
	o := jsonOutcome(out)
	ob, err := encodeOutcome(o) // once, for the log record and for the record's new value
	if err != nil {
		return nil, s.wrap(name, err)
	}
	op := logOp{Op: opFinish, Txn: id, Outcome: &o, outcomeJSON: ob}
	// The record as the fold will write it, for its link (and for the fold).
	nv, err := s.finishedValue(id, &out, ob)
	if err != nil {
		return nil, s.wrap(name, err)
	}
	op.finished = nv
	saved := s.saveChain()
	l, err := s.newLink(ctx, refLink(linkFinish, txnRef(id), nv))
	if err != nil {
		s.restoreChain(saved)
		return nil, fmt.Errorf("store: %s: %w", name, err)
	}
	op.Links = append(op.Links, l)
	ids := make([]QueueID, 0, len(items))
	stan := s.stan
	for _, it := range items {
		if it.STAN == 0 {
			// Each reversal or advice is a message of its own: its STAN is taken here, in
			// the outcome's own write (no fdatasync of its own on the till's path).
			if stan >= maxSTAN {
				stan = 1
			} else {
				stan++
			}
			it.STAN, op.STAN = stan, stan
		}
		qid := s.nextQueue
		s.nextQueue++ // an id lost to a failed write leaves a gap, never a reuse
		v, err := s.sealItem(ctx, qid, it, out.Time)
		if err == nil {
			l, err = s.newLink(ctx, refLink(linkEnqueue, queueRef(qid), v))
		}
		if err != nil {
			s.restoreChain(saved)
			return nil, fmt.Errorf("store: %s: %w", name, err)
		}
		op.Items = append(op.Items, logItem{ID: qid, Kind: it.Kind, Value: v})
		op.Links = append(op.Links, l)
		ids = append(ids, qid)
	}
	if err := s.write(name, op); err != nil {
		s.restoreChain(saved)
		return nil, err
	}
	return ids, nil
}

// finishedValue returns record id's stored value once out is recorded, as applyOp will
// write it: from the intent in the log when it is not folded yet, from the file otherwise
// (a read, no sync). ob is out as json.Marshal(jsonOutcome(*out)) writes it. s.mu held.
func (s *Store) finishedValue(id TxnID, out *Outcome, ob []byte) ([]byte, error) {
	var v []byte
	for i := len(s.pending) - 1; i >= 0 && v == nil; i-- {
		if e := s.pending[i].op; e.Op == opBegin && e.Txn == id {
			v = e.Record
			if e.encoded && plainJSON(v) {
				return withOutcomeJSON(v, ob)
			}
		}
	}
	if v == nil {
		err := s.dbView(func(tx *bolt.Tx) error {
			v = bytes.Clone(tx.Bucket(bucketJournal).Get(id.key()))
			return nil
		})
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, fmt.Errorf("transaction %d is open and neither in the log nor in the file: %w", id, ErrCorrupt)
		}
	}
	rec, err := decodeRecord(id, v)
	if err != nil {
		return nil, err
	}
	return encodeRecord(rec.Intent, out)
}

// notOpen explains why id cannot be finished: no such record, or finished already (with
// its state, read from the file). s.mu held.
func (s *Store) notOpen(name string, id TxnID) error {
	if id == 0 || id >= s.nextTxn {
		return fmt.Errorf("store: %s: %w", name, ErrNotFound)
	}
	if err := s.fold(); err != nil && !isFullError(err) {
		return s.wrap(name, err)
	}
	err := s.dbView(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		if rec.Outcome == nil {
			return fmt.Errorf("%w (the outcome is still in the write-ahead log)", ErrFinished)
		}
		return fmt.Errorf("%w (state %s)", ErrFinished, rec.Outcome.State)
	})
	return s.wrap(name, err)
}

// getRecord reads record id inside tx: ErrNotFound when there is none.
func getRecord(tx *bolt.Tx, id TxnID) (Record, error) {
	v := tx.Bucket(bucketJournal).Get(id.key())
	if v == nil {
		return Record{}, ErrNotFound
	}
	return decodeRecord(id, v)
}

// putRecord writes rec back inside tx, with its link l (whose Ref and Sum it sets).
func (s *Store) putRecord(ctx context.Context, tx *bolt.Tx, rec Record, l jsonLink) error {
	nv, err := encodeRecord(rec.Intent, rec.Outcome)
	if err != nil {
		return err
	}
	l.Ref = txnRef(rec.ID)
	return s.putLinked(ctx, tx, tx.Bucket(bucketJournal), rec.ID.key(), nv, l)
}

// Get returns the record id, or an error wrapping [ErrNotFound].
func (s *Store) Get(ctx context.Context, id TxnID) (Record, error) {
	var rec Record
	err := s.view(ctx, fmt.Sprintf("get %d", id), func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJournal).Get(id.key())
		if v == nil && archivedID(tx, id) {
			return fmt.Errorf("%w: %w: it left the live file with its batch (store.keep); posctl journal --archived shows it, and it can no longer be refunded or voided", ErrNotFound, ErrArchived)
		}
		if v == nil {
			return ErrNotFound
		}
		var err error
		rec, err = decodeRecord(id, v)
		return err
	})
	return rec, err
}

// Unfinished returns the records that have no outcome yet, in ID order.
// After a crash these are the transactions whose outcome is unknown.
func (s *Store) Unfinished(ctx context.Context) ([]Record, error) {
	var recs []Record
	err := s.view(ctx, "unfinished", func(tx *bolt.Tx) error {
		j := tx.Bucket(bucketJournal)
		return tx.Bucket(bucketOpen).ForEach(func(k, _ []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("open index key of %d bytes: %w", len(k), ErrCorrupt)
			}
			id := TxnID(binary.BigEndian.Uint64(k))
			v := j.Get(k)
			if v == nil {
				return fmt.Errorf("record %d is in the open index but not in the journal: %w", id, ErrCorrupt)
			}
			rec, err := decodeRecord(id, v)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// recordsBatch is how many records Records reads per read transaction.
const recordsBatch = 256

// Records calls fn for every record in ID order and stops at the first
// error, which it returns unchanged. Records reads in batches and calls fn
// outside any bbolt transaction, so fn may call other Store methods; a
// record begun or finished during the walk may or may not be seen in its
// new state.
func (s *Store) Records(ctx context.Context, fn func(Record) error) error {
	var after []byte // key of the last record read; nil before the first
	for {
		batch := make([]Record, 0, recordsBatch)
		err := s.view(ctx, "records", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketJournal).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(batch) < recordsBatch; k, v = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("journal key of %d bytes: %w", len(k), ErrCorrupt)
				}
				rec, err := decodeRecord(TxnID(binary.BigEndian.Uint64(k)), v)
				if err != nil {
					return err
				}
				batch = append(batch, rec)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, rec := range batch {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(batch) < recordsBatch {
			return nil
		}
		after = batch[len(batch)-1].ID.key()
	}
}

// FindByPANHash returns the records whose intent carries hash (see Intent.PANHash), in ID
// order, from an index: it does not read the whole journal.
func (s *Store) FindByPANHash(ctx context.Context, hash string) ([]Record, error) {
	if hash == "" {
		return nil, fmt.Errorf("store: find by pan hash: empty hash: %w", ErrInvalid)
	}
	var recs []Record
	err := s.view(ctx, "find by pan hash", func(tx *bolt.Tx) error {
		j := tx.Bucket(bucketJournal)
		prefix := panIndexPrefix(hash)
		c := tx.Bucket(bucketPANIndex).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				return fmt.Errorf("pan index key of %d bytes: %w", len(k), ErrCorrupt)
			}
			id := TxnID(binary.BigEndian.Uint64(k[len(prefix):]))
			v := j.Get(id.key())
			if v == nil {
				return fmt.Errorf("record %d is in the pan index but not in the journal: %w", id, ErrCorrupt)
			}
			rec, err := decodeRecord(id, v)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		return nil
	})
	return recs, err
}

// panIndexPrefix is where a hash's entries start in the pan index: hash, 0, then each
// record's id.
func panIndexPrefix(hash string) []byte { return append([]byte(hash), 0) }

func panIndexKey(hash string, id TxnID) []byte {
	return binary.BigEndian.AppendUint64(panIndexPrefix(hash), uint64(id))
}
