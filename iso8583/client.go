package iso8583

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The two kinds of [Client.Send] failure. Every error Send returns wraps exactly one of them
// (test with errors.Is) and the cause. A decline is not an error: it is a response.
var (
	// ErrNotSent: nothing reached the wire (dial failed, pack failed, a required field is
	// missing, a request with the same key was in flight, the window stayed full, the write
	// failed before its first byte, the client is closed). Sending the request again is safe.
	ErrNotSent = errors.New("iso8583: request not sent")
	// ErrOutcomeUnknown: the request was, or may have been, written but no usable response
	// came (the context ended, the connection dropped or went dead, the response was
	// malformed). The host may have acted: the caller must reverse the request and never
	// resend it.
	ErrOutcomeUnknown = errors.New("iso8583: outcome unknown")
)

// Causes wrapped together with [ErrNotSent] or [ErrOutcomeUnknown].
var (
	// ErrClosed: the client was closed or is shutting down.
	ErrClosed = errors.New("iso8583: client closed")
	// ErrInFlight: a request with the same response MTI, STAN and terminal id is waiting
	// for its response; a second one could not be told apart from it.
	ErrInFlight = errors.New("iso8583: a request with the same MTI, STAN and terminal id is in flight")
	// ErrLinkDown: there is no connection and the next dial is not due before the
	// request's deadline (reconnect backoff).
	ErrLinkDown = errors.New("iso8583: link down")
	// ErrSignOnRefused: the host did not approve the sign-on after connecting.
	ErrSignOnRefused = errors.New("iso8583: sign-on refused")
	// ErrMalformedResponse: the host sent a frame meant for this request that could not be
	// read. With ErrOutcomeUnknown.
	ErrMalformedResponse = errors.New("iso8583: malformed response")
	// ErrDeadLink: nothing came from the host for ClientOptions.DeadLinkTimeout while a
	// request or an echo waited. With ErrOutcomeUnknown.
	ErrDeadLink = errors.New("iso8583: link dead: the host stopped answering")
	// ErrOutOfStep: the host sent a frame that cannot be read: its length header states
	// more than the dialect's largest message or the framer's maximum (or is no length at
	// all), or the bytes it announces did not all come within ClientOptions.FrameTimeout.
	// Nothing after it can be found on the stream, so the connection is dropped and
	// dialled again at once, with no backoff. With ErrOutcomeUnknown for the requests
	// written on it.
	ErrOutOfStep = errors.New("iso8583: link out of step: the host sent a frame that cannot be read")
)

// Defaults of [ClientOptions].
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultMaxInFlight    = 64
	DefaultNetworkTimeout = 10 * time.Second
	DefaultReconnectMin   = 500 * time.Millisecond
	DefaultReconnectMax   = 30 * time.Second
	DefaultFrameTimeout   = 30 * time.Second
)

