package abecs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// DefaultChipTimeout is GoChipRequest.Timeout's default: the card's risk
// management and the cardholder's PIN entry.
const DefaultChipTimeout = 60 * time.Second

const (
	goChipFixedLen = 82 // GOC command block before the acquirer data length
	maxHexBlock    = 999
)

// ChipDecision is the card's first decision (GOC). It is a plain value,
// safe for concurrent use.
type ChipDecision uint8

// Decisions, numbered as on the wire.
const (
	DecisionApprovedOffline ChipDecision = 0 // the card approved offline (TC)
	DecisionDeclinedOffline ChipDecision = 1 // the card declined offline (AAC)
	DecisionOnline          ChipDecision = 2 // the card asks for online authorization (ARQC)
)

// String names the decision.
func (d ChipDecision) String() string {
	switch d {
	case DecisionApprovedOffline:
		return "approved offline"
	case DecisionDeclinedOffline:
		return "declined offline"
	case DecisionOnline:
		return "go online"
	}
	return fmt.Sprintf("ChipDecision(%d)", uint8(d))
}

// GoChipRequest asks the pad to process the inserted chip card (GOC): terminal
// risk management, cardholder verification (online PIN under the DUKPT key
// KeyIndex: method 3, TDES, or method 4, AES), and the first cryptogram. It
// is a plain value, safe for concurrent use.
type GoChipRequest struct {
	// AmountMinor is the amount, 0 to 999999999999 minor units.
	AmountMinor int64
	// CashbackMinor is the cashback part, 0 to 999999999999. Default 0.
	CashbackMinor int64
	// OfflineOnly tells the card the terminal cannot go online. Default
	// false: online capable.
	OfflineOnly bool
	// KeyIndex is the pad's DUKPT key slot for an online PIN, 0 to 99.
	KeyIndex int
	// AES asks for an online PIN under the slot's AES DUKPT key (method 4):
	// the result then carries AESPINBlock and AESKSN (ISO 9564 format 4).
	// Default false: TDES DUKPT (method 3), PINBlock and KSN (format 0).
	AES bool
	// RiskManagement asks the pad for terminal risk management (floor limit
	// and random selection). Default false.
	RiskManagement bool
	// FloorLimitMinor, ThresholdMinor (0 to 0xFFFFFFFF), TargetPercent and
	// MaxTargetPercent (0 to 99) are the risk management parameters.
	FloorLimitMinor, ThresholdMinor int64
	TargetPercent, MaxTargetPercent int
	// Tags are the EMV tags the response is to carry, as upper-case hex
	// ("9F26"), in order. Required.
	Tags []string
	// Timeout is how long the client waits. When it elapses the client
	// cancels the command (CAN) and returns an error matching ErrPadTimeout.
	// It is not sent to the pad. Default DefaultChipTimeout.
	Timeout time.Duration
}

// GoChipResult is the card's answer to GOC. PINBlock, KSN and EMVData are
// sensitive (EMVData holds the PAN, track 2 equivalent and cryptogram):
// String, GoString and LogValue show none of them. It is a plain value, safe
// for concurrent reads.
type GoChipResult struct {
	Decision           ChipDecision
	SignatureRequired  bool
	OfflinePINVerified bool
	OfflinePINFailures int // wrong offline PINs entered, 0-9
	OfflinePINBlocked  bool
	// OnlinePIN is true when the cardholder entered a PIN for the issuer:
	// PINBlock is then an ISO 9564 format 0 block encrypted under the DUKPT
	// key of the request's KeyIndex, and KSN that key's serial number; or,
	// with AES (a request with AES set), AESPINBlock is a format 4 block under
	// the slot's AES DUKPT key and AESKSN its 12-byte serial number.
	OnlinePIN   bool
	PINBlock    [8]byte
	KSN         [10]byte
	AES         bool
	AESPINBlock [16]byte
	AESKSN      [12]byte
	// EMVData is the BER-TLV of the requested tags the pad knows, in order.
	EMVData []byte
}

