package iso8583

// LinkStatus returns the link state of the active host: the host the next transaction
// goes to.
func (f *Failover) LinkStatus() LinkStatus {
	return f.Host(f.ActiveAddr()).LinkStatus()
}

// HostStatus is one acquirer host's link state, and whether it is the active host. A
// value, safe for concurrent use.
type HostStatus struct {
	LinkStatus
	Active bool `json:"active"`
}

// HostStatuses returns the link state of every host, primary first.
func (f *Failover) HostStatuses() []HostStatus {
	active := f.ActiveAddr()
	out := make([]HostStatus, len(f.addrs))
	for i, a := range f.addrs {
		out[i] = HostStatus{LinkStatus: f.hosts[i].LinkStatus(), Active: a == active}
	}
	return out
}
