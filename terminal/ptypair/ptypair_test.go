package ptypair_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/terminal/ptypair"
)

func openPort(t *testing.T, path string) serial.Port {
	t.Helper()
	port, err := serial.Open(path, &serial.Mode{BaudRate: 19200, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		t.Fatalf("serial.Open(%s): %v", path, err)
	}
	return port
}

// readN reads exactly n bytes from port or fails after d. go.bug.st/serial
// reports a read timeout as (0, nil).
func readN(port serial.Port, n int, d time.Duration) ([]byte, error) {
	if err := port.SetReadTimeout(50 * time.Millisecond); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(d)
	got := make([]byte, 0, n)
	buf := make([]byte, n)
	for len(got) < n {
		if time.Now().After(deadline) {
			return got, fmt.Errorf("timeout after %d of %d bytes", len(got), n)
		}
		k, err := port.Read(buf[:n-len(got)])
		got = append(got, buf[:k]...)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// expectSilence fails if port delivers any byte within d.
func expectSilence(t *testing.T, port serial.Port, d time.Duration) {
	t.Helper()
	if err := port.SetReadTimeout(d); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := port.Read(buf)
	if n > 0 || err != nil {
		t.Fatalf("unexpected read: % X, %v", buf[:n], err)
	}
}

// The control bytes the ABECS link layer and a cooked terminal care about.
var special = []byte{0x13, 0x16, 0x17, 0x04, 0x0D, 0x0A, 0x03, 0x7F, 0x11, 0x15, 0x18, 0x1A, 0x1C, 0x00, 0xFF}

func allBytes() []byte {
	b := append([]byte(nil), special...)
	for i := range 256 {
		b = append(b, byte(i))
	}
	return b
}

func TestBytesPassUnchangedBothWays(t *testing.T) {
	p, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := openPort(t, p.A)
	defer a.Close()
	b := openPort(t, p.B)
	defer b.Close()

	msg := allBytes()
	for _, dir := range []struct {
		name     string
		from, to serial.Port
	}{{"A->B", a, b}, {"B->A", b, a}} {
		if _, err := dir.from.Write(msg); err != nil {
			t.Fatalf("%s: write: %v", dir.name, err)
		}
		got, err := readN(dir.to, len(msg), 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v (got % X)", dir.name, err, got)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%s: got\n% X\nwant\n% X", dir.name, got, msg)
		}
		// No echo back to the writer.
		expectSilence(t, dir.from, 100*time.Millisecond)
	}
}

// Bytes written before the other side is opened must not be mangled or
// echoed: the slaves are raw from the start.
func TestRawBeforeOpen(t *testing.T) {
	p, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := openPort(t, p.A)
	defer a.Close()
	if _, err := a.Write(special); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the relay move the bytes into B's queue
	expectSilence(t, a, 50*time.Millisecond)
	b := openPort(t, p.B)
	defer b.Close()
	got, err := readN(b, len(special), 2*time.Second)
	if err != nil {
		t.Fatalf("%v (got % X)", err, got)
	}
	if !bytes.Equal(got, special) {
		t.Fatalf("got % X, want % X", got, special)
	}
}

// go.bug.st/serial opens exclusively; closing must release the device so it
// can be opened again, and a second concurrent open must be refused (unless
// the test runs as root, which TIOCEXCL does not restrict).
func TestExclusiveOpenAndReopen(t *testing.T) {
	p, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := openPort(t, p.A)
	if os := runtime.GOOS; os == "linux" {
		if second, err := serial.Open(p.A, &serial.Mode{BaudRate: 19200}); err == nil {
			second.Close()
			t.Log("second open succeeded (running as root?); TIOCEXCL not enforced")
		} else {
			var pe *serial.PortError
			if !errors.As(err, &pe) || pe.Code() != serial.PortBusy {
				t.Errorf("second open: %v, want PortBusy", err)
			}
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = openPort(t, p.A)
	defer a.Close()
	b := openPort(t, p.B)
	defer b.Close()
	if _, err := b.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	got, err := readN(a, 5, 2*time.Second)
	if err != nil || string(got) != "again" {
		t.Fatalf("after reopen: %q, %v", got, err)
	}
}

// Close stops the relay goroutines and unblocks a reader of a slave; it is
// idempotent.
func TestCloseUnblocksAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	b := openPort(t, p.B)
	defer b.Close()

	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 8)
		_, err := b.Read(buf) // no timeout: blocks until the pair goes away
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("reader of B still blocked after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The two relay goroutines and the reader are gone.
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d before Open, %d after Close", before, n)
	}
}

func TestManyPairs(t *testing.T) {
	// Fresh pairs must not collide and must release their devices.
	for i := range 20 {
		p, err := ptypair.Open()
		if err != nil {
			t.Fatalf("pair %d: %v", i, err)
		}
		if p.A == p.B || p.A == "" {
			t.Fatalf("pair %d: A=%q B=%q", i, p.A, p.B)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("pair %d: close: %v", i, err)
		}
	}
}

func Example() {
	p, err := ptypair.Open()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	mode := &serial.Mode{BaudRate: 19200}
	host, err := serial.Open(p.A, mode)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer host.Close()
	device, err := serial.Open(p.B, mode)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer device.Close()

	host.Write([]byte{0x16, 'O', 'P', 'N', 0x17, 0xA8, 0xA9})
	buf := make([]byte, 7)
	n := 0
	for n < len(buf) {
		k, err := device.Read(buf[n:])
		if err != nil {
			fmt.Println(err)
			return
		}
		n += k
	}
	fmt.Printf("% X\n", buf)
	// Output: 16 4F 50 4E 17 A8 A9
}
