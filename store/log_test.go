package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openNoFold opens a store whose writes stay in the log until something needs them folded.
// Stores opened by it share one sealing key, so that a copy opens what the original sealed.
func openNoFold(t *testing.T, path string) *Store {
	t.Helper()
	if logSealer == nil {
		logSealer = newGCMSealer(t)
	}
	s, err := Open(path, &Options{Timeout: 100 * time.Millisecond, FoldDelay: -1, Sealer: logSealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var logSealer Sealer

// crashCopy copies the store's two files as they are now to a new directory, as a power
// cut would leave them (every write so far is synced), and returns the copy's path. The
// original stays open.
func crashCopy(t *testing.T, s *Store) string {
	t.Helper()
	dir := t.TempDir()
	for _, suffix := range []string{"", logSuffix} {
		b, err := os.ReadFile(s.Path() + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "posd.db"+suffix), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "posd.db")
}

// commitsOf counts bbolt's write transactions so far.
func commitsOf(s *Store) int {
	var id int
	s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

func TestSaleWritesOnlyTheLog(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	before := commitsOf(s)
	id, stan, err := s.BeginWithSTAN(ctx, sampleIntent(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, stan)); err != nil {
		t.Fatal(err)
	}
	if got := commitsOf(s); got != before {
		t.Errorf("a sale made %d bbolt commits, want 0 (the log holds it)", got-before)
	}
	if len(s.pending) != 2 {
		t.Errorf("%d log records pending, want 2", len(s.pending))
	}
	// A read sees the sale: it folds the log first, in one commit.
	rec, err := s.Get(ctx, id)
	if err != nil || rec.Outcome == nil || rec.Outcome.State != StateUnknown || rec.Intent.STAN != stan {
		t.Fatalf("Get after the sale = %+v, %v", rec, err)
	}
	if got := commitsOf(s); got != before+1 {
		t.Errorf("the fold made %d commits, want 1", got-before)
	}
	if due, err := s.Due(ctx, time.Now(), 0); err != nil || len(due) != 1 || due[0].TxnID != id {
		t.Errorf("Due = %+v, %v", due, err)
	}
	if s.log.used() != 0 {
		t.Errorf("log holds %d bytes after the fold, want 0", s.log.used())
	}
}

// TestLogReplay: writes that reached only the log are in the store after a crash, in
// order, with the counters continuing after them.
func TestLogReplay(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	// Some history already folded, so the log was rewound once.
	a := begin(t, s, 1)
	if err := s.Finish(ctx, a, approved()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, a); err != nil { // folds and rewinds
		t.Fatal(err)
	}
	b, stanB, err := s.BeginWithSTAN(ctx, sampleIntent(0))
	if err != nil {
		t.Fatal(err)
	}
	c := begin(t, s, 9)
	ids, err := s.FinishAndQueue(ctx, c, Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 10))
	if err != nil {
		t.Fatal(err)
	}
	stanX, err := s.NextSTAN(ctx)
	if err != nil {
		t.Fatal(err)
	}

	s2 := openNoFold(t, crashCopy(t, s))
	if open, err := s2.Unfinished(ctx); err != nil || len(open) != 1 || open[0].ID != b || open[0].Intent.STAN != stanB {
		t.Errorf("Unfinished after the crash = %+v, %v; want %d", open, err, b)
	}
	if due, err := s2.Due(ctx, time.Now(), 0); err != nil || len(due) != 1 || due[0].ID != ids[0] || !bytes.Contains(due[0].Sensitive, []byte(secretPAN)) {
		t.Errorf("queue after the crash = %+v, %v", due, err)
	}
	if n, err := s2.NextSTAN(ctx); err != nil || n != stanX+1 {
		t.Errorf("NextSTAN after the crash = %d, %v; want %d", n, err, stanX+1)
	}
	if id := begin(t, s2, 1); id != c+1 {
		t.Errorf("Begin after the crash = %d, want %d", id, c+1)
	}
	rev := item(KindReversal, 11)
	rev.TxnID = b
	qids, err := s2.Enqueue(ctx, rev)
	if err != nil || qids[0] != ids[0]+1 {
		t.Errorf("Enqueue after the crash = %v, %v; want id %d", qids, err, ids[0]+1)
	}
	if rep, err := s2.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check after replay: %+v %v", rep.Problems, err)
	}
}

// TestLogTornTail: a record whose write did not complete (its bytes do not match its CRC)
// is not replayed, and nothing after it is.
func TestLogTornTail(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	first := begin(t, s, 1)
	off := s.log.off
	second := begin(t, s, 2)
	path := crashCopy(t, s)
	f, err := os.OpenFile(path+logSuffix, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("torn"), off+logRecHeader+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s2 := openNoFold(t, path)
	if _, err := s2.Get(ctx, first); err != nil {
		t.Errorf("the first record: %v", err)
	}
	if _, err := s2.Get(ctx, second); !errors.Is(err, ErrNotFound) {
		t.Errorf("the torn record: %v, want ErrNotFound", err)
	}
	if id := begin(t, s2, 3); id != second {
		t.Errorf("next id after a torn record = %d, want %d (never acknowledged, so free)", id, second)
	}
}

// TestLogStaleRecordsIgnored: after a rewind the bytes of folded records may still be on
// disk (the zeroing is not synced); they are recognised by their LSNs and not replayed.
func TestLogStaleRecordsIgnored(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	var old []TxnID
	for i := range 5 {
		old = append(old, begin(t, s, uint32(i+1)))
	}
	stale, err := os.ReadFile(s.Path() + logSuffix)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range old {
		if err := s.Finish(ctx, id, approved()); err != nil {
			t.Fatal(err)
		}
	}
	foldNow(t, s) // folds the five begins and finishes, and rewinds
	// Put the old begins back, as if the zeroing never reached the disk.
	if err := os.WriteFile(s.Path()+logSuffix, stale, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openNoFold(t, crashCopy(t, s))
	for _, id := range old {
		if rec, err := s2.Get(ctx, id); err != nil || rec.Outcome == nil {
			t.Errorf("record %d after stale log records = %+v, %v; want finished", id, rec, err)
		}
	}
	if rep, err := s2.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("Check: %+v %v", rep.Problems, err)
	}
}

// TestLogNewRecordOverStale: records after a rewind overwrite the start of older ones;
// replay takes the new ones and stops where the LSNs stop following.
func TestLogNewRecordOverStale(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	for i := range 20 {
		begin(t, s, uint32(i+1))
	}
	old, err := os.ReadFile(s.Path() + logSuffix)
	if err != nil {
		t.Fatal(err)
	}
	foldNow(t, s)
	fresh := begin(t, s, 99)
	cur, err := os.ReadFile(s.Path() + logSuffix)
	if err != nil {
		t.Fatal(err)
	}
	// The new record, followed by the old records' bytes (the zeroing lost).
	copy(old[:s.log.off], cur[:s.log.off])
	path := crashCopy(t, s)
	if err := os.WriteFile(path+logSuffix, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openNoFold(t, path)
	if rec, err := s2.Get(ctx, fresh); err != nil || rec.Intent.STAN != 99 {
		t.Errorf("the new record = %+v, %v", rec, err)
	}
	if id := begin(t, s2, 100); id != fresh+1 {
		t.Errorf("next id = %d, want %d", id, fresh+1)
	}
}

func TestLogOfAnotherStoreRefused(t *testing.T) {
	dir := t.TempDir()
	a := openNoFold(t, filepath.Join(dir, "a.db"))
	begin(t, a, 1)
	b := openNoFold(t, filepath.Join(dir, "b.db"))
	begin(t, b, 1)
	pa, pb := crashCopy(t, a), crashCopy(t, b)
	// b's log beside a's file: the store file was replaced.
	log, err := os.ReadFile(pb + logSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pa+logSuffix, log, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := func(p string) [32]byte { b, _ := os.ReadFile(p); return sha256.Sum256(b) }
	dbBefore, logBefore := sum(pa), sum(pa+logSuffix)
	_, err = Open(pa, &Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "belongs to another store") || !strings.Contains(err.Error(), "move") {
		t.Fatalf("Open with another store's log: %v", err)
	}
	if sum(pa) != dbBefore || sum(pa+logSuffix) != logBefore {
		t.Error("the refused files were changed")
	}
}

func TestLogNotALog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posd.db")
	if err := os.WriteFile(path+logSuffix, []byte(strings.Repeat("garbage!", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "not a posd write-ahead log") {
		t.Fatalf("Open beside a foreign -wal file: %v", err)
	}
}

// TestLogGapRefused: a log whose first unfolded record does not follow the file's last
// folded one has lost records: posd refuses to start rather than run without them.
func TestLogGapRefused(t *testing.T) {
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	begin(t, s, 1)
	foldNow(t, s)
	begin(t, s, 2)
	path := crashCopy(t, s)
	// Pretend the file's fold mark is behind: set it back by one.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyLogLSN, binary.BigEndian.AppendUint64(nil, 0))
	})
	db.Close()
	if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "jumps from record 0 to 2") {
		t.Fatalf("Open with a gap: %v", err)
	}
}

func TestLayoutVersion1Upgraded(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	id, err := s.Begin(ctx, sampleIntent(1))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A release-1 file: version 1, no id, no log.
	db, err := bolt.Open(s.Path(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if err := m.Delete(keyStoreID); err != nil {
			return err
		}
		return m.Put(keyVersion, []byte("1"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.Path() + logSuffix); err != nil {
		t.Fatal(err)
	}
	s, err = Open(s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rec, err := s.Get(ctx, id); err != nil || rec.Intent.STAN != 1 {
		t.Errorf("record after the upgrade = %+v, %v", rec, err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if v := string(m.Get(keyVersion)); v != layoutVersion || len(m.Get(keyStoreID)) != storeIDLen {
			t.Errorf("after the upgrade: version %q, id %x", v, m.Get(keyStoreID))
		}
		return nil
	})
}

// TestLargeRecordBypassesLog: a write too large for the log is committed to the file
// directly, in order after what the log holds.
func TestLargeRecordBypassesLog(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	small := begin(t, s, 1)
	in := sampleIntent(2)
	in.SaleTransactionID = strings.Repeat("x", logSize)
	big, err := s.Begin(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if big != small+1 || len(s.pending) != 0 {
		t.Errorf("big = %d (small %d), %d pending", big, small, len(s.pending))
	}
	s2 := openNoFold(t, crashCopy(t, s))
	if open, err := s2.Unfinished(ctx); err != nil || len(open) != 2 {
		t.Errorf("after a crash: %d open, %v", len(open), err)
	}
}

// TestLogFillsAndFolds: more writes than the log holds fold on the way, with nothing lost.
func TestLogFillsAndFolds(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	in := sampleIntent(1)
	in.SaleTransactionID = strings.Repeat("y", 3000)
	const n = 1000 // about 3 MB through a 1 MiB log
	for range n {
		if _, err := s.Begin(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	s2 := openNoFold(t, crashCopy(t, s))
	if open, err := s2.Unfinished(ctx); err != nil || len(open) != n {
		t.Errorf("after a crash: %d open, %v; want %d", len(open), err, n)
	}
}

func TestFoldLaterByTimer(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "posd.db"), &Options{FoldDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	begin(t, s, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the log was not folded by the timer")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFoldWaitsForPause: writes closer together than FoldDelay (sales back to back) are
// not folded between them, so that no commit, and none of its syncs, comes between two
// sales; once the writes pause for FoldDelay the timer folds them all in one commit.
func TestFoldWaitsForPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 20 * time.Millisecond
		s, err := Open(filepath.Join(t.TempDir(), "posd.db"), &Options{FoldDelay: delay})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		before := commitsOf(s)
		pending := func() int {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.pending)
		}
		const n = 10
		for i := range n {
			begin(t, s, uint32(i+1))
			time.Sleep(delay / 2)
			synctest.Wait()
		}
		if got, c := pending(), commitsOf(s)-before; got != n || c != 0 {
			t.Fatalf("writes %v apart: %d records pending and %d commits, want %d and 0", delay/2, got, c, n)
		}
		time.Sleep(delay / 2) // delay since the last write
		synctest.Wait()
		if got, c := pending(), commitsOf(s)-before; got != 0 || c != 1 {
			t.Fatalf("after a pause of %v: %d records pending and %d commits, want 0 and 1", delay, got, c)
		}
	})
}

// TestFoldDueWithoutPause: writes that never pause are folded once the log holds foldOps
// records, in the background (the write that reached it returns first).
func TestFoldDueWithoutPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(filepath.Join(t.TempDir(), "posd.db"), &Options{FoldDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		before := commitsOf(s)
		for i := range foldOps - 1 {
			begin(t, s, uint32(i+1))
		}
		synctest.Wait()
		if c := commitsOf(s) - before; c != 0 {
			t.Fatalf("%d records: %d commits, want 0", foldOps-1, c)
		}
		begin(t, s, foldOps)
		synctest.Wait()
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if c := commitsOf(s) - before; n != 0 || c != 1 {
			t.Fatalf("%d records: %d pending, %d commits, want 0 and 1", foldOps, n, c)
		}
	})
}

// TestLookupTillInLogAndFile: a till request's keys find its transaction while the begin
// is only in the log, after a fold, and after a crash left it in the log.
func TestLookupTillInLogAndFile(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	ids := map[uint32]TxnID{}
	for stan := uint32(1); stan <= 3; stan++ {
		in := sampleIntent(stan)
		in.ServiceID = fmt.Sprint("svc", stan)
		id, err := s.Begin(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		ids[stan] = id
	}
	check := func(s *Store, when string) {
		t.Helper()
		for stan, id := range ids {
			for _, k := range []TillKey{SaleTxnKey("till-7", fmt.Sprint("st-", stan)), ServiceKey("till-7", fmt.Sprint("svc", stan))} {
				if got, ok, err := s.LookupTill(ctx, k); err != nil || !ok || got != id {
					t.Errorf("%s: LookupTill(%q) = %d, %v, %v; want %d", when, k, got, ok, err, id)
				}
			}
		}
		if got, ok, err := s.LookupTill(ctx, SaleTxnKey("till-7", "st-4")); err != nil || ok {
			t.Errorf("%s: LookupTill of an unknown key = %d, %v, %v", when, got, ok, err)
		}
	}
	check(s, "in the log")
	check(openNoFold(t, crashCopy(t, s)), "replayed after a crash")
	if _, err := s.Get(ctx, ids[1]); err != nil { // a read folds
		t.Fatal(err)
	}
	if n := len(s.pending); n != 0 || len(s.tillKeys) != 0 {
		t.Fatalf("after the fold: %d pending, %d till keys held in memory", n, len(s.tillKeys))
	}
	check(s, "in the file")
}

// TestFoldFinishedSameBytes: the fold puts the finished record Finish made for its audit
// link (for a plain record, without decoding it); a replay after a crash makes it again from
// the journal's record, decoded and encoded. Both must be the same bytes, or the chain would
// not verify after a crash.
func TestFoldFinishedSameBytes(t *testing.T) {
	for name, saleTxn := range map[string]string{
		"plain":           "st-1",
		"escaped":         `st-<"\\">&`,
		"not UTF-8":       "st-\xff-caf\u00e9", // replaced when encoded: encoded again, it would differ
		"valid non-ASCII": "st-caf\u00e9-\u2028",
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
			in := sampleIntent(1)
			in.SaleTransactionID = saleTxn
			id, err := s.Begin(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			out := approved()
			out.Reason = "a reason with <html> & \"quotes\""
			if err := s.Finish(ctx, id, out); err != nil {
				t.Fatal(err)
			}
			s2 := openNoFold(t, crashCopy(t, s))      // replayed: made from the record
			if _, err := s.Get(ctx, id); err != nil { // folded: Finish's bytes
				t.Fatal(err)
			}
			value := func(s *Store) []byte {
				var v []byte
				s.db.View(func(tx *bolt.Tx) error { v = bytes.Clone(tx.Bucket(bucketJournal).Get(id.key())); return nil })
				return v
			}
			if a, b := value(s), value(s2); len(a) == 0 || !bytes.Equal(a, b) {
				t.Errorf("folded %s\nreplayed %s", a, b)
			}
			for _, st := range []*Store{s, s2} {
				if r, err := st.VerifyAudit(ctx); err != nil || !r.OK() {
					t.Errorf("VerifyAudit = %+v, %v", r, err)
				}
				if rec, err := st.Get(ctx, id); err != nil || rec.Outcome == nil || rec.Outcome.State != StateApproved || rec.Intent.STAN != 1 {
					t.Errorf("Get = %+v, %v", rec, err)
				}
			}
		})
	}
}

// TestWithOutcomeIsEncodeRecord: the outcome added to a plain record's bytes gives the bytes
// encodeRecord gives.
func TestWithOutcomeIsEncodeRecord(t *testing.T) {
	in := sampleIntent(7)
	in.Chip, in.AID, in.Original = true, "A0000000031010", 3
	v, err := encodeRecord(in, nil)
	if err != nil || !plainJSON(v) {
		t.Fatalf("encodeRecord = %s, %v (plain %v)", v, err, plainJSON(v))
	}
	out := approved()
	out.Reversed = &Settlement{}
	want, err := encodeRecord(in, &out)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := withOutcome(v, &out); err != nil || !bytes.Equal(got, want) {
		t.Errorf("withOutcome = %s, %v\nencodeRecord = %s", got, err, want)
	}
	if _, err := withOutcome([]byte(`{"v":1`), &out); !errors.Is(err, ErrCorrupt) {
		t.Errorf("withOutcome of a cut record: %v", err)
	}
	if plainJSON([]byte(`{"a":"\u003c"}`)) || plainJSON([]byte("{\"a\":\"\xc3\xa9\"}")) {
		t.Error("plainJSON of an escaped or non-ASCII record")
	}
}

func FuzzReadLog(f *testing.F) {
	good := make([]byte, logHeaderSize)
	good = append(good, encodeLogRecord(1, []byte(`{"op":"stan","stan":1}`))...)
	good = append(good, encodeLogRecord(2, []byte(`{"op":"begin","txn":1,"record":{"v":1}}`))...)
	f.Add(good)
	f.Add(append(make([]byte, logHeaderSize), encodeLogRecord(7, []byte(`{"op":"finish","txn":1}`))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, end, err := readLog(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if end < logHeaderSize || (len(entries) == 0) != (end == logHeaderSize) {
			t.Fatalf("%d entries ending at %d", len(entries), end)
		}
		for i := 1; i < len(entries); i++ {
			if entries[i].lsn != entries[i-1].lsn+1 {
				t.Fatalf("LSNs %d then %d", entries[i-1].lsn, entries[i].lsn)
			}
		}
	})
}
