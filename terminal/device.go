package terminal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/posd-dev/posd/internal/serialport"
)

// ErrDeviceUnavailable is wrapped by the errors of a device whose link is
// down: not yet connected, reconnecting, failed, or lost during the command.
// Only the sale in progress fails; the device reconnects in the background.
var ErrDeviceUnavailable = errors.New("terminal: device unavailable")

// DeviceState is the state of a device's link. It is a plain value, safe for
// concurrent use.
type DeviceState string

// Device states.
const (
	// DeviceConnected: the link is up; the device answered when it was
	// (re)connected.
	DeviceConnected DeviceState = "connected"
	// DeviceReconnecting: the link is down and reconnection is under way,
	// with backoff.
	DeviceReconnecting DeviceState = "reconnecting"
	// DeviceFailed: the link has been down for longer than the device's
	// FailAfter; reconnection goes on at the longest backoff, and the state
	// returns to connected as soon as it succeeds.
	DeviceFailed DeviceState = "failed"
	// DeviceClosed: Close was called.
	DeviceClosed DeviceState = "closed"
)

// DeviceStatus is what posd reports of a device in GET /v1/status. It holds
// no card data. It is a plain value, safe for concurrent use.
type DeviceStatus struct {
	Name  string      `json:"name"`  // "pinpad", "card_reader"
	Port  string      `json:"port"`  // the device path
	State DeviceState `json:"state"` // connected, reconnecting, failed, closed
	Since time.Time   `json:"since"` // when State began
	// LastError is why the link went down or the last reconnection attempt
	// failed; empty once connected again.
	LastError string `json:"last_error,omitempty"`
	// Attempts is how many reconnection attempts have failed since the
	// link went down.
	Attempts int `json:"attempts,omitempty"`
	// Reconnects is how many times the link came back after being lost.
	Reconnects int `json:"reconnects"`
	// Info describes the device as it introduced itself (for a PIN pad:
	// manufacturer, model, firmware, serial number from GIN).
	Info string `json:"info,omitempty"`
	// ModemLines is "not supported" for a device without modem control
	// lines (a pseudo-terminal, or a cable without them), otherwise the state
	// of CTS and DSR when it connected.
	ModemLines string `json:"modem_lines,omitempty"`
	// LastSeen is when the device last answered: when it (re)connected, a
	// command it answered (even with an error status), or an idle
	// heartbeat it answered. A technician reads in it how long a pad has
	// been quiet. Zero before the first connection.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// String returns a one-line summary.
func (s DeviceStatus) String() string {
	msg := fmt.Sprintf("%s on %s: %s since %s", s.Name, s.Port, s.State, s.Since.Format(time.RFC3339))
	if s.LastError != "" {
		msg += " (last error: " + s.LastError + ")"
	}
	return msg
}

// DeviceOptions are the reconnection settings shared by the devices. The
// zero value gives the defaults. They are copied when a device opens; plain
// data, safe for concurrent reads.
type DeviceOptions struct {
	// MinBackoff is the wait after the first failed reconnection attempt;
	// it doubles after each further failure up to MaxBackoff. Defaults
	// 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// FailAfter is how long the link may stay down before the state turns
	// from reconnecting to failed. Default 1m.
	FailAfter time.Duration
	// ProbeTimeout bounds one connection attempt, opening the port and the
	// device's answer included. Default 5s.
	ProbeTimeout time.Duration
	// Heartbeat is how long the link may stay idle (no command in progress,
	// none started or finished since) before the device is asked a harmless
	// question to check that it still answers; a device whose port stays
	// open while the device itself is gone (a pad without power on an
	// RS-232 line) is otherwise only noticed at the next sale. A device
	// that does not answer is marked down and reconnected, as when a
	// command finds it so, and LastError says that the heartbeat got no
	// answer. The question never overlaps a command: the heartbeat skips
	// its turn while one runs, and a command that starts during the
	// question waits for its end (see PadDevice). Default 30s; negative
	// disables it. A device with no harmless question to ask (the
	// magnetic stripe reader, which only listens) has no heartbeat.
	Heartbeat time.Duration
	// Logger receives a line when the link goes down and when it comes
	// back. Default: discard.
	Logger *slog.Logger
}

func (o DeviceOptions) withDefaults() DeviceOptions {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.FailAfter <= 0 {
		o.FailAfter = time.Minute
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 5 * time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// backoff returns the wait after the n-th failed attempt (n >= 1).
func (o DeviceOptions) backoff(n int) time.Duration {
	d := o.MinBackoff
	for i := 1; i < n && d < o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, o.MaxBackoff)
}

// link is what a supervised connection offers: a signal when it dies on its
// own (a failed read) and why.
type link interface {
	Done() <-chan struct{}
	Err() error
	Close() error
}

// connected is the result of one successful connection attempt.
type connected[L link] struct {
	link       L
	info       string
	modemLines string
}

// prober asks the device on l a harmless question, for the heartbeat. It
// reports answered when the device answered (even with an error status), and
// a non-nil fault when the link is gone (the device did not take the
// question on any try); neither means the turn told nothing (the link was
// busy, or the supervisor is closing) and the link stays as it is. It must
// return within a bounded time on its own (its ctx ends only at close).
type prober[L link] func(ctx context.Context, l L) (answered bool, fault error)

// supervisor keeps one link to a device up: it connects, watches the link,
// and reconnects with backoff when the link dies or a user reports it
// broken. With a prober it also checks an idle link with a heartbeat. It is
// safe for concurrent use.
type supervisor[L link] struct {
	opts  DeviceOptions
	log   *slog.Logger
	dial  func(ctx context.Context) (connected[L], error)
	probe prober[L] // nil: no heartbeat

	mu     sync.Mutex
	cur    L
	up     bool
	everUp bool
	status DeviceStatus
	broken chan struct{} // capacity 1: the current link was reported broken

	// The heartbeat's view of cur; reset by each connection.
	active  int           // commands in progress (begin without end)
	lastUse time.Time     // when a command or probe last started or ended
	probing chan struct{} // non-nil while a probe runs; closed when it ends
	held    bool          // cur was handed out (hold): no probe until the next begin

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed at the first successful connection
	once   sync.Once
	// taken is closed when an attempt before the first connection finds the
	// port held by another process (serialport.ErrInUse): waiting for the
	// first connection would not free it.
	taken     chan struct{}
	takenOnce sync.Once
	takenErr  error // the attempt's error; set before taken is closed
}

// newSupervisor starts keeping the link of dial up. probe may be nil: no
// heartbeat.
func newSupervisor[L link](name, port string, opts DeviceOptions, dial func(ctx context.Context) (connected[L], error), probe prober[L]) *supervisor[L] {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor[L]{
		opts: opts, log: opts.Logger.With("device", name, "port", port), dial: dial, probe: probe,
		status: DeviceStatus{Name: name, Port: port, State: DeviceReconnecting, Since: time.Now()},
		broken: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), ready: make(chan struct{}), taken: make(chan struct{}),
	}
	go s.run()
	return s
}

func (s *supervisor[L]) run() {
	defer close(s.done)
	for {
		l, ok := s.connect()
		if !ok {
			return
		}
		why, closing := s.watch(l)
		l.Close()
		if closing {
			return
		}
		s.mu.Lock()
		s.up = false
		if s.status.State == DeviceConnected {
			s.status.State, s.status.Since = DeviceReconnecting, time.Now()
		}
		s.status.LastError = why
		s.mu.Unlock()
		s.log.Warn("device link down; reconnecting", "reason", why)
	}
}

// watch waits until l dies, is reported broken or the supervisor closes
// (closing), and meanwhile runs the heartbeat. why is the reason the link is
// down.
func (s *supervisor[L]) watch(l L) (why string, closing bool) {
	var (
		tick  <-chan time.Time // nil without a heartbeat: never ready
		timer *time.Timer
	)
	if s.probe != nil && s.opts.Heartbeat > 0 {
		timer = time.NewTimer(s.opts.Heartbeat)
		defer timer.Stop()
		tick = timer.C
	}
	for {
		select {
		case <-l.Done():
			return "link lost: " + errText(l.Err()), false
		case <-s.broken:
			return s.brokenReason(), false
		case <-s.ctx.Done():
			return "", true
		case <-tick:
			timer.Reset(s.heartbeat(l))
		}
	}
}

// brokenReason is why the link was reported broken.
func (s *supervisor[L]) brokenReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.LastError
}

