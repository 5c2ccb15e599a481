package iso8583

// Network management on the link: echoes on an idle connection, dead-link detection, and
// the answer to the host's own echo.

import (
	"context"
	"fmt"
	"time"
)

// answerEcho answers a host's 0800 with an 0810 that echoes it, response code 00.
func (c *Client) answerEcho(l *link, req *Message) {
	c.logf("iso8583: host sent %s; answering", Masked{req})
	resp, err := Convert(req, c.spec)
	if err == nil {
		for id := range resp.Present() {
			if id != 7 && id != 11 && id != 41 && id != 70 {
				resp.UnsetField(id)
			}
		}
		resp.MTI(MTINetworkManagementResponse)
		err = resp.Field(39, RCApproved)
	}
	var b []byte
	if err == nil {
		b, err = Pack(resp)
	}
	if err != nil {
		c.logf("iso8583: cannot answer the host's 0800: %v", err)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.bg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(c.life, c.netTimeout)
		defer cancel()
		if n, err := c.write(ctx, l, b); err != nil && n > 0 {
			c.drop(l, err)
		}
	}()
}

// hostKeyChange passes a host's key-change 0800 on to ClientOptions.HostKeyChange.
func (c *Client) hostKeyChange(req *Message) {
	if c.keyx == nil || c.hostKeyX == nil {
		return
	}
	code, _ := req.GetString(70)
	if k, ok := c.keyx.Kind(code); ok {
		c.logf("iso8583: the host asks for a new %s key (0800, 70=%s)", k, code)
		go c.hostKeyX(k)
	}
}

// network sends one of the client's own 0800s on l and returns the parsed response.
func (c *Client) network(ctx context.Context, l *link, code string) (Response, error) {
	stan, err := c.nextSTAN(ctx)
	if err != nil {
		return Response{}, fmt.Errorf("taking a STAN: %w", err)
	}
	req, err := NetworkManagement{Code: code, STAN: stan, TransmissionTime: c.now(), TerminalID: c.terminalID}.Message()
	if err != nil {
		return Response{}, err
	}
	key, _ := requestKey(req)
	wire, err := c.prepare(req)
	if err != nil {
		return Response{}, err
	}
	b, err := c.pack(ctx, wire)
	if err != nil {
		return Response{}, err
	}
	p, err := c.register(key, false)
	if err != nil {
		return Response{}, err
	}
	c.logf("iso8583: send %s", Masked{wire})
	resp, err := c.exchange(ctx, l, key, p, b)
	if err != nil {
		return Response{}, err
	}
	return ParseResponse(resp)
}

// keepalive sends echoes on an idle link and closes it when it has gone dead.
func (c *Client) keepalive(l *link) {
	defer c.bg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		l.wakeAt.Store(0) // running: a request that starts waiting now is seen below or kicks
		now := c.mono()
		wake := int64(1<<62 - 1)
		waiting := l.waiting.Load() > 0
		if c.deadTimeout > 0 && waiting {
			since := max(l.lastRecv.Load(), l.waitSince.Load())
			if now-since >= int64(c.deadTimeout) {
				c.stats.deadLinks.Add(1)
				c.logf("iso8583: nothing from %s for %v while waiting: closing the connection", c.addr, c.deadTimeout)
				c.drop(l, ErrDeadLink)
				return
			}
			wake = since + int64(c.deadTimeout)
		}
		if c.echoInterval > 0 {
			last := max(l.lastRecv.Load(), l.lastSend.Load())
			if now-last >= int64(c.echoInterval) && l.waiting.Load() == 0 {
				c.stats.echoes.Add(1)
				timeout := c.netTimeout
				if c.deadTimeout > 0 {
					timeout = min(timeout, c.deadTimeout)
				}
				ctx, cancel := context.WithTimeout(c.life, timeout)
				r, err := c.network(ctx, l, NMEcho)
				cancel()
				if err == nil && !r.Approved() {
					c.state.echo(fmt.Errorf("response code %s", r.ResponseCode))
				} else {
					c.state.echo(err)
				}
				if err != nil && c.life.Err() == nil {
					select {
					case <-l.done:
					default:
						c.stats.deadLinks.Add(1)
						c.logf("iso8583: echo to %s failed: %v; closing the connection", c.addr, err)
						c.drop(l, fmt.Errorf("%w: %w", ErrDeadLink, err))
					}
					return
				}
				continue
			}
			wake = min(wake, last+int64(c.echoInterval))
		}
		l.wakeAt.Store(max(wake, now+int64(time.Millisecond)))
		if !waiting && c.deadTimeout > 0 && l.waiting.Load() > 0 {
			continue // a request began to wait meanwhile and may not have kicked: see its deadline
		}
		t.Reset(time.Duration(max(wake-now, int64(time.Millisecond))))
		select {
		case <-l.done:
			return
		case <-l.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}