// ClientOptions configure a [Client]. NewClient copies what it needs; the options may be
// reused. Hooks (Dial, Logf, LateResponse, NextSTAN, Now) are called from several
// goroutines at once and must be safe for concurrent use. ClientOptions is a plain value,
// safe for concurrent use if not modified.
type ClientOptions struct {
	// Addr is the acquirer host's host:port. Required.
	Addr string
	// Dialect supplies Spec and Framer when those are nil, and its message rules (the
	// "messages" object of its file: fixed values to add, fields that must or must not be
	// there) apply to every request the client sends, its own network management messages
	// included, even when Spec is set. Default: DefaultDialect(), which has no message rules.
	Dialect *Dialect
	// Spec is the dialect of requests and responses: requests built on another spec (the
	// builders use DefaultSpec) are converted ([Convert]). Default: Dialect's, else
	// the default dialect's.
	Spec *MessageSpec
	// Framer frames messages on the connection. Default: Dialect's, else
	// BinaryLengthFramer{} (2-byte big-endian length, DefaultMaxFrame).
	Framer Framer
	// TLS, when set, makes the link TLS over TCP. The server's certificate is verified
	// against TLS.RootCAs (default: the system roots) and the name in TLS.ServerName
	// (default: the host of Addr); InsecureSkipVerify is refused. A client certificate goes
	// in TLS.Certificates. Default: plain TCP.
	TLS *tls.Config
	// Dial opens the connection (before any TLS). Tests use it to put the client on a
	// net.Pipe. Default: a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds each dial and TLS handshake, within the context's own deadline.
	// Default: 5s.
	DialTimeout time.Duration
	// Logf receives one masked trace line per event (send, receive, late or duplicate
	// response, malformed frame, connection lost, reconnect, echo). Lines hold no full PAN,
	// track, PIN block or key. Default: discard.
	Logf func(format string, args ...any)
	// LateResponse receives each response that matches no waiting request: one that came
	// after its request gave up (timeout, malformed first answer), or one for a request
	// this client does not remember sending. The caller must reverse what it answers if it
	// approved. Duplicates of responses already delivered, and network management
	// responses, are not passed on (they are counted in Stats). It runs on the
	// connection's reader goroutine: it must return quickly and must not call Close.
	// Default: the response is logged only.
	LateResponse func(*Message)

	// MaxInFlight bounds the requests waiting for a response at once; Send waits for a
	// free slot until its context ends (then ErrNotSent). Default: 64.
	MaxInFlight int
	// TerminalID is field 41 of the client's own network management messages (sign-on,
	// echo, sign-off). Required when SignOn or EchoInterval is set.
	TerminalID string
	// NextSTAN returns a fresh STAN for the client's own network management messages: the
	// terminal's STAN counter (a STAN must not repeat within a day). Required when SignOn or
	// EchoInterval is set.
	NextSTAN func(ctx context.Context) (uint32, error)
	// Now is the clock of field 7 of those messages. Default: time.Now.
	Now func() time.Time
	// SignOn makes the client send an 0800 sign-on (70=001) on each new connection and use
	// the connection only when the host answers 00; Shutdown then sends a sign-off (002).
	// Default: false.
	SignOn bool
	// EchoInterval: after this long without a frame in either direction the client sends an
	// 0800 echo (70=301). Default: 0, no echo.
	EchoInterval time.Duration
	// DeadLinkTimeout: when a request or an echo has waited this long and nothing at all
	// has come from the host meanwhile, the connection is declared dead and closed (its
	// requests end with ErrOutcomeUnknown and ErrDeadLink) and the client reconnects.
	// Default: EchoInterval when echo is on, otherwise no dead-link detection (each
	// request still ends at its context's deadline).
	DeadLinkTimeout time.Duration
	// NetworkTimeout bounds each sign-on, echo and sign-off exchange. Default: 10s.
	NetworkTimeout time.Duration
	// FrameTimeout bounds how long the rest of a frame from the host may take once its
	// first byte has come. A frame slower than that (a length header followed by fewer
	// bytes than it states) leaves the stream out of step: the connection is dropped
	// ([ErrOutOfStep]), the requests written on it end with [ErrOutcomeUnknown], and the
	// client dials again at once. A frame whose length header states more than the
	// dialect's largest message is treated the same way as soon as the header is read.
	// Set it to the requests' response timeout. An idle link is not affected. Default: 30s.
	FrameTimeout time.Duration
	// MAC computes and checks the MACs of a dialect that declares them ([Dialect].MAC):
	// every request the dialect MACs is MACed under MACKeyID before it is sent, and its
	// response must carry a MAC that verifies, else Send fails with [ErrOutcomeUnknown]
	// and [ErrMACMissing] or [ErrMACInvalid]. An *hsm.Module serves; the key stays in its
	// backend. Required when the dialect declares a MAC; refused otherwise. Default nil.
	MAC MACer
	// MACKeyID is the key id passed to MAC. Default "" (the Module's own default, "mac").
	// [Client.SetMACKey] changes it (a working-key change).
	MACKeyID string
	// HostKeyChange is called, on a goroutine of its own, when the host sends an 0800
	// whose field 70 is one of the dialect's key-change codes ([Dialect].KeyExchange): the
	// host asks the terminal to change that working key now (the terminal then sends its
	// own key-change 0800s). The client answers the host's 0800 with 00 as it answers any
	// host 0800. Default nil: such an 0800 is only answered.
	HostKeyChange func(KeyKind)
	// SignedOn is called, on a goroutine of its own, each time a new connection is ready
	// for requests: after the host approved its sign-on (with SignOn), or once connected
	// (without). The terminal asks for new working keys there (acquirer.key_change
	// at_sign_on). Requests sent from it go over that connection. Default nil.
	SignedOn func(addr string)
	// ReconnectMin and ReconnectMax bound the wait before dialling again after a failed
	// dial: it starts at ReconnectMin and doubles per failure up to ReconnectMax, each wait
	// varied by ±20% (jitter). After a connection that worked drops, the client redials at
	// once, in the background. Defaults: 500ms and 30s.
	ReconnectMin, ReconnectMax time.Duration
}

