package iso8583

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// The two kinds of [Client.Send] failure. Every error Send returns wraps exactly one of them
// (test with errors.Is) and the cause. A decline is not an error: it is a response.
var (
	// ErrNotSent: nothing reached the wire (dial failed, pack failed, a request with the
	// same key was in flight, the write failed before its first byte, the client is
	// closed). Sending the request again is safe.
	ErrNotSent = errors.New("iso8583: request not sent")
	// ErrOutcomeUnknown: the request was, or may have been, written but no matching
	// response came (the context ended, the connection dropped). The host may have acted:
	// the caller must reverse the request and never resend it.
	ErrOutcomeUnknown = errors.New("iso8583: outcome unknown")
)

// Causes wrapped together with [ErrNotSent].
var (
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("iso8583: client closed")
	// ErrInFlight: a request with the same response MTI, STAN and terminal id is waiting
	// for its response; a second one could not be told apart from it.
	ErrInFlight = errors.New("iso8583: a request with the same MTI, STAN and terminal id is in flight")
)

// DefaultDialTimeout is the dial timeout of a [Client] whose options leave it zero.
const DefaultDialTimeout = 5 * time.Second

// ClientOptions configure a [Client]. NewClient copies what it needs; the options may be
// reused.
type ClientOptions struct {
	// Addr is the acquirer host's host:port. Required.
	Addr string
	// Spec is the dialect of requests and responses. Default: DefaultSpec().
	Spec *MessageSpec
	// Framer frames messages on the connection. Default: BinaryLengthFramer{} (2-byte
	// big-endian length, DefaultMaxFrame).
	Framer Framer
	// DialTimeout bounds each dial, within the context's own deadline. Default: 5s.
	DialTimeout time.Duration
	// Logf receives one masked trace line per event (send, receive, unmatched response,
	// dropped frame, connection lost). Lines hold no full PAN, track, PIN block or key.
	// It is called from several goroutines at once. Default: discard.
	Logf func(format string, args ...any)
	// LateResponse receives each response that matches no pending request: one that came
	// after its request's context ended, or that the client never asked for. The caller
	// must reverse what it answers if it approved. It runs on the connection's reader
	// goroutine: it must return quickly and must not call Close. Default: the response is
	// logged only.
	LateResponse func(*Message)
}

// Client is the link to one acquirer host: one TCP connection, many requests in flight,
// responses matched to requests by response MTI, STAN (field 11) and terminal id
// (field 41). It dials lazily and again after the connection drops.
//
// A Client is safe for concurrent use.
type Client struct {
	addr        string
	spec        *MessageSpec
	framer      Framer
	dialTimeout time.Duration
	logf        func(string, ...any)
	late        func(*Message)

	dialSem chan struct{} // one dial at a time; a channel so that waiting honours ctx

	mu      sync.Mutex
	conn    *link // the current connection, nil when there is none
	pending map[matchKey]*pending
	closed  bool
}

// matchKey identifies the response a request waits for.
type matchKey struct {
	mti  string // the response MTI
	stan string // field 11 as sent
	tid  string // field 41 without its space padding
}

func (k matchKey) String() string { return k.mti + " stan=" + k.stan + " tid=" + k.tid }

type pending struct {
	ch chan *Message // buffered: the reader never blocks on it
}

// link is one TCP connection with its reader goroutine.
type link struct {
	nc         net.Conn
	wsem       chan struct{} // one writer at a time
	done       chan struct{} // closed once the link has failed or been closed
	readerDone chan struct{} // closed when the reader goroutine has returned
	once       sync.Once
	err        error // why the link ended; written before done is closed
}

func (l *link) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
		l.nc.Close()
	})
}

// NewClient checks opts and returns a client. It does not dial: [Client.Connect] does, and
// [Client.Send] dials when there is no connection.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("iso8583: client: Addr is required")
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("iso8583: client: Addr must be host:port: %w", err)
	}
	c := &Client{
		addr:        opts.Addr,
		spec:        opts.Spec,
		framer:      opts.Framer,
		dialTimeout: opts.DialTimeout,
		logf:        opts.Logf,
		late:        opts.LateResponse,
		dialSem:     make(chan struct{}, 1),
		pending:     make(map[matchKey]*pending),
	}
	if c.spec == nil {
		c.spec = DefaultSpec()
	}
	if err := c.spec.Validate(); err != nil {
		return nil, fmt.Errorf("iso8583: client: invalid spec: %w", err)
	}
	if c.framer == nil {
		c.framer = BinaryLengthFramer{}
	}
	if c.dialTimeout <= 0 {
		c.dialTimeout = DefaultDialTimeout
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	return c, nil
}

