package abecs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the host side of the link.
var (
	// ErrNoACK: the pad did not accept the command (NAK or silence on every
	// try). The pad did not act on it; sending it again is safe.
	ErrNoACK = errors.New("abecs: pad did not acknowledge the command")
	// ErrNoResponse: the pad accepted the command but did not answer in time.
	// The client has sent CAN to abort it.
	ErrNoResponse = errors.New("abecs: no response from the pad")
	// ErrBadResponse: the pad's response failed its CRC on every try, or was
	// malformed.
	ErrBadResponse = errors.New("abecs: bad response from the pad")
	// ErrClosed: the client was closed, or its port failed.
	ErrClosed = errors.New("abecs: client closed")
	// ErrBusy: a command was started while another was in progress. A Client
	// runs one command at a time.
	ErrBusy = errors.New("abecs: another command is in progress")
	// ErrWrite: writing to the port failed (the port is broken or closed).
	// Before the ACK this means the command was not sent.
	ErrWrite = errors.New("abecs: write to the port failed")
)

// Options configures a Client. The zero value gives the defaults. NewClient
// copies it; it is not used afterwards.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// ACKTimeout is how long to wait for ACK or NAK after sending a command.
	// Default 2s.
	ACKTimeout time.Duration
	// Retries is how many times a command is sent when the pad answers NAK
	// or nothing, and how many times a response with a bad CRC is received
	// (and NAKed) before giving up. Default 3.
	Retries int
	// ResponseTimeout is how long to wait, after the ACK, for the response to
	// a command that does not wait for the cardholder (OPN, DSP, CLO, GIN,
	// and FNC unless its request sets a Timeout). Default 10s. GCR, GPN, CKE
	// and GOC wait for their request's Timeout instead.
	ResponseTimeout time.Duration
	// AbortTimeout is how long to wait for EOT after sending CAN. Default
	// 500ms.
	AbortTimeout time.Duration
	// Now returns the time sent in GCR. Default time.Now.
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.ACKTimeout <= 0 {
		r.ACKTimeout = 2 * time.Second
	}
	if r.Retries <= 0 {
		r.Retries = 3
	}
	if r.ResponseTimeout <= 0 {
		r.ResponseTimeout = 10 * time.Second
	}
	if r.AbortTimeout <= 0 {
		r.AbortTimeout = 500 * time.Millisecond
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return r
}

// Client is the host side of an ABECS PIN pad link.
//
// A Client is not safe for concurrent use: it runs one command at a time, and
// a command started while another is in progress fails with ErrBusy. Close
// may be called from any goroutine; it ends a command in progress with
// ErrClosed.
type Client struct {
	port io.ReadWriteCloser
	opts Options

	busy atomic.Bool

	events   chan Event
	closing  chan struct{}
	readDone chan struct{}
	readErr  error // set before readDone is closed

	closeOnce sync.Once
	closeErr  error
}

// Dial opens the serial device at path (baud 0 means 19200; 8N1) and returns
// a client over it. Close the client to close the port.
func Dial(path string, baud int, opts *Options) (*Client, error) {
	port, err := OpenSerial(path, baud)
	if err != nil {
		return nil, err
	}
	return NewClient(port, opts), nil
}

// NewClient returns a client over port and starts reading from it. The client
// owns port: Close closes it. Reads of port that return ErrTimeout are
// retried; any other read error ends the client (commands then fail with
// ErrClosed).
func NewClient(port io.ReadWriteCloser, opts *Options) *Client {
	c := &Client{
		port:     port,
		opts:     opts.withDefaults(),
		events:   make(chan Event, 16),
		closing:  make(chan struct{}),
		readDone: make(chan struct{}),
	}
	go c.readLoop()
	return c
}

func (c *Client) readLoop() {
	defer close(c.readDone)
	d := NewDecoder(c.port)
	for {
		ev, err := d.Next()
		if err != nil {
			if errors.Is(err, ErrTimeout) {
				continue
			}
			c.readErr = err
			return
		}
		select {
		case c.events <- ev:
		case <-c.closing:
			return
		}
	}
}

