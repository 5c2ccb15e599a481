package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

// When the test binary is started with this variable set, it is acquirer-sim itself: the
// signal test runs the real main in a child process.
const childEnv = "ACQUIRER_SIM_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// sale sends one keyed 0200 and returns the response code.
func sale(t *testing.T, addr, pan string, stan uint32, amount int64) string {
	t.Helper()
	p, err := card.ParsePAN(pan)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := iso8583.Authorization{
		AmountMinor: amount, CurrencyNumeric: "978", STAN: stan,
		TransmissionTime: time.Now(), LocalTime: time.Now(),
		PAN: p, Expiry: "3012", EntryMode: "012", TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
	}.Message()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := resp.GetString(39)
	return rc
}

// listenAddr reads the first line and returns the address in it.
func listenAddr(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("first line: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "acquirer-sim listening on ")
	if !ok || strings.HasSuffix(addr, ":0") {
		t.Fatalf("first line %q", line)
	}
	return addr
}

func TestRunServesAndPrintsLedger(t *testing.T) {
	dir := t.TempDir()
	cards := filepath.Join(dir, "cards.json")
	os.WriteFile(cards, []byte(`[{"pan":"4012345678909","pin":"1234","balance_minor":1000,"expiry":"3012"}]`), 0o600)

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--listen", "127.0.0.1:0", "--cards", cards}, pw, &stderr)
		pw.Close()
	}()
	out := bufio.NewReader(pr)
	addr := listenAddr(t, out)

	if rc := sale(t, addr, "4012345678909", 1, 600); rc != "00" {
		t.Errorf("first sale: rc %s", rc)
	}
	if rc := sale(t, addr, "4012345678909", 2, 600); rc != "51" {
		t.Errorf("second sale: rc %s", rc)
	}
	if rc := sale(t, addr, "4761739001010010", 3, 100); rc != "14" {
		t.Errorf("card not in the file: rc %s", rc)
	}
	cancel()
	rest, _ := io.ReadAll(out)
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d, stderr %s", c, stderr.String())
	}
	text := string(rest)
	for _, want := range []string{"rc=00", "rc=51", "rc=14", "ledger: 1 approved", "pan=401234***8909 amount=600"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "hostsim: 0200"); n != 3 {
		t.Errorf("%d request lines, want 3:\n%s", n, text)
	}
	if strings.Contains(text, "4012345678909") || strings.Contains(text, "4761739001010010") {
		t.Errorf("output shows a full PAN:\n%s", text)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--bdk", "0123"},
		{"--bdk", strings.Repeat("zz", 16)},
		{"--listen", "not an address"},
		{"--cards", "/nonexistent/cards.json"},
		{"--no-such-flag"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
			t.Errorf("%q: exit code %d, want 1", args, code)
		}
		if stderr.Len() == 0 {
			t.Errorf("%q: nothing on stderr", args)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q", args, stdout.String())
		}
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, io.Discard, &stderr); code != 0 {
		t.Errorf("--help: exit code %d", code)
	}
	if !strings.Contains(stderr.String(), "PUBLIC ANSI X9.24-1 test key") {
		t.Errorf("--help does not warn about the test key:\n%s", stderr.String())
	}
}

// The real binary (this test binary as a child) exits 0 on SIGTERM after the ledger.
func TestSignalExitsZero(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	addr := listenAddr(t, out)
	if rc := sale(t, addr, "4761739001010010", 7, 100); rc != "00" {
		t.Errorf("rc %s", rc)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr %s", err, stderr.String())
	}
	if !strings.Contains(string(rest), "ledger: 1 approved") || !strings.Contains(string(rest), "476173******0010") {
		t.Errorf("output after SIGTERM:\n%s", rest)
	}
}
