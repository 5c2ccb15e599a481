package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "posd.db"), &Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawUpdate changes the bbolt file under the Store, as a damaged or hand-edited file would
// be, after folding the log; the Store's counters are reloaded by reopening it.
func rawUpdate(t testing.TB, s *Store, fn func(*bolt.Tx) error) *Store {
	t.Helper()
	foldNow(t, s)
	if err := s.db.Update(fn); err != nil {
		t.Fatal(err)
	}
	return reopen(t, s)
}

// foldNow folds the write-ahead log into the bbolt file.
func foldNow(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fold(); err != nil {
		t.Fatal(err)
	}
}

func reopen(t testing.TB, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Path(), &Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func sampleIntent(stan uint32) Intent {
	return Intent{
		Kind:              "sale",
		MTI:               "0200",
		STAN:              stan,
		TerminalID:        "TERM0001",
		SaleID:            "till-7",
		SaleTransactionID: fmt.Sprintf("st-%d", stan),
		AmountMinor:       1999,
		Currency:          "EUR",
		MaskedPAN:         "401234******0909",
		EntryMode:         "021",
		Time:              time.Date(2025, 3, 1, 12, 30, 45, 123456789, time.UTC),
	}
}

func approved() Outcome {
	return Outcome{
		State:        StateApproved,
		ResponseCode: "00",
		ApprovalCode: "A1B2C3",
		RRN:          "506012345678",
		Time:         time.Date(2025, 3, 1, 12, 30, 47, 0, time.UTC),
	}
}

func TestNextSTANIncrementsAndSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	for want := uint32(1); want <= 3; want++ {
		got, err := s.NextSTAN(ctx)
		if err != nil || got != want {
			t.Fatalf("NextSTAN = %d, %v; want %d", got, err, want)
		}
	}
	s = reopen(t, s)
	if got, err := s.NextSTAN(ctx); err != nil || got != 4 {
		t.Fatalf("NextSTAN after reopen = %d, %v; want 4", got, err)
	}
}

func TestNextSTANWraps(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	// Set the counter directly rather than calling NextSTAN 999998 times.
	s = rawUpdate(t, s, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounters).Put(keySTAN, binary.BigEndian.AppendUint32(nil, 999998))
	})
	var got []uint32
	for range 2 {
		n, err := s.NextSTAN(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	s = reopen(t, s)
	n, err := s.NextSTAN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, n)
	if want := []uint32{999999, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("STANs %v, want %v", got, want)
	}
}

func TestBeginFinishGet(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	in := sampleIntent(42)
	id, err := s.Begin(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if id != 1 {
		t.Errorf("first TxnID = %d, want 1", id)
	}
	rec, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Record{ID: id, Intent: in}); !reflect.DeepEqual(rec, want) {
		t.Fatalf("Get open record =\n%+v\nwant\n%+v", rec, want)
	}
	out := approved()
	if err := s.Finish(ctx, id, out); err != nil {
		t.Fatal(err)
	}
	out.Batch = 1 // the open batch of a new store, set by Finish
	s = reopen(t, s)
	rec, err = s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Record{ID: id, Intent: in, Outcome: &out}); !reflect.DeepEqual(rec, want) {
		t.Fatalf("Get finished record =\n%+v\nwant\n%+v", rec, want)
	}

	// A time in another zone keeps its instant.
	in2 := sampleIntent(43)
	in2.Time = time.Date(2025, 3, 1, 14, 30, 45, 0, time.FixedZone("CEST", 2*3600))
	id2, err := s.Begin(ctx, in2)
	if err != nil {
		t.Fatal(err)
	}
	if id2 != 2 {
		t.Errorf("second TxnID = %d, want 2", id2)
	}
	rec, err = s.Get(ctx, id2)
	if err != nil || !rec.Intent.Time.Equal(in2.Time) {
		t.Fatalf("Get = %v, %v; want time %v", rec.Intent.Time, err, in2.Time)
	}
}