// Done returns a channel that is closed when the client stops reading its
// port: after Close, or when a read fails (a pulled cable shows up here as
// EIO or a closed port, without any command running). Err says why.
func (c *Client) Done() <-chan struct{} { return c.readDone }

// Err returns nil while the client reads its port, and afterwards the read
// error that stopped it wrapped in ErrClosed (or ErrClosed alone after
// Close).
func (c *Client) Err() error {
	select {
	case <-c.readDone:
	default:
		return nil
	}
	if c.readErr == nil {
		return ErrClosed
	}
	return fmt.Errorf("%w: read: %w", ErrClosed, c.readErr)
}

// Close closes the port and waits (up to a second) for the reading goroutine
// to stop. Calling it again returns the first result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		if err := c.port.Close(); err != nil {
			c.closeErr = fmt.Errorf("abecs: close: %w", err)
		}
		select {
		case <-c.readDone:
		case <-time.After(time.Second):
		}
	})
	return c.closeErr
}

// Do runs any command and returns its successful response, for commands this
// package has no method for. It waits up to wait for the response after the
// ACK (0 means Options.ResponseTimeout), then cancels the command and returns
// an error wrapping ErrNoResponse. An error status is returned as a
// *StatusError.
func (c *Client) Do(ctx context.Context, cmd Command, wait time.Duration) (Response, error) {
	if wait <= 0 {
		wait = c.opts.ResponseTimeout
	}
	return c.do(ctx, cmd, wait, ErrNoResponse)
}

// Open opens a session with the pad (OPN).
func (c *Client) Open(ctx context.Context) error {
	_, err := c.do(ctx, Command{ID: CmdOpen}, c.opts.ResponseTimeout, ErrNoResponse)
	return err
}

// Display shows two lines of at most 16 printable ASCII characters (DSP).
func (c *Client) Display(ctx context.Context, line1, line2 string) error {
	text, err := AppendDisplay(nil, line1, line2)
	if err != nil {
		return cmdErrorf(CmdDisplay, "%w", err)
	}
	_, err = c.do(ctx, Command{ID: CmdDisplay, Blocks: [][]byte{text}}, c.opts.ResponseTimeout, ErrNoResponse)
	return err
}

// Finish closes the session (CLO), leaving msg on the display: at most 32
// printable ASCII characters laid out on two lines of 16, or two lines of at
// most 16 separated by a newline.
func (c *Client) Finish(ctx context.Context, msg string) error {
	l1, l2, err := splitMessage(msg)
	if err == nil {
		var text []byte
		if text, err = AppendDisplay(nil, l1, l2); err == nil {
			_, err = c.do(ctx, Command{ID: CmdClose, Blocks: [][]byte{text}}, c.opts.ResponseTimeout, ErrNoResponse)
			return err
		}
	}
	return cmdErrorf(CmdClose, "%w", err)
}

// GetCard waits for a card (GCR; for now the pad returns magnetic stripe
// tracks). When req.Timeout elapses first, it cancels the pad and returns an
// error matching ErrPadTimeout; when the cardholder cancels, one matching
// ErrCancelled.
func (c *Client) GetCard(ctx context.Context, req CardRequest) (CardData, error) {
	if req.Timeout <= 0 {
		req.Timeout = DefaultCardTimeout
	}
	block, err := AppendCardRequest(nil, req, c.opts.Now())
	if err != nil {
		return CardData{}, err
	}
	resp, err := c.do(ctx, Command{ID: CmdGetCard, Blocks: [][]byte{block}}, req.Timeout, ErrPadTimeout)
	if err != nil {
		return CardData{}, err
	}
	return parseCardResponse(resp)
}

// GetPIN asks the cardholder for the PIN (GPN, method 3: DUKPT TDES) and
// returns the ISO 9564 format 0 PIN block encrypted under the pad's DUKPT key
// req.KeyIndex, and that key's KSN. Timeout and cancellation are reported as
// by GetCard. A request with AES set is refused: use GetPINAES.
func (c *Client) GetPIN(ctx context.Context, req PINRequest) (block [8]byte, ksn [10]byte, err error) {
	if req.AES {
		return block, ksn, errors.New("abecs: GPN: an AES DUKPT request goes through GetPINAES")
	}
	b, err := c.getPIN(ctx, req)
	if err != nil {
		return block, ksn, err
	}
	block, ksn, err = ParsePINResponse(b)
	if err != nil {
		return block, ksn, cmdErrorf(CmdGetPIN, "%w: %w", ErrBadResponse, err)
	}
	return block, ksn, nil
}

