// Package padsim is the PIN pad side of the ABECS link: a scripted,
// simulated PIN pad that answers OPN, CLO, GIN, DSP, CKE, GCR (magnetic
// stripe and EMV chip), GPN, GOC and FNC over any byte stream, normally a
// pseudo-terminal, and injects link faults on cue. cmd/pinpad-sim is a thin
// main over it, and tests and demos run it in-process.
//
// # Basics
//
//	script, _ := padsim.ParseScript([]byte(`{"events":[{"swipe":{...}},{"pin":"1234"}]}`))
//	pad, err := padsim.New(script, &padsim.Options{BDK: bdk, KSN: ksn})
//	port, _ := abecs.OpenSerial(path, 0)
//	defer port.Close()
//	err = pad.Serve(ctx, port) // until ctx is done or the port fails
//
// ServeDevice does the same over a port it opens itself, so that an unplug
// fault can close the port and open it again.
//
// # Behaviour
//
// The pad ACKs every packet that has a good CRC and parses as an ABECS
// command, NAKs every other packet, resends its last response when NAKed (at
// most 3 sends in all) and answers CAN with EOT, abandoning the command in
// progress. Then, by command:
//
//   - OPN, DSP: always succeed (000); the display text is logged.
//   - CLO: succeeds and ends the card session (the chip state and the
//     fallback flag are cleared).
//   - GIN (acquirer index 00): the pad's identity (Options.Serial); other
//     indexes answer 011.
//   - GCR: a chip card inserted by an earlier CKE answers 000 with its data.
//     Otherwise GCR takes the next script event: a swipe answers 000 with
//     the tracks (chip status 1 if a chip fault came before it), an insert
//     answers 000 with the chip card's data (card type 03), chip_fault
//     answers 060 (mute) or 076 (fallback), cancel 013, timeout 012.
//   - GPN: takes the next event. A PIN answers 000 with the ISO 9564 format 0
//     block for that PIN and the PAN of the request, encrypted under the next
//     TDES DUKPT PIN key, and its 10-byte KSN; a pad with an AES DUKPT key
//     (Options.KeyType) answers the format 4 block under the next AES DUKPT
//     PIN key and its 12-byte KSN instead. Cancel answers 013, timeout 012; a
//     PIN outside the requested length bounds answers 040 and is left in
//     place. A key index other than Options.KeyIndex (when set), or a method
//     that is not the key's (3 for TDES, 4 for AES), answers 042 and takes no
//     event.
//   - GOC: runs on the card GCR returned (010 without one). The card's
//     Decision gives the first cryptogram (online: ARQC; an offline-only
//     request turns it into a decline). A card with OnlinePIN going online
//     takes the next event: a PIN is encrypted as for GPN (with the card's
//     PAN; a PIN method that is not the key's answers 042),
//     cancel answers 013, timeout 012, remove 043 (the card pulled
//     during PIN entry). A card without an online PIN takes no event. The response carries the requested tags the
//     card and the pad's tables know (Options.Currency, Options.Country).
//   - FNC: runs after a GOC that went online (010 otherwise). A remove
//     event next answers 043 (the card pulled while the host was asked). The card's Finish decides: follow approves
//     when the host answered with response code 00, approve and decline
//     force the outcome. Issuer scripts (71, 72) get results in 9F5B.
//   - CKE: takes the next event the request enables (a key, a swipe, an
//     insert, a remove); cancel answers 013, timeout 012. Waiting for
//     removal answers at once when no remove event is next (the card is
//     taken out when asked).
//   - A malformed block answers 011; an unknown command answers ERR010.
//
// Any other event where a command needs a cardholder action answers 040
// (internal error: the script does not match the host's flow), is logged,
// and is left in place. An exhausted script answers 012 (timeout) so that
// the host never waits forever.
//
// SetSilent(true) makes the pad stop answering without closing its port, as a
// pad whose power is lost on an RS-232 line would, until SetSilent(false).
//
// Delay events at the head of the script are consumed by the next command of
// any kind: the pad sleeps for them after the ACK, before it answers. Fault
// events are consumed before the ACK (see Fault).
//
// # Caveats
//
// The simulator derives each DUKPT key from the initial key, which a
// certified pad must never keep; it holds one key, TDES or AES; its chip cryptograms are hashes, not EMV
// cryptograms. It is for tests and demos only. Its log lines show PANs
// masked (first 6, last 4) and never tracks, PINs, PIN blocks, cryptograms
// or keys.
package padsim

