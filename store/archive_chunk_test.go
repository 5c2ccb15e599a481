package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestArchiveLetsSalesThrough archives 50,000 records in 50 closed batches while a sale
// (BeginWithSTAN + Finish) runs again and again: the archive releases the write lock
// between its chunks (one batch each), so no sale waits for the whole run. The longest
// wait of a sale must stay well below the run's duration, and sales must complete while
// the archive runs.
func TestArchiveLetsSalesThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 50,000 records")
	}
	const batches, per = 50, 1000
	ctx := context.Background()
	clk := &archClock{t: archDay0}
	s, err := Open(filepath.Join(t.TempDir(), "posd.db"), &Options{Timeout: 5 * time.Second, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range batches {
		bulkBatch(t, s, per, day(0))
		b, _, err := s.BeginClose(ctx, "sup")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.FinishClose(ctx, Batch{Number: b.Number, ResponseCode: "00"}); err != nil {
			t.Fatal(err)
		}
	}
	sellAndClose(t, s, clk, 1, day(1)) // the newest closed batch stays
	clk.set(day(60))

	var running atomic.Bool
	running.Store(true)
	done := make(chan struct{})
	var during, sales int
	var longest time.Duration
	go func() {
		defer close(done)
		for i := 0; running.Load(); i++ {
			in := sampleIntent(0)
			in.SaleTransactionID = fmt.Sprintf("during-%d", i)
			start := time.Now()
			id, _, err := s.BeginWithSTAN(ctx, in)
			if err != nil {
				t.Error(err)
				return
			}
			longest = max(longest, time.Since(start))
			if err := s.Finish(ctx, id, approved()); err != nil {
				t.Error(err)
				return
			}
			sales++
			if running.Load() {
				during = sales
			}
		}
	}()
	dir := filepath.Join(t.TempDir(), "arch")
	start := time.Now()
	rep, err := s.Archive(ctx, ArchiveOptions{Dir: dir})
	took := time.Since(start)
	running.Store(false)
	<-done
	if err != nil || rep.Records != batches*per || len(rep.Batches) != batches {
		t.Fatalf("archive: %d records of %d batches, %v; want %d of %d", rep.Records, len(rep.Batches), err, batches*per, batches)
	}
	t.Logf("archived %d records in %s; %d sales meanwhile, the longest Begin waited %s", rep.Records, took.Round(time.Millisecond), during, longest.Round(time.Microsecond))
	if during < 5 {
		t.Errorf("%d sales completed while the archive ran for %s: the archive blocks sales", during, took)
	}
	// One batch chunk is 1/50th of the run, a link chunk (10,000 links) more; before the
	// chunks a sale waited the whole run. Half the run leaves room for a loaded machine
	// under the race detector (a fifth was once within 3 points of failing).
	if longest > took/2 {
		t.Errorf("a sale waited %s of the archive's %s: more than a few chunks", longest, took)
	}
	mustVerify(t, s, dir)
}