// String describes the result without PIN block or card data.
func (r GoChipResult) String() string {
	s := "chip: " + r.Decision.String()
	if r.OnlinePIN {
		s += ", online PIN"
	}
	if r.OfflinePINVerified {
		s += ", offline PIN verified"
	}
	if r.SignatureRequired {
		s += ", signature"
	}
	return fmt.Sprintf("%s, %d bytes of EMV data", s, len(r.EMVData))
}

// GoString returns the description.
func (r GoChipResult) GoString() string { return "abecs.GoChipResult{" + r.String() + "}" }

// LogValue implements slog.LogValuer with the description.
func (r GoChipResult) LogValue() slog.Value { return slog.StringValue(r.String()) }

// FinishChipRequest gives the card the host's answer (FNC). It is a plain
// value, safe for concurrent use.
type FinishChipRequest struct {
	// HostResponded is false when the host could not be reached or did not
	// answer; the card then decides offline (normally: decline).
	HostResponded bool
	// ResponseCode is the host's ISO 8583 field 39, 2 printable characters;
	// ignored (sent as spaces) when HostResponded is false.
	ResponseCode string
	// IssuerData is the BER-TLV of the host's issuer authentication data (91)
	// and issuer scripts (71, 72), or nil.
	IssuerData []byte
	// Tags are the EMV tags the response is to carry, as upper-case hex.
	Tags []string
	// Timeout is how long the client waits for the card. Default
	// Options.ResponseTimeout.
	Timeout time.Duration
}

// FinishChipResult is the card's final decision (FNC). EMVData is sensitive:
// String, GoString and LogValue do not show it. It is a plain value, safe for
// concurrent reads.
type FinishChipResult struct {
	// Approved is the card's decision: true for a TC, false for an AAC. A
	// card that declines after the host approved means the sale must be
	// reversed.
	Approved bool
	// EMVData is the BER-TLV of the requested tags the pad knows.
	EMVData []byte
}

// String describes the result.
func (r FinishChipResult) String() string {
	d := "declined"
	if r.Approved {
		d = "approved"
	}
	return fmt.Sprintf("chip: card %s, %d bytes of EMV data", d, len(r.EMVData))
}

// GoString returns the description.
func (r FinishChipResult) GoString() string { return "abecs.FinishChipResult{" + r.String() + "}" }

// LogValue implements slog.LogValuer with the description.
func (r FinishChipResult) LogValue() slog.Value { return slog.StringValue(r.String()) }

// AppendTagList appends the tag list block: the tags' hex, upper case. Each
// tag must be 1 to 3 bytes of hex with the BER form of a tag.
func AppendTagList(dst []byte, tags []string) ([]byte, error) {
	n := 0
	for _, t := range tags {
		b, err := hex.DecodeString(t)
		if err != nil || !berTag(b) {
			return dst, fmt.Errorf("abecs: tag %q is not a 1 to 3 byte BER-TLV tag in hex", t)
		}
		n += len(t)
	}
	if n == 0 || n > maxHexBlock {
		return dst, fmt.Errorf("abecs: tag list is %d hex characters, want 1 to %d", n, maxHexBlock)
	}
	for _, t := range tags {
		dst = append(dst, strings.ToUpper(t)...)
	}
	return dst, nil
}

// ParseTagList parses a tag list block into tags in upper-case hex.
func ParseTagList(block []byte) ([]string, error) {
	b, err := decodeHex(block)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: tag list is not hex", ErrFormat)
	}
	var tags []string
	for len(b) > 0 {
		n := 1
		if b[0]&0x1F == 0x1F {
			for n < len(b) && b[n]&0x80 != 0 {
				n++
			}
			n++
		}
		if n > len(b) || !berTag(b[:n]) {
			return nil, fmt.Errorf("%w: tag list holds a malformed tag", ErrFormat)
		}
		tags = append(tags, strings.ToUpper(hex.EncodeToString(b[:n])))
		b = b[n:]
	}
	return tags, nil
}

