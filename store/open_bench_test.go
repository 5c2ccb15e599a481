package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// historyQueue is how many advices wait in the queue of every history store: what is open
// stays the same while the history grows.
const historyQueue = 100

var (
	historyMu    sync.Mutex
	historyPaths = map[int]string{} // records -> path, built once per test binary (TestMain removes them)
)

// historyStore builds, once per test binary, a store of n finished journal records (each
// with its till index keys) and historyQueue queued advices (buildHistory).
func historyStore(tb testing.TB, n int) string {
	historyMu.Lock()
	defer historyMu.Unlock()
	if p, ok := historyPaths[n]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "posd-bench-history-")
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "history.db")
	historyPaths[n] = path
	buildHistory(tb, path, n, historyQueue)
	return path
}

// buildHistory writes at path a store of n finished journal records (each with its till
// index keys) and queued advices, in large commits without fsync (a store built sale by
// sale would take hours).
func buildHistory(tb testing.TB, path string, n, queued int) {
	s, err := Open(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	s.db.NoSync = true
	defer func() { s.db.NoSync = false }()
	now := time.Now()
	const chunk = 5000
	for done := 0; done < max(n, 1); done += chunk {
		err := s.db.Update(func(tx *bolt.Tx) error {
			j := tx.Bucket(bucketJournal)
			for i := done; i < min(n, done+chunk); i++ {
				seq, _ := j.NextSequence()
				in := Intent{Kind: "sale", MTI: "0200", STAN: uint32(seq % 999999), TerminalID: "T0000001", AmountMinor: 1250, Currency: "EUR",
					MaskedPAN: "476173******0010", EntryMode: "021", SaleID: "TILL-1", SaleTransactionID: fmt.Sprintf("till-%09d", seq), Time: now}
				v, err := encodeRecord(in, &Outcome{State: StateApproved, ResponseCode: "00", Time: now})
				if err != nil {
					return err
				}
				if err := j.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
					return err
				}
				if err := putTillKeys(tx, tillKeys(in), TxnID(seq)); err != nil {
					return err
				}
			}
			if done > 0 || queued == 0 {
				return nil
			}
			items := make([]Item, queued)
			for i := range items {
				items[i] = Item{TxnID: TxnID(i + 1), Kind: KindAdvice, STAN: uint32(i + 1), AmountMinor: 1250, Currency: "EUR", MaskedPAN: "476173******0010", Payload: []byte(`{"orig_mti":"0200"}`)}
			}
			_, err := s.enqueueTx(context.Background(), tx, items, now)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.db.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// TestHelperBuildHistory builds a history store for another package's benchmark (cmd/posd's
// BenchmarkIdleRSS): POSD_BUILD_HISTORY="N PATH" writes N finished sales and no queued
// advices at PATH. Without it, it does nothing.
func TestHelperBuildHistory(t *testing.T) {
	spec := os.Getenv("POSD_BUILD_HISTORY")
	if spec == "" {
		t.Skip("a helper for cmd/posd's BenchmarkIdleRSS (POSD_BUILD_HISTORY=\"N PATH\")")
	}
	ns, path, ok := strings.Cut(spec, " ")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil || n < 0 {
		t.Fatalf("POSD_BUILD_HISTORY=%q: want \"N PATH\"", spec)
	}
	buildHistory(t, path, n, 0)
}

// startup is what posd does with its store at start: open (folding the log), the
// transactions a crash left open, the queue's totals (which must count the queued advices
// of historyStore, unless the store is empty).
func startup(tb testing.TB, path string) {
	ctx := context.Background()
	s, err := Open(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Unfinished(ctx); err != nil {
		tb.Fatal(err)
	}
	if t, err := s.QueueTotals(ctx); err != nil || t.Advices != historyQueue && t.Advices != 0 {
		tb.Fatalf("totals %+v, %v", t, err)
	}
}

// BenchmarkOpen1k, 100k and 1M measure start-up (startup, in this process, the file in the
// page cache) on stores of that many records and historyQueue queued advices, and report
// the resident memory of a fresh process that has opened the store and done start-up
// (openRSS): "rss-MB" its VmRSS, "map-rss-MB" the part of it that is the file's mapping,
// "cold-ms" its start-up; "file-MB" is the store's size. Targets (issue 16): start-up at 1M within 1.5x of 1k and under
// 100 ms; RSS under 25 MB.
func BenchmarkOpen1k(b *testing.B)   { benchmarkOpen(b, 1_000) }
func BenchmarkOpen100k(b *testing.B) { benchmarkOpen(b, 100_000) }
func BenchmarkOpen1M(b *testing.B)   { benchmarkOpen(b, 1_000_000) }

// BenchmarkOpenEmpty is BenchmarkOpen on a new, empty store: the baseline of RSS.
func BenchmarkOpenEmpty(b *testing.B) { benchmarkOpen(b, 0) }

func benchmarkOpen(b *testing.B, n int) {
	path := historyStore(b, n)
	r, err := openRSS(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		startup(b, path)
	}
	b.ReportMetric(float64(r.RSS)/(1<<20), "rss-MB")
	b.ReportMetric(float64(r.MapRSS)/(1<<20), "map-rss-MB")
	b.ReportMetric(float64(r.Startup)/float64(time.Millisecond), "cold-ms")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
	}
}

// rssReport is what the helper process reports.
type rssReport struct {
	RSS, MapRSS int64 // bytes
	Startup     time.Duration
}

// openRSS runs this test binary again as a helper process (TestHelperOpenRSS) that does
// start-up on path and reports its memory: a process of its own, so that what the
// benchmark built is not counted.
func openRSS(path string) (rssReport, error) {
	var r rssReport
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOpenRSS$", "-test.count=1")
	cmd.Env = append(os.Environ(), "POSD_OPEN_RSS="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("helper: %w\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "open-rss: "); ok {
			return r, json.Unmarshal([]byte(rest), &r)
		}
	}
	return r, fmt.Errorf("helper reported nothing:\n%s", out)
}

// TestHelperOpenRSS is openRSS's helper process; without POSD_OPEN_RSS it does nothing.
func TestHelperOpenRSS(t *testing.T) {
	path := os.Getenv("POSD_OPEN_RSS")
	if path == "" {
		t.Skip("the helper process of BenchmarkOpen* (POSD_OPEN_RSS names the store)")
	}
	t0 := time.Now()
	startup(t, path)
	took := time.Since(t0)
	// Open again and stay open, as the daemon does, and measure idle.
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.QueueTotals(context.Background()); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	rss, mapRSS, err := memOf(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rssReport{rss, mapRSS, took})
	fmt.Printf("open-rss: %s\n", b)
}

// memOf returns this process's VmRSS and the Rss of its mappings of the file path.
func memOf(path string) (rss, mapRSS int64, err error) {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = kib(rest)
		}
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Bytes()
		if fields := bytes.Fields(line); len(fields) >= 6 && bytes.Contains(fields[0], []byte("-")) {
			in = string(fields[len(fields)-1]) == path
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Rss:")); ok && in {
			mapRSS += kib(string(rest))
		}
	}
	return rss, mapRSS, sc.Err()
}

func kib(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "kB")), 10, 64)
	return n << 10
}
