package iso8583

import (
	"fmt"
	"log/slog"
	"time"
)

// Network management information codes (field 70).
const (
	NMSignOn  = "001"
	NMSignOff = "002"
	NMEcho    = "301"
)

// NetworkManagement is an 0800 request: sign-on (NMSignOn), sign-off (NMSignOff) or echo
// (NMEcho). It holds no card data. It is a value, safe for concurrent use if not modified.
type NetworkManagement struct {
	Code             string    // field 70: "001", "002" or "301"; required
	STAN             uint32    // field 11; required
	TransmissionTime time.Time // field 7; required
	TerminalID       string    // field 41; optional (matching uses it when present)
}

// Message builds the 0800 on the [DefaultSpec] dialect and checks it.
func (n NetworkManagement) Message() (*Message, error) {
	b := newBuilder(MTINetworkManagementRequest)
	b.transmission(n.TransmissionTime)
	b.stan(n.STAN)
	b.opt(41, n.TerminalID)
	switch n.Code {
	case NMSignOn, NMSignOff, NMEcho:
		b.set(70, n.Code)
	case "":
		b.fail(70, ErrMissingField)
	default:
		b.fail(70, fmt.Errorf("%w: network management code must be 001, 002 or 301", ErrInvalidValue))
	}
	return b.finish()
}

// String returns a one-line summary.
func (n NetworkManagement) String() string {
	return fmt.Sprintf("0800 stan=%06d tid=%s nmic=%s", n.STAN, n.TerminalID, n.Code)
}

// LogValue implements slog.LogValuer with the content of String.
func (n NetworkManagement) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mti", MTINetworkManagementRequest), slog.Int64("stan", int64(n.STAN)),
		slog.String("tid", n.TerminalID), slog.String("nmic", n.Code))
}
