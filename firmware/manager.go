package firmware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
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
	// ErrStopped: posd is shutting down (Stop): the operation was stopped,
	// or not started.
	ErrStopped = errors.New("posd is shutting down: firmware operations are stopped")
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
	// Inbox is the directory a Source path must lie in (see
	// InstallRequest.Source). Default filepath.Join(dir, "inbox"), which
	// Open creates (mode 0700) when missing; any other directory must
	// exist. Either must not be writable by every user (ErrInbox).
	Inbox string
	// AllowedURLs are the https:// URL prefixes ("https://host/path/") a
	// Source URL must start with: same host and port, and a path under the
	// prefix's at a "/" boundary. Redirects must stay on them too. Default
	// none: URL sources are refused (ErrSource).
	AllowedURLs []string
	// DownloadTimeout caps a whole download, from the request to the last
	// byte of the image. Default DefaultDownloadTimeout (10 minutes).
	DownloadTimeout time.Duration
	// MinRate is the least a download must bring, in bytes per second,
	// over every MinRateWindow from the end of its first one on; a slower
	// download is aborted with ErrSlowDownload and the operation slot is
	// free at once. Default DefaultMinRate (4096).
	MinRate int64
	// MinRateWindow is the sliding window MinRate is measured over, and the
	// grace period at the start of a download. Default
	// DefaultMinRateWindow (10s).
	MinRateWindow time.Duration
	// HTTPClient downloads https:// sources. Default: a client with the
	// system's CA roots that refuses redirects away from https and gives up
	// when response headers take more than 30s. DownloadTimeout and MinRate
	// apply to any client.
	HTTPClient *http.Client
	// Now is the clock for expiry checks and event times. Default time.Now.
	Now func() time.Time
	// OnEvent is called with each event once it is in the event log, so
	// that posd can copy it to its journal. It is called with the
	// Manager's lock held and must not call the Manager. Default: none.
	OnEvent func(Event)
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

	inbox        string     // Options.Inbox with symlinks resolved
	inboxAsGiven string     // Options.Inbox as given (cleaned), for messages
	allowed      []*url.URL // Options.AllowedURLs

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
	endOp      func() // ends the running operation's context

	stopCtx    context.Context // cancelled by Stop
	stopCancel context.CancelCauseFunc
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
	if o.DownloadTimeout <= 0 {
		o.DownloadTimeout = DefaultDownloadTimeout
	}
	if o.MinRate <= 0 {
		o.MinRate = DefaultMinRate
	}
	if o.MinRateWindow <= 0 {
		o.MinRateWindow = DefaultMinRateWindow
	}
	allowed, err := parseAllowedURLs(o.AllowedURLs)
	if err != nil {
		return nil, err
	}
	builtin, err := newTrust(o.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("firmware: Options.TrustedRoot: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	inbox, err := setupInbox(dir, o.Inbox)
	if err != nil {
		return nil, fmt.Errorf("firmware: Options.Inbox: %w", err)
	}
	inboxAsGiven := o.Inbox
	if inboxAsGiven == "" {
		inboxAsGiven = filepath.Join(dir, inboxDirName)
	}
	if inboxAsGiven, err = filepath.Abs(inboxAsGiven); err != nil {
		return nil, fmt.Errorf("firmware: Options.Inbox: %w: %w", ErrInbox, err)
	}
	lock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	m := &Manager{dir: dir, opts: o, builtin: builtin, lock: lock, failpoint: func(string) {},
		inbox: inbox, inboxAsGiven: inboxAsGiven, allowed: allowed}
	m.stopCtx, m.stopCancel = context.WithCancelCause(context.Background())
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

// Stop cancels the install, check or PIN pad transfer in progress (a
// download ends at once; an install cut short changes nothing, as after a
// power cut) and refuses later ones with ErrStopped. Status, Events,
// Confirm and Rollback keep working until Close. posd calls it when it
// starts to shut down, so that no firmware operation holds the shutdown.
func (m *Manager) Stop() {
	m.stopCancel(ErrStopped)
}

// Close releases the state directory. It stops any operation in progress
// first (see Stop).
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.stopCancel(ErrStopped)
	err := m.log.close()
	if cerr := m.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

// Status returns the slots, versions and trust state.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	if err := context.Cause(ctx); err != nil {
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
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.log.read(after)
}
