package terminal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
)

// PINPad adapts an ABECS PIN pad client to what the sale needs: its magnetic stripe reader
// (CardReader), its display (Display) and its secure PIN entry (hsm/pinpad.Device). It is
// safe for concurrent use in the sense that the client refuses a second command while one
// is running; the Terminal and hsm.Module never overlap them.
type PINPad struct {
	c *abecs.Client
}

// NewPINPad returns the adapter over c.
func NewPINPad(c *abecs.Client) *PINPad { return &PINPad{c: c} }

// ReadCard implements CardReader through GCR. The deadline of ctx bounds the wait.
func (p *PINPad) ReadCard(ctx context.Context, amount money.Amount) (string, string, error) {
	req := abecs.CardRequest{AmountMinor: amount.Minor}
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(dl)
	}
	cd, err := p.c.GetCard(ctx, req)
	if err != nil {
		return "", "", padError(err)
	}
	return cd.Track1(), cd.Track2(), nil
}

// Show implements Display.
func (p *PINPad) Show(ctx context.Context, line1, line2 string) error {
	return padError(p.c.Display(ctx, line1, line2))
}

// Finish implements Display.
func (p *PINPad) Finish(ctx context.Context, msg string) error {
	return padError(p.c.Finish(ctx, msg))
}

// EncryptPIN implements hsm/pinpad.Device through GPN (DUKPT TDES, ISO 9564 format 0).
func (p *PINPad) EncryptPIN(ctx context.Context, pan card.PAN, keyIndex int, prompt string) ([8]byte, [10]byte, error) {
	req := abecs.PINRequest{KeyIndex: keyIndex, PAN: pan.Digits(), Line1: prompt, Line2: "ENTER PIN"}
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(dl)
	}
	block, ksn, err := p.c.GetPIN(ctx, req)
	if err != nil {
		switch {
		case errors.Is(err, abecs.ErrCancelled):
			return block, ksn, fmt.Errorf("%w: %w", hsm.ErrCancelled, err)
		case errors.Is(err, abecs.ErrPadTimeout):
			return block, ksn, fmt.Errorf("%w: %w", hsm.ErrTimeout, err)
		}
		return block, ksn, fmt.Errorf("%w: %w", hsm.ErrDevice, err)
	}
	return block, ksn, nil
}

// padError maps the pad's customer-facing statuses onto the terminal's.
func padError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, abecs.ErrCancelled):
		return fmt.Errorf("%w: %w", ErrDeviceCancel, err)
	case errors.Is(err, abecs.ErrPadTimeout):
		return fmt.Errorf("%w: %w", ErrDeviceTimeout, err)
	}
	return err
}
