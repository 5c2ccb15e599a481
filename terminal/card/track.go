package card

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Expiry is a card's expiry month. A card is valid through the last day of that month.
//
// A plain value: safe for concurrent use when not modified.
type Expiry struct {
	Year  int // four digits, e.g. 2030
	Month int // 1..12
}

// ParseExpiry parses the YYMM form used on tracks and in ISO 8583 field 14. Two-digit
// years are taken as 20YY.
func ParseExpiry(yymm string) (Expiry, error) {
	if len(yymm) != 4 || !allDigits(yymm) {
		return Expiry{}, ErrExpiryFormat
	}
	yy := int(yymm[0]-'0')*10 + int(yymm[1]-'0')
	mm := int(yymm[2]-'0')*10 + int(yymm[3]-'0')
	if mm < 1 || mm > 12 {
		return Expiry{}, ErrExpiryFormat
	}
	return Expiry{Year: 2000 + yy, Month: mm}, nil
}

// YYMM returns the expiry in its track form.
func (e Expiry) YYMM() string { return fmt.Sprintf("%02d%02d", e.Year%100, e.Month) }

// String returns MM/YY, as printed on the card.
func (e Expiry) String() string { return fmt.Sprintf("%02d/%02d", e.Month, e.Year%100) }

// Expired reports whether the card is expired at now: the card is valid through the last
// moment of its expiry month, in now's location.
func (e Expiry) Expired(now time.Time) bool {
	firstOfNext := time.Date(e.Year, time.Month(e.Month)+1, 1, 0, 0, 0, 0, now.Location())
	return !now.Before(firstOfNext)
}

// ServiceCode is the three-digit service code of a magnetic stripe (ISO/IEC 7813).
//
// A plain value: safe for concurrent use when not modified.
type ServiceCode string

// Chip reports whether the card has a chip that must be used (first digit 2 or 6).
func (s ServiceCode) Chip() bool { return len(s) == 3 && (s[0] == '2' || s[0] == '6') }

// OnlineOnly reports whether the issuer requires online authorization (second digit 2).
func (s ServiceCode) OnlineOnly() bool { return len(s) == 3 && s[1] == '2' }

// PINRequired reports whether the issuer requires a PIN (third digit 0, 3 or 5).
func (s ServiceCode) PINRequired() bool {
	return len(s) == 3 && (s[2] == '0' || s[2] == '3' || s[2] == '5')
}

// GoodsAllowed reports whether the card may pay for goods and services (third digit neither
// 3, ATM only, nor 4, cash only).
func (s ServiceCode) GoodsAllowed() bool { return len(s) == 3 && s[2] != '3' && s[2] != '4' }

// valid reports whether s has the form and first-digit values ISO/IEC 7813 defines.
func (s ServiceCode) valid() bool {
	if len(s) != 3 || !allDigits(string(s)) {
		return false
	}
	switch s[0] {
	case '1', '2', '5', '6', '7', '9':
		return true
	}
	return false
}

// Track2 is parsed track 2 data: PAN '=' YYMM service-code discretionary. It is sensitive
// data; String and LogValue mask it. Track2 is immutable and safe for concurrent use.
type Track2 struct {
	pan     PAN
	expiry  Expiry
	service ServiceCode
	disc    string
}

// ParseTrack2 parses track 2 with or without its start and end sentinels (';' and '?').
// The field separator may be '=' or 'D' (the form used in ISO 8583 and EMV tag 57).
func ParseTrack2(s string) (Track2, error) {
	s = strings.TrimPrefix(s, ";")
	s = strings.TrimSuffix(s, "?")
	if len(s) > 37 {
		return Track2{}, fmt.Errorf("%w: track 2 longer than 37 characters", ErrTrackFormat)
	}
	sep := strings.IndexAny(s, "=D")
	if sep < 0 {
		return Track2{}, fmt.Errorf("%w: track 2 has no field separator", ErrTrackFormat)
	}
	pan, err := ParsePAN(s[:sep])
	if err != nil {
		return Track2{}, fmt.Errorf("%w: track 2: %w", ErrTrackFormat, err)
	}
	rest := s[sep+1:]
	if len(rest) < 7 || !allDigits(rest) {
		return Track2{}, fmt.Errorf("%w: track 2 expiry and service code must be 7 digits", ErrTrackFormat)
	}
	exp, err := ParseExpiry(rest[:4])
	if err != nil {
		return Track2{}, fmt.Errorf("%w: track 2: %w", ErrTrackFormat, err)
	}
	sc := ServiceCode(rest[4:7])
	if !sc.valid() {
		return Track2{}, fmt.Errorf("%w: track 2 service code is not valid", ErrTrackFormat)
	}
	return Track2{pan: pan, expiry: exp, service: sc, disc: rest[7:]}, nil
}

// PAN returns the account number on the track.
func (t Track2) PAN() PAN { return t.pan }

// Expiry returns the expiry on the track.
func (t Track2) Expiry() Expiry { return t.expiry }

// ServiceCode returns the track's service code.
func (t Track2) ServiceCode() ServiceCode { return t.service }

// Equivalent returns the track in the form ISO 8583 field 35 carries (no sentinels, '='
// separator). Use it only to put the track on the wire.
func (t Track2) Equivalent() string {
	return t.pan.digits + "=" + t.expiry.YYMM() + string(t.service) + t.disc
}

