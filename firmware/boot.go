package firmware

import (
	"context"
	"errors"
	"fmt"
)

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
	if err := context.Cause(ctx); err != nil {
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
	if err := context.Cause(ctx); err != nil {
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
	if err := context.Cause(ctx); err != nil {
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