import (
	"context"
	"crypto/rand"
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
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// BDK is the base derivation key the pad's DUKPT initial key is derived
	// from, with KSN (TDES: 16 bytes) or AESKSN (AES: 16, 24 or 32 bytes, as
	// KeyType says). Required.
	BDK []byte
	// KSN is the initial key serial number of a TDES key; the pad's initial
	// key is dukpt.TDESInitialKey(BDK, KSN), and its counter is the last
	// counter used (0: none yet). Default: the zero KSN.
	KSN dukpt.KSN
	// KeyType is the pad's DUKPT key. Default 0 (or dukpt.KeyTDES2): TDES
	// DUKPT (ANSI X9.24-1), ISO 9564 format 0 PIN blocks. dukpt.KeyAES128,
	// KeyAES192 or KeyAES256: AES DUKPT (ANSI X9.24-3) with a BDK of that
	// type, format 4 PIN blocks under PIN encryption keys of the same type.
	KeyType dukpt.KeyType
	// AESKSN is the initial KSN of an AES key: the initial key ID and the last
	// counter used (0: none yet); the pad's initial key is
	// dukpt.AESInitialKey(BDK, AESKSN.InitialKeyID()). Default: the zero KSN.
	AESKSN dukpt.AESKSN
	// KeyIndex is the DUKPT slot (1-99) the pad's key sits in; GPN naming
	// another slot answers 042 (key missing). Default 0: any slot is
	// accepted.
	KeyIndex int
	// Logf receives one line per command handled, with card data masked.
	// Default: discard.
	Logf func(format string, args ...any)
	// StatePath is a file in which the pad keeps its DUKPT counter across
	// runs: it is read by New and rewritten (atomically) before every PIN
	// block leaves the pad (for an AES key, before the key is derived: a
	// dukpt.FileStore). It holds the KSN in hexadecimal: 20 digits for TDES,
	// 24 for AES. Default "": the counter lives in memory only.
	StatePath string
	// Currency and Country are the ISO 4217 currency and ISO 3166 country
	// numeric codes (3 digits) of the pad's EMV tables: tags 5F2A and 9F1A.
	// Default "978" (EUR) and "250".
	Currency, Country string
	// Serial is the pad's serial number (GIN, and tag 9F1E's first 8
	// characters), at most 20 printable characters. Default "PADSIM0001".
	Serial string
	// Now gives the date of the chip data (tag 9A). Default time.Now.
	Now func() time.Time
	// Contactless gives the pad a contactless reader: GIN reports it ("C"),
	// and a GCR with contactless on takes tap events. Default false: a tap
	// event answers 040 (the script does not match the pad).
	Contactless bool
	// CtlsLimits apply to a tap whose AID has no record in the pad's loaded
	// EMV tables. Default: no limits.
	CtlsLimits CtlsLimits
	// BytesPerSecond throttles the pad's side of the link to that many bytes
	// a second each way (1920 models 19200 baud 8N1). Default 0: as fast as
	// the port goes (a pty ignores baud rates).
	BytesPerSecond int
	// Firmware answers the firmware loading commands (FWI, FWS, FWB, FWE). Default nil:
	// they answer ERR010, as on a pad without a loader.
	Firmware *Firmware
}

// Pad is a simulated PIN pad. Serve must not run twice at once (it returns
// ErrServing); KSN and Remaining are safe to call concurrently with Serve.
type Pad struct {
	logf      func(format string, args ...any)
	keyIndex  int
	statePath string
	currency  string
	country   string
	serial    string
	now       func() time.Time
	serving   atomic.Bool
	silent    atomic.Bool
	firmware  *Firmware
	ctls      bool
	rate      int
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
	commands  atomic.Int64
	// pendingGCR is the GCR answered 020, which a bare GCR resumes; only
	// the serving goroutine touches it.
	pendingGCR *abecs.CardRequest

	mu         sync.Mutex
	tables     tables
	ctlsLimits CtlsLimits
	events     []Event
	orig       *dukpt.Originator    // TDES key; nil with an AES one
	aesOrig    *dukpt.AESOriginator // AES key; nil with a TDES one
	chip       chipState
	faults     faultState
}

// faultState is what fault events left to do; guarded by Pad.mu.
type faultState struct {
	nak, ignore, badCRC int
}

