// Package card holds the vocabulary of payment cards read by the terminal: the primary
// account number, magnetic stripe tracks (ISO/IEC 7813), expiry dates and service codes.
//
// Card data is sensitive. PAN and Track types keep their digits in unexported fields; their
// String and LogValue methods return the masked form (first 6 and last 4 digits of the PAN,
// as PCI DSS 3.4.1 allows), and errors from this package never contain card digits. Code that
// needs the full digits for the wire or for cryptography asks for them explicitly (Digits,
// Equivalent), which makes every such use easy to find.
//
// The package is a leaf: it imports nothing from the rest of posd.
package card

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
)

// Errors returned when card data is malformed or not acceptable. They never carry card digits.
var (
	ErrPANFormat     = errors.New("card: PAN must be 12 to 19 digits")
	ErrLuhn          = errors.New("card: PAN fails the Luhn check")
	ErrTrackFormat   = errors.New("card: malformed track data")
	ErrTrackMismatch = errors.New("card: track 1 and track 2 disagree")
	ErrExpiryFormat  = errors.New("card: expiry must be YYMM with a month 01-12")
	ErrExpired       = errors.New("card: expired")
	ErrServiceCode   = errors.New("card: service code does not allow this transaction")
	ErrChipCard      = errors.New("card: chip card swiped; insert the card")
)

// MaskPAN returns digits with everything but the first 6 and the last 4 characters replaced
// by '*'. A string shorter than 11 characters is masked entirely, since showing 10 of its
// characters would show nearly all of it.
func MaskPAN(digits string) string {
	b := []byte(digits)
	if len(b) < 11 {
		for i := range b {
			b[i] = '*'
		}
		return string(b)
	}
	for i := 6; i < len(b)-4; i++ {
		b[i] = '*'
	}
	return string(b)
}

// Luhn reports whether digits, a string of decimal digits, passes the Luhn (mod 10) check.
// It returns false for an empty string or any non-digit.
func Luhn(digits string) bool {
	if digits == "" {
		return false
	}
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// PAN is a primary account number. The zero value is no PAN. A PAN is immutable and safe
// for concurrent use.
type PAN struct {
	digits string
}

// ParsePAN checks that s is 12 to 19 decimal digits passing the Luhn check.
func ParsePAN(s string) (PAN, error) {
	if len(s) < 12 || len(s) > 19 || !allDigits(s) {
		return PAN{}, ErrPANFormat
	}
	if !Luhn(s) {
		return PAN{}, ErrLuhn
	}
	return PAN{digits: s}, nil
}

// Digits returns the full PAN. Use it only to put the PAN on the wire or into a
// cryptographic operation; never to show or log it.
func (p PAN) Digits() string { return p.digits }

// IsZero reports whether p is the zero PAN.
func (p PAN) IsZero() bool { return p.digits == "" }

// Masked returns the PAN with all but the first 6 and last 4 digits replaced by '*'.
func (p PAN) Masked() string { return MaskPAN(p.digits) }

// String returns the masked PAN, so that printing a PAN never shows it whole.
func (p PAN) String() string { return p.Masked() }

// GoString returns the masked PAN, so that %#v does not show it whole either.
func (p PAN) GoString() string { return fmt.Sprintf("card.PAN(%q)", p.Masked()) }

// LogValue implements slog.LogValuer with the masked PAN.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.Masked()) }

// Last4 returns the last four digits, as printed on receipts.
func (p PAN) Last4() string {
	if len(p.digits) < 4 {
		return ""
	}
	return p.digits[len(p.digits)-4:]
}

// Equal reports whether p and q are the same PAN, in time that does not depend on where
// they differ.
func (p PAN) Equal(q PAN) bool {
	return subtle.ConstantTimeCompare([]byte(p.digits), []byte(q.digits)) == 1
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
