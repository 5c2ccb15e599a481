package terminal

// Backup acquirer hosts: which host a sale goes to, and which host a queued reversal or
// advice goes to.

import (
	"context"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
)

// HostRouter is an optional capability of an [Acquirer] with backup hosts, found by type
// assertion (*iso8583.Failover implements it). With it, a sale chooses its host between
// transactions and never leaves it; its reversal, a completion of its authorization, and
// the repeats of an advice go to the host that got the original (store.Item.Host), or
// where the network's rule sends them. Without it, every message goes through Send.
//
// Implementations must be safe for concurrent use.
type HostRouter interface {
	// NextHost chooses the host of the next transaction (it may move to another host
	// only here) and returns its address.
	NextHost(ctx context.Context) string
	// SendTo sends req to the host at addr and never to another: errors as Send's.
	SendTo(ctx context.Context, addr string, req *iso8583.Message) (*iso8583.Message, error)
	// RouteTo returns the host a queued message goes to, given origin, the host that got
	// its original ("" when not recorded), and whether it is a reversal.
	RouteTo(origin string, reversal bool) string
}

// nextHost returns the host of the sale about to go online, "" when the acquirer has no
// backup hosts.
func (t *Terminal) nextHost(ctx context.Context) string {
	if r, ok := t.acq.(HostRouter); ok {
		return r.NextHost(ctx)
	}
	return ""
}

// sendTo sends req to host, or through Send when host is "".
func sendTo(ctx context.Context, acq Acquirer, host string, req *iso8583.Message) (*iso8583.Message, error) {
	if r, ok := acq.(HostRouter); ok && host != "" {
		return r.SendTo(ctx, host, req)
	}
	return acq.Send(ctx, req)
}

// origin returns the host that got the original of a queued item: its Host, or for the
// reversal of a voided advice whose host was not known when it was voided (the advice was
// on its way), the host the journal says acknowledged the advice. "" when not known.
func (f *Forwarder) origin(ctx context.Context, it store.Item) string {
	if it.Host != "" || it.Kind != store.KindReversal || it.Reverses == nil {
		return it.Host
	}
	rec, err := f.st.Get(ctx, it.TxnID)
	if err != nil || rec.Outcome == nil || rec.Outcome.Advised == nil {
		return ""
	}
	return rec.Outcome.Advised.Host
}

// routes returns the host each of items goes to now, by queue id; nil when the acquirer
// has no backup hosts. A reversal, and an advice whose original has a host (a completion,
// a repeat), go where RouteTo says; an advice's first send is a transaction of its own and
// goes to the host NextHost chooses, chosen once for all of items.
func (f *Forwarder) routes(ctx context.Context, items []store.Item) map[store.QueueID]string {
	r, ok := f.acq.(HostRouter)
	if !ok {
		return nil
	}
	m := make(map[store.QueueID]string, len(items))
	next := ""
	for _, it := range items {
		origin := f.origin(ctx, it)
		if it.Kind == store.KindReversal || origin != "" {
			m[it.ID] = r.RouteTo(origin, it.Kind == store.KindReversal)
			continue
		}
		if next == "" {
			nctx, cancel := context.WithTimeout(ctx, f.opts.SendTimeout)
			next = r.NextHost(nctx)
			cancel()
		}
		m[it.ID] = next
	}
	return m
}

// heldHosts returns the hosts that reversals still waiting (not parked, not held back by
// their advice) hold: no advice goes to one of them before its reversals, since an advice
// that overtook the reversal of the same sale's timed-out authorization would leave the
// customer charged twice until the reversal got through. A sale's advice goes to the host
// of its original, as its reversal does when RouteTo keeps it there: then holding that
// host is enough, and another host's advices are about other sales. all reports that every
// host is held: without backup hosts, or when a waiting reversal's host is not recorded or
// RouteTo sends it elsewhere now (reversal_to "any" with another host active), since the
// same sale's advice may then go anywhere.
func (f *Forwarder) heldHosts(ctx context.Context) (held map[string]bool, all bool, err error) {
	n, err := f.st.PendingReversals(ctx)
	if err != nil || n == 0 {
		return nil, false, err
	}
	r, ok := f.acq.(HostRouter)
	if !ok {
		return nil, true, nil
	}
	items, err := f.st.List(ctx)
	if err != nil {
		return nil, false, err
	}
	queued := make(map[store.QueueID]bool, len(items))
	for _, it := range items {
		queued[it.ID] = true
	}
	held = make(map[string]bool)
	for _, it := range items {
		if it.Kind != store.KindReversal || it.State != store.QueuePending || queued[it.After] {
			continue
		}
		origin := f.origin(ctx, it)
		if origin == "" || r.RouteTo(origin, true) != origin {
			return nil, true, nil
		}
		held[origin] = true
	}
	return held, false, nil
}

// reversalsFor counts the reversals waiting (not parked, not held) that go to host: the
// ones a sale to host must not overtake. A reversal for another host does not hold the
// sale back: that host may hold the original, host never saw it.
func (t *Terminal) reversalsFor(ctx context.Context, host string) (int, error) {
	r, ok := t.acq.(HostRouter)
	if !ok || host == "" {
		return t.st.PendingReversals(ctx)
	}
	items, err := t.st.List(ctx)
	if err != nil {
		return 0, err
	}
	queued := make(map[store.QueueID]bool, len(items))
	for _, it := range items {
		queued[it.ID] = true
	}
	n := 0
	for _, it := range items {
		if it.Kind == store.KindReversal && it.State == store.QueuePending && !queued[it.After] && r.RouteTo(t.fwd.origin(ctx, it), true) == host {
			n++
		}
	}
	return n, nil
}