func digits3(s, name, def string) (string, error) {
	if s == "" {
		return def, nil
	}
	if len(s) != 3 || strings.Trim(s, "0123456789") != "" {
		return "", fmt.Errorf("padsim: %s %q is not 3 digits", name, s)
	}
	return s, nil
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
	cur, err := digits3(opts.Currency, "currency", "978")
	if err != nil {
		return nil, err
	}
	country, err := digits3(opts.Country, "country", "250")
	if err != nil {
		return nil, err
	}
	serial := opts.Serial
	if serial == "" {
		serial = "PADSIM0001"
	}
	if len(serial) > 20 || !printable(serial) {
		return nil, errors.New("padsim: serial must be at most 20 printable characters")
	}
	var events []Event
	if script != nil {
		if err := script.Validate(); err != nil {
			return nil, err
		}
		events = append(events, script.Events...)
	}
	var orig *dukpt.Originator
	var aesOrig *dukpt.AESOriginator
	switch kt := opts.KeyType; {
	case kt == 0 || kt == dukpt.KeyTDES2:
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
		orig, err = dukpt.NewOriginator(ipek, ksn)
		clear(ipek)
		if err != nil {
			return nil, fmt.Errorf("padsim: %w", err)
		}
	case kt.IsAES():
		if len(opts.BDK) != kt.Len() {
			return nil, fmt.Errorf("padsim: an %v DUKPT key needs a %d-byte BDK, got %d bytes", kt, kt.Len(), len(opts.BDK))
		}
		ik, err := dukpt.AESInitialKey(opts.BDK, opts.AESKSN.InitialKeyID())
		if err != nil {
			return nil, fmt.Errorf("padsim: initial key: %w", err)
		}
		var oo *dukpt.OriginatorOptions
		if opts.StatePath != "" {
			oo = &dukpt.OriginatorOptions{Store: dukpt.NewFileStore(opts.StatePath)}
		}
		aesOrig, err = dukpt.NewAESOriginator(ik, opts.AESKSN, oo)
		clear(ik)
		if err != nil {
			return nil, fmt.Errorf("padsim: state file %s: %w", opts.StatePath, err)
		}
	default:
		return nil, fmt.Errorf("padsim: key type %v: want TDES (2TDEA) or AES-128, AES-192 or AES-256", kt)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	p := &Pad{
		logf: logf, keyIndex: opts.KeyIndex, statePath: opts.StatePath, currency: cur, country: country,
		serial: serial, now: now, events: events, orig: orig, aesOrig: aesOrig, firmware: opts.Firmware,
		ctls: opts.Contactless, rate: opts.BytesPerSecond, ctlsLimits: opts.CtlsLimits,
	}
	if p.tables, err = loadTables(p.tablesPath()); err != nil {
		return nil, err
	}
	return p, nil
}

// KSN returns the KSN of the last TDES PIN key used, or the initial KSN if
// none; the zero KSN for a pad with an AES key (see AESKSN).
func (p *Pad) KSN() dukpt.KSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.orig == nil {
		return dukpt.KSN{}
	}
	return p.orig.KSN()
}

// AESKSN returns the KSN of the last AES PIN key used, or the initial KSN if
// none; the zero KSN for a pad with a TDES key.
func (p *Pad) AESKSN() dukpt.AESKSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.aesOrig == nil {
		return dukpt.AESKSN{}
	}
	return p.aesOrig.KSN()
}

// KeySerial describes the pad's key for a log line: its type and current KSN.
func (p *Pad) KeySerial() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.aesOrig != nil {
		return fmt.Sprintf("%v DUKPT, KSN %v", p.aesOrig.KeyType(), p.aesOrig.KSN())
	}
	return fmt.Sprintf("TDES DUKPT, KSN %v", p.orig.KSN())
}