// berTag reports whether b is one complete BER-TLV tag of 1 to 3 bytes.
func berTag(b []byte) bool {
	switch {
	case len(b) == 0 || len(b) > 3:
		return false
	case b[0]&0x1F != 0x1F:
		return len(b) == 1
	case len(b) == 1:
		return false
	}
	for _, c := range b[1 : len(b)-1] {
		if c&0x80 == 0 {
			return false
		}
	}
	return b[len(b)-1]&0x80 == 0
}

// decodeHex decodes upper- or lower-case hex.
func decodeHex(b []byte) ([]byte, error) {
	out := make([]byte, hex.DecodedLen(len(b)))
	if _, err := hex.Decode(out, b); err != nil {
		return nil, err
	}
	return out, nil
}

func appendHexVar(dst []byte, b []byte, name string) ([]byte, error) {
	if 2*len(b) > maxHexBlock {
		return dst, fmt.Errorf("abecs: %s is %d bytes, at most %d", name, len(b), maxHexBlock/2)
	}
	dst = appendNum(dst, 2*len(b), 3)
	return append(dst, strings.ToUpper(hex.EncodeToString(b))...), nil
}

// fieldReader reads the fields of a fixed-layout block in order; the first
// failure sticks, and names the field but never repeats its content.
type fieldReader struct {
	b   []byte
	id  string
	err error
}

func (r *fieldReader) fail(name, why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s %s %s", ErrFormat, r.id, name, why)
	}
}

func (r *fieldReader) take(n int, name string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail(name, "is cut short")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *fieldReader) num(n int, name string) int64 {
	b := r.take(n, name)
	if r.err != nil {
		return 0
	}
	v, ok := parseNum64(b)
	if !ok {
		r.fail(name, fmt.Sprintf("is not %d digits", n))
	}
	return v
}

func (r *fieldReader) flag(name string) bool {
	b := r.take(1, name)
	if r.err == nil && b[0] != '0' && b[0] != '1' {
		r.fail(name, "is not 0 or 1")
	}
	return r.err == nil && b[0] == '1'
}

func (r *fieldReader) hexFixed(dst []byte, name string) {
	b := r.take(2*len(dst), name)
	if r.err != nil {
		return
	}
	if _, err := hex.Decode(dst, b); err != nil {
		clear(dst)
		r.fail(name, "is not hex")
	}
}

func (r *fieldReader) hexNum(n int, name string) int64 {
	b := r.take(n, name)
	if r.err != nil {
		return 0
	}
	var v int64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			r.fail(name, "is not hex")
			return 0
		}
		v = v<<4 | int64(d)
	}
	return v
}

// hexVar reads a 3-digit length of hex characters and that many.
func (r *fieldReader) hexVar(name string) []byte {
	n := r.num(3, name+" length")
	if r.err == nil && n%2 != 0 {
		r.fail(name, "length is odd")
	}
	b := r.take(int(n), name)
	if r.err != nil {
		return nil
	}
	v, err := decodeHex(b)
	if err != nil {
		r.fail(name, "is not hex")
		return nil
	}
	return v
}

// skipVar reads a 3-digit length and skips that many bytes (acquirer data).
func (r *fieldReader) skipVar(name string) {
	n := r.num(3, name+" length")
	r.take(int(n), name)
}

func (r *fieldReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("block", "has trailing bytes")
	}
	return r.err
}

