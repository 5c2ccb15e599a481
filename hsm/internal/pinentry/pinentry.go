// Package pinentry is the PIN entry shared by the hsm backends that have no PIN pad of their
// own (soft, pkcs11): it checks the key can make PIN blocks, asks the configured PIN source,
// and builds the clear ISO 9564 block (format 0 for a TDES key, format 4 for an AES key)
// for the backend to encrypt. The clear block never leaves the backend that asked for it.
package pinentry

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/pinblock"
)

// Source supplies the PIN a customer would type, as soft.Options.PINEntry and
// pkcs11.Options.PINEntry do.
//
// A backend calls it from one goroutine at a time; one shared by several backends must be safe
// for concurrent use.
type Source func(ctx context.Context, req hsm.PINRequest) (pin string, err error)

// ClearBlock checks that key info can make the block req asks for, gets the PIN from src and
// returns the format and the clear PIN block. backend names the caller in errors. The caller
// clears the block once it is encrypted.
func ClearBlock(ctx context.Context, backend string, info hsm.KeyInfo, req hsm.PINRequest, src Source, rnd io.Reader) (hsm.Format, []byte, error) {
	if info.Usage != hsm.UsagePIN && info.Usage != hsm.UsageDUKPT {
		return 0, nil, fmt.Errorf("%w: %s: key %q is a %v key", hsm.ErrKeyUsage, backend, req.KeyID, info.Usage)
	}
	want := hsm.FormatISO0
	if info.Algorithm.IsAES() {
		want = hsm.FormatISO4
	}
	if req.Format != want {
		return 0, nil, fmt.Errorf("%w: %s: key %q makes %v blocks, asked for %v", hsm.ErrUnsupported, backend, req.KeyID, want, req.Format)
	}
	if src == nil {
		return 0, nil, fmt.Errorf("%w: %s: no PIN entry configured", hsm.ErrUnsupported, backend)
	}
	pin, err := src(ctx, req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: PIN entry: %w", backend, err)
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", hsm.ErrTimeout, err)
		}
		return 0, nil, fmt.Errorf("%s: %w", backend, err)
	}
	var block []byte
	if want == hsm.FormatISO4 {
		block, err = pinblock.Encode(pinblock.Format4, pin, req.PAN.Digits(), rnd)
	} else {
		block, err = pinblock.Encode(pinblock.Format0, pin, req.PAN.Digits(), nil)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", backend, err)
	}
	return want, block, nil
}
