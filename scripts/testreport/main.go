// Command testreport reads `go test -json` on stdin and prints what plain `go test` would:
// each package's ok/FAIL line and the output of every failed test, as they come, then,
// at the end, every skipped test with the reason it gave to t.Skip. `make test` pipes its
// test run through it, since plain `go test` hides skip reasons.
//
// It exits 1 when a test, a package or a build failed, or when no package reported at
// all, and 0 otherwise; the Makefile also keeps go test's own exit status (pipefail).
//
// make test runs go test more than once (every package, then the PKCS#11 ones), and other
// steps skip too (make vuln without its database): with -skips FILE the skips are appended
// to FILE, one "SKIP package Test: reason" line each, instead of printed, and
// `testreport -print-skips FILE` prints them all at the very end.
//
// Usage:
//
//	go test -json ./... | testreport [-skips FILE]
//	testreport -print-skips FILE
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output and build-fail events
}

type skip struct{ pkg, test, reason string }

type report struct {
	out      io.Writer
	buf      map[string][]string // package + "\x00" + test → output lines
	skips    []skip
	failed   bool
	packages int
}

func main() {
	skipFile := flag.String("skips", "", "append the skipped tests to this file instead of printing them")
	printSkips := flag.String("print-skips", "", "print the skipped tests collected in this file, and exit")
	flag.Parse()
	if *printSkips != "" {
		b, err := os.ReadFile(*printSkips)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(1)
		}
		printSkipLines(os.Stdout, strings.Split(strings.TrimSpace(string(b)), "\n"))
		return
	}
	r := &report{out: os.Stdout, buf: map[string][]string{}}
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if *skipFile != "" {
		f, err := os.OpenFile(*skipFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = io.WriteString(f, strings.Join(r.skipLines(), ""))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(1)
		}
	} else {
		r.summary()
	}
	if r.failed || r.packages == 0 {
		os.Exit(1)
	}
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Action == "" {
			// Not an event (go vet or the go command itself): pass it on.
			fmt.Fprintf(r.out, "%s\n", line)
			continue
		}
		r.event(ev)
	}
	return sc.Err()
}

func (r *report) event(ev event) {
	key := ev.Package + "\x00" + ev.Test
	switch ev.Action {
	case "build-output":
		fmt.Fprint(r.out, ev.Output)
	case "build-fail":
		r.failed = true
	case "output":
		if ev.Test == "" {
			// Package-level lines: ok/FAIL/? lines, and whatever a test binary printed
			// outside any test (a panic, TestMain). The bare PASS of a passing package is noise.
			if ev.Output != "PASS\n" {
				fmt.Fprint(r.out, ev.Output)
			}
			return
		}
		r.buf[key] = append(r.buf[key], ev.Output)
	case "fail":
		r.failed = true
		if ev.Test == "" {
			r.packages++
			r.unfinished(ev.Package)
			return
		}
		for _, l := range r.buf[key] {
			if !strings.HasPrefix(l, "=== ") {
				fmt.Fprint(r.out, l)
			}
		}
		delete(r.buf, key)
	case "skip":
		if ev.Test == "" {
			r.packages++ // no test files
			return
		}
		r.skips = append(r.skips, skip{ev.Package, ev.Test, reason(r.buf[key])})
		delete(r.buf, key)
	case "pass":
		if ev.Test == "" {
			r.packages++
		}
		delete(r.buf, key)
	}
}

// unfinished prints the output of pkg's tests that never ended: a test binary that exited or
// was killed inside a test (os.Exit, a fatal runtime error, a signal) leaves its running tests
// without a result, and what they printed is the only clue.
func (r *report) unfinished(pkg string) {
	var keys []string
	for k := range r.buf {
		if strings.HasPrefix(k, pkg+"\x00") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		_, test, _ := strings.Cut(k, "\x00")
		fmt.Fprintf(r.out, "--- NO RESULT: %s (the test binary ended inside it)\n", test)
		for _, l := range r.buf[k] {
			fmt.Fprint(r.out, l)
		}
		delete(r.buf, k)
	}
}

// reason is a skipped test's own output without the === and --- SKIP lines: the t.Skip
// message (file:line: text), on one line.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " | ")
}

// skipLines returns one "SKIP package Test: reason" line per skipped test, sorted.
func (r *report) skipLines() []string {
	lines := make([]string, 0, len(r.skips))
	for _, s := range r.skips {
		lines = append(lines, fmt.Sprintf("SKIP %s %s: %s\n", s.pkg, s.test, s.reason))
	}
	sort.Strings(lines)
	return lines
}

func (r *report) summary() {
	var lines []string
	for _, l := range r.skipLines() {
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	printSkipLines(r.out, lines)
}

// printSkipLines prints the skip lines as the end of make test's output.
func printSkipLines(w io.Writer, lines []string) {
	var skips []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			skips = append(skips, l)
		}
	}
	if len(skips) == 0 {
		fmt.Fprintln(w, "skipped tests: none")
		return
	}
	fmt.Fprintf(w, "skipped tests (%d), with their reasons:\n", len(skips))
	for _, l := range skips {
		fmt.Fprintf(w, "  %s\n", l)
	}
}
