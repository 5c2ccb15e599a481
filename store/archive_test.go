package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// archClock is a clock the test moves by hand.
type archClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *archClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *archClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var archDay0 = time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC)

func day(n int) time.Time { return archDay0.Add(time.Duration(n) * 24 * time.Hour) }

func openArch(t *testing.T) (*Store, *archClock, *Options) {
	t.Helper()
	clk := &archClock{t: archDay0}
	o := &Options{Timeout: 100 * time.Millisecond, Now: clk.now, Auditor: auditModule(t, 7)}
	s, err := Open(filepath.Join(t.TempDir(), "posd.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk, o
}

// sellAndClose finishes n sales in the open batch and closes it at clock time at.
func sellAndClose(t *testing.T, s *Store, clk *archClock, n int, at time.Time) (uint64, []TxnID) {
	t.Helper()
	ctx := context.Background()
	clk.set(at)
	var ids []TxnID
	for range n {
		in := sampleIntent(0)
		in.SaleTransactionID = fmt.Sprintf("st-%d-%d", at.Unix(), len(ids))
		in.PANHash = "hashabc"
		id, _, err := s.BeginWithSTAN(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, id, approved()); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	b, _, err := s.BeginClose(ctx, "sup")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishClose(ctx, Batch{Number: b.Number, ResponseCode: "00"}); err != nil {
		t.Fatal(err)
	}
	return b.Number, ids
}

func archivedIDs(t *testing.T, s *Store, dir string) []TxnID {
	t.Helper()
	var ids []TxnID
	if err := s.ArchivedRecords(context.Background(), dir, func(r Record) error { ids = append(ids, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	return ids
}

func liveIDs(t *testing.T, s *Store) []TxnID {
	t.Helper()
	var ids []TxnID
	if err := s.Records(context.Background(), func(r Record) error { ids = append(ids, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	return ids
}

func mustVerify(t *testing.T, s *Store, dir string) {
	t.Helper()
	ctx := context.Background()
	r, err := s.VerifyAudit(ctx)
	if err != nil || !r.OK() {
		t.Fatalf("VerifyAudit: %v %+v", err, r.Broken)
	}
	c, err := s.VerifyArchive(ctx, dir)
	if err != nil || !c.OK() {
		t.Fatalf("VerifyArchive: %v %+v", err, c.Problems)
	}
}

func TestArchiveMovesOldBatchesKeepsNewestAndVerifies(t *testing.T) {
	ctx := context.Background()
	s, clk, o := openArch(t)
	dir := filepath.Join(t.TempDir(), "arch")
	b1, ids1 := sellAndClose(t, s, clk, 5, day(0))
	b2, ids2 := sellAndClose(t, s, clk, 3, day(1))
	b3, ids3 := sellAndClose(t, s, clk, 2, day(40))
	openID, err := s.Begin(ctx, sampleIntent(77)) // the open batch
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, openID, approved()); err != nil {
		t.Fatal(err)
	}
	clk.set(day(45))
	rep, err := s.Archive(ctx, ArchiveOptions{Dir: dir, Keep: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Batches) != fmt.Sprint([]uint64{b1, b2}) || rep.Records != 8 || rep.Links == 0 {
		t.Fatalf("archive report %+v, want batches %d and %d, 8 records, links moved", rep, b1, b2)
	}
	if got, want := fmt.Sprint(archivedIDs(t, s, dir)), fmt.Sprint(append(append([]TxnID{}, ids1...), ids2...)); got != want {
		t.Fatalf("archived records %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(liveIDs(t, s)), fmt.Sprint(append(append([]TxnID{}, ids3...), openID)); got != want {
		t.Fatalf("live records %s, want %s", got, want)
	}
	if _, err := s.Get(ctx, ids1[0]); !errors.Is(err, ErrArchived) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an archived record: %v, want ErrArchived and ErrNotFound", err)
	}
	if _, ok, _ := s.LookupTill(ctx, SaleTxnKey("till-7", fmt.Sprintf("st-%d-0", day(0).Unix()))); ok {
		t.Error("till key of an archived record still indexed")
	}
	if recs, err := s.FindByPANHash(ctx, "hashabc"); err != nil || len(recs) != 2 {
		t.Errorf("FindByPANHash after archive: %d records, %v; want the 2 live ones", len(recs), err)
	}
	mustVerify(t, s, dir)
	r, _ := s.VerifyAudit(ctx)
	if r.Base == 0 {
		t.Errorf("VerifyAudit %+v: want the chain's archived prefix as its base", r)
	}
	// The newest closed batch (b3) is kept however old it gets.
	clk.set(day(200))
	if rep, err := s.Archive(ctx, ArchiveOptions{Dir: dir}); err != nil || len(rep.Batches) != 0 {
		t.Fatalf("archive with only the newest closed batch old: %+v %v, want nothing archived", rep, err)
	}
	// A later month: a new file whose first line names the previous one.
	sellAndClose(t, s, clk, 1, day(200))
	clk.set(day(260))
	rep, err = s.Archive(ctx, ArchiveOptions{Dir: dir})
	if err != nil || fmt.Sprint(rep.Batches) != fmt.Sprint([]uint64{b3}) {
		t.Fatalf("second archive %+v %v, want batch %d", rep, err, b3)
	}
	files, _ := archiveFiles(dir)
	if len(files) != 2 {
		t.Fatalf("archive files %v, want two months", files)
	}
	first, _ := os.ReadFile(filepath.Join(dir, files[1]))
	if !bytes.Contains(first[:bytes.IndexByte(first, '\n')], []byte(`"prev_file":"`+files[0]+`"`)) {
		t.Errorf("first line of %s does not name %s: %s", files[1], files[0], first[:200])
	}
	mustVerify(t, s, dir)
	s.Close()
	s2, err := Open(s.Path(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	mustVerify(t, s2, dir)
	if n := len(archivedIDs(t, s2, dir)); n != 10 {
		t.Errorf("archived records after reopen: %d, want 10", n)
	}
}

func TestArchiveHoldsBatchWithQueuedItem(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := openArch(t)
	dir := filepath.Join(t.TempDir(), "arch")
	clk.set(day(0))
	id, err := s.Begin(ctx, sampleIntent(1))
	if err != nil {
		t.Fatal(err)
	}
	it := item(KindReversal, 2)
	it.Sensitive = nil
	if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Time: day(0)}, it); err != nil {
		t.Fatal(err)
	}
	b, _, err := s.BeginClose(ctx, "sup")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishClose(ctx, Batch{Number: b.Number, ResponseCode: "00"}); err != nil {
		t.Fatal(err)
	}
	b2, _ := sellAndClose(t, s, clk, 2, day(1))
	sellAndClose(t, s, clk, 1, day(2))
	clk.set(day(90))
	rep, err := s.Archive(ctx, ArchiveOptions{Dir: dir})
	if err != nil || fmt.Sprint(rep.Batches) != fmt.Sprint([]uint64{b2}) || fmt.Sprint(rep.Held) != fmt.Sprint([]uint64{b.Number}) {
		t.Fatalf("archive %+v %v: want batch %d held (a queued reversal), %d archived", rep, err, b.Number, b2)
	}
	// The held record keeps the chain's prefix live: the archived records' links stay, and
	// VerifyAudit finds the records gone by the archive link, not deleted.
	if r, err := s.VerifyAudit(ctx); err != nil || !r.OK() || r.Archived < 3 {
		t.Fatalf("VerifyAudit %+v %v: want ok with the 2 records and the batch counted archived", r, err)
	}
	if _, err := s.Get(ctx, id); err != nil {
		t.Fatalf("record with a queued item: %v", err)
	}
	mustVerify(t, s, dir)
}

func TestArchiveCrashBetweenWriteAndCommit(t *testing.T) {
	ctx := context.Background()
	s, clk, o := openArch(t)
	dir := filepath.Join(t.TempDir(), "arch")
	_, ids := sellAndClose(t, s, clk, 4, day(0))
	sellAndClose(t, s, clk, 1, day(1))
	clk.set(day(60))
	failArchive = func() error { return errors.New("crash") }
	_, err := s.Archive(ctx, ArchiveOptions{Dir: dir})
	failArchive = nil
	if err == nil {
		t.Fatal("archive with a crash before its commit succeeded")
	}
	// The lines are written, the records still live.
	if n := len(liveIDs(t, s)); n != 5 {
		t.Fatalf("live records after the crash: %d, want 5", n)
	}
	c, err := s.VerifyArchive(ctx, dir)
	if err != nil || !c.OK() || c.Uncommitted == 0 {
		t.Fatalf("VerifyArchive after the crash: %+v %v; want ok with uncommitted lines", c, err)
	}
	s.Close()
	s, err = Open(s.Path(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.Archive(ctx, ArchiveOptions{Dir: dir})
	// The crash was in the batch's chunk, before its commit: its lines are reused and only
	// the audit links (moved once the batches are done) are written now.
	if err != nil || rep.Lines != rep.Links || rep.Reused != c.Uncommitted || rep.Records != 4 {
		t.Fatalf("archive after restart %+v %v: want the %d lines reused, only link lines written, 4 records", rep, err, c.Uncommitted)
	}
	files, _ := archiveFiles(dir)
	raw, _ := os.ReadFile(filepath.Join(dir, files[0]))
	for _, id := range ids {
		if n := strings.Count(string(raw), fmt.Sprintf(`"kind":"record","txn":%d,`, id)); n != 1 {
			t.Errorf("record %d is in the archive %d times, want once", id, n)
		}
	}
	if got := fmt.Sprint(archivedIDs(t, s, dir)); got != fmt.Sprint(ids) {
		t.Errorf("archived %s, want %s", got, fmt.Sprint(ids))
	}
	if n := len(liveIDs(t, s)); n != 1 {
		t.Errorf("live records: %d, want 1", n)
	}
	mustVerify(t, s, dir)
}

func TestArchiveEditedLineIsCaught(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := openArch(t)
	dir := filepath.Join(t.TempDir(), "arch")
	sellAndClose(t, s, clk, 3, day(0))
	sellAndClose(t, s, clk, 1, day(1))
	clk.set(day(60))
	if _, err := s.Archive(ctx, ArchiveOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s, dir)
	files, _ := archiveFiles(dir)
	p := filepath.Join(dir, files[0])
	raw, _ := os.ReadFile(p)
	edited := bytes.Replace(raw, []byte(`"amount_minor":1999`), []byte(`"amount_minor":1000`), 1)
	if bytes.Equal(edited, raw) {
		t.Fatal("no amount to edit")
	}
	if err := os.WriteFile(p, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := s.VerifyArchive(ctx, dir)
	if err != nil || c.OK() {
		t.Fatalf("VerifyArchive of an edited line: %+v %v, want a problem", c, err)
	}
	if !strings.Contains(c.Problems[0].What, "edited") {
		t.Errorf("problem %q does not say a line was edited", c.Problems[0].What)
	}
	// The last line edited: caught against the live file's head.
	lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	last := lines[len(lines)-1]
	edited = bytes.Replace(raw, last, bytes.Replace(last, []byte(`"seq"`), []byte(`"seq" `), 1), 1)
	if err := os.WriteFile(p, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := s.VerifyArchive(ctx, dir); err != nil || c.OK() {
		t.Fatalf("VerifyArchive with the last line edited: %+v %v, want a problem", c, err)
	}
}
