package iso8583

import (
	"fmt"
	"log/slog"
	"time"
)

// Batch upload (0320/0330) and the two processing codes of a reconciliation.
//
// After an 0500 answered 95 (out of balance) the terminal uploads its batch, one 0320 per
// transaction, then sends a closing 0500. This follows common 1987 terminal practice; no
// public processor document describes it, so this dialect defines it:
//
//	0500 first try        field 3 = 920000 (settlement)
//	0320 per transaction  3 (the transaction's processing code: 00xxxx sale, 20xxxx refund),
//	                      4, 7, 11 (the transaction's own STAN), 41, 42, 49, 60 (batch),
//	                      38 (approval code, when there is one), 39 ("00" standing,
//	                      "R1" reversed: it counts among the reversals too)
//	0330 answer           39: 00 the host had it as uploaded; 25 the host did not have it
//	                      (it now does); 13 the host had another amount (it now has the
//	                      uploaded one)
//	0500 after upload     field 3 = 960000 (settlement after batch upload): the host
//	                      compares with the uploaded batch only
const (
	MTIBatchUpload         = "0320"
	MTIBatchUploadResponse = "0330"

	ProcSettlement            = "920000"
	ProcSettlementAfterUpload = "960000"

	UploadStanding = "00" // field 39 of an 0320: the transaction stands
	UploadReversed = "R1" // field 39 of an 0320: the transaction was reversed (voided)
)

// BatchUpload is an 0320: one transaction of a batch as the terminal has it. It holds no
// card data (the host finds the transaction by terminal id and STAN). It is a value, safe
// for concurrent use if not modified.
type BatchUpload struct {
	BatchNumber      uint32    // field 60, 1 to 999999; required
	STAN             uint32    // field 11: the transaction's own STAN; required
	TransmissionTime time.Time // field 7; required
	TerminalID       string    // field 41; required
	MerchantID       string    // field 42; required
	ProcessingCode   string    // field 3, e.g. "000000" or "200000"; required
	AmountMinor      int64     // field 4; required
	CurrencyNumeric  string    // field 49; required
	ApprovalCode     string    // field 38; optional
	Reversed         bool      // field 39 "R1" instead of "00"
}

// Message builds the 0320 on the [DefaultSpec] dialect and checks it.
func (u BatchUpload) Message() (*Message, error) {
	b := newBuilder(MTIBatchUpload)
	b.set(3, u.ProcessingCode)
	b.amount(4, u.AmountMinor)
	b.transmission(u.TransmissionTime)
	b.stan(u.STAN)
	b.opt(38, u.ApprovalCode)
	rc := UploadStanding
	if u.Reversed {
		rc = UploadReversed
	}
	b.set(39, rc)
	b.set(41, u.TerminalID)
	b.set(42, u.MerchantID)
	b.set(49, u.CurrencyNumeric)
	if u.BatchNumber == 0 || u.BatchNumber > 999_999 {
		b.fail(fieldBatch, fmt.Errorf("%w: batch number must be 1 to 999999", ErrInvalidValue))
	}
	b.set(fieldBatch, fmt.Sprintf("%06d", u.BatchNumber))
	return b.finish()
}

// String returns a one-line summary.
func (u BatchUpload) String() string {
	return fmt.Sprintf("0320 stan=%06d tid=%s batch=%06d proc=%s amount=%d reversed=%t", u.STAN, u.TerminalID, u.BatchNumber, u.ProcessingCode, u.AmountMinor, u.Reversed)
}

// LogValue implements slog.LogValuer with the content of String.
func (u BatchUpload) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mti", MTIBatchUpload), slog.Int64("stan", int64(u.STAN)), slog.String("tid", u.TerminalID),
		slog.Int64("batch", int64(u.BatchNumber)), slog.String("proc", u.ProcessingCode), slog.Int64("amount", u.AmountMinor), slog.Bool("reversed", u.Reversed))
}
