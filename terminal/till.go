package terminal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/money"
)

// Exactly once at the till: every till request is known by its keys (store.ServiceKey,
// store.SaleTxnKey). A request whose key is known does not run again: it gets the first
// request's answer. The keys of a sale that went online are in the journal, written with
// its intent; those of a sale that ended before (refused card, customer cancel: nothing
// was charged) are remembered in memory for this process only.

// ErrConflict means a till request reuses the key of an earlier one with other content.
// Errors wrapping it are *ConflictError.
var ErrConflict = errors.New("terminal: the request's key belongs to another request")

// ErrTooLate means an abort named a transaction that has finished already.
var ErrTooLate = errors.New("terminal: the transaction has finished already")

// ConflictError is a till request that reuses an earlier request's key (Key: "ServiceID"
// or "SaleTransactionID") with content that differs in Field ("amount", "currency",
// "SaleTransactionID", "POITransactionID").
//
// A plain value: safe for concurrent use when not modified.
type ConflictError struct {
	Key   string
	Field string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("terminal: the request's %s was used before with another %s", e.Key, e.Field)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// remembered bounds the answers kept in memory of requests that ended before going online.
const remembered = 1024

// run is one admitted till request, while it runs and after.
type run struct {
	req    SaleRequest
	keys   []store.TillKey
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when res and err are set
	res    SaleResult
	err    error

	mu      sync.Mutex
	online  bool // the request may be on the wire: an abort no longer stops it
	aborted bool
}

// goOnline marks the request as about to go online and reports whether it may: false when
// the till aborted it first.
func (r *run) goOnline() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.aborted {
		return false
	}
	r.online = true
	return true
}

// abortedOnline reports whether the till aborted the request after it went online.
func (r *run) abortedOnline() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted && r.online
}

// tillRequests are the requests running, and the answers remembered of those that ended
// before going online. Guarded by mu.
type tillRequests struct {
	mu      sync.Mutex
	running map[store.TillKey]*run
	ended   map[store.TillKey]*run
	order   []store.TillKey // ended, oldest first
	voids   map[store.TillKey]*voided
	vorder  []store.TillKey
}

// voided is a void request's answer, for its repeats.
type voided struct {
	poiTxnID string
	res      VoidResult
	err      error
}

func (tr *tillRequests) init() {
	tr.running = map[store.TillKey]*run{}
	tr.ended = map[store.TillKey]*run{}
	tr.voids = map[store.TillKey]*voided{}
}

// requestKeys returns the keys of req, the service key first.
func requestKeys(req SaleRequest) []store.TillKey {
	var keys []store.TillKey
	if req.SaleID == "" {
		return nil
	}
	if req.ServiceID != "" {
		keys = append(keys, store.ServiceKey(req.SaleID, req.ServiceID))
	}
	if req.SaleTransactionID != "" {
		keys = append(keys, store.SaleTxnKey(req.SaleID, req.SaleTransactionID))
	}
	return keys
}

// keyName names the kind of key k for a ConflictError.
func keyName(k store.TillKey) string {
	if strings.HasPrefix(string(k), "s\x00") {
		return "ServiceID"
	}
	return "SaleTransactionID"
}

// differs returns the first field in which a request under key k differs from the one
// first seen under it ("" when none): the amount, the currency, and, under a service
// key, the till's transaction id.
func differs(k store.TillKey, first, again SaleRequest) string {
	switch {
	case first.Amount.Currency != again.Amount.Currency:
		return "currency"
	case first.Amount.Minor != again.Amount.Minor:
		return "amount"
	case keyName(k) == "ServiceID" && first.SaleTransactionID != again.SaleTransactionID:
		return "SaleTransactionID"
	case first.Refund != again.Refund:
		return "PaymentType"
	case first.Original != again.Original:
		return "OriginalPOITransactionID"
	}
	return ""
}

