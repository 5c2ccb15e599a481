package iso8583

// Backup hosts: the primary acquirer host and its backups, each behind a Client of its own,
// and the rules for moving between them.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Where a dialect sends reversals when the terminal has backup hosts: its file's
// "reversal_to".
const (
	// ReversalToOrigin: a reversal goes to the host that got the request it undoes (that
	// host may hold the request; another may never have seen it). The default.
	ReversalToOrigin = "origin"
	// ReversalToAny: the network passes reversals between its hosts, so a reversal goes
	// to the host that is active when it is sent.
	ReversalToAny = "any"
)

// DefaultPrimaryRetry is FailoverOptions.PrimaryRetry's default.
const DefaultPrimaryRetry = 5 * time.Minute

// ErrUnknownHost: [Failover.SendTo] was given an address that is not one of the hosts.
// With [ErrNotSent].
var ErrUnknownHost = errors.New("iso8583: not one of the configured acquirer hosts")

// FailoverOptions configure a [Failover]. NewFailover copies what it needs. A plain value,
// safe for concurrent use if not modified.
type FailoverOptions struct {
	// Addrs are the hosts' host:port: the primary first, then the backups in the order
	// they are tried. Required, at least one, no address twice.
	Addrs []string
	// Client configures the link to every host (dialect, TLS, sign-on, echo, timeouts);
	// its Addr is ignored: each host's comes from Addrs. With TLS, the name verified is
	// TLS.ServerName when set, else each host's own.
	Client ClientOptions
	// PrimaryRetry: once the terminal has moved away from the primary, the primary is
	// tried again this long after, between transactions, and again every PrimaryRetry
	// while it does not answer. Default 5m.
	PrimaryRetry time.Duration
	// Now is the clock of PrimaryRetry. Default time.Now.
	Now func() time.Time
	// OnSwitch is told of every move from one host to another, after it is made. It must
	// return quickly. Default: the move is written to Client.Logf.
	OnSwitch func(Switch)
	// IdleClose: a host other than the active one that no message has gone to for this
	// long is let go: its connection is closed (signed off, with SignOn), so its echoes
	// stop, and a dead host's client stops redialling in the background. It is dialled
	// again when a message goes to it or the terminal moves to it. A host kept for a
	// message that could not be sent to it (it waits for the sender's retry) is let go
	// only while it is not connected. Measured on Now. Default 2m.
	IdleClose time.Duration
}

// DefaultIdleClose is FailoverOptions.IdleClose's default.
const DefaultIdleClose = 2 * time.Minute

// Switch describes one move of a [Failover] from one host to another. A plain value, safe
// for concurrent use if not modified.
type Switch struct {
	From, To string // host:port
	Reason   string // why, for a log line
}

// Failover is the link to an acquirer with backup hosts: one [Client] per host, each with
// its own connection, sign-on and echo, and one active host that new transactions go to.
//
// Its rules:
//   - it moves only between transactions ([Failover.NextHost]): a request written to a
//     host is never sent to another; its outcome is unknown and its reversal goes where
//     [Failover.RouteTo] says;
//   - it moves on when the active host's last dial (or sign-on) failed, or when its link
//     was declared dead ([ErrDeadLink]) since it became active: to the next address in
//     order that connects;
//   - once away from the primary, it tries the primary again after PrimaryRetry and
//     moves back when the primary connects;
//   - a reversal, and the repeat of an advice, goes to the host that got the original,
//     unless the dialect says "reversal_to": "any";
//   - a host other than the active one that nothing has gone to for IdleClose is let go:
//     its connection closes (no more echoes) and its client stops redialling, until a
//     message goes to it or the terminal moves to it.
//
// A Failover with one address behaves as that address's Client.
//
// A Failover is safe for concurrent use.
type Failover struct {
	addrs    []string
	opts     []ClientOptions // each host's, to make its client again after it was let go
	retry    time.Duration
	idle     time.Duration
	now      func() time.Time
	onSwitch func(Switch)
	anyRev   bool
	connWait time.Duration // bounds a dial and sign-on made to choose a host

	choose sync.Mutex // one choice of host at a time; held while dialling to choose

	mu sync.Mutex
	// hosts are the hosts' clients, one per address; a host's is replaced when it is let
	// go (IdleClose): read them under mu (client, clients).
	hosts  []*Client
	state  []*hostState // one per address
	active int
	macKey *string   // the MAC key id SetMACKey gave every host; nil: the options' own
	left   time.Time // when to try the primary again; zero while on the primary
	dead   uint64    // the active host's Stats.DeadLinks when it became active

	stop     chan struct{} // closed by Close and Shutdown: ends the idle sweeper
	stopOnce sync.Once
	swept    sync.WaitGroup
}

