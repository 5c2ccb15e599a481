package iso8583

// Reading frames and matching responses to the requests that wait for them.

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// recentSize is how many finished requests the client remembers, to tell a late response
// (its request gave up: reverse) from a duplicate (already answered: ignore).
const recentSize = 4096

// matchKey identifies the response a request waits for.
type matchKey struct {
	mti  string // the response MTI
	stan string // field 11 as sent
	tid  string // field 41 without its space padding
}

func (k matchKey) String() string { return k.mti + " stan=" + k.stan + " tid=" + k.tid }

type result struct {
	msg *Message
	err error
}

type pending struct {
	ch chan result // buffered: the reader never blocks on it
}

// recentSet remembers the last finished requests: answered, or given up.
type recentSet struct {
	state map[matchKey]bool // true: answered
	ring  []matchKey
	next  int
}

func (r *recentSet) put(k matchKey, answered bool) {
	if r.state == nil {
		r.state = make(map[matchKey]bool, recentSize)
		r.ring = make([]matchKey, recentSize)
	}
	if _, ok := r.state[k]; !ok {
		if old := r.ring[r.next]; old != (matchKey{}) {
			delete(r.state, old)
		}
		r.ring[r.next] = k
		r.next = (r.next + 1) % len(r.ring)
	}
	r.state[k] = answered
}

func (c *Client) readLoop(l *link) {
	defer c.bg.Done()
	defer close(l.readerDone)
	for {
		b, err := c.framer.ReadFrame(l.br)
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
		l.lastRecv.Store(c.mono())
		c.stats.framesIn.Add(1)
		if len(b) == 0 {
			continue
		}
		msg, err := unpack(c.spec, b)
		if err != nil {
			c.stats.malformed.Add(1)
			c.logf("iso8583: unreadable frame of %d bytes: %v", len(b), err)
			c.failMalformed(msg, err)
			continue
		}
		c.deliver(l, msg)
	}
}

// failMalformed ends the request a broken response was meant for, if the fields read
// before the error (MTI, STAN and, when it came that far, terminal id) single it out.
func (c *Client) failMalformed(partial *Message, cause error) {
	if partial == nil {
		return
	}
	mti, _ := partial.GetString(0)
	stan, _ := partial.GetString(11)
	if mti == "" || stan == "" {
		return
	}
	tid, _ := partial.GetString(41)
	tid = strings.TrimRight(tid, " ")
	c.mu.Lock()
	var key matchKey
	var p *pending
	for k, q := range c.pending {
		if k.mti == mti && k.stan == stan && (tid == "" || k.tid == tid) {
			if p != nil {
				p = nil // ambiguous: let the requests time out
				break
			}
			key, p = k, q
		}
	}
	if p != nil {
		delete(c.pending, key)
		c.recent.put(key, false)
	}
	c.mu.Unlock()
	if p != nil {
		c.logf("iso8583: the unreadable frame answers %s: its outcome is unknown", key)
		p.ch <- result{err: unknown(fmt.Errorf("%w: %w", ErrMalformedResponse, cause))}
	}
}

func (c *Client) deliver(l *link, msg *Message) {
	mti, _ := msg.GetMTI()
	if _, err := ResponseMTI(mti); err == nil {
		if mti == MTINetworkManagementRequest {
			c.answerEcho(l, msg)
			return
		}
		c.logf("iso8583: ignored a request from the host: %s", Masked{msg})
		return
	}
	stan, _ := msg.GetString(11)
	tid, _ := msg.GetString(41)
	key := matchKey{mti: mti, stan: stan, tid: strings.TrimRight(tid, " ")}
	c.mu.Lock()
	p := c.pending[key]
	answered, known := c.recent.state[key]
	if p != nil {
		delete(c.pending, key)
	}
	if p != nil || known {
		c.recent.put(key, true)
	}
	c.mu.Unlock()
	switch {
	case p != nil:
		if c.tracing {
			c.logf("iso8583: recv %s", Masked{msg})
		}
		p.ch <- result{msg: msg}
		return
	case known && answered:
		c.stats.duplicates.Add(1)
		c.logf("iso8583: duplicate response ignored: %s", Masked{msg})
		return
	case known:
		c.stats.late.Add(1)
		c.logf("iso8583: late response: %s", Masked{msg})
	default:
		c.stats.unmatched.Add(1)
		c.logf("iso8583: unmatched response: %s", Masked{msg})
	}
	if c.late != nil && !strings.HasPrefix(mti, "08") {
		c.late(msg)
	}
}