// IsZero reports whether t is the zero Track2.
func (t Track2) IsZero() bool { return t.pan.IsZero() }

// String returns the masked form: masked PAN, then '=' and nothing else of the track.
func (t Track2) String() string { return t.pan.Masked() + "=****" }

// LogValue implements slog.LogValuer with the masked form.
func (t Track2) LogValue() slog.Value { return slog.StringValue(t.String()) }

// Track1 is parsed track 1 data (format B): 'B' PAN '^' NAME '^' YYMM service-code
// discretionary. String and LogValue mask it. Track1 is immutable and safe for concurrent use.
type Track1 struct {
	pan     PAN
	name    string
	expiry  Expiry
	service ServiceCode
}

// ParseTrack1 parses format-B track 1 with or without its sentinels ('%' and '?').
func ParseTrack1(s string) (Track1, error) {
	s = strings.TrimPrefix(s, "%")
	s = strings.TrimSuffix(s, "?")
	if len(s) > 76 {
		return Track1{}, fmt.Errorf("%w: track 1 longer than 76 characters", ErrTrackFormat)
	}
	if !strings.HasPrefix(s, "B") {
		return Track1{}, fmt.Errorf("%w: track 1 format code is not B", ErrTrackFormat)
	}
	parts := strings.SplitN(s[1:], "^", 3)
	if len(parts) != 3 {
		return Track1{}, fmt.Errorf("%w: track 1 needs two '^' separators", ErrTrackFormat)
	}
	pan, err := ParsePAN(parts[0])
	if err != nil {
		return Track1{}, fmt.Errorf("%w: track 1: %w", ErrTrackFormat, err)
	}
	name := parts[1]
	if len(name) < 2 || len(name) > 26 {
		return Track1{}, fmt.Errorf("%w: track 1 name must be 2 to 26 characters", ErrTrackFormat)
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] > 0x5F {
			return Track1{}, fmt.Errorf("%w: track 1 name has a character outside the track 1 set", ErrTrackFormat)
		}
	}
	rest := parts[2]
	if len(rest) < 7 || !allDigits(rest[:7]) {
		return Track1{}, fmt.Errorf("%w: track 1 expiry and service code must be 7 digits", ErrTrackFormat)
	}
	exp, err := ParseExpiry(rest[:4])
	if err != nil {
		return Track1{}, fmt.Errorf("%w: track 1: %w", ErrTrackFormat, err)
	}
	sc := ServiceCode(rest[4:7])
	if !sc.valid() {
		return Track1{}, fmt.Errorf("%w: track 1 service code is not valid", ErrTrackFormat)
	}
	return Track1{pan: pan, name: strings.TrimSpace(name), expiry: exp, service: sc}, nil
}

// PAN returns the account number on the track.
func (t Track1) PAN() PAN { return t.pan }

// Name returns the cardholder name as encoded (SURNAME/GIVEN).
func (t Track1) Name() string { return t.name }

// Expiry returns the expiry on the track.
func (t Track1) Expiry() Expiry { return t.expiry }

// ServiceCode returns the track's service code.
func (t Track1) ServiceCode() ServiceCode { return t.service }

// String returns the masked form.
func (t Track1) String() string { return "B" + t.pan.Masked() + "^****" }

// LogValue implements slog.LogValuer with the masked form.
func (t Track1) LogValue() slog.Value { return slog.StringValue(t.String()) }

// Swipe is what a magnetic stripe read delivers: track 2 always, track 1 when readable.
//
// A plain value: safe for concurrent use when not modified.
type Swipe struct {
	Track1 Track1 // zero when track 1 was not read
	Track2 Track2
}

// ParseSwipe parses the tracks of one swipe. Track 2 is required (it is what ISO 8583
// carries); track 1, when present, must name the same PAN and expiry as track 2.
func ParseSwipe(track1, track2 string) (Swipe, error) {
	if track2 == "" {
		return Swipe{}, fmt.Errorf("%w: track 2 missing", ErrTrackFormat)
	}
	t2, err := ParseTrack2(track2)
	if err != nil {
		return Swipe{}, err
	}
	sw := Swipe{Track2: t2}
	if track1 == "" {
		return sw, nil
	}
	t1, err := ParseTrack1(track1)
	if err != nil {
		return Swipe{}, err
	}
	if !t1.pan.Equal(t2.pan) || t1.expiry != t2.expiry || t1.service != t2.service {
		return Swipe{}, ErrTrackMismatch
	}
	sw.Track1 = t1
	return sw, nil
}

// PAN returns the swiped card's PAN.
func (s Swipe) PAN() PAN { return s.Track2.pan }

// CheckSale reports whether the swiped card may be used for a magnetic stripe purchase at
// now: not expired, service code allowing goods and services, and not a chip card (unless
// fallback is true: the chip was tried and failed). The error wraps ErrExpired,
// ErrServiceCode or ErrChipCard and carries no card digits.
func (s Swipe) CheckSale(now time.Time, fallback bool) error {
	t := s.Track2
	if t.expiry.Expired(now) {
		return fmt.Errorf("%w (valid through %s)", ErrExpired, t.expiry)
	}
	if !t.service.GoodsAllowed() {
		return fmt.Errorf("%w (service code %s)", ErrServiceCode, t.service)
	}
	if t.service.Chip() && !fallback {
		return ErrChipCard
	}
	return nil
}