func (r GoChipRequest) validate() error {
	switch {
	case r.AmountMinor < 0 || r.AmountMinor > 999999999999:
		return errors.New("amount must be 0 to 999999999999 minor units")
	case r.CashbackMinor < 0 || r.CashbackMinor > 999999999999:
		return errors.New("cashback must be 0 to 999999999999 minor units")
	case r.KeyIndex < 0 || r.KeyIndex > 99:
		return fmt.Errorf("key index %d is not 0-99", r.KeyIndex)
	case r.FloorLimitMinor < 0 || r.FloorLimitMinor > 0xFFFFFFFF || r.ThresholdMinor < 0 || r.ThresholdMinor > 0xFFFFFFFF:
		return errors.New("floor limit and threshold must be 0 to 4294967295 minor units")
	case r.TargetPercent < 0 || r.TargetPercent > 99 || r.MaxTargetPercent < 0 || r.MaxTargetPercent > 99:
		return errors.New("target percentages must be 0 to 99")
	}
	return nil
}

// AppendGoChip appends the two GOC command blocks for r: the parameters and
// the tag list.
func AppendGoChip(r GoChipRequest) ([][]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("abecs: GOC: %w", err)
	}
	tags, err := AppendTagList(nil, r.Tags)
	if err != nil {
		return nil, fmt.Errorf("abecs: GOC: %w", err)
	}
	b := make([]byte, 0, goChipFixedLen+3)
	b = appendNum64(b, r.AmountMinor, 12)
	b = appendNum64(b, r.CashbackMinor, 12)
	method := byte(methodDUKPTTDES)
	if r.AES {
		method = methodDUKPTAES
	}
	b = append(b, '0', bit(!r.OfflineOnly), method)
	b = appendNum(b, r.KeyIndex, 2)
	b = append(b, strings.Repeat("0", 32)...)
	b = append(b, bit(r.RiskManagement))
	b = fmt.Appendf(b, "%08X", r.FloorLimitMinor)
	b = appendNum(b, r.TargetPercent, 2)
	b = fmt.Appendf(b, "%08X", r.ThresholdMinor)
	b = appendNum(b, r.MaxTargetPercent, 2)
	b = append(b, "000"...) // no acquirer data
	return [][]byte{b, tags}, nil
}

// ParseGoChip parses the blocks of a GOC command. Timeout is left zero.
func ParseGoChip(blocks [][]byte) (GoChipRequest, error) {
	if len(blocks) != 2 {
		return GoChipRequest{}, fmt.Errorf("%w: GOC has %d blocks, want 2", ErrFormat, len(blocks))
	}
	fr := &fieldReader{b: blocks[0], id: "GOC"}
	var r GoChipRequest
	r.AmountMinor = fr.num(12, "amount")
	r.CashbackMinor = fr.num(12, "cashback")
	fr.flag("exception list")
	r.OfflineOnly = !fr.flag("online capability")
	if m := fr.take(1, "PIN method"); fr.err == nil {
		switch m[0] {
		case methodDUKPTTDES:
		case methodDUKPTAES:
			r.AES = true
		default:
			fr.fail("PIN method", "is not 3 (DUKPT TDES) or 4 (DUKPT AES)")
		}
	}
	r.KeyIndex = int(fr.num(2, "key index"))
	var wk [16]byte
	fr.hexFixed(wk[:], "working key")
	r.RiskManagement = fr.flag("risk management")
	r.FloorLimitMinor = fr.hexNum(8, "floor limit")
	r.TargetPercent = int(fr.num(2, "target percentage"))
	r.ThresholdMinor = fr.hexNum(8, "threshold")
	r.MaxTargetPercent = int(fr.num(2, "maximum target percentage"))
	fr.skipVar("acquirer data")
	if err := fr.done(); err != nil {
		return GoChipRequest{}, err
	}
	tags, err := ParseTagList(blocks[1])
	if err != nil {
		return GoChipRequest{}, err
	}
	r.Tags = tags
	return r, nil
}

