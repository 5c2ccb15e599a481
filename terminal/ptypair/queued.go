package ptypair

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// WaitQueued waits until the input queue of the terminal device at path (A or B of a
// pair) holds at least n bytes, the relay having carried them over, and fails after
// timeout. Tests use it to put bytes on a line before the program under test opens it.
func WaitQueued(path string, n int, timeout time.Duration) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	for {
		q, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ)
		if err != nil {
			return fmt.Errorf("ptypair: %s: %w", path, err)
		}
		if q >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ptypair: %s: %d bytes queued after %s, want %d", path, q, timeout, n)
		}
		time.Sleep(time.Millisecond)
	}
}
