package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Slot names.
const (
	SlotA = "a"
	SlotB = "b"
)

// Slot states.
const (
	SlotEmpty      = "empty"      // nothing installed
	SlotInstalling = "installing" // an image is being written; never started
	SlotReady      = "ready"      // holds a verified image (or the factory firmware)
)

// Errors of the Manager. Verification errors are listed with ErrFormat.
var (
	// ErrLocked: another process (or Manager) has the state directory open.
	ErrLocked = errors.New("firmware state directory is in use by another process")
	// ErrBusy: an install or PIN pad transfer is already running; wait for
	// it to end.
	ErrBusy = errors.New("another firmware operation is in progress")
	// ErrNotConfirmed: the active slot has not passed posd's self-test yet.
	// Installing now would overwrite the only known-good slot: restart posd
	// so that it confirms the new slot, or roll back first.
	ErrNotConfirmed = errors.New("the active slot is not confirmed yet")
	// ErrNoPrevious: there is no other slot with a good image to switch to.
	ErrNoPrevious = errors.New("no other slot holds a good image")
	// ErrNoWho: the request does not say who is doing it.
	ErrNoWho = errors.New("who is required: the technician's name or id")
	// ErrState: a state file in the state directory cannot be read. The
	// error names the file.
	ErrState = errors.New("firmware state file is unreadable")
	// ErrClosed: the Manager has been closed.
	ErrClosed = errors.New("firmware manager is closed")
	// ErrSelfTest: posd's self-test failed on this start.
	ErrSelfTest = errors.New("self-test failed")
	// ErrNotBooted: Confirm or MarkBad was called before BootAttempt.
	ErrNotBooted = errors.New("BootAttempt has not been called by this process")
)

// Defaults of Options.
const (
	DefaultMaxImageSize    = 512 << 20
	DefaultMaxPadImageSize = 16 << 20
	DefaultMaxBootAttempts = 3
	DefaultFactoryVersion  = "0.0.0"
	defaultBufferSize      = 1 << 20
)

// Options configures Open. Open copies them; they are not used afterwards,
// so an Options value is safe for concurrent use.
type Options struct {
	// TrustedRoot is the root metadata file (N.root.json, as fwtool writes
	// it) built into posd: the keys that may sign firmware, by role. It must
	// be signed by a threshold of its own root keys. When the state
	// directory already trusts a newer root (rotated through signed root
	// versions), that one is used. Required.
	TrustedRoot []byte
	// Model is this terminal's hardware model (see ValidModel). A system
	// image must list it. Required.
	Model string
	// FactoryVersion is the firmware version in slot a when Open finds an
	// empty state directory: installs must be higher. Pass posd's own
	// version. Default "0.0.0".
	FactoryVersion string
	// MaxImageSize caps a system image's length in bytes, whatever its
	// signed length says. Default DefaultMaxImageSize (512 MiB).
	MaxImageSize int64
	// MaxPadImageSize caps a PIN pad image's length in bytes. Default
	// DefaultMaxPadImageSize (16 MiB).
	MaxPadImageSize int64
	// MaxBootAttempts is how many starts a newly installed slot gets to be
	// confirmed (Confirm) before BootAttempt falls back to the previous
	// slot. Default DefaultMaxBootAttempts (3).
	MaxBootAttempts int
	// HTTPClient downloads https:// sources. Default: a client with the
	// system's CA roots that refuses redirects away from https and gives up
	// when response headers take more than 30s (the body has no time
	// limit: cancel the context).
	HTTPClient *http.Client
	// Now is the clock for expiry checks and event times. Default time.Now.
	Now func() time.Time
	// OnEvent is called with each event once it is in the event log, so
	// that posd can copy it to its journal. It is called with the
	// Manager's lock held and must not call the Manager. Default: none.
	OnEvent func(Event)
}

// Slot is the state of one slot. It is a plain value, safe for concurrent
// use.
type Slot struct {
	Name        string    `json:"name"`                   // SlotA or SlotB
	State       string    `json:"state"`                  // SlotEmpty, SlotInstalling, SlotReady
	Factory     bool      `json:"factory,omitempty"`      // the factory firmware, not an image file
	Version     string    `json:"version,omitempty"`      // firmware version
	Target      string    `json:"target,omitempty"`       // image name in the bundle
	Length      int64     `json:"length,omitempty"`       // image bytes
	SHA256      string    `json:"sha256,omitempty"`       // image hash, hex
	Confirmed   bool      `json:"confirmed"`              // passed posd's self-test
	Failed      string    `json:"failed,omitempty"`       // why it was abandoned, if it was
	InstalledAt time.Time `json:"installed_at,omitzero"`  // when
	InstalledBy string    `json:"installed_by,omitempty"` // who
}