// Remaining returns how many script events are left.
func (p *Pad) Remaining() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// SetSilent makes the pad stop answering (true) or answer again (false).
// While silent the pad keeps its port open and reads it, but sends nothing:
// no ACK, NAK, EOT or response, so that the host sees a pad without power
// behind a cable that is still there. A command already accepted when the
// pad goes silent gets no response either. The script is not touched:
// nothing is consumed while silent. Safe to call concurrently with Serve.
func (p *Pad) SetSilent(silent bool) {
	if p.silent.Swap(silent) != silent {
		if silent {
			p.logf("silent: the pad stops answering")
		} else {
			p.logf("silent no more: the pad answers again")
		}
	}
}

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
	p.commands.Add(1)
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
		if cmd.ID == abecs.CmdClose {
			p.endSession()
		}
		p.logf("%s %q %q -> 000", cmd.ID, l1, l2)
		return status(cmd.ID, abecs.StatusOK)
	case abecs.CmdInfo:
		return p.info(cmd)
	case abecs.CmdEvent:
		return p.waitEvent(cmd)
	case abecs.CmdGetCard:
		return p.getCard(cmd)
	case abecs.CmdGetPIN:
		return p.getPIN(cmd)
	case abecs.CmdGoChip:
		return p.goChip(cmd)
	case abecs.CmdFinChip:
		return p.finishChip(cmd)
	}
	if r, ok := p.tableCommand(cmd); ok {
		return r
	}
	if p.firmware != nil {
		if r, ok := p.firmware.Handle(cmd); ok {
			return r
		}
	}
	p.logf("%q: unknown command -> ERR010", cmd.ID)
	return status(abecs.CmdError, abecs.StatusInvalidCall)
}

// cardholder answers the events any cardholder command shares: none left,
// cancel, timeout. ok is false when one of them answered.
func (p *Pad) cardholder(id, what string, ev Event, have bool) (abecs.Response, bool) {
	switch {
	case !have:
		p.logf("%s: script exhausted -> 012", what)
		return status(id, abecs.StatusTimeout), false
	case ev.Cancel:
		p.consume()
		p.logf("%s: cancel -> 013", what)
		return status(id, abecs.StatusCancelled), false
	case ev.Timeout:
		p.consume()
		p.logf("%s: timeout -> 012", what)
		return status(id, abecs.StatusTimeout), false
	}
	return abecs.Response{}, true
}