// NewFailover checks opts and returns the link to its hosts. It does not dial.
func NewFailover(opts FailoverOptions) (*Failover, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("iso8583: failover: Addrs needs at least one host:port")
	}
	if opts.PrimaryRetry < 0 {
		return nil, errors.New("iso8583: failover: PrimaryRetry must not be negative")
	}
	if opts.IdleClose < 0 {
		return nil, errors.New("iso8583: failover: IdleClose must not be negative")
	}
	f := &Failover{
		addrs: make([]string, len(opts.Addrs)), retry: opts.PrimaryRetry, now: opts.Now,
		onSwitch: opts.OnSwitch, idle: opts.IdleClose, stop: make(chan struct{}),
	}
	if f.retry == 0 {
		f.retry = DefaultPrimaryRetry
	}
	if f.idle == 0 {
		f.idle = DefaultIdleClose
	}
	if f.now == nil {
		f.now = time.Now
	}
	if d := opts.Client.Dialect; d != nil {
		f.anyRev = d.ReversalTo == ReversalToAny
	}
	seen := make(map[string]bool)
	for i, a := range opts.Addrs {
		if seen[a] {
			return nil, fmt.Errorf("iso8583: failover: Addrs: %q is given twice", a)
		}
		seen[a] = true
		f.addrs[i] = a
		co := opts.Client
		co.Addr = a // with TLS, NewClient verifies each host under its own name unless ServerName is set
		c, err := NewClient(co)
		if err != nil {
			for _, h := range f.hosts {
				h.Close()
			}
			return nil, fmt.Errorf("iso8583: failover: host %d (%s): %w", i+1, a, err)
		}
		f.opts = append(f.opts, co)
		f.hosts = append(f.hosts, c)
		f.state = append(f.state, &hostState{})
	}
	first := f.hosts[0]
	f.connWait = first.dialTimeout
	if first.signOn {
		f.connWait += first.netTimeout
	}
	if f.onSwitch == nil {
		logf := first.logf
		f.onSwitch = func(s Switch) {
			logf("iso8583: acquirer host switched from %s to %s: %s", s.From, s.To, s.Reason)
		}
	}
	if len(f.hosts) > 1 {
		f.swept.Add(1)
		go f.sweep()
	}
	return f, nil
}

// ActiveAddr returns the host:port new transactions go to now.
func (f *Failover) ActiveAddr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs[f.active]
}

// Addrs returns the hosts' addresses, primary first.
func (f *Failover) Addrs() []string { return append([]string(nil), f.addrs...) }

// Host returns the client of the host at addr now, or nil when addr is not one of the
// hosts. A host that is let go for idleness (IdleClose) gets a new client: use the one
// returned at once rather than keep it.
func (f *Failover) Host(addr string) *Client {
	if i := f.index(addr); i >= 0 {
		f.mu.Lock()
		defer f.mu.Unlock()
		h := f.state[i]
		h.used, h.last = true, f.now()
		return f.hosts[i]
	}
	return nil
}

func (f *Failover) index(addr string) int {
	for i, a := range f.addrs {
		if a == addr {
			return i
		}
	}
	return -1
}

// NextHost chooses the host of the next transaction and returns its address. This is the
// only place the active host changes: call it between transactions, then send the
// transaction with [Failover.SendTo] to the address it returned. It moves on from an
// active host whose last dial failed or whose link was declared dead, and back to the
// primary when PrimaryRetry has passed and the primary connects. Choosing may dial (each
// dial bounded by the dial timeout and sign-on), within ctx.
func (f *Failover) NextHost(ctx context.Context) string {
	if len(f.hosts) == 1 {
		return f.addrs[0]
	}
	f.choose.Lock()
	defer f.choose.Unlock()
	f.mu.Lock()
	cur, left, dead := f.active, f.left, f.dead
	f.mu.Unlock()

	if cur != 0 && !f.now().Before(left) {
		if err := f.tryHost(ctx, 0); err == nil {
			f.moveTo(cur, 0, fmt.Sprintf("primary_retry (%v) has passed and the primary answers", f.retry))
			return f.addrs[0]
		} else if ctx.Err() == nil {
			f.mu.Lock()
			f.left = f.now().Add(f.retry)
			f.mu.Unlock()
			f.client(0).logf("iso8583: the primary %s still does not answer (%v); trying it again in %v", f.addrs[0], err, f.retry)
		}
	}
	cc := f.client(cur)
	why := cc.unusable(dead)
	if why == "" && !cc.connected() {
		// Its connection dropped (or was never made): dial it now, between transactions,
		// rather than let the transaction find out.
		if err := f.tryHost(ctx, cur); err != nil && ctx.Err() == nil {
			why = fmt.Sprintf("%s does not answer: %v", f.addrs[cur], err)
		}
	}
	if why == "" {
		return f.addrs[cur]
	}
	for k := 1; k < len(f.hosts); k++ {
		next := (cur + k) % len(f.hosts)
		if err := f.tryHost(ctx, next); err != nil {
			continue
		}
		f.moveTo(cur, next, why)
		return f.addrs[next]
	}
	return f.addrs[cur] // none answers: the transaction finds out on the active host
}

