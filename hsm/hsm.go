// Package hsm is posd's only way to PIN and key operations. It is a concrete Module that owns
// policy (which key, which PIN block format, which MAC algorithm, timeouts, audit) over a
// small Driver interface that backends implement, as database/sql sits over
// database/sql/driver.
//
// # Operations
//
//   - PINBlock: the PIN for a PAN, captured and encrypted inside the secure device; ISO 9564
//     format 0 under TDES keys, format 4 under AES keys (PCI PIN), with the DUKPT KSN.
//   - TranslatePIN: a received PIN block re-encrypted from a BDK or PIN key to a PIN key,
//     among formats 0, 3 and 4 only and for the same PAN (PCI PIN).
//   - MAC and VerifyMAC: ISO 8583 fields 64 and 128; the retail MAC (ISO 9797-1 algorithm 3)
//     for double-length TDES keys, CMAC for AES (and triple-length TDES) keys; 8 bytes.
//   - Seal and Open: AES-GCM for sensitive data at rest, with the record id as associated
//     data, for package store.
//   - CheckValue and KeyInfo: what a key is, and its check value, never its value.
//   - LoadKey and ImportKeyBlock: a technician's key loading, from clear components (a key
//     ceremony) or from a TR-31 key block under a key block protection key. The ids the
//     Module uses itself (the data, MAC and PIN key ids of Options) take only keys that can
//     do that job.
//   - Keys: every key the backend holds, described, never shown.
//
// Only PINBlock is required of a backend: the Driver interface has that one method. The other
// operations are optional driver capabilities, found by type assertion (KeyDescriber, MACer,
// Sealer, KeyLoader, KeyBlockImporter, KeyLister, PINTranslator); a Module over a driver
// without one returns ErrUnsupported.
//
// # Keys
//
// Callers hold key identifiers, never key bytes, and no function in this package or its
// backends returns clear key material or a clear PIN. A PIN block leaves a backend already
// encrypted, as an EncryptedPIN whose String and LogValue hide the block. Every key has an
// Algorithm and a Usage, and the Module refuses to use a key for anything else (ErrKeyUsage).
//
// # Backends
//
// Backends live in sub-packages and are chosen by the command that wires posd together:
//
//   - hsm/pinpad: the PIN pad's own secure module. The customer types the PIN on the pad,
//     the pad encrypts it under its DUKPT key, and posd receives only {block, KSN}.
//   - hsm/pkcs11: a PKCS#11 token (build tag pkcs11, cgo). Keys live in the token,
//     non-extractable; AES DUKPT, CMAC and AES-GCM run inside it.
//   - hsm/soft: keys in process memory. The reference for tests and simulators; never for
//     production.
//
// hsm/hsmtest is the conformance suite every backend passes with identical results.
//
// # Caveats
//
// The Module serialises PIN entry (one customer, one pad) and, separately, the other
// operations, so a MAC or a seal need not wait for a customer; a driver with capabilities
// beyond PINBlock must allow one PINBlock to run beside one other call.
//
// The package imports no networking.
package hsm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

// Format is an ISO 9564-1 PIN block format number. It is a value, safe for concurrent use.
type Format int

// PIN block formats.
const (
	FormatISO0 Format = 0 // ISO 9564-1 format 0 (ANSI X9.8), TDES, 8 bytes
	FormatISO1 Format = 1 // ISO 9564-1 format 1, no PAN, 8 bytes
	FormatISO3 Format = 3 // ISO 9564-1 format 3, TDES, 8 bytes
	FormatISO4 Format = 4 // ISO 9564-1 format 4, AES, 16 bytes
)

// BlockSize returns the length of an encrypted block of the format, or 0 for a format
// posd does not know.
func (f Format) BlockSize() int {
	switch f {
	case FormatISO0, FormatISO1, FormatISO3:
		return 8
	case FormatISO4:
		return 16
	}
	return 0
}

func (f Format) String() string { return fmt.Sprintf("ISO 9564 format %d", int(f)) }

