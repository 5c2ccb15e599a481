package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkIdleRSSEmpty, 100k and 1M measure the resident memory of the real daemon (the
// built posd binary with the pad and host simulators of the other end-to-end benchmarks),
// idle after start-up, on a store that holds that many finished sales: issue 16's "idle RSS
// <= 25 MB with a 100k-record and a 1M-record store". The store is written by the store
// package's TestHelperBuildHistory (large commits, no fsync) into the rig's store path
// before posd starts. Reported: rss-MB (VmRSS), anon-MB (the heap and stacks), file-MB (the
// mapped binary and store pages that are resident), ready-ms (from exec to the first
// answer of /v1/status, polled every 10 ms), store-MB (the file's size).
func BenchmarkIdleRSSEmpty(b *testing.B) { benchIdleRSS(b, 0) }
func BenchmarkIdleRSS100k(b *testing.B)  { benchIdleRSS(b, 100_000) }
func BenchmarkIdleRSS1M(b *testing.B)    { benchIdleRSS(b, 1_000_000) }

// idleFor is how long posd is left alone before its memory is read.
const idleFor = 2 * time.Second

func benchIdleRSS(b *testing.B, records int) {
	var rss, anon, file, ready []float64
	var size int64
	for range b.N {
		b.StopTimer()
		r := newXORig(b)
		if records > 0 {
			buildHistory(b, r.db, records)
		}
		if fi, err := os.Stat(r.db); err == nil {
			size = fi.Size()
		}
		b.StartTimer()
		t0 := time.Now()
		if !r.start(b) {
			b.Fatalf("posd exited at start:\n%s", tail(r.logs.String()))
		}
		ready = append(ready, ms(time.Since(t0)))
		b.StopTimer()
		time.Sleep(idleFor)
		m, err := procStatus(r.posd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		r.stop(b)
		b.StartTimer()
		rss, anon, file = append(rss, m["VmRSS"]), append(anon, m["RssAnon"]), append(file, m["RssFile"])
	}
	b.ReportMetric(median(rss), "rss-MB")
	b.ReportMetric(median(anon), "anon-MB")
	b.ReportMetric(median(file), "file-MB")
	b.ReportMetric(median(ready), "ready-ms")
	b.ReportMetric(float64(size)/(1<<20), "store-MB")
}

// buildHistory writes a store of n finished sales at path through the store package's
// test helper (its internals write the records in large commits).
func buildHistory(tb testing.TB, path string, n int) {
	tb.Helper()
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestHelperBuildHistory$", "github.com/posd-dev/posd/store")
	cmd.Env = append(os.Environ(), fmt.Sprintf("POSD_BUILD_HISTORY=%d %s", n, path))
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building a store of %d records: %v\n%s", n, err, out)
	}
}

// procStatus returns the memory lines of /proc/PID/status in MiB ("VmRSS", "RssAnon",
// "RssFile", ...).
func procStatus(pid int) (map[string]float64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for line := range bytes.Lines(raw) {
		k, v, ok := strings.Cut(string(line), ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
			m[k] = kb / 1024
		}
	}
	if _, ok := m["VmRSS"]; !ok {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}
