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
