package abecs

import (
	"errors"
	"fmt"
	"syscall"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/internal/serialport"
)

// DefaultBaud is the ABECS line speed, 19200 bit/s (8N1).
const DefaultBaud = 19200

// ErrTimeout is returned by SerialPort.Read when the port's read timeout
// elapses with no byte received.
var ErrTimeout = errors.New("abecs: serial read timed out")

// SerialPort is a go.bug.st/serial port whose Read reports a timeout as
// ErrTimeout instead of (0, nil), so that loops such as io.ReadFull do not
// spin. Close unblocks a pending Read. Like the port it wraps, it may be read
// and written from different goroutines, but not read (or written) from two
// at once.
type SerialPort struct {
	serial.Port
	path string
}

// OpenSerial opens the serial device at path for ABECS: baud bit/s (0 means
// DefaultBaud), 8 data bits, no parity, 1 stop bit. It does not touch the
// modem lines, which pseudo-terminals lack. The port is this process's alone
// (a device another process holds fails with an error wrapping
// serialport.ErrInUse that names the holder: "/dev/ttyUSB0 is in use by PID
// 812 (posd)"), and bytes received before the open, such as line noise
// while the link was down, are discarded.
func OpenSerial(path string, baud int) (*SerialPort, error) {
	if baud == 0 {
		baud = DefaultBaud
	}
	if baud < 0 {
		return nil, fmt.Errorf("abecs: open serial port %s: baud rate %d is negative", path, baud)
	}
	p, err := serialport.Open(path, &serial.Mode{
		BaudRate: baud,
		DataBits: 8,
		Parity:   serial.NoParity,
		StopBits: serial.OneStopBit,
	})
	if errors.Is(err, serialport.ErrInUse) {
		return nil, fmt.Errorf("abecs: %w", err) // the error names the path
	}
	if err != nil {
		return nil, fmt.Errorf("abecs: open serial port %s: %w", path, err)
	}
	return &SerialPort{Port: p, path: path}, nil
}

// Path returns the device path the port was opened with.
func (p *SerialPort) Path() string { return p.path }

// Read reads into b. When the port's read timeout elapses with nothing read
// it returns ErrTimeout.
func (p *SerialPort) Read(b []byte) (int, error) {
	n, err := p.Port.Read(b)
	if n == 0 && err == nil && len(b) > 0 {
		return 0, ErrTimeout
	}
	return n, err
}

// ErrNoModemLines is returned by ModemStatus when the device has no modem
// control lines: a pseudo-terminal, or an adapter wired without them, answers
// ENOTTY. It is not a fault of the line.
var ErrNoModemLines = errors.New("abecs: the device has no modem lines")

// ModemStatus returns the state of the modem status lines (CTS, DSR, RI,
// DCD), or an error wrapping ErrNoModemLines when the device has none. The
// port never sets the modem lines itself (see OpenSerial).
func (p *SerialPort) ModemStatus() (*serial.ModemStatusBits, error) {
	bits, err := p.Port.GetModemStatusBits()
	if errors.Is(err, syscall.ENOTTY) {
		return nil, fmt.Errorf("%w (%s)", ErrNoModemLines, p.path)
	}
	if err != nil {
		return nil, fmt.Errorf("abecs: modem lines of %s: %w", p.path, err)
	}
	return bits, nil
}