// Connect dials the host unless the client is already connected.
func (c *Client) Connect(ctx context.Context) error {
	_, err := c.connect(ctx)
	return err
}

func (c *Client) connect(ctx context.Context) (*link, error) {
	if l, err := c.current(); l != nil || err != nil {
		return l, err
	}
	select {
	case c.dialSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("iso8583: connect %s: %w", c.addr, ctx.Err())
	}
	defer func() { <-c.dialSem }()
	if l, err := c.current(); l != nil || err != nil {
		return l, err // another caller dialled while this one waited
	}

	d := net.Dialer{Timeout: c.dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		c.logf("iso8583: dial %s failed: %v", c.addr, err)
		return nil, fmt.Errorf("iso8583: connect: %w", err)
	}
	l := &link{
		nc:         nc,
		wsem:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return nil, ErrClosed
	}
	c.conn = l
	c.mu.Unlock()
	c.logf("iso8583: connected to %s from %s", c.addr, nc.LocalAddr())
	go c.readLoop(l)
	return l, nil
}

// current returns the live connection, or ErrClosed, or neither.
func (c *Client) current() (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.conn, nil
}

// Send writes req and waits for its response, until ctx ends. The request must carry
// field 11 and an MTI that is a request or an advice (see [ResponseMTI]); field 41 takes
// part in matching when present.
//
// Every error wraps exactly one of [ErrNotSent] (safe to retry) and [ErrOutcomeUnknown]
// (reverse; never resend). A response that arrives after ctx ended goes to
// ClientOptions.LateResponse.
func (c *Client) Send(ctx context.Context, req *Message) (*Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, notSent(err)
	}
	key, err := requestKey(req)
	if err != nil {
		return nil, notSent(err)
	}
	b, err := Pack(req)
	if err != nil {
		return nil, notSent(err)
	}

	p := &pending{ch: make(chan *Message, 1)}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, notSent(ErrClosed)
	case c.pending[key] != nil:
		c.mu.Unlock()
		return nil, notSent(fmt.Errorf("%w: %s", ErrInFlight, key))
	}
	c.pending[key] = p
	c.mu.Unlock()

	c.logf("iso8583: send %s", Summary(req))
	var l *link
	for attempt := 1; ; attempt++ {
		if l, err = c.connect(ctx); err != nil {
			c.forget(key, p)
			return nil, notSent(err)
		}
		n, err := c.write(ctx, l, b)
		if err == nil {
			break
		}
		if n > 0 {
			c.forget(key, p)
			c.drop(l, err) // a partial frame leaves the stream out of step
			return nil, unknown(err)
		}
		if ctx.Err() == nil {
			c.drop(l, err) // the connection is broken; dial again
		}
		if attempt == 2 || ctx.Err() != nil {
			c.forget(key, p)
			return nil, notSent(err)
		}
		// Nothing was written: the connection had died under this request. One more try
		// on a new connection is safe.
	}

	select {
	case resp := <-p.ch:
		return resp, nil
	case <-ctx.Done():
		if c.forget(key, p) {
			c.logf("iso8583: no response for %s: %v", key, ctx.Err())
			return nil, unknown(ctx.Err())
		}
	case <-l.done:
		if c.forget(key, p) {
			return nil, unknown(l.err)
		}
	}
	// The reader matched the response while this request gave up: it is in the channel
	// now or in a moment.
	return <-p.ch, nil
}

func notSent(err error) error { return fmt.Errorf("%w: %w", ErrNotSent, err) }
func unknown(err error) error { return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err) }

// forget removes p's registration and reports whether it was still registered (false: the
// reader has taken it to deliver a response).
func (c *Client) forget(key matchKey, p *pending) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[key] != p {
		return false
	}
	delete(c.pending, key)
	return true
}

