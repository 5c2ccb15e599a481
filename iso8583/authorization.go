package iso8583

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

// Message type indicators of the sale spine. The rest of the message set (advices,
// reversals, reconciliation, network management) is in advice.go, reversal.go,
// reconciliation.go and network.go, built and checked by messages.go; all follow the same
// request/response rule ([ResponseMTI]).
const (
	MTIAuthorizationRequest  = "0100"
	MTIAuthorizationResponse = "0110"
	MTIFinancialRequest      = "0200"
	MTIFinancialResponse     = "0210"
)

// DefaultProcessingCode is field 3 of a purchase of goods and services from the default
// accounts.
const DefaultProcessingCode = "000000"

const (
	maxAmountMinor = 999_999_999_999
	maxSTAN        = 999_999
)

// PIN block and KSN lengths of the two DUKPT variants posd carries.
const (
	// TDES DUKPT, ISO 9564 format 0: an 8-byte block and a 10-byte KSN (20 hex digits).
	TDESPINBlockLen = 8
	TDESKSNDigits   = 20
	// AES DUKPT (ANSI X9.24-3-2017), ISO 9564 format 4: a 16-byte block and a 12-byte KSN
	// (24 hex digits).
	AESPINBlockLen = 16
	AESKSNDigits   = 24
)

// Response codes (field 39) this project uses. Any other code is a decline too.
const (
	RCApproved          = "00"
	RCInvalidCard       = "14"
	RCFormatError       = "30"
	RCInsufficientFunds = "51"
	RCExpiredCard       = "54"
	RCIncorrectPIN      = "55"
	RCIssuerUnavailable = "91"
	RCSystemMalfunction = "96"
)

// Response codes of ISO 8583:1987 that approve with a condition: the host has approved (and
// may hold the funds), but on terms a terminal must support to complete the sale.
const (
	RCHonourWithID    = "08" // honour with identification
	RCPartialApproval = "10" // approved for a partial amount (field 4 of the response)
	RCApprovedVIP     = "11" // approved (VIP)
	RCApprovedTrack3  = "16" // approved, update track 3
)

// ResponseText returns a short English text for a response code, for logs and the
// operator; "unknown response code" for codes it does not know.
func ResponseText(code string) string {
	switch code {
	case RCApproved:
		return "approved"
	case "01":
		return "refer to card issuer"
	case "03":
		return "invalid merchant"
	case ReasonError:
		return "error"
	case "04":
		return "pick up card"
	case "05":
		return "do not honour"
	case RCHonourWithID:
		return "honour with identification"
	case RCPartialApproval:
		return "approved for a partial amount"
	case RCApprovedVIP:
		return "approved (VIP)"
	case RCApprovedTrack3:
		return "approved, update track 3"
	case RCInvalidTxn:
		return "invalid transaction"
	case RCInvalidAmount:
		return "invalid amount"
	case ReasonCustomerCancel:
		return "customer cancellation"
	case "22":
		return "suspected malfunction"
	case RCNoOriginal:
		return "unable to locate original transaction"
	case RCInvalidCard:
		return "invalid card number"
	case RCFormatError:
		return "format error"
	case "41":
		return "lost card, pick up"
	case "43":
		return "stolen card, pick up"
	case RCInsufficientFunds:
		return "insufficient funds"
	case RCExpiredCard:
		return "expired card"
	case RCIncorrectPIN:
		return "incorrect PIN"
	case "57":
		return "transaction not permitted to cardholder"
	case "58":
		return "transaction not permitted to terminal"
	case "61":
		return "exceeds withdrawal amount limit"
	case ReasonLateResponse:
		return "response received too late"
	case "75":
		return "allowable number of PIN tries exceeded"
	case RCIssuerUnavailable:
		return "issuer or switch inoperative"
	case RCDuplicate:
		return "duplicate transmission"
	case RCReconcileError:
		return "reconcile error"
	case RCSystemMalfunction:
		return "system malfunction"
	}
	if t, ok := moreResponseTexts[code]; ok {
		return t
	}
	return unknownResponseText
}

