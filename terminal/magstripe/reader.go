package magstripe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/internal/serialport"
	"github.com/posd-dev/posd/terminal/money"
)

// Errors of the reader.
var (
	// ErrClosed: the reader was closed, or its port failed; Err says which.
	ErrClosed = errors.New("magstripe: reader closed")
	// errTimeout is what the port's Read returns when its read timeout
	// elapses with nothing read (go.bug.st/serial returns (0, nil)).
	errTimeout = errors.New("magstripe: serial read timed out")
)

// DefaultBaud is the usual line speed of serial magstripe readers (9600 8N1).
const DefaultBaud = 9600

// Options configures a Reader. The zero value gives the defaults. NewReader
// and Open copy it; it is plain data, safe for concurrent reads.
type Options struct {
	// Baud is the line speed Open sets. Default DefaultBaud.
	Baud int
	// MaxRecord is the longest record kept, in bytes; a longer one is
	// discarded up to its terminator and reported as ErrFormat. Default 512.
	MaxRecord int
	// Gap is how long the line may stay silent inside a record before the
	// partial record is dropped, so that a reader resynchronises after a
	// lost terminator. It needs a port whose reads time out (Open sets the
	// timeout to Gap/4). Default 1s.
	Gap time.Duration
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Baud <= 0 {
		r.Baud = DefaultBaud
	}
	if r.MaxRecord <= 0 {
		r.MaxRecord = 512
	}
	if r.Gap <= 0 {
		r.Gap = time.Second
	}
	return r
}

// Reader reads swipes from a serial magstripe reader. Its methods are safe
// for concurrent use, but only one Next or ReadCard may wait at a time: the
// swipe goes to one of them.
type Reader struct {
	port io.ReadCloser
	opts Options

	swipes   chan result // capacity 1: the latest record only
	closing  chan struct{}
	readDone chan struct{}
	readErr  error // set before readDone is closed

	closeOnce sync.Once
	closeErr  error
}

type result struct {
	swipe Swipe
	err   error
	at    time.Time
}

