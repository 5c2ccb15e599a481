// Package hsm is posd's only way to PIN and key operations. It is a concrete Module that owns
// policy (which key, which PIN block format, timeouts, audit) over a small Driver interface
// that backends implement, as database/sql sits over database/sql/driver.
//
// Callers hold key identifiers, never key bytes, and no function in this package or its
// backends returns clear key material or a clear PIN. A PIN block leaves a backend already
// encrypted, as an EncryptedPIN whose String and LogValue hide the block.
//
// Backends live in sub-packages and are chosen by the command that wires posd together:
//
//   - hsm/pinpad: the PIN pad's own secure module. The customer types the PIN on the pad,
//     the pad encrypts it under its DUKPT key, and posd receives only {block, KSN}.
//
// The package imports no networking.
package hsm

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

// Format is an ISO 9564-1 PIN block format number.
type Format int

// PIN block formats.
const (
	FormatISO0 Format = 0 // ISO 9564-1 format 0 (ANSI X9.8), TDES
)

func (f Format) String() string { return fmt.Sprintf("ISO 9564 format %d", int(f)) }

// Errors a Module returns. Drivers wrap these so that callers can tell what happened.
var (
	ErrCancelled   = errors.New("hsm: PIN entry cancelled by the customer")
	ErrTimeout     = errors.New("hsm: PIN entry timed out")
	ErrUnknownKey  = errors.New("hsm: unknown key id")
	ErrUnsupported = errors.New("hsm: operation not supported by this backend")
	ErrDevice      = errors.New("hsm: secure device failed")
)

// EncryptedPIN is a PIN block encrypted inside a secure device, with the DUKPT key serial
// number it was encrypted under. It is safe to pass around; String and LogValue show the
// format and KSN but never the block. The zero value is no PIN.
type EncryptedPIN struct {
	block  []byte
	ksn    []byte
	format Format
}

// NewEncryptedPIN is for backends: it wraps an encrypted block (8 bytes for TDES formats)
// and its KSN (10 bytes for TDES DUKPT).
func NewEncryptedPIN(block, ksn []byte, f Format) (EncryptedPIN, error) {
	if f == FormatISO0 && len(block) != 8 {
		return EncryptedPIN{}, fmt.Errorf("hsm: format 0 PIN block must be 8 bytes, got %d", len(block))
	}
	if len(ksn) != 0 && len(ksn) != 10 && len(ksn) != 12 {
		return EncryptedPIN{}, fmt.Errorf("hsm: KSN must be 10 or 12 bytes, got %d", len(ksn))
	}
	return EncryptedPIN{block: clone(block), ksn: clone(ksn), format: f}, nil
}

// Block returns a copy of the encrypted block, for the wire (ISO 8583 field 52) only.
func (p EncryptedPIN) Block() []byte { return clone(p.block) }

// KSN returns a copy of the key serial number (not secret).
func (p EncryptedPIN) KSN() []byte { return clone(p.ksn) }

// KSNHex returns the KSN as uppercase hex.
func (p EncryptedPIN) KSNHex() string { return strings.ToUpper(hex.EncodeToString(p.ksn)) }

// Format returns the PIN block format.
func (p EncryptedPIN) Format() Format { return p.format }

// IsZero reports whether p holds no PIN block.
func (p EncryptedPIN) IsZero() bool { return len(p.block) == 0 }

// String hides the block.
func (p EncryptedPIN) String() string {
	return fmt.Sprintf("EncryptedPIN{%s, KSN %s, block [hidden]}", p.format, p.KSNHex())
}

// GoString hides the block from %#v too.
func (p EncryptedPIN) GoString() string { return p.String() }

// LogValue implements slog.LogValuer without the block.
func (p EncryptedPIN) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("format", int(p.format)), slog.String("ksn", p.KSNHex()))
}

// PINRequest asks a backend to capture a PIN and return it encrypted.
type PINRequest struct {
	KeyID  string   // which key encrypts the block, as configured for the backend
	PAN    card.PAN // the account the PIN belongs to (format 0 binds the block to it)
	Format Format
	Prompt string // text shown above the PIN entry, e.g. "12.50 EUR"
}

// Driver is what a backend implements. Implementations must be safe for the Module to call
// from one goroutine at a time; the Module never calls a Driver concurrently.
type Driver interface {
	// PINBlock captures the PIN inside the secure device and returns it encrypted.
	// A cancelled entry wraps ErrCancelled; a timed-out entry wraps ErrTimeout.
	PINBlock(ctx context.Context, req PINRequest) (EncryptedPIN, error)
}

// AuditEvent is one operation the Module performed, for the tamper-evident record.
type AuditEvent struct {
	Time      time.Time
	Op        string // "pin-block"
	KeyID     string
	MaskedPAN string
	Err       string // "" on success
}

// Options configures a Module.
type Options struct {
	// PINKeyID is the key id used when a caller passes "". Default "pin".
	PINKeyID string
	// PINTimeout bounds one PIN entry, on top of the caller's context. Default 60s.
	PINTimeout time.Duration
	// Audit receives one event per operation. Default: none.
	Audit func(AuditEvent)
	// Now is the clock for audit events. Default time.Now.
	Now func() time.Time
}

// Module is the policy layer over one backend. It is safe for concurrent use; calls into the
// backend are serialised, since a secure device does one thing at a time.
type Module struct {
	drv  Driver
	opts Options
	sem  chan struct{}
}

// New returns a Module over drv.
func New(drv Driver, opts *Options) (*Module, error) {
	if drv == nil {
		return nil, errors.New("hsm: nil driver")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.PINKeyID == "" {
		o.PINKeyID = "pin"
	}
	if o.PINTimeout <= 0 {
		o.PINTimeout = 60 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Module{drv: drv, opts: o, sem: make(chan struct{}, 1)}, nil
}

// PINBlock has the customer enter the PIN for pan in the secure device and returns the
// encrypted block (ISO 9564 format 0 under TDES DUKPT with the pinpad backend). keyID ""
// selects Options.PINKeyID.
func (m *Module) PINBlock(ctx context.Context, keyID string, pan card.PAN, prompt string) (EncryptedPIN, error) {
	if keyID == "" {
		keyID = m.opts.PINKeyID
	}
	if pan.IsZero() {
		return EncryptedPIN{}, errors.New("hsm: PIN block needs a PAN")
	}
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return EncryptedPIN{}, ctx.Err()
	}
	defer func() { <-m.sem }()
	ctx, cancel := context.WithTimeout(ctx, m.opts.PINTimeout)
	defer cancel()
	p, err := m.drv.PINBlock(ctx, PINRequest{KeyID: keyID, PAN: pan, Format: FormatISO0, Prompt: prompt})
	if err == nil && p.IsZero() {
		err = fmt.Errorf("%w: backend returned no PIN block", ErrDevice)
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	m.audit("pin-block", keyID, pan, err)
	if err != nil {
		return EncryptedPIN{}, err
	}
	return p, nil
}

func (m *Module) audit(op, keyID string, pan card.PAN, err error) {
	if m.opts.Audit == nil {
		return
	}
	ev := AuditEvent{Time: m.opts.Now(), Op: op, KeyID: keyID, MaskedPAN: pan.Masked()}
	if err != nil {
		ev.Err = err.Error()
	}
	m.opts.Audit(ev)
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
