package iso8583

// The connection: dialling, TLS, sign-on, reconnect backoff, and dropping a connection
// that failed.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// link is one connection with its reader goroutine.
type link struct {
	nc         net.Conn
	br         *bufio.Reader
	wmu        sync.Mutex // guards writing and queue
	writing    bool       // a Send is writing; others queue
	queue      []*wreq
	spare      []*wreq       // the memory of the last queue written, for the next; guarded by wmu
	taken      []*wreq       // the writer's own: the frames of a combined write
	wbuf       []byte        // the writer's own: a combined write
	done       chan struct{} // closed once the link has failed or been closed
	readerDone chan struct{} // closed when the reader goroutine has returned
	kick       chan struct{} // wakes the keepalive goroutine
	once       sync.Once
	err        error // why the link ended; written before done is closed

	lastRecv  atomic.Int64 // monotonic nanoseconds (Client.mono) of the last frame read
	lastSend  atomic.Int64 // ... written
	waiting   atomic.Int32 // requests written on this link and still waiting
	waitSince atomic.Int64 // when waiting last went from 0 to 1
	wakeAt    atomic.Int64 // when the keepalive goroutine wakes next (monotonic ns); it runs now if 0
}

func (l *link) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
		l.nc.Close()
	})
}

// Connect connects (and signs on, with SignOn) unless the client is already connected. It
// honours the reconnect backoff: after a failed dial it waits for the next one to be due,
// or fails at once with ErrLinkDown when that is after ctx's deadline.
func (c *Client) Connect(ctx context.Context) error {
	_, err := c.connect(ctx)
	return err
}

func (c *Client) connect(ctx context.Context) (*link, error) {
	for {
		if l, err := c.current(); l != nil || err != nil {
			return l, err
		}
		if err := c.waitBackoff(ctx); err != nil {
			return nil, err
		}
		select {
		case c.dialSem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("iso8583: connect %s: %w", c.addr, ctx.Err())
		case <-c.life.Done():
			return nil, ErrClosed
		}
		c.mu.Lock()
		up := c.conn != nil
		due := c.failures == 0 || !time.Now().Before(c.nextDial)
		c.mu.Unlock()
		if up || !due { // another dial succeeded, or failed, while this one waited
			<-c.dialSem
			continue
		}
		l, err := c.dialLink(ctx)
		<-c.dialSem
		return l, err
	}
}

// waitBackoff waits until a dial is due.
func (c *Client) waitBackoff(ctx context.Context) error {
	c.mu.Lock()
	wait := time.Duration(0)
	if c.failures > 0 {
		wait = time.Until(c.nextDial)
	}
	c.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && dl.Before(time.Now().Add(wait)) {
		return fmt.Errorf("%w: next dial to %s in %v", ErrLinkDown, c.addr, wait.Round(time.Millisecond))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrLinkDown, ctx.Err())
	case <-c.life.Done():
		return ErrClosed
	}
}

