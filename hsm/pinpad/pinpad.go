// Package pinpad is the hsm backend for a PIN pad's own secure module: the customer types the
// PIN on the pad, the pad encrypts it under its DUKPT key, and posd receives only the encrypted
// block and the key serial number. posd never sees the clear PIN or any key.
//
// A pad key is TDES DUKPT (ISO 9564 format 0, an 8-byte block and a 10-byte KSN) unless
// Options.Algorithms says it is AES: then the Module asks for format 4 (it learns the key's
// algorithm through hsm.PINKeyAlgorithmer) and the Device must be an AESDevice, which
// returns a 16-byte block and a 12-byte KSN (ANSI X9.24-3).
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

// AESDevice is a Device whose pad holds AES DUKPT keys too. EncryptPINAES returns an ISO 9564
// format 4 block encrypted under the pad's AES DUKPT key with index keyIndex (ANSI
// X9.24-3-2017), and that key's 12-byte serial number. Its errors are as EncryptPIN's.
//
// The Driver calls it from one goroutine at a time (the Module serialises PIN entry).
type AESDevice interface {
	Device
	EncryptPINAES(ctx context.Context, pan card.PAN, keyIndex int, prompt string) (block [16]byte, ksn [12]byte, err error)
}

// Options configures the backend.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// Keys maps hsm key ids to the pad's key indexes. Default: {"pin": 1}.
	Keys map[string]int
	// Algorithms gives the algorithm of the DUKPT key behind a key id: hsm.TDES2 (format 0)
	// or hsm.AES128, AES192 or AES256 (format 4, which needs an AESDevice). Default: TDES2
	// for every key id.
	Algorithms map[string]hsm.Algorithm
}

// Driver implements hsm.Driver and hsm.PINKeyAlgorithmer over a PIN pad. It is safe for
// concurrent use if its Device is; the hsm.Module serialises calls anyway.
type Driver struct {
	dev  Device
	keys map[string]int
	algs map[string]hsm.Algorithm
}

// New returns a driver over dev.
func New(dev Device, opts *Options) *Driver {
	keys := map[string]int{"pin": 1}
	algs := map[string]hsm.Algorithm{}
	if opts != nil && len(opts.Keys) > 0 {
		keys = make(map[string]int, len(opts.Keys))
		for k, v := range opts.Keys {
			keys[k] = v
		}
	}
	if opts != nil {
		for k, v := range opts.Algorithms {
			algs[k] = v
		}
	}
	return &Driver{dev: dev, keys: keys, algs: algs}
}

// PINKeyAlgorithm implements hsm.PINKeyAlgorithmer: the algorithm Options.Algorithms gives
// the key id, TDES2 by default. An id the pad does not know wraps hsm.ErrUnknownKey; an
// algorithm that is neither double-length TDES nor AES wraps hsm.ErrKeyUsage.
func (d *Driver) PINKeyAlgorithm(id string) (hsm.Algorithm, error) {
	if _, ok := d.keys[id]; !ok {
		return 0, fmt.Errorf("%w %q (pinpad backend knows %d keys)", hsm.ErrUnknownKey, id, len(d.keys))
	}
	a, ok := d.algs[id]
	switch {
	case !ok:
		return hsm.TDES2, nil
	case a == hsm.TDES2 || a.IsAES():
		return a, nil
	}
	return 0, fmt.Errorf("%w: key %q is configured as %v; a pad's DUKPT key is TDES-2key or AES", hsm.ErrKeyUsage, id, a)
}

// PINBlock implements hsm.Driver: format 0 from a TDES key (Device.EncryptPIN), format 4
// from an AES key (AESDevice.EncryptPINAES).
func (d *Driver) PINBlock(ctx context.Context, req hsm.PINRequest) (hsm.EncryptedPIN, error) {
	alg, err := d.PINKeyAlgorithm(req.KeyID)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	idx := d.keys[req.KeyID]
	want := hsm.FormatISO0
	if alg.IsAES() {
		want = hsm.FormatISO4
	}
	if req.Format != want {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: the pad's key %q (%v) encrypts %s only, asked for %s", hsm.ErrUnsupported, req.KeyID, alg, want, req.Format)
	}
	if want == hsm.FormatISO4 {
		ad, ok := d.dev.(AESDevice)
		if !ok {
			return hsm.EncryptedPIN{}, fmt.Errorf("%w: the PIN pad device has no AES DUKPT keys", hsm.ErrUnsupported)
		}
		block, ksn, err := ad.EncryptPINAES(ctx, req.PAN, idx, req.Prompt)
		if err != nil {
			return hsm.EncryptedPIN{}, fmt.Errorf("pinpad: %w", err)
		}
		defer clear(block[:])
		return hsm.NewEncryptedPIN(block[:], ksn[:], hsm.FormatISO4)
	}
	block, ksn, err := d.dev.EncryptPIN(ctx, req.PAN, idx, req.Prompt)
	if err != nil {
		return hsm.EncryptedPIN{}, fmt.Errorf("pinpad: %w", err)
	}
	return hsm.NewEncryptedPIN(block[:], ksn[:], hsm.FormatISO0)
}
