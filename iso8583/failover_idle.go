package iso8583

// Backup hosts at rest: letting go of a host the terminal no longer uses (its echoes and
// its background redials), and the counters of all the hosts.

import (
	"context"
	"errors"
	"time"
)

// hostState is one host of a Failover. Guarded by Failover.mu.
type hostState struct {
	c *Client
	// last is when a message last went to the host (or the Failover chose it, dialled it,
	// or handed its client out); used says that happened since its client was made.
	last time.Time
	used bool
	// inUse counts sends and dials under way: the host is not let go while one is.
	inUse int
	// waiting: the last message for the host could not be sent (ErrNotSent) and waits
	// for its sender's retry.
	waiting bool
	// base holds the counters of the clients the host had before (let go), retiring the
	// clients being shut down: Stats adds both to the current client's.
	base     Stats
	retiring []*Client
}

// client returns host i's client now.
func (f *Failover) client(i int) *Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hosts[i].c
}

// clients returns every host's client now, primary first.
func (f *Failover) clients() []*Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	cs := make([]*Client, len(f.hosts))
	for i, h := range f.hosts {
		cs[i] = h.c
	}
	return cs
}

// acquire returns host i's client for a send or a dial, and keeps the host from being let
// go until release is called; release(waiting) records whether a message is left waiting
// for the host (it could not be sent).
func (f *Failover) acquire(i int) (*Client, func(waiting bool)) {
	f.mu.Lock()
	h := f.hosts[i]
	h.inUse++
	h.used, h.last = true, f.now()
	c := h.c
	f.mu.Unlock()
	return c, func(waiting bool) {
		f.mu.Lock()
		h.inUse--
		h.last = f.now()
		if h.c == c {
			h.waiting = waiting
		}
		f.mu.Unlock()
	}
}

// sweep lets idle hosts go, a few times per IdleClose, until the Failover closes.
func (f *Failover) sweep() {
	defer f.swept.Done()
	t := time.NewTicker(max(f.idle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.letIdleGo()
		}
	}
}

func (f *Failover) stopSweep() {
	f.stopOnce.Do(func() { close(f.stop) })
	f.swept.Wait()
}

// letIdleGo lets go of every host other than the active one that has been idle for
// IdleClose (see FailoverOptions.IdleClose): its client is replaced by a new one, which
// does not dial until it is used, and shut down (signed off). It returns how many it let
// go.
func (f *Failover) letIdleGo() int {
	now := f.now()
	type gone struct {
		i   int
		old *Client
	}
	var let []gone
	f.mu.Lock()
	for i, h := range f.hosts {
		if i == f.active || h.inUse > 0 || now.Sub(h.last) < f.idle {
			continue
		}
		up := h.c.connected()
		if !up && !h.used || up && h.waiting {
			continue // nothing runs in the background; or kept for a waiting message
		}
		c, err := NewClient(f.opts[i])
		if err != nil {
			continue // cannot happen: the same options made the first one
		}
		let = append(let, gone{i, h.c})
		h.retiring = append(h.retiring, h.c)
		h.c, h.used, h.waiting = c, false, false
	}
	f.mu.Unlock()
	for _, g := range let {
		ctx, cancel := context.WithTimeout(context.Background(), f.connWait)
		err := g.old.Shutdown(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			g.old.logf("iso8583: letting the idle host %s go: %v", f.addrs[g.i], err)
		}
		st := g.old.Stats()
		f.mu.Lock()
		h := f.hosts[g.i]
		h.base = h.base.add(st)
		for k, c := range h.retiring {
			if c == g.old {
				h.retiring = append(h.retiring[:k], h.retiring[k+1:]...)
				break
			}
		}
		f.mu.Unlock()
		g.old.logf("iso8583: acquirer host %s unused for %v: connection closed, no more dialling until it is needed", f.addrs[g.i], f.idle)
	}
	return len(let)
}

// add returns the counters of s and o together. InFlight adds up; Connected is s's.
func (s Stats) add(o Stats) Stats {
	s.FramesIn += o.FramesIn
	s.FramesOut += o.FramesOut
	s.Malformed += o.Malformed
	s.Late += o.Late
	s.Unmatched += o.Unmatched
	s.Duplicates += o.Duplicates
	s.Connects += o.Connects
	s.Reconnects += o.Reconnects
	s.DialFailures += o.DialFailures
	s.Echoes += o.Echoes
	s.DeadLinks += o.DeadLinks
	s.OutOfStep += o.OutOfStep
	s.BadMACs += o.BadMACs
	s.InFlight += o.InFlight
	return s
}

// HostStatus is one host of a [Failover] as status reports it. A plain value, safe for
// concurrent use if not modified.
type HostStatus struct {
	Addr    string // host:port
	Primary bool   // the first of the addresses
	Active  bool   // new transactions go to it
	// Stats counts since the Failover was made, across the clients the host has had
	// (one is replaced when the host is let go for idleness); Connected and InFlight are
	// now.
	Stats Stats
}

// Hosts returns every host's status, primary first.
func (f *Failover) Hosts() []HostStatus {
	f.mu.Lock()
	type snap struct {
		c        *Client
		base     Stats
		retiring []*Client
	}
	snaps := make([]snap, len(f.hosts))
	for i, h := range f.hosts {
		snaps[i] = snap{h.c, h.base, append([]*Client(nil), h.retiring...)}
	}
	active := f.active
	f.mu.Unlock()
	out := make([]HostStatus, len(snaps))
	for i, s := range snaps {
		st := s.c.Stats()
		connected := st.Connected
		st = st.add(s.base)
		for _, c := range s.retiring {
			st = st.add(c.Stats())
		}
		st.Connected = connected
		out[i] = HostStatus{Addr: f.addrs[i], Primary: i == 0, Active: i == active, Stats: st}
	}
	return out
}

// Stats returns the counters of every host added together ([Failover.Hosts] has them per
// host). InFlight counts the requests waiting at any host; Connected is whether the
// active host's connection is up.
func (f *Failover) Stats() Stats {
	var sum Stats
	for _, h := range f.Hosts() {
		connected := sum.Connected
		sum = sum.add(h.Stats)
		sum.Connected = connected || h.Active && h.Stats.Connected
	}
	return sum
}