// heartbeat probes l if it has been idle for the heartbeat interval, and
// returns how long to wait before the next turn. A turn is skipped while a
// command runs or l is held; the probe is marked in probing, under the same
// lock that begin takes, so that a command and a probe never overlap. A probe
// that finds the link gone reports it as report does.
func (s *supervisor[L]) heartbeat(l L) time.Duration {
	every := s.opts.Heartbeat
	s.mu.Lock()
	if !s.up || any(s.cur) != any(l) || s.active > 0 || s.held {
		s.mu.Unlock()
		return every
	}
	if idle := time.Since(s.lastUse); idle < every {
		s.mu.Unlock()
		return every - idle
	}
	probing := make(chan struct{})
	s.probing = probing
	s.mu.Unlock()

	answered, fault := s.probe(s.ctx, l)

	s.mu.Lock()
	s.probing = nil
	close(probing)
	now := time.Now()
	s.lastUse = now
	if answered && s.up && any(s.cur) == any(l) {
		s.status.LastSeen = now
	}
	s.mu.Unlock()
	if fault != nil && s.ctx.Err() == nil {
		s.report(l, fmt.Errorf("heartbeat got no answer: %w", fault))
	}
	return every
}

// connect tries until it connects (true) or the supervisor is closed.
func (s *supervisor[L]) connect() (L, bool) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.ProbeTimeout)
		c, err := s.dial(ctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			select {
			case <-s.broken: // a report about the old link
			default:
			}
			if s.everUp {
				s.status.Reconnects++
			}
			now := time.Now()
			s.cur, s.up, s.everUp = c.link, true, true
			s.active, s.lastUse, s.held = 0, now, false
			s.status.State, s.status.Since, s.status.LastError, s.status.Attempts = DeviceConnected, now, "", 0
			s.status.Info, s.status.ModemLines, s.status.LastSeen = c.info, c.modemLines, now
			s.mu.Unlock()
			s.once.Do(func() { close(s.ready) })
			s.log.Info("device connected", "info", c.info, "modem_lines", c.modemLines)
			return c.link, true
		}
		if s.ctx.Err() != nil {
			var zero L
			return zero, false
		}
		s.mu.Lock()
		s.status.Attempts = attempt
		s.status.LastError = errText(err)
		if !s.everUp && errors.Is(err, serialport.ErrInUse) {
			s.takenOnce.Do(func() { s.takenErr = err; close(s.taken) })
		}
		if s.status.State == DeviceReconnecting && time.Since(s.status.Since) >= s.opts.FailAfter {
			s.status.State, s.status.Since = DeviceFailed, time.Now()
			s.log.Error("device failed: still unreachable; retrying", "reason", s.status.LastError, "after", s.opts.FailAfter)
		}
		s.mu.Unlock()
		t := time.NewTimer(s.opts.backoff(attempt))
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			var zero L
			return zero, false
		}
	}
}

