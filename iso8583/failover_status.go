package iso8583

// LinkStatus returns the link state of the active host: the host the next transaction
// goes to. It does not count as a use of the host (an idle host is still let go).
func (f *Failover) LinkStatus() LinkStatus {
	f.mu.Lock()
	c := f.hosts[f.active]
	f.mu.Unlock()
	return c.LinkStatus()
}

// HostStatus is one acquirer host's link state, and whether it is the active host. A
// value, safe for concurrent use. A host let go for being idle reports not connected, with
// no time since.
type HostStatus struct {
	LinkStatus
	Active bool `json:"active"`
}

// HostStatuses returns the link state of every host, primary first. Like LinkStatus, it
// does not count as a use of any host.
func (f *Failover) HostStatuses() []HostStatus {
	f.mu.Lock()
	clients := append([]*Client(nil), f.hosts...)
	active := f.active
	f.mu.Unlock()
	out := make([]HostStatus, len(clients))
	for i, c := range clients {
		out[i] = HostStatus{LinkStatus: c.LinkStatus(), Active: i == active}
	}
	return out
}

// SetMACKey makes id the MAC key of every host's link, from each one's next message (an
// acquirer's hosts share the terminal's working keys), and of the links made later for
// hosts let go.
func (f *Failover) SetMACKey(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.macKey = &id
	for _, c := range f.hosts {
		c.SetMACKey(id)
	}
}
