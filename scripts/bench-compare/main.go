// Command bench-compare runs, in one run, every benchmark behind issue 16's targets and
// prints each measure as a ratio or a figure with its target, in Markdown (the body of
// docs/BENCHMARKS.md). Run it with `make bench-compare` from the module root.
//
// Comparisons are made inside one run, pair by pair: a benchmark either interleaves its two
// sides itself (A B A B) and reports the ratio per pair, or its sides are sub-benchmarks
// that `go test -count N` runs in turn, so that repetition i of A is paired with
// repetition i of B. Every figure is the median over at least 6 pairs, with the range.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// result is one benchmark line: its name without the -GOMAXPROCS suffix, and its metrics
// by unit ("ns/op", "allocs/op", "x-min-pad", ...).
type result struct {
	name    string
	procs   int // the -GOMAXPROCS suffix; 1 when there is none
	metrics map[string]float64
}

var lineRE = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

func parse(out []byte) []result {
	var rs []result
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		r := result{name: m[1], procs: 1, metrics: map[string]float64{}}
		if m[2] != "" {
			r.procs, _ = strconv.Atoi(m[2][1:])
		}
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				r.metrics[f[i+1]] = v
			}
		}
		rs = append(rs, r)
	}
	return rs
}

// series returns the metric unit of every result named name, in run order.
func series(rs []result, name, unit string) []float64 {
	var v []float64
	for _, r := range rs {
		if r.name == name {
			if x, ok := r.metrics[unit]; ok {
				v = append(v, x)
			}
		}
	}
	return v
}

// seriesAt is series for the results run with procs as GOMAXPROCS (go test -cpu).
func seriesAt(rs []result, name string, procs int, unit string) []float64 {
	var v []float64
	for _, r := range rs {
		if r.name == name && r.procs == procs {
			if x, ok := r.metrics[unit]; ok {
				v = append(v, x)
			}
		}
	}
	return v
}

// ratios pairs a[i] with b[i].
func ratios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	v := make([]float64, n)
	for i := range n {
		v[i] = a[i] / b[i]
	}
	return v
}

// differences pairs a[i] with b[i]: a[i] - b[i].
func differences(a, b []float64) []float64 {
	n := min(len(a), len(b))
	v := make([]float64, n)
	for i := range n {
		v[i] = a[i] - b[i]
	}
	return v
}

type stat struct{ med, lo, hi float64 }