func TestRecordIsVersionedJSON(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	id, err := s.Begin(ctx, sampleIntent(1))
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	foldNow(t, s)
	err = s.db.View(func(tx *bolt.Tx) error {
		raw = bytes.Clone(tx.Bucket(bucketJournal).Get(binary.BigEndian.AppendUint64(nil, uint64(id))))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte(`{"v":1,`)) || !bytes.Contains(raw, []byte(`"masked_pan":"401234******0909"`)) {
		t.Errorf("stored value %s", raw)
	}
}

func TestFinishErrors(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	id, err := s.Begin(ctx, sampleIntent(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []State{StateIntent, "", "maybe"} {
		if err := s.Finish(ctx, id, Outcome{State: st}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Finish state %q: err = %v, want ErrInvalid", st, err)
		}
	}
	if err := s.Finish(ctx, 99, approved()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Finish unknown id: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown id: err = %v, want ErrNotFound", err)
	}
	first := approved()
	if err := s.Finish(ctx, id, first); err != nil {
		t.Fatal(err)
	}
	first.Batch = 1 // the open batch, set by Finish
	if err := s.Finish(ctx, id, Outcome{State: StateDeclined, ResponseCode: "05"}); !errors.Is(err, ErrFinished) {
		t.Errorf("Finish twice: err = %v, want ErrFinished", err)
	}
	rec, err := s.Get(ctx, id)
	if err != nil || rec.Outcome == nil || *rec.Outcome != first {
		t.Errorf("after second Finish: %+v, %v; want first outcome kept", rec.Outcome, err)
	}
}

func TestUnfinished(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if recs, err := s.Unfinished(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("Unfinished on empty store = %v, %v", recs, err)
	}
	var ids []TxnID
	for i := range 5 {
		id, err := s.Begin(ctx, sampleIntent(uint32(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := s.Finish(ctx, ids[1], approved()); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, ids[3], Outcome{State: StateNotSent, Reason: "acquirer unreachable"}); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s)
	recs, err := s.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []TxnID
	for _, r := range recs {
		if r.Outcome != nil {
			t.Errorf("record %d has an outcome", r.ID)
		}
		if r.Intent.STAN != uint32(r.ID) {
			t.Errorf("record %d has STAN %d", r.ID, r.Intent.STAN)
		}
		got = append(got, r.ID)
	}
	if want := []TxnID{ids[0], ids[2], ids[4]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Unfinished IDs %v, want %v", got, want)
	}
}

func TestBeginRefusesUnmaskedPAN(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	for _, pan := range []string{
		"4012345678909",
		"4012 3456 7890 9",
		"4012-3456-7890-9",
		"4012345*****0909",
		"card 5413330089010434 x",
	} {
		in := sampleIntent(1)
		in.MaskedPAN = pan
		_, err := s.Begin(ctx, in)
		if !errors.Is(err, ErrUnmaskedPAN) {
			t.Errorf("Begin(MaskedPAN %q): err = %v, want ErrUnmaskedPAN", pan, err)
			continue
		}
		if strings.Contains(err.Error(), pan) || strings.Contains(err.Error(), "0909") {
			t.Errorf("error %q contains the PAN", err)
		}
	}
	for _, masked := range []string{"401234******0909", "************0909", "", "4012 34** **** 0909"} {
		in := sampleIntent(1)
		in.MaskedPAN = masked
		if _, err := s.Begin(ctx, in); err != nil {
			t.Errorf("Begin(MaskedPAN %q): %v", masked, err)
		}
	}
	// Refused intents took no ID.
	recs, err := s.Unfinished(ctx)
	if err != nil || len(recs) != 4 || recs[0].ID != 1 {
		t.Fatalf("after refusals: %d records, first %+v, err %v", len(recs), recs, err)
	}
}

func TestFinishRedactsDigitRunsInReason(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	id, err := s.Begin(ctx, sampleIntent(1))
	if err != nil {
		t.Fatal(err)
	}
	out := Outcome{State: StateUnknown, Reason: "pack field 2 (4012345678909): read tcp 10.0.0.1:5000: i/o timeout"}
	if err := s.Finish(ctx, id, out); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := "pack field 2 (*************): read tcp 10.0.0.1:5000: i/o timeout"; rec.Outcome.Reason != want {
		t.Errorf("Reason = %q, want %q", rec.Outcome.Reason, want)
	}
}

func TestCanceledContextWritesNothing(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Begin(ctx, sampleIntent(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Begin: err = %v, want context.Canceled", err)
	}
	if _, err := s.NextSTAN(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("NextSTAN: err = %v, want context.Canceled", err)
	}
	bg := context.Background()
	if n, err := s.NextSTAN(bg); err != nil || n != 1 {
		t.Errorf("NextSTAN after canceled call = %d, %v; want 1", n, err)
	}
	if id, err := s.Begin(bg, sampleIntent(1)); err != nil || id != 1 {
		t.Errorf("Begin after canceled call = %d, %v; want 1", id, err)
	}
}

func TestRecordsOrderBatchesAndReentry(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	// More than two batches, written in one commit to keep the test fast.
	const n = 2*recordsBatch + 7
	s = rawUpdate(t, s, func(tx *bolt.Tx) error {
		j, open := tx.Bucket(bucketJournal), tx.Bucket(bucketOpen)
		for range n {
			seq, err := j.NextSequence()
			if err != nil {
				return err
			}
			v, err := encodeRecord(sampleIntent(uint32(seq)), nil)
			if err != nil {
				return err
			}
			if err := j.Put(TxnID(seq).key(), v); err != nil {
				return err
			}
			if err := open.Put(TxnID(seq).key(), nil); err != nil {
				return err
			}
		}
		return nil
	})
	var seen []TxnID
	err := s.Records(ctx, func(r Record) error {
		seen = append(seen, r.ID)
		if r.ID%100 == 0 {
			// fn may write: it runs outside any transaction.
			return s.Finish(ctx, r.ID, approved())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("Records saw %d records, want %d", len(seen), n)
	}
	for i, id := range seen {
		if id != TxnID(i+1) {
			t.Fatalf("record %d has ID %d", i, id)
		}
	}
	open, err := s.Unfinished(ctx)
	if err != nil || len(open) != n-5 {
		t.Fatalf("Unfinished: %d, %v; want %d", len(open), err, n-5)
	}

	stop := errors.New("stop")
	count := 0
	err = s.Records(ctx, func(Record) error {
		count++
		if count == 3 {
			return stop
		}
		return nil
	})
	if err != stop || count != 3 {
		t.Errorf("Records with failing fn: err %v after %d calls; want stop after 3", err, count)
	}
}

func TestCorruptRecord(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	id, err := s.Begin(ctx, sampleIntent(1))
	if err != nil {
		t.Fatal(err)
	}
	foldNow(t, s)
	for _, bad := range []string{`{"v":2,"intent":{}}`, `not json`, `{"v":1,"intent":{},"extra":1}`} {
		err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJournal).Put(id.key(), []byte(bad)) })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "record 1") {
			t.Errorf("Get %s: err = %v, want ErrCorrupt naming record 1", bad, err)
		}
		if _, err := s.Unfinished(ctx); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Unfinished %s: err = %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestClosed(t *testing.T) {
	s := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NextSTAN(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("NextSTAN after Close: err = %v, want ErrClosed", err)
	}
	if _, err := s.Get(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: err = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenLocked(t *testing.T) {
	s := openTemp(t)
	const timeout = 150 * time.Millisecond
	start := time.Now()
	s2, err := Open(s.Path(), &Options{Timeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of the same file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), s.Path()) {
		t.Errorf("second Open: err = %v, want ErrLocked naming %s", err, s.Path())
	}
	if elapsed < timeout-60*time.Millisecond || elapsed > timeout+time.Second {
		t.Errorf("second Open returned after %v, want about %v", elapsed, timeout)
	}
	// The first Store still works.
	if _, err := s.NextSTAN(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestOpenSystemErrorIsNotLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "posd.db")
	_, err := Open(path, nil)
	if err == nil || errors.Is(err, ErrLayout) || errors.Is(err, ErrLocked) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open in a missing directory: err = %v, want a not-exist error", err)
	}
}

func TestOpenDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posd.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
}

// assertRefused checks that Open refuses path with ErrLayout and leaves the
// file byte for byte as it was.
func assertRefused(t *testing.T, path, wantInMsg string) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fiBefore, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, &Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
	if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), wantInMsg) {
		t.Errorf("Open: err = %v; want ErrLayout naming the path and %q", err, wantInMsg)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fiAfter, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) || !fiAfter.ModTime().Equal(fiBefore.ModTime()) {
		t.Errorf("Open modified the refused file")
	}
}

func TestOpenGarbageFile(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{10, 4096, 5 * 4096} {
		path := filepath.Join(dir, fmt.Sprintf("garbage-%d", size))
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		assertRefused(t, path, "not a bbolt database")
	}
}

func TestOpenForeignBboltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("widgets"))
		if err != nil {
			return err
		}
		return b.Put([]byte("a"), []byte("b"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	assertRefused(t, path, "other than posd")
}

func TestOpenOtherLayoutVersion(t *testing.T) {
	s := openTemp(t)
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersion, []byte("4")) })
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	assertRefused(t, s.Path(), `layout version "4"`)
}

func FuzzDecodeRecord(f *testing.F) {
	good, _ := encodeRecord(sampleIntent(1), &Outcome{State: StateApproved, ResponseCode: "00"})
	f.Add(good)
	f.Add([]byte(`{"v":1,"intent":{}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		rec, err := decodeRecord(7, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := encodeRecord(rec.Intent, rec.Outcome)
		if err != nil {
			t.Fatal(err)
		}
		rec2, err := decodeRecord(7, again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(rec, rec2) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", rec, rec2)
		}
	})
}

func BenchmarkBeginFinish(b *testing.B) {
	s := openTemp(b)
	ctx := context.Background()
	in, out := sampleIntent(1), approved()
	for b.Loop() {
		id, err := s.Begin(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Finish(ctx, id, out); err != nil {
			b.Fatal(err)
		}
	}
}
