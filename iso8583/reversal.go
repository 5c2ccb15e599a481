package iso8583

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

// Reversal reason codes: field 39 of a reversal request, as common practice carries it.
//
//	situation                                                        code
//	no response before the timeout, or a response after it          68 (response received too late)
//	the customer or the till cancelled after the host approved       17 (customer cancellation)
//	outcome unknown for another reason (disconnect after sending,
//	  an unreadable response), or the chip card declined after the
//	  host approved                                                  06 (error)
const (
	ReasonLateResponse   = "68"
	ReasonCustomerCancel = "17"
	ReasonError          = "06"
)

// Reversal asks the host to undo a transaction whose outcome is unknown or that must not
// stand: 0400 (reversal request), 0420 (reversal advice, the store-and-forward form) and
// their repeats 0401 and 0421. Field 90 identifies the original; field 39 carries the
// reason (ReasonLateResponse, ReasonCustomerCancel, ReasonError). A reversal carries no
// track data or PIN block; the PAN is optional, since field 90 and the terminal id identify
// the original. Its String and LogValue are masked.
//
// The usual flow: a reversal that got no answer goes to the store-and-forward queue as an
// 0420 and is retransmitted as 0421 until the host answers; a retransmission may keep its
// STAN and take a new transmission time. Most acquirers do not take 0401. The host answers
// 00 (reversed) or 25 (no such original: nothing was charged); either ends the reversal.
// A host recognizes a reversal by its original, so sending one twice never reverses twice.
//
// A Reversal is a value, safe for concurrent use if not modified.
type Reversal struct {
	Advice           bool      // 0420 instead of 0400
	Repeat           bool      // 0421 (0401 without Advice)
	STAN             uint32    // field 11: the reversal's own STAN; required
	TransmissionTime time.Time // field 7: the reversal's own transmission time; required
	LocalTime        time.Time // fields 12 and 13: the original's local time; optional

	// Field 90, the original data elements; all but the institution ids required.
	OriginalMTI              string    // e.g. "0200"
	OriginalSTAN             uint32    // the original's field 11
	OriginalTransmissionTime time.Time // the original's field 7
	AcquiringInstitutionID   string    // up to 11 digits; default all zeros
	ForwardingInstitutionID  string    // up to 11 digits; default all zeros

	PAN             card.PAN // field 2; optional
	Expiry          string   // field 14, YYMM; optional
	AmountMinor     int64    // field 4: the original's amount
	CurrencyNumeric string   // field 49; required
	ProcessingCode  string   // field 3; default "000000"
	EntryMode       string   // field 22; optional
	TerminalID      string   // field 41; required
	MerchantID      string   // field 42; required
	ReasonCode      string   // field 39; required
}

// MTI returns 0400, 0401, 0420 or 0421.
func (r Reversal) MTI() string {
	switch {
	case r.Advice && r.Repeat:
		return MTIReversalAdviceRepeat
	case r.Advice:
		return MTIReversalAdvice
	case r.Repeat:
		return MTIReversalRequestRepeat
	}
	return MTIReversalRequest
}

// Original returns the original data elements of field 90.
func (r Reversal) Original() Original {
	return Original{MTI: r.OriginalMTI, STAN: r.OriginalSTAN, TransmissionTime: r.OriginalTransmissionTime,
		AcquiringID: r.AcquiringInstitutionID, ForwardingID: r.ForwardingInstitutionID}
}

// Message builds the reversal on the [DefaultSpec] dialect and checks it.
func (r Reversal) Message() (*Message, error) {
	b := newBuilder(r.MTI())
	pc := r.ProcessingCode
	if pc == "" {
		pc = DefaultProcessingCode
	}
	if !r.PAN.IsZero() {
		b.pan(r.PAN, r.Expiry, false)
	} else if r.Expiry != "" {
		b.fail(14, fmt.Errorf("%w: an expiry without a PAN", ErrInvalidValue))
	}
	b.set(3, pc)
	b.amount(4, r.AmountMinor)
	b.transmission(r.TransmissionTime)
	b.stan(r.STAN)
	if !r.LocalTime.IsZero() {
		b.local(r.LocalTime)
	}
	b.opt(22, r.EntryMode)
	b.responseCode(39, r.ReasonCode)
	b.set(41, r.TerminalID)
	b.set(42, r.MerchantID)
	b.set(49, r.CurrencyNumeric)
	f90, err := r.Original().Field90()
	if err != nil {
		b.fail(90, err)
	}
	b.set(90, f90)
	return b.finish()
}

// String returns a masked one-line summary.
func (r Reversal) String() string {
	return fmt.Sprintf("%s stan=%06d tid=%s amount=%d cur=%s pan=%s reason=%s original=%s/%06d/%s", r.MTI(), r.STAN,
		r.TerminalID, r.AmountMinor, r.CurrencyNumeric, r.PAN.Masked(), r.ReasonCode, r.OriginalMTI, r.OriginalSTAN, r.Original().Transmission())
}

// LogValue implements slog.LogValuer with the content of String.
func (r Reversal) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mti", r.MTI()), slog.Int64("stan", int64(r.STAN)), slog.String("tid", r.TerminalID),
		slog.Int64("amount", r.AmountMinor), slog.String("currency", r.CurrencyNumeric), slog.String("pan", r.PAN.Masked()),
		slog.String("reason", r.ReasonCode), slog.String("original_mti", r.OriginalMTI),
		slog.Int64("original_stan", int64(r.OriginalSTAN)), slog.String("original_time", r.Original().Transmission()))
}