// errText is err's message, or "closed" for nil.
func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// begin returns the current link for a command and counts the command as in
// progress until end, so that the heartbeat skips its turns meanwhile. When a
// heartbeat probe is running it first waits for the probe's end (a probe is
// bounded by the link's own timeouts: for the PIN pad, a fraction of a second
// when the pad answers). When the link is down, which it also is after a
// probe that found the device gone, it fails with an error wrapping
// ErrDeviceUnavailable that says since when and why.
func (s *supervisor[L]) begin() (L, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.afterProbe()
	if err != nil {
		return l, err
	}
	s.active++
	s.held = false
	s.lastUse = time.Now()
	return l, nil
}

// end ends a command begun on l; answered says whether the device answered
// it (even with an error status), which sets LastSeen. A command on a link
// that has been replaced meanwhile changes nothing.
func (s *supervisor[L]) end(l L, answered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if any(s.cur) != any(l) || s.active == 0 {
		return
	}
	s.active--
	s.lastUse = time.Now()
	if answered && s.up {
		s.status.LastSeen = s.lastUse
	}
}

// hold returns the current link for a user that runs commands on it
// directly (the firmware transfer), after any probe in progress: the
// heartbeat then leaves that link alone until the next begin or a
// reconnection, since it cannot see when such commands run.
func (s *supervisor[L]) hold() (L, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.afterProbe()
	if err == nil {
		s.held = true
	}
	return l, err
}

// afterProbe waits for any probe to end and returns the current link, or the error of a
// link that is down. s.mu is held on entry and on return.
func (s *supervisor[L]) afterProbe() (L, error) {
	s.waitProbe()
	if !s.up {
		var zero L
		return zero, s.unavailable()
	}
	return s.cur, nil
}

// waitProbe waits, with s.mu held on entry and on return, until no probe is
// running. A probe ends on its own within the link's timeouts, and at once
// when the supervisor closes.
func (s *supervisor[L]) waitProbe() {
	for s.probing != nil {
		p := s.probing
		s.mu.Unlock()
		<-p
		s.mu.Lock()
	}
}

// unavailable builds the error for a device that is not connected; the
// caller holds s.mu.
func (s *supervisor[L]) unavailable() error {
	st := s.status
	msg := fmt.Sprintf("%s on %s %s since %s", st.Name, st.Port, st.State, st.Since.Format("15:04:05"))
	if st.LastError != "" {
		msg += ": " + strings.TrimPrefix(st.LastError, "terminal: ")
	}
	return fmt.Errorf("%w: %s", ErrDeviceUnavailable, msg)
}

// report marks l broken because of err (a command found the link dead) and
// wakes the supervisor to reconnect. Reports about a link that is no longer
// the current one are ignored.
func (s *supervisor[L]) report(l L, err error) {
	s.mu.Lock()
	if !s.up || any(s.cur) != any(l) {
		s.mu.Unlock()
		return
	}
	s.up = false
	s.status.State, s.status.Since, s.status.LastError = DeviceReconnecting, time.Now(), errText(err)
	s.mu.Unlock()
	select {
	case s.broken <- struct{}{}:
	default:
	}
}

// Status returns the link's status.
func (s *supervisor[L]) Status() DeviceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// waitConnected waits until the first connection or ctx is done; on ctx it
// returns an error wrapping ErrDeviceUnavailable with the last failure. It
// returns that error at once when the port is held by another process.
func (s *supervisor[L]) waitConnected(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
	case <-s.done:
	case <-s.taken:
		s.mu.Lock()
		name, port := s.status.Name, s.status.Port
		s.mu.Unlock()
		return fmt.Errorf("%w: %s on %s: %w", ErrDeviceUnavailable, name, port, s.takenErr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		return nil
	}
	return s.unavailable()
}

// close stops the supervisor and closes the link.
func (s *supervisor[L]) close() {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up = false
	s.status.State, s.status.Since = DeviceClosed, time.Now()
}