// AppendGoChipResult appends the GOC response block for r.
func AppendGoChipResult(dst []byte, r GoChipResult) ([]byte, error) {
	if r.Decision > DecisionOnline {
		return dst, fmt.Errorf("abecs: GOC: decision %d is not 0-2", r.Decision)
	}
	if r.OfflinePINFailures < 0 || r.OfflinePINFailures > 9 {
		return dst, fmt.Errorf("abecs: GOC: offline PIN failures %d is not 0-9", r.OfflinePINFailures)
	}
	dst = append(dst, '0'+byte(r.Decision), bit(r.SignatureRequired), bit(r.OfflinePINVerified),
		'0'+byte(r.OfflinePINFailures), bit(r.OfflinePINBlocked), bit(r.OnlinePIN))
	if r.AES {
		dst = AppendPINResponseAES(dst, r.AESPINBlock, r.AESKSN)
	} else {
		dst = AppendPINResponse(dst, r.PINBlock, r.KSN)
	}
	dst, err := appendHexVar(dst, r.EMVData, "EMV data")
	if err != nil {
		return dst, err
	}
	return append(dst, "000"...), nil
}

// ParseGoChipResult parses the GOC response block of method 3 (DUKPT TDES).
func ParseGoChipResult(block []byte) (GoChipResult, error) { return parseGoChipResult(block, false) }

// ParseGoChipResultAES parses the GOC response block of method 4 (DUKPT AES):
// its PIN block and KSN are 32 and 24 hexadecimal characters.
func ParseGoChipResultAES(block []byte) (GoChipResult, error) { return parseGoChipResult(block, true) }

func parseGoChipResult(block []byte, aes bool) (GoChipResult, error) {
	fr := &fieldReader{b: block, id: "GOC response"}
	var r GoChipResult
	d := fr.num(1, "decision")
	if fr.err == nil && d > 2 {
		fr.fail("decision", "is not 0-2")
	}
	r.Decision = ChipDecision(d)
	r.SignatureRequired = fr.flag("signature")
	r.OfflinePINVerified = fr.flag("offline PIN")
	r.OfflinePINFailures = int(fr.num(1, "offline PIN failures"))
	r.OfflinePINBlocked = fr.flag("PIN blocked")
	r.OnlinePIN = fr.flag("online PIN")
	r.AES = aes
	if aes {
		fr.hexFixed(r.AESPINBlock[:], "PIN block")
		fr.hexFixed(r.AESKSN[:], "KSN")
	} else {
		fr.hexFixed(r.PINBlock[:], "PIN block")
		fr.hexFixed(r.KSN[:], "KSN")
	}
	r.EMVData = fr.hexVar("EMV data")
	fr.skipVar("acquirer data")
	if err := fr.done(); err != nil {
		return GoChipResult{}, err
	}
	if !r.OnlinePIN {
		r.PINBlock, r.KSN, r.AESPINBlock, r.AESKSN = [8]byte{}, [10]byte{}, [16]byte{}, [12]byte{}
	}
	return r, nil
}

// AppendFinishChip appends the two FNC command blocks for r: the host's
// answer and the tag list.
func AppendFinishChip(r FinishChipRequest) ([][]byte, error) {
	arc := "  "
	if r.HostResponded {
		if len(r.ResponseCode) != 2 || !printable(r.ResponseCode) {
			return nil, errors.New("abecs: FNC: response code must be 2 printable characters")
		}
		arc = r.ResponseCode
	}
	b := append([]byte{bit(!r.HostResponded)}, arc...)
	b, err := appendHexVar(b, r.IssuerData, "issuer data")
	if err != nil {
		return nil, fmt.Errorf("abecs: FNC: %w", err)
	}
	b = append(b, "000"...)
	tags, err := AppendTagList(nil, r.Tags)
	if err != nil {
		return nil, fmt.Errorf("abecs: FNC: %w", err)
	}
	return [][]byte{b, tags}, nil
}