// Stats are counters of a [Client] since it was made. A Stats is a plain value, safe for
// concurrent use if not modified.
type Stats struct {
	FramesIn     uint64 // frames read from the host
	FramesOut    uint64 // frames written
	Malformed    uint64 // frames from the host that could not be unpacked
	Late         uint64 // responses that came after their request gave up
	Unmatched    uint64 // responses for no request the client remembers
	Duplicates   uint64 // second copies of responses already delivered
	Connects     uint64 // connections established (signed on, when SignOn is set)
	Reconnects   uint64 // of those, the ones after the first
	DialFailures uint64 // dials, handshakes or sign-ons that failed
	Echoes       uint64 // echo requests sent
	DeadLinks    uint64 // connections closed as dead
	OutOfStep    uint64 // connections dropped for a frame that could not be read (ErrOutOfStep)
	BadMACs      uint64 // responses whose MAC was missing or did not verify
	InFlight     int    // requests waiting now
	Connected    bool   // whether a connection is up now
}

// Client is the link to one acquirer host: one TCP (or TLS) connection, many requests in
// flight, responses matched to requests by response MTI, STAN (field 11) and terminal id
// (field 41). It dials lazily, signs on when asked to, sends echoes when the link is idle,
// notices a dead link or a stream out of step (a frame that cannot be read: [ErrOutOfStep]),
// and after a connection that worked drops it reconnects in the background at once, then
// with exponential backoff and jitter while dials fail.
//
// A Client is safe for concurrent use.
type Client struct {
	addr         string
	spec         *MessageSpec
	framer       Framer
	readFramer   Framer        // framer, its maximum lowered to the dialect's largest message
	ownFrames    bool          // readFramer is this package's: each frame it reads is memory of its own
	messages     *messageRules // the dialect's message rules; nil: none
	mac          *MACSpec      // the dialect's MAC; nil: none
	macer        MACer
	keyx         *KeyExchange           // the dialect's key exchange; nil: none
	hostKeyX     func(KeyKind)          // ClientOptions.HostKeyChange
	signedOn     func(string)           // ClientOptions.SignedOn
	macKey       atomic.Pointer[string] // the MAC key id in use; SetMACKey switches it
	dialectName  string                 // names the dialect in errors
	tls          *tls.Config
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	dialTimeout  time.Duration
	logf         func(string, ...any)
	tracing      bool // Logf was given: per-request lines are worth formatting
	late         func(*Message)
	terminalID   string
	nextSTAN     func(context.Context) (uint32, error)
	now          func() time.Time
	signOn       bool
	echoInterval time.Duration
	deadTimeout  time.Duration
	netTimeout   time.Duration
	frameTimeout time.Duration
	backoffMin   time.Duration
	backoffMax   time.Duration

	epoch   time.Time     // base of the link's monotonic activity clocks
	frames  sync.Pool     // *[]byte: memory for frames being written and requests being packed
	window  chan struct{} // one token per request in flight
	dialSem chan struct{} // one dial at a time; a channel so that waiting honours ctx
	life    context.Context
	stop    context.CancelFunc
	bg      sync.WaitGroup // readers, keepalives, the redialer

	mu        sync.Mutex
	conn      *link // the current connection, nil when there is none
	dialing   *link // a connection being signed on, not yet current
	pending   map[matchKey]pending
	recent    recentSet
	closed    bool
	draining  bool
	drained   chan struct{} // closed when draining and no user request is in flight
	users     int           // Send calls between registration and return
	everUp    bool
	redialing bool
	failures  int
	nextDial  time.Time
	// lastDialErr: why the last dial (or sign-on) failed; nil after one succeeds.
	lastDialErr error

	state linkState // what LinkStatus reports

	stats struct {
		framesIn, framesOut, malformed, late, unmatched, duplicates atomic.Uint64
		connects, reconnects, dialFailures, echoes, deadLinks       atomic.Uint64
		outOfStep, badMACs                                          atomic.Uint64
	}
}