// tryHost connects host i (if it is not connected already), unless its next dial is not
// due yet after a failed one.
func (f *Failover) tryHost(ctx context.Context, i int) error {
	c, release := f.acquire(i)
	defer func() { release(false) }()
	if wait := c.backoffLeft(); wait > 0 {
		return fmt.Errorf("%w: next dial to %s in %v", ErrLinkDown, f.addrs[i], wait.Round(time.Millisecond))
	}
	cctx, cancel := context.WithTimeout(ctx, f.connWait)
	defer cancel()
	return c.Connect(cctx)
}

// moveTo makes host to the active one and tells OnSwitch.
func (f *Failover) moveTo(from, to int, why string) {
	f.mu.Lock()
	f.active = to
	f.dead = f.hosts[to].stats.deadLinks.Load()
	f.state[to].last = f.now()
	if to == 0 {
		f.left = time.Time{}
	} else if from == 0 {
		f.left = f.now().Add(f.retry)
	}
	f.mu.Unlock()
	f.onSwitch(Switch{From: f.addrs[from], To: f.addrs[to], Reason: why})
}

// RouteTo returns the address a queued message goes to: origin, the host that got the
// original request, when the message must go there (a reversal, unless the dialect's
// reversal_to is "any"; an advice's repeat) and origin is still one of the hosts;
// otherwise the active host. origin "" (not recorded) means the active host.
func (f *Failover) RouteTo(origin string, reversal bool) string {
	if origin == "" || reversal && f.anyRev || f.index(origin) < 0 {
		return f.ActiveAddr()
	}
	return origin
}

// SendTo sends req to the host at addr and returns its response, with the errors of
// [Client.Send]. It never moves to another host: a request that cannot go to addr fails
// with [ErrNotSent]. When addr is not the active host and is not connected, it fails at
// once ([ErrLinkDown]) rather than wait, and the host is dialled in the background.
func (f *Failover) SendTo(ctx context.Context, addr string, req *Message) (*Message, error) {
	i := f.index(addr)
	if i < 0 {
		return nil, notSent(fmt.Errorf("%w: %q", ErrUnknownHost, addr))
	}
	c, release := f.acquire(i)
	if addr != f.ActiveAddr() && !c.connected() {
		// Not the active host and not connected: dial it in the background (its redial
		// backoff applies) rather than hold the caller, a queue drain in front of a sale.
		// The message waits for its sender's retry: the host is kept for it.
		c.dialAhead()
		release(true)
		return nil, notSent(fmt.Errorf("%w: %s is not connected; dialling it in the background", ErrLinkDown, addr))
	}
	resp, err := c.Send(ctx, req)
	release(errors.Is(err, ErrNotSent))
	return resp, err
}

// Send sends req as the next transaction: to the host [Failover.NextHost] chooses.
func (f *Failover) Send(ctx context.Context, req *Message) (*Message, error) {
	return f.SendTo(ctx, f.NextHost(ctx), req)
}

// Connect connects to the active host, moving down the list while hosts do not answer.
// It fails when none does, with the last host's error.
func (f *Failover) Connect(ctx context.Context) error {
	var errs []string
	for range f.hosts {
		addr := f.NextHost(ctx)
		err := f.Host(addr).Connect(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		errs = append(errs, addr+": "+err.Error())
	}
	return fmt.Errorf("iso8583: no acquirer host answers: %s", strings.Join(errs, "; "))
}

// Shutdown shuts every host's client down ([Client.Shutdown]), together, and returns the
// first error.
func (f *Failover) Shutdown(ctx context.Context) error {
	f.stopSweep()
	clients := f.clients()
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Shutdown(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close closes every host's client ([Client.Close]).
func (f *Failover) Close() error {
	f.stopSweep()
	for _, c := range f.clients() {
		c.Close()
	}
	return nil
}
