package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestObserveWrite: each durable write is reported once, with its duration; reads are not.
func TestObserveWrite(t *testing.T) {
	var mu sync.Mutex
	var seen []time.Duration
	s, err := Open(filepath.Join(t.TempDir(), "posd.db"), &Options{Timeout: 100 * time.Millisecond,
		ObserveWrite: func(d time.Duration) { mu.Lock(); seen = append(seen, d); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	n0 := count()
	ctx := context.Background()
	for range 3 {
		if _, err := s.NextSTAN(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := count() - n0; got != 3 {
		t.Fatalf("3 STANs taken (3 writes): observed %d writes", got)
	}
	if _, err := s.List(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count() - n0; got != 3 {
		t.Fatalf("a read was observed as a write: %d", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range seen[n0:] {
		if d <= 0 {
			t.Fatalf("a write took %v", d)
		}
	}
}
