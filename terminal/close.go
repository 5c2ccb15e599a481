package terminal

// The batch close: drain the queue, journal the close's intent, send the 0500 with the
// batch's totals; on 95 upload the batch (0320 each) and send the closing 0500; journal the
// outcome with the reconciliation report. Exactly once across a crash: the intent is
// durable before the 0500 goes out, the batch it closes is frozen by it (later outcomes join
// the next batch), and a restarted close repeats the 0500 of that same batch number, which
// a host answers as it did the first time.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
)

// ErrClose means a batch close did not complete. A close that failed after its intent was
// journaled stays pending: the next close repeats it (the same batch, the same totals).
var ErrClose = errors.New("terminal: batch close failed")

// CloseReport is the result of a batch close.
//
// A plain value: safe for concurrent use when not modified.
type CloseReport struct {
	Batch        store.Batch // as journaled, state closed
	Totals       BatchTotals // the totals sent
	Resumed      bool        // a close left pending (a crash, a failure) was finished
	ResponseCode string      // the host's answer to the last 0500
	Uploaded     bool        // the batch was out of balance and uploaded
	Differences  []store.Difference
	AuditSeq     uint64 // the audit chain's head after the close
	AuditHead    string
}

// closeDrainWait is how long a close waits for the queue to drain by default.
const closeDrainWait = 30 * time.Second

// Close closes the open batch (or finishes a close left pending) with the acquirer; by
// names who asked, for the journal. It fails with ErrBusy while a sale runs, and with an
// error wrapping ErrClose when the queue does not drain within Options.CloseDrainWait (the
// batch stays open) or the host's answers do not close the batch (the close stays
// pending; nothing is lost, run Close again).
func (t *Terminal) Close(ctx context.Context, by string) (CloseReport, error) {
	if !t.mu.TryLock() {
		return CloseReport{}, ErrBusy
	}
	defer t.mu.Unlock()
	var rep CloseReport
	if _, pending, err := t.st.PendingClose(ctx); err != nil {
		return rep, fmt.Errorf("%w: %w", ErrClose, err)
	} else if !pending {
		if err := t.drainForClose(ctx); err != nil {
			return rep, err
		}
	}
	b, resumed, err := t.st.BeginClose(ctx, by)
	if err != nil {
		return rep, fmt.Errorf("%w: journaling the close: %w", ErrClose, err)
	}
	rep.Resumed = resumed
	t.failpoint("close-after-intent")
	pendingErr := func(format string, args ...any) error {
		return fmt.Errorf("%w: batch %d: %s; the close is pending: run close again", ErrClose, b.Number, fmt.Sprintf(format, args...))
	}
	if rep.Totals, err = t.Totals(ctx, b.Number); err != nil {
		return rep, pendingErr("%v", err)
	}
	rc, err := t.sendReconciliation(ctx, b, b.STAN, iso8583.ProcSettlement, rep.Totals)
	if err != nil {
		return rep, pendingErr("%v", err)
	}
	t.failpoint("close-after-0500")
	if rc == iso8583.RCReconcileError {
		t.log.Warn("batch out of balance: uploading it", "batch", b.Number, "totals", rep.Totals.Summary())
		if rep.Differences, err = t.upload(ctx, b, rep.Totals); err != nil {
			return rep, pendingErr("batch upload: %v", err)
		}
		rep.Uploaded = true
		stan, err := t.st.NextSTAN(ctx)
		if err != nil {
			return rep, pendingErr("%v", err)
		}
		if rc, err = t.sendReconciliation(ctx, b, stan, iso8583.ProcSettlementAfterUpload, rep.Totals); err != nil {
			return rep, pendingErr("closing 0500 after upload: %v", err)
		}
	}
	if rc != iso8583.RCApproved {
		return rep, pendingErr("the host answered %s", rc)
	}
	rep.ResponseCode = rc
	b.ResponseCode, b.Uploaded, b.Differences, b.Summary = rc, rep.Uploaded, rep.Differences, rep.Totals.Summary()
	if err := t.st.FinishClose(ctx, b); err != nil {
		return rep, pendingErr("journaling the outcome: %v", err)
	}
	b.State = store.BatchClosed
	rep.Batch = b
	rep.AuditSeq, rep.AuditHead = t.st.AuditHead()
	t.log.Info("batch closed", "batch", b.Number, "by", by, "uploaded", rep.Uploaded, "differences", len(rep.Differences),
		"totals", rep.Totals.Summary(), "audit_seq", rep.AuditSeq)
	return rep, nil
}