func (p *Pad) getCard(cmd abecs.Command) abecs.Response {
	var req abecs.CardRequest
	switch {
	case len(cmd.Blocks) == 0 && p.pendingGCR != nil:
		req = *p.pendingGCR // the bare GCR that resumes after 020
	case len(cmd.Blocks) != 1:
		p.logf("GCR with %d blocks -> 011", len(cmd.Blocks))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	default:
		var err error
		if req, err = abecs.ParseCardRequest(cmd.Blocks[0]); err != nil {
			p.logf("GCR: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
	}
	p.pendingGCR = nil
	what := fmt.Sprintf("GCR amount %d", req.AmountMinor)
	if req.Contactless && p.ctls {
		what += " ctls"
	}
	if v := p.TableVersion(); req.TableVersion != v {
		p.pendingGCR = &req
		p.logf("%s: table version %q, the pad has %q -> 020", what, req.TableVersion, v)
		return status(cmd.ID, abecs.StatusTableVersion)
	}
	if c := p.insertedCard(); c != nil {
		return p.chipCardData(cmd.ID, what, c)
	}
	ev, ok := p.peek()
	if resp, ok := p.cardholder(cmd.ID, what, ev, ok); !ok {
		return resp
	}
	switch {
	case ev.Tap != nil && req.Contactless && p.ctls:
		p.consume()
		return p.tapCard(cmd.ID, what, ev.Tap, req.AmountMinor)
	case ev.Insert != nil:
		p.consume()
		p.insert(ev.Insert)
		return p.chipCardData(cmd.ID, what, ev.Insert)
	case ev.ChipFault != "":
		p.consume()
		p.chipFailed()
		code := abecs.StatusFallback
		if ev.ChipFault == ChipMute {
			code = abecs.StatusMuteCard
		}
		p.logf("%s: chip fault %s -> %03d", what, ev.ChipFault, code)
		return status(cmd.ID, code)
	case ev.Swipe == nil:
		p.logf("%s: next script event is %v, not a card or cancel -> 040", what, ev)
		return status(cmd.ID, abecs.StatusInternal)
	}
	fallback := p.takeFallback()
	cd := abecs.NewMagstripeCard(ev.Swipe.Track1, ev.Swipe.Track2)
	note := ""
	if fallback {
		cd, note = abecs.NewFallbackCard(ev.Swipe.Track1, ev.Swipe.Track2), " (fallback)"
	}
	block, err := abecs.AppendCardData(nil, cd)
	if err != nil {
		p.logf("%s: %v: %v -> 040", what, ev, strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInternal)
	}
	p.consume()
	p.logf("%s: %v%s -> 000", what, ev, note)
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
	if aes := p.aesOrig != nil; req.AES != aes {
		p.logf("%s: %s DUKPT asked, the pad's key is %s -> 042", what, dukptName(req.AES), dukptName(aes))
		return status(cmd.ID, abecs.StatusKeyMissing)
	}
	enc, code := p.enterPIN(what, req.PAN, req.MinLen, req.MaxLen)
	if code != abecs.StatusOK {
		return status(cmd.ID, code)
	}
	defer enc.clear()
	var b []byte
	if req.AES {
		b = abecs.AppendPINResponseAES(nil, [16]byte(enc.block), [12]byte(enc.ksn))
	} else {
		b = abecs.AppendPINResponse(nil, [8]byte(enc.block), [10]byte(enc.ksn))
	}
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{b}}
}

func dukptName(aes bool) string {
	if aes {
		return "AES"
	}
	return "TDES"
}

// encryptedPIN is a PIN block as it leaves the pad: 8 bytes and a 10-byte KSN
// (TDES, format 0) or 16 bytes and a 12-byte KSN (AES, format 4).
type encryptedPIN struct {
	block, ksn []byte
}

func (e encryptedPIN) clear() { clear(e.block) }

// enterPIN takes the next event as a PIN entry for pan and returns the
// encrypted block and its KSN, or the status to answer.
func (p *Pad) enterPIN(what, pan string, minLen, maxLen int) (encryptedPIN, int) {
	ev, ok := p.peek()
	if resp, ok := p.cardholder("", what, ev, ok); !ok {
		return encryptedPIN{}, resp.Status
	}
	switch {
	case ev.Remove:
		p.consume()
		p.removeCard()
		p.logf("%s: card removed -> 043", what)
		return encryptedPIN{}, abecs.StatusNoCard
	case ev.PIN == "":
		p.logf("%s: next script event is %v, not a pin or cancel -> 040", what, ev)
		return encryptedPIN{}, abecs.StatusInternal
	case len(ev.PIN) < minLen || len(ev.PIN) > maxLen:
		p.logf("%s: scripted pin length is outside %d-%d -> 040", what, minLen, maxLen)
		return encryptedPIN{}, abecs.StatusInternal
	}
	enc, err := p.encrypt(ev.PIN, pan)
	if errors.Is(err, pinblock.ErrPIN) || errors.Is(err, pinblock.ErrPAN) {
		p.logf("%s: %v -> 011", what, err)
		return encryptedPIN{}, abecs.StatusInvalidParameter
	}
	if err != nil {
		p.logf("%s: %v -> 040", what, err)
		return encryptedPIN{}, abecs.StatusInternal
	}
	p.consume()
	p.logf("%s: pin -> KSN %X -> 000", what, enc.ksn)
	return enc, abecs.StatusOK
}

// encrypt builds the PIN block for pin and pan in the key's format and
// encrypts it under the next DUKPT PIN key, after recording the new counter
// in the state file.
func (p *Pad) encrypt(pin, pan string) (encryptedPIN, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.aesOrig != nil {
		return p.encryptAES(pin, pan)
	}
	clearBlock, err := pinblock.EncodeFormat0(pin, pan)
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(clearBlock[:])
	key, ksn, err := p.orig.NextPINKey()
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(key)
	if p.statePath != "" {
		if err := saveState(p.statePath, ksn); err != nil {
			return encryptedPIN{}, err
		}
	}
	block, err := pinblock.EncryptTDES(key, clearBlock)
	if err != nil {
		return encryptedPIN{}, err
	}
	return encryptedPIN{block: block[:], ksn: ksn[:]}, nil
}

// encryptAES is encrypt for an AES key: an ISO 9564 format 4 block under the
// next AES DUKPT PIN encryption key (of the key's own type). The originator's
// Store saves the counter before the key is derived. The caller holds p.mu.
func (p *Pad) encryptAES(pin, pan string) (encryptedPIN, error) {
	if _, err := pinblock.Format4PANField(pan); err != nil || len(pan) < 12 {
		return encryptedPIN{}, pinblock.ErrPAN
	}
	field, err := pinblock.Encode(pinblock.Format4, pin, "", rand.Reader)
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(field)
	key, ksn, err := p.aesOrig.NextPINKey(p.aesOrig.KeyType())
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(key)
	block, err := pinblock.EncryptFormat4(key, [16]byte(field), pan)
	if err != nil {
		return encryptedPIN{}, err
	}
	return encryptedPIN{block: block[:], ksn: ksn[:]}, nil
}