// NewClient checks opts and returns a client. It does not dial: [Client.Connect] does, and
// [Client.Send] dials when there is no connection. Invalid options are errors naming the
// option.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("iso8583: client: Addr is required")
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("iso8583: client: Addr must be host:port: %w", err)
	}
	c := &Client{
		addr:         opts.Addr,
		spec:         opts.Spec,
		framer:       opts.Framer,
		dial:         opts.Dial,
		dialTimeout:  opts.DialTimeout,
		logf:         opts.Logf,
		late:         opts.LateResponse,
		terminalID:   opts.TerminalID,
		nextSTAN:     opts.NextSTAN,
		now:          opts.Now,
		signOn:       opts.SignOn,
		echoInterval: opts.EchoInterval,
		deadTimeout:  opts.DeadLinkTimeout,
		netTimeout:   opts.NetworkTimeout,
		frameTimeout: opts.FrameTimeout,
		backoffMin:   opts.ReconnectMin,
		backoffMax:   opts.ReconnectMax,
		dialSem:      make(chan struct{}, 1),
		pending:      make(map[matchKey]pending),
		epoch:        time.Now(),
	}
	d := opts.Dialect
	if d == nil {
		d = DefaultDialect()
	}
	if c.spec == nil {
		c.spec = d.Spec
	}
	if c.framer == nil {
		c.framer = d.Framer
	}
	c.messages, c.dialectName = d.messages, d.displayName()
	c.mac, c.macer = d.MAC, opts.MAC
	c.keyx, c.hostKeyX, c.signedOn = d.KeyExchange, opts.HostKeyChange, opts.SignedOn
	c.macKey.Store(&opts.MACKeyID)
	switch {
	case c.mac != nil && c.macer == nil:
		return nil, fmt.Errorf("iso8583: client: dialect %s MACs its messages (%v): MAC is required", c.dialectName, c.mac)
	case c.mac == nil && c.macer != nil:
		return nil, fmt.Errorf("iso8583: client: MAC is set but dialect %s declares no MAC", c.dialectName)
	}
	if c.spec == nil {
		c.spec = defaultSpec()
	}
	if c.framer == nil {
		c.framer = BinaryLengthFramer{}
	}
	if err := c.spec.Validate(); err != nil {
		return nil, fmt.Errorf("iso8583: client: invalid spec: %w", err)
	}
	if opts.TLS != nil {
		if opts.TLS.InsecureSkipVerify {
			return nil, errors.New("iso8583: client: TLS.InsecureSkipVerify is refused: the acquirer's certificate must be verified")
		}
		c.tls = opts.TLS.Clone()
		if c.tls.ServerName == "" {
			c.tls.ServerName = host
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DialTimeout", opts.DialTimeout}, {"EchoInterval", opts.EchoInterval}, {"DeadLinkTimeout", opts.DeadLinkTimeout},
		{"NetworkTimeout", opts.NetworkTimeout}, {"FrameTimeout", opts.FrameTimeout}, {"ReconnectMin", opts.ReconnectMin}, {"ReconnectMax", opts.ReconnectMax}} {
		if d.v < 0 {
			return nil, fmt.Errorf("iso8583: client: %s must not be negative", d.name)
		}
	}
	if opts.MaxInFlight < 0 {
		return nil, errors.New("iso8583: client: MaxInFlight must not be negative")
	}
	if (opts.SignOn || opts.EchoInterval > 0) && (opts.NextSTAN == nil || opts.TerminalID == "") {
		return nil, errors.New("iso8583: client: SignOn and EchoInterval need TerminalID and NextSTAN")
	}
	if c.dialTimeout == 0 {
		c.dialTimeout = DefaultDialTimeout
	}
	if c.dial == nil {
		nd := &net.Dialer{Timeout: c.dialTimeout}
		c.dial = nd.DialContext
	}
	c.tracing = c.logf != nil
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.state.now = time.Now // the report's times are wall-clock times, whatever field 7's clock
	if c.deadTimeout == 0 {
		c.deadTimeout = c.echoInterval
	}
	if c.netTimeout == 0 {
		c.netTimeout = DefaultNetworkTimeout
	}
	if c.frameTimeout == 0 {
		c.frameTimeout = DefaultFrameTimeout
	}
	c.readFramer = limitFramer(c.framer, c.spec)
	switch c.readFramer.(type) {
	case BinaryLengthFramer, LengthFramer:
		c.ownFrames = true
	}
	if c.backoffMin == 0 {
		c.backoffMin = DefaultReconnectMin
	}
	if c.backoffMax == 0 {
		c.backoffMax = max(DefaultReconnectMax, c.backoffMin)
	}
	if c.backoffMax < c.backoffMin {
		return nil, errors.New("iso8583: client: ReconnectMax must not be below ReconnectMin")
	}
	n := opts.MaxInFlight
	if n == 0 {
		n = DefaultMaxInFlight
	}
	c.window = make(chan struct{}, n)
	c.life, c.stop = context.WithCancel(context.Background())
	return c, nil
}

