package iso8583

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// More response codes (field 39) of the message set.
const (
	RCNoOriginal     = "25" // unable to locate the original transaction: nothing to reverse
	RCInvalidTxn     = "12" // invalid transaction
	RCInvalidAmount  = "13"
	RCDuplicate      = "94" // duplicate transmission with different content
	RCReconcileError = "95" // reconciliation totals differ from the host's
)

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
		s, err := msg.text(id)
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