// dialFailed records a failed attempt and schedules the next.
func (c *Client) dialFailed(err error) error {
	c.stats.dialFailures.Add(1)
	c.state.down(err)
	c.mu.Lock()
	c.failures++
	d := c.backoffMin << min(c.failures-1, 30)
	if d > c.backoffMax || d <= 0 {
		d = c.backoffMax
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	c.nextDial = time.Now().Add(d)
	c.lastDialErr = err
	c.mu.Unlock()
	c.logf("iso8583: connecting to %s failed: %v; next attempt in %v", c.addr, err, d.Round(time.Millisecond))
	return err
}

// dialLink dials, shakes hands, starts the reader and signs on. The caller holds dialSem.
func (c *Client) dialLink(ctx context.Context) (*link, error) {
	dctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	nc, err := c.dial(dctx, "tcp", c.addr)
	if err != nil {
		return nil, c.dialFailed(fmt.Errorf("iso8583: connect: %w", err))
	}
	if c.tls != nil {
		tc := tls.Client(nc, c.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, c.dialFailed(fmt.Errorf("iso8583: connect: TLS handshake: %w", err))
		}
		nc = tc
	}
	l := &link{
		nc:         nc,
		br:         bufio.NewReaderSize(nc, 16<<10),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
	now := c.mono()
	l.lastRecv.Store(now)
	l.lastSend.Store(now)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return nil, ErrClosed
	}
	c.bg.Add(1)
	c.dialing = l
	c.mu.Unlock()
	go c.readLoop(l)
	defer func() {
		c.mu.Lock()
		if c.dialing == l {
			c.dialing = nil
		}
		c.mu.Unlock()
	}()

	if c.signOn {
		sctx, cancel := context.WithTimeout(ctx, c.netTimeout)
		r, err := c.network(sctx, l, NMSignOn)
		cancel()
		if err == nil && !r.Approved() {
			err = fmt.Errorf("%w: response code %s (%s)", ErrSignOnRefused, r.ResponseCode, ResponseText(r.ResponseCode))
		}
		if err != nil {
			l.fail(err)
			return nil, c.dialFailed(fmt.Errorf("iso8583: sign-on: %w", err))
		}
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		l.fail(ErrClosed)
		return nil, ErrClosed
	}
	c.conn = l
	c.lastDialErr = nil
	again := c.everUp
	c.everUp = true
	c.failures = 0
	if c.echoInterval > 0 || c.deadTimeout > 0 {
		c.bg.Add(1)
		go c.keepalive(l)
	}
	c.mu.Unlock()
	c.state.up()
	c.stats.connects.Add(1)
	if again {
		c.stats.reconnects.Add(1)
	}
	c.logf("iso8583: connected to %s from %s", c.addr, nc.LocalAddr())
	if c.signedOn != nil {
		go c.signedOn(c.addr)
	}
	return l, nil
}

// current returns the live connection, or ErrClosed, or neither.
func (c *Client) current() (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.draining {
		return nil, ErrClosed
	}
	return c.conn, nil
}

// drop detaches l from the client, so that no new request uses it, and then ends it. When
// l was the current connection of a client that has worked before, a background redial
// starts.
func (c *Client) drop(l *link, err error) {
	c.mu.Lock()
	if c.conn == l {
		c.conn = nil
		c.state.down(err)
		if c.everUp && !c.closed && !c.draining && !c.redialing {
			c.redialing = true
			c.bg.Add(1)
			go c.redial()
		}
	}
	c.mu.Unlock()
	l.fail(err)
}

// redial reconnects in the background until it succeeds or the client closes.
func (c *Client) redial() {
	defer c.bg.Done()
	for {
		_, err := c.connect(c.life)
		c.mu.Lock()
		if err == nil || c.closed || c.draining || c.conn != nil {
			c.redialing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// ActiveAddr returns the host:port the client sends to (ClientOptions.Addr); a [Failover]
// has the same method, returning its active host's.
func (c *Client) ActiveAddr() string { return c.addr }

// backoffLeft returns how long until the next dial is due after a failed one, 0 when a
// dial may go now (or the client is connected).
func (c *Client) backoffLeft() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil || c.failures == 0 {
		return 0
	}
	return max(time.Until(c.nextDial), 0)
}

// unusable says why a [Failover] should move its next transaction away from this host: its
// last dial or sign-on failed and no connection is up, or a link to it was declared dead
// since its Stats.DeadLinks was deadBefore. "" when neither.
func (c *Client) unusable(deadBefore uint64) string {
	if n := c.stats.deadLinks.Load(); n > deadBefore {
		return fmt.Sprintf("the link to %s was declared dead (nothing came from the host while a request or an echo waited)", c.addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil && c.failures > 0 {
		return fmt.Sprintf("%s does not answer: %v", c.addr, c.lastDialErr)
	}
	return ""
}

// connected reports whether a connection is up.
func (c *Client) connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// dialAhead starts a background redial unless a connection is up or one runs already.
func (c *Client) dialAhead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil || c.closed || c.draining || c.redialing {
		return
	}
	c.redialing = true
	c.bg.Add(1)
	go c.redial()
}
