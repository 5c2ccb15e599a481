package terminal

import (
	"context"
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
	// Withdrawn: an offline approval whose advice had not been sent; nothing reached the
	// host and nothing needs reversing. Otherwise a reversal (0400) is queued and sent
	// before any new authorization.
	Withdrawn bool
	Message   string
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
// reversed at the host, or, for an offline approval the host never heard of, withdrawn.
// by names who asked (the till's SaleID). A declined, failed or already voided sale
// returns an error wrapping store.ErrNotVoidable.
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
	q, err := t.queuedFromRecord(rec, iso8583.ReasonCustomerCancel)
	if err != nil {
		return VoidResult{}, fmt.Errorf("terminal: void %d: %w", uint64(id), err)
	}
	rev, err := t.reversalItem(ctx, q, rec.Intent.Currency, rec.Intent.MaskedPAN)
	if err != nil {
		return VoidResult{}, fmt.Errorf("terminal: void %d: %w", uint64(id), err)
	}
	withdrawn, err := t.st.Void(ctx, id, by, &rev)
	if err != nil {
		return VoidResult{}, fmt.Errorf("terminal: void %d: %w", uint64(id), err)
	}
	res := VoidResult{TxnID: id, Withdrawn: withdrawn}
	if withdrawn {
		res.Message = "voided: the offline approval had not reached the acquirer and was withdrawn"
	} else {
		res.Message = "voided: a reversal is queued and goes to the acquirer before any new sale"
		t.fwd.Kick()
	}
	t.log.Info("sale voided", "txn", uint64(id), "by", by, "withdrawn", withdrawn, "pan", rec.Intent.MaskedPAN)
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
		out := store.Outcome{State: store.StateUnknown, Reason: "posd stopped before the outcome was recorded; reversing", Time: t.opts.Now()}
		if _, err := t.st.FinishAndQueue(ctx, rec.ID, out, rev); err != nil {
			return 0, fmt.Errorf("terminal: recover transaction %d: %w", uint64(rec.ID), err)
		}
		t.log.Warn("transaction found without an outcome after a restart: recorded outcome-unknown, reversal queued", "txn", uint64(rec.ID), "stan", rec.Intent.STAN, "pan", rec.Intent.MaskedPAN)
	}
	if len(open) > 0 {
		t.fwd.Kick()
	}
	return len(open), nil
}
