package serialport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is wrapped by the error Read returns once the port is closed, or
// once the line hung up (the other side of a pseudo-terminal went away).
var ErrClosed = errors.New("serial port is closed")

// readState is what Read keeps between calls.
type readState struct {
	timeout  atomic.Int64 // a time.Duration: the read timeout, or serial.NoTimeout
	deadline bool         // a deadline is set on the reading descriptor (Read's alone)
}

// SetReadTimeout sets how long Read waits for a first byte: serial.NoTimeout
// (the default) waits until one comes or the port is closed; 0 returns at once
// with what has arrived. It may be called while a Read waits; that Read keeps
// the timeout it started with.
func (p *Port) SetReadTimeout(t time.Duration) error {
	if err := p.Port.SetReadTimeout(t); err != nil { // checks t, as go.bug.st/serial does
		return err
	}
	p.read.timeout.Store(int64(t))
	return nil
}

// Read reads what has arrived on the line into b, waiting for at least one
// byte on the runtime's poller (go.bug.st/serial's Read waits in a select(2)
// that holds one of the process's Ps for as long as it blocks). As with
// go.bug.st/serial, it returns (0, nil) when the read timeout elapses with
// nothing received; after Close, or once the line hung up, an error wrapping
// ErrClosed; a failing line (a pulled USB adapter) an error wrapping EIO.
func (p *Port) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	t := time.Duration(p.read.timeout.Load())
	var (
		n   int
		err error
	)
	switch {
	case t > 0:
		if err := p.in.SetReadDeadline(time.Now().Add(t)); err != nil {
			return 0, p.readError(err)
		}
		p.read.deadline = true
	case p.read.deadline: // an expired deadline would fail the read before it looks
		if err := p.in.SetReadDeadline(time.Time{}); err != nil {
			return 0, p.readError(err)
		}
		p.read.deadline = false
	}
	if t == 0 { // one look, as select(2) with a zero timeout
		n, err = p.readNow(b)
	} else {
		n, err = p.in.Read(b)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err != nil {
		return n, p.readError(err)
	}
	return n, nil
}

// readNow reads what has already arrived, without waiting.
func (p *Port) readNow(b []byte) (int, error) {
	rc, err := p.in.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b)
		return true // done whatever it found: no wait
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr == unix.EAGAIN:
		return 0, os.ErrDeadlineExceeded // nothing yet: Read's timeout
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readError names the port in err, and says ErrClosed for a closed port or a
// hung-up line.
func (p *Port) readError(err error) error {
	if errors.Is(err, os.ErrClosed) || err == io.EOF {
		return fmt.Errorf("read %s: %w", p.path, ErrClosed)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err // "read /dev/ttyUSB0: input/output error"
	}
	return fmt.Errorf("read %s: %w", p.path, err)
}
