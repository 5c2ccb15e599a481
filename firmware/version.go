package firmware

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a firmware version MAJOR.MINOR.PATCH, three decimal numbers
// each at most 999999999 with no sign, no leading zeros and nothing after
// them. Versions compare number by number. It is a plain value, safe for
// concurrent use.
type Version [3]uint32

// ParseVersion parses s as MAJOR.MINOR.PATCH.
func ParseVersion(s string) (Version, error) {
	var v Version
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH: %w", clip(s), ErrFormat)
	}
	for i, p := range parts {
		if p == "" || len(p) > 9 || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return v, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH: %w", clip(s), ErrFormat)
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return v, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH: %w", clip(s), ErrFormat)
		}
		v[i] = uint32(n)
	}
	return v, nil
}

// String returns the version as MAJOR.MINOR.PATCH.
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// Compare returns -1, 0 or +1 as v is lower than, equal to or higher than w.
func (v Version) Compare(w Version) int {
	for i := range v {
		switch {
		case v[i] < w[i]:
			return -1
		case v[i] > w[i]:
			return 1
		}
	}
	return 0
}

// clip shortens outside strings quoted in errors.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
