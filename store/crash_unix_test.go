//go:build unix

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCrashRecovery kills a child process that has begun transactions and
// checks that a new Store sees them as unfinished.
func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv("POSD_STORE_CRASH_DIR"); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$")
	cmd.Env = append(os.Environ(), "POSD_STORE_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", err, out)
	}
	s, err := Open(filepath.Join(dir, "posd.db"), &Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after crash: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	recs, err := s.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ID != 1 || recs[1].ID != 3 {
		t.Fatalf("Unfinished after crash = %+v, want IDs 1 and 3", recs)
	}
	if rec, err := s.Get(ctx, 2); err != nil || rec.Outcome == nil || rec.Outcome.State != StateDeclined {
		t.Errorf("record 2 after crash = %+v, %v", rec, err)
	}
	if n, err := s.NextSTAN(ctx); err != nil || n != 4 {
		t.Errorf("NextSTAN after crash = %d, %v; want 4", n, err)
	}
}

// crashChild journals three transactions, finishes the second, and dies
// without closing the store, before anything is folded: the records are in
// the write-ahead log only.
func crashChild(dir string) {
	ctx := context.Background()
	s, err := Open(filepath.Join(dir, "posd.db"), &Options{FoldDelay: -1})
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	for i := range 3 {
		stan, err := s.NextSTAN(ctx)
		if err != nil {
			os.Exit(2)
		}
		id, err := s.Begin(ctx, sampleIntent(stan))
		if err != nil {
			os.Exit(2)
		}
		if i == 1 {
			if err := s.Finish(ctx, id, Outcome{State: StateDeclined, ResponseCode: "05"}); err != nil {
				os.Exit(2)
			}
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
