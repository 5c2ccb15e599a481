// Package ptypair links two pseudo-terminals back to back, in pure Go, as
// `socat pty,raw,echo=0 pty,raw,echo=0` does: every byte written to one slave
// device can be read from the other, unchanged, in both directions.
//
// It exists so that a serial device and its driver can talk through real
// terminal devices in tests and demos: posd opens Pair.A with go.bug.st/serial
// and a simulated PIN pad opens Pair.B.
//
// # Basics
//
//	p, err := ptypair.Open()
//	if err != nil { ... }
//	defer p.Close()
//	// open p.A and p.B as serial ports
//
// # Caveats
//
//   - Both slaves are put in raw mode (the equivalent of cfmakeraw: no echo,
//     no line editing, no flow control characters, no CR/NL translation) right
//     after they are created, so bytes written before a device is opened
//     arrive unchanged.
//   - The pair keeps its own descriptor of each slave open for its whole life.
//     That keeps the relay from seeing EIO whenever the program using a slave
//     closes it, and it does not get in the way of go.bug.st/serial's
//     exclusive open (TIOCEXCL only refuses opens made after it is set).
//   - Bytes written to one side while nobody reads the other are buffered by
//     the kernel (a few KiB); once that fills, the relay in that direction
//     waits, as a real serial line with hardware flow control would not.
//   - Linux only in practice (creack/pty and termios ioctls).
package ptypair

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Pair is two pseudo-terminals whose masters are relayed to each other. A and
// B are the slave device paths to open (for example /dev/pts/7).
//
// A Pair is safe for concurrent use: the relay runs on its own goroutines and
// Close may be called from any goroutine, more than once.
type Pair struct {
	// A and B are the paths of the two slave devices.
	A, B string

	masters [2]*os.File // non-blocking, registered with the runtime poller
	slaves  [2]*os.File // held open; never read or written by the Pair

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open creates two pseudo-terminals, puts both slaves in raw mode and starts
// relaying bytes between their masters. Call Close to stop the relay and
// release the devices.
func Open() (*Pair, error) {
	p := &Pair{}
	for i := range p.masters {
		m, s, err := pty.Open()
		if err != nil {
			p.closeFiles()
			return nil, fmt.Errorf("ptypair: open pseudo-terminal: %w", err)
		}
		p.slaves[i] = s
		if err := makeRaw(s); err != nil {
			m.Close()
			p.closeFiles()
			return nil, fmt.Errorf("ptypair: raw mode on %s: %w", s.Name(), err)
		}
		pm, err := pollable(m)
		if err != nil {
			p.closeFiles()
			return nil, fmt.Errorf("ptypair: master of %s: %w", s.Name(), err)
		}
		p.masters[i] = pm
	}
	p.A, p.B = p.slaves[0].Name(), p.slaves[1].Name()
	p.wg.Add(2)
	go p.relay(p.masters[1], p.masters[0])
	go p.relay(p.masters[0], p.masters[1])
	return p, nil
}

// Close stops the relay and closes both pseudo-terminals. Programs that still
// have a slave open see end of file or an I/O error on it. Close waits for the
// relay goroutines to finish; calling it again returns the first result.
func (p *Pair) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		for _, m := range p.masters {
			if m != nil {
				errs = append(errs, m.Close())
			}
		}
		p.wg.Wait()
		for _, s := range p.slaves {
			if s != nil {
				errs = append(errs, s.Close())
			}
		}
		if err := errors.Join(errs...); err != nil {
			p.closeErr = fmt.Errorf("ptypair: close: %w", err)
		}
	})
	return p.closeErr
}

// relay copies from src to dst until either fails, which happens when Close
// closes the masters (their reads and writes go through the runtime poller, so
// closing them wakes the goroutine).
func (p *Pair) relay(dst io.Writer, src io.Reader) {
	defer p.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Pair) closeFiles() {
	for _, f := range p.masters {
		if f != nil {
			f.Close()
		}
	}
	for _, f := range p.slaves {
		if f != nil {
			f.Close()
		}
	}
}

// makeRaw does what cfmakeraw(3) does to the terminal f.
func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			ioErr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR |
			unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		ioErr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return ioErr
}

// pollable returns a non-blocking duplicate of the master m, registered with
// the runtime poller, and closes m. creack/pty's master has been switched to
// blocking mode by its own ioctls, which makes a pending Read immune to Close
// and to deadlines.
func pollable(m *os.File) (*os.File, error) {
	defer m.Close()
	rc, err := m.SyscallConn()
	if err != nil {
		return nil, err
	}
	dup := -1
	var dupErr error
	if err := rc.Control(func(fd uintptr) {
		dup, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	// os.NewFile sees the non-blocking flag and registers the descriptor with
	// the poller.
	return os.NewFile(uintptr(dup), m.Name()), nil
}

// ClearExclusive clears the exclusive-open flag (TIOCEXCL) that go.bug.st/serial sets on
// the slaves. A process killed without closing its port leaves the flag on the tty, and a
// non-root re-open then fails with "busy"; crash tests call this between a kill and the
// restart, as a technician would replug the device.
func (p *Pair) ClearExclusive() error {
	for _, s := range p.slaves {
		if s == nil {
			continue
		}
		if err := unix.IoctlSetInt(int(s.Fd()), unix.TIOCNXCL, 0); err != nil {
			return fmt.Errorf("ptypair: clear exclusive on %s: %w", s.Name(), err)
		}
	}
	return nil
}