// drainForClose sends every queued reversal and advice, whatever their backoff, and fails
// if any is left after Options.CloseDrainWait: a close never hides one.
func (t *Terminal) drainForClose(ctx context.Context) error {
	wait := t.opts.CloseDrainWait
	if wait <= 0 {
		wait = closeDrainWait
	}
	dctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_, derr := t.fwd.drain(dctx, false, true)
	q, err := t.st.QueueTotals(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrClose, err)
	}
	if n := q.Reversals + q.Advices + q.Parked; n > 0 {
		why := ""
		if derr != nil {
			why = ": " + derr.Error()
		}
		return fmt.Errorf("%w: %d reversal(s), %d advice(s) and %d parked message(s) still queued after %s%s; the batch stays open",
			ErrClose, q.Reversals, q.Advices, q.Parked, wait, why)
	}
	return nil
}

// sendReconciliation sends one 0500 and returns the host's response code.
func (t *Terminal) sendReconciliation(ctx context.Context, b store.Batch, stan uint32, proc string, bt BatchTotals) (string, error) {
	r := iso8583.Reconciliation{BatchNumber: b.WireNumber(), STAN: stan, TransmissionTime: t.opts.Now(), TerminalID: t.opts.TerminalID,
		MerchantID: t.opts.MerchantID, CurrencyNumeric: t.opts.Currency.Numeric, Totals: bt.ISO, ProcessingCode: proc}
	msg, err := r.Message()
	if err != nil {
		return "", err
	}
	t.log.Info("sending reconciliation", "request", r)
	return t.exchange(ctx, msg, iso8583.MTIReconciliationResponse)
}

// exchange sends msg and reads the response code of an answer of MTI want.
func (t *Terminal) exchange(ctx context.Context, msg *iso8583.Message, want string) (string, error) {
	raw, err := t.send(ctx, "", msg, nil)
	if err != nil {
		return "", err
	}
	resp, err := iso8583.ParseResponse(raw)
	if err != nil {
		return "", fmt.Errorf("unreadable answer: %w", err)
	}
	if resp.MTI != want {
		return "", fmt.Errorf("answer of MTI %s, want %s", resp.MTI, want)
	}
	return resp.ResponseCode, nil
}

// upload sends one 0320 per transaction of the batch and returns those the host did not
// have or had differently.
func (t *Terminal) upload(ctx context.Context, b store.Batch, bt BatchTotals) ([]store.Difference, error) {
	var diffs []store.Difference
	for _, txn := range bt.records {
		proc := "000000"
		if txn.credit {
			proc = "200000"
		}
		u := iso8583.BatchUpload{BatchNumber: b.WireNumber(), STAN: txn.rec.Intent.STAN, TransmissionTime: t.opts.Now(),
			TerminalID: t.opts.TerminalID, MerchantID: t.opts.MerchantID, ProcessingCode: proc, AmountMinor: txn.amount,
			CurrencyNumeric: t.opts.Currency.Numeric, ApprovalCode: txn.rec.Outcome.ApprovalCode, Reversed: txn.reversed}
		msg, err := u.Message()
		if err != nil {
			return nil, fmt.Errorf("transaction %d: %w", txn.rec.ID, err)
		}
		rc, err := t.exchange(ctx, msg, iso8583.MTIBatchUploadResponse)
		if err != nil {
			return nil, fmt.Errorf("transaction %d: %w", txn.rec.ID, err)
		}
		var what string
		switch rc {
		case iso8583.RCApproved:
			continue
		case iso8583.RCNoOriginal:
			what = "missing at the host (now uploaded)"
		case iso8583.RCInvalidAmount:
			what = "different at the host (now as uploaded)"
		default:
			what = "host answered " + rc
		}
		diffs = append(diffs, store.Difference{TxnID: txn.rec.ID, STAN: txn.rec.Intent.STAN, MaskedPAN: txn.rec.Intent.MaskedPAN,
			AmountMinor: txn.amount, Kind: txn.rec.Intent.Kind, ResponseCode: rc, What: what})
	}
	return diffs, nil
}

// POITransactionID is the id the till knows journal record id by (a PaymentResponse's
// POIData.POITransactionID).
func (t *Terminal) POITransactionID(id store.TxnID) string { return t.poiTxnID(id) }
