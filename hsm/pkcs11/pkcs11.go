//go:build pkcs11

package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
)

// DefaultModule is Debian's SoftHSM2 PKCS#11 library.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// application marks the data objects that describe posd's keys.
const application = "posd-hsm"

// Options configures a Backend. Open copies it.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// Module is the PKCS#11 library to load. Default DefaultModule.
	Module string
	// Token is the label of the token to use. Required.
	Token string
	// PIN is the token's user PIN. Required.
	PIN string
	// PINEntry supplies the PIN for PINBlock (see the Caveats). Default: none, and
	// PINBlock returns hsm.ErrUnsupported.
	PINEntry func(ctx context.Context, req hsm.PINRequest) (pin string, err error)
	// StateDir is where each DUKPT key's last KSN is kept, one file per key, written
	// before the counter is used. Default "": in memory only.
	StateDir string
	// Rand supplies the random fill of PIN blocks. Default crypto/rand.
	Rand io.Reader
}

// Backend is the PKCS#11 backend. It is safe for concurrent use.
type Backend struct {
	opts Options
	ctx  *p11.Ctx
	fin  bool // this Backend initialised the library and finalises it

	mu      sync.Mutex
	session p11.SessionHandle
	keys    map[string]*key
	closed  bool
}

type key struct {
	info    hsm.KeyInfo
	handle  p11.ObjectHandle
	meta    p11.ObjectHandle
	counter *dukpt.AESCounter
	// variant holds, for a TDES KBPK, its TR-31 version A and C encryption and MAC variant
	// keys (labels id+variantEnc, id+variantMAC); zero when the token has none.
	variant [2]p11.ObjectHandle
}

// The label suffixes of a TDES KBPK's variant keys. A '/' is never part of a key id, so
// these labels cannot name a key of their own.
const (
	variantEnc = "/tr31-variant-enc"
	variantMAC = "/tr31-variant-mac"
)

// Open loads the library, finds the token and logs in.
func Open(opts *Options) (*Backend, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Module == "" {
		o.Module = DefaultModule
	}
	if o.Token == "" || o.PIN == "" {
		return nil, errors.New("pkcs11: Options.Token and Options.PIN are required")
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	c := p11.New(o.Module)
	if c == nil {
		return nil, fmt.Errorf("pkcs11: cannot load the PKCS#11 library %s", o.Module)
	}
	b := &Backend{opts: o, ctx: c, keys: make(map[string]*key)}
	err := c.Initialize()
	switch {
	case err == nil:
		b.fin = true
	case errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
	default:
		c.Destroy()
		return nil, fmt.Errorf("pkcs11: initialise %s: %w", o.Module, err)
	}
	if err := b.open(); err != nil {
		b.shutdown()
		return nil, err
	}
	return b, nil
}

func (b *Backend) open() error {
	slots, err := b.ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("pkcs11: slot list: %w", err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		ti, err := b.ctx.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " \x00") == b.opts.Token {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("pkcs11: no token labelled %q in %s", b.opts.Token, b.opts.Module)
	}
	if b.session, err = b.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION); err != nil {
		return fmt.Errorf("pkcs11: open session: %w", err)
	}
	if err := b.ctx.Login(b.session, p11.CKU_USER, b.opts.PIN); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
		return fmt.Errorf("pkcs11: log in to token %q: %w", b.opts.Token, err)
	}
	return b.loadMeta()
}

// Close logs out and releases the library.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.ctx.Logout(b.session)
	b.ctx.CloseSession(b.session)
	b.shutdown()
	return nil
}

func (b *Backend) shutdown() {
	if b.fin {
		b.ctx.Finalize()
	}
	b.ctx.Destroy()
}

// String describes the backend.
func (b *Backend) String() string {
	return fmt.Sprintf("PKCS#11 backend (token %q, %s)", b.opts.Token, b.opts.Module)
}

func (b *Backend) lock() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("%w: pkcs11: backend closed", hsm.ErrDevice)
	}
	return nil
}

func devErr(what string, err error) error {
	return fmt.Errorf("%w: pkcs11: %s: %w", hsm.ErrDevice, what, err)
}
