package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkSaleJournal measures one sale's journal work (BeginWithSTAN: STAN and intent,
// Finish: outcome; each durable before it returns) and, in the same run, the raw cost of
// one 4 KiB write + fdatasync on the same file system (as the write-ahead log and bbolt
// sync), so that their ratio can be reported (target: sale <= 2.5x two fsyncs). The sale
// sub-benchmark also reports the ratio itself, "x2fsync", against raw fsyncs timed just
// before and after its loop.
func BenchmarkSaleJournal(b *testing.B) {
	dir := b.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, "raw"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	rawFsyncs := func(b *testing.B, n int) {
		for i := 0; i < n; i++ {
			if _, err := f.WriteAt(buf, int64(i%256)*4096); err != nil {
				b.Fatal(err)
			}
			if err := fdatasync(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("fsync4k", func(b *testing.B) { rawFsyncs(b, b.N) })
	b.Run("sale", func(b *testing.B) {
		s, err := Open(filepath.Join(dir, "j.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		in := Intent{Kind: "sale", MTI: "0200", TerminalID: "T0000001", AmountMinor: 1250, Currency: "EUR", MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now()}
		const probe = 200
		t0 := time.Now()
		rawFsyncs(b, probe)
		rawBefore := time.Since(t0)
		b.ResetTimer()
		t1 := time.Now()
		for i := 0; i < b.N; i++ {
			id, _, err := s.BeginWithSTAN(ctx, in) // what a sale does: STAN and intent in one write
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Finish(ctx, id, Outcome{State: StateApproved, ResponseCode: "00", ApprovalCode: "123456", RRN: "000000000001", Time: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
		sales := time.Since(t1)
		b.StopTimer()
		t2 := time.Now()
		rawFsyncs(b, probe)
		raw := (rawBefore + time.Since(t2)) / (2 * probe)
		b.ReportMetric(float64(sales)/float64(b.N)/float64(2*raw), "x2fsync")
	})
	// pairs: the same sale and two raw 4 KiB write+fdatasyncs timed pair by pair (A B A B,
	// which goes first alternating), so that both are measured under the same conditions:
	// "sale" times its raw fsyncs in a tight loop before and after the sales, where they
	// run faster than fsyncs between other writes. It reports the median over pairs of
	// sale / 2 raw fsyncs ("x2fsync-pairs") and the medians of each, in µs.
	b.Run("pairs", func(b *testing.B) {
		s, err := Open(filepath.Join(dir, "p.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		in := Intent{Kind: "sale", MTI: "0200", TerminalID: "T0000001", AmountMinor: 1250, Currency: "EUR", MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now()}
		sale := func() time.Duration {
			t0 := time.Now()
			id, _, err := s.BeginWithSTAN(ctx, in)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Finish(ctx, id, Outcome{State: StateApproved, ResponseCode: "00", ApprovalCode: "123456", RRN: "000000000001", Time: time.Now()}); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
		raw := func() time.Duration {
			t0 := time.Now()
			rawFsyncs(b, 2)
			return time.Since(t0)
		}
		sale() // the log's and the file's first pages are not the subject
		sales, raws, ratios := make([]float64, b.N), make([]float64, b.N), make([]float64, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var ds, dr time.Duration
			if i%2 == 0 {
				ds = sale()
				dr = raw()
			} else {
				dr = raw()
				ds = sale()
			}
			sales[i], raws[i], ratios[i] = float64(ds.Microseconds()), float64(dr.Microseconds()), float64(ds)/float64(dr)
		}
		b.StopTimer()
		b.ReportMetric(medianOf(ratios), "x2fsync-pairs")
		b.ReportMetric(medianOf(sales), "sale-µs")
		b.ReportMetric(medianOf(raws), "2fsync-µs")
	})
}

// medianOf returns the median of v, sorting it.
func medianOf(v []float64) float64 {
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

var (
	bigOnce sync.Once
	bigPath string
	bigErr  error
)

// bigStore builds, once per test binary, a store with 100,000 finished journal records and
// 10,000 queued advices, written in large transactions (building it sale by sale would
// take minutes of fsyncs).
func bigStore(b *testing.B) string {
	bigOnce.Do(func() {
		dir, err := os.MkdirTemp("", "posd-bench-big-")
		if err != nil {
			bigErr = err
			return
		}
		bigPath = filepath.Join(dir, "big.db")
		s, err := Open(bigPath, nil)
		if err != nil {
			bigErr = err
			return
		}
		defer s.Close()
		now := time.Now()
		for chunk := 0; chunk < 100; chunk++ {
			bigErr = s.db.Update(func(tx *bolt.Tx) error {
				j := tx.Bucket(bucketJournal)
				for i := 0; i < 1000; i++ {
					seq, _ := j.NextSequence()
					in := Intent{Kind: "sale", MTI: "0200", STAN: uint32(seq % 999999), TerminalID: "T0000001", AmountMinor: 1250, Currency: "EUR", MaskedPAN: "476173******0010", EntryMode: "021", Time: now}
					v, err := encodeRecord(in, &Outcome{State: StateApprovedOffline, Time: now})
					if err != nil {
						return err
					}
					if err := j.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
						return err
					}
				}
				if chunk < 10 {
					items := make([]Item, 1000)
					for i := range items {
						items[i] = Item{TxnID: TxnID(chunk*1000 + i + 1), Kind: KindAdvice, STAN: uint32(chunk*1000 + i + 1), AmountMinor: 1250, Currency: "EUR", MaskedPAN: "476173******0010", Payload: []byte(`{"orig_mti":"0200"}`)}
					}
					_, err := s.enqueueTx(context.Background(), tx, items, now)
					return err
				}
				return nil
			})
			if bigErr != nil {
				return
			}
		}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigPath
}

// BenchmarkStartup measures what posd does with its store at start-up: open (with the
// layout check), list transactions left open by a crash, and total the queue, on a store
// of 100,000 journal records and 10,000 queued advices (target: under 300 ms to ready).
// BenchmarkStartupAfterCrash is BenchmarkStartup with a full write-ahead log to fold at
// open: foldOps-1 sales' records (intent and outcome) that a killed posd left unfolded.
func BenchmarkStartupAfterCrash(b *testing.B) {
	big := bigStore(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "crashed.db")
	copyFile(b, big, src)
	s, err := Open(src, &Options{FoldDelay: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	in := Intent{Kind: "sale", MTI: "0200", TerminalID: "T0000001", AmountMinor: 1250, Currency: "EUR", MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now()}
	for range (foldOps - 1) / 2 {
		id, _, err := s.BeginWithSTAN(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Finish(ctx, id, Outcome{State: StateApproved, ResponseCode: "00", Time: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	// The files as a kill would leave them: copied while s is open, never folded.
	copyFile(b, src, src+".crash")
	copyFile(b, src+logSuffix, src+".crash"+logSuffix)
	s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		path := filepath.Join(dir, fmt.Sprintf("run%d.db", i))
		copyFile(b, src+".crash", path)
		copyFile(b, src+".crash"+logSuffix, path+logSuffix)
		b.StartTimer()
		startOnce(b, path)
		b.StopTimer()
		os.Remove(path)
		os.Remove(path + logSuffix)
		b.StartTimer()
	}
}

func copyFile(b testing.TB, from, to string) {
	data, err := os.ReadFile(from)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkStartup(b *testing.B) {
	path := bigStore(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		startOnce(b, path)
	}
}

// startOnce is what posd does with its store at start: open (folding the log), the
// transactions a crash left open, the queue's totals.
func startOnce(b *testing.B, path string) {
	ctx := context.Background()
	s, err := Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Unfinished(ctx); err != nil {
		b.Fatal(err)
	}
	t, err := s.QueueTotals(ctx)
	if err != nil || t.Advices != 10000 {
		b.Fatalf("totals %+v, %v", t, err)
	}
}

// BenchmarkNextWait measures what the forwarder does between drains to learn when the next
// queued item falls due, on the 10,000 queued advices of bigStore: "list" is the whole-queue
// listing it used before (List, then a scan), "next-due" is Store.NextDue.
func BenchmarkNextWait(b *testing.B) {
	path := bigStore(b)
	dir := b.TempDir()
	copyFile(b, path, filepath.Join(dir, "q.db"))
	s, err := Open(filepath.Join(dir, "q.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// Every item waits an hour, as after failed attempts while the host is away.
	items, err := s.List(ctx)
	if err != nil {
		b.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	res := make([]Result, len(items))
	for i, it := range items {
		res[i] = Result{ID: it.ID, Err: "host unreachable", Next: later}
	}
	if err := s.Settle(ctx, res); err != nil {
		b.Fatal(err)
	}
	b.Run("list", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			items, err := s.List(ctx)
			if err != nil || len(items) != 10000 {
				b.Fatalf("%d items, %v", len(items), err)
			}
			var next time.Time
			for _, it := range items {
				if it.State == QueuePending && (next.IsZero() || it.NextAttempt.Before(next)) {
					next = it.NextAttempt
				}
			}
		}
	})
	b.Run("due-none", func(b *testing.B) {
		// A drain while every item waits for its next attempt (the host is away).
		b.ReportAllocs()
		for b.Loop() {
			if due, err := s.Due(ctx, time.Now(), 256); err != nil || len(due) != 0 {
				b.Fatalf("%d due, %v", len(due), err)
			}
		}
	})
	b.Run("next-due", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := s.NextDue(ctx); err != nil || !ok {
				b.Fatalf("NextDue: %v, %v", ok, err)
			}
		}
	})
}

// BenchmarkSaleAuditor is a sale's two writes (BeginWithSTAN, Finish) with the audit chain
// unkeyed (no Auditor) and keyed under a soft hsm's AES key (the MAC computed with the
// Store's lock held, before the log append): the cost of the key.
func BenchmarkSaleAuditor(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "unkeyed"
		var a Auditor
		if keyed {
			name, a = "keyed", auditModule(b, 1)
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "j.db"), &Options{Auditor: a})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			in := Intent{Kind: "sale", MTI: "0200", TerminalID: "T0000001", AmountMinor: 1250, Currency: "EUR", MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now()}
			for b.Loop() {
				id, _, err := s.BeginWithSTAN(ctx, in)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Finish(ctx, id, Outcome{State: StateApproved, ResponseCode: "00", Time: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLinkMAC is one link's MAC: the part of the keyed chain's cost that is not I/O.
func BenchmarkLinkMAC(b *testing.B) {
	l := jsonLink{V: linkVersion, Seq: 12345, Time: time.Now(), Kind: linkFinish, Ref: "txn/12345", Sum: sum([]byte("x")), Prev: sum([]byte("y"))}
	for _, keyed := range []bool{false, true} {
		name, key := "unkeyed", ""
		var a Auditor
		if keyed {
			name, key, a = "keyed", "audit", auditModule(b, 1)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := linkMAC(context.Background(), a, key, l); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
