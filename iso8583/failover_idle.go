package iso8583

// Backup hosts at rest: letting go of a host the terminal no longer uses (its echoes and
// its background redials), and the counters of all the hosts.

import (
	"context"
	"errors"
	"time"
)

// hostState is what a Failover knows of one host besides its client. Guarded by
// Failover.mu.
type hostState struct {
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
	return f.hosts[i]
}

// clients returns every host's client now, primary first.
func (f *Failover) clients() []*Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Client(nil), f.hosts...)
}

// acquire returns host i's client for a send or a dial, and keeps the host from being let
// go until release is called; release(waiting) records whether a message is left waiting
// for the host (it could not be sent).
func (f *Failover) acquire(i int) (*Client, func(waiting bool)) {
	f.mu.Lock()
	h := f.state[i]
	h.inUse++
	h.used, h.last = true, f.now()
	c := f.hosts[i]
	f.mu.Unlock()
	return c, func(waiting bool) {
		f.mu.Lock()
		h.inUse--
		h.last = f.now()
		if f.hosts[i] == c {
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
	for i, h := range f.state {
		if i == f.active || h.inUse > 0 || now.Sub(h.last) < f.idle {
			continue
		}
		old := f.hosts[i]
		up := old.connected()
		if !up && !h.used || up && h.waiting {
			continue // nothing runs in the background; or kept for a waiting message
		}
		c, err := NewClient(f.opts[i])
		if err != nil {
			continue // cannot happen: the same options made the first one
		}
		if f.macKey != nil {
			c.SetMACKey(*f.macKey) // the key in use, not the one posd started with
		}
		let = append(let, gone{i, old})
		h.retiring = append(h.retiring, old)
		f.hosts[i] = c
		h.used, h.waiting = false, false
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
		h := f.state[g.i]
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

// HostStats returns the counters of the host at addr since the Failover was made, across
// the clients it has had (a host's is replaced when it is let go for idleness); InFlight
// and Connected are now. ok is false when addr is not one of the hosts.
func (f *Failover) HostStats(addr string) (st Stats, ok bool) {
	i := f.index(addr)
	if i < 0 {
		return Stats{}, false
	}
	f.mu.Lock()
	c, base := f.hosts[i], f.state[i].base
	retiring := append([]*Client(nil), f.state[i].retiring...)
	f.mu.Unlock()
	st = c.Stats()
	connected := st.Connected
	st = st.add(base)
	for _, r := range retiring {
		st = st.add(r.Stats())
	}
	st.Connected = connected
	return st, true
}

// Stats returns the counters of every host added together ([Failover.HostStats] has them
// per host). InFlight counts the requests waiting at any host; Connected is whether the
// active host's connection is up.
func (f *Failover) Stats() Stats {
	active := f.ActiveAddr()
	var sum Stats
	for _, a := range f.addrs {
		st, _ := f.HostStats(a)
		sum = sum.add(st)
		if a == active {
			sum.Connected = st.Connected
		}
	}
	return sum
}