// GetPINAES asks the cardholder for the PIN (GPN, method 4: DUKPT AES,
// whatever req.AES says) and returns the ISO 9564 format 4 PIN block
// encrypted under the pad's AES DUKPT key req.KeyIndex, and that key's
// 12-byte KSN. A pad without an AES key in that slot answers 042
// (ErrKeyMissing). Timeout and cancellation are reported as by GetCard.
func (c *Client) GetPINAES(ctx context.Context, req PINRequest) (block [16]byte, ksn [12]byte, err error) {
	req.AES = true
	b, err := c.getPIN(ctx, req)
	if err != nil {
		return block, ksn, err
	}
	block, ksn, err = ParsePINResponseAES(b)
	if err != nil {
		return block, ksn, cmdErrorf(CmdGetPIN, "%w: %w", ErrBadResponse, err)
	}
	return block, ksn, nil
}

// getPIN runs GPN and returns its one response block.
func (c *Client) getPIN(ctx context.Context, req PINRequest) ([]byte, error) {
	req = req.withDefaults()
	data, err := AppendPINRequest(nil, req)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, Command{ID: CmdGetPIN, Blocks: [][]byte{data}}, req.Timeout, ErrPadTimeout)
	if err != nil {
		return nil, err
	}
	if len(resp.Blocks) != 1 {
		return nil, cmdErrorf(CmdGetPIN, "response has %d blocks, want 1: %w", len(resp.Blocks), ErrBadResponse)
	}
	return resp.Blocks[0], nil
}

// cmdError reports a failed command as "abecs: CMD: " and the messages of
// its causes, without their own "abecs: " prefixes. It unwraps to the causes.
type cmdError struct {
	msg string
	err error
}

func (e *cmdError) Error() string { return e.msg }
func (e *cmdError) Unwrap() error { return e.err }

func cmdErrorf(id, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &cmdError{msg: "abecs: " + id + ": " + strings.ReplaceAll(err.Error(), "abecs: ", ""), err: err}
}

// do runs one command: send until ACKed, then wait up to wait for the final
// response. A timeout while waiting aborts the command with CAN and returns an
// error wrapping onTimeout. A non-zero status becomes a *StatusError.
func (c *Client) do(ctx context.Context, cmd Command, wait time.Duration, onTimeout error) (Response, error) {
	if !c.busy.CompareAndSwap(false, true) {
		return Response{}, cmdErrorf(cmd.ID, "%w", ErrBusy)
	}
	defer c.busy.Store(false)

	data, err := cmd.Append(nil)
	if err != nil {
		return Response{}, err
	}
	frame, err := AppendFrame(nil, data)
	if err != nil {
		return Response{}, cmdErrorf(cmd.ID, "%w", err)
	}
	if err := ctx.Err(); err != nil {
		return Response{}, cmdErrorf(cmd.ID, "not sent: %w", err)
	}
	select {
	case <-c.closing:
		return Response{}, cmdErrorf(cmd.ID, "not sent: %w", ErrClosed)
	case <-c.readDone:
		return Response{}, cmdErrorf(cmd.ID, "not sent: %w: read: %w", ErrClosed, c.readErr)
	default:
	}
	c.drain()
	if err := c.send(ctx, cmd.ID, frame); err != nil {
		return Response{}, err
	}
	return c.await(ctx, cmd.ID, wait, onTimeout)
}

// drain discards events left over from an earlier command.
func (c *Client) drain() {
	for {
		select {
		case <-c.events:
		default:
			return
		}
	}
}

