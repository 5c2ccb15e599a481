package money

import (
	"errors"
	"testing"
)

func TestParseDecimal(t *testing.T) {
	eur, _ := LookupCurrency("eur")
	jpy, _ := LookupCurrency("JPY")
	kwd, _ := LookupCurrency("KWD")
	for _, tc := range []struct {
		s    string
		cur  Currency
		want int64
		back string
	}{
		{"12.5", eur, 1250, "12.50"},
		{"12.50", eur, 1250, "12.50"},
		{"0.01", eur, 1, "0.01"},
		{"1250", eur, 125000, "1250.00"},
		{"007.10", eur, 710, "7.10"},
		{"1000", jpy, 1000, "1000"},
		{"1.000", jpy, 1, "1"},
		{"1.234", kwd, 1234, "1.234"},
		{"9999999999.99", eur, 999999999999, "9999999999.99"},
		{"0", eur, 0, "0.00"},
	} {
		a, err := ParseDecimal(tc.s, tc.cur)
		if err != nil {
			t.Errorf("ParseDecimal(%q, %s): %v", tc.s, tc.cur.Code, err)
			continue
		}
		if a.Minor != tc.want || a.Decimal() != tc.back {
			t.Errorf("ParseDecimal(%q, %s) = %d %q, want %d %q", tc.s, tc.cur.Code, a.Minor, a.Decimal(), tc.want, tc.back)
		}
	}
	for _, s := range []string{"", "-1", "+1", "1.", ".5", "1e3", "12.345", "1,50", "10000000000.00", "NaN", " 1"} {
		if _, err := ParseDecimal(s, eur); !errors.Is(err, ErrAmount) {
			t.Errorf("ParseDecimal(%q) err = %v, want ErrAmount", s, err)
		}
	}
	if _, err := ParseDecimal("1.5", jpy); !errors.Is(err, ErrAmount) {
		t.Error("JPY with decimals accepted")
	}
}

func TestLookupCurrency(t *testing.T) {
	c, err := LookupCurrency("EUR")
	if err != nil || c.Numeric != "978" || c.Exponent != 2 {
		t.Errorf("EUR = %+v, %v", c, err)
	}
	if _, err := LookupCurrency("XXX"); !errors.Is(err, ErrCurrency) {
		t.Errorf("XXX err = %v", err)
	}
	seen := map[string]bool{}
	for _, c := range currencies {
		if len(c.Code) != 3 || len(c.Numeric) != 3 || seen[c.Numeric] {
			t.Errorf("bad table entry %+v", c)
		}
		seen[c.Numeric] = true
	}
}

func FuzzParseDecimal(f *testing.F) {
	f.Add("12.50")
	f.Add("0.001")
	f.Fuzz(func(t *testing.T, s string) {
		eur := Currency{"EUR", "978", 2}
		a, err := ParseDecimal(s, eur)
		if err != nil {
			return
		}
		if a.Minor < 0 || a.Minor > MaxMinor {
			t.Fatalf("out of range %d", a.Minor)
		}
		b, err := ParseDecimal(a.Decimal(), eur)
		if err != nil || b != a {
			t.Fatalf("round trip %q -> %q failed: %v", s, a.Decimal(), err)
		}
	})
}
