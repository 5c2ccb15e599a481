package terminal

import (
	"context"
	"errors"
	"runtime"
	"testing"
)

// stillWaiting reports whether ch has sent nothing after letting the other goroutines run a
// while (a goroutine blocked on a mutex is not "durably blocked" for testing/synctest,
// so this test yields instead).
func stillWaiting[T any](ch <-chan T) bool {
	for range 1000 {
		runtime.Gosched()
		select {
		case <-ch:
			return false
		default:
		}
	}
	return true
}

// TestPause: a pause waits for the sale in flight, holds the next sale waiting (not
// busy) until released, and a pause given up leaves nothing held.
func TestPause(t *testing.T) {
	term := &Terminal{}
	term.mu.Lock() // a sale in flight
	paused := make(chan func(), 1)
	go func() {
		release, err := term.Pause(context.Background())
		if err != nil {
			t.Error(err)
		}
		paused <- release
	}()
	if !stillWaiting(paused) {
		t.Fatal("Pause returned while a sale was in flight")
	}
	term.mu.Unlock() // the sale ends
	release := <-paused

	// The next sale waits for the pause rather than failing busy.
	admitted := make(chan error, 1)
	go func() { admitted <- term.waitPause(context.Background()) }()
	if !stillWaiting(admitted) {
		t.Fatal("a sale went ahead during a pause")
	}
	release()
	if err := <-admitted; err != nil {
		t.Fatal(err)
	}
	if !term.mu.TryLock() {
		t.Fatal("the terminal is still held after release")
	}

	// A pause given up while a sale runs holds nothing once that sale ends.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := term.Pause(ctx)
		done <- err
	}()
	if !stillWaiting(done) {
		t.Fatal("Pause returned while a sale was in flight")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Pause after cancel: %v", err)
	}
	term.mu.Unlock()
	if err := term.waitPause(context.Background()); err != nil { // waits for the cleanup
		t.Fatal(err)
	}
	if !term.mu.TryLock() { // the cleanup unlocks before it ends the pause
		t.Fatal("a given-up pause still holds the terminal")
	}
	term.mu.Unlock()
}

// TestPauseHoldsTheDrain: a pause waits for the store-and-forward drain in flight and
// holds the next drain off until released, so that no reversal is on the wire while the
// keys switch; a pause given up while a drain runs holds nothing.
func TestPauseHoldsTheDrain(t *testing.T) {
	term := &Terminal{fwd: &Forwarder{}}
	term.fwd.mu.Lock() // a drain in flight
	paused := make(chan func(), 1)
	go func() {
		release, err := term.Pause(context.Background())
		if err != nil {
			t.Error(err)
		}
		paused <- release
	}()
	if !stillWaiting(paused) {
		t.Fatal("Pause returned while a drain was in flight")
	}
	term.fwd.mu.Unlock() // the drain ends
	release := <-paused

	drained := make(chan struct{})
	go func() {
		term.fwd.mu.Lock() // the next drain (Forwarder.drain's first step)
		close(drained)
	}()
	if !stillWaiting(drained) {
		t.Fatal("a drain ran during a pause")
	}
	release()
	<-drained
	term.fwd.mu.Unlock()
	if !term.mu.TryLock() {
		t.Fatal("the terminal is still held after release")
	}
	term.mu.Unlock()

	// Given up while a drain runs: the sale lock and the pause are let go at once, the
	// drain's lock once that drain ends.
	term.fwd.mu.Lock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := term.Pause(ctx)
		done <- err
	}()
	if !stillWaiting(done) {
		t.Fatal("Pause returned while a drain was in flight")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Pause after cancel: %v", err)
	}
	if err := term.waitPause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !term.mu.TryLock() {
		t.Fatal("a given-up pause still holds the terminal")
	}
	term.mu.Unlock()
	term.fwd.mu.Unlock()
	got := make(chan struct{})
	go func() { term.fwd.mu.Lock(); close(got) }()
	<-got // the given-up pause let the drain's lock go
}
