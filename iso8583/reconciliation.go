package iso8583

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// The field that carries the batch number of a reconciliation in this dialect: field 60
// (LLLVAR ans, "reserved, private"), as 6 digits. Like the KSN in field 62, a documented
// choice; ISO 8583:1987 has no batch number field.
const fieldBatch = 60

// Totals are a batch's counts and amounts (minor units) as reconciliation carries them:
// credits (refunds) in fields 74 and 86, their reversals in 75 and 87, debits (sales) in 76
// and 88, their reversals in 77 and 89. A transaction that was reversed counts both among
// the debits (or credits) and among their reversals. Counts go up to 9999999999, amounts
// up to 9999999999999999. A Totals is a plain value, safe for concurrent use if not modified.
type Totals struct {
	CreditsCount          int64
	CreditsAmount         int64
	CreditReversalsCount  int64
	CreditReversalsAmount int64
	DebitsCount           int64
	DebitsAmount          int64
	DebitReversalsCount   int64
	DebitReversalsAmount  int64
}

// Net returns the net settlement amount: debits less their reversals, less credits net of
// theirs. Field 97 carries it as "D" and 16 digits when it is positive or zero, "C" and the
// absolute value when negative.
func (t Totals) Net() int64 {
	return (t.DebitsAmount - t.DebitReversalsAmount) - (t.CreditsAmount - t.CreditReversalsAmount)
}

// Reconciliation is an 0500: the terminal's batch totals, for the host to compare with its
// own. The host answers 00 when they agree (the batch is closed) and 95 when they do not.
// It holds no card data. It is a value, safe for concurrent use if not modified.
type Reconciliation struct {
	BatchNumber      uint32    // field 60 as 6 digits, 1 to 999999; required
	STAN             uint32    // field 11; required
	TransmissionTime time.Time // field 7; required
	TerminalID       string    // field 41; required
	MerchantID       string    // field 42; required
	CurrencyNumeric  string    // field 50, currency of the amounts; required
	Totals           Totals
	// ProcessingCode is field 3: ProcSettlement for a first try, ProcSettlementAfterUpload
	// after a batch upload. Default "": no field 3.
	ProcessingCode string
}

// Message builds the 0500 on the [DefaultSpec] dialect and checks it.
func (r Reconciliation) Message() (*Message, error) {
	b := newBuilder(MTIReconciliationRequest)
	b.opt(3, r.ProcessingCode)
	b.transmission(r.TransmissionTime)
	b.stan(r.STAN)
	b.set(41, r.TerminalID)
	b.set(42, r.MerchantID)
	b.set(50, r.CurrencyNumeric)
	if r.BatchNumber == 0 || r.BatchNumber > 999_999 {
		b.fail(fieldBatch, fmt.Errorf("%w: batch number must be 1 to 999999", ErrInvalidValue))
	}
	b.set(fieldBatch, fmt.Sprintf("%06d", r.BatchNumber))
	t := r.Totals
	for _, c := range []struct {
		id int
		v  int64
	}{{74, t.CreditsCount}, {75, t.CreditReversalsCount}, {76, t.DebitsCount}, {77, t.DebitReversalsCount}} {
		if c.v < 0 || c.v > 9_999_999_999 {
			b.fail(c.id, fmt.Errorf("%w: count out of range", ErrInvalidValue))
		}
		b.set(c.id, fmt.Sprintf("%010d", c.v))
	}
	for _, a := range []struct {
		id int
		v  int64
	}{{86, t.CreditsAmount}, {87, t.CreditReversalsAmount}, {88, t.DebitsAmount}, {89, t.DebitReversalsAmount}} {
		if a.v < 0 || a.v > 9_999_999_999_999_999 {
			b.fail(a.id, fmt.Errorf("%w: amount out of range", ErrInvalidValue))
		}
		b.set(a.id, fmt.Sprintf("%016d", a.v))
	}
	net, sign := t.Net(), "D"
	if net < 0 {
		net, sign = -net, "C"
	}
	if net > 9_999_999_999_999_999 {
		b.fail(97, fmt.Errorf("%w: net amount out of range", ErrInvalidValue))
	}
	b.set(97, fmt.Sprintf("%s%016d", sign, net))
	return b.finish()
}

// String returns a one-line summary.
func (r Reconciliation) String() string {
	t := r.Totals
	return fmt.Sprintf("0500 stan=%06d tid=%s batch=%06d debits=%d/%d reversed=%d/%d credits=%d/%d reversed=%d/%d cur=%s",
		r.STAN, r.TerminalID, r.BatchNumber, t.DebitsCount, t.DebitsAmount, t.DebitReversalsCount, t.DebitReversalsAmount,
		t.CreditsCount, t.CreditsAmount, t.CreditReversalsCount, t.CreditReversalsAmount, r.CurrencyNumeric)
}

// LogValue implements slog.LogValuer with the content of String.
func (r Reconciliation) LogValue() slog.Value {
	t := r.Totals
	return slog.GroupValue(slog.String("mti", MTIReconciliationRequest), slog.Int64("stan", int64(r.STAN)),
		slog.String("tid", r.TerminalID), slog.Int64("batch", int64(r.BatchNumber)), slog.String("currency", r.CurrencyNumeric),
		slog.Int64("debits", t.DebitsCount), slog.Int64("debits_amount", t.DebitsAmount),
		slog.Int64("debit_reversals", t.DebitReversalsCount), slog.Int64("debit_reversals_amount", t.DebitReversalsAmount),
		slog.Int64("credits", t.CreditsCount), slog.Int64("credits_amount", t.CreditsAmount),
		slog.Int64("credit_reversals", t.CreditReversalsCount), slog.Int64("credit_reversals_amount", t.CreditReversalsAmount))
}

// ParseTotals reads the totals of an 0500 (or of a response that echoes them). Absent
// fields count zero; a field that is not a number is a [*FieldError].
func ParseTotals(msg *Message) (Totals, error) {
	var t Totals
	for _, f := range []struct {
		id  int
		dst *int64
	}{{74, &t.CreditsCount}, {75, &t.CreditReversalsCount}, {76, &t.DebitsCount}, {77, &t.DebitReversalsCount},
		{86, &t.CreditsAmount}, {87, &t.CreditReversalsAmount}, {88, &t.DebitsAmount}, {89, &t.DebitReversalsAmount}} {
		s, err := msg.GetString(f.id)
		if err != nil {
			return Totals{}, &FieldError{Field: f.id, Op: "unpack", Err: err}
		}
		if s == "" {
			continue
		}
		if *f.dst, err = strconv.ParseInt(s, 10, 64); err != nil {
			return Totals{}, &FieldError{Field: f.id, Op: "unpack", Err: fmt.Errorf("%w: not a number", ErrInvalidValue)}
		}
	}
	return t, nil
}