func summarise(v []float64) (stat, bool) {
	if len(v) == 0 {
		return stat{}, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return stat{med: s[len(s)/2], lo: s[0], hi: s[len(s)-1]}, true
}

// row is one line of the table.
type row struct {
	measure string
	unit    string // how the figure reads: "x", "ms", "MB", "/s"
	target  string // e.g. "<= 1.25"; "" reports only
	values  []float64
	note    string
}

func (r row) meets() string {
	s, ok := summarise(r.values)
	if !ok {
		return "not measured"
	}
	if r.target == "" {
		return "reported"
	}
	op, lim, _ := strings.Cut(r.target, " ")
	l, err := strconv.ParseFloat(strings.ReplaceAll(lim, ",", ""), 64)
	if err != nil {
		return "?"
	}
	ok = false
	switch op {
	case "<=":
		ok = s.med <= l
	case ">=":
		ok = s.med >= l
	case "==":
		ok = s.med == l && s.lo == l && s.hi == l
	}
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func fmtv(v float64, unit string) string {
	switch {
	case unit == "/s":
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// bench runs go test -bench on one package and returns the parsed lines.
func bench(pkg, pattern string, extra ...string) []result {
	args := append([]string{"test", "-run", "^$", "-bench", pattern, "-benchmem"}, extra...)
	args = append(args, pkg)
	fmt.Fprintf(os.Stderr, "bench-compare: go %s\n", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-compare: %s %s: %v\n%s", pkg, pattern, err, out)
	}
	return parse(out)
}

// burn starts n busy processes, so that a benchmark runs on a loaded machine; stop ends them.
func burn(n int) (stop func()) {
	var cmds []*exec.Cmd
	for range n {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if c.Start() == nil {
			cmds = append(cmds, c)
		}
	}
	return func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func main() {
	pairs := flag.Int("pairs", 6, "pairs (repetitions) per comparison; at least 6")
	flag.Parse()
	n := max(*pairs, 6)
	count := "-count=" + strconv.Itoa(n)
	start := time.Now()
	loadStart := loadavg()
	var rows []row

	// A sale on the real daemon against 2 fdatasyncs + the acquirer's round trip + the pad.
	rs := bench("./cmd/posd", "^BenchmarkSaleVsMinimum$", "-benchtime=40x", count)
	rows = append(rows,
		row{measure: "per sale, over 2 fdatasyncs + RTT + pad time", unit: "x", target: "<= 1.25", values: series(rs, "BenchmarkSaleVsMinimum", "x-min-pad"),
			note: "each run: the median over 40 rounds (a sale, a skeleton sale, the minimum); the range is over the runs"},
		row{measure: "per sale, posd's CPU (its threads' run time)", unit: "ms", values: series(rs, "BenchmarkSaleVsMinimum", "posd-cpu-ms/sale")},
		row{measure: "per sale, wall time", unit: "ms", values: series(rs, "BenchmarkSaleVsMinimum", "sale-ms")},
		row{measure: "per sale, 2 fdatasyncs + RTT", unit: "ms", values: series(rs, "BenchmarkSaleVsMinimum", "min-ms")},
		row{measure: "per sale, pad time (line turns x raw pty round trip)", unit: "ms", values: series(rs, "BenchmarkSaleVsMinimum", "pad-ms")},
		row{measure: "skeleton sale (a daemon with a sale's I/O and no logic) over 2 fdatasyncs + RTT + pad time", unit: "x", values: series(rs, "BenchmarkSaleVsMinimum", "skeleton-x-min-pad"),
			note: "a Go daemon (net/http, the runtime's poller, GOMAXPROCS 1) that does a sale's reads, writes and fdatasyncs in posd's order and nothing else; it pays what the minimum's in-process probes do not: the till's request and answer, a wake-up of another process at every hop"},
		row{measure: "per sale, posd over the skeleton sale", unit: "x", values: series(rs, "BenchmarkSaleVsMinimum", "x-skeleton"),
			note: "posd's own cost: the same sale, the same hops, posd's work on top"},
		row{measure: "per sale, posd less its simulators' time, over the skeleton sale", unit: "x", values: series(rs, "BenchmarkSaleVsMinimum", "x-skeleton-own"),
			note: "the skeleton's pad and acquirer answer at once; posd's are simulators that parse and build each message"},
		row{measure: "per sale, the simulated pad's and acquirer's own time", unit: "ms", values: series(rs, "BenchmarkSaleVsMinimum", "sims-ms"),
			note: "from reading a request to the last byte of its answer, summed over a sale's turns"},
		row{measure: "skeleton sale on blocking system calls alone (no Go runtime, no net/http) over 2 fdatasyncs + RTT + pad time", unit: "x", values: series(rs, "BenchmarkSaleVsMinimum", "raw-skeleton-x-min-pad"),
			note: "the floor of any daemon on this machine: one thread, a sale's reads, writes and fdatasyncs in posd's order, a canned HTTP answer"},
		row{measure: "the minimum with each probe's far end in another process, and the till's hop, over the minimum", unit: "x", values: series(rs, "BenchmarkSaleVsMinimum", "far-x-min-pad"),
			note: "what the hops between processes alone cost, no daemon's work at all"},
		row{measure: "skeleton sale, wall time", unit: "ms", values: series(rs, "BenchmarkSaleVsMinimum", "skeleton-ms")},
		row{measure: "skeleton sale, its CPU", unit: "ms", values: series(rs, "BenchmarkSaleVsMinimum", "skeleton-cpu-ms/sale")},
	)

	// The journal's two writes against two raw fdatasyncs, pair by pair (a sale, then two
	// raw 4 KiB write+fdatasyncs, the order swapped every pair), and as before: the sales'
	// loop over raw fsyncs timed in a loop of their own before and after it.
	rs = bench("./store", "^BenchmarkSaleJournal$/^(sale|pairs)$", "-cpu=1", count)
	rows = append(rows,
		row{measure: "journal (intent + outcome) over 2 fdatasyncs, in pairs", unit: "x", target: "<= 1.25",
			values: series(rs, "BenchmarkSaleJournal/pairs", "x2fsync-pairs"),
			note:   "each run: the median over its pairs; raw fsyncs timed between sales, where they cost what the log's do"},
		row{measure: "journal over 2 fdatasyncs timed in a loop of their own", unit: "x", values: series(rs, "BenchmarkSaleJournal/sale", "x2fsync"),
			note: "back-to-back raw fsyncs run faster than fsyncs between other writes: this ratio reads high"},
	)

	// ISO 8583 codec against moov-io's Spec87ASCII, same fields, interleaved in chunks.
	rs = bench("./iso8583", "^BenchmarkCodecVsMoov$", "-benchtime=20000x", count)
	rows = append(rows,
		row{measure: "ISO 8583 pack+unpack vs moov Spec87ASCII, time", unit: "x", target: "<= 0.7", values: series(rs, "BenchmarkCodecVsMoov", "x-moov-time")},
		row{measure: "ISO 8583 pack+unpack vs moov Spec87ASCII, allocs", unit: "x", target: "<= 0.5", values: series(rs, "BenchmarkCodecVsMoov", "x-moov-allocs")},
	)

	// The acquirer link (client + a lean host) against a raw framed echo on the same
	// loopback, in pairs, with one P (GOMAXPROCS 1, as posd run sets it) for the targets and
	// the machine's for comparison. Times and rates with the host in a process of its own
	// (as an acquirer is a machine of its own: posd's one P must not limit the host); CPU
	// with the host in the client's process, where the figure is the work of the two alone.
	rs = bench("./iso8583", "^BenchmarkLinkVsEcho(Remote)?(1|32)$", "-benchtime=20000x", "-cpu=1,2", count)
	at := func(name string, procs int, unit string) []float64 { return seriesAt(rs, name, procs, unit) }
	own := func(name string, procs int) []float64 {
		return differences(at(name, procs, "µs-cpu/op"), at(name, procs, "echo-µs-cpu/op"))
	}
	np := runtime.NumCPU()
	rows = append(rows,
		row{measure: "link, 1 in flight, time vs raw framed echo", unit: "x", target: "<= 2.0", values: at("BenchmarkLinkVsEchoRemote1", 1, "x-echo-time"),
			note: "posd's GOMAXPROCS 1 (here and in the targets below); the host and the echo server in a process of their own"},
		row{measure: "link, 32 in flight, rate vs raw framed echo", unit: "x", target: ">= 0.5", values: at("BenchmarkLinkVsEchoRemote32", 1, "x-echo-rate")},
		row{measure: "link, CPU per round trip (client + lean host) over the raw echo's, 1 in flight", unit: "µs", target: "<= 25", values: own("BenchmarkLinkVsEcho1", 1),
			note: "host in the client's process: the link's own work, the transport (the echo's syscalls and wake-ups, next rows) taken off"},
		row{measure: "link, CPU per round trip (client + lean host), 1 in flight", unit: "µs", values: at("BenchmarkLinkVsEcho1", 1, "µs-cpu/op")},
		row{measure: "raw framed echo, CPU per round trip, 1 in flight", unit: "µs", values: at("BenchmarkLinkVsEcho1", 1, "echo-µs-cpu/op")},
		row{measure: "link, CPU per round trip, 32 in flight", unit: "µs", target: "<= 25", values: at("BenchmarkLinkVsEcho32", 1, "µs-cpu/op"),
			note: "host in the client's process"},
		row{measure: "link, 1 in flight, time vs raw framed echo, host in the client's process", unit: "x", values: at("BenchmarkLinkVsEcho1", 1, "x-echo-time")},
		row{measure: "link, 32 in flight, rate vs raw framed echo, host in the client's process", unit: "x", values: at("BenchmarkLinkVsEcho32", 1, "x-echo-rate"),
			note: "client and host share posd's one P"},
		row{measure: "link, CPU per round trip over the raw echo's, 1 in flight, host in its own process", unit: "µs", values: own("BenchmarkLinkVsEchoRemote1", 1),
			note: "both processes; each goes idle between turns and is woken again"},
		row{measure: fmt.Sprintf("link, 1 in flight, time vs raw framed echo, GOMAXPROCS %d", np), unit: "x", values: at("BenchmarkLinkVsEchoRemote1", np, "x-echo-time"),
			note: "posd with GOMAXPROCS set in its environment; the echo measured with the same"},
		row{measure: fmt.Sprintf("link, 32 in flight, rate vs raw framed echo, GOMAXPROCS %d", np), unit: "x", values: at("BenchmarkLinkVsEchoRemote32", np, "x-echo-rate")},
		row{measure: fmt.Sprintf("link, CPU per round trip over the raw echo's, 1 in flight, GOMAXPROCS %d", np), unit: "µs", values: own("BenchmarkLinkVsEcho1", np)},
		row{measure: fmt.Sprintf("link, CPU per round trip, 32 in flight, GOMAXPROCS %d", np), unit: "µs", values: at("BenchmarkLinkVsEcho32", np, "µs-cpu/op")},
	)

	// Start-up and memory by history size: each repetition opens the 1k, 100k and 1M stores
	// in turn (a fresh process each time for cold-ms and the RSS).
	rs = bench("./store", "^BenchmarkOpen(Empty|1k|100k|1M)$", "-benchtime=1x", count)
	rows = append(rows,
		row{measure: "start-up (fresh process), 1M records vs 1k", unit: "x", target: "<= 1.5",
			values: ratios(series(rs, "BenchmarkOpen1M", "cold-ms"), series(rs, "BenchmarkOpen1k", "cold-ms"))},
		row{measure: "start-up (fresh process) at 1M records", unit: "ms", target: "<= 100", values: series(rs, "BenchmarkOpen1M", "cold-ms")},
		row{measure: "start-up (fresh process) at 1k records", unit: "ms", values: series(rs, "BenchmarkOpen1k", "cold-ms")},
		row{measure: "RSS of a process that opened 1M records (the store alone)", unit: "MB", values: series(rs, "BenchmarkOpen1M", "rss-MB"),
			note: "VmRSS of a small process that did posd's start-up on the store and nothing else; the mapping alone is map-rss-MB in the benchmark's output"},
	)

	// The daemon itself, idle after start-up, on stores of 0, 100k and 1M finished sales.
	rs = bench("./cmd/posd", "^BenchmarkIdleRSS(Empty|100k|1M)$", "-benchtime=1x", count)
	rows = append(rows,
		row{measure: "idle RSS of posd, empty store", unit: "MB", target: "<= 25", values: series(rs, "BenchmarkIdleRSSEmpty", "rss-MB")},
		row{measure: "idle RSS of posd, 100k records", unit: "MB", target: "<= 25", values: series(rs, "BenchmarkIdleRSS100k", "rss-MB")},
		row{measure: "idle RSS of posd, 1M records", unit: "MB", target: "<= 25", values: series(rs, "BenchmarkIdleRSS1M", "rss-MB"),
			note: "VmRSS of the running daemon (with its pad and host simulators outside it) 2 s after it answered /v1/status"},
		row{measure: "posd ready (exec to first /v1/status answer), 1M records vs empty", unit: "x", target: "<= 1.5",
			values: ratios(series(rs, "BenchmarkIdleRSS1M", "ready-ms"), series(rs, "BenchmarkIdleRSSEmpty", "ready-ms")),
			note:   "the whole daemon's start-up, polled every 10 ms"},
	)

	// fdatasyncs per sale on the till's path, counted by strace on the real daemon.
	rows = append(rows, row{measure: "fdatasyncs per sale on the till's path (strace)", unit: "", target: "== 2", values: syncsPerSale(),
		note: "cmd/posd TestSaleFsyncs: every sync on a sale's goroutine between its request and its answer"})

	// Store-and-forward drain of 10,000 advices on a loaded machine.
	stop := burn(runtime.NumCPU())
	time.Sleep(2 * time.Second)
	rs = bench("./terminal", "^BenchmarkDrain10k$", "-benchtime=1x", count)
	load := loadavg()
	stop()
	rows = append(rows, row{measure: "SAF drain of 10k advices, machine loaded", unit: "/s", target: ">= 5000",
		values: series(rs, "BenchmarkDrain10k", "advices/s"), note: fmt.Sprintf("%d busy processes beside it; load average at its end %s", runtime.NumCPU(), load)})

	for _, f := range extra {
		rows = append(rows, f(n)...)
	}

	fmt.Printf("# Benchmarks\n\n")
	fmt.Printf("Output of `make bench-compare` (scripts/bench-compare), %s, on %s/%s with %d CPUs, %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Printf("Load average at the start %s, at the end %s; the run took %s.\n", loadStart, loadavg(), time.Since(start).Round(time.Second))
	fmt.Printf("Each figure is the median over %d or more pairs measured in this run, with the range.\n\n", n)
	fmt.Printf("| measure | median | range | target | | how |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		s, ok := summarise(r.values)
		med, rng := "-", "-"
		if ok {
			med = fmtv(s.med, r.unit) + " " + r.unit
			rng = fmtv(s.lo, r.unit) + "-" + fmtv(s.hi, r.unit)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", r.measure, med, rng, r.target, r.meets(), r.note)
	}
}

// extra holds the measures added by the other files of this command.
var extra []func(pairs int) []row

var syncsRE = regexp.MustCompile(`(\d+) to (\d+) syncs of the write-ahead log each on the sale's path`)

// syncsPerSale runs cmd/posd's TestSaleFsyncs and returns the count it printed (empty when
// it skipped or failed, which the table then says).
func syncsPerSale() []float64 {
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestSaleFsyncs$", "-v", "./cmd/posd")
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-compare: TestSaleFsyncs: %v\n%s", err, out)
		return nil
	}
	m := syncsRE.FindSubmatch(out)
	if m == nil {
		fmt.Fprintf(os.Stderr, "bench-compare: TestSaleFsyncs printed no count (skipped?):\n%s", out)
		return nil
	}
	lo, _ := strconv.ParseFloat(string(m[1]), 64)
	hi, _ := strconv.ParseFloat(string(m[2]), 64)
	return []float64{lo, hi}
}
