package terminal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
)

// ErrUnknownTransaction means a void named a transaction this terminal does not have.
var ErrUnknownTransaction = errors.New("terminal: no such transaction on this terminal")

// VoidResult says how a voided sale is undone.
//
// A plain value: safe for concurrent use when not modified.
type VoidResult struct {
	TxnID store.TxnID
	// Withdrawn: an offline approval whose advice had never been sent; nothing reached the
	// host and nothing needs reversing. Otherwise reversals are queued and sent before any
	// new authorization (Reversals says how many).
	Withdrawn bool
	Reversals int
	// AwaitingAdvice: the advice being undone may be on its way; it is delivered first and
	// its reversal follows once the host acknowledged it.
	AwaitingAdvice bool
	Message        string
}

// TxnIDFromPOI parses a POITransactionID this terminal issued ("TERMINAL-00000042").
func (t *Terminal) TxnIDFromPOI(poiTxnID string) (store.TxnID, error) {
	tid, num, ok := strings.Cut(poiTxnID, "-")
	if !ok || tid != t.opts.TerminalID {
		return 0, fmt.Errorf("%w: %q", ErrUnknownTransaction, poiTxnID)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: %q", ErrUnknownTransaction, poiTxnID)
	}
	return store.TxnID(n), nil
}

// Void cancels an approved sale at the till's request (a cancel after approval): it is
// reversed at the host, or, for an offline approval whose advice never left posd,
// withdrawn. by names who asked (the till's SaleID). A declined, failed or already voided
// sale returns an error wrapping store.ErrNotVoidable, as does one posd cannot undo itself
// (the error says why): the till is told "voided" only when the charge is being undone.
//
// What is reversed (see store.Void for the rule): an online approval's request (0200, or
// the 0100 of dual message); an advice (an offline approval's 0220, or a completion's)
// that was acknowledged or may have been sent, named by field 90 as it was sent, its
// STAN and first field 7. An advice still queued is delivered before its reversal. A dual
// message sale whose completion never left posd has the completion withdrawn and the 0100
// reversed; once the completion may have been sent both are reversed (the 0100's reversal
// changes nothing at a host where the completion already replaced the hold).
func (t *Terminal) Void(ctx context.Context, poiTxnID, by string) (VoidResult, error) {
	id, err := t.TxnIDFromPOI(poiTxnID)
	if err != nil {
		return VoidResult{}, err
	}
	rec, err := t.st.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return VoidResult{}, fmt.Errorf("%w: %q", ErrUnknownTransaction, poiTxnID)
	}
	if err != nil {
		return VoidResult{}, err
	}
	if out := rec.Outcome; out != nil && out.Batch != 0 && out.Batch < t.st.OpenBatch() {
		// Settled with the acquirer at the close: a reversal no longer undoes it.
		return VoidResult{}, fmt.Errorf("terminal: void %d: %w: it is in batch %d, which is closed: refund it instead", uint64(id), store.ErrNotVoidable, out.Batch)
	}
	if rec.Intent.Kind != store.KindRefund {
		refunded, err := t.refundsCount(ctx, id)
		if err != nil {
			return VoidResult{}, fmt.Errorf("terminal: void %d: %w", uint64(id), err)
		}
		if refunded {
			return VoidResult{}, fmt.Errorf("terminal: void %d: %w: the sale has refunds; void them first or refund what remains", uint64(id), store.ErrNotVoidable)
		}
	}
	q, err := t.queuedFromRecord(rec, iso8583.ReasonCustomerCancel)
	if err != nil {
		return VoidResult{}, fmt.Errorf("terminal: void %d: %w", uint64(id), err)
	}
	if out := rec.Outcome; out != nil && out.AuthorizedMinor > 0 {
		q.AmountMinor = out.AuthorizedMinor // a partial approval: the host holds what it approved
	}
	// The store gives each reversal it queues a STAN in the void's own commit.
	payload, _ := json.Marshal(q)
	// It goes to the host the request went to (the store sends an advice's reversal where
	// the advice went).
	rev := store.Item{Kind: store.KindReversal, AmountMinor: q.AmountMinor, Currency: rec.Intent.Currency, MaskedPAN: rec.Intent.MaskedPAN, Payload: payload, Host: rec.Intent.Host}
	rep, err := t.st.Void(ctx, id, by, &rev)
	if err != nil {
		return VoidResult{}, fmt.Errorf("terminal: void %d: %w", uint64(id), err)
	}
	res := VoidResult{TxnID: id, Withdrawn: rep.Reversals == 0, Reversals: rep.Reversals, AwaitingAdvice: rep.Held}
	switch {
	case res.Withdrawn:
		res.Message = "voided: the offline approval had not reached the acquirer and was withdrawn"
	case rep.Held:
		res.Message = "voided: the advice already on its way to the acquirer is delivered first, then reversed; nothing stays charged"
	default:
		res.Message = "voided: a reversal is queued and goes to the acquirer before any new sale"
	}
	if rep.Reversals > 0 {
		t.opts.Observe.reversals(rep.Reversals)
		t.fwd.Kick()
	}
	t.log.Info("sale voided", "txn", uint64(id), "by", by, "withdrawn", res.Withdrawn, "reversals", rep.Reversals, "awaiting_advice", rep.Held, "pan", rec.Intent.MaskedPAN)
	return res, nil
}

// Recover settles transactions a crash left without an outcome (intent journaled, the
// request maybe sent): each is recorded outcome-unknown and a reversal is queued in the
// same commit. The card data is gone with the crashed process, so the reversal identifies
// the original by field 90 alone; a host that never saw the request answers "no original"
// and nothing is lost. It returns how many it settled.
func (t *Terminal) Recover(ctx context.Context) (int, error) {
	open, err := t.st.Unfinished(ctx)
	if err != nil {
		return 0, err
	}
	for _, rec := range open {
		q, err := t.queuedFromRecord(rec, iso8583.ReasonError)
		if err != nil {
			return 0, fmt.Errorf("terminal: recover transaction %d: %w", uint64(rec.ID), err)
		}
		rev, err := t.reversalItem(ctx, q, rec.Intent.Currency, rec.Intent.MaskedPAN)
		if err != nil {
			return 0, err
		}
		rev.Host = rec.Intent.Host // the host the request was for: it may hold it
		out := store.Outcome{State: store.StateUnknown, Reason: "posd stopped before the outcome was recorded; reversing", Time: t.opts.Now()}
		if _, err := t.st.FinishAndQueue(ctx, rec.ID, out, rev); err != nil {
			return 0, fmt.Errorf("terminal: recover transaction %d: %w", uint64(rec.ID), err)
		}
		t.reversalsQueued(rev)
		t.log.Warn("transaction found without an outcome after a restart: recorded outcome-unknown, reversal queued", "txn", uint64(rec.ID), "stan", rec.Intent.STAN, "pan", rec.Intent.MaskedPAN)
	}
	if len(open) > 0 {
		t.fwd.Kick()
	}
	return len(open), nil
}