// next waits for an event, the timer, ctx or the end of the reader.
func (c *Client) next(ctx context.Context, timer <-chan time.Time) (ev Event, timedOut bool, err error) {
	select {
	case ev = <-c.events:
		return ev, false, nil
	default:
	}
	select {
	case ev = <-c.events:
		return ev, false, nil
	case <-timer:
		return Event{}, true, nil
	case <-ctx.Done():
		return Event{}, false, ctx.Err()
	case <-c.closing:
		return Event{}, false, ErrClosed
	case <-c.readDone:
		return Event{}, false, fmt.Errorf("%w: read: %w", ErrClosed, c.readErr)
	}
}

func (c *Client) write(b []byte) error {
	for len(b) > 0 {
		n, err := c.port.Write(b)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// send writes frame until the pad ACKs it, at most Retries times.
func (c *Client) send(ctx context.Context, id string, frame []byte) error {
	naks, silent := 0, 0
	for range c.opts.Retries {
		if err := c.write(frame); err != nil {
			return cmdErrorf(id, "%w: %w", ErrWrite, err)
		}
		timer := time.NewTimer(c.opts.ACKTimeout)
		acked, err := c.awaitACK(ctx, timer.C)
		timer.Stop()
		switch {
		case err != nil && ctx.Err() != nil:
			// The command may have arrived; make sure the pad drops it.
			c.abort()
			return cmdErrorf(id, "%w", err)
		case err != nil:
			return cmdErrorf(id, "%w", err)
		case acked == KindACK:
			return nil
		case acked == KindNAK:
			naks++
		default:
			silent++
		}
	}
	return cmdErrorf(id, "%w after %d tries (%d NAK, %d without answer in %v)",
		ErrNoACK, c.opts.Retries, naks, silent, c.opts.ACKTimeout)
}

// awaitACK returns KindACK, KindNAK, or 0 when the timer fires first.
func (c *Client) awaitACK(ctx context.Context, timer <-chan time.Time) (Kind, error) {
	for {
		ev, timedOut, err := c.next(ctx, timer)
		if err != nil {
			return 0, err
		}
		if timedOut {
			return 0, nil
		}
		if ev.Kind == KindACK || ev.Kind == KindNAK {
			return ev.Kind, nil
		}
		// A packet or EOT here is left over from an aborted command.
	}
}

// await waits for the response to id.
func (c *Client) await(ctx context.Context, id string, wait time.Duration, onTimeout error) (Response, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	bad := 0
	for {
		ev, timedOut, err := c.next(ctx, timer.C)
		if err != nil {
			if ctx.Err() != nil {
				c.abort()
			}
			return Response{}, cmdErrorf(id, "%w", err)
		}
		if timedOut {
			c.abort()
			return Response{}, cmdErrorf(id, "no answer after %v: %w", wait, onTimeout)
		}
		if ev.Kind != KindPacket {
			continue // a stray ACK, NAK or EOT
		}
		if ev.Err != nil {
			bad++
			if bad >= c.opts.Retries {
				return Response{}, cmdErrorf(id, "%w: %d bad packets, last: %w", ErrBadResponse, bad, ev.Err)
			}
			if err := c.write([]byte{NAK}); err != nil {
				return Response{}, cmdErrorf(id, "%w: %w", ErrWrite, err)
			}
			continue
		}
		resp, err := ParseResponse(ev.Data)
		if err != nil {
			return Response{}, cmdErrorf(id, "%w: %w", ErrBadResponse, err)
		}
		if resp.ID != id && resp.ID != CmdError {
			continue // the response to an earlier, aborted command
		}
		switch resp.Status {
		case StatusOK:
			return resp, nil
		case StatusNotify:
			continue
		}
		return resp, &StatusError{Cmd: id, Code: resp.Status}
	}
}

// abort sends CAN and waits up to AbortTimeout for the pad's EOT.
func (c *Client) abort() {
	if err := c.write([]byte{CAN}); err != nil {
		return
	}
	timer := time.NewTimer(c.opts.AbortTimeout)
	defer timer.Stop()
	for {
		ev, timedOut, err := c.next(context.Background(), timer.C)
		if err != nil || timedOut || ev.Kind == KindEOT {
			return
		}
	}
}
