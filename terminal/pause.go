package terminal

import (
	"context"
	"sync"
)

// Pause waits for the running sale, if any, to end, then keeps the next sales waiting
// (not failing busy) until release is called: a working-key change switches keys there,
// between two sales and never during one. It also waits for the store-and-forward drain
// in flight (the Forwarder's) to end and holds the next drain off until release, so that
// no reversal or advice is on the wire while the keys switch: one sent under the old key
// and answered under the new one would fail its MAC check. The caller holds it for as
// short a time as it can (one round trip to the acquirer). It fails with ctx's error,
// holding nothing.
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
	// The sale first, then the drain: a sale drains reversals holding t.mu, so this is the
	// order every path takes both locks in.
	if err := lockContext(ctx, &t.mu, unpause); err != nil {
		return nil, err
	}
	var fwd *sync.Mutex
	if t.fwd != nil {
		fwd = &t.fwd.mu
		if err := lockContext(ctx, fwd, func() {}); err != nil {
			t.mu.Unlock()
			unpause()
			return nil, err
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if fwd != nil {
				fwd.Unlock()
			}
			t.mu.Unlock()
			unpause()
		})
	}, nil
}

// lockContext locks mu, or gives up when ctx ends first: then, in the background, it takes
// mu once free, unlocks it and calls after, and returns ctx's error.
func lockContext(ctx context.Context, mu *sync.Mutex, after func()) error {
	got := make(chan struct{})
	go func() {
		mu.Lock()
		close(got)
	}()
	select {
	case <-got:
		return nil
	case <-ctx.Done():
		go func() {
			<-got
			mu.Unlock()
			after()
		}()
		return ctx.Err()
	}
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
