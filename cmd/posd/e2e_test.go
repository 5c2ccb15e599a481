package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// The end-to-end tests build posd, posctl, pinpad-sim and acquirer-sim and run them as
// processes: the PIN pad over a real pty pair, the acquirer over loopback TCP, the journal
// in a real bbolt file, the till as posctl over a unix socket.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func binaries(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests build and run the binaries; skipped with -short")
	}
	binOnce.Do(func() {
		// POSD_TEST_BINDIR names a directory of binaries built already (go build -o DIR
		// ./cmd/...): benchmarks compare two builds A B A B with one test binary.
		if d := os.Getenv("POSD_TEST_BINDIR"); d != "" {
			binDir = d
			return
		}
		binDir, binErr = os.MkdirTemp("", "posd-e2e-bin-")
		if binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir, "github.com/posd-dev/posd/cmd/...").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" && os.Getenv("POSD_TEST_BINDIR") == "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is a started binary whose output is captured for the leak check.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// captured collects everything every process printed in one test.
type captured struct {
	mu    sync.Mutex
	procs []*proc
	extra []string
}

func (c *captured) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, p := range c.procs {
		b.WriteString(p.out.String())
	}
	for _, e := range c.extra {
		b.WriteString(e)
	}
	return b.String()
}

func (c *captured) start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return c.startBinary(t, name, filepath.Join(binaries(t), name), args...)
}

// startBinary is start for a binary at path (such as a posd built with a test root).
func (c *captured) startBinary(t *testing.T, name, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(path, args...), out: new(syncBuffer), done: make(chan error, 1)}
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

