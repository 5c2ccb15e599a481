package iso8583

import (
	"fmt"
	"strconv"
	"time"
)

// Original identifies the transaction a reversal or a completion refers to: field 90,
// "original data elements" (n 42): original MTI (4), STAN (6), transmission date and time
// (10, MMDDhhmmss in UTC), acquiring institution id (11) and forwarding institution id (11),
// the ids right-aligned and zero filled. It is a value, safe for concurrent use if not
// modified.
type Original struct {
	MTI              string    // the original request's MTI, e.g. "0200"
	STAN             uint32    // the original's field 11
	TransmissionTime time.Time // the original's field 7
	AcquiringID      string    // up to 11 digits; default (empty) all zeros
	ForwardingID     string    // up to 11 digits; default (empty) all zeros
}

// Field90 returns the 42 digits of field 90.
func (o Original) Field90() (string, error) {
	if len(o.MTI) != 4 || classN.badChar([]byte(o.MTI)) >= 0 {
		return "", fmt.Errorf("%w: original MTI must be 4 digits", ErrInvalidValue)
	}
	if o.STAN == 0 || o.STAN > maxSTAN {
		return "", fmt.Errorf("%w: original STAN must be 1 to 999999", ErrInvalidValue)
	}
	if o.TransmissionTime.IsZero() {
		return "", fmt.Errorf("%w: original transmission time missing", ErrMissingField)
	}
	for _, id := range []string{o.AcquiringID, o.ForwardingID} {
		if len(id) > 11 || classN.badChar([]byte(id)) >= 0 {
			return "", fmt.Errorf("%w: institution ids are up to 11 digits", ErrInvalidValue)
		}
	}
	return fmt.Sprintf("%s%06d%s%011s%011s", o.MTI, o.STAN, o.Transmission(), o.AcquiringID, o.ForwardingID), nil
}

// Transmission returns the original's transmission date and time as field 7 carries it.
func (o Original) Transmission() string { return o.TransmissionTime.UTC().Format("0102150405") }

// ParseOriginal reads field 90. Field 90 has no year: the transmission time is placed in
// the year that puts it closest to ref (a host's clock), within six months. The institution
// ids come back as 11 digits.
func ParseOriginal(field90 string, ref time.Time) (Original, error) {
	if len(field90) != 42 || classN.badChar([]byte(field90)) >= 0 {
		return Original{}, &FieldError{Field: 90, Op: "unpack", Err: fmt.Errorf("%w: field 90 must be 42 digits", ErrInvalidValue)}
	}
	stan, _ := strconv.ParseUint(field90[4:10], 10, 32)
	t, err := time.Parse("0102150405", field90[10:20])
	if err != nil || stan == 0 {
		return Original{}, &FieldError{Field: 90, Op: "unpack", Err: fmt.Errorf("%w: original STAN or transmission time", ErrInvalidValue)}
	}
	ref = ref.UTC()
	best := time.Time{}
	for _, y := range []int{ref.Year() - 1, ref.Year(), ref.Year() + 1} {
		c := time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
		if c.Month() != t.Month() {
			continue // 29 February in a year without it
		}
		if best.IsZero() || absDuration(c.Sub(ref)) < absDuration(best.Sub(ref)) {
			best = c
		}
	}
	return Original{MTI: field90[:4], STAN: uint32(stan), TransmissionTime: best,
		AcquiringID: field90[20:31], ForwardingID: field90[31:42]}, nil
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
