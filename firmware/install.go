package firmware

import (
	"context"
	"encoding/hex"
	"fmt"
	"github.com/posd-dev/posd/internal/atomicfile"
	"io"
	"os"
	"path/filepath"
	"strings"
)

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
	// Source is an https:// URL of a bundle file under one of
	// Options.AllowedURLs, or a bundle file or bundle directory in
	// Options.Inbox (an absolute path, or one relative to the inbox). A
	// symlink that leads out of the inbox, a FIFO, a device or a socket is
	// refused (ErrSource) before anything is opened. With Bundle set it
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

// begin marks an operation running and returns its context: ctx, also
// cancelled (cause ErrStopped) by Stop. The caller must call end.
func (m *Manager) begin(ctx context.Context, op string) (context.Context, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if m.stopCtx.Err() != nil {
		return nil, ErrStopped
	}
	if m.busy {
		return nil, ErrBusy
	}
	m.busy = true
	m.progress = &Progress{Op: op, Phase: "metadata"}
	octx, cancel := context.WithCancelCause(ctx)
	unhook := context.AfterFunc(m.stopCtx, func() { cancel(ErrStopped) })
	m.endOp = func() { unhook(); cancel(nil) }
	return octx, nil
}

func (m *Manager) end() {
	m.mu.Lock()
	m.busy = false
	m.progress = nil
	endOp := m.endOp
	m.endOp = nil
	m.mu.Unlock()
	if endOp != nil {
		endOp()
	}
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
	// The rules first, before anything is opened or reported as started.
	if err := m.checkSource(req); err != nil {
		return nil, err
	}
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
		if src, err = m.openSource(ctx, req.Source); err != nil {
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
	ctx, err := m.begin(ctx, "check")
	if err != nil {
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
	ctx, err := m.begin(ctx, "install")
	if err != nil {
		return Result{}, fmt.Errorf("firmware: install: %w", err)
	}
	defer m.end()
	res, err := m.install(ctx, req)
	ev := Event{Kind: EventInstall, Who: req.Who, Source: sourceName(req.Source), Slot: res.Slot, Version: res.Version, From: res.From}
	return res, m.recordEnd(ev, res, err, "install "+sourceName(req.Source))
}

// recordEnd completes ev with how an install ended (err, or res's message), records it in
// the event log, and returns err naming what was done.
func (m *Manager) recordEnd(ev Event, res Result, err error, what string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev.OK = err == nil
	if err != nil {
		ev.Detail = err.Error()
		err = fmt.Errorf("firmware: %s: %w", what, err)
	} else {
		ev.Detail = res.Message
	}
	m.record(ev)
	return err
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
	if err := atomicfile.SyncDir(m.dir); err != nil {
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