// Errors a Module returns. Drivers wrap these so that callers can tell what happened. None of
// them, and no error of a driver in this tree, contains a key, a PIN, a PAN or a PIN block.
var (
	ErrCancelled   = errors.New("hsm: PIN entry cancelled by the customer")
	ErrTimeout     = errors.New("hsm: PIN entry timed out")
	ErrUnknownKey  = errors.New("hsm: unknown key id")
	ErrUnsupported = errors.New("hsm: operation not supported by this backend")
	ErrDevice      = errors.New("hsm: secure device failed")
	// ErrKeyUsage means the key exists but its usage or algorithm does not allow the
	// operation (a PIN key asked for a MAC, a TDES key asked to seal).
	ErrKeyUsage = errors.New("hsm: key not allowed for this operation")
	// ErrKeyExists means LoadKey or ImportKeyBlock named an id already in use and did not
	// ask to replace it.
	ErrKeyExists = errors.New("hsm: key id already in use")
	// ErrCheckValue means a loaded key's check value differs from the one the technician
	// expected: a component was mistyped. Nothing was loaded.
	ErrCheckValue = errors.New("hsm: key check value does not match")
	// ErrMACMismatch means VerifyMAC computed a different MAC: the message was altered
	// or was MACed under another key.
	ErrMACMismatch = errors.New("hsm: MAC does not verify")
	// ErrOpen means sealed data does not open: it was altered, sealed under another key or
	// for another record.
	ErrOpen = errors.New("hsm: sealed data does not open")
	// ErrExhausted means a DUKPT key has no transaction counter left: the device must be
	// re-keyed. It is returned before any counter could be reused.
	ErrExhausted = errors.New("hsm: DUKPT key exhausted; re-key the device")
)

// EncryptedPIN is a PIN block encrypted inside a secure device, with the DUKPT key serial
// number it was encrypted under. It is safe to pass around and safe for concurrent use (its
// methods return copies); String and LogValue show the format and KSN but never the block.
// The zero value is no PIN.
type EncryptedPIN struct {
	block  []byte
	ksn    []byte
	format Format
}

