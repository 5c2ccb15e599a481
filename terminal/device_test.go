package terminal_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/magstripe"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// Backoff, the failed state and recovery, on a fake clock: attempts at 0, 1,
// 3, 7, 11, 15 s (backoff 1 s doubling to 4 s); failed once the link has
// been down 10 s; connected again when the device opens.
func TestDeviceBackoffAndFailedState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var (
			mu       sync.Mutex
			attempts []time.Duration
			ok       bool
			port     *io.PipeReader
		)
		dev, err := terminal.OpenMagstripeDevice(terminal.MagstripeDeviceOptions{
			Path: "/dev/ttyFAKE",
			Open: func(context.Context) (*magstripe.Reader, error) {
				mu.Lock()
				defer mu.Unlock()
				attempts = append(attempts, time.Since(start))
				if !ok {
					return nil, errors.New("open /dev/ttyFAKE: no such file or directory")
				}
				pr, _ := io.Pipe()
				port = pr
				return magstripe.NewReader(pr, nil), nil
			},
			Device: terminal.DeviceOptions{MinBackoff: time.Second, MaxBackoff: 4 * time.Second, FailAfter: 10 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()

		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		st := dev.Status()
		if st.State != terminal.DeviceReconnecting || st.Attempts != 1 || !strings.Contains(st.LastError, "no such file") {
			t.Fatalf("at 0.5s: %+v", st)
		}
		_, _, err = dev.ReadCard(context.Background(), devAmount(1))
		if !errors.Is(err, terminal.ErrDeviceUnavailable) || !strings.Contains(err.Error(), "card_reader on /dev/ttyFAKE reconnecting since") {
			t.Fatalf("ReadCard while down: %v", err)
		}

		time.Sleep(12 * time.Second) // t = 12.5s
		synctest.Wait()
		st = dev.Status()
		if st.State != terminal.DeviceFailed || st.Attempts != 5 || st.Since.Sub(start) != 11*time.Second {
			t.Fatalf("at 12.5s: %+v", st)
		}
		mu.Lock()
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second}
		for i, w := range want {
			if i >= len(attempts) || attempts[i] != w {
				t.Fatalf("attempts at %v, want %v", attempts, want)
			}
		}
		ok = true
		mu.Unlock()

		time.Sleep(3 * time.Second) // the next attempt, at 15s, succeeds
		synctest.Wait()
		st = dev.Status()
		if st.State != terminal.DeviceConnected || st.Since.Sub(start) != 15*time.Second || st.LastError != "" || st.Reconnects != 0 || st.Attempts != 0 {
			t.Fatalf("at 15.5s: %+v", st)
		}

		// The port fails on its own: the device notices without a command.
		mu.Lock()
		ok = false // and the device is not back at once
		port.CloseWithError(errors.New("read /dev/ttyFAKE: input/output error"))
		mu.Unlock()
		synctest.Wait()
		st = dev.Status()
		if st.State != terminal.DeviceReconnecting || st.Attempts != 1 || !strings.Contains(st.LastError, "no such file") {
			t.Fatalf("after EIO: %+v", st)
		}
		mu.Lock()
		ok = true
		mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		if st = dev.Status(); st.State != terminal.DeviceConnected || st.Reconnects != 1 {
			t.Fatalf("after reconnection: %+v", st)
		}
		dev.Close()
		if st = dev.Status(); st.State != terminal.DeviceClosed {
			t.Fatalf("after Close: %+v", st)
		}
	})
}

func TestDeviceOptionErrors(t *testing.T) {
	if _, err := terminal.OpenPadDevice(terminal.PadDeviceOptions{}); err == nil {
		t.Error("PIN pad without a path accepted")
	}
	if _, err := terminal.OpenMagstripeDevice(terminal.MagstripeDeviceOptions{}); err == nil {
		t.Error("card reader without a path accepted")
	}
	dev, err := terminal.OpenPadDevice(terminal.PadDeviceOptions{Path: "/dev/does-not-exist-posd", Device: terminal.DeviceOptions{MinBackoff: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := dev.WaitConnected(ctx); !errors.Is(err, terminal.ErrDeviceUnavailable) || !strings.Contains(err.Error(), "/dev/does-not-exist-posd") {
		t.Fatalf("WaitConnected: %v", err)
	}
}

// A serial magstripe reader on a pty, as posd uses it when the config names
// one: swipes, a bad swipe, no swipe, a pulled cable and the reconnection.
func TestMagstripeDeviceOverPTY(t *testing.T) {
	type rdr struct {
		pair *ptypair.Pair
		dev  serial.Port
	}
	open := func() rdr {
		p, err := ptypair.Open()
		if err != nil {
			t.Fatal(err)
		}
		d, err := serial.Open(p.B, &serial.Mode{BaudRate: 9600})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close(); p.Close() })
		return rdr{p, d}
	}
	var mu sync.Mutex
	cur := open()
	dev, err := terminal.OpenMagstripeDevice(terminal.MagstripeDeviceOptions{
		Path: "test-pty",
		Open: func(context.Context) (*magstripe.Reader, error) {
			mu.Lock()
			defer mu.Unlock()
			return magstripe.Open(cur.pair.A, nil)
		},
		Device: terminal.DeviceOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.WaitConnected(ctxFor(t, 3*time.Second)); err != nil {
		t.Fatal(err)
	}
	var reader terminal.CardReader = dev
	swipe := func(r rdr, s string, after time.Duration) {
		go func() { time.Sleep(after); io.WriteString(r.dev, s) }()
	}

	swipe(cur, "\x02%B"+devPAN+"^TEST/CARD^3012201?;"+devChipT+"?\x03", 100*time.Millisecond)
	t1, t2, err := reader.ReadCard(ctxFor(t, 3*time.Second), devAmount(1))
	if err != nil || t2 != devChipT || !strings.HasPrefix(t1, "B"+devPAN) {
		t.Fatalf("ReadCard: %q %v", t2, err)
	}
	swipe(cur, "%E?;E?\r", 100*time.Millisecond)
	if _, _, err := reader.ReadCard(ctxFor(t, 3*time.Second), devAmount(1)); !errors.Is(err, terminal.ErrCardUnreadable) {
		t.Fatalf("bad swipe: %v", err)
	}
	if _, _, err := reader.ReadCard(ctxFor(t, 100*time.Millisecond), devAmount(1)); !errors.Is(err, terminal.ErrDeviceTimeout) {
		t.Fatalf("no swipe: %v", err)
	}

	errc := make(chan error, 1)
	go func() { _, _, err := reader.ReadCard(ctxFor(t, 10*time.Second), devAmount(1)); errc <- err }()
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	old := cur
	cur = open()
	mu.Unlock()
	old.dev.Close()
	old.pair.Close() // the cable is pulled
	select {
	case err := <-errc:
		if !errors.Is(err, terminal.ErrDeviceUnavailable) {
			t.Fatalf("pulled cable: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadCard waited past the pulled cable")
	}
	waitState(t, dev, terminal.DeviceConnected)
	swipe(cur, ";"+devChipT+"?\r", 100*time.Millisecond)
	if _, t2, err := reader.ReadCard(ctxFor(t, 3*time.Second), devAmount(1)); err != nil || t2 != devChipT {
		t.Fatalf("after reconnection: %v", err)
	}
	if st := dev.Status(); st.Reconnects != 1 {
		t.Fatalf("status %+v", st)
	}
}
