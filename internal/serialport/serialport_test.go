package serialport_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/posd-dev/posd/internal/serialport"
	"github.com/posd-dev/posd/terminal/ptypair"
	"go.bug.st/serial"
)

// holdEnv, when set to a device path, makes the test binary a holder
// process: it opens the device, says "held" and keeps it until stdin closes.
const holdEnv = "SERIALPORT_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		p, err := serialport.Open(path, &serial.Mode{BaudRate: 19200})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		fmt.Println("held")
		io.Copy(io.Discard, os.Stdin)
		p.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func mode() *serial.Mode { return &serial.Mode{BaudRate: 19200} }

func openPair(t *testing.T) *ptypair.Pair {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	return pair
}

// startHolder runs this test binary as another process holding path; closing
// the returned writer makes it release the device and exit.
func startHolder(t *testing.T, path string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "held\n" {
		t.Fatalf("holder process: %q, %v", line, err)
	}
	return cmd, stdin
}

func TestOpenInUseNamesHolderProcess(t *testing.T) {
	pair := openPair(t)
	holder, release := startHolder(t, pair.A)

	_, err := serialport.Open(pair.A, mode())
	var iu *serialport.InUseError
	if !errors.As(err, &iu) || !errors.Is(err, serialport.ErrInUse) {
		t.Fatalf("second open: %v, want an *InUseError", err)
	}
	// /proc/PID/comm is the executable's name cut to 15 bytes.
	comm := filepath.Base(os.Args[0])
	if len(comm) > 15 {
		comm = comm[:15]
	}
	want := fmt.Sprintf("%s is in use by PID %d (%s)", pair.A, holder.Process.Pid, comm)
	if iu.PID != holder.Process.Pid || err.Error() != want {
		t.Fatalf("second open: %q (PID %d), want %q", err, iu.PID, want)
	}

	// Once the holder lets go, the device is free again.
	release.Close()
	if err := holder.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	p, err := serialport.Open(pair.A, mode())
	if err != nil {
		t.Fatalf("open after the holder ended: %v", err)
	}
	p.Close()
}

func TestOpenInUseBySelf(t *testing.T) {
	pair := openPair(t)
	p, err := serialport.Open(pair.A, mode())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = serialport.Open(pair.A, mode())
	var iu *serialport.InUseError
	if !errors.As(err, &iu) || iu.PID != os.Getpid() {
		t.Fatalf("second open: %v, want in use by PID %d", err, os.Getpid())
	}
	// Closing twice is harmless; the device can then be opened again.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	q, err := serialport.Open(pair.A, mode())
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	q.Close()
}

func TestOpenMissingDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ttyNONE")
	_, err := serialport.Open(path, mode())
	if !errors.Is(err, os.ErrNotExist) || errors.Is(err, serialport.ErrInUse) {
		t.Fatalf("open of a missing device: %v", err)
	}
}

// TestOpenFlushesNoise: bytes that reached the device while nobody had it
// open (line noise while posd was reconnecting) are gone when it is opened
// again, so the first bytes read are the first good frame.
func TestOpenFlushesNoise(t *testing.T) {
	pair := openPair(t)
	pad, err := serialport.Open(pair.B, mode())
	if err != nil {
		t.Fatal(err)
	}
	defer pad.Close()

	// The first connection ends; then noise arrives, and the relay queues
	// it on the host's side, where it stays until the next open.
	host, err := serialport.Open(pair.A, mode())
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Close(); err != nil {
		t.Fatal(err)
	}
	noise := []byte{0x00, 0xff, 0x16, 0x55, 0x02, 0x13, 0x17}
	if _, err := pad.Write(noise); err != nil {
		t.Fatal(err)
	}
	if err := ptypair.WaitQueued(pair.A, len(noise), 5*time.Second); err != nil {
		t.Fatal(err)
	}

	host, err = serialport.Open(pair.A, mode())
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	frame := []byte{0x16, 'O', 'P', 'N', '0', '0', '0', 0x17, 0x12, 0x34}
	if _, err := pad.Write(frame); err != nil {
		t.Fatal(err)
	}
	if err := host.SetReadTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(host, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(frame) {
		t.Fatalf("first bytes read % x, want the frame % x (noise not flushed)", got, frame)
	}
}
