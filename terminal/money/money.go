// Package money holds amounts in integer minor units with their ISO 4217 currency. posd never
// represents money as a float: a till's decimal amount is parsed digit by digit into minor
// units and formatted back the same way.
//
// The package is a leaf: it imports nothing from the rest of posd.
package money

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned for unacceptable amounts and currencies.
var (
	ErrCurrency = errors.New("money: unknown currency")
	ErrAmount   = errors.New("money: invalid amount")
)

// MaxMinor is the largest amount ISO 8583 field 4 (n12) can carry.
const MaxMinor = 999_999_999_999

// Currency is an ISO 4217 currency. Currencies are values; compare them with ==.
//
// A plain value: safe for concurrent use when not modified.
type Currency struct {
	Code     string // alphabetic code, e.g. "EUR"
	Numeric  string // numeric code as three digits, e.g. "978" (ISO 8583 field 49)
	Exponent int    // digits after the decimal point: 2 for EUR, 0 for JPY, 3 for KWD
}

// currencies is the table LookupCurrency reads. It is never modified.
var currencies = [...]Currency{
	{"AUD", "036", 2}, {"BHD", "048", 3}, {"BRL", "986", 2}, {"CAD", "124", 2},
	{"CHF", "756", 2}, {"CLP", "152", 0}, {"CNY", "156", 2}, {"CZK", "203", 2},
	{"DKK", "208", 2}, {"EUR", "978", 2}, {"GBP", "826", 2}, {"HKD", "344", 2},
	{"HUF", "348", 2}, {"INR", "356", 2}, {"ISK", "352", 0}, {"JPY", "392", 0},
	{"KRW", "410", 0}, {"KWD", "414", 3}, {"MXN", "484", 2}, {"NOK", "578", 2},
	{"NZD", "554", 2}, {"PLN", "985", 2}, {"SEK", "752", 2}, {"SGD", "702", 2},
	{"TRY", "949", 2}, {"USD", "840", 2}, {"ZAR", "710", 2},
}

// LookupCurrency returns the currency with alphabetic code code (case-insensitive).
func LookupCurrency(code string) (Currency, error) {
	c := strings.ToUpper(code)
	for _, cur := range currencies {
		if cur.Code == c {
			return cur, nil
		}
	}
	return Currency{}, fmt.Errorf("%w %q", ErrCurrency, code)
}

// Amount is a non-negative amount of money in minor units (cents for EUR).
//
// A plain value: safe for concurrent use when not modified.
type Amount struct {
	Minor    int64
	Currency Currency
}

// ParseDecimal parses a decimal amount such as "12.5" or "1250" in cur's major units into
// minor units. It refuses signs, exponents, more decimals than the currency has, and amounts
// above MaxMinor. Zero is allowed here; callers decide whether a zero amount makes sense.
//
// Errors quote at most the first 32 characters of s.
func ParseDecimal(s string, cur Currency) (Amount, error) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") || !digits(intPart) || !digits(frac) {
		return Amount{}, fmt.Errorf("%w: %q is not a plain decimal number", ErrAmount, clip(s))
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > cur.Exponent {
		return Amount{}, fmt.Errorf("%w: %q has more than %d decimals for %s", ErrAmount, clip(s), cur.Exponent, cur.Code)
	}
	intPart = strings.TrimLeft(intPart, "0")
	if len(intPart)+cur.Exponent > 12 {
		return Amount{}, fmt.Errorf("%w: %q is larger than the maximum", ErrAmount, clip(s))
	}
	var v int64
	for _, c := range intPart + frac + strings.Repeat("0", cur.Exponent-len(frac)) {
		v = v*10 + int64(c-'0')
	}
	if v > MaxMinor {
		return Amount{}, fmt.Errorf("%w: %q is larger than the maximum", ErrAmount, clip(s))
	}
	return Amount{Minor: v, Currency: cur}, nil
}

// clip bounds a value quoted in an error: an amount is short, and anything long is not one.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Decimal formats the amount in major units with exactly the currency's number of decimals,
// e.g. "12.50". It is the inverse of ParseDecimal.
func (a Amount) Decimal() string {
	neg := a.Minor < 0
	v := a.Minor
	if neg {
		v = -v
	}
	s := fmt.Sprintf("%0*d", a.Currency.Exponent+1, v)
	if a.Currency.Exponent > 0 {
		s = s[:len(s)-a.Currency.Exponent] + "." + s[len(s)-a.Currency.Exponent:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// String formats the amount for people: "12.50 EUR".
func (a Amount) String() string { return a.Decimal() + " " + a.Currency.Code }

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
