package padsim

// This file holds the serving loop: Serve, ServeDevice and the session
// that frames packets, ACKs them and injects link faults.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
)

// Serve answers commands read from port until ctx is done (it returns
// ctx.Err()) or reading or writing port fails. Reads that return
// abecs.ErrTimeout are retried. An unplug fault makes the pad ignore the
// line for its delay.
//
// Serve reads port on a goroutine of its own, which it cannot interrupt: when
// Serve returns because ctx is done, that goroutine ends at the port's next
// read error, so close the port after Serve returns.
func (p *Pad) Serve(ctx context.Context, port io.ReadWriter) error {
	if !p.serving.CompareAndSwap(false, true) {
		return ErrServing
	}
	defer p.serving.Store(false)
	return p.serve(ctx, port, false)
}

// ServeDevice is Serve over a port that open opens, such as
//
//	func() (io.ReadWriteCloser, error) { return abecs.OpenSerial(path, 0) }
//
// An unplug fault closes the port, waits the fault's delay and opens it
// again, as a pad pulled from its cable and plugged back would. ServeDevice
// returns when ctx is done (ctx.Err()), when open fails, or when the port
// fails other than by an unplug; it closes the port it opened.
func (p *Pad) ServeDevice(ctx context.Context, open func() (io.ReadWriteCloser, error)) error {
	if !p.serving.CompareAndSwap(false, true) {
		return ErrServing
	}
	defer p.serving.Store(false)
	for {
		port, err := open()
		if err != nil {
			return fmt.Errorf("padsim: open: %w", err)
		}
		if r, ok := port.(interface{ ResetInputBuffer() error }); ok {
			r.ResetInputBuffer() // what the host sent to the unplugged pad is gone
		}
		err = p.serve(ctx, port, true)
		port.Close()
		var u *unplugged
		if !errors.As(err, &u) {
			return err
		}
		p.logf("unplugged for %v: port closed", u.d)
		t := time.NewTimer(u.d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		p.logf("plugged in again: port reopened")
	}
}

// unplugged ends a session of ServeDevice for an unplug fault.
type unplugged struct{ d time.Duration }

func (u *unplugged) Error() string { return fmt.Sprintf("padsim: unplugged for %v", u.d) }

func (p *Pad) serve(ctx context.Context, port io.ReadWriter, device bool) error {
	if p.rate > 0 {
		port = throttled{rw: port, rate: p.rate}
	}
	port = counting{rw: port, in: &p.bytesIn, out: &p.bytesOut}
	s := &session{pad: p, port: port, device: device, events: make(chan abecs.Event), readErr: make(chan error, 1), stop: make(chan struct{})}
	defer close(s.stop)
	go s.read()
	for {
		ev, err := s.next(ctx)
		if err != nil {
			return err
		}
		if p.silent.Load() {
			s.last = nil // a NAK afterwards has nothing to resend
			continue
		}
		if err := s.handleLink(ctx, ev); err != nil {
			return err
		}
	}
}

// session is one run of Serve.
type session struct {
	pad     *Pad
	port    io.ReadWriter
	device  bool // ServeDevice: an unplug closes the port
	events  chan abecs.Event
	readErr chan error
	stop    chan struct{}

	last  []byte // last response frame, for resending on NAK
	sends int    // how many times last has been sent
}

func (s *session) read() {
	d := abecs.NewDecoder(s.port)
	for {
		ev, err := d.Next()
		if err != nil {
			if errors.Is(err, abecs.ErrTimeout) {
				continue
			}
			s.readErr <- err
			return
		}
		select {
		case s.events <- ev:
		case <-s.stop:
			return
		}
	}
}

func (s *session) next(ctx context.Context) (abecs.Event, error) {
	select {
	case ev := <-s.events:
		return ev, nil
	case err := <-s.readErr:
		return abecs.Event{}, fmt.Errorf("padsim: read: %w", err)
	case <-ctx.Done():
		return abecs.Event{}, ctx.Err()
	}
}

func (s *session) write(b []byte) error {
	for len(b) > 0 {
		n, err := s.port.Write(b)
		if err != nil {
			return fmt.Errorf("padsim: write: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("padsim: write: %w", io.ErrShortWrite)
		}
		b = b[n:]
	}
	return nil
}

// maxSends is how many times one response is sent when the host NAKs it.
const maxSends = 3

// sendLast sends the last response, with a wrong CRC while bad_crc faults
// are left.
func (s *session) sendLast() error {
	p := s.pad
	p.mu.Lock()
	bad := p.faults.badCRC > 0
	if bad {
		p.faults.badCRC--
	}
	p.mu.Unlock()
	if !bad {
		return s.write(s.last)
	}
	p.logf("fault bad_crc: response sent with a wrong CRC")
	f := append([]byte(nil), s.last...)
	f[len(f)-1] ^= 0xFF
	return s.write(f)
}

func (s *session) handleLink(ctx context.Context, ev abecs.Event) error {
	logf := s.pad.logf
	switch ev.Kind {
	case abecs.KindCAN:
		logf("CAN -> EOT")
		s.last = nil
		return s.write([]byte{abecs.EOT})
	case abecs.KindNAK:
		if s.last == nil || s.sends >= maxSends {
			logf("NAK -> ignored (nothing to resend)")
			return nil
		}
		s.sends++
		logf("NAK -> response sent again (%d of %d)", s.sends, maxSends)
		return s.sendLast()
	case abecs.KindPacket:
	default:
		return nil // ACK and EOT mean nothing to a pad
	}
	if ev.Err != nil {
		logf("bad packet (%v) -> NAK", strings.TrimPrefix(ev.Err.Error(), "abecs: "))
		return s.write([]byte{abecs.NAK})
	}
	cmd, err := abecs.ParseCommand(ev.Data)
	if err != nil {
		logf("malformed command -> NAK")
		return s.write([]byte{abecs.NAK})
	}
	if proceed, err := s.linkFaults(ctx, cmd.ID); !proceed || err != nil {
		return err
	}
	if err := s.write([]byte{abecs.ACK}); err != nil {
		return err
	}
	s.last = nil
	resp, aborted, err := s.command(ctx, cmd)
	if err != nil || aborted {
		return err
	}
	data, err := resp.Append(nil)
	if err == nil {
		s.last, err = abecs.AppendFrame(nil, data)
	}
	if err != nil {
		return fmt.Errorf("padsim: %s: encode response: %w", cmd.ID, err)
	}
	if s.pad.silent.Load() {
		s.pad.logf("%s: silent: response not sent", cmd.ID)
		s.last = nil
		return nil
	}
	s.sends = 1
	return s.sendLast()
}

// linkFaults takes the fault events at the head of the script and applies
// what is due to the packet of command id. proceed is false when the packet
// is not to be ACKed and handled.
func (s *session) linkFaults(ctx context.Context, id string) (proceed bool, err error) {
	p := s.pad
	var (
		slow, unplug time.Duration
		noise        []byte
	)
	p.mu.Lock()
	for len(p.events) > 0 && p.events[0].Fault != nil && unplug == 0 {
		f := p.events[0].Fault
		p.events = p.events[1:]
		switch f.Kind {
		case FaultNAK:
			p.faults.nak += f.count()
		case FaultNoACK:
			p.faults.ignore += f.count()
		case FaultBadCRC:
			p.faults.badCRC += f.count()
		case FaultSlowACK:
			slow += f.Delay
		case FaultNoise:
			noise = append(noise, mustHex(f.Hex)...)
		case FaultUnplug:
			unplug = f.Delay
		}
	}
	ignore, nak := p.faults.ignore > 0, false
	if ignore {
		p.faults.ignore--
	} else if p.faults.nak > 0 {
		p.faults.nak--
		nak = true
	}
	p.mu.Unlock()

	switch {
	case unplug > 0:
		return false, s.unplug(ctx, id, unplug)
	case len(noise) > 0:
		p.logf("fault noise: %d bytes sent", len(noise))
		if err := s.write(noise); err != nil {
			return false, err
		}
	}
	switch {
	case ignore:
		p.logf("%s: fault no_ack: packet ignored", id)
		return false, nil
	case nak:
		p.logf("%s: fault nak -> NAK", id)
		return false, s.write([]byte{abecs.NAK})
	case slow > 0:
		p.logf("%s: fault slow_ack: ACK in %v", id, slow)
		aborted, err := s.sleep(ctx, slow)
		return !aborted && err == nil, err
	}
	return true, nil
}

// unplug makes the pad vanish for d: under ServeDevice the session ends so
// that the port is closed; under Serve the pad ignores the line.
func (s *session) unplug(ctx context.Context, id string, d time.Duration) error {
	s.last = nil
	if s.device {
		s.pad.logf("%s: fault unplug", id)
		return &unplugged{d: d}
	}
	s.pad.logf("%s: fault unplug: line ignored for %v", id, d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			s.pad.logf("plugged in again")
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.readErr:
			return fmt.Errorf("padsim: read: %w", err)
		case <-s.events:
		}
	}
}

// command handles one accepted command. aborted is true when the host sent
// CAN meanwhile (EOT has been sent).
func (s *session) command(ctx context.Context, cmd abecs.Command) (resp abecs.Response, aborted bool, err error) {
	if d := s.pad.takeDelays(); d > 0 {
		s.pad.logf("%s: delay %v", cmd.ID, d)
		if aborted, err := s.sleep(ctx, d); aborted || err != nil {
			return abecs.Response{}, aborted, err
		}
	}
	return s.pad.handle(cmd), false, nil
}

// sleep waits d, answering CAN with EOT (and returning aborted) meanwhile.
func (s *session) sleep(ctx context.Context, d time.Duration) (aborted bool, err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		case err := <-s.readErr:
			return false, fmt.Errorf("padsim: read: %w", err)
		case ev := <-s.events:
			if s.pad.silent.Load() {
				continue // heard by nobody
			}
			switch ev.Kind {
			case abecs.KindCAN:
				s.pad.logf("CAN -> EOT (command abandoned)")
				return true, s.write([]byte{abecs.EOT})
			case abecs.KindPacket:
				s.pad.logf("packet while busy -> ignored")
			}
		}
	}
}
