package iso8583

// The link's state as a technician reads it: connected or since when not, why, and the
// last echo.

import (
	"sync"
	"time"
)

// LinkStatus is the state of a [Client]'s link to the acquirer host, for a status report
// (posd's GET /v1/status). It holds no message content. A LinkStatus is a plain value, safe
// for concurrent use if not modified.
type LinkStatus struct {
	// Addr is the host's host:port (ClientOptions.Addr).
	Addr string `json:"host"`
	// Connected: a connection is up (and signed on, when the client signs on).
	Connected bool `json:"connected"`
	// SignedOn: Connected, and the host approved the client's sign-on (ClientOptions.SignOn).
	// Always false for a client that does not sign on.
	SignedOn bool `json:"signed_on"`
	// SignOn says whether the client signs on at all.
	SignOn bool `json:"sign_on"`
	// Since is when Connected last changed: when the connection came up, or when the link
	// went down (the connection dropped, or the first dial failed). Zero before the first
	// dial has ended.
	Since time.Time `json:"since,omitzero"`
	// LastError is why the link is down: the last dial, handshake or sign-on that failed,
	// or why the connection ended. Empty while connected.
	LastError string `json:"last_error,omitempty"`
	// LastEcho is when the last echo (0800, 301) sent on an idle link ended; zero when none
	// has been sent. LastEchoError is empty when the host answered it.
	LastEcho      time.Time `json:"last_echo,omitzero"`
	LastEchoError string    `json:"last_echo_error,omitempty"`
	// InFlight is how many requests wait for a response now.
	InFlight int `json:"in_flight"`
}

// linkState records what LinkStatus reports. It has its own lock, taken only for the few
// field writes below, so that reading it never waits for the client's own lock.
type linkState struct {
	mu  sync.Mutex
	st  LinkStatus
	now func() time.Time
}

func (s *linkState) up() {
	s.mu.Lock()
	s.st.Connected, s.st.Since, s.st.LastError = true, s.now(), ""
	s.mu.Unlock()
}

// down records that the link is down because of err: the connection ended, or a dial
// failed. Since moves only when the link was up (or had never been tried).
func (s *linkState) down(err error) {
	s.mu.Lock()
	if s.st.Connected || s.st.Since.IsZero() {
		s.st.Since = s.now()
	}
	s.st.Connected = false
	if err != nil {
		s.st.LastError = err.Error()
	}
	s.mu.Unlock()
}

func (s *linkState) echo(err error) {
	s.mu.Lock()
	s.st.LastEcho, s.st.LastEchoError = s.now(), ""
	if err != nil {
		s.st.LastEchoError = err.Error()
	}
	s.mu.Unlock()
}

// LinkStatus returns the link's state now. It never blocks on a request in progress.
func (c *Client) LinkStatus() LinkStatus {
	c.state.mu.Lock()
	st := c.state.st
	c.state.mu.Unlock()
	st.Addr, st.SignOn = c.addr, c.signOn
	st.SignedOn = st.Connected && c.signOn
	c.mu.Lock()
	st.InFlight = len(c.pending)
	c.mu.Unlock()
	return st
}