const unknownResponseText = "unknown response code"

// moreResponseTexts are the rest of ISO 8583:1987's response codes: declines and errors
// posd does not act on one by one, but knows to be declines.
var moreResponseTexts = map[string]string{
	"02": "refer to card issuer, special condition", "07": "pick up card, special condition",
	"15": "no such issuer", "19": "re-enter transaction", "21": "no action taken",
	"23": "unacceptable transaction fee", "31": "bank not supported by switch", "33": "expired card, pick up",
	"34": "suspected fraud, pick up", "36": "restricted card, pick up", "38": "allowable PIN tries exceeded, pick up",
	"39": "no credit account", "40": "requested function not supported", "42": "no universal account",
	"44": "no investment account", "52": "no cheque account", "53": "no savings account",
	"56": "no card record", "59": "suspected fraud", "60": "card acceptor contact acquirer",
	"62": "restricted card", "63": "security violation", "65": "exceeds withdrawal frequency limit",
	"92": "routing error",
}

// KnownResponseCode reports whether code is a response code posd knows the meaning of.
// An answer with any other code may be an approval under a name posd does not know: the
// terminal treats its outcome as unknown and reverses it, never as a plain decline (so
// does "09", request in progress: the host has not decided yet).
func KnownResponseCode(code string) bool { return ResponseText(code) != unknownResponseText }

// ResponseMTI returns the MTI that answers request MTI mti: the function digit goes from
// request (0) to response (1) or from advice (2) to advice response (3), and a repeat origin
// (1, 3) answers as the original (0, 2): 0200 -> 0210, 0221 -> 0230, 0421 -> 0430,
// 0800 -> 0810. It fails for an MTI that is not a request or an advice.
func ResponseMTI(mti string) (string, error) {
	if len(mti) != 4 || classN.badChar([]byte(mti)) >= 0 {
		return "", fmt.Errorf("iso8583: %w: MTI must be 4 digits", ErrInvalidValue)
	}
	fn, origin := mti[2], mti[3]
	if fn != '0' && fn != '2' {
		return "", fmt.Errorf("iso8583: %w: MTI %s is not a request or an advice", ErrInvalidValue, mti)
	}
	if origin > '5' {
		return "", fmt.Errorf("iso8583: %w: MTI %s has an unknown origin", ErrInvalidValue, mti)
	}
	origin &^= 1 // '1' -> '0', '3' -> '2', '5' -> '4'
	r := [4]byte{mti[0], mti[1], fn + 1, origin}
	switch string(r[:]) { // the responses a terminal waits for, without a new string each time
	case MTIAuthorizationResponse:
		return MTIAuthorizationResponse, nil
	case MTIFinancialResponse:
		return MTIFinancialResponse, nil
	case MTIAdviceResponse:
		return MTIAdviceResponse, nil
	case MTIReversalResponse:
		return MTIReversalResponse, nil
	case MTIReversalAdviceResponse:
		return MTIReversalAdviceResponse, nil
	case MTINetworkManagementResponse:
		return MTINetworkManagementResponse, nil
	}
	return string(r[:]), nil
}