// Open opens the serial device at path (8N1 at opts.Baud, modem lines
// untouched, which pseudo-terminals lack) and returns a reader over it. The
// port is this process's alone (a device another process holds fails with an
// error wrapping serialport.ErrInUse that names the holder), and bytes
// received before the open are discarded.
func Open(path string, opts *Options) (*Reader, error) {
	o := opts.withDefaults()
	p, err := serialport.Open(path, &serial.Mode{BaudRate: o.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if errors.Is(err, serialport.ErrInUse) {
		return nil, fmt.Errorf("magstripe: %w", err) // the error names the path
	}
	if err != nil {
		return nil, fmt.Errorf("magstripe: open serial port %s: %w", path, err)
	}
	if err := p.SetReadTimeout(o.Gap / 4); err != nil {
		p.Close()
		return nil, fmt.Errorf("magstripe: serial port %s: read timeout: %w", path, err)
	}
	return NewReader(timeoutPort{p}, &o), nil
}

// timeoutPort turns go.bug.st/serial's (0, nil) read timeout into errTimeout.
type timeoutPort struct{ serial.Port }

func (p timeoutPort) Read(b []byte) (int, error) {
	n, err := p.Port.Read(b)
	if n == 0 && err == nil && len(b) > 0 {
		return 0, errTimeout
	}
	return n, err
}

// NewReader returns a reader over port and starts reading it. The reader
// owns port: Close closes it. A port whose Read returns an error that
// matches os.ErrDeadlineExceeded, or returns (0, nil), is read again (that is
// a read timeout); any other error ends the reader.
func NewReader(port io.ReadCloser, opts *Options) *Reader {
	r := &Reader{
		port:     port,
		opts:     opts.withDefaults(),
		swipes:   make(chan result, 1),
		closing:  make(chan struct{}),
		readDone: make(chan struct{}),
	}
	go r.readLoop()
	return r
}

func (r *Reader) readLoop() {
	defer close(r.readDone)
	var (
		rec      []byte
		skipping bool // a record too long: discard up to its terminator
		last     time.Time
		buf      = make([]byte, 256)
	)
	for {
		n, err := r.port.Read(buf)
		now := time.Now()
		if n > 0 {
			if (len(rec) > 0 || skipping) && now.Sub(last) > r.opts.Gap {
				rec, skipping = rec[:0], false // a record that never ended
			}
			last = now
			for _, c := range buf[:n] {
				if c != CR && c != ETX {
					if skipping {
						continue
					}
					if len(rec) == 0 && (c == LF || c == ' ') {
						continue // line feed after a CR, or idle spaces
					}
					if len(rec) >= r.opts.MaxRecord {
						skipping, rec = true, rec[:0]
						continue
					}
					rec = append(rec, c)
					continue
				}
				switch {
				case skipping:
					r.deliver(result{err: fmt.Errorf("%w: record longer than %d bytes", ErrFormat, r.opts.MaxRecord), at: now})
				case len(rec) > 0:
					s, perr := Parse(rec)
					clear(rec)
					r.deliver(result{swipe: s, err: perr, at: now})
				}
				rec, skipping = rec[:0], false
			}
		}
		switch {
		case err == nil, errors.Is(err, errTimeout), isTimeout(err):
			if len(rec) > 0 && time.Since(last) > r.opts.Gap {
				clear(rec)
				rec = rec[:0]
			}
			if n == 0 && err == nil {
				select {
				case <-r.closing:
					return
				default:
				}
			}
			continue
		}
		clear(rec)
		r.readErr = err
		return
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// deliver keeps only the latest record: a swipe nobody waits for is dropped
// when the next one arrives.
func (r *Reader) deliver(res result) {
	for {
		select {
		case r.swipes <- res:
			return
		default:
		}
		select {
		case <-r.swipes:
		default:
		}
	}
}

// Next waits for the next swipe that arrives after the call began; earlier
// ones are discarded, so a card swiped before the sale never pays for it. A
// record that does not parse is returned as its error (ErrFormat,
// ErrUnreadable). It returns ctx.Err() when ctx is done first, and an error
// wrapping ErrClosed when the reader stops.
func (r *Reader) Next(ctx context.Context) (Swipe, error) {
	start := time.Now()
	for {
		select {
		case res := <-r.swipes:
			if res.at.Before(start) {
				continue
			}
			return res.swipe, res.err
		case <-ctx.Done():
			return Swipe{}, ctx.Err()
		case <-r.readDone:
			return Swipe{}, r.Err()
		}
	}
}

// ReadCard implements the terminal's CardReader: it waits for a swipe (the
// amount is not shown: a serial reader has no display) and returns its
// tracks without sentinels. A swipe whose track 2 could not be read is an
// error wrapping ErrUnreadable; a customer who never swipes gets ctx.Err()
// (context.DeadlineExceeded under the sale's card timeout).
func (r *Reader) ReadCard(ctx context.Context, _ money.Amount) (track1, track2 string, err error) {
	s, err := r.Next(ctx)
	if err != nil {
		return "", "", err
	}
	if s.state[1] != read {
		return "", "", fmt.Errorf("%w: track 2 missing or unreadable", ErrUnreadable)
	}
	return s.Track1(), s.Track2(), nil
}

// Done returns a channel that is closed when the reader stops reading: after
// Close, or when its port fails (a pulled cable).
func (r *Reader) Done() <-chan struct{} { return r.readDone }

// Err returns nil while the reader reads, and afterwards an error wrapping
// ErrClosed and the port's error.
func (r *Reader) Err() error {
	select {
	case <-r.readDone:
	default:
		return nil
	}
	select {
	case <-r.closing:
		return ErrClosed
	default:
	}
	if r.readErr == nil {
		return ErrClosed
	}
	return fmt.Errorf("%w: read: %w", ErrClosed, r.readErr)
}

// Close closes the port and waits (up to a second) for the reading
// goroutine to stop. Calling it again returns the first result.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() {
		close(r.closing)
		if err := r.port.Close(); err != nil {
			r.closeErr = fmt.Errorf("magstripe: close: %w", err)
		}
		select {
		case <-r.readDone:
		case <-time.After(time.Second):
		}
	})
	return r.closeErr
}