// mono returns the client's monotonic clock in nanoseconds.
func (c *Client) mono() int64 { return int64(time.Since(c.epoch)) }

// Send writes req and waits for its response, until ctx ends. The request must carry
// field 11, an MTI that is a request or an advice (see [ResponseMTI]) and the fields
// [CheckMandatory] requires; field 41 takes part in matching when present. A request built
// on another spec than the client's is converted ([Convert]); then the fixed values of the
// client's dialect are added and its message rules checked ([Dialect.PrepareRequest]) on a
// copy, req itself staying unchanged. A request that fails any of these checks is refused
// with [ErrNotSent] and a [*FieldError] naming the field.
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
	if err := CheckMandatory(req); err != nil {
		if _, perr := Pack(req); perr != nil {
			err = perr // a field that does not fit is the first thing to fix
		}
		return nil, notSent(err)
	}
	wire, err := c.prepare(req)
	if err != nil {
		return nil, notSent(err)
	}
	var b []byte
	if c.mac == nil {
		// Packed into memory of the client's pool: write frames a copy of it, so that it
		// is free again when the exchange ends.
		bp := c.frameBuf()
		b, err = AppendPack((*bp)[:0], wire)
		defer func() {
			*bp = b[:0]
			c.frames.Put(bp)
		}()
	} else {
		b, err = c.pack(ctx, wire)
	}
	if err != nil {
		return nil, notSent(err)
	}

	select {
	case c.window <- struct{}{}:
	default:
		select {
		case c.window <- struct{}{}:
		case <-ctx.Done():
			return nil, notSent(fmt.Errorf("waiting for a free slot (%d requests in flight): %w", cap(c.window), ctx.Err()))
		case <-c.life.Done():
			return nil, notSent(ErrClosed)
		}
	}
	defer func() { <-c.window }()

	p, err := c.register(key, true)
	if err != nil {
		return nil, notSent(err)
	}
	defer c.userDone()
	if c.tracing {
		c.logf("iso8583: send %s", Masked{wire})
	}
	return c.exchange(ctx, nil, key, p, b)
}

// prepare returns req as it goes on the wire: converted to the client's spec, with the
// dialect's fixed values added and its message rules checked. This is the last step before
// packing: the MAC (field 64 or 128, [Client.pack]) is computed over the packed message
// after it, so that it covers the fixed values. Dialects cannot set fields 64 and 128.
func (c *Client) prepare(req *Message) (*Message, error) {
	wire, err := Convert(req, c.spec)
	if err != nil {
		return nil, err
	}
	return c.messages.prepare(wire, c.dialectName)
}

// register adds a pending entry for key.
func (c *Client) register(key matchKey, user bool) (pending, error) {
	p := make(pending, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed || user && c.draining:
		return nil, ErrClosed
	case c.pending[key] != nil:
		return nil, fmt.Errorf("%w: %s", ErrInFlight, key)
	}
	c.pending[key] = p
	if user {
		c.users++
	}
	return p, nil
}

func (c *Client) userDone() {
	c.mu.Lock()
	c.users--
	if c.users == 0 && c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	c.mu.Unlock()
}

