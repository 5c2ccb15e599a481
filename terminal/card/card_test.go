package card

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLuhn(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"4761739001010010", true},
		{"4012345678909", true},
		{"79927398713", true}, // the classic Luhn example
		{"79927398710", false},
		{"4761739001010011", false},
		{"", false},
		{"47617390010100a0", false},
	} {
		if got := Luhn(tc.s); got != tc.want {
			t.Errorf("Luhn(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestMaskPAN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"4761739001010010", "476173******0010"},
		{"4012345678909", "401234***8909"},
		{"1234567890", "**********"},
		{"12345678901", "123456*8901"},
		{"", ""},
	} {
		if got := MaskPAN(tc.in); got != tc.want {
			t.Errorf("MaskPAN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPANNeverPrintsWhole(t *testing.T) {
	p, err := ParsePAN("4761739001010010")
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "pan", p, "obj", struct{ P PAN }{p})
	for _, s := range []string{p.String(), fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s", p, p, p, p), logged.String()} {
		if strings.Contains(s, "4761739001010010") {
			t.Errorf("full PAN in %q", s)
		}
		if !strings.Contains(s, "476173******0010") {
			t.Errorf("masked PAN missing from %q", s)
		}
	}
	if p.Digits() != "4761739001010010" || p.Last4() != "0010" {
		t.Errorf("Digits/Last4 wrong: %s %s", p.Digits(), p.Last4())
	}
}

func TestParsePANErrors(t *testing.T) {
	if _, err := ParsePAN("4761739001010011"); !errors.Is(err, ErrLuhn) {
		t.Errorf("bad check digit: err = %v, want ErrLuhn", err)
	}
	for _, s := range []string{"", "12345678901", "12345678901234567890", "4761 7390 0101 0010"} {
		if _, err := ParsePAN(s); !errors.Is(err, ErrPANFormat) {
			t.Errorf("ParsePAN(%q) err = %v, want ErrPANFormat", s, err)
		}
	}
	a, _ := ParsePAN("4761739001010010")
	b, _ := ParsePAN("4761739001010010")
	c, _ := ParsePAN("4012345678909")
	if !a.Equal(b) || a.Equal(c) {
		t.Error("Equal is wrong")
	}
}

func TestExpiry(t *testing.T) {
	e, err := ParseExpiry("2511")
	if err != nil {
		t.Fatal(err)
	}
	if e.Year != 2025 || e.Month != 11 || e.YYMM() != "2511" || e.String() != "11/25" {
		t.Fatalf("parsed %+v", e)
	}
	utc := time.UTC
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{time.Date(2025, 11, 30, 23, 59, 59, 0, utc), false}, // last moment of the month: still valid
		{time.Date(2025, 12, 1, 0, 0, 0, 0, utc), true},
		{time.Date(2025, 1, 15, 0, 0, 0, 0, utc), false},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, utc), true},
	} {
		if got := e.Expired(tc.now); got != tc.want {
			t.Errorf("Expired(%v) = %v, want %v", tc.now, got, tc.want)
		}
	}
	// December rolls into the next year.
	dec, _ := ParseExpiry("2512")
	if dec.Expired(time.Date(2025, 12, 31, 12, 0, 0, 0, utc)) || !dec.Expired(time.Date(2026, 1, 1, 0, 0, 0, 0, utc)) {
		t.Error("December expiry wrong")
	}
	for _, s := range []string{"2513", "2500", "251", "25a1", ""} {
		if _, err := ParseExpiry(s); !errors.Is(err, ErrExpiryFormat) {
			t.Errorf("ParseExpiry(%q) err = %v", s, err)
		}
	}
}

