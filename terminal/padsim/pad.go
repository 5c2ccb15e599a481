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
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/terminal/abecs"
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
