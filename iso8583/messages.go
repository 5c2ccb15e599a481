package iso8583

import (
	"fmt"
	"sync"
	"time"

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
	has := msg.Has
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

// setText sets text field id of msg to v, which the message copies (v may be scratch
// memory).
func setText(msg *Message, id int, v []byte) error { return msg.BinaryField(id, v) }

// appendDigits appends n (0 or more) as width decimal digits, zero filled; higher digits
// are dropped, so n must fit.
func appendDigits(b []byte, n int64, width int) []byte {
	var tmp [20]byte
	width = min(width, len(tmp))
	for i := width - 1; i >= 0; i-- {
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, tmp[:width]...)
}

// builder sets fields of a new message on the default spec, keeping the first error.
type builder struct {
	msg    *Message
	err    error
	buf    []byte    // scratch for values on their way into a field
	fields [3]uint64 // the fields set, as a bitmap (bit id)
}

// mark records that field id was set.
func (b *builder) mark(id int) {
	if id >= 0 && id < 64*len(b.fields) {
		b.fields[id/64] |= 1 << (id % 64)
	}
}

func newBuilder(mti string) *builder {
	b := &builder{msg: NewMessage(defaultSpec()), buf: make([]byte, 0, 64)}
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
	b.setBytes(id, append(b.buf[:0], v...))
}

// setBytes sets a required text field from scratch memory (b.buf's).
func (b *builder) setBytes(id int, v []byte) {
	if b.err != nil {
		return
	}
	if len(v) == 0 {
		b.fail(id, ErrMissingField)
		return
	}
	b.buf = v
	if err := setText(b.msg, id, v); err != nil {
		b.fail(id, err)
	}
	b.mark(id)
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
	if err := b.msg.BinaryField(id, v); err != nil {
		b.fail(id, err)
	}
	b.mark(id)
}

func (b *builder) stan(s uint32) {
	if s == 0 || s > maxSTAN {
		b.fail(11, fmt.Errorf("%w: STAN must be 1 to 999999", ErrInvalidValue))
		return
	}
	b.setBytes(11, appendDigits(b.buf[:0], int64(s), 6))
}

func (b *builder) amount(id int, minor int64) {
	if minor < 0 || minor > maxAmountMinor {
		b.fail(id, fmt.Errorf("%w: amount out of range", ErrInvalidValue))
		return
	}
	b.setBytes(id, appendDigits(b.buf[:0], minor, 12))
}

func (b *builder) transmission(t time.Time) {
	if t.IsZero() {
		b.fail(7, ErrMissingField)
		return
	}
	b.setBytes(7, t.UTC().AppendFormat(b.buf[:0], "0102150405"))
}

func (b *builder) local(t time.Time) {
	if t.IsZero() {
		b.fail(12, ErrMissingField)
		return
	}
	b.setBytes(12, t.AppendFormat(b.buf[:0], "150405"))
	b.setBytes(13, t.AppendFormat(b.buf[:0], "0102"))
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

// finish checks the MTI's fields and that every field set fits ([checkPack]: what packing
// would say, without packing the message whole).
func (b *builder) finish() (*Message, error) {
	if b.err != nil {
		return nil, b.err
	}
	if err := CheckMandatory(b.msg); err != nil {
		return nil, err
	}
	var arr [64 * len(builder{}.fields)]int
	ids := arr[:0]
	for id := range len(arr) {
		if b.fields[id/64]&(1<<(id%64)) != 0 {
			ids = append(ids, id)
		}
	}
	if err := checkPack(b.msg, ids); err != nil {
		return nil, err
	}
	return b.msg, nil
}
