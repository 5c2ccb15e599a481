package card

import (
	"reflect"
	"testing"
)

func TestScanPANs(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"sale pan=4761739001010010 ok", []string{"476173******0010"}},
		{"masked 476173******0010 is fine", nil},
		{"track ;4761739001010010=3012101?", []string{"476173******0010"}},
		{"two 4012345678909,5413330089020011.", []string{"401234***8909", "541333******0011"}},
		{"not luhn 4761739001010011", nil},
		{"short 123456789012 and stan 000042", nil},
		{"", nil},
	} {
		if got := ScanPANs(tc.text); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ScanPANs(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
	// A PAN glued to other digits is still found (as some Luhn-valid window of the run).
	if got := ScanPANs("glued 0004761739001010010999"); len(got) != 1 {
		t.Errorf("glued PAN: found %q, want one window", got)
	}
	if got := ScanPANs("glued 11111111111111111111"); len(got) != 0 {
		t.Errorf("a run with no Luhn-valid window was flagged: %q", got)
	}
}