// bootState is boot.json: which slot starts and how often it has tried.
type bootState struct {
	V        int    `json:"v"`
	Active   string `json:"active"`   // the slot that starts next
	Attempts int    `json:"attempts"` // starts of Active while unconfirmed
	A        Slot   `json:"a"`
	B        Slot   `json:"b"`
}

func (b *bootState) slot(name string) *Slot {
	if name == SlotA {
		return &b.A
	}
	return &b.B
}

func other(name string) string {
	if name == SlotA {
		return SlotB
	}
	return SlotA
}

// Progress reports an install or transfer in progress. It is a plain value,
// safe for concurrent use.
type Progress struct {
	Op      string `json:"op"`      // "install", "check" or "pinpad"
	Phase   string `json:"phase"`   // "metadata", "image", "sync", "switch", "transfer", "done"
	Target  string `json:"target"`  // image name, once known
	Version string `json:"version"` // image version, once known
	Done    int64  `json:"done"`    // bytes of the image processed
	Total   int64  `json:"total"`   // bytes of the image
}

// InstallRequest asks for an install (or a check) of a bundle. It is plain
// data for one call at a time (not for concurrent use): Bundle is read once.
type InstallRequest struct {
	// Source is an https:// URL of a bundle file, a bundle directory (a USB
	// stick) or a bundle file, as seen by this process. With Bundle set it
	// only names the bundle in the event log.
	Source string
	// Bundle, when set, is the bundle as a tar stream (an upload).
	Bundle io.Reader
	// Who is the technician (or system) doing it. Required.
	Who string
	// Progress, when set, is called on Install's goroutine as work goes on.
	Progress func(Progress)
}

