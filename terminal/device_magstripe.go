package terminal

import (
	"context"
	"errors"
	"fmt"

	"github.com/posd-dev/posd/terminal/magstripe"
	"github.com/posd-dev/posd/terminal/money"
)

// MagstripeDeviceOptions configures a MagstripeDevice. OpenMagstripeDevice
// copies it; its Open function is called from the device's own goroutine,
// one call at a time. Plain data, safe for concurrent reads.
type MagstripeDeviceOptions struct {
	// Path is the reader's serial device. Required unless Open is set.
	Path string
	// Reader sets the line speed (default 9600), record limit and
	// inter-byte gap of the reader.
	Reader magstripe.Options
	// Open opens one connection. Default: magstripe.Open(Path, &Reader).
	Open func(ctx context.Context) (*magstripe.Reader, error)
	// Device sets backoff, failure threshold, probe timeout and logger. Its
	// Heartbeat is not used: see MagstripeDevice.
	Device DeviceOptions
}

// MagstripeDevice is a serial magstripe reader (MagTek, ID TECH ASCII
// output) kept connected: when its port fails it is reopened with backoff,
// and a ReadCard made meanwhile fails at once with an error wrapping
// ErrDeviceUnavailable. It implements CardReader. It is safe for concurrent
// use; one ReadCard at a time gets the swipe.
//
// It has no heartbeat: these readers only send swipes and answer nothing
// (magstripe.Reader does not even write to its port), so a reader that loses
// power behind a port that stays open is noticed only as a customer whose
// swipe does not arrive. LastSeen is the connection or the last swipe.
type MagstripeDevice struct {
	sup *supervisor[*magstripe.Reader]
}

// OpenMagstripeDevice starts keeping the reader of opts connected. It
// returns at once (an error only for bad options).
func OpenMagstripeDevice(opts MagstripeDeviceOptions) (*MagstripeDevice, error) {
	if opts.Path == "" && opts.Open == nil {
		return nil, errors.New("terminal: card reader: a serial device path is required")
	}
	open := opts.Open
	if open == nil {
		ro := opts.Reader
		open = func(context.Context) (*magstripe.Reader, error) { return magstripe.Open(opts.Path, &ro) }
	}
	dial := func(ctx context.Context) (connected[*magstripe.Reader], error) {
		r, err := open(ctx)
		if err != nil {
			return connected[*magstripe.Reader]{}, err
		}
		return connected[*magstripe.Reader]{link: r}, nil
	}
	return &MagstripeDevice{sup: newSupervisor("card_reader", opts.Path, opts.Device, dial, nil)}, nil
}

// ReadCard implements CardReader: it waits for a swipe made after the call
// and returns its tracks without sentinels. A swipe whose track 2 cannot be
// read wraps ErrCardUnreadable; a customer who does not swipe before ctx's
// deadline, ErrDeviceTimeout; a reader that is not connected, or whose port
// fails meanwhile, ErrDeviceUnavailable.
func (d *MagstripeDevice) ReadCard(ctx context.Context, amount money.Amount) (track1, track2 string, err error) {
	r, err := d.sup.begin()
	if err != nil {
		return "", "", err
	}
	track1, track2, err = r.ReadCard(ctx, amount)
	d.sup.end(r, err == nil || errors.Is(err, magstripe.ErrUnreadable) || errors.Is(err, magstripe.ErrFormat))
	switch {
	case err == nil:
		return track1, track2, nil
	case errors.Is(err, magstripe.ErrClosed):
		d.sup.report(r, err)
		return "", "", fmt.Errorf("%w: card reader: %w", ErrDeviceUnavailable, err)
	case errors.Is(err, magstripe.ErrUnreadable), errors.Is(err, magstripe.ErrFormat):
		return "", "", fmt.Errorf("%w: %w", ErrCardUnreadable, err)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return "", "", fmt.Errorf("%w: no card swiped: %w", ErrDeviceTimeout, err)
	}
	return "", "", err
}

// WaitConnected waits for the first connection to the reader; see
// PadDevice.WaitConnected.
func (d *MagstripeDevice) WaitConnected(ctx context.Context) error { return d.sup.waitConnected(ctx) }

// Status returns the reader's link status for GET /v1/status.
func (d *MagstripeDevice) Status() DeviceStatus { return d.sup.Status() }

// Close stops reconnecting and closes the port.
func (d *MagstripeDevice) Close() error {
	d.sup.close()
	return nil
}