// setJSONLogs makes the test config at cfgPath log JSON (log.format).
func setJSONLogs(t *testing.T, cfgPath string) {
	t.Helper()
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), `"version": 1,`, `"version": 1, "log": {"format": "json"},`, 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// addCashier maps uid 60001 to the cashier role in the test config at cfgPath (made by
// writeTestConfig, whose supervisors are the test's uid and secondSupervisor).
func addCashier(t *testing.T, cfgPath string) {
	t.Helper()
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), `"roles": {"supervisor": {"users": [`, `"roles": {"cashier": {"users": ["60001"]}, "supervisor": {"users": [`, 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		p.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop on SIGTERM:\n%s", p.name, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitFor waits until the process has printed a line containing s and returns that line.
func (p *proc) waitFor(t *testing.T, s string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				return sc.Text()
			}
		}
		select {
		case <-p.done:
			p.done <- nil
			t.Fatalf("%s exited before printing %q:\n%s", p.name, s, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not print %q:\n%s", p.name, s, p.out.String())
	return ""
}

// run runs a binary to its end and returns its exit code and output.
func (c *captured) run(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	return c.runIn(t, "", name, args...)
}

// runIn is run with stdin as the binary's standard input.
func (c *captured) runIn(t *testing.T, stdin, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	c.mu.Lock()
	c.extra = append(c.extra, string(out))
	c.mu.Unlock()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("%s %v: %v", name, args, err)
		}
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func countAudit(entries []store.AuditEntry, who, action string) int {
	n := 0
	for _, e := range entries {
		if (e.Who == who || strings.HasSuffix(e.Who, " note: "+who)) && e.Action == action {
			n++
		}
	}
	return n
}

func writeScript(t *testing.T, dir string, events []padsim.Event) string {
	t.Helper()
	type ev struct {
		Swipe  *padsim.Swipe `json:"swipe,omitempty"`
		PIN    string        `json:"pin,omitempty"`
		Cancel bool          `json:"cancel,omitempty"`
	}
	s := struct {
		Events []ev `json:"events"`
	}{Events: []ev{}}
	for _, e := range events {
		s.Events = append(s.Events, ev{Swipe: e.Swipe, PIN: e.PIN, Cancel: e.Cancel})
	}
	b, _ := json.Marshal(s)
	path := filepath.Join(dir, "script.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeTestConfig(t *testing.T, dir, padPort, acquirer string) (cfgPath, sock string) {
	t.Helper()
	sock = filepath.Join(dir, "posd.sock")
	cfg := fmt.Sprintf(`{
  "version": 1,
  "terminal": {"id": "E2E00001", "merchant_id": "E2E-MERCHANT-42", "currency": "EUR", "card_timeout": "10s"},
  "api": {"listen": "unix:%s", "roles": {"supervisor": {"users": ["%d", "%d"]}}},
  "pinpad": {"port": %q, "ack_timeout": "1s", "response_timeout": "2s"},
  "acquirer": {"address": %q, "response_timeout": "5s", "dial_timeout": "2s"},
  "store": {"path": %q},
  "hsm": {"data": {"backend": "soft", "allow_soft": true, "key_file": %q}}
}`, sock, os.Getuid(), secondSupervisor, padPort, acquirer, filepath.Join(dir, "posd.db"), filepath.Join(dir, "data.key"))
	cfgPath = filepath.Join(dir, "posd.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, sock
}

func startAcquirer(t *testing.T, c *captured) (*proc, string) {
	t.Helper()
	acq := c.start(t, "acquirer-sim", "--listen", "127.0.0.1:0")
	line := acq.waitFor(t, "listening on ")
	addr := strings.TrimSpace(line[strings.Index(line, "listening on ")+len("listening on "):])
	return acq, strings.Fields(addr)[0]
}

func startPad(t *testing.T, c *captured, dir string, events []padsim.Event) *ptypair.Pair {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	pad := c.start(t, "pinpad-sim", "--port", pair.B, "--script", writeScript(t, dir, events))
	pad.waitFor(t, pair.B)
	return pair
}

func TestEndToEnd(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	sales := demoSales()[:3] // the swipe sales: approved, wrong PIN, expired
	var events []padsim.Event
	for _, s := range sales {
		events = append(events, s.events...)
	}
	// A fourth sale, made after the acquirer goes away.
	events = append(events, sales[0].events...)
	pair := startPad(t, c, dir, events)
	acq, addr := startAcquirer(t, c)
	cfg, sock := writeTestConfig(t, dir, pair.A, addr)
	// JSON logs here (the other end-to-end tests log text): the card data check below
	// reads them.
	setJSONLogs(t, cfg)
	posd := c.start(t, "posd", "run", "--config", cfg)
	posd.waitFor(t, "posd ready")
	api := "--api=unix:" + sock

	// A second posd on the same PIN pad port refuses to start at once, naming the first.
	cfg2, _ := writeTestConfig(t, t.TempDir(), pair.A, addr)
	inUse := fmt.Sprintf("%s is in use by PID %d (posd)", pair.A, posd.cmd.Process.Pid)
	if code, out := c.run(t, "posd", "run", "--config", cfg2); code != 1 || !strings.Contains(out, inUse) {
		t.Errorf("second posd on the pad's port: exit %d\n%s\nwant exit 1 and %q", code, out, inUse)
	}

	if code, out := c.run(t, "posctl", api, "status"); code != 0 || !strings.Contains(out, "POSD-E2E00001") || !strings.Contains(out, "last answered") {
		t.Fatalf("posctl status: %d %s", code, out)
	}
	checkBadRequests(t, sock)
	code, out := c.run(t, "posctl", api, "sale", "--amount", "12.50")
	if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "476173******0010") || !strings.Contains(out, "APPROVED") {
		t.Errorf("approved sale: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "sale", "--amount", "30.00")
	if code != 3 || !strings.Contains(out, "result: Failure (WrongPIN)") {
		t.Errorf("wrong PIN sale: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "sale", "--amount", "7.99")
	if code != 3 || !strings.Contains(out, "result: Failure (Refusal)") || !strings.Contains(out, "expired") {
		t.Errorf("expired card sale: exit %d\n%s", code, out)
	}

	// The acquirer goes away: its ledger shows the one approval.
	if code := acq.stop(t); code != 0 {
		t.Errorf("acquirer-sim exited %d", code)
	}
	// acquirer-sim prints its ledger at exit: one approval, the 12.50 sale, none of 30.00.
	ledger := acq.out.String()
	approvals := 0
	for _, l := range strings.Split(ledger, "\n") {
		if strings.Contains(l, "auth=") && strings.Contains(l, "tid=E2E00001") {
			approvals++
			if !strings.Contains(l, "amount=1250") || !strings.Contains(l, "476173******0010") {
				t.Errorf("unexpected approval in the ledger: %s", l)
			}
		}
	}
	if approvals != 1 {
		t.Errorf("acquirer ledger has %d approvals, want 1:\n%s", approvals, ledger)
	}
	code, out = c.run(t, "posctl", api, "sale", "--amount", "5.00")
	if code != 3 || !strings.Contains(out, "result: Failure (UnreachableHost)") || !strings.Contains(out, "nothing was charged") {
		t.Errorf("sale with the acquirer gone: exit %d\n%s", code, out)
	}

	// The till voids the approved sale: its reversal waits in the queue while the
	// acquirer is away, and an operator parks and then deletes it (settled by phone).
	code, out = c.run(t, "posctl", api, "void", "E2E00001-00000001")
	if code != 0 || !strings.Contains(out, "result: Success") || !strings.Contains(out, "reversal is queued") {
		t.Errorf("void: exit %d\n%s", code, out)
	}
	code, out = c.run(t, "posctl", api, "saf", "list")
	if code != 0 || !strings.Contains(out, "reversal") || !strings.Contains(out, "476173******0010") || !strings.Contains(out, "12.50 EUR") {
		t.Fatalf("saf list: exit %d\n%s", code, out)
	}
	id := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1])[0]
	if code, out = c.run(t, "posctl", api, "saf", "park", id, "--reason", "acquirer down"); code != 1 || !strings.Contains(out, "not confirmed") {
		t.Errorf("park without confirmation: exit %d\n%s", code, out)
	}
	if code, out = c.run(t, "posctl", api, "saf", "park", id, "--reason", "acquirer down", "--who", "alice", "--yes"); code != 0 {
		t.Errorf("park: exit %d\n%s", code, out)
	}
	if code, out = c.run(t, "posctl", api, "store", "check"); code != 1 || !strings.Contains(out, "is parked") || !strings.Contains(out, "unpark") {
		t.Errorf("store check with a parked item: exit %d\n%s", code, out)
	}
	// Deleting needs two people (dual control): the first request only asks.
	code, out = c.run(t, "posctl", api, "saf", "delete", id, "--reason", "reversed by phone with the acquirer", "--who", "alice", "--yes")
	approval := ""
	if f := strings.Fields(out); code == 4 && len(f) > 1 && f[0] == "approval" {
		approval = strings.TrimSuffix(f[1], ":")
	} else {
		t.Fatalf("delete, first person: exit %d, want 4 (pending)\n%s", code, out)
	}
	if code, out = c.run(t, "posctl", api, "saf", "delete", id, "--approve", approval, "--reason", "same person", "--yes"); code != 1 || !strings.Contains(out, "second, different person") {
		t.Errorf("delete approved by the same person: exit %d\n%s", code, out)
	}
	shareDir(t, dir)
	if code, out = c.runAs(t, secondSupervisor, 0, "", "posctl", api, "saf", "delete", id, "--approve", approval, "--reason", "reversed by phone with the acquirer", "--note", "bob", "--yes"); code != 0 {
		t.Errorf("delete approved by a second supervisor: exit %d\n%s", code, out)
	}
	if code, out = c.run(t, "posctl", api, "saf", "list"); code != 0 || !strings.Contains(out, "queue is empty") {
		t.Errorf("saf list after delete: exit %d\n%s", code, out)
	}
	if code, out = c.run(t, "posctl", api, "store", "check"); code != 0 || !strings.Contains(out, "store check: ok") {
		t.Errorf("store check: exit %d\n%s", code, out)
	}

	// The journal: one record per sale that went online, each with an outcome.
	code, out = c.run(t, "posctl", api, "journal")
	if code != 0 {
		t.Fatalf("posctl journal: %d %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("journal has %d lines, want a header and 3 records:\n%s", len(lines), out)
	}
	if !strings.Contains(lines[1], "voided by till POSCTL") {
		t.Errorf("the voided sale's journal line: %q", lines[1])
	}
	for i, want := range []string{"approved 00", "declined 55", "not-sent"} {
		if !strings.Contains(lines[i+1], want) || !strings.Contains(lines[i+1], "476173******0010") {
			t.Errorf("journal record %d: %q, want %q", i+1, lines[i+1], want)
		}
	}
	if strings.Contains(out, "NO OUTCOME") {
		t.Errorf("a record was left half-recorded:\n%s", out)
	}

	// A card's sales, found by its keyed PAN hash over the number and the expiry: both go
	// in on stdin, the answer is masked, and the search is in the audit log. The number
	// alone does not find the card (a masked PAN and 10^5 guesses would); the last 4 digits
	// and the day do, masked.
	code, out = c.runIn(t, "4761739001010010\n3012\n", "posctl", api, "journal", "find", "--who", "carol")
	if code != 0 || strings.Count(out, "476173******0010") != 3 {
		t.Errorf("journal find: exit %d, want the 3 records of the card\n%s", code, out)
	}
	if code, out = c.runIn(t, "4761739001010010\n", "posctl", api, "journal", "find", "--who", "carol"); code != 1 || !strings.Contains(out, "expiry") {
		t.Errorf("journal find without the expiry: exit %d\n%s", code, out)
	}
	if code, out = c.runIn(t, "4761739001010010\n2901\n", "posctl", api, "journal", "find", "--who", "carol"); code != 0 || !strings.Contains(out, "no sales with that card") {
		t.Errorf("journal find under another expiry: exit %d\n%s", code, out)
	}
	if code, out = c.runIn(t, "4000000000000002\n3012\n", "posctl", api, "journal", "find", "--who", "carol"); code != 0 || !strings.Contains(out, "no sales with that card") {
		t.Errorf("journal find of another card: exit %d\n%s", code, out)
	}
	if code, out = c.runIn(t, "4761739001010011\n3012\n", "posctl", api, "journal", "find"); code != 1 || !strings.Contains(out, "pan:") {
		t.Errorf("journal find with a bad card number: exit %d\n%s", code, out)
	}
	if code, out = c.run(t, "posctl", api, "journal", "find", "--who", "carol", "--last4", "0010", "--date", time.Now().Format("2006-01-02")); code != 0 || strings.Count(out, "476173******0010") != 3 {
		t.Errorf("journal find by last 4 and day: exit %d, want the 3 records\n%s", code, out)
	}
	var audit []store.AuditEntry
	if resp, err := unixClient(sock).Get("http://posd/v1/audit"); err != nil {
		t.Fatal(err)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&audit)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countAudit(audit, "carol", "journal-find"); n != 4 {
		t.Errorf("audit has %d journal-find entries by carol, want 4: %+v", n, audit)
	}

	if code := posd.stop(t); code != 0 {
		t.Errorf("posd exited %d on SIGTERM:\n%s", code, posd.out.String())
	}
	assertNoCardData(t, c.all(), demoPINBlocks(t))

	// The journal file and its write-ahead log: no full PAN, no track, no PIN block, in any
	// form.
	db, err := os.ReadFile(filepath.Join(dir, "posd.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, err := os.ReadFile(filepath.Join(dir, "posd.db-wal"))
	if err != nil {
		t.Fatal(err)
	}
	db = append(db, wal...)
	assertNoCardData(t, string(db), demoPINBlocks(t))
	checkAuditVerify(t, c, filepath.Join(dir, "posd.db"), cfg)
	for _, b := range demoPINBlocks(t) {
		raw, _ := hex.DecodeString(b)
		if bytes.Contains(db, raw) {
			t.Error("the journal file holds a PIN block (raw bytes)")
		}
	}
}

// TestStartupErrors: each start-up failure is one clear line on stderr and exit 1.
func TestStartupErrors(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	_, addr := startAcquirer(t, c)

	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"version": 1, "terminal": {"id": "SHORT"}}`), 0o600)
	missingPort, _ := writeTestConfig(t, t.TempDir(), filepath.Join(dir, "no-such-tty"), addr)

	noStoreDir := t.TempDir()
	noStore, _ := writeTestConfig(t, noStoreDir, filepath.Join(dir, "no-such-tty"), addr)
	if b, err := os.ReadFile(noStore); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(noStore, bytes.Replace(b, []byte(filepath.Join(noStoreDir, "posd.db")), []byte(filepath.Join(noStoreDir, "gone", "posd.db")), 1), 0o600); err != nil {
		t.Fatal(err)
	}

	pair := startPad(t, c, dir, nil)
	noAcqDir := t.TempDir()
	noAcquirer, _ := writeTestConfig(t, noAcqDir, pair.A, "127.0.0.1:1")

	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"malformed config", bad, "config: terminal.id"},
		{"missing config", filepath.Join(dir, "absent.json"), "no such file"},
		{"missing serial device", missingPort, "PIN pad"},
		{"missing store directory", noStore, "posd: config: store.path: the directory " + filepath.Join(noStoreDir, "gone") + " does not exist: create it (posd creates posd.db in it, not the directory)"},
		{"unreachable acquirer", noAcquirer, "acquirer 127.0.0.1:1 unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := c.run(t, "posd", "run", "--config", tc.cfg)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			errLines := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "posd: ") || strings.Contains(l, "level=ERROR") {
					errLines++
				}
			}
			// One clear error line, last; ordinary log lines may come before it.
			if code != 1 || errLines != 1 || !strings.HasPrefix(last, "posd: ") || !strings.Contains(last, tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit 1 and exactly one error line, the last, containing %q", code, out, tc.want)
			}
		})
	}
	// The unreachable-acquirer start left the journal it created intact and empty.
	if _, err := os.Stat(filepath.Join(noAcqDir, "posd.db")); err != nil {
		t.Errorf("journal file: %v", err)
	}
	assertNoCardData(t, c.all(), nil)
}

// checkBadRequests posts malformed till requests to a running posd: each gets HTTP 400 and a
// reason naming what is wrong, and none reaches the devices.
func checkBadRequests(t *testing.T, sock string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	good := `{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"Payment","MessageType":"Request","SaleID":"T","ServiceID":"1","POIID":"POSD-E2E00001"},"PaymentRequest":{"SaleData":{"SaleTransactionID":{"TransactionID":"X"}},"PaymentTransaction":{"AmountsReq":{"Currency":"EUR","RequestedAmount":AMOUNT}}}}}`
	for _, tc := range []struct{ body, want string }{
		{`not json`, "not valid JSON"},
		{`{}`, "SaleToPOIRequest: missing"},
		{strings.Replace(good, "AMOUNT", "-1", 1), "RequestedAmount"},
		{strings.Replace(good, "AMOUNT", "1.001", 1), "RequestedAmount"},
		{strings.Replace(strings.Replace(good, "AMOUNT", "1", 1), "EUR", "USD", 1), "currency USD"},
		{strings.Replace(strings.Replace(good, "AMOUNT", "1", 1), "POSD-E2E00001", "OTHER", 1), "POIID"},
	} {
		resp, err := client.Post("http://posd/nexo", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
			t.Errorf("POST %.40q: HTTP %d %s, want 400 naming %q", tc.body, resp.StatusCode, b, tc.want)
		}
	}
}
