// Package serialport opens a serial device for one process alone, with its
// input flushed.
//
// go.bug.st/serial sets TIOCEXCL on the ports it opens, but ignores its
// error, and TIOCEXCL does not stop root (CAP_SYS_ADMIN): a second posd run
// as root, or a terminal program, could open the PIN pad's port and steal
// half of its bytes. Open therefore also takes an flock(2) on the device,
// which binds root too and which the kernel drops when the holder dies (no
// stale lock files), and it names the holder when the device is taken:
// "/dev/ttyUSB0 is in use by PID 812 (posd)".
//
// # Caveats
//
//   - The flock is advisory: it keeps out other posd processes and programs
//     that lock the same way (picocom, for one); TIOCEXCL keeps out any other
//     non-root opener.
//   - The holder is found in /proc/locks (whoever holds the flock), else by
//     scanning /proc/*/fd for the device; a holder another user owns may not
//     be readable, and the error then says "another process".
//   - A process killed while it holds a pseudo-terminal whose other side
//     stays open leaves TIOCEXCL set on it (a real serial port is reset on
//     its last close); the next non-root open then fails as in use by another
//     process.
//   - Linux only (/proc, TIOCEXCL, TCFLSH).
package serialport

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// ErrInUse is wrapped by the *InUseError Open returns when another process
// holds the device.
var ErrInUse = errors.New("serial device is in use")

// InUseError says that another process holds the serial device Path. PID is
// the holder's process id and Command its name (/proc/PID/comm), when they
// could be found; PID is 0 otherwise. It unwraps to ErrInUse. A value, safe for
// concurrent use.
type InUseError struct {
	Path    string
	PID     int
	Command string
}

func (e *InUseError) Error() string {
	switch {
	case e.PID > 0 && e.Command != "":
		return fmt.Sprintf("%s is in use by PID %d (%s)", e.Path, e.PID, e.Command)
	case e.PID > 0:
		return fmt.Sprintf("%s is in use by PID %d", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is in use by another process", e.Path)
}

func (e *InUseError) Unwrap() error { return ErrInUse }

// Port is a serial port opened by Open: a go.bug.st/serial port (termios
// set-up, writes, modem lines) plus the descriptor that holds the device's
// lock, through which Read waits on the runtime's poller. Close releases
// both. Like the port it wraps, it may be read and written from different
// goroutines, but not read (or written) from two at once; Close may be called
// from any goroutine, more than once.
type Port struct {
	serial.Port
	path string
	lock *os.File // holds the flock; TIOCEXCL and TCFLSH go through it
	in   *os.File // a duplicate of lock's descriptor (non-blocking), on the poller: Read
	read readState

	closeOnce sync.Once
	closeErr  error
}

// Open opens the serial device at path in mode for this process alone, or
// fails with an *InUseError naming the holder. Bytes that arrived before the
// open (line noise, the end of an answer to the previous connection) are
// discarded, so that the first byte read is one sent after Open returned.
func Open(path string, mode *serial.Mode) (*Port, error) {
	// A descriptor of our own, opened before the port so that TIOCEXCL (set
	// by the port) does not refuse it: flock, TIOCEXCL and TCFLSH act on the
	// device whichever descriptor they are made through. O_NONBLOCK: a
	// modem line must not hold the open.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, inUse(path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	lock := os.NewFile(uintptr(fd), path)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, inUse(path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	p, err := serial.Open(path, mode)
	if err != nil {
		lock.Close()
		var pe *serial.PortError
		if errors.As(err, &pe) && pe.Code() == serial.PortBusy {
			return nil, inUse(path)
		}
		return nil, err
	}
	port := &Port{Port: p, path: path, lock: lock}
	// The reading descriptor shares lock's open file description, non-blocking:
	// os.NewFile puts it on the poller. Nothing may call Fd on either file, which
	// would make the shared description blocking.
	infd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		port.Close()
		return nil, fmt.Errorf("duplicate the descriptor of %s: %w", path, err)
	}
	port.in = os.NewFile(uintptr(infd), path)
	port.read.timeout.Store(int64(serial.NoTimeout))
	if err := unix.IoctlSetInt(fd, unix.TIOCEXCL, 0); err != nil {
		port.Close()
		return nil, fmt.Errorf("set exclusive use of %s (TIOCEXCL): %w", path, err)
	}
	if err := port.FlushInput(); err != nil {
		port.Close()
		return nil, err
	}
	return port, nil
}

// Path returns the device path the port was opened with.
func (p *Port) Path() string { return p.path }

// FlushInput discards the bytes received but not yet read (TCFLSH with
// TCIFLUSH).
func (p *Port) FlushInput() error {
	// Through SyscallConn, not Fd: Fd would make the descriptor Read polls blocking.
	rc, err := p.lock.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { err = unix.IoctlSetInt(int(fd), unix.TCFLSH, unix.TCIFLUSH) })
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("flush input of %s: %w", p.path, err)
	}
	return nil
}

// Close unblocks a pending Read, closes the port (which clears TIOCEXCL),
// then releases the lock.
func (p *Port) Close() error {
	p.closeOnce.Do(func() {
		if p.in != nil {
			p.in.Close()
		}
		p.closeErr = p.Port.Close()
		if err := p.lock.Close(); p.closeErr == nil {
			p.closeErr = err
		}
	})
	return p.closeErr
}