// write writes one frame on l, at most until ctx ends, and returns how many bytes reached
// the connection.
func (c *Client) write(ctx context.Context, l *link, b []byte) (int, error) {
	select {
	case l.wsem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-l.done:
		return 0, l.err
	}
	defer func() { <-l.wsem }()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	select {
	case <-l.done:
		return 0, l.err
	default:
	}

	deadline, _ := ctx.Deadline() // the zero time (no deadline) when ctx has none
	if err := l.nc.SetWriteDeadline(deadline); err != nil {
		return 0, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		l.nc.SetWriteDeadline(time.Unix(1, 0)) // unblock a write stuck on a full buffer
		close(fired)
	})
	cw := &countingWriter{w: l.nc}
	err := c.framer.WriteFrame(cw, b)
	if !stop() {
		<-fired // let it finish before the next writer sets its own deadline
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int
}

func (cw *countingWriter) Write(b []byte) (int, error) {
	n, err := cw.w.Write(b)
	cw.n += n
	return n, err
}

// drop detaches l from the client, so that no new request uses it, and then ends it.
func (c *Client) drop(l *link, err error) {
	c.mu.Lock()
	if c.conn == l {
		c.conn = nil
	}
	c.mu.Unlock()
	l.fail(err)
}

func (c *Client) readLoop(l *link) {
	defer close(l.readerDone)
	for {
		b, err := c.framer.ReadFrame(l.nc)
		if err != nil {
			select {
			case <-l.done: // closed on purpose
			default:
				c.logf("iso8583: connection to %s lost: %v", c.addr, err)
			}
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("iso8583: host closed the connection: %w", err)
			}
			c.drop(l, err)
			return
		}
		if len(b) == 0 {
			continue
		}
		msg, err := Unpack(c.spec, b)
		if err != nil {
			c.logf("iso8583: dropped an unreadable frame of %d bytes: %v", len(b), err)
			continue
		}
		c.deliver(msg)
	}
}

func (c *Client) deliver(msg *Message) {
	mti, _ := msg.GetMTI()
	if _, err := ResponseMTI(mti); err == nil {
		c.logf("iso8583: ignored a request from the host: %s", Summary(msg))
		return
	}
	stan, _ := msg.GetString(11)
	tid, _ := msg.GetString(41)
	key := matchKey{mti: mti, stan: stan, tid: strings.TrimRight(tid, " ")}
	c.mu.Lock()
	p := c.pending[key]
	if p != nil {
		delete(c.pending, key)
	}
	c.mu.Unlock()
	if p != nil {
		c.logf("iso8583: recv %s", Summary(msg))
		p.ch <- msg
		return
	}
	c.logf("iso8583: late or unmatched response: %s", Summary(msg))
	if c.late != nil {
		c.late(msg)
	}
}

// requestKey returns the key of the response req waits for.
func requestKey(req *Message) (matchKey, error) {
	if req == nil {
		return matchKey{}, errors.New("iso8583: nil request")
	}
	mti, err := req.GetMTI()
	if err != nil {
		return matchKey{}, &FieldError{Field: 0, Op: "pack", Err: err}
	}
	resp, err := ResponseMTI(mti)
	if err != nil {
		return matchKey{}, &FieldError{Field: 0, Op: "pack", Err: err}
	}
	stan, err := req.GetString(11)
	if err != nil || stan == "" {
		return matchKey{}, &FieldError{Field: 11, Op: "pack", Err: fmt.Errorf("%w: needed to match the response", ErrMissingField)}
	}
	tid, err := req.GetString(41)
	if err != nil {
		return matchKey{}, &FieldError{Field: 41, Op: "pack", Err: err}
	}
	return matchKey{mti: resp, stan: stan, tid: strings.TrimRight(tid, " ")}, nil
}

// Close closes the connection and makes every later Send fail with [ErrNotSent]. Requests
// waiting for a response fail with [ErrOutcomeUnknown]. Close waits for the reader
// goroutine to return.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	l := c.conn
	c.conn = nil
	c.mu.Unlock()
	if l != nil {
		l.fail(ErrClosed)
		<-l.readerDone
	}
	return nil
}
