package iso8583

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	moov "github.com/moov-io/iso8583"

	"github.com/posd-dev/posd/terminal/card"
)

// Message type indicators of the rest of the terminal message set ([ResponseMTI] maps each
// request to its response).
const (
	MTIAdvice                    = "0220" // financial advice: offline approval, completion
	MTIAdviceRepeat              = "0221" // the same advice, sent again
	MTIAdviceResponse            = "0230"
	MTIReversalRequest           = "0400"
	MTIReversalRequestRepeat     = "0401"
	MTIReversalResponse          = "0410"
	MTIReversalAdvice            = "0420" // store-and-forward reversal
	MTIReversalAdviceRepeat      = "0421"
	MTIReversalAdviceResponse    = "0430"
	MTIReconciliationRequest     = "0500"
	MTIReconciliationResponse    = "0510"
	MTINetworkManagementRequest  = "0800"
	MTINetworkManagementResponse = "0810"
)

// Network management information codes (field 70).
const (
	NMSignOn  = "001"
	NMSignOff = "002"
	NMEcho    = "301"
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

// More response codes (field 39) of the message set.
const (
	RCNoOriginal     = "25" // unable to locate the original transaction: nothing to reverse
	RCInvalidTxn     = "12" // invalid transaction
	RCInvalidAmount  = "13"
	RCDuplicate      = "94" // duplicate transmission with different content
	RCReconcileError = "95" // reconciliation totals differ from the host's
)

// The field that carries the batch number of a reconciliation in this dialect: field 60
// (LLLVAR ans, "reserved, private"), as 6 digits. Like the KSN in field 62, a documented
// choice; ISO 8583:1987 has no batch number field.
const fieldBatch = 60

// rule is what a request MTI must carry and must not carry.
type rule struct{ mandatory, forbidden []int }

// ruleTable maps each request MTI to its rule; fields 2 or 35 of an 0100 or 0200 are
// checked apart. No track or PIN data after authorization: PCI DSS 3.3.1. The table is
// built once and never changed.
var ruleTable = sync.OnceValue(func() map[string]rule {
	noCardSecrets := []int{35, 36, 45, 52}
	auth := rule{mandatory: []int{3, 4, 7, 11, 12, 13, 22, 41, 42, 49}}
	advice := rule{[]int{2, 3, 4, 7, 11, 12, 13, 14, 22, 39, 41, 42, 49}, noCardSecrets}
	reversal := rule{[]int{3, 4, 7, 11, 39, 41, 42, 49, 90}, noCardSecrets}
	return map[string]rule{
		MTIAuthorizationRequest: auth, MTIFinancialRequest: auth,
		MTIAdvice: advice, MTIAdviceRepeat: advice,
		MTIReversalRequest: reversal, MTIReversalRequestRepeat: reversal,
		MTIReversalAdvice: reversal, MTIReversalAdviceRepeat: reversal,
		MTIReconciliationRequest:    {mandatory: []int{7, 11, 41, 42, 50, fieldBatch, 74, 75, 76, 77, 86, 87, 88, 89, 97}},
		MTIBatchUpload:              {[]int{3, 4, 7, 11, 39, 41, 42, 49, fieldBatch}, []int{2, 14, 35, 36, 45, 52, 55}},
		MTINetworkManagementRequest: {mandatory: []int{7, 11, 70}},
	}
})

// CheckMandatory checks that msg has the fields its MTI requires in this dialect, and none
// of the fields it must not carry:
//
//	0100, 0200         3 4 7 11 12 13 22 41 42 49, and 2 (with 14) or 35; 62 with 52
//	0220, 0221         2 3 4 7 11 12 13 14 22 39 41 42 49; never 35 36 45 52
//	0400, 0401,
//	0420, 0421         3 4 7 11 39 41 42 49 90; never 35 36 45 52
//	0500               7 11 41 42 50 60 74-77 86-89 97 (3 optional: 920000, 960000)
//	0320               3 4 7 11 39 41 42 49 60; never 2 14 35 36 45 52 55
//	0800               7 11 70
//
// Other MTIs (responses included) are refused with [ErrUnsupportedField] on field 0.
func CheckMandatory(msg *Message) error {
	if msg == nil {
		return &FieldError{Field: 0, Op: "build", Err: ErrMissingField}
	}
	mti, err := msg.GetMTI()
	if err != nil {
		return &FieldError{Field: 0, Op: "build", Err: err}
	}
	r, ok := ruleTable()[mti]
	ids, forbidden := r.mandatory, r.forbidden
	if !ok {
		return &FieldError{Field: 0, Op: "build", Err: fmt.Errorf("%w: no rules for MTI %q", ErrUnsupportedField, mti)}
	}
	has := func(id int) bool { return msg.GetField(id) != nil }
	for _, id := range ids {
		if !has(id) {
			return &FieldError{Field: id, Op: "build", Err: ErrMissingField}
		}
	}
	for _, id := range forbidden {
		if has(id) {
			return &FieldError{Field: id, Op: "build", Err: fmt.Errorf("%w: an %s must not carry track or PIN data", ErrInvalidValue, mti)}
		}
	}
	if mti == MTIAuthorizationRequest || mti == MTIFinancialRequest {
		if !has(2) && !has(35) {
			return &FieldError{Field: 2, Op: "build", Err: fmt.Errorf("%w: need field 2 or field 35", ErrMissingField)}
		}
		if has(2) && !has(35) && !has(14) {
			return &FieldError{Field: 14, Op: "build", Err: fmt.Errorf("%w: a PAN without track 2 needs its expiry", ErrMissingField)}
		}
	}
	if has(52) && !has(fieldKSN) {
		return &FieldError{Field: fieldKSN, Op: "build", Err: fmt.Errorf("%w: a PIN block needs its KSN", ErrMissingField)}
	}
	return nil
}

// builder sets fields of a new message on the default spec, keeping the first error.
type builder struct {
	msg *Message
	err error
}

func newBuilder(mti string) *builder {
	b := &builder{msg: moov.NewMessage(defaultSpec())}
	b.msg.MTI(mti)
	return b
}

func (b *builder) fail(id int, err error) {
	if b.err == nil {
		b.err = &FieldError{Field: id, Op: "build", Err: err}
	}
}

// set sets a required field: an empty value is ErrMissingField.
func (b *builder) set(id int, v string) {
	if b.err != nil {
		return
	}
	if v == "" {
		b.fail(id, ErrMissingField)
		return
	}
	if err := b.msg.Field(id, v); err != nil {
		b.fail(id, err)
	}
}

// opt sets an optional field when v is not empty.
func (b *builder) opt(id int, v string) {
	if v != "" {
		b.set(id, v)
	}
}

func (b *builder) binary(id int, v []byte) {
	if b.err != nil || v == nil {
		return
	}
	if err := b.msg.BinaryField(id, append([]byte(nil), v...)); err != nil {
		b.fail(id, err)
	}
}

func (b *builder) stan(s uint32) {
	if s == 0 || s > maxSTAN {
		b.fail(11, fmt.Errorf("%w: STAN must be 1 to 999999", ErrInvalidValue))
		return
	}
	b.set(11, fmt.Sprintf("%06d", s))
}

func (b *builder) amount(id int, minor int64) {
	if minor < 0 || minor > maxAmountMinor {
		b.fail(id, fmt.Errorf("%w: amount out of range", ErrInvalidValue))
		return
	}
	b.set(id, fmt.Sprintf("%012d", minor))
}

func (b *builder) transmission(t time.Time) {
	if t.IsZero() {
		b.fail(7, ErrMissingField)
		return
	}
	b.set(7, t.UTC().Format("0102150405"))
}

func (b *builder) local(t time.Time) {
	if t.IsZero() {
		b.fail(12, ErrMissingField)
		return
	}
	b.set(12, t.Format("150405"))
	b.set(13, t.Format("0102"))
}

func (b *builder) pan(p card.PAN, expiry string, expiryRequired bool) {
	if p.IsZero() {
		b.fail(2, fmt.Errorf("%w: need a PAN", ErrMissingField))
		return
	}
	b.set(2, p.Digits())
	if expiry == "" && !expiryRequired {
		return
	}
	if _, err := card.ParseExpiry(expiry); err != nil {
		b.fail(14, fmt.Errorf("%w: expiry must be YYMM", ErrInvalidValue))
		return
	}
	b.set(14, expiry)
}

func (b *builder) responseCode(id int, rc string) {
	if rc != "" && (len(rc) != 2 || classAN.badChar([]byte(rc)) >= 0) {
		b.fail(id, fmt.Errorf("%w: a response code is 2 letters or digits", ErrInvalidValue))
		return
	}
	b.set(id, rc)
}

// finish checks the MTI's fields and packs the message once, so that every field is known
// to fit.
func (b *builder) finish() (*Message, error) {
	if b.err != nil {
		return nil, b.err
	}
	if err := CheckMandatory(b.msg); err != nil {
		return nil, err
	}
	if _, err := Pack(b.msg); err != nil {
		return nil, err
	}
	return b.msg, nil
}

// Original identifies the transaction a reversal or a completion refers to: field 90,
// "original data elements" (n 42): original MTI (4), STAN (6), transmission date and time
// (10, MMDDhhmmss in UTC), acquiring institution id (11) and forwarding institution id (11),
// the ids right-aligned and zero filled. It is a value, safe for concurrent use if not
// modified.
type Original struct {
	MTI              string    // the original request's MTI, e.g. "0200"
	STAN             uint32    // the original's field 11
	TransmissionTime time.Time // the original's field 7
	AcquiringID      string    // up to 11 digits; default (empty) all zeros
	ForwardingID     string    // up to 11 digits; default (empty) all zeros
}

// Field90 returns the 42 digits of field 90.
func (o Original) Field90() (string, error) {
	if len(o.MTI) != 4 || classN.badChar([]byte(o.MTI)) >= 0 {
		return "", fmt.Errorf("%w: original MTI must be 4 digits", ErrInvalidValue)
	}
	if o.STAN == 0 || o.STAN > maxSTAN {
		return "", fmt.Errorf("%w: original STAN must be 1 to 999999", ErrInvalidValue)
	}
	if o.TransmissionTime.IsZero() {
		return "", fmt.Errorf("%w: original transmission time missing", ErrMissingField)
	}
	for _, id := range []string{o.AcquiringID, o.ForwardingID} {
		if len(id) > 11 || classN.badChar([]byte(id)) >= 0 {
			return "", fmt.Errorf("%w: institution ids are up to 11 digits", ErrInvalidValue)
		}
	}
	return fmt.Sprintf("%s%06d%s%011s%011s", o.MTI, o.STAN, o.Transmission(), o.AcquiringID, o.ForwardingID), nil
}

// Transmission returns the original's transmission date and time as field 7 carries it.
func (o Original) Transmission() string { return o.TransmissionTime.UTC().Format("0102150405") }

// ParseOriginal reads field 90. Field 90 has no year: the transmission time is placed in
// the year that puts it closest to ref (a host's clock), within six months. The institution
// ids come back as 11 digits.
func ParseOriginal(field90 string, ref time.Time) (Original, error) {
	if len(field90) != 42 || classN.badChar([]byte(field90)) >= 0 {
		return Original{}, &FieldError{Field: 90, Op: "unpack", Err: fmt.Errorf("%w: field 90 must be 42 digits", ErrInvalidValue)}
	}
	stan, _ := strconv.ParseUint(field90[4:10], 10, 32)
	t, err := time.Parse("0102150405", field90[10:20])
	if err != nil || stan == 0 {
		return Original{}, &FieldError{Field: 90, Op: "unpack", Err: fmt.Errorf("%w: original STAN or transmission time", ErrInvalidValue)}
	}
	ref = ref.UTC()
	best := time.Time{}
	for _, y := range []int{ref.Year() - 1, ref.Year(), ref.Year() + 1} {
		c := time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
		if c.Month() != t.Month() {
			continue // 29 February in a year without it
		}
		if best.IsZero() || absDuration(c.Sub(ref)) < absDuration(best.Sub(ref)) {
			best = c
		}
	}
	return Original{MTI: field90[:4], STAN: uint32(stan), TransmissionTime: best,
		AcquiringID: field90[20:31], ForwardingID: field90[31:42]}, nil
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

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

// NetworkManagement is an 0800 request: sign-on (NMSignOn), sign-off (NMSignOff) or echo
// (NMEcho). It holds no card data. It is a value, safe for concurrent use if not modified.
type NetworkManagement struct {
	Code             string    // field 70: "001", "002" or "301"; required
	STAN             uint32    // field 11; required
	TransmissionTime time.Time // field 7; required
	TerminalID       string    // field 41; optional (matching uses it when present)
}

// Message builds the 0800 on the [DefaultSpec] dialect and checks it.
func (n NetworkManagement) Message() (*Message, error) {
	b := newBuilder(MTINetworkManagementRequest)
	b.transmission(n.TransmissionTime)
	b.stan(n.STAN)
	b.opt(41, n.TerminalID)
	switch n.Code {
	case NMSignOn, NMSignOff, NMEcho:
		b.set(70, n.Code)
	case "":
		b.fail(70, ErrMissingField)
	default:
		b.fail(70, fmt.Errorf("%w: network management code must be 001, 002 or 301", ErrInvalidValue))
	}
	return b.finish()
}

// String returns a one-line summary.
func (n NetworkManagement) String() string {
	return fmt.Sprintf("0800 stan=%06d tid=%s nmic=%s", n.STAN, n.TerminalID, n.Code)
}

// LogValue implements slog.LogValuer with the content of String.
func (n NetworkManagement) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mti", MTINetworkManagementRequest), slog.Int64("stan", int64(n.STAN)),
		slog.String("tid", n.TerminalID), slog.String("nmic", n.Code))
}

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

