package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
)

func TestCloseConfigAutoAt(t *testing.T) {
	with := func(v string) string {
		return strings.Replace(goodConfig, `"version": 1,`, `"version": 1, "close": {"auto_at": `+v+`},`, 1)
	}
	c, err := ParseConfig([]byte(with(`"23:30"`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Close.at == nil || *c.Close.at != (clockTime{23, 30}) || time.Duration(c.Close.DrainWait) != 30*time.Second {
		t.Errorf("close: %+v %+v", c.Close, c.Close.at)
	}
	if c, err := ParseConfig([]byte(goodConfig)); err != nil || c.Close.at != nil {
		t.Errorf("default: %v %+v", err, c)
	}
	for _, bad := range []string{`"24:00"`, `"7:30"`, `"12:60"`, `"+1:30"`, `"12-30"`, `"noon"`} {
		_, err := ParseConfig([]byte(with(bad)))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "close.auto_at" {
			t.Errorf("auto_at %s: %v, want a ConfigError naming close.auto_at", bad, err)
		}
	}
}

// TestAutoClose: the close runs at the configured local time, a minute later while a sale
// runs, five minutes later after a failure, and again the next day.
func TestAutoClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var calls []time.Duration
		results := []error{terminal.ErrBusy, fmt.Errorf("%w: no answer", terminal.ErrClose), nil, nil}
		closeFn := func(ctx context.Context, by string) (terminal.CloseReport, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, time.Since(start))
			err := results[0]
			if len(results) > 1 {
				results = results[1:]
			}
			return terminal.CloseReport{Batch: store.Batch{Number: uint64(len(calls))}}, err
		}
		at := clockTime{start.Hour(), start.Minute()}
		// The first close is at the next HH:MM at or after start (the bubble starts on a
		// whole minute: at once).
		first := at.next(start).Sub(start)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			autoClose(ctx, at, closeFn, time.Now, slog.New(slog.DiscardHandler))
			close(done)
		}()
		defer func() { cancel(); <-done }()
		time.Sleep(first + 8*time.Minute)
		synctest.Wait()
		mu.Lock()
		got := append([]time.Duration(nil), calls...)
		mu.Unlock()
		want := []time.Duration{first, first + time.Minute, first + 6*time.Minute}
		if len(got) != 3 {
			t.Fatalf("closes at %v, want at %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("close %d at %v, want %v", i, got[i], want[i])
			}
		}
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n != 4 {
			t.Errorf("%d closes after a day more, want 4 (one the next day)", n)
		}
	})
}