// NewEncryptedPIN is for backends: it wraps an encrypted block (8 bytes for formats 0, 1
// and 3, 16 bytes for format 4) and its KSN (10 bytes for TDES DUKPT, 12 for AES DUKPT, none
// for a static key).
func NewEncryptedPIN(block, ksn []byte, f Format) (EncryptedPIN, error) {
	if n := f.BlockSize(); n == 0 {
		return EncryptedPIN{}, fmt.Errorf("hsm: unknown PIN block format %d", int(f))
	} else if len(block) != n {
		return EncryptedPIN{}, fmt.Errorf("hsm: format %d PIN block must be %d bytes, got %d", int(f), n, len(block))
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

// PINRequest asks a backend to capture a PIN and return it encrypted. It holds no secret;
// the PAN masks itself when printed. It is a value, safe for concurrent use.
type PINRequest struct {
	KeyID  string   // which key encrypts the block, as configured for the backend
	PAN    card.PAN // the account the PIN belongs to (formats 0, 3 and 4 bind the block to it)
	Format Format
	Prompt string // text shown above the PIN entry, e.g. "12.50 EUR"
}

// Driver is what a backend implements. The Module calls PINBlock from one goroutine at a
// time; see the package's Caveats for the optional capabilities.
//
// The Module calls a Driver from one goroutine at a time; a Driver need not be safe for
// concurrent use.
type Driver interface {
	// PINBlock captures the PIN inside the secure device and returns it encrypted.
	// A cancelled entry wraps ErrCancelled; a timed-out entry wraps ErrTimeout.
	PINBlock(ctx context.Context, req PINRequest) (EncryptedPIN, error)
}

// AuditEvent is one operation the Module performed, for the tamper-evident record. It holds
// no secret: key ids, masked PANs, KSNs and check values are public. It is a value, safe for
// concurrent use.
type AuditEvent struct {
	Time       time.Time
	Op         string // "pin-block", "translate-pin", "mac", "verify-mac", "seal", "open", "check-value", "load-key", "import-key-block"
	KeyID      string
	MaskedPAN  string // PIN blocks only
	KSN        string // PIN blocks under DUKPT: the KSN used
	CheckValue string // key loading: the loaded key's check value
	Err        string // "" on success
}

// Options configures a Module. The zero value is usable: every field has a default. New
// copies it; changing it afterwards has no effect.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// PINKeyID is the key id used for PIN blocks when a caller passes "". Default "pin".
	PINKeyID string
	// MACKeyID is the key id used for MACs when a caller passes "". Default "mac".
	MACKeyID string
	// DataKeyID is the key id used by Seal and Open when a caller passes "". Default "data".
	DataKeyID string
	// PINTimeout bounds one PIN entry, on top of the caller's context. Default 60s.
	PINTimeout time.Duration
	// OpTimeout bounds every other operation, on top of the caller's context. Default 10s.
	OpTimeout time.Duration
	// MACLength is how many leftmost bytes of a MAC are kept. Default 8 (ISO 8583 fields
	// 64 and 128); at least 4.
	MACLength int
	// MaxDataSize bounds the data one MAC, Seal or Open call takes. Default 1 MiB.
	MaxDataSize int
	// Rand supplies the nonces of Seal. Default crypto/rand.
	Rand io.Reader
	// Audit receives one event per operation. Default: none.
	Audit func(AuditEvent)
	// Now is the clock for audit events. Default time.Now.
	Now func() time.Time
}

// Module is the policy layer over one backend. It is safe for concurrent use. PIN entries
// are serialised among themselves, and the other operations among themselves, since a
// secure device does one thing at a time.
type Module struct {
	drv    Driver
	opts   Options
	sem    chan struct{} // PIN entry
	opsSem chan struct{} // everything else
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
	if o.MACKeyID == "" {
		o.MACKeyID = "mac"
	}
	if o.DataKeyID == "" {
		o.DataKeyID = "data"
	}
	if o.PINTimeout <= 0 {
		o.PINTimeout = 60 * time.Second
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 10 * time.Second
	}
	if o.MACLength == 0 {
		o.MACLength = 8
	}
	if o.MACLength < 4 || o.MACLength > 16 {
		return nil, fmt.Errorf("hsm: MACLength %d: want 4 to 16 bytes", o.MACLength)
	}
	if o.MaxDataSize <= 0 {
		o.MaxDataSize = 1 << 20
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Module{drv: drv, opts: o, sem: make(chan struct{}, 1), opsSem: make(chan struct{}, 1)}, nil
}

// PINBlock has the customer enter the PIN for pan in the secure device and returns the
// encrypted block. keyID "" selects Options.PINKeyID. The format follows from the key: ISO
// 9564 format 4 for an AES key, format 0 for a TDES key. A backend that cannot describe its
// keys names the PIN key's algorithm (PINKeyAlgorithmer: the PIN pad, whose DUKPT key is
// TDES or AES as configured); one that does neither gets format 0.
func (m *Module) PINBlock(ctx context.Context, keyID string, pan card.PAN, prompt string) (EncryptedPIN, error) {
	if keyID == "" {
		keyID = m.opts.PINKeyID
	}
	ev := AuditEvent{Op: "pin-block", KeyID: keyID, MaskedPAN: pan.Masked()}
	if err := validID(keyID); err != nil {
		return EncryptedPIN{}, m.audit(ev, err)
	}
	if pan.IsZero() {
		return EncryptedPIN{}, m.audit(ev, errors.New("hsm: PIN block needs a PAN"))
	}
	format := FormatISO0
	if _, ok := m.drv.(KeyDescriber); ok {
		info, err := m.KeyInfo(ctx, keyID)
		if err != nil {
			return EncryptedPIN{}, m.audit(ev, err)
		}
		if info.Usage != UsagePIN && info.Usage != UsageDUKPT {
			return EncryptedPIN{}, m.audit(ev, fmt.Errorf("%w: key %q is a %v key, not a PIN key", ErrKeyUsage, keyID, info.Usage))
		}
		if info.Algorithm.IsAES() {
			format = FormatISO4
		}
	} else if pa, ok := m.drv.(PINKeyAlgorithmer); ok {
		alg, err := pa.PINKeyAlgorithm(keyID)
		if err != nil {
			return EncryptedPIN{}, m.audit(ev, err)
		}
		if alg.IsAES() {
			format = FormatISO4
		}
	}
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return EncryptedPIN{}, m.audit(ev, ctx.Err())
	}
	defer func() { <-m.sem }()
	ctx, cancel := context.WithTimeout(ctx, m.opts.PINTimeout)
	defer cancel()
	p, err := m.drv.PINBlock(ctx, PINRequest{KeyID: keyID, PAN: pan, Format: format, Prompt: prompt})
	if err == nil && p.IsZero() {
		err = fmt.Errorf("%w: backend returned no PIN block", ErrDevice)
	}
	if err == nil && p.Format() != format {
		err = fmt.Errorf("%w: backend returned %v, asked for %v", ErrDevice, p.Format(), format)
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	ev.KSN = p.KSNHex()
	if err != nil {
		ev.KSN = ""
		return EncryptedPIN{}, m.audit(ev, err)
	}
	m.audit(ev, nil)
	return p, nil
}

// audit records ev with err and returns err.
func (m *Module) audit(ev AuditEvent, err error) error {
	if m.opts.Audit == nil {
		return err
	}
	ev.Time = m.opts.Now()
	if validID(ev.KeyID) != nil {
		ev.KeyID = "(invalid id)" // it may be anything a technician pasted, a key even
	}
	if err != nil {
		ev.Err = err.Error()
	}
	m.opts.Audit(ev)
	return err
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