// Authorization is an authorization (0100) or financial (0200) request of a card-present
// sale. Its String and LogValue are masked: PAN first 6 and last 4 digits, no track data,
// no PIN block. An Authorization is a value; it is safe for concurrent use if not modified.
type Authorization struct {
	MTI              string    // "0200" (the default when empty) or "0100"
	ProcessingCode   string    // field 3; default "000000" (purchase)
	AmountMinor      int64     // field 4, in minor units, 0 to 999999999999
	CurrencyNumeric  string    // field 49, ISO 4217 numeric, e.g. "978"; required
	STAN             uint32    // field 11, 1 to 999999; required
	TransmissionTime time.Time // field 7, written in UTC as MMDDhhmmss; required
	LocalTime        time.Time // fields 12 (hhmmss) and 13 (MMDD), in its own location; required
	PAN              card.PAN  // field 2, when Track2 is empty
	Expiry           string    // field 14, YYMM; required when Track2 is empty
	Track2           string    // field 35 without sentinels; when set, fields 2 and 14 are omitted
	EntryMode        string    // field 22, POS entry mode, e.g. "021"; required
	PINBlock         []byte    // field 52, 8 bytes (format 0) or 16 (format 4); nil when no PIN was entered
	KSN              string    // field 62, 20 hex digits with an 8-byte block, 24 with a 16-byte one; required with PINBlock, see below
	TerminalID       string    // field 41, ans up to 8 (padded with spaces); required
	MerchantID       string    // field 42, ans up to 15 (padded with spaces); required
	Field55          []byte    // ICC data (EMV TLV, e.g. the ARQC's tags); nil for none
	PANSequence      string    // field 23, the chip card's PAN sequence number (tag 5F34), 3 digits; "" for none
	// Spec is the dialect the request is built on: the acquirer link's, so that the PIN
	// block is checked against that dialect's field 52 (see [CheckPINFields]). Default nil:
	// [DefaultSpec], whose field 52 takes 8 bytes; a [Client] converts the request to its own
	// dialect when it sends it.
	Spec *MessageSpec
}

// The KSN of a DUKPT PIN block travels in field 62 (LLLVAR ans) as upper-case hexadecimal
// characters, 20 for TDES DUKPT and 24 for AES DUKPT: a documented choice of this default
// dialect, since field 53 is n16 in ISO 8583:1987 and cannot hold a KSN.
const fieldKSN = 62

// CheckPINFields reports whether requests in spec's dialect can carry an encrypted PIN block
// of blockLen bytes in field 52 and its KSN of ksnDigits hexadecimal characters in field 62.
// A nil spec is [DefaultSpec], whose field 52 takes 8 bytes (TDES, format 0); an AES DUKPT
// PIN block (format 4, 16 bytes) needs a dialect whose field 52 takes 16, such as the one
// shipped in iso8583/dialects/aes-pin.json.
//
// The error is a [*FieldError] (wrapping [ErrInvalidLength], or [ErrUnsupportedField] when
// the dialect lacks the field) that names the field, the length given and the length the
// dialect's field takes. Nothing is truncated or padded to fit.
func CheckPINFields(spec *MessageSpec, blockLen, ksnDigits int) error {
	if spec == nil {
		spec = defaultSpec()
	}
	if err := fieldTakes(spec, 52, blockLen, "the PIN block is %d bytes"); err != nil {
		return err
	}
	return fieldTakes(spec, fieldKSN, ksnDigits, "the KSN is %d hexadecimal characters")
}

// fieldTakes checks that a value of n units (bytes of a b field, characters of text) fits
// field id of spec. Fields whose packer is not this package's codec are left to Pack.
func fieldTakes(spec *MessageSpec, id, n int, what string) error {
	name := spec.Name
	if name == "" {
		name = "unnamed"
	}
	f, ok := spec.Fields[id]
	if !ok || f == nil {
		return &FieldError{Field: id, Op: "build", Err: fmt.Errorf("%w: dialect %q does not define field %d", ErrUnsupportedField, name, id)}
	}
	fs := f.Spec()
	c, ok := fs.Packer.(codec)
	if !ok {
		return nil
	}
	units := n
	if c.class == classB && c.countChars {
		n *= 2 // the prefix and the length count hexadecimal characters
	}
	given := func() string { // formatted only for an error: this runs on every request with a PIN
		s := fmt.Sprintf(what, units)
		if n != units {
			s += fmt.Sprintf(" (%d hexadecimal characters)", n)
		}
		return s
	}
	if c.class != classB && badChar(c.class, "0123456789ABCDEF") >= 0 {
		return &FieldError{Field: id, Op: "build", Err: fmt.Errorf("%w: field %d of dialect %q is class %s, which cannot carry hexadecimal characters", ErrInvalidValue, id, name, c.class)}
	}
	switch {
	case c.fixed() && n != fs.Length:
		return &FieldError{Field: id, Op: "build", Err: fmt.Errorf("%w: %s; field %d of dialect %q takes exactly %d", ErrInvalidLength, given(), id, name, fs.Length)}
	case !c.fixed() && n > fs.Length:
		return &FieldError{Field: id, Op: "build", Err: fmt.Errorf("%w: %s; field %d of dialect %q takes at most %d", ErrInvalidLength, given(), id, name, fs.Length)}
	}
	return nil
}

