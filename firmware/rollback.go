package firmware

import (
	"context"
	"fmt"
	"strings"
)

// Rollback makes the other slot active, when it holds a good image (its
// hash is checked): posd runs it from its next start. A slot that was
// confirmed before stays confirmed; one that never was gets the usual
// MaxBootAttempts starts.
func (m *Manager) Rollback(ctx context.Context, who string) (Result, error) {
	if strings.TrimSpace(who) == "" {
		return Result{}, fmt.Errorf("firmware: rollback: %w", ErrNoWho)
	}
	if err := context.Cause(ctx); err != nil {
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
