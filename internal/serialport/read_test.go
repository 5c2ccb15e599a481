package serialport_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/internal/serialport"
	"go.bug.st/serial"
)

// openBoth opens both ends of a pty pair as ports.
func openBoth(t *testing.T) (host, pad *serialport.Port) {
	t.Helper()
	pair := openPair(t)
	host, err := serialport.Open(pair.A, mode())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	pad, err = serialport.Open(pair.B, mode())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pad.Close() })
	return host, pad
}

// readState is the scheduler's state of the goroutine blocked in
// serialport's Read ("IO wait" on the poller, "syscall" in a blocking call),
// or "" when there is none yet.
func readState() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "serialport.(*Port).Read(") {
			continue
		}
		head, _, _ := strings.Cut(g, "\n") // goroutine 7 [IO wait]:
		if i, j := strings.IndexByte(head, '['), strings.IndexByte(head, ']'); i >= 0 && j > i {
			state, _, _ := strings.Cut(head[i+1:j], ",") // "IO wait, 2 minutes"
			return state
		}
	}
	return ""
}

// A Read waits on the runtime's poller, not in a system call that holds a P,
// gets what the other side writes, and Close ends a waiting Read with ErrClosed.
func TestReadWaitsOnThePoller(t *testing.T) {
	host, pad := openBoth(t)
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b := make([]byte, 8)
		n, err := io.ReadFull(host, b)
		done <- result{b[:n], err}
	}()
	state := ""
	for deadline := time.Now().Add(5 * time.Second); state == "" || state == "runnable" || state == "running"; {
		if time.Now().After(deadline) {
			t.Fatalf("the reading goroutine never blocked (state %q)", state)
		}
		time.Sleep(time.Millisecond)
		state = readState()
	}
	if state != "IO wait" {
		t.Fatalf("a blocked Read is in state %q, want IO wait (the poller)", state)
	}
	if _, err := pad.Write([]byte("ABECS-OK")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || string(r.b) != "ABECS-OK" {
			t.Fatalf("read %q, %v; want ABECS-OK", r.b, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return the bytes written")
	}

	go func() {
		n, err := host.Read(make([]byte, 8))
		done <- result{make([]byte, n), err}
	}()
	for deadline := time.Now().Add(5 * time.Second); readState() != "IO wait"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second Read never blocked")
		}
	}
	if err := host.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if len(r.b) != 0 || !errors.Is(r.err, serialport.ErrClosed) {
			t.Fatalf("Read after Close: %d bytes, %v; want ErrClosed", len(r.b), r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
	if n, err := host.Read(make([]byte, 1)); n != 0 || !errors.Is(err, serialport.ErrClosed) {
		t.Fatalf("Read of a closed port: %d, %v; want ErrClosed", n, err)
	}
}

// The read timeout keeps go.bug.st/serial's meaning: (0, nil) when nothing came
// in time; 0 looks once; NoTimeout waits again.
func TestReadTimeout(t *testing.T) {
	host, pad := openBoth(t)
	buf := make([]byte, 16)
	if err := host.SetReadTimeout(30 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := host.Read(buf)
	if n != 0 || err != nil {
		t.Fatalf("Read with nothing sent: %d, %v; want 0, nil", n, err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("Read timed out after %v, before its 30ms", d)
	}
	if err := host.SetReadTimeout(-5); err == nil {
		t.Fatal("a negative read timeout was taken")
	}

	if err := host.SetReadTimeout(0); err != nil {
		t.Fatal(err)
	}
	if n, err := host.Read(buf); n != 0 || err != nil {
		t.Fatalf("one look with nothing sent: %d, %v; want 0, nil", n, err)
	}
	if _, err := pad.Write([]byte("now")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(5 * time.Second); len(got) < 3 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n, err := host.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "now" {
		t.Fatalf("one look read %q, want now", got)
	}

	// Back to no timeout: a Read waits past the old timeout for the byte.
	if err := host.SetReadTimeout(serial.NoTimeout); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(60 * time.Millisecond)
		pad.Write([]byte{0x16})
	}()
	n, err = host.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte{0x16}) {
		t.Fatalf("Read without timeout: % x, %v; want 16", buf[:n], err)
	}
}