// Response is the part of any response the terminal acts on: 0110, 0210, 0230, 0410,
// 0430, 0510 or 0810. It holds no card data; Field55 (issuer data such as tags 91, 71, 72)
// is not shown by String or LogValue. It is a value, safe for concurrent use if not
// modified.
type Response struct {
	MTI          string
	ResponseCode string // field 39
	STAN         uint32 // field 11
	TerminalID   string // field 41; may be empty in an 0810
	ApprovalCode string // field 38; may be empty
	RRN          string // field 37; may be empty
	AmountMinor  int64  // field 4; 0 when absent
	NetworkCode  string // field 70 of an 0810
	Field55      []byte // ICC data from the issuer; nil when absent
}

// ParseResponse reads any response of the message set (an MTI whose third digit is 1 or
// 3). Fields 11 and 39 are required. A decline is a response like any other.
func ParseResponse(msg *Message) (Response, error) {
	var r Response
	if msg == nil {
		return Response{}, &FieldError{Field: 0, Op: "unpack", Err: ErrMissingField}
	}
	var err error
	if r.MTI, err = msg.GetMTI(); err != nil {
		return Response{}, &FieldError{Field: 0, Op: "unpack", Err: err}
	}
	if len(r.MTI) != 4 || classN.badChar([]byte(r.MTI)) >= 0 || (r.MTI[2] != '1' && r.MTI[2] != '3') {
		return Response{}, &FieldError{Field: 0, Op: "unpack", Err: fmt.Errorf("%w: MTI %q is not a response", ErrInvalidValue, r.MTI)}
	}
	get := func(id int, required bool) (string, error) {
		s, err := msg.GetString(id)
		if err != nil {
			return "", &FieldError{Field: id, Op: "unpack", Err: err}
		}
		if s == "" && required {
			return "", &FieldError{Field: id, Op: "unpack", Err: ErrMissingField}
		}
		return s, nil
	}
	stan, err := get(11, true)
	if err != nil {
		return Response{}, err
	}
	n, err := strconv.ParseUint(stan, 10, 32)
	if err != nil {
		return Response{}, &FieldError{Field: 11, Op: "unpack", Err: fmt.Errorf("%w: STAN is not a number", ErrInvalidValue)}
	}
	r.STAN = uint32(n)
	if r.ResponseCode, err = get(39, true); err != nil {
		return Response{}, err
	}
	for _, f := range []struct {
		id  int
		dst *string
	}{{41, &r.TerminalID}, {38, &r.ApprovalCode}, {37, &r.RRN}, {70, &r.NetworkCode}} {
		if *f.dst, err = get(f.id, false); err != nil {
			return Response{}, err
		}
	}
	r.TerminalID = strings.TrimRight(r.TerminalID, " ")
	amount, err := get(4, false)
	if err != nil {
		return Response{}, err
	}
	if amount != "" {
		if r.AmountMinor, err = strconv.ParseInt(amount, 10, 64); err != nil {
			return Response{}, &FieldError{Field: 4, Op: "unpack", Err: fmt.Errorf("%w: amount is not a number", ErrInvalidValue)}
		}
	}
	if b, err := msg.GetBytes(55); err == nil && b != nil {
		r.Field55 = append([]byte(nil), b...)
	}
	return r, nil
}

// Approved reports whether the response code is "00".
func (r Response) Approved() bool { return r.ResponseCode == RCApproved }

// String returns a one-line summary without field 55.
func (r Response) String() string {
	s := fmt.Sprintf("%s stan=%06d tid=%s rc=%s (%s)", r.MTI, r.STAN, r.TerminalID, r.ResponseCode, ResponseText(r.ResponseCode))
	if r.ApprovalCode != "" {
		s += " auth=" + r.ApprovalCode
	}
	if r.RRN != "" {
		s += " rrn=" + r.RRN
	}
	if r.NetworkCode != "" {
		s += " nmic=" + r.NetworkCode
	}
	return s
}

// LogValue implements slog.LogValuer with the content of String.
func (r Response) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mti", r.MTI), slog.Int64("stan", int64(r.STAN)), slog.String("tid", r.TerminalID),
		slog.String("rc", r.ResponseCode), slog.String("auth", r.ApprovalCode), slog.String("rrn", r.RRN),
		slog.String("nmic", r.NetworkCode), slog.Bool("icc", r.Field55 != nil))
}
