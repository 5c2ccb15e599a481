package terminal

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/posd-dev/posd/terminal/abecs"
)

// PadDeviceOptions configures a PadDevice. OpenPadDevice copies it; its Open
// function is called from the device's own goroutine, one call at a time.
// Plain data, safe for concurrent reads.
type PadDeviceOptions struct {
	// Path is the PIN pad's serial device, e.g. /dev/ttyUSB0. Required
	// unless Open is set (then it only names the device in its status).
	Path string
	// Baud is the line speed. Default 19200 (ABECS).
	Baud int
	// Link configures the ABECS client of each connection (ACK timeout,
	// retries, response timeout). Default: abecs's defaults.
	Link abecs.Options
	// Open opens the port for one connection attempt. Default: open Path at
	// Baud with abecs.OpenSerial. Tests use it to reconnect to another pty.
	Open func(ctx context.Context) (io.ReadWriteCloser, error)
	// Device sets backoff, failure threshold, probe timeout and logger.
	Device DeviceOptions
}

// PadDevice keeps a link to an ABECS PIN pad up. Each connection opens the
// port, opens a session with the pad (OPN) and asks who it is (GIN); when the
// port fails (a pulled cable: EIO, a closed port) or a command finds the pad
// deaf (no ACK after every try), it closes the port and reconnects with
// backoff. Commands made meanwhile fail at once with an error wrapping
// ErrDeviceUnavailable that says since when and why; nothing else waits.
//
// A pad that goes silent while idle is noticed at the next command, a port
// that fails at once. Use it through NewPINPadDevice. A PadDevice is safe for
// concurrent use.
type PadDevice struct {
	sup *supervisor[*abecs.Client]
}

// OpenPadDevice starts keeping a link to the pad of opts. It returns at once
// (an error only for bad options); WaitConnected waits for the first
// connection.
func OpenPadDevice(opts PadDeviceOptions) (*PadDevice, error) {
	if opts.Path == "" && opts.Open == nil {
		return nil, errors.New("terminal: PIN pad: a serial device path is required")
	}
	if opts.Baud < 0 {
		return nil, fmt.Errorf("terminal: PIN pad: baud rate %d is negative", opts.Baud)
	}
	open := opts.Open
	if open == nil {
		open = func(context.Context) (io.ReadWriteCloser, error) { return abecs.OpenSerial(opts.Path, opts.Baud) }
	}
	linkOpts := opts.Link
	dial := func(ctx context.Context) (connected[*abecs.Client], error) {
		port, err := open(ctx)
		if err != nil {
			return connected[*abecs.Client]{}, err
		}
		lines := modemLines(port)
		c := abecs.NewClient(port, &linkOpts)
		if err := c.Open(ctx); err != nil {
			c.Close()
			return connected[*abecs.Client]{}, fmt.Errorf("the pad does not answer: %w", err)
		}
		info := ""
		if i, err := c.Info(ctx); err == nil {
			info = i.String()
		} else if isLinkFault(err) {
			c.Close()
			return connected[*abecs.Client]{}, fmt.Errorf("the pad does not answer: %w", err)
		}
		return connected[*abecs.Client]{link: c, info: info, modemLines: lines}, nil
	}
	return &PadDevice{sup: newSupervisor("pinpad", opts.Path, opts.Device, dial)}, nil
}

// modemLines describes the modem status lines of port when it is a serial
// port. ENOTTY (a pseudo-terminal) means the device has none: not a fault.
func modemLines(port io.ReadWriteCloser) string {
	sp, ok := port.(*abecs.SerialPort)
	if !ok {
		return ""
	}
	bits, err := sp.ModemStatus()
	switch {
	case errors.Is(err, abecs.ErrNoModemLines):
		return "not supported"
	case err != nil:
		return "unreadable: " + err.Error()
	}
	return fmt.Sprintf("CTS %v, DSR %v", bits.CTS, bits.DSR)
}

// isLinkFault reports whether err means the link to the pad is gone: the
// port failed or was closed, a write failed, or the pad did not accept the
// command on any try. A pad that answers, even with an error status or
// late, is still there.
func isLinkFault(err error) bool {
	return errors.Is(err, abecs.ErrClosed) || errors.Is(err, abecs.ErrNoACK) || errors.Is(err, abecs.ErrWrite)
}

// WaitConnected waits for the first connection to the pad. When ctx ends
// first it returns an error wrapping ErrDeviceUnavailable with the last
// failure (posd's start-up can then say why the pad does not answer).
func (d *PadDevice) WaitConnected(ctx context.Context) error { return d.sup.waitConnected(ctx) }

// Status returns the link's status for GET /v1/status.
func (d *PadDevice) Status() DeviceStatus { return d.sup.Status() }

// Close stops reconnecting and closes the port.
func (d *PadDevice) Close() error {
	d.sup.close()
	return nil
}

// client returns the pad's client, or an error wrapping ErrDeviceUnavailable.
func (d *PadDevice) client() (*abecs.Client, error) {
	return d.sup.get()
}

// Link returns the pad's current link, for what goes around the sale: the firmware
// transfer (firmware.PadLink). It fails with ErrDeviceUnavailable while reconnecting.
func (d *PadDevice) Link() (*abecs.Client, error) { return d.client() }