func TestParseTrack2(t *testing.T) {
	for _, in := range []string{";4761739001010010=30121011234567890?", "4761739001010010=30121011234567890", "4761739001010010D30121011234567890"} {
		tr, err := ParseTrack2(in)
		if err != nil {
			t.Fatalf("ParseTrack2(%q): %v", in, err)
		}
		if tr.PAN().Digits() != "4761739001010010" || tr.Expiry().YYMM() != "3012" || tr.ServiceCode() != "101" {
			t.Errorf("ParseTrack2(%q) = %s %s %s", in, tr.PAN(), tr.Expiry(), tr.ServiceCode())
		}
		if tr.Equivalent() != "4761739001010010=30121011234567890" {
			t.Errorf("Equivalent = %s", MaskPAN(tr.Equivalent()))
		}
		if s := fmt.Sprint(tr); strings.Contains(s, "4761739001010010") || strings.Contains(s, "1234567890") {
			t.Errorf("String leaks: %q", s)
		}
	}
	bad := map[string]string{
		"no separator":  "476173900101001030121011234567890",
		"luhn":          "4761739001010011=3012101",
		"short rest":    "4761739001010010=301210",
		"bad month":     "4761739001010010=3013101",
		"service code":  "4761739001010010=3012301",
		"too long":      "4761739001010010=301210112345678901234567890",
		"letters after": "4761739001010010=3012101A",
	}
	for name, in := range bad {
		_, err := ParseTrack2(in)
		if !errors.Is(err, ErrTrackFormat) {
			t.Errorf("%s: err = %v, want ErrTrackFormat", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "476173900101") {
			t.Errorf("%s: error carries card digits: %v", name, err)
		}
	}
}

func TestParseTrack1AndSwipe(t *testing.T) {
	t1 := "%B4761739001010010^CARDHOLDER/TEST^3012101000000000000?"
	t2 := ";4761739001010010=30121011234567890?"
	sw, err := ParseSwipe(t1, t2)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Track1.Name() != "CARDHOLDER/TEST" || sw.PAN().Masked() != "476173******0010" {
		t.Errorf("swipe = %s %s", sw.Track1.Name(), sw.PAN())
	}
	if _, err := ParseSwipe("%B4012345678909^CARDHOLDER/TEST^3012101?", t2); !errors.Is(err, ErrTrackMismatch) {
		t.Errorf("mismatched PAN: err = %v", err)
	}
	if _, err := ParseSwipe("%B4761739001010010^CARDHOLDER/TEST^2912101?", t2); !errors.Is(err, ErrTrackMismatch) {
		t.Errorf("mismatched expiry: err = %v", err)
	}
	if _, err := ParseSwipe(t1, ""); !errors.Is(err, ErrTrackFormat) {
		t.Errorf("missing track 2: err = %v", err)
	}
	for _, in := range []string{"B4761739001010010^X^3012101", "A4761739001010010^CARD/T^3012101", "B4761739001010010^CARD/T", "B4761739001010010^card/t^3012101"} {
		if _, err := ParseTrack1(in); !errors.Is(err, ErrTrackFormat) {
			t.Errorf("ParseTrack1(%q) err = %v", MaskPAN(in), err)
		}
	}
}

func TestCheckSale(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	mk := func(t2 string) Swipe {
		t.Helper()
		sw, err := ParseSwipe("", t2)
		if err != nil {
			t.Fatal(err)
		}
		return sw
	}
	if err := mk("4761739001010010=3012101").CheckSale(now, false); err != nil {
		t.Errorf("good card refused: %v", err)
	}
	if err := mk("4761739001010010=2510101").CheckSale(now, false); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	if err := mk("4761739001010010=2611101").CheckSale(now, false); err != nil {
		t.Errorf("card expiring this month refused: %v", err)
	}
	if err := mk("4761739001010010=3012201").CheckSale(now, false); !errors.Is(err, ErrChipCard) {
		t.Errorf("chip card swiped: %v", err)
	}
	if err := mk("4761739001010010=3012201").CheckSale(now, true); err != nil {
		t.Errorf("chip card fallback refused: %v", err)
	}
	if err := mk("4761739001010010=3012103").CheckSale(now, false); !errors.Is(err, ErrServiceCode) {
		t.Errorf("ATM-only card: %v", err)
	}
}

func FuzzParseSwipe(f *testing.F) {
	f.Add("%B4761739001010010^CARDHOLDER/TEST^3012101000000000000?", ";4761739001010010=30121011234567890?")
	f.Add("", "4761739001010010D3012101")
	f.Add("B^^", "=")
	f.Fuzz(func(t *testing.T, t1, t2 string) {
		sw, err := ParseSwipe(t1, t2)
		if err != nil {
			if sw != (Swipe{}) {
				t.Fatal("error with a non-zero swipe")
			}
			return
		}
		// What parses must round-trip through the wire form.
		again, err := ParseTrack2(sw.Track2.Equivalent())
		if err != nil || !again.PAN().Equal(sw.PAN()) || again.Expiry() != sw.Track2.Expiry() {
			t.Fatalf("round trip failed: %v", err)
		}
		if strings.Contains(sw.Track2.String(), sw.PAN().Digits()) {
			t.Fatal("String leaks the PAN")
		}
	})
}