// exchange writes b (a registered request) on l, or on the current connection when l is
// nil, and waits for its response.
func (c *Client) exchange(ctx context.Context, l *link, key matchKey, p pending, b []byte) (*Message, error) {
	fixed := l != nil
	for attempt := 1; ; attempt++ {
		var err error
		if !fixed {
			if l, err = c.connect(ctx); err != nil {
				c.forget(key, p, false)
				return nil, notSent(err)
			}
		}
		n, err := c.write(ctx, l, b)
		if err == nil {
			break
		}
		if n < 0 { // the context ended while the frame was going out with others'
			c.forget(key, p, true)
			return nil, unknown(err)
		}
		if n > 0 {
			c.forget(key, p, false)
			c.drop(l, err) // a partial frame leaves the stream out of step
			return nil, unknown(err)
		}
		if ctx.Err() == nil {
			c.drop(l, err) // the connection is broken; dial again
		}
		if fixed || attempt == 2 || ctx.Err() != nil {
			c.forget(key, p, false)
			return nil, notSent(err)
		}
		// Nothing was written: the connection had died under this request. One more try
		// on a new connection is safe.
	}

	c.beginWait(l)
	defer c.endWait(l)
	select {
	case r := <-p:
		return c.received(ctx, r)
	case <-ctx.Done():
		if c.forget(key, p, true) {
			c.logf("iso8583: no response for %s: %v", key, ctx.Err())
			return nil, unknown(ctx.Err())
		}
	case <-l.done:
		if c.forget(key, p, true) {
			return nil, unknown(l.err)
		}
	}
	// The reader took the entry to deliver while this request gave up: the result is in
	// the channel now or in a moment.
	return c.received(ctx, <-p)
}

func notSent(err error) error { return fmt.Errorf("%w: %w", ErrNotSent, err) }
func unknown(err error) error { return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err) }

// forget removes p's registration and reports whether it was still registered (false: the
// reader has taken it to deliver a result). A request given up after it was written is
// remembered, so that its response is recognized as late.
func (c *Client) forget(key matchKey, p pending, written bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[key] != p {
		return false
	}
	delete(c.pending, key)
	if written {
		c.recent.put(key, false)
	}
	return true
}

// beginWait counts a request waiting on l. The first one to wait starts the dead-link
// clock; the keepalive goroutine is woken only when it sleeps past that clock's end (with
// echo on it usually wakes sooner for the echo), so that a request costs no wake-up.
func (c *Client) beginWait(l *link) {
	if l.waiting.Add(1) == 1 {
		now := c.mono()
		l.waitSince.Store(now)
		if l.wakeAt.Load() > now+int64(c.deadTimeout) {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (c *Client) endWait(l *link) { l.waiting.Add(-1) }

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	inFlight := len(c.pending)
	connected := c.conn != nil
	c.mu.Unlock()
	return Stats{
		FramesIn:     c.stats.framesIn.Load(),
		FramesOut:    c.stats.framesOut.Load(),
		Malformed:    c.stats.malformed.Load(),
		Late:         c.stats.late.Load(),
		Unmatched:    c.stats.unmatched.Load(),
		Duplicates:   c.stats.duplicates.Load(),
		Connects:     c.stats.connects.Load(),
		Reconnects:   c.stats.reconnects.Load(),
		DialFailures: c.stats.dialFailures.Load(),
		Echoes:       c.stats.echoes.Load(),
		DeadLinks:    c.stats.deadLinks.Load(),
		OutOfStep:    c.stats.outOfStep.Load(),
		BadMACs:      c.stats.badMACs.Load(),
		InFlight:     inFlight,
		Connected:    connected,
	}
}

// Shutdown stops the client gracefully: new requests fail with [ErrNotSent] and
// [ErrClosed] at once; requests in flight may finish until ctx ends; with SignOn the client
// then signs off (best effort); finally it closes like [Client.Close], and requests still
// waiting end with [ErrOutcomeUnknown]. It returns ctx's error if requests were still in
// flight when ctx ended, else nil.
func (c *Client) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.draining = true
	var wait chan struct{}
	if c.users > 0 {
		if c.drained == nil {
			c.drained = make(chan struct{})
		}
		wait = c.drained
	}
	l := c.conn
	c.mu.Unlock()
	var err error
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil && c.signOn && l != nil {
		sctx, cancel := context.WithTimeout(ctx, c.netTimeout)
		if _, serr := c.network(sctx, l, NMSignOff); serr != nil {
			c.logf("iso8583: sign-off: %v", serr)
		}
		cancel()
	}
	c.Close()
	return err
}

// Close closes the connection and makes every later Send fail with [ErrNotSent]. Requests
// waiting for a response fail with [ErrOutcomeUnknown]. Close waits for the client's
// goroutines to return; it must not be called from LateResponse.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	l, d := c.conn, c.dialing
	c.conn = nil
	c.mu.Unlock()
	c.state.down(ErrClosed)
	c.stop()
	for _, l := range []*link{l, d} {
		if l != nil {
			l.fail(ErrClosed)
		}
	}
	c.bg.Wait()
	return nil
}