// ParseFinishChip parses the blocks of an FNC command. Timeout is left zero.
func ParseFinishChip(blocks [][]byte) (FinishChipRequest, error) {
	if len(blocks) != 2 {
		return FinishChipRequest{}, fmt.Errorf("%w: FNC has %d blocks, want 2", ErrFormat, len(blocks))
	}
	fr := &fieldReader{b: blocks[0], id: "FNC"}
	var r FinishChipRequest
	r.HostResponded = !fr.flag("communication status")
	arc := fr.take(2, "response code")
	if fr.err == nil && !printable(string(arc)) {
		fr.fail("response code", "is not printable")
	}
	if r.HostResponded {
		r.ResponseCode = string(arc)
	}
	r.IssuerData = fr.hexVar("issuer data")
	fr.skipVar("acquirer data")
	if err := fr.done(); err != nil {
		return FinishChipRequest{}, err
	}
	tags, err := ParseTagList(blocks[1])
	if err != nil {
		return FinishChipRequest{}, err
	}
	r.Tags = tags
	return r, nil
}

// AppendFinishChipResult appends the FNC response block for r.
func AppendFinishChipResult(dst []byte, r FinishChipResult) ([]byte, error) {
	dst = append(dst, bit(!r.Approved))
	dst, err := appendHexVar(dst, r.EMVData, "EMV data")
	if err != nil {
		return dst, err
	}
	return append(dst, "000"...), nil
}

// ParseFinishChipResult parses an FNC response block.
func ParseFinishChipResult(block []byte) (FinishChipResult, error) {
	fr := &fieldReader{b: block, id: "FNC response"}
	var r FinishChipResult
	r.Approved = !fr.flag("decision")
	r.EMVData = fr.hexVar("EMV data")
	fr.skipVar("acquirer data")
	if err := fr.done(); err != nil {
		return FinishChipResult{}, err
	}
	return r, nil
}

// GoOnChip runs GOC on the inserted chip card. An online PIN, when the card
// asks for one, is captured by the pad during the command. Timeout and
// cancellation are reported as by GetCard; a card removed meanwhile as
// ErrNoCard.
func (c *Client) GoOnChip(ctx context.Context, req GoChipRequest) (GoChipResult, error) {
	if req.Timeout <= 0 {
		req.Timeout = DefaultChipTimeout
	}
	blocks, err := AppendGoChip(req)
	if err != nil {
		return GoChipResult{}, err
	}
	resp, err := c.do(ctx, Command{ID: CmdGoChip, Blocks: blocks}, req.Timeout, ErrPadTimeout)
	if err != nil {
		return GoChipResult{}, err
	}
	if len(resp.Blocks) != 1 {
		return GoChipResult{}, cmdErrorf(CmdGoChip, "response has %d blocks, want 1: %w", len(resp.Blocks), ErrBadResponse)
	}
	r, err := parseGoChipResult(resp.Blocks[0], req.AES)
	if err != nil {
		return GoChipResult{}, cmdErrorf(CmdGoChip, "%w: %w", ErrBadResponse, err)
	}
	return r, nil
}

// FinishChip runs FNC: it gives the card the host's answer and returns the
// card's final decision. When the host approved and the card declines (or
// this call fails), the sale must be reversed.
func (c *Client) FinishChip(ctx context.Context, req FinishChipRequest) (FinishChipResult, error) {
	wait := req.Timeout
	if wait <= 0 {
		wait = c.opts.ResponseTimeout
	}
	blocks, err := AppendFinishChip(req)
	if err != nil {
		return FinishChipResult{}, err
	}
	resp, err := c.do(ctx, Command{ID: CmdFinChip, Blocks: blocks}, wait, ErrNoResponse)
	if err != nil {
		return FinishChipResult{}, err
	}
	if len(resp.Blocks) != 1 {
		return FinishChipResult{}, cmdErrorf(CmdFinChip, "response has %d blocks, want 1: %w", len(resp.Blocks), ErrBadResponse)
	}
	r, err := ParseFinishChipResult(resp.Blocks[0])
	if err != nil {
		return FinishChipResult{}, cmdErrorf(CmdFinChip, "%w: %w", ErrBadResponse, err)
	}
	return r, nil
}
