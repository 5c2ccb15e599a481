package abecs

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

// Default limits of requests that wait for the cardholder.
const (
	DefaultCardTimeout = 60 * time.Second // CardRequest.Timeout
	DefaultPINTimeout  = 60 * time.Second // PINRequest.Timeout
	DefaultPINMin      = 4                // PINRequest.MinLen
	DefaultPINMax      = 12               // PINRequest.MaxLen
)

// Sizes of the fixed-layout blocks (see the package documentation).
const (
	displayLen        = 32
	cardRequestLen    = 41
	cardDataLen       = 342
	pinRequestLen     = 93
	pinResponseLen    = 36 // H16 block, H20 KSN
	pinResponseAESLen = 56 // H32 block, H24 KSN
)

// PIN encryption methods of GPN and GOC (N1).
const (
	methodDUKPTTDES = '3' // DUKPT TDES, ISO 9564 format 0 (ABECS)
	methodDUKPTAES  = '4' // DUKPT AES, ISO 9564 format 4 (this package's choice)
)

// printable reports whether s is printable ASCII (0x20-0x7E).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// appendText appends s left-aligned in a field of width bytes, space padded.
func appendText(dst []byte, s string, width int) []byte {
	dst = append(dst, s...)
	for i := len(s); i < width; i++ {
		dst = append(dst, ' ')
	}
	return dst
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// AppendDisplay appends the 32-byte DSP or CLO text block: line1 then line2,
// each at most 16 printable ASCII characters, space padded.
func AppendDisplay(dst []byte, line1, line2 string) ([]byte, error) {
	for i, l := range []string{line1, line2} {
		if len(l) > 16 {
			return dst, fmt.Errorf("abecs: display line %d is %d characters, at most 16", i+1, len(l))
		}
		if !printable(l) {
			return dst, fmt.Errorf("abecs: display line %d has a character outside printable ASCII", i+1)
		}
	}
	dst = appendText(dst, line1, 16)
	return appendText(dst, line2, 16), nil
}

// ParseDisplay parses a 32-byte DSP or CLO text block into its two lines, with
// trailing spaces removed.
func ParseDisplay(block []byte) (line1, line2 string, err error) {
	if len(block) != displayLen || !printable(string(block)) {
		return "", "", fmt.Errorf("%w: display text must be 32 printable characters", ErrFormat)
	}
	return strings.TrimRight(string(block[:16]), " "), strings.TrimRight(string(block[16:]), " "), nil
}

// splitMessage lays out a CLO message on 2x16: a message with a newline is
// split there, one without is cut after 16 characters.
func splitMessage(msg string) (string, string, error) {
	if l1, l2, ok := strings.Cut(msg, "\n"); ok {
		return l1, l2, nil
	}
	if len(msg) > 32 {
		return "", "", fmt.Errorf("abecs: message is %d characters, at most 32", len(msg))
	}
	if len(msg) > 16 {
		return msg[:16], msg[16:], nil
	}
	return msg, "", nil
}

// CardRequest asks the pad for a card (GCR). It is a plain value, safe for
// concurrent use.
type CardRequest struct {
	// AmountMinor is the amount the pad shows, in minor units, 0 to
	// 999999999999. Default 0 (no amount shown).
	AmountMinor int64
	// Timeout is how long the client waits for the card. When it elapses the
	// client cancels the command (CAN) and returns an error matching
	// ErrPadTimeout. It is not sent to the pad. Default DefaultCardTimeout.
	Timeout time.Duration
	// TableVersion is GCR_TABVER, the EMV table version the host loaded (10
	// printable characters). Default "0000000000": none. A pad whose tables
	// are another version answers 020 (ErrTableVersion).
	TableVersion string
	// Contactless is GCR_CTLSON: "1" lets the pad take a tap, "0" (the
	// default, false) asks for an insert or a swipe only.
	Contactless bool
}

// AppendCardRequest appends the GCR command block for req, dated now.
func AppendCardRequest(dst []byte, req CardRequest, now time.Time) ([]byte, error) {
	if req.AmountMinor < 0 || req.AmountMinor > 999999999999 {
		return dst, fmt.Errorf("abecs: GCR: amount must be 0 to 999999999999 minor units")
	}
	dst = append(dst, "0000"...) // acquirer index, application type: all
	dst = appendNum64(dst, req.AmountMinor, 12)
	dst = append(dst, now.Format("060102150405")...)
	tv := req.TableVersion
	if tv == "" {
		tv = "0000000000"
	}
	if len(tv) != 10 || !printable(tv) {
		return dst, fmt.Errorf("abecs: GCR: table version must be 10 printable characters")
	}
	dst = append(dst, tv...)
	dst = append(dst, "00"...) // no listed applications
	dst = append(dst, bit(req.Contactless))
	return dst, nil
}

// ParseCardRequest parses a GCR command block: the amount, the table version
// and the contactless flag (absent: off).
func ParseCardRequest(block []byte) (CardRequest, error) {
	if len(block) < cardRequestLen-1 {
		return CardRequest{}, fmt.Errorf("%w: GCR block is %d bytes, want %d", ErrFormat, len(block), cardRequestLen)
	}
	if !allDigits(block[:28]) {
		return CardRequest{}, fmt.Errorf("%w: GCR indexes, amount, date and time must be digits", ErrFormat)
	}
	amount, _ := parseNum64(block[4:16])
	r := CardRequest{AmountMinor: amount, TableVersion: string(block[28:38])}
	if len(block) >= cardRequestLen {
		switch block[40] {
		case '0':
		case '1':
			r.Contactless = true
		default:
			return CardRequest{}, fmt.Errorf("%w: GCR contactless flag is not 0 or 1", ErrFormat)
		}
	}
	return r, nil
}

// Card types of the GCR response.
const (
	CardTypeMagstripe = "00" // magnetic stripe
	CardTypeChip      = "03" // EMV chip, contact
	CardTypeCtlsMag   = "05" // contactless, magnetic stripe mode (processed like a swipe)
	CardTypeCtlsChip  = "06" // contactless, EMV mode (continues with GOC and FNC like a chip)
)

// CardData is what the pad read from a card (GCR response): a magnetic stripe
// or an EMV chip card. It is sensitive: String, GoString and LogValue show
// only the masked PAN, never the tracks. CardData is immutable and safe for
// concurrent use.
type CardData struct {
	cardType    string
	fallback    bool // magnetic stripe read after a chip failure (chip status 1)
	track1      string
	track2      string
	pan         string
	panSeq      string // chip only: 2 digits
	label       string // chip only
	serviceCode string
	expiry      string // YYMMDD
	name        string
	country     string // chip only: 3 digits
}

// NewMagstripeCard returns the card data a magnetic stripe read of track1 and
// track2 (without sentinels) yields. PAN, expiry, service code and
// cardholder name are taken from the tracks where they can be found; the
// tracks are not otherwise checked (package card does that).
func NewMagstripeCard(track1, track2 string) CardData {
	c := CardData{cardType: CardTypeMagstripe, track1: track1, track2: track2}
	if i := strings.IndexAny(track2, "=D"); i >= 0 {
		c.pan = track2[:i]
		rest := track2[i+1:]
		if len(rest) >= 7 && allDigits([]byte(rest[:7])) {
			c.expiry = rest[:4] + "00"
			c.serviceCode = rest[4:7]
		}
	}
	if parts := strings.SplitN(track1, "^", 3); len(parts) == 3 {
		if c.pan == "" {
			c.pan = strings.TrimPrefix(parts[0], "B")
		}
		c.name = strings.TrimSpace(parts[1])
	}
	return c
}

// NewFallbackCard is NewMagstripeCard for a swipe that follows a failed chip
// read: the pad reports it with chip status 1, and the host sends it with
// POS entry mode 80x.
func NewFallbackCard(track1, track2 string) CardData {
	c := NewMagstripeCard(track1, track2)
	c.fallback = true
	return c
}

// ChipFields are the data a pad reports of an EMV chip card in its GCR
// response. They are sensitive: String masks the PAN and never shows the
// track. A plain value, safe for concurrent use.
type ChipFields struct {
	PAN           string // tag 5A, digits
	Track2        string // tag 57 as text: PAN '=' YYMM service code discretionary
	Expiry        string // tag 5F24, YYMMDD
	ServiceCode   string // tag 5F30, 3 digits, or ""
	PANSequence   string // tag 5F34, 2 digits, or ""
	Label         string // tag 50, at most 16 printable characters
	Name          string // tag 5F20, at most 26 printable characters
	IssuerCountry string // tag 5F28, 3 digits, or ""
}

// String returns a masked description.
func (f ChipFields) String() string { return "chip card " + card.MaskPAN(f.PAN) }

// GoString returns the masked description.
func (f ChipFields) GoString() string { return "abecs.ChipFields{" + f.String() + "}" }

// NewChipCard returns the card data of an EMV chip card (card type 03).
func NewChipCard(f ChipFields) CardData {
	return CardData{
		cardType: CardTypeChip, track2: f.Track2, pan: f.PAN, panSeq: f.PANSequence, label: f.Label,
		serviceCode: f.ServiceCode, expiry: f.Expiry, name: f.Name, country: f.IssuerCountry,
	}
}

// NewContactlessCard returns the data of a tapped card: in EMV mode (card
// type 06) from f, or in magnetic stripe mode (05) with f.Track2 as its
// track 2 data.
func NewContactlessCard(f ChipFields, emvMode bool) CardData {
	c := NewChipCard(f)
	c.cardType = CardTypeCtlsChip
	if !emvMode {
		c.cardType = CardTypeCtlsMag
	}
	return c
}

// Contactless reports whether the card was tapped (card type 05 or 06).
func (c CardData) Contactless() bool {
	return c.cardType == CardTypeCtlsMag || c.cardType == CardTypeCtlsChip
}

// Type returns the 2-digit card type (CardTypeMagstripe, CardTypeChip or
// another the pad reported).
func (c CardData) Type() string { return c.cardType }

// Track1 returns track 1 without sentinels, or "" if it was not read.
func (c CardData) Track1() string { return c.track1 }

// Track2 returns track 2 without sentinels (for a chip card, the track 2
// equivalent data of tag 57), or "" if it was not read.
func (c CardData) Track2() string { return c.track2 }

// PAN returns the card number in full. Use MaskedPAN to show it.
func (c CardData) PAN() string { return c.pan }

// MaskedPAN returns the PAN with all but its first 6 and last 4 digits masked.
func (c CardData) MaskedPAN() string { return card.MaskPAN(c.pan) }

// PANSequence returns a chip card's 2-digit PAN sequence number (tag 5F34),
// or "".
func (c CardData) PANSequence() string { return c.panSeq }

// Label returns a chip application's label (tag 50), or "".
func (c CardData) Label() string { return c.label }

// IssuerCountry returns a chip card's 3-digit issuer country code, or "".
func (c CardData) IssuerCountry() string { return c.country }

// ServiceCode returns the 3-digit service code, or "".
func (c CardData) ServiceCode() string { return c.serviceCode }

// Expiry returns the expiry as YYMM, or "".
func (c CardData) Expiry() string {
	if len(c.expiry) < 4 {
		return ""
	}
	return c.expiry[:4]
}

// ExpiryDate returns the expiry as YYMMDD (day 00 from a magnetic stripe),
// or "".
func (c CardData) ExpiryDate() string { return c.expiry }

// CardholderName returns the name read from the card, or "".
func (c CardData) CardholderName() string { return c.name }

// Magstripe reports whether the card was read from its magnetic stripe.
func (c CardData) Magstripe() bool { return c.cardType == CardTypeMagstripe }

// Chip reports whether the card was read from its EMV contact chip.
func (c CardData) Chip() bool { return c.cardType == CardTypeChip }

// Fallback reports whether a magnetic stripe read follows a failed chip read
// (the pad's previous chip status is 1).
func (c CardData) Fallback() bool { return c.fallback && c.Magstripe() }

// String returns a masked description.
func (c CardData) String() string {
	kind := "magstripe"
	switch {
	case c.Fallback():
		kind = "magstripe fallback"
	case c.Chip():
		kind = "chip"
	case c.cardType == CardTypeCtlsChip:
		kind = "contactless EMV"
	case c.cardType == CardTypeCtlsMag:
		kind = "contactless magstripe"
	case !c.Magstripe():
		kind = "type " + c.cardType
	}
	return fmt.Sprintf("card %s (%s)", c.MaskedPAN(), kind)
}

// GoString returns the masked description, so %#v does not print the tracks.
func (c CardData) GoString() string { return "abecs.CardData{" + c.String() + "}" }

// LogValue implements slog.LogValuer with the masked description.
func (c CardData) LogValue() slog.Value { return slog.StringValue(c.String()) }

// AppendCardData appends the GCR response block for c. It fails when a field
// does not fit its place (track 1 76, track 2 37, PAN 19, label 16, name 26
// characters) or is not printable ASCII, or a numeric field is not digits;
// the error names the field, not its content.
func AppendCardData(dst []byte, c CardData) ([]byte, error) {
	type field struct {
		name    string
		value   string
		width   int
		numeric bool
	}
	for _, f := range []field{
		{"card type", c.cardType, 2, true}, {"track 1", c.track1, 76, false}, {"track 2", c.track2, 37, false},
		{"PAN", c.pan, 19, false}, {"PAN sequence number", c.panSeq, 2, true}, {"application label", c.label, 16, false},
		{"service code", c.serviceCode, 3, true}, {"cardholder name", c.name, 26, false},
		{"expiry", c.expiry, 6, true}, {"issuer country", c.country, 3, true},
	} {
		if len(f.value) > f.width {
			return dst, fmt.Errorf("abecs: card data: %s is %d characters, at most %d", f.name, len(f.value), f.width)
		}
		if !printable(f.value) {
			return dst, fmt.Errorf("abecs: card data: %s has a character outside printable ASCII", f.name)
		}
		if f.numeric && !allDigits([]byte(f.value)) {
			return dst, fmt.Errorf("abecs: card data: %s must be digits", f.name)
		}
	}
	cardType := c.cardType
	if cardType == "" {
		cardType = CardTypeMagstripe
	}
	dst = appendText(dst, cardType, 2)
	if c.fallback {
		dst = append(dst, '1')
	} else {
		dst = append(dst, '0')
	}
	dst = append(dst, "000000"...) // application type, acquirer and record index
	dst = appendNum(dst, len(c.track1), 2)
	dst = appendText(dst, c.track1, 76)
	dst = appendNum(dst, len(c.track2), 2)
	dst = appendText(dst, c.track2, 37)
	dst = appendNum(dst, 0, 3)
	dst = appendText(dst, "", 104)
	dst = appendNum(dst, len(c.pan), 2)
	dst = appendText(dst, c.pan, 19)
	dst = appendZeros(dst, c.panSeq, 2)
	dst = appendText(dst, c.label, 16)
	dst = appendZeros(dst, c.serviceCode, 3)
	dst = appendText(dst, c.name, 26)
	dst = appendZeros(dst, c.expiry, 6)
	dst = append(dst, strings.Repeat("0", 29)...)
	dst = appendZeros(dst, c.country, 3)
	dst = append(dst, "000"...) // no acquirer data
	return dst, nil
}

// appendZeros appends s, or width zeros when s is empty.
func appendZeros(dst []byte, s string, width int) []byte {
	if s == "" {
		return append(dst, strings.Repeat("0", width)...)
	}
	return appendText(dst, s, width)
}

// ParseCardData parses a GCR response block. The magnetic stripe fields of a
// chip card (PAN sequence number, label, issuer country) are kept only for
// card types other than 00.
func ParseCardData(block []byte) (CardData, error) {
	if len(block) < cardDataLen {
		return CardData{}, fmt.Errorf("%w: GCR response block is %d bytes, want at least %d", ErrFormat, len(block), cardDataLen)
	}
	if !printable(string(block[:cardDataLen])) {
		return CardData{}, fmt.Errorf("%w: GCR response has a character outside printable ASCII", ErrFormat)
	}
	var c CardData
	off := 0
	next := func(n int) []byte { b := block[off : off+n]; off += n; return b }
	// variable reads a length field of lw digits and a field of width w.
	variable := func(name string, lw, w int) (string, error) {
		l, ok := parseNum(next(lw))
		if !ok || l > w {
			return "", fmt.Errorf("%w: GCR response %s length is not valid", ErrFormat, name)
		}
		return string(next(w)[:l]), nil
	}
	c.cardType = string(next(2))
	if !allDigits([]byte(c.cardType)) {
		return CardData{}, fmt.Errorf("%w: GCR response card type is not 2 digits", ErrFormat)
	}
	c.fallback = next(1)[0] == '1' && c.cardType == CardTypeMagstripe
	next(6)
	var err error
	if c.track1, err = variable("track 1", 2, 76); err != nil {
		return CardData{}, err
	}
	if c.track2, err = variable("track 2", 2, 37); err != nil {
		return CardData{}, err
	}
	if _, err = variable("track 3", 3, 104); err != nil {
		return CardData{}, err
	}
	if c.pan, err = variable("PAN", 2, 19); err != nil {
		return CardData{}, err
	}
	seq, label := next(2), strings.TrimRight(string(next(16)), " ")
	if sc := string(next(3)); sc != "000" && allDigits([]byte(sc)) {
		c.serviceCode = sc
	}
	c.name = strings.TrimRight(string(next(26)), " ")
	if exp := string(next(6)); exp != "000000" && allDigits([]byte(exp)) {
		c.expiry = exp
	}
	next(29)
	country := next(3)
	if c.cardType != CardTypeMagstripe {
		if !allDigits(seq) {
			return CardData{}, fmt.Errorf("%w: GCR response PAN sequence number is not 2 digits", ErrFormat)
		}
		c.panSeq, c.label = string(seq), label
		if string(country) != "000" && allDigits(country) {
			c.country = string(country)
		}
	}
	return c, nil
}

// PINRequest asks the pad for the cardholder's PIN, encrypted (GPN, method 3:
// DUKPT TDES, ISO 9564 format 0; or method 4: DUKPT AES, format 4). It carries
// the PAN: String, GoString and LogValue mask it. It is a plain value, safe
// for concurrent use.
type PINRequest struct {
	// KeyIndex is the pad's DUKPT key slot, 0 to 99. Default 0.
	KeyIndex int
	// AES asks for the slot's AES DUKPT key (method 4): the pad answers a
	// 16-byte ISO 9564 format 4 block and a 12-byte KSN. Default false: TDES
	// DUKPT (method 3), an 8-byte format 0 block and a 10-byte KSN.
	AES bool
	// PAN is the card number the PIN block is bound to, 12 to 19 digits.
	// Required.
	PAN string
	// Line1 and Line2 are the prompt, at most 16 printable ASCII characters
	// each. Default: blank.
	Line1, Line2 string
	// MinLen and MaxLen bound the PIN length, 4 <= MinLen <= MaxLen <= 12.
	// Defaults DefaultPINMin and DefaultPINMax.
	MinLen, MaxLen int
	// Timeout is how long the client waits for the PIN. When it elapses the
	// client cancels the command (CAN) and returns an error matching
	// ErrPadTimeout. It is not sent to the pad. Default DefaultPINTimeout.
	Timeout time.Duration
}

// String returns a description with the PAN masked.
func (r PINRequest) String() string {
	kind := "TDES"
	if r.AES {
		kind = "AES"
	}
	return fmt.Sprintf("PIN request key %02d (%s DUKPT) PAN %s length %d-%d", r.KeyIndex, kind, card.MaskPAN(r.PAN), r.MinLen, r.MaxLen)
}

// GoString returns the masked description.
func (r PINRequest) GoString() string { return "abecs.PINRequest{" + r.String() + "}" }

// LogValue implements slog.LogValuer with the masked description.
func (r PINRequest) LogValue() slog.Value { return slog.StringValue(r.String()) }

func (r PINRequest) withDefaults() PINRequest {
	if r.MinLen == 0 {
		r.MinLen = DefaultPINMin
	}
	if r.MaxLen == 0 {
		r.MaxLen = DefaultPINMax
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultPINTimeout
	}
	return r
}

func (r PINRequest) validate() error {
	if r.KeyIndex < 0 || r.KeyIndex > 99 {
		return fmt.Errorf("key index %d is not 0-99", r.KeyIndex)
	}
	if len(r.PAN) < 12 || len(r.PAN) > 19 || !allDigits([]byte(r.PAN)) {
		return fmt.Errorf("PAN must be 12 to 19 digits")
	}
	if r.MinLen < 4 || r.MaxLen > 12 || r.MinLen > r.MaxLen {
		return fmt.Errorf("PIN length bounds %d-%d are not within 4-12", r.MinLen, r.MaxLen)
	}
	return nil
}

// AppendPINRequest appends the GPN command block for req, after applying the
// defaults for MinLen and MaxLen.
func AppendPINRequest(dst []byte, req PINRequest) ([]byte, error) {
	req = req.withDefaults()
	if err := req.validate(); err != nil {
		return dst, fmt.Errorf("abecs: GPN: %w", err)
	}
	method := byte(methodDUKPTTDES)
	if req.AES {
		method = methodDUKPTAES
	}
	dst = append(dst, method)
	dst = appendNum(dst, req.KeyIndex, 2)
	dst = append(dst, strings.Repeat("0", 32)...)
	dst = appendNum(dst, len(req.PAN), 2)
	dst = appendText(dst, req.PAN, 19)
	dst = append(dst, '1')
	dst = appendNum(dst, req.MinLen, 2)
	dst = appendNum(dst, req.MaxLen, 2)
	dst, err := AppendDisplay(dst, req.Line1, req.Line2)
	if err != nil {
		return dst, fmt.Errorf("abecs: GPN: %w", err)
	}
	return dst, nil
}

// ParsePINRequest parses a GPN command block. Only methods 3 (DUKPT TDES) and
// 4 (DUKPT AES) with one entry are accepted. Timeout is left zero.
func ParsePINRequest(block []byte) (PINRequest, error) {
	if len(block) != pinRequestLen {
		return PINRequest{}, fmt.Errorf("%w: GPN block is %d bytes, want %d", ErrFormat, len(block), pinRequestLen)
	}
	if block[0] != methodDUKPTTDES && block[0] != methodDUKPTAES {
		return PINRequest{}, fmt.Errorf("%w: GPN method must be 3 (DUKPT TDES) or 4 (DUKPT AES)", ErrFormat)
	}
	var r PINRequest
	r.AES = block[0] == methodDUKPTAES
	var ok bool
	if r.KeyIndex, ok = parseNum(block[1:3]); !ok {
		return PINRequest{}, fmt.Errorf("%w: GPN key index is not 2 digits", ErrFormat)
	}
	panLen, ok := parseNum(block[35:37])
	if !ok || panLen > 19 {
		return PINRequest{}, fmt.Errorf("%w: GPN PAN length is not valid", ErrFormat)
	}
	r.PAN = string(block[37 : 37+panLen])
	if block[56] != '1' {
		return PINRequest{}, fmt.Errorf("%w: GPN must ask for exactly 1 entry", ErrFormat)
	}
	if r.MinLen, ok = parseNum(block[57:59]); !ok {
		return PINRequest{}, fmt.Errorf("%w: GPN minimum length is not 2 digits", ErrFormat)
	}
	if r.MaxLen, ok = parseNum(block[59:61]); !ok {
		return PINRequest{}, fmt.Errorf("%w: GPN maximum length is not 2 digits", ErrFormat)
	}
	var err error
	if r.Line1, r.Line2, err = ParseDisplay(block[61:]); err != nil {
		return PINRequest{}, fmt.Errorf("%w: GPN prompt must be 32 printable characters", ErrFormat)
	}
	if err := r.validate(); err != nil {
		return PINRequest{}, fmt.Errorf("%w: GPN: %v", ErrFormat, err)
	}
	return r, nil
}

// AppendPINResponse appends the GPN response block: the encrypted PIN block
// and the KSN in upper-case hexadecimal.
func AppendPINResponse(dst []byte, block [8]byte, ksn [10]byte) []byte {
	dst = append(dst, strings.ToUpper(hex.EncodeToString(block[:]))...)
	return append(dst, strings.ToUpper(hex.EncodeToString(ksn[:]))...)
}

// ParsePINResponse parses a GPN response block.
func ParsePINResponse(b []byte) (block [8]byte, ksn [10]byte, err error) {
	if len(b) != pinResponseLen {
		return block, ksn, fmt.Errorf("%w: GPN response block is %d bytes, want %d", ErrFormat, len(b), pinResponseLen)
	}
	if _, err := hex.Decode(block[:], b[:16]); err != nil {
		return [8]byte{}, ksn, fmt.Errorf("%w: GPN PIN block is not 16 hexadecimal digits", ErrFormat)
	}
	if _, err := hex.Decode(ksn[:], b[16:]); err != nil {
		return [8]byte{}, [10]byte{}, fmt.Errorf("%w: GPN KSN is not 20 hexadecimal digits", ErrFormat)
	}
	return block, ksn, nil
}

// AppendPINResponseAES appends the GPN response block of method 4 (DUKPT
// AES): the 16-byte ISO 9564 format 4 block and the 12-byte KSN in upper-case
// hexadecimal, 56 characters.
func AppendPINResponseAES(dst []byte, block [16]byte, ksn [12]byte) []byte {
	dst = append(dst, strings.ToUpper(hex.EncodeToString(block[:]))...)
	return append(dst, strings.ToUpper(hex.EncodeToString(ksn[:]))...)
}

// ParsePINResponseAES parses a GPN response block of method 4.
func ParsePINResponseAES(b []byte) (block [16]byte, ksn [12]byte, err error) {
	if len(b) != pinResponseAESLen {
		return block, ksn, fmt.Errorf("%w: GPN (DUKPT AES) response block is %d bytes, want %d", ErrFormat, len(b), pinResponseAESLen)
	}
	if _, err := hex.Decode(block[:], b[:32]); err != nil {
		return [16]byte{}, ksn, fmt.Errorf("%w: GPN PIN block is not 32 hexadecimal digits", ErrFormat)
	}
	if _, err := hex.Decode(ksn[:], b[32:]); err != nil {
		return [16]byte{}, [12]byte{}, fmt.Errorf("%w: GPN KSN is not 24 hexadecimal digits", ErrFormat)
	}
	return block, ksn, nil
}
