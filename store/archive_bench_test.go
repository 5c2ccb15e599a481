package store

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// bulkBatch writes n finished records into the open batch, many per commit, as folds of
// the write-ahead log would (with their links), without a sync per record: a fast way to
// build a large history.
func bulkBatch(t testing.TB, s *Store, n int, at time.Time) {
	t.Helper()
	ctx := context.Background()
	s.mu.Lock()
	defer s.mu.Unlock()
	const per = 20000
	for done := 0; done < n; {
		var entries []logEntry
		for i := 0; i < per && done < n; i++ {
			in := sampleIntent(uint32(done%999999 + 1))
			in.SaleTransactionID = "bulk-" + strconv.Itoa(int(s.nextTxn))
			in.Time = at
			id := s.nextTxn
			v, _ := encodeRecord(in, nil)
			lb, err := s.newLink(ctx, refLink(linkBegin, txnRef(id), v))
			if err != nil {
				t.Fatal(err)
			}
			out := approved()
			out.Batch = s.batch
			nv, _ := encodeRecord(in, &out)
			lf, err := s.newLink(ctx, refLink(linkFinish, txnRef(id), nv))
			if err != nil {
				t.Fatal(err)
			}
			o := jsonOutcome(out)
			s.lsn++
			entries = append(entries, logEntry{s.lsn, logOp{Op: opBegin, Txn: id, Record: v, Till: tillKeys(in), Links: []jsonLink{lb}}})
			s.lsn++
			entries = append(entries, logEntry{s.lsn, logOp{Op: opFinish, Txn: id, Outcome: &o, Links: []jsonLink{lf}}})
			s.nextTxn++
			done++
		}
		if err := s.commit(entries); err != nil {
			t.Fatal(err)
		}
		s.applied = s.lsn
	}
}

// TestArchiveRestartIsFast archives a large closed batch and measures the restart of the
// store with one open batch of 1,000 records: Open must not read archived data. The
// history is 50,000 records by default; POSD_ARCHIVE_RECORDS=1000000 measures the issue's
// number (about a minute to build).
func TestArchiveRestartIsFast(t *testing.T) {
	n := 50000
	if v := os.Getenv("POSD_ARCHIVE_RECORDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	ctx := context.Background()
	clk := &archClock{t: archDay0}
	path := filepath.Join(t.TempDir(), "posd.db")
	o := &Options{Timeout: time.Second, Now: clk.now}
	s, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	start := time.Now()
	bulkBatch(t, s, n, day(0))
	b, _, err := s.BeginClose(ctx, "sup")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishClose(ctx, Batch{Number: b.Number, ResponseCode: "00"}); err != nil {
		t.Fatal(err)
	}
	sellAndClose(t, s, clk, 1, day(1))
	bulkBatch(t, s, 1000, day(50)) // the open batch
	built := time.Since(start)
	before, _ := os.Stat(path)
	clk.set(day(60))
	start = time.Now()
	rep, err := s.Archive(ctx, ArchiveOptions{})
	if err != nil || rep.Records != n {
		t.Fatalf("archive: %+v %v, want %d records", rep, err, n)
	}
	took := time.Since(start)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	s, err = Open(path, o) // compacts: most of the file is free
	if err != nil {
		t.Fatal(err)
	}
	compactOpen := time.Since(start)
	s.Close()

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start = time.Now()
	s, err = Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	open := time.Since(start)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	after, _ := os.Stat(path)
	files, _ := archiveFiles(ArchiveDir(path))
	var archSize int64
	for _, f := range files {
		if fi, err := os.Stat(filepath.Join(ArchiveDir(path), f)); err == nil {
			archSize += fi.Size()
		}
	}
	if live := len(liveIDs(t, s)); live != 1001 {
		t.Errorf("live records after archive: %d, want 1001", live)
	}
	t.Logf("%d archived records (built in %v; archived in %v, %d lines, %d MB of archive); live file %d MB before, %d KB after compaction (first Open with compaction %v); Open %v; heap in use after Open %+d KB (total %d KB, Go runtime Sys %d MB)",
		n, built.Round(time.Millisecond), took.Round(time.Millisecond), rep.Lines, archSize>>20, before.Size()>>20, after.Size()>>10, compactOpen.Round(time.Millisecond), open.Round(time.Microsecond),
		(int64(m1.HeapInuse)-int64(m0.HeapInuse))>>10, m1.HeapInuse>>10, m1.Sys>>20)
	if open > time.Second {
		t.Errorf("Open with %d archived records took %v: it reads archived data", n, open)
	}
}