// requestOf is the till request a journal record was begun for.
func requestOf(rec store.Record) SaleRequest {
	cur, _ := money.LookupCurrency(rec.Intent.Currency)
	req := SaleRequest{SaleID: rec.Intent.SaleID, ServiceID: rec.Intent.ServiceID, SaleTransactionID: rec.Intent.SaleTransactionID,
		Amount: money.Amount{Minor: rec.Intent.AmountMinor, Currency: cur}, Refund: rec.Intent.Kind == store.KindRefund}
	if rec.Intent.Original != 0 {
		req.Original = poiTxnID(rec.Intent.TerminalID, rec.Intent.Original)
	}
	return req
}

// admit decides what a till request does: a new request gets a run (and t.mu, held until
// release); a repeat gets the first request's answer (r nil), after waiting for it while
// it runs; a conflict or a busy terminal gets an error (r nil).
func (t *Terminal) admit(ctx context.Context, req SaleRequest) (r *run, res SaleResult, err error) {
	if err := t.waitPause(ctx); err != nil {
		return nil, SaleResult{}, err
	}
	keys := requestKeys(req)
	t.tills.mu.Lock()
	for _, k := range keys {
		first := t.tills.running[k]
		if first == nil {
			first = t.tills.ended[k]
		}
		if first == nil {
			continue
		}
		t.tills.mu.Unlock()
		if f := differs(k, first.req, req); f != "" {
			return nil, SaleResult{}, &ConflictError{Key: keyName(k), Field: f}
		}
		t.log.Info("till request repeated: answering with the first request's answer", "sale", req.SaleTransactionID)
		select {
		case <-first.done:
			return nil, first.res, first.err
		case <-ctx.Done():
			return nil, SaleResult{}, ctx.Err()
		}
	}
	defer t.tills.mu.Unlock()
	for _, k := range keys {
		id, ok, err := t.st.LookupTill(ctx, k)
		if err != nil {
			return nil, SaleResult{}, fmt.Errorf("terminal: looking the request up: %w", err)
		}
		if !ok {
			continue
		}
		rec, err := t.st.Get(ctx, id)
		if err != nil {
			return nil, SaleResult{}, fmt.Errorf("terminal: reading transaction %d: %w", uint64(id), err)
		}
		if f := differs(k, requestOf(rec), req); f != "" {
			return nil, SaleResult{}, &ConflictError{Key: keyName(k), Field: f}
		}
		t.log.Info("till request repeated: answering from the journal", "sale", req.SaleTransactionID, "txn", uint64(id))
		return nil, t.answer(rec), nil
	}
	if !t.mu.TryLock() {
		return nil, SaleResult{}, ErrBusy
	}
	r = &run{req: req, keys: keys, done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	for _, k := range keys {
		t.tills.running[k] = r
	}
	return r, SaleResult{}, nil
}

// release ends the run r with its answer: repeats waiting for it get it, and the terminal
// takes the next sale. The answer of a sale that never went online is remembered in
// memory; one that did is found in the journal.
func (t *Terminal) release(r *run, res SaleResult, err error) {
	t.tills.mu.Lock()
	r.res, r.err = res, err
	for _, k := range r.keys {
		delete(t.tills.running, k)
		if res.TxnID == 0 && err == nil {
			t.tills.ended[k] = r
			t.tills.order = append(t.tills.order, k)
		}
	}
	for len(t.tills.order) > remembered {
		delete(t.tills.ended, t.tills.order[0])
		t.tills.order = t.tills.order[1:]
	}
	close(r.done)
	t.tills.mu.Unlock()
	r.cancel(nil)
	t.mu.Unlock()
}

// answer is the till's answer to the sale of journal record rec, as it was first given:
// the live sale and every later repeat or status request build it here from the record,
// so that they agree. A void made after the answer (the till's own) does not change it.
func (t *Terminal) answer(rec store.Record) SaleResult {
	cur, _ := money.LookupCurrency(rec.Intent.Currency)
	in := rec.Intent
	res := SaleResult{
		// The time as the journal gives it back: no monotonic reading, local time.
		TxnID: rec.ID, POITransactionID: t.poiTxnID(rec.ID), Time: in.Time.Round(0).In(time.Local),
		Amount: money.Amount{Minor: in.AmountMinor, Currency: cur}, STAN: in.STAN,
		MaskedPAN: in.MaskedPAN, EntryMode: in.EntryMode, PINEntered: in.PINEntered, Chip: in.Chip,
		CVM: CVM(in.CVM), SignatureRequired: in.Signature,
		ChipData: ChipData{AID: in.AID, AppLabel: in.AppLabel, TVR: in.TVR, TSI: in.TSI, Cryptogram: in.Cryptogram, FormFactor: in.FormFactor},
		Refund:   in.Kind == store.KindRefund,
	}
	if res.CVM == CVMNone && in.PINEntered { // a record of an older release
		res.CVM = CVMOnlinePIN
	}
	out := rec.Outcome
	if out == nil {
		res.Condition = CondInProgress
		res.Message = "the outcome is not known yet"
		res.Receipt = t.receipt(res)
		return res
	}
	res.ResponseCode, res.ApprovalCode, res.RRN = out.ResponseCode, out.ApprovalCode, out.RRN
	res.Condition, res.Message = Condition(out.Condition), out.Message
	switch out.State {
	case store.StateApproved:
		res.Approved = true
		res.AuthorizedMinor = out.AuthorizedMinor
	case store.StateApprovedOffline:
		res.Approved, res.ApprovedOffline = true, true
	}
	if v := out.Voided; v != nil && strings.HasPrefix(v.By, voidedByPosd) {
		res.Approved, res.ApprovedOffline, res.AuthorizedMinor = false, false, 0
		if res.Condition == CondNone {
			// Voided after the outcome was journaled (the card declined after the host
			// approved): the record's message is still the approval's.
			res.Condition = CondRefusal
			res.Message = strings.TrimPrefix(v.By, voidedByPosd) + "; the approval is being reversed and the customer is not charged"
		}
	}
	if res.Message == "" { // a record of an older release
		res.Message = out.Reason
		if res.Approved {
			res.Message = "approved"
		}
	}
	if !res.Approved && res.Condition == CondNone {
		res.Condition = conditionOf(out)
	}
	res.Receipt = t.receipt(res)
	return res
}

// conditionOf derives the till's condition from an outcome recorded without one (records
// of older releases).
func conditionOf(out *store.Outcome) Condition {
	switch out.State {
	case store.StateDeclined:
		if out.ResponseCode == "55" {
			return CondWrongPIN
		}
		return CondRefusal
	case store.StateUnknown:
		return CondInProgress
	case store.StateNotSent:
		return CondUnreachableHost
	}
	return CondRefusal
}

// TxnStatus is what the terminal knows of a till request (Terminal.TransactionStatus).
//
// A plain value: safe for concurrent use when not modified.
type TxnStatus struct {
	Running bool        // the request is still running: ask again
	Request SaleRequest // the request as first seen (its SaleID, ServiceID, ...)
	Result  SaleResult  // the answer, when not Running
}

// TransactionStatus returns what became of the till request known by key: running, or
// its answer as first given. It returns an error wrapping ErrUnknownTransaction when the
// terminal has no request with that key (it never ran, or ended before going online
// before posd last started: nothing was charged).
func (t *Terminal) TransactionStatus(ctx context.Context, key store.TillKey) (TxnStatus, error) {
	t.tills.mu.Lock()
	if r := t.tills.running[key]; r != nil {
		t.tills.mu.Unlock()
		return TxnStatus{Running: true, Request: r.req}, nil
	}
	if r := t.tills.ended[key]; r != nil {
		t.tills.mu.Unlock()
		return TxnStatus{Request: r.req, Result: r.res}, nil
	}
	t.tills.mu.Unlock()
	id, ok, err := t.st.LookupTill(ctx, key)
	if err != nil {
		return TxnStatus{}, fmt.Errorf("terminal: looking the request up: %w", err)
	}
	if !ok {
		return TxnStatus{}, ErrUnknownTransaction
	}
	rec, err := t.st.Get(ctx, id)
	if err != nil {
		return TxnStatus{}, fmt.Errorf("terminal: reading transaction %d: %w", uint64(id), err)
	}
	return TxnStatus{Request: requestOf(rec), Result: t.answer(rec)}, nil
}

// AbortResult says what an abort did.
//
// A plain value: safe for concurrent use when not modified.
type AbortResult struct {
	// Online: the request was already on its way to the acquirer, so the sale's outcome is
	// taken as it comes and an approval is reversed. Otherwise the sale stopped before
	// anything went online and nothing is charged.
	Online  bool
	Message string
}

// Abort stops the running till request known by key (the nexo AbortRequest's
// MessageReference). Before anything went online the PIN pad is cancelled and the sale
// ends Aborted with nothing charged; after, the outcome is taken as it comes and an
// approval is reversed in the same write as the outcome. The sale's own answer says which.
// It returns an error wrapping ErrUnknownTransaction when no request has that key, and
// ErrTooLate when that request has finished.
func (t *Terminal) Abort(ctx context.Context, key store.TillKey) (AbortResult, error) {
	t.tills.mu.Lock()
	r := t.tills.running[key]
	t.tills.mu.Unlock()
	if r == nil {
		if _, err := t.TransactionStatus(ctx, key); err != nil {
			return AbortResult{}, err
		}
		return AbortResult{}, ErrTooLate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aborted = true
	if r.online {
		t.log.Info("abort of a sale already online: an approval will be reversed", "sale", r.req.SaleTransactionID)
		return AbortResult{Online: true, Message: "the sale had already gone to the acquirer: its outcome is taken as it comes and an approval is reversed"}, nil
	}
	r.cancel(ErrAborted)
	t.log.Info("sale aborted before going online", "sale", r.req.SaleTransactionID)
	return AbortResult{Message: "aborted before going online: nothing is charged"}, nil
}

// NoteUndelivered records that the till did not hear the answer of the journaled sale
// id (its connection closed first). The answer waits for the till's TransactionStatus.
func (t *Terminal) NoteUndelivered(ctx context.Context, id store.TxnID) error {
	if id == 0 {
		return nil
	}
	return t.st.NoteUndelivered(ctx, id, t.opts.Now())
}

// VoidOnce is Void for the till request (saleID, serviceID) asking to cancel poiTxnID for
// reason: a repeat of the request gets the first one's answer, also after a restart (the
// journal's void names the request), and the same request naming another transaction is
// refused with a *ConflictError (remembered in memory only).
func (t *Terminal) VoidOnce(ctx context.Context, saleID, serviceID, poiTxnID, reason string) (VoidResult, error) {
	key := store.ServiceKey(saleID, serviceID)
	by := fmt.Sprintf("till %s, request %s (%s)", saleID, serviceID, reason)
	t.tills.mu.Lock()
	defer t.tills.mu.Unlock()
	if v := t.tills.voids[key]; v != nil {
		if v.poiTxnID != poiTxnID {
			return VoidResult{}, &ConflictError{Key: "ServiceID", Field: "POITransactionID"}
		}
		return v.res, v.err
	}
	res, err := t.Void(ctx, poiTxnID, by)
	if errors.Is(err, store.ErrNotVoidable) {
		// Voided already: by this very request (a repeat after a restart) is a success.
		if id, perr := t.TxnIDFromPOI(poiTxnID); perr == nil {
			if rec, gerr := t.st.Get(ctx, id); gerr == nil && rec.Outcome != nil && rec.Outcome.Voided != nil && rec.Outcome.Voided.By == by {
				res, err = VoidResult{TxnID: id, Withdrawn: rec.Outcome.Voided.Withdrawn, Message: "voided by this request already"}, nil
			}
		}
	}
	if err != nil && !errors.Is(err, store.ErrNotVoidable) && !errors.Is(err, ErrUnknownTransaction) {
		return res, err // a fault, not an answer: a repeat may try again
	}
	t.tills.voids[key] = &voided{poiTxnID: poiTxnID, res: res, err: err}
	t.tills.vorder = append(t.tills.vorder, key)
	for len(t.tills.vorder) > remembered {
		delete(t.tills.voids, t.tills.vorder[0])
		t.tills.vorder = t.tills.vorder[1:]
	}
	return res, err
}
