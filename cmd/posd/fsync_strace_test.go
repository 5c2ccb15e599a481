package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/nexo"
	"github.com/posd-dev/posd/terminal/padsim"
)

// syncCall is one sync system call of posd, as strace saw it.
type syncCall struct {
	at   time.Time
	call string // fdatasync, fsync, ...
	file string // the file synced (strace -y)
	// stack is the Go functions of the calling goroutine, innermost first (strace -k).
	stack []string
}

// has reports whether a function whose name contains fn is on the call's stack.
func (c syncCall) has(fn string) bool {
	for _, f := range c.stack {
		if strings.Contains(f, fn) {
			return true
		}
	}
	return false
}

// onSale reports whether the call was made by a sale's own goroutine (the terminal's
// code on the stack), as opposed to the store's background fold.
func (c syncCall) onSale() bool { return c.has("posd/terminal.") }

// syncLine matches the start of a sync call in strace -f -ttt -y output, complete or
// "<unfinished ...>": "1234 1733526000.123456 fdatasync(7</tmp/x/posd.db-wal>) = 0".
var syncLine = regexp.MustCompile(`^(\d+)\s+(\d+)\.(\d{6}) (\w+)\(\d+<([^>]*)>`)

// resumedLine matches the end of an unfinished call: "1234 1733526000.2 <... fdatasync resumed>) = 0".
var resumedLine = regexp.MustCompile(`^(\d+)\s+\d+\.\d{6} <\.\.\. \w+ resumed>`)

// frameLine matches a stack line of strace -k, printed after the call's end:
// " > /path/posd(main.run+0x119) [0x4c2059]".
var frameLine = regexp.MustCompile(`^ > [^(]*\((.+)\+0x[0-9a-f]+\) \[`)

func readSyncs(t *testing.T, path string) []syncCall {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []syncCall
	open := map[string]int{} // pid -> its unfinished call
	cur := -1                // the call whose stack lines follow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := frameLine.FindStringSubmatch(line); m != nil {
			if cur >= 0 {
				calls[cur].stack = append(calls[cur].stack, m[1])
			}
			continue
		}
		cur = -1
		if m := resumedLine.FindStringSubmatch(line); m != nil {
			if i, ok := open[m[1]]; ok {
				cur = i
				delete(open, m[1])
			}
			continue
		}
		m := syncLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseInt(m[2], 10, 64)
		usec, _ := strconv.ParseInt(m[3], 10, 64)
		calls = append(calls, syncCall{at: time.Unix(sec, usec*1000), call: m[4], file: m[5]})
		if strings.Contains(line, "<unfinished ...>") {
			open[m[1]] = len(calls) - 1
		} else {
			cur = len(calls) - 1
		}
	}
	return calls
}

