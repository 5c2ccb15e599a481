// Package pinpad is the hsm backend for a PIN pad's own secure module: the customer types the
// PIN on the pad, the pad encrypts it under its DUKPT key, and posd receives only the encrypted
// block and the key serial number. posd never sees the clear PIN or any key.
package pinpad

import (
	"context"
	"fmt"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/terminal/card"
)

// Device is the part of a PIN pad this backend needs. terminal adapts its PIN pad client to
// it. EncryptPIN returns an ISO 9564 format 0 block encrypted under the pad's TDES DUKPT key
// with index keyIndex, and that key's serial number. It wraps hsm.ErrCancelled or
// hsm.ErrTimeout when the customer cancels or does not answer.
//
// The Driver calls it from one goroutine at a time (the Module serialises PIN entry).
type Device interface {
	EncryptPIN(ctx context.Context, pan card.PAN, keyIndex int, prompt string) (block [8]byte, ksn [10]byte, err error)
}

// Options configures the backend.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// Keys maps hsm key ids to the pad's key indexes. Default: {"pin": 1}.
	Keys map[string]int
}

// Driver implements hsm.Driver over a PIN pad. It is safe for concurrent use if its Device
// is; the hsm.Module serialises calls anyway.
type Driver struct {
	dev  Device
	keys map[string]int
}

// New returns a driver over dev.
func New(dev Device, opts *Options) *Driver {
	keys := map[string]int{"pin": 1}
	if opts != nil && len(opts.Keys) > 0 {
		keys = make(map[string]int, len(opts.Keys))
		for k, v := range opts.Keys {
			keys[k] = v
		}
	}
	return &Driver{dev: dev, keys: keys}
}

// PINBlock implements hsm.Driver.
func (d *Driver) PINBlock(ctx context.Context, req hsm.PINRequest) (hsm.EncryptedPIN, error) {
	idx, ok := d.keys[req.KeyID]
	if !ok {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w %q (pinpad backend knows %d keys)", hsm.ErrUnknownKey, req.KeyID, len(d.keys))
	}
	if req.Format != hsm.FormatISO0 {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: the pad encrypts %s only, asked for %s", hsm.ErrUnsupported, hsm.FormatISO0, req.Format)
	}
	block, ksn, err := d.dev.EncryptPIN(ctx, req.PAN, idx, req.Prompt)
	if err != nil {
		return hsm.EncryptedPIN{}, fmt.Errorf("pinpad: %w", err)
	}
	return hsm.NewEncryptedPIN(block[:], ksn[:], hsm.FormatISO0)
}
