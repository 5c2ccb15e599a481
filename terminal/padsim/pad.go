// Package padsim is the PIN pad side of the ABECS link: a scripted,
// simulated PIN pad that answers OPN, DSP, GCR, GPN and CLO over any byte
// stream, normally a pseudo-terminal. cmd/pinpad-sim is a thin main over it,
// and tests and demos run it in-process.
//
// # Basics
//
//	script, _ := padsim.ParseScript([]byte(`{"events":[{"swipe":{...}},{"pin":"1234"}]}`))
//	pad, err := padsim.New(script, &padsim.Options{BDK: bdk, KSN: ksn})
//	port, _ := abecs.OpenSerial(path, 0)
//	defer port.Close()
//	err = pad.Serve(ctx, port) // until ctx is done or the port fails
//
// # Behaviour
//
// The pad ACKs every packet that has a good CRC and parses as an ABECS
// command, NAKs every other packet, resends its last response when NAKed (at
// most 3 sends in all) and answers CAN with EOT, abandoning the command in
// progress. Then, by command:
//
//   - OPN, DSP, CLO: always succeed (000); the display text is logged.
//   - GCR: takes the next script event. A swipe answers 000 with the tracks,
//     cancel answers 013. Any other event answers 040 (internal error: the
//     script does not match the host's flow), is logged, and is left in
//     place. An exhausted script answers 012 (timeout) so the host never
//     waits forever.
//   - GPN (method 3 only): takes the next event. A PIN answers 000 with the
//     ISO 9564 format 0 block for that PIN and the PAN of the request,
//     encrypted under the next DUKPT PIN key, and its KSN; cancel answers
//     013; a swipe, or a PIN outside the requested length bounds, answers 040
//     and is left in place; an exhausted script answers 012. A key index
//     other than Options.KeyIndex (when set) answers 042.
//   - A malformed block answers 011; an unknown command answers ERR010.
//
// Delay events at the head of the script are consumed by the next command of
// any kind: the pad sleeps for them after the ACK, before it answers.
//
// # Caveats
//
// The simulator derives each DUKPT key from the initial key, which a
// certified pad must never keep; it is for tests and demos only. Its log lines
// show PANs masked (first 6, last 4) and never tracks, PINs, PIN blocks or
// keys.
package padsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/card"
)

// ErrServing is returned by Serve when the pad is already serving a port.
var ErrServing = errors.New("padsim: pad is already serving")

// Options configures a Pad. New copies what it needs; the Options are not
// used afterwards.
type Options struct {
	// BDK is the base derivation key (16 bytes) the pad's DUKPT initial key
	// is derived from, with KSN. Required.
	BDK []byte
	// KSN is the initial key serial number; the pad's initial key is
	// dukpt.TDESInitialKey(BDK, KSN), and its counter is the last counter
	// used (0: none yet). Default: the zero KSN.
	KSN dukpt.KSN
	// KeyIndex is the DUKPT slot (1-99) the pad's key sits in; GPN naming
	// another slot answers 042 (key missing). Default 0: any slot is
	// accepted.
	KeyIndex int
	// Logf receives one line per command handled, with card data masked.
	// Default: discard.
	Logf func(format string, args ...any)
	// StatePath is a file in which the pad keeps its DUKPT counter across
	// runs: it is read by New and rewritten (atomically) before every PIN
	// block leaves the pad. Default "": the counter lives in memory only.
	StatePath string
}

// Pad is a simulated PIN pad. Serve must not run twice at once (it returns
// ErrServing); KSN and Remaining are safe to call concurrently with Serve.
type Pad struct {
	logf      func(format string, args ...any)
	keyIndex  int
	statePath string
	serving   atomic.Bool

	mu     sync.Mutex
	events []Event
	orig   *dukpt.Originator
}