// Message builds the request on a.Spec (default [DefaultSpec]), checks every value, the PIN
// block against the dialect's field 52 ([CheckPINFields]) and the MTI's mandatory fields,
// and that every field fits as packing would. Errors are [*FieldError]s naming the
// field, never showing card or PIN data.
func (a Authorization) Message() (*Message, error) {
	mti := a.MTI
	if mti == "" {
		mti = MTIFinancialRequest
	}
	if mti != MTIFinancialRequest && mti != MTIAuthorizationRequest {
		return nil, &FieldError{Field: 0, Op: "build", Err: fmt.Errorf("%w: authorization MTI must be 0100 or 0200", ErrInvalidValue)}
	}
	pc := a.ProcessingCode
	if pc == "" {
		pc = DefaultProcessingCode
	}
	if a.AmountMinor < 0 || a.AmountMinor > maxAmountMinor {
		return nil, &FieldError{Field: 4, Op: "build", Err: fmt.Errorf("%w: amount out of range", ErrInvalidValue)}
	}
	if a.STAN == 0 || a.STAN > maxSTAN {
		return nil, &FieldError{Field: 11, Op: "build", Err: fmt.Errorf("%w: STAN must be 1 to 999999", ErrInvalidValue)}
	}
	if a.TransmissionTime.IsZero() {
		return nil, &FieldError{Field: 7, Op: "build", Err: ErrMissingField}
	}
	if a.LocalTime.IsZero() {
		return nil, &FieldError{Field: 12, Op: "build", Err: ErrMissingField}
	}

	spec := a.Spec
	if spec == nil {
		spec = defaultSpec()
	}
	msg := NewMessage(spec)
	msg.MTI(mti)
	// Values go through one scratch buffer: the message keeps copies.
	var scratchArr [64]byte
	scratch := scratchArr[:0]
	setBytes := func(id int, v []byte) error {
		if len(v) == 0 {
			return &FieldError{Field: id, Op: "build", Err: ErrMissingField}
		}
		scratch = v[:0]
		if err := msg.BinaryField(id, v); err != nil {
			return &FieldError{Field: id, Op: "build", Err: err}
		}
		return nil
	}
	set := func(id int, v string) error { return setBytes(id, append(scratch, v...)) }
	for _, id := range [...]int{3, 4, 7, 11, 12, 13, 22, 41, 42, 49} {
		b := scratch
		switch id {
		case 3:
			b = append(b, pc...)
		case 4:
			b = appendDigits(b, a.AmountMinor, 12)
		case 7:
			b = a.TransmissionTime.UTC().AppendFormat(b, "0102150405")
		case 11:
			b = appendDigits(b, int64(a.STAN), 6)
		case 12:
			b = a.LocalTime.AppendFormat(b, "150405")
		case 13:
			b = a.LocalTime.AppendFormat(b, "0102")
		case 22:
			b = append(b, a.EntryMode...)
		case 41:
			b = append(b, a.TerminalID...)
		case 42:
			b = append(b, a.MerchantID...)
		case 49:
			b = append(b, a.CurrencyNumeric...)
		}
		if err := setBytes(id, b); err != nil {
			return nil, err
		}
	}

	if a.Track2 != "" {
		t2, err := card.ParseTrack2(a.Track2)
		if err != nil || strings.ContainsAny(a.Track2, ";?D") {
			return nil, &FieldError{Field: 35, Op: "build", Err: fmt.Errorf("%w: track 2 must be PAN '=' YYMM service code discretionary data, without sentinels", ErrInvalidValue)}
		}
		if !a.PAN.IsZero() && !a.PAN.Equal(t2.PAN()) {
			return nil, &FieldError{Field: 35, Op: "build", Err: fmt.Errorf("%w: PAN and track 2 disagree", ErrInvalidValue)}
		}
		if err := set(35, a.Track2); err != nil {
			return nil, err
		}
	} else {
		if a.PAN.IsZero() {
			return nil, &FieldError{Field: 2, Op: "build", Err: fmt.Errorf("%w: need a PAN or track 2", ErrMissingField)}
		}
		if _, err := card.ParseExpiry(a.Expiry); err != nil {
			return nil, &FieldError{Field: 14, Op: "build", Err: fmt.Errorf("%w: expiry must be YYMM", ErrInvalidValue)}
		}
		if err := set(2, a.PAN.Digits()); err != nil {
			return nil, err
		}
		if err := set(14, a.Expiry); err != nil {
			return nil, err
		}
	}

	switch {
	case a.PINBlock == nil && a.KSN != "":
		return nil, &FieldError{Field: fieldKSN, Op: "build", Err: fmt.Errorf("%w: KSN without a PIN block", ErrInvalidValue)}
	case a.PINBlock != nil:
		ksnDigits := 0
		switch len(a.PINBlock) {
		case TDESPINBlockLen:
			ksnDigits = TDESKSNDigits
		case AESPINBlockLen:
			ksnDigits = AESKSNDigits
		default:
			return nil, &FieldError{Field: 52, Op: "build", Err: fmt.Errorf("%w: PIN block is %d bytes, want %d (ISO 9564 format 0) or %d (format 4)",
				ErrInvalidLength, len(a.PINBlock), TDESPINBlockLen, AESPINBlockLen)}
		}
		ksn := strings.ToUpper(a.KSN)
		if len(ksn) != ksnDigits || classB.badChar([]byte(ksn)) >= 0 {
			return nil, &FieldError{Field: fieldKSN, Op: "build", Err: fmt.Errorf("%w: the KSN of a %d-byte PIN block must be %d hexadecimal digits, got %d characters",
				ErrInvalidValue, len(a.PINBlock), ksnDigits, len(ksn))}
		}
		if err := CheckPINFields(spec, len(a.PINBlock), len(ksn)); err != nil {
			return nil, err
		}
		if err := msg.BinaryField(52, a.PINBlock); err != nil {
			return nil, &FieldError{Field: 52, Op: "build", Err: err}
		}
		if err := set(fieldKSN, ksn); err != nil {
			return nil, err
		}
	}

	if a.Field55 != nil {
		if err := msg.BinaryField(55, a.Field55); err != nil {
			return nil, &FieldError{Field: 55, Op: "build", Err: err}
		}
	}
	if a.PANSequence != "" {
		if len(a.PANSequence) != 3 || classN.badChar([]byte(a.PANSequence)) >= 0 {
			return nil, &FieldError{Field: 23, Op: "build", Err: fmt.Errorf("%w: card sequence number must be 3 digits", ErrInvalidValue)}
		}
		if err := set(23, a.PANSequence); err != nil {
			return nil, err
		}
	}

	if err := CheckMandatory(msg); err != nil {
		return nil, err
	}
	// The fields this function may set, in ascending order.
	ids := [...]int{2, 3, 4, 7, 11, 12, 13, 14, 22, 23, 35, 41, 42, 49, 52, 55, fieldKSN}
	if err := checkPack(msg, ids[:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// maskedPAN returns the masked PAN of a, from PAN or from Track2.
func (a Authorization) maskedPAN() string {
	if !a.PAN.IsZero() {
		return a.PAN.String()
	}
	return card.MaskPAN(trackPAN(a.Track2))
}

// String returns a masked one-line summary: no full PAN, no track, no PIN block, no ICC data.
func (a Authorization) String() string {
	mti := a.MTI
	if mti == "" {
		mti = MTIFinancialRequest
	}
	return fmt.Sprintf("%s stan=%06d tid=%s amount=%d cur=%s pan=%s entry=%s pin=%t icc=%t",
		mti, a.STAN, a.TerminalID, a.AmountMinor, a.CurrencyNumeric, a.maskedPAN(), a.EntryMode, a.PINBlock != nil, a.Field55 != nil)
}

// LogValue implements slog.LogValuer with the same masked content as String.
func (a Authorization) LogValue() slog.Value {
	mti := a.MTI
	if mti == "" {
		mti = MTIFinancialRequest
	}
	return slog.GroupValue(
		slog.String("mti", mti),
		slog.Int64("stan", int64(a.STAN)),
		slog.String("tid", a.TerminalID),
		slog.Int64("amount", a.AmountMinor),
		slog.String("currency", a.CurrencyNumeric),
		slog.String("pan", a.maskedPAN()),
		slog.String("entry", a.EntryMode),
		slog.Bool("pin", a.PINBlock != nil),
		slog.Bool("icc", a.Field55 != nil),
	)
}

// AuthResponse is the part of an 0110 or 0210 the terminal acts on. It holds no card data.
// It is a value; it is safe for concurrent use if not modified.
type AuthResponse struct {
	MTI          string
	ResponseCode string // field 39
	ApprovalCode string // field 38; empty on most declines
	RRN          string // field 37, retrieval reference number; may be empty
	TerminalID   string // field 41
	STAN         uint32 // field 11
	AmountMinor  int64  // field 4; 0 when the host did not echo it
	Currency     string // field 49, ISO 4217 numeric; "" when the host did not echo it
}

// ParseAuthResponse reads an 0110 or 0210. Fields 11, 39 and 41 are required; a decline is
// a response like any other (check [AuthResponse.Approved]).
func ParseAuthResponse(msg *Message) (AuthResponse, error) {
	if msg != nil {
		if mti, err := msg.GetMTI(); err == nil && mti != MTIAuthorizationResponse && mti != MTIFinancialResponse {
			return AuthResponse{}, &FieldError{Field: 0, Op: "unpack", Err: fmt.Errorf("%w: MTI %q is not 0110 or 0210", ErrInvalidValue, mti)}
		}
	}
	r, err := ParseResponse(msg)
	if err != nil {
		return AuthResponse{}, err
	}
	if r.TerminalID == "" {
		return AuthResponse{}, &FieldError{Field: 41, Op: "unpack", Err: ErrMissingField}
	}
	cur, _ := msg.text(49)
	return AuthResponse{MTI: r.MTI, ResponseCode: r.ResponseCode, ApprovalCode: r.ApprovalCode, RRN: r.RRN,
		TerminalID: r.TerminalID, STAN: r.STAN, AmountMinor: r.AmountMinor, Currency: cur}, nil
}

// Approved reports whether the host approved: response code "00" only. Codes that approve
// with a condition (08 honour with identification, 10 partial approval, 11 VIP approval)
// return false; a caller that does not support them must treat the transaction as declined
// and reverse it, since the host may have approved.
func (r AuthResponse) Approved() bool { return r.ResponseCode == RCApproved }

// ApprovedWithCondition reports whether the host approved on a condition (08, 10, 11, 16):
// not a decline, since the approval stands at the host until it is reversed.
func (r AuthResponse) ApprovedWithCondition() bool {
	switch r.ResponseCode {
	case RCHonourWithID, RCPartialApproval, RCApprovedVIP, RCApprovedTrack3:
		return true
	}
	return false
}

// String returns a one-line summary of the response.
func (r AuthResponse) String() string {
	return fmt.Sprintf("%s stan=%06d tid=%s rc=%s (%s) auth=%s rrn=%s", r.MTI, r.STAN, r.TerminalID,
		r.ResponseCode, ResponseText(r.ResponseCode), r.ApprovalCode, r.RRN)
}

// trackPAN returns the leading digits of a track 2 or track 1 string: the PAN, or "" if it
// has no recognizable PAN. Sentinels and track 1's format code are skipped.
func trackPAN(track string) string {
	track = strings.TrimLeft(track, ";%")
	if len(track) > 0 && (track[0] == 'B' || track[0] == 'b') {
		track = track[1:]
	}
	end := 0
	for end < len(track) && isDigit(track[end]) {
		end++
	}
	if end == len(track) || end < 12 || end > 19 {
		return "" // no separator after the digits, or not a PAN length
	}
	return track[:end]
}