// Result is the outcome of an install, a check, a rollback or a PIN pad
// transfer. It is a plain value, safe for concurrent use.
type Result struct {
	Op      string `json:"op"`
	Slot    string `json:"slot,omitempty"`
	Target  string `json:"target,omitempty"`
	Version string `json:"version,omitempty"`
	From    string `json:"from,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Length  int64  `json:"length,omitempty"`
	Message string `json:"message"`
}

// Boot is what BootAttempt decided for this start. It is a plain value,
// safe for concurrent use.
type Boot struct {
	Slot      string `json:"slot"`               // the slot this start runs
	Version   string `json:"version"`            // its firmware version
	Confirmed bool   `json:"confirmed"`          // it has passed the self-test before
	Attempt   int    `json:"attempt,omitempty"`  // for an unconfirmed slot: this start's number, 1..MaxBootAttempts
	Fallback  bool   `json:"fallback,omitempty"` // this start fell back from the other slot
	Reason    string `json:"reason,omitempty"`   // why it fell back
}

// Status is what `posctl firmware status` shows. It is a plain value, safe
// for concurrent use.
type Status struct {
	Model           string    `json:"model"`
	Active          string    `json:"active"`            // the slot that starts next
	Running         string    `json:"running,omitempty"` // the slot this posd runs ("" before BootAttempt)
	Installed       string    `json:"installed"`         // the active slot's version: installs must be higher
	Attempts        int       `json:"attempts"`          // starts of the unconfirmed active slot
	MaxBootAttempts int       `json:"max_boot_attempts"`
	Slots           []Slot    `json:"slots"`
	RootVersion     int64     `json:"root_version"`             // trusted root metadata version
	TargetsVersion  int64     `json:"targets_version"`          // newest targets metadata accepted
	InProgress      *Progress `json:"in_progress,omitempty"`    // an install or transfer running now
	Last            *Event    `json:"last,omitempty"`           // the last install, fallback, rollback or transfer
	LogError        string    `json:"log_error,omitempty"`      // the event log's chain is broken
	Events          uint64    `json:"events"`                   // records in the event log
	PadVersion      string    `json:"pinpad_version,omitempty"` // after a PIN pad transfer
	PadModel        string    `json:"pinpad_model,omitempty"`   // after a PIN pad transfer
	Note            string    `json:"note,omitempty"`           // what the technician should know
}

// Manager installs firmware into two slots over a state directory and keeps
// count of starts so that an unconfirmed slot falls back. It is safe for
// concurrent use; one install or transfer runs at a time (others get
// ErrBusy), and only one Manager (in any process) may have a directory open.
type Manager struct {
	dir       string
	opts      Options
	builtin   *trust
	lock      *os.File
	failpoint func(string) // tests: called at each named step

	mu         sync.Mutex
	boot       bootState
	trust      *trust
	log        *eventLog
	running    string
	busy       bool
	progress   *Progress
	last       *Event
	padModel   string
	padVersion string
	logErr     error // the last failure to write the event log
	closed     bool
}

// Files in the state directory.
const (
	bootFile  = "boot.json"
	trustFile = "trust.json"
	lockFile  = "lock"
	padTemp   = "pinpad.img.unverified"
)

func (m *Manager) slotPath(name string) string {
	return filepath.Join(m.dir, "slot-"+name+".img")
}

// Open opens (creating) the state directory dir. A new directory starts
// with the factory firmware in slot a, confirmed. Leftovers of an install
// cut short by a crash are removed. It fails with ErrLocked when another
// Manager has dir open.
func Open(dir string, opts *Options) (*Manager, error) {
	if opts == nil {
		opts = &Options{}
	}
	o := *opts
	if len(o.TrustedRoot) == 0 {
		return nil, errors.New("firmware: Options.TrustedRoot is required")
	}
	if !ValidModel(o.Model) {
		return nil, fmt.Errorf("firmware: Options.Model %q is not a valid hardware model", clip(o.Model))
	}
	if o.FactoryVersion == "" {
		o.FactoryVersion = DefaultFactoryVersion
	}
	if _, err := ParseVersion(o.FactoryVersion); err != nil {
		return nil, fmt.Errorf("firmware: Options.FactoryVersion: %w", err)
	}
	if o.MaxImageSize <= 0 {
		o.MaxImageSize = DefaultMaxImageSize
	}
	if o.MaxPadImageSize <= 0 {
		o.MaxPadImageSize = DefaultMaxPadImageSize
	}
	if o.MaxBootAttempts <= 0 {
		o.MaxBootAttempts = DefaultMaxBootAttempts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient()
	}
	builtin, err := newTrust(o.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("firmware: Options.TrustedRoot: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	m := &Manager{dir: dir, opts: o, builtin: builtin, lock: lock, failpoint: func(string) {}}
	if err := m.load(); err != nil {
		if m.log != nil {
			m.log.close()
		}
		lock.Close()
		return nil, fmt.Errorf("firmware: %w", err)
	}
	return m, nil
}

func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s refused: only https", req.URL.Redacted())
			}
			if len(via) >= 10 {
				return errors.New("more than 10 redirects")
			}
			return nil
		},
	}
}

// load reads the state files, creating them in a new directory.
func (m *Manager) load() error {
	for _, leftover := range []string{"slot-a.img.unverified", "slot-b.img.unverified", padTemp, bootFile + ".tmp", trustFile + ".tmp"} {
		if err := os.Remove(filepath.Join(m.dir, leftover)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	log, repaired, err := openEventLog(filepath.Join(m.dir, eventsFile))
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	m.log = log
	if evs, err := log.read(0); err == nil || errors.Is(err, ErrTampered) {
		for i := len(evs) - 1; i >= 0; i-- {
			if k := evs[i].Kind; k == EventInstall || k == EventFallback || k == EventRollback || k == EventPINPad {
				m.last = &evs[i]
				break
			}
		}
	}
	if repaired > 0 {
		m.record(Event{Kind: EventLogRepair, Who: "posd", OK: true, Detail: fmt.Sprintf("cut off a torn last line of %d bytes (a power cut while writing)", repaired)})
	}

	// Trust: the newer of the stored root and the built-in one.
	var stored trust
	ok, err := readJSONFile(filepath.Join(m.dir, trustFile), &stored)
	if err != nil {
		return fmt.Errorf("%w: %w (the trusted metadata; delete it to fall back to the built-in root and forget the rollback floors)", ErrState, err)
	}
	m.trust = m.builtin
	if ok {
		t, err := newTrust(stored.RootFile)
		if err != nil {
			return fmt.Errorf("%w: %s: root: %w", ErrState, trustFile, err)
		}
		stored.root = t.root
		if stored.root.Version >= m.builtin.root.Version {
			m.trust = &stored
		} else {
			cp := *m.builtin
			cp.Timestamp, cp.Snapshot, cp.Targets = stored.Timestamp, stored.Snapshot, stored.Targets
			m.trust = &cp
		}
	}

	// Boot state.
	ok, err = readJSONFile(filepath.Join(m.dir, bootFile), &m.boot)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if !ok {
		m.boot = bootState{V: 1, Active: SlotA,
			A: Slot{Name: SlotA, State: SlotReady, Factory: true, Version: m.opts.FactoryVersion, Confirmed: true},
			B: Slot{Name: SlotB, State: SlotEmpty},
		}
		if err := m.saveBoot(m.boot); err != nil {
			return err
		}
		m.record(Event{Kind: EventInitialise, Who: "posd", OK: true, Slot: SlotA, Version: m.opts.FactoryVersion, Detail: "new state directory; the factory firmware is in slot a"})
		return nil
	}
	if err := m.boot.check(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrState, bootFile, err)
	}
	changed := false
	for _, s := range []*Slot{&m.boot.A, &m.boot.B} {
		if s.State == SlotInstalling {
			*s = Slot{Name: s.Name, State: SlotEmpty, Failed: "an install into this slot was interrupted (power cut or crash)"}
			changed = true
		}
	}
	if changed {
		return m.saveBoot(m.boot)
	}
	return nil
}

func (b *bootState) check() error {
	if b.V != 1 {
		return fmt.Errorf("layout version %d, this release reads 1: %w", b.V, ErrFormat)
	}
	if b.Active != SlotA && b.Active != SlotB {
		return fmt.Errorf("active slot %q is not a or b: %w", clip(b.Active), ErrFormat)
	}
	if b.A.Name != SlotA || b.B.Name != SlotB {
		return fmt.Errorf("slot names are not a and b: %w", ErrFormat)
	}
	for _, s := range []Slot{b.A, b.B} {
		switch s.State {
		case SlotEmpty, SlotInstalling:
		case SlotReady:
			if _, err := ParseVersion(s.Version); err != nil {
				return fmt.Errorf("slot %s: %w", s.Name, err)
			}
			if !s.Factory {
				if raw, err := hex.DecodeString(s.SHA256); err != nil || len(raw) != sha256.Size || s.Length < 1 {
					return fmt.Errorf("slot %s: image hash or length missing: %w", s.Name, ErrFormat)
				}
			}
		default:
			return fmt.Errorf("slot %s: state %q: %w", s.Name, clip(s.State), ErrFormat)
		}
	}
	if b.slot(b.Active).State != SlotReady {
		return fmt.Errorf("active slot %s is %s: %w", b.Active, b.slot(b.Active).State, ErrFormat)
	}
	return nil
}

func (m *Manager) saveBoot(b bootState) error {
	if err := writeJSONFile(filepath.Join(m.dir, bootFile), b, m.failpoint); err != nil {
		return fmt.Errorf("save %s: %w", bootFile, err)
	}
	return nil
}

// record appends ev to the event log (errors are kept out of the caller's
// way: the event log must never stop a start) and tells OnEvent. Called with
// m.mu held or before m is shared.
func (m *Manager) record(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = m.opts.Now()
	}
	written, err := m.log.append(ev)
	if err != nil {
		m.logErr = fmt.Errorf("cannot write the event log (%s %s by %s not recorded): %w", ev.Kind, ev.Version, ev.Who, err)
		return
	}
	switch written.Kind {
	case EventInstall, EventFallback, EventRollback, EventPINPad:
		m.last = &written
	}
	if m.opts.OnEvent != nil {
		m.opts.OnEvent(written)
	}
}

// Close releases the state directory.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	err := m.log.close()
	if cerr := m.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

// Status returns the slots, versions and trust state.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Status{}, ErrClosed
	}
	b := m.boot
	st := Status{
		Model: m.opts.Model, Active: b.Active, Running: m.running, Installed: b.slot(b.Active).Version,
		Attempts: b.Attempts, MaxBootAttempts: m.opts.MaxBootAttempts, Slots: []Slot{b.A, b.B},
		RootVersion: m.trust.root.Version, TargetsVersion: m.trust.Targets.Version,
		Events: m.log.seq, PadModel: m.padModel, PadVersion: m.padVersion,
	}
	if m.progress != nil {
		p := *m.progress
		st.InProgress = &p
	}
	if m.last != nil {
		e := *m.last
		st.Last = &e
	}
	if m.log.chainErr != nil {
		st.LogError = m.log.chainErr.Error()
	}
	if m.logErr != nil {
		st.LogError = strings.TrimPrefix(st.LogError+"; ", "; ") + m.logErr.Error()
	}
	act := b.slot(b.Active)
	switch {
	case !act.Confirmed:
		st.Note = fmt.Sprintf("slot %s (%s) is not confirmed: restart posd to start it; after %d starts without a passed self-test it falls back to slot %s", b.Active, act.Version, m.opts.MaxBootAttempts, other(b.Active))
	case m.running != "" && m.running != b.Active:
		st.Note = fmt.Sprintf("posd runs slot %s; slot %s starts at the next restart", m.running, b.Active)
	}
	return st, nil
}

// Events returns the event log's records after sequence number after (0:
// all). With a broken hash chain it returns the records it could read and an
// error wrapping ErrTampered.
func (m *Manager) Events(ctx context.Context, after uint64) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.log.read(after)
}

// begin marks an operation running; the caller must call end.
func (m *Manager) begin(op string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.busy {
		return ErrBusy
	}
	m.busy = true
	m.progress = &Progress{Op: op, Phase: "metadata"}
	return nil
}

func (m *Manager) end() {
	m.mu.Lock()
	m.busy = false
	m.progress = nil
	m.mu.Unlock()
}

// report records p as the progress of the running operation and passes it
// to fn.
func (m *Manager) report(fn func(Progress), p Progress) {
	m.mu.Lock()
	if m.progress != nil {
		*m.progress = p
	}
	m.mu.Unlock()
	if fn != nil {
		fn(p)
	}
}

// verified is a bundle whose metadata has been verified and whose chosen
// image is about to be read.
type verified struct {
	src    source
	trust  *trust
	target chosen
	image  io.Reader
}

// verifyBundle opens req's bundle, verifies its metadata against the
// current trust and picks the image of kind for model, newer than
// installed.
func (m *Manager) verifyBundle(ctx context.Context, req InstallRequest, kind, model string, installed Version, maxSize int64) (*verified, error) {
	m.mu.Lock()
	op := ""
	if m.progress != nil {
		op = m.progress.Op
	}
	m.mu.Unlock()
	m.report(req.Progress, Progress{Op: op, Phase: "metadata"})
	var src source
	if req.Bundle != nil {
		name := req.Source
		if name == "" {
			name = "upload"
		}
		src = newTarSource(name, req.Bundle, nil)
	} else {
		var err error
		if src, err = openSource(ctx, req.Source, m.opts.HTTPClient); err != nil {
			return nil, err
		}
	}
	meta, err := src.metadata(ctx)
	if err != nil {
		src.Close()
		return nil, err
	}
	m.mu.Lock()
	cur := m.trust
	m.mu.Unlock()
	nt, targets, err := cur.update(meta, m.opts.Now())
	if err != nil {
		src.Close()
		return nil, err
	}
	ch, err := choose(targets, kind, model, installed)
	if err != nil {
		src.Close()
		return nil, err
	}
	if ch.Target.Length > maxSize {
		src.Close()
		return nil, fmt.Errorf("%s is %d bytes, more than this terminal's cap of %d: %w", ch.Name, ch.Target.Length, maxSize, ErrLength)
	}
	listed := make(map[string]int64, len(targets.Targets))
	for n, t := range targets.Targets {
		listed[n] = t.Length
	}
	img, err := src.open(ctx, ch.Name, ch.Target.Length, listed)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &verified{src: src, trust: nt, target: ch, image: img}, nil
}

// Check verifies a bundle as Install does, reading the whole image, but
// changes nothing: no slot, no trusted metadata, no event.
func (m *Manager) Check(ctx context.Context, req InstallRequest) (Result, error) {
	if err := m.begin("check"); err != nil {
		return Result{}, err
	}
	defer m.end()
	m.mu.Lock()
	installed, _ := ParseVersion(m.boot.slot(m.boot.Active).Version)
	m.mu.Unlock()
	v, err := m.verifyBundle(ctx, req, KindSystem, m.opts.Model, installed, m.opts.MaxImageSize)
	if err != nil {
		return Result{}, fmt.Errorf("firmware: check %s: %w", sourceName(req.Source), err)
	}
	defer v.src.Close()
	ch := v.target
	p := Progress{Op: "check", Phase: "image", Target: ch.Name, Version: ch.Version.String(), Total: ch.Target.Length}
	m.report(req.Progress, p)
	buf := make([]byte, defaultBufferSize)
	err = copyVerified(ctx, nil, v.image, targetsDir+ch.Name, ch.Target.Length, ch.SHA256, buf, func(n int64) {
		p.Done = n
		m.report(req.Progress, p)
	})
	if err != nil {
		return Result{}, fmt.Errorf("firmware: check %s: %w", sourceName(req.Source), err)
	}
	p.Phase = "done"
	m.report(req.Progress, p)
	return Result{Op: "check", Target: ch.Name, Version: ch.Version.String(), From: installed.String(),
		SHA256: hex.EncodeToString(ch.SHA256[:]), Length: ch.Target.Length,
		Message: fmt.Sprintf("%s version %s verifies and may be installed over %s", ch.Name, ch.Version, installed)}, nil
}

// Install verifies a bundle and installs its system image into the inactive
// slot, then makes that slot active (unconfirmed): posd runs it from its
// next start, and falls back unless it confirms within MaxBootAttempts
// starts. A refused bundle changes nothing on disk but the event log.
//
// The steps, each safe to be cut short by a power cut: verify the
// metadata; write the image to slot-X.img.unverified while hashing it;
// fsync; check length and hash; save the new trusted metadata; mark slot X
// as being installed; rename the image into place and fsync the directory;
// switch boot.json to slot X (an atomic rename).
func (m *Manager) Install(ctx context.Context, req InstallRequest) (Result, error) {
	if strings.TrimSpace(req.Who) == "" {
		return Result{}, fmt.Errorf("firmware: install: %w", ErrNoWho)
	}
	if err := m.begin("install"); err != nil {
		return Result{}, fmt.Errorf("firmware: install: %w", err)
	}
	defer m.end()
	res, err := m.install(ctx, req)
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := Event{Kind: EventInstall, Who: req.Who, OK: err == nil, Source: sourceName(req.Source), Slot: res.Slot, Version: res.Version, From: res.From}
	if err != nil {
		ev.Detail = err.Error()
		err = fmt.Errorf("firmware: install %s: %w", sourceName(req.Source), err)
	} else {
		ev.Detail = res.Message
	}
	m.record(ev)
	return res, err
}

func (m *Manager) install(ctx context.Context, req InstallRequest) (Result, error) {
	m.mu.Lock()
	b := m.boot
	m.mu.Unlock()
	act := b.slot(b.Active)
	res := Result{Op: "install", From: act.Version}
	if !act.Confirmed {
		return res, fmt.Errorf("slot %s (%s) is not confirmed yet; installing would overwrite slot %s, the only known-good one: restart posd so that it confirms, or roll back first: %w",
			b.Active, act.Version, other(b.Active), ErrNotConfirmed)
	}
	installed, err := ParseVersion(act.Version)
	if err != nil {
		return res, err
	}
	v, err := m.verifyBundle(ctx, req, KindSystem, m.opts.Model, installed, m.opts.MaxImageSize)
	if err != nil {
		return res, err
	}
	defer v.src.Close()
	ch := v.target
	res.Target, res.Version = ch.Name, ch.Version.String()
	res.SHA256, res.Length = hex.EncodeToString(ch.SHA256[:]), ch.Target.Length
	m.failpoint("metadata-verified")

	// Write and verify the image beside the slot.
	target := other(b.Active)
	res.Slot = target
	path := m.slotPath(target)
	tmp := path + ".unverified"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return res, err
	}
	m.failpoint("unverified-created")
	p := Progress{Op: "install", Phase: "image", Target: ch.Name, Version: res.Version, Total: ch.Target.Length}
	m.report(req.Progress, p)
	buf := make([]byte, defaultBufferSize)
	midway := false
	err = copyVerified(ctx, f, v.image, targetsDir+ch.Name, ch.Target.Length, ch.SHA256, buf, func(n int64) {
		p.Done = n
		m.report(req.Progress, p)
		if !midway && n < ch.Target.Length {
			midway = true
			m.failpoint("image-writing")
		}
	})
	if err == nil {
		p.Phase = "sync"
		m.report(req.Progress, p)
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return res, err
	}
	m.failpoint("image-synced")

	// Trust the new metadata: rollback floors only rise.
	if err := writeJSONFile(filepath.Join(m.dir, trustFile), v.trust, m.failpoint); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("save %s: %w", trustFile, err)
	}
	m.mu.Lock()
	m.trust = v.trust
	m.mu.Unlock()
	m.failpoint("trust-saved")

	// The slot's old contents go: say so first.
	p.Phase = "switch"
	m.report(req.Progress, p)
	err = m.updateBoot(func(nb *bootState) { *nb.slot(target) = Slot{Name: target, State: SlotInstalling} })
	if err != nil {
		os.Remove(tmp)
		return res, err
	}
	m.failpoint("slot-marked")
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return res, m.abandonSlot(target, err)
	}
	if err := syncDir(m.dir); err != nil {
		return res, m.abandonSlot(target, err)
	}
	m.failpoint("image-renamed")

	// The switch.
	err = m.updateBoot(func(nb *bootState) {
		*nb.slot(target) = Slot{Name: target, State: SlotReady, Version: res.Version, Target: ch.Name, Length: ch.Target.Length,
			SHA256: res.SHA256, InstalledAt: m.opts.Now().UTC(), InstalledBy: req.Who}
		nb.Active, nb.Attempts = target, 0
	})
	if err != nil {
		return res, m.abandonSlot(target, err)
	}
	m.failpoint("switched")
	p.Phase = "done"
	m.report(req.Progress, p)
	res.Message = fmt.Sprintf("installed %s in slot %s; it starts when posd restarts and must pass posd's self-test within %d starts, or slot %s (%s) comes back",
		res.Version, target, m.opts.MaxBootAttempts, b.Active, act.Version)
	return res, nil
}

// updateBoot applies fn to a copy of the boot state, saves it and makes it
// current.
func (m *Manager) updateBoot(fn func(*bootState)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	nb := m.boot
	fn(&nb)
	if err := m.saveBoot(nb); err != nil {
		return err
	}
	m.boot = nb
	return nil
}

// abandonSlot marks slot empty after a failure that may have replaced its
// image, and returns cause.
func (m *Manager) abandonSlot(slot string, cause error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	nb := m.boot
	*nb.slot(slot) = Slot{Name: slot, State: SlotEmpty, Failed: "install failed: " + cause.Error()}
	if err := m.saveBoot(nb); err == nil {
		m.boot = nb
	}
	return cause
}

// checkSlot reports whether s can start: the factory firmware, or a ready
// slot whose image file has the recorded length (and, with full, the
// recorded hash).
func (m *Manager) checkSlot(s *Slot, full bool) error {
	if s.State != SlotReady {
		return fmt.Errorf("slot %s is %s", s.Name, s.State)
	}
	if s.Factory {
		return nil
	}
	f, err := os.Open(m.slotPath(s.Name))
	if err != nil {
		return fmt.Errorf("slot %s: %w", s.Name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("slot %s: %w", s.Name, err)
	}
	if fi.Size() != s.Length {
		return fmt.Errorf("slot %s: image is %d bytes, %d were installed", s.Name, fi.Size(), s.Length)
	}
	if !full {
		return nil
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, defaultBufferSize)); err != nil {
		return fmt.Errorf("slot %s: %w", s.Name, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != s.SHA256 {
		return fmt.Errorf("slot %s: image hash is not the installed one", s.Name)
	}
	return nil
}

// BootAttempt is posd's first call at each start, before its self-test. It
// counts this start against an unconfirmed active slot and decides which
// slot this start runs: the active one, or the other one when the active
// slot has used its MaxBootAttempts starts without Confirm or its image is
// damaged. The decision is on disk before BootAttempt returns, so a crash
// or power cut during the self-test still counts.
//
// An unconfirmed slot's image is hashed in full at each of its starts; a
// confirmed slot's only has its length checked.
func (m *Manager) BootAttempt(ctx context.Context) (Boot, error) {
	if err := ctx.Err(); err != nil {
		return Boot{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Boot{}, ErrClosed
	}
	nb := m.boot
	act := nb.slot(nb.Active)
	err := m.checkSlot(act, !act.Confirmed)
	if err == nil && act.Confirmed {
		m.running = nb.Active
		return Boot{Slot: nb.Active, Version: act.Version, Confirmed: true}, nil
	}
	if err == nil && nb.Attempts < m.opts.MaxBootAttempts {
		nb.Attempts++
		if err := m.saveBoot(nb); err != nil {
			return Boot{}, fmt.Errorf("firmware: boot: %w", err)
		}
		m.boot = nb
		m.running = nb.Active
		return Boot{Slot: nb.Active, Version: act.Version, Attempt: nb.Attempts}, nil
	}
	reason := fmt.Sprintf("slot %s (%s) was not confirmed within %d starts", nb.Active, act.Version, m.opts.MaxBootAttempts)
	if err != nil {
		reason = fmt.Sprintf("slot %s cannot start: %v", nb.Active, err)
	}
	prev := nb.slot(other(nb.Active))
	if perr := m.checkSlot(prev, !prev.Confirmed); perr != nil || (prev.Failed != "" && err == nil) {
		// Nowhere to go: keep starting the active slot if it can start.
		if err != nil {
			return Boot{}, fmt.Errorf("firmware: boot: %s, and slot %s cannot start either: %w", reason, prev.Name, ErrNoPrevious)
		}
		nb.Attempts++
		if err := m.saveBoot(nb); err != nil {
			return Boot{}, fmt.Errorf("firmware: boot: %w", err)
		}
		m.boot = nb
		m.running = nb.Active
		return Boot{Slot: nb.Active, Version: act.Version, Attempt: nb.Attempts, Reason: reason + "; no other slot to fall back to"}, nil
	}
	b, err := m.fallBack(&nb, "posd", reason)
	if err != nil {
		return Boot{}, fmt.Errorf("firmware: boot: %w", err)
	}
	m.running = nb.Active
	if !prev.Confirmed {
		nb.Attempts = 1
		if err := m.saveBoot(nb); err != nil {
			return Boot{}, fmt.Errorf("firmware: boot: %w", err)
		}
		m.boot = nb
		b.Attempt = 1
	}
	return b, nil
}

// fallBack makes the other slot active, marks the abandoned one failed,
// saves and records it. Called with m.mu held.
func (m *Manager) fallBack(nb *bootState, who, reason string) (Boot, error) {
	from := nb.slot(nb.Active)
	from.Failed = reason
	fromVersion := from.Version
	nb.Active, nb.Attempts = other(nb.Active), 0
	to := nb.slot(nb.Active)
	if err := m.saveBoot(*nb); err != nil {
		return Boot{}, err
	}
	m.boot = *nb
	m.record(Event{Kind: EventFallback, Who: who, OK: true, Slot: nb.Active, Version: to.Version, From: fromVersion,
		Detail: fmt.Sprintf("%s; slot %s is active again", reason, nb.Active)})
	return Boot{Slot: nb.Active, Version: to.Version, Confirmed: to.Confirmed, Fallback: true, Reason: reason}, nil
}

// Confirm records that the slot this process runs passed posd's self-test
// (devices answer, the store opens, the acquirer signs on when reachable):
// it is kept, and BootAttempt stops counting its starts. It does nothing
// for a slot already confirmed, or when this process runs another slot than
// the active one.
func (m *Manager) Confirm(ctx context.Context, who string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return ErrClosed
	case m.running == "":
		return fmt.Errorf("firmware: confirm: %w", ErrNotBooted)
	case m.running != m.boot.Active || m.boot.slot(m.running).Confirmed:
		return nil
	}
	nb := m.boot
	s := nb.slot(nb.Active)
	s.Confirmed, s.Failed = true, ""
	attempts := nb.Attempts
	nb.Attempts = 0
	if err := m.saveBoot(nb); err != nil {
		return fmt.Errorf("firmware: confirm: %w", err)
	}
	m.boot = nb
	m.record(Event{Kind: EventConfirm, Who: who, OK: true, Slot: nb.Active, Version: s.Version,
		Detail: fmt.Sprintf("self-test passed on start %d", attempts)})
	return nil
}

// MarkBad is posd's call when its self-test fails on this start. When the
// running slot is the unconfirmed active one, it falls back at once: the
// other slot becomes active, and posd should exit so that its supervisor
// starts it again. It reports whether it switched.
func (m *Manager) MarkBad(ctx context.Context, reason string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return false, ErrClosed
	case m.running == "":
		return false, fmt.Errorf("firmware: mark bad: %w", ErrNotBooted)
	case m.busy:
		return false, fmt.Errorf("firmware: mark bad: %w", ErrBusy)
	case m.running != m.boot.Active || m.boot.slot(m.running).Confirmed:
		return false, nil
	}
	nb := m.boot
	prev := nb.slot(other(nb.Active))
	if err := m.checkSlot(prev, !prev.Confirmed); err != nil {
		return false, nil // nowhere to go; the boot counter carries on
	}
	if _, err := m.fallBack(&nb, "posd", "self-test failed: "+reason); err != nil {
		return false, fmt.Errorf("firmware: mark bad: %w", err)
	}
	return true, nil
}

// Boot runs the whole start protocol: BootAttempt, then selfTest, then
// Confirm when it passes or MarkBad when it fails. On a failed self-test
// it returns an error wrapping ErrSelfTest (and the self-test's error);
// the Boot then tells which slot ran, and Status which starts next.
func (m *Manager) Boot(ctx context.Context, selfTest func(context.Context) error) (Boot, error) {
	b, err := m.BootAttempt(ctx)
	if err != nil {
		return b, err
	}
	if terr := selfTest(ctx); terr != nil {
		switched, err := m.MarkBad(ctx, terr.Error())
		if err != nil {
			return b, errors.Join(fmt.Errorf("firmware: %w: %w", ErrSelfTest, terr), err)
		}
		if switched {
			return b, fmt.Errorf("firmware: %w on slot %s: %w; slot %s starts next: restart posd", ErrSelfTest, b.Slot, terr, other(b.Slot))
		}
		return b, fmt.Errorf("firmware: %w on slot %s: %w", ErrSelfTest, b.Slot, terr)
	}
	return b, m.Confirm(ctx, "posd self-test")
}

// Rollback makes the other slot active, when it holds a good image (its
// hash is checked): posd runs it from its next start. A slot that was
// confirmed before stays confirmed; one that never was gets the usual
// MaxBootAttempts starts.
func (m *Manager) Rollback(ctx context.Context, who string) (Result, error) {
	if strings.TrimSpace(who) == "" {
		return Result{}, fmt.Errorf("firmware: rollback: %w", ErrNoWho)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Result{}, ErrClosed
	}
	nb := m.boot
	from := nb.slot(nb.Active)
	to := nb.slot(other(nb.Active))
	res := Result{Op: "rollback", Slot: to.Name, Version: to.Version, From: from.Version}
	var err error
	switch {
	case m.busy:
		err = ErrBusy
	case to.State != SlotReady:
		err = fmt.Errorf("slot %s is %s: %w", to.Name, to.State, ErrNoPrevious)
	default:
		if cerr := m.checkSlot(to, true); cerr != nil {
			err = fmt.Errorf("%v: %w", cerr, ErrNoPrevious)
		}
	}
	if err == nil {
		nb.Active, nb.Attempts = to.Name, 0
		to = nb.slot(to.Name)
		to.Failed = ""
		if err = m.saveBoot(nb); err == nil {
			m.boot = nb
		}
	}
	ev := Event{Kind: EventRollback, Who: who, OK: err == nil, Slot: to.Name, Version: to.Version, From: from.Version}
	if err != nil {
		ev.Detail = err.Error()
		m.record(ev)
		return res, fmt.Errorf("firmware: rollback: %w", err)
	}
	res.Message = fmt.Sprintf("slot %s (%s) is active; it starts when posd restarts", to.Name, to.Version)
	if !to.Confirmed {
		res.Message += fmt.Sprintf(" and must pass the self-test within %d starts", m.opts.MaxBootAttempts)
	}
	ev.Detail = res.Message
	m.record(ev)
	return res, nil
}