// New returns a pad that plays script (which it copies; nil means an empty
// script) with the DUKPT key of opts.
func New(script *Script, opts *Options) (*Pad, error) {
	if opts == nil || len(opts.BDK) == 0 {
		return nil, errors.New("padsim: Options.BDK is required")
	}
	if opts.KeyIndex < 0 || opts.KeyIndex > 99 {
		return nil, fmt.Errorf("padsim: key index %d is not 0-99", opts.KeyIndex)
	}
	var events []Event
	if script != nil {
		if err := script.Validate(); err != nil {
			return nil, err
		}
		events = append(events, script.Events...)
	}
	ksn := opts.KSN
	if opts.StatePath != "" {
		saved, err := loadState(opts.StatePath, ksn)
		if err != nil {
			return nil, err
		}
		ksn = saved
	}
	ipek, err := dukpt.TDESInitialKey(opts.BDK, ksn)
	if err != nil {
		return nil, fmt.Errorf("padsim: initial key: %w", err)
	}
	orig, err := dukpt.NewOriginator(ipek, ksn)
	clear(ipek)
	if err != nil {
		return nil, fmt.Errorf("padsim: %w", err)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Pad{logf: logf, keyIndex: opts.KeyIndex, statePath: opts.StatePath, events: events, orig: orig}, nil
}

// KSN returns the KSN of the last PIN key used, or the initial KSN if none.
func (p *Pad) KSN() dukpt.KSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.orig.KSN()
}

// Remaining returns how many script events are left.
func (p *Pad) Remaining() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// Serve answers commands read from port until ctx is done (it returns
// ctx.Err()) or reading or writing port fails. Reads that return
// abecs.ErrTimeout are retried.
//
// Serve reads port on a goroutine of its own, which it cannot interrupt: when
// Serve returns because ctx is done, that goroutine ends at the port's next
// read error, so close the port after Serve returns.
func (p *Pad) Serve(ctx context.Context, port io.ReadWriter) error {
	if !p.serving.CompareAndSwap(false, true) {
		return ErrServing
	}
	defer p.serving.Store(false)

	s := &session{pad: p, port: port, events: make(chan abecs.Event), readErr: make(chan error, 1), stop: make(chan struct{})}
	defer close(s.stop)
	go s.read()
	for {
		ev, err := s.next(ctx)
		if err != nil {
			return err
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
		return s.write(s.last)
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
	s.sends = 1
	return s.write(s.last)
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

// takeDelays removes the delay events at the head of the script and returns
// their sum.
func (p *Pad) takeDelays() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var d time.Duration
	for len(p.events) > 0 && p.events[0].Delay > 0 {
		d += p.events[0].Delay
		p.events = p.events[1:]
	}
	return d
}

// peek returns the next event, if any.
func (p *Pad) peek() (Event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) == 0 {
		return Event{}, false
	}
	return p.events[0], true
}

func (p *Pad) consume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) > 0 {
		p.events = p.events[1:]
	}
}

func status(id string, code int) abecs.Response { return abecs.Response{ID: id, Status: code} }

