package terminal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

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
	// Device sets backoff, failure threshold, probe timeout, heartbeat and
	// logger.
	Device DeviceOptions
}

// PadDevice keeps a link to an ABECS PIN pad up. Each connection opens the
// port, opens a session with the pad (OPN) and asks who it is (GIN); when the
// port fails (a pulled cable: EIO, a closed port) or a command finds the pad
// deaf (no ACK after every try), it closes the port and reconnects with
// backoff. Commands made meanwhile fail at once with an error wrapping
// ErrDeviceUnavailable that says since when and why; nothing else waits
// (but for the heartbeat's one exchange, below).
//
// A port that fails is noticed at once. A pad that goes silent while its port
// stays open (power lost on an RS-232 line) is noticed by the heartbeat
// (DeviceOptions.Heartbeat, default every 30s of idle link): the pad is asked
// GIN, which changes nothing on it, and a pad that does not take it on any
// try is reconnected with LastError "heartbeat got no answer". The heartbeat
// never overlaps a command: it skips its turn while one runs through a
// PINPad, and a command that starts while the heartbeat's GIN is on the line
// waits for it rather than failing with abecs.ErrBusy. That wait is one GIN
// exchange when the pad answers (about 60ms at 19200 baud), about a second
// more when it accepts GIN but does not answer, and the link's ACK timeout
// times its tries when the pad is gone; the command then fails at once with
// ErrDeviceUnavailable, which it would have found itself in that time.
// (Cancelling the GIN instead would not be quicker: the client still waits
// for the pad's EOT to its CAN.)
//
// Use it through NewPINPadDevice. A PadDevice is safe for concurrent use.
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
	return &PadDevice{sup: newSupervisor("pinpad", opts.Path, opts.Device, dial, padProbe(linkOpts))}, nil
}

// heartbeatWait bounds the wait for the pad's answer to the heartbeat's GIN
// once the pad has accepted it: a pad that is there answers at once (100
// bytes, about 60ms at 19200 baud). It bounds what a sale starting meanwhile
// waits.
const heartbeatWait = time.Second

// padProbe returns the heartbeat's question to the pad: GIN with acquirer
// index 00, what the pad is (the connection asks it too). GIN reads and
// changes nothing: no display, no session, no card or chip state, so it is
// harmless even between a sale's GOC and FNC while the acquirer is asked.
// OPN would be a few bytes shorter but (re)opens the pad's session, which a
// pad may refuse or reset in the middle of a transaction; DSP and CLO change
// the display. The probe is bounded by the link's own timers (ACK timeout
// times tries for a pad that is gone, then heartbeatWait for the answer), not
// by a context deadline: a deadline shorter than the tries would turn "no
// ACK" into a context error that proves nothing.
func padProbe(link abecs.Options) prober[*abecs.Client] {
	wait := heartbeatWait
	if link.ResponseTimeout > 0 && link.ResponseTimeout < wait {
		wait = link.ResponseTimeout
	}
	gin := abecs.Command{ID: abecs.CmdInfo, Blocks: [][]byte{abecs.AppendInfoRequest(nil)}}
	return func(ctx context.Context, c *abecs.Client) (bool, error) {
		_, err := c.Do(ctx, gin, wait)
		switch {
		case padAnswered(err):
			return true, nil
		case isLinkFault(err):
			return false, err
		}
		// abecs.ErrBusy (someone else's command on a held link), a pad that
		// took GIN but answered late or garbled, or Close: this turn tells
		// nothing, and the next command or turn will.
		return false, nil
	}
}

// padAnswered reports whether err (of a command) means the pad answered it:
// no error, or an ABECS error status.
func padAnswered(err error) bool {
	var se *abecs.StatusError
	return err == nil || errors.As(err, &se)
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
// failure (posd's start-up can then say why the pad does not answer). When
// another process holds the port it returns at once, with an error that also
// wraps serialport.ErrInUse and names the holder ("/dev/ttyUSB0 is in use by
// PID 812 (posd)"); the device keeps trying in the background.
func (d *PadDevice) WaitConnected(ctx context.Context) error { return d.sup.waitConnected(ctx) }

// Status returns the link's status for GET /v1/status.
func (d *PadDevice) Status() DeviceStatus { return d.sup.Status() }

// Close stops reconnecting and closes the port.
func (d *PadDevice) Close() error {
	d.sup.close()
	return nil
}

// begin returns the pad's client for one command, or an error wrapping
// ErrDeviceUnavailable; the heartbeat leaves the pad alone until end. It
// waits for a heartbeat probe in progress.
func (d *PadDevice) begin() (*abecs.Client, error) { return d.sup.begin() }

// end ends the command begun on c, which returned err.
func (d *PadDevice) end(c *abecs.Client, err error) { d.sup.end(c, padAnswered(err)) }

// Link returns the pad's current link, for what goes around the sale: the
// firmware transfer (firmware.PadLink). It fails with ErrDeviceUnavailable
// while reconnecting. It waits for a heartbeat probe in progress, and the
// heartbeat then leaves that link alone (its commands bypass the PINPad, so
// the heartbeat cannot see when they run) until the next command through a
// PINPad or a reconnection.
func (d *PadDevice) Link() (*abecs.Client, error) { return d.sup.hold() }