// TestSaleFsyncs runs posd under strace with the simulators and counts its sync system
// calls (issue 16): a sale makes exactly two on its own path, both of the write-ahead log
// (intent, outcome), between the till's request and posd's answer, whether sales come back
// to back (well under the 20ms fold delay) or far apart. strace -k names the caller of
// each: folding the log into the bbolt file (a commit: syncs of the store file) must come
// from the store's fold timer in the background, never from a sale's goroutine (as it did
// when the reversal-first check folded); nothing else is synced while sales run.
func TestSaleFsyncs(t *testing.T) {
	stracePath, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed (scripts/test-deps installs it): the sale's syncs cannot be counted")
	}
	if out, err := exec.Command(stracePath, "-f", "-o", os.DevNull, "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here (ptrace not permitted?): %v: %s", err, out)
	}
	const burst, apart = 5, 5
	c := &captured{}
	dir := t.TempDir()
	approved := demoSales()[0].events // a swipe and its PIN: approved online
	var events []padsim.Event
	for range burst + apart {
		events = append(events, approved...)
	}
	pair := startPad(t, c, dir, events)
	_, addr := startAcquirer(t, c)
	cfg, sock := writeTestConfig(t, dir, pair.A, addr)
	trace := filepath.Join(dir, "strace.out")
	posd := startTraced(t, stracePath, trace, filepath.Join(binaries(t), "posd"), "run", "--config", cfg)
	// A connection per sale, closed as soon as the answer is read, as posctl and many tills
	// do: posd must not take that close for a till that did not hear the answer (a commit
	// of its own, two more fdatasyncs on the sale's goroutine).
	client := unixClient(sock)
	client.Transport.(*http.Transport).DisableKeepAlives = true

	type window struct{ from, to time.Time }
	var sales []window
	sale := func(i int) {
		body := fmt.Sprintf(`{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"Payment","MessageType":"Request","SaleID":"FSYNC","ServiceID":"%d","POIID":"POSD-E2E00001"},"PaymentRequest":{"SaleData":{"SaleTransactionID":{"TransactionID":"F%d"}},"PaymentTransaction":{"AmountsReq":{"Currency":"EUR","RequestedAmount":12.50}}}}}`, i, i)
		from := time.Now()
		resp, err := client.Post("http://posd/nexo", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("sale %d: %v", i, err)
		}
		var env nexo.Envelope
		err = json.NewDecoder(resp.Body).Decode(&env)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		to := time.Now()
		if err != nil || env.Response == nil || env.Response.PaymentResponse == nil || env.Response.PaymentResponse.Response.Result != "Success" {
			t.Fatalf("sale %d: %v %+v\n%s", i, err, env.Response, posd.out.String())
		}
		sales = append(sales, window{from, to})
	}
	// Idle first: what posd syncs with no sale (its start-up, a fold of its own).
	time.Sleep(200 * time.Millisecond)
	for i := range burst { // back to back: the next request as soon as the answer is in
		sale(i)
	}
	for i := range apart { // far apart: every fold done before the next sale
		time.Sleep(150 * time.Millisecond)
		sale(burst + i)
	}
	time.Sleep(200 * time.Millisecond) // the last fold
	posd.stop(t)

	calls := readSyncs(t, trace)
	if len(calls) == 0 {
		b, _ := os.ReadFile(trace)
		t.Fatalf("strace saw no sync at all (posd wrote its journal?):\n%s", b)
	}
	wal := filepath.Join(dir, "posd.db") + "-wal"
	stacks := false
	for _, c := range calls {
		stacks = stacks || len(c.stack) > 0
	}
	if !stacks {
		t.Log("strace -k gave no stacks here: syncs are told apart by file only")
	}
	// Every sync while sales ran is a sale's own write of the log, or the store's
	// background fold (its timer, foldLater): nothing else, and no fold on a sale's path.
	first, last := sales[0].from, sales[len(sales)-1].to
	folds := 0
	for _, c := range calls {
		if c.at.Before(first) || c.at.After(last) {
			continue
		}
		switch {
		case stacks && c.onSale() && c.file != wal:
			t.Errorf("%s of %s at %s on a sale's path (only the write-ahead log is synced there):\n  %s", c.call, c.file, c.at.Format("15:04:05.000000"), strings.Join(c.stack, "\n  "))
		case stacks && !c.onSale() && !c.has("store.(*Store).foldLater"):
			t.Errorf("%s of %s at %s, neither a sale's write nor the background fold:\n  %s", c.call, c.file, c.at.Format("15:04:05.000000"), strings.Join(c.stack, "\n  "))
		case !stacks && c.file != wal && c.file != strings.TrimSuffix(wal, "-wal"):
			t.Errorf("%s of %s at %s while sales ran: only the store's files are synced", c.call, c.file, c.at.Format("15:04:05.000000"))
		case c.file != wal:
			folds++
		}
	}
	lo, hi := -1, -1 // fewest and most syncs of the log on one sale's path
	for i, w := range sales {
		var own, other []string
		for _, c := range calls {
			if c.at.Before(w.from) || c.at.After(w.to) {
				continue
			}
			if c.file == wal && (!stacks || c.onSale()) {
				own = append(own, c.call)
			} else {
				other = append(other, c.call+" "+filepath.Base(c.file))
			}
		}
		if lo < 0 || len(own) < lo {
			lo = len(own)
		}
		hi = max(hi, len(own))
		if len(own) != 2 {
			t.Errorf("sale %d (%v): %d syncs of the write-ahead log on its path %v, want 2 (intent, outcome)", i, w.to.Sub(w.from), len(own), own)
		}
		if len(other) > 0 {
			t.Logf("sale %d (%v): also in its window, the background fold's %v", i, w.to.Sub(w.from), other)
		}
	}
	t.Logf("%d sales (%d back to back, %d far apart): %d to %d syncs of the write-ahead log each on the sale's path; %d syncs of the store file by the background fold meanwhile", len(sales), burst, apart, lo, hi, folds)
}

// traced is posd run under strace.
type traced struct {
	strace *exec.Cmd
	pid    int // posd's, strace's child
	out    *syncBuffer
	done   chan struct{}
}

// startTraced runs bin under strace -f -ttt -y, tracing the sync system calls into trace,
// and waits until posd is ready.
func startTraced(t *testing.T, stracePath, trace, bin string, args ...string) *traced {
	t.Helper()
	sargs := append([]string{"-f", "-k", "-ttt", "-y", "-e", "trace=fdatasync,fsync,sync_file_range,msync,sync,syncfs", "-o", trace, bin}, args...)
	p := &traced{strace: exec.Command(stracePath, sargs...), out: new(syncBuffer), done: make(chan struct{})}
	p.strace.Stdout, p.strace.Stderr = p.out, p.out
	p.strace.WaitDelay = 2 * time.Second // posd may outlive strace holding the pipes
	if err := p.strace.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.strace.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if p.pid > 0 {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		p.strace.Process.Kill()
		<-p.done
	})
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(p.out.String(), "posd ready"); {
		select {
		case <-p.done:
			t.Fatalf("posd under strace exited before it was ready:\n%s", p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("posd under strace did not get ready:\n%s", p.out.String())
		}
	}
	sp := p.strace.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", sp, sp))
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		p.pid, _ = strconv.Atoi(f[0])
	}
	if p.pid == 0 {
		t.Fatalf("posd's pid under strace %d not found: %v", sp, err)
	}
	return p
}

// stop stops posd with SIGTERM; strace ends with it.
func (p *traced) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("posd under strace did not stop on SIGTERM:\n%s", p.out.String())
	}
}
