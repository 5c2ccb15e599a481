package terminal

import (
	"context"
	"sync"
)

// Pause waits for the running sale, if any, to end, then keeps the next sales waiting
// (not failing busy) until release is called: a working-key change switches keys there,
// between two sales and never during one. The caller holds it for as short a time as it
// can (one round trip to the acquirer). It fails with ctx's error, holding nothing.
func (t *Terminal) Pause(ctx context.Context) (release func(), err error) {
	ch := make(chan struct{})
	t.pauseMu.Lock()
	if t.pause != nil {
		prev := t.pause
		t.pauseMu.Unlock()
		select { // one pause at a time: wait for the other
		case <-prev:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return t.Pause(ctx)
	}
	t.pause = ch
	t.pauseMu.Unlock()
	unpause := func() {
		t.pauseMu.Lock()
		t.pause = nil
		t.pauseMu.Unlock()
		close(ch)
	}
	got := make(chan struct{})
	go func() {
		t.mu.Lock()
		close(got)
	}()
	select {
	case <-got:
	case <-ctx.Done():
		go func() {
			<-got
			t.mu.Unlock()
			unpause()
		}()
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Unlock()
			unpause()
		})
	}, nil
}

// waitPause waits while a Pause holds sales off, so that a sale that comes during a key
// change starts right after it rather than failing busy.
func (t *Terminal) waitPause(ctx context.Context) error {
	t.pauseMu.Lock()
	ch := t.pause
	t.pauseMu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
