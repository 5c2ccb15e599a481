package iso8583

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

// Advice is a financial advice (0220), or its repeat (0221) when the first got no answer:
// the host is told of a transaction the terminal has already decided, an offline approval
// or a completion. It carries the PAN and expiry, never track data or a PIN block (they
// are not kept after authorization: PCI DSS 3.3.1). Its String and LogValue are masked.
// A repeat must carry the same STAN and local date and time (fields 12, 13) as the first
// transmission; its transmission time (field 7) may be the time of the repeat. The host
// recognizes it by terminal id, STAN and local date and time, and answers it without
// acting twice. An Advice is a value, safe for concurrent use if not modified.
type Advice struct {
	Repeat           bool      // 0221 instead of 0220
	ProcessingCode   string    // field 3; default "000000" (purchase)
	AmountMinor      int64     // field 4, minor units, 0 to 999999999999
	CurrencyNumeric  string    // field 49, ISO 4217 numeric; required
	STAN             uint32    // field 11, 1 to 999999; required
	TransmissionTime time.Time // field 7 (UTC MMDDhhmmss); required
	LocalTime        time.Time // fields 12 and 13; required
	PAN              card.PAN  // field 2; required
	Expiry           string    // field 14, YYMM; required
	EntryMode        string    // field 22; required
	TerminalID       string    // field 41; required
	MerchantID       string    // field 42; required
	ApprovalCode     string    // field 38, exactly 6 letters or digits; optional
	ResponseCode     string    // field 39: the decision, "00" for an approval; required
	Field55          []byte    // ICC data (TLV); optional
	Original         *Original // field 90, for a completion of an earlier authorization; optional
}

// MTI returns "0220" or "0221".
func (a Advice) MTI() string {
	if a.Repeat {
		return MTIAdviceRepeat
	}
	return MTIAdvice
}

// Message builds the advice on the [DefaultSpec] dialect and checks it like
// [Authorization.Message].
func (a Advice) Message() (*Message, error) {
	b := newBuilder(a.MTI())
	pc := a.ProcessingCode
	if pc == "" {
		pc = DefaultProcessingCode
	}
	b.pan(a.PAN, a.Expiry, true)
	b.set(3, pc)
	b.amount(4, a.AmountMinor)
	b.transmission(a.TransmissionTime)
	b.stan(a.STAN)
	b.local(a.LocalTime)
	b.set(22, a.EntryMode)
	b.opt(38, a.ApprovalCode)
	b.responseCode(39, a.ResponseCode)
	b.set(41, a.TerminalID)
	b.set(42, a.MerchantID)
	b.set(49, a.CurrencyNumeric)
	b.binary(55, a.Field55)
	if a.Original != nil {
		f90, err := a.Original.Field90()
		if err != nil {
			b.fail(90, err)
		}
		b.set(90, f90)
	}
	return b.finish()
}

// String returns a masked one-line summary.
func (a Advice) String() string {
	return fmt.Sprintf("%s stan=%06d tid=%s amount=%d cur=%s pan=%s rc=%s icc=%t", a.MTI(), a.STAN, a.TerminalID,
		a.AmountMinor, a.CurrencyNumeric, a.PAN.Masked(), a.ResponseCode, a.Field55 != nil)
}

// LogValue implements slog.LogValuer with the content of String.
func (a Advice) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mti", a.MTI()), slog.Int64("stan", int64(a.STAN)), slog.String("tid", a.TerminalID),
		slog.Int64("amount", a.AmountMinor), slog.String("currency", a.CurrencyNumeric), slog.String("pan", a.PAN.Masked()),
		slog.String("rc", a.ResponseCode), slog.Bool("icc", a.Field55 != nil))
}