func (p *Pad) handle(cmd abecs.Command) abecs.Response {
	switch cmd.ID {
	case abecs.CmdOpen:
		if len(cmd.Blocks) != 0 {
			p.logf("OPN with parameters -> 011")
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
		p.logf("OPN -> 000")
		return status(cmd.ID, abecs.StatusOK)
	case abecs.CmdDisplay, abecs.CmdClose:
		if len(cmd.Blocks) != 1 {
			p.logf("%s with %d blocks -> 011", cmd.ID, len(cmd.Blocks))
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
		l1, l2, err := abecs.ParseDisplay(cmd.Blocks[0])
		if err != nil {
			p.logf("%s: malformed text -> 011", cmd.ID)
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
		p.logf("%s %q %q -> 000", cmd.ID, l1, l2)
		return status(cmd.ID, abecs.StatusOK)
	case abecs.CmdGetCard:
		return p.getCard(cmd)
	case abecs.CmdGetPIN:
		return p.getPIN(cmd)
	}
	p.logf("%q: unknown command -> ERR010", cmd.ID)
	return status(abecs.CmdError, abecs.StatusInvalidCall)
}

func (p *Pad) getCard(cmd abecs.Command) abecs.Response {
	if len(cmd.Blocks) != 1 {
		p.logf("GCR with %d blocks -> 011", len(cmd.Blocks))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	req, err := abecs.ParseCardRequest(cmd.Blocks[0])
	if err != nil {
		p.logf("GCR: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	ev, ok := p.peek()
	switch {
	case !ok:
		p.logf("GCR amount %d: script exhausted -> 012", req.AmountMinor)
		return status(cmd.ID, abecs.StatusTimeout)
	case ev.Cancel:
		p.consume()
		p.logf("GCR amount %d: cancel -> 013", req.AmountMinor)
		return status(cmd.ID, abecs.StatusCancelled)
	case ev.Swipe == nil:
		p.logf("GCR amount %d: next script event is %v, not a swipe or cancel -> 040", req.AmountMinor, ev)
		return status(cmd.ID, abecs.StatusInternal)
	}
	block, err := abecs.AppendCardData(nil, abecs.NewMagstripeCard(ev.Swipe.Track1, ev.Swipe.Track2))
	if err != nil {
		p.logf("GCR amount %d: %v: %v -> 040", req.AmountMinor, ev, strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInternal)
	}
	p.consume()
	p.logf("GCR amount %d: %v -> 000", req.AmountMinor, ev)
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{block}}
}

func (p *Pad) getPIN(cmd abecs.Command) abecs.Response {
	if len(cmd.Blocks) != 1 {
		p.logf("GPN with %d blocks -> 011", len(cmd.Blocks))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	req, err := abecs.ParsePINRequest(cmd.Blocks[0])
	if err != nil {
		p.logf("GPN: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	what := fmt.Sprintf("GPN key %02d PAN %s prompt %q %q", req.KeyIndex, card.MaskPAN(req.PAN), req.Line1, req.Line2)
	if p.keyIndex != 0 && req.KeyIndex != p.keyIndex {
		p.logf("%s: the pad's key is in slot %02d -> 042", what, p.keyIndex)
		return status(cmd.ID, abecs.StatusKeyMissing)
	}
	ev, ok := p.peek()
	switch {
	case !ok:
		p.logf("%s: script exhausted -> 012", what)
		return status(cmd.ID, abecs.StatusTimeout)
	case ev.Cancel:
		p.consume()
		p.logf("%s: cancel -> 013", what)
		return status(cmd.ID, abecs.StatusCancelled)
	case ev.PIN == "":
		p.logf("%s: next script event is %v, not a pin or cancel -> 040", what, ev)
		return status(cmd.ID, abecs.StatusInternal)
	case len(ev.PIN) < req.MinLen || len(ev.PIN) > req.MaxLen:
		p.logf("%s: scripted pin length is outside %d-%d -> 040", what, req.MinLen, req.MaxLen)
		return status(cmd.ID, abecs.StatusInternal)
	}
	clearBlock, err := pinblock.EncodeFormat0(ev.PIN, req.PAN)
	if err != nil {
		p.logf("%s: %v -> 011", what, err)
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	defer clear(clearBlock[:])
	block, ksn, err := p.encrypt(clearBlock)
	if err != nil {
		p.logf("%s: %v -> 040", what, err)
		return status(cmd.ID, abecs.StatusInternal)
	}
	p.consume()
	p.logf("%s: pin -> KSN %v -> 000", what, ksn)
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{abecs.AppendPINResponse(nil, block, ksn)}}
}

// encrypt encrypts clearBlock under the next DUKPT PIN key, after recording
// the new counter in the state file.
func (p *Pad) encrypt(clearBlock [8]byte) ([8]byte, dukpt.KSN, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key, ksn, err := p.orig.NextPINKey()
	if err != nil {
		return [8]byte{}, dukpt.KSN{}, err
	}
	defer clear(key)
	if p.statePath != "" {
		if err := saveState(p.statePath, ksn); err != nil {
			return [8]byte{}, dukpt.KSN{}, err
		}
	}
	block, err := pinblock.EncryptTDES(key, clearBlock)
	if err != nil {
		return [8]byte{}, dukpt.KSN{}, err
	}
	return block, ksn, nil
}
