package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/ptypair"
)

const (
	track2 = "4761739001010010=25122011234000001230"
	pan    = "4761739001010010"
)

func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFlagErrors(t *testing.T) {
	bad := writeScript(t, `{"events":[{"pin":"1234"},{"pin":"x"}]}`)
	cases := []struct {
		args []string
		want string
	}{
		{nil, "--port is required"},
		{[]string{"--port", "/dev/null", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"--port", "/dev/null", "--bdk", "00"}, "--bdk must be 32 hexadecimal digits"},
		{[]string{"--port", "/dev/null", "--ksn", "zz"}, "--ksn must be 20 hexadecimal digits"},
		{[]string{"--port", "/dev/null", "--baud", "0"}, "--baud 0"},
		{[]string{"--port", "/dev/null", "extra"}, `unexpected argument "extra"`},
		{[]string{"--port", "/dev/does-not-exist-posd"}, "/dev/does-not-exist-posd"},
		{[]string{"--port", "/dev/null", "--script", bad}, "events[1]"},
		{[]string{"--port", "/dev/null", "--script", filepath.Join(t.TempDir(), "none.json")}, "none.json"},
		{[]string{"--port", "/dev/null", "--currency", "97"}, `currency "97" is not 3 digits`},
		{[]string{"--port", "/dev/null", "--serial", strings.Repeat("S", 21)}, "serial must be at most 20"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "pinpad-sim: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and one line containing %q", c.args, code, stderr.String(), c.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "--port PATH") {
		t.Errorf("-h: exit %d, stdout %q", code, stdout.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Build the real binary, run it on one end of a pty pair and drive it with
// the abecs client from the other.
func TestBinaryOverPTY(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	bin := filepath.Join(t.TempDir(), "pinpad-sim")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	script := writeScript(t, `{"events":[{"swipe":{"track2":"`+track2+`"}},{"pin":"1234"},{"cancel":true}]}`)
	state := filepath.Join(t.TempDir(), "state")
	cmd := exec.Command(bin, "--port", pair.B, "--script", script, "--state", state)
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	out := &lockedBuffer{}
	listening := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdoutPipe)
		first := true
		for sc.Scan() {
			out.Write(append(sc.Bytes(), '\n'))
			if first {
				listening <- sc.Text()
				first = false
			}
		}
	}()
	select {
	case line := <-listening:
		if !strings.Contains(line, "listening on "+pair.B) || !strings.Contains(line, "public ANSI X9.24 test BDK") {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no listening line; stderr %q", stderr.String())
	}

	c, err := abecs.Dial(pair.A, 0, &abecs.Options{ACKTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	cd, err := c.GetCard(ctx, abecs.CardRequest{AmountMinor: 500, Timeout: 5 * time.Second})
	if err != nil || cd.Track2() != track2 {
		t.Fatalf("GetCard: %v", err)
	}
	block, ksn, err := c.GetPIN(ctx, abecs.PINRequest{PAN: pan, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("GetPIN: %v", err)
	}
	bdk, _ := hex.DecodeString(testBDK)
	key, err := dukpt.TDESPINKey(bdk, dukpt.KSN(ksn))
	if err != nil {
		t.Fatal(err)
	}
	clearBlock, _ := pinblock.DecryptTDES(key, block)
	if pin, err := pinblock.DecodeFormat0(clearBlock, pan); err != nil || pin != "1234" {
		t.Fatalf("PIN does not decode: %v", err)
	}
	if _, _, err := c.GetPIN(ctx, abecs.PINRequest{PAN: pan, Timeout: 5 * time.Second}); !errors.Is(err, abecs.ErrCancelled) {
		t.Fatalf("second GetPIN: %v, want ErrCancelled", err)
	}
	if _, err := c.Do(ctx, abecs.Command{ID: "ZZZ"}, 0); !errors.Is(err, abecs.ErrInvalidCall) {
		t.Fatalf("unknown command: %v", err)
	}
	if err := c.Finish(ctx, "BYE"); err != nil {
		t.Fatalf("Finish: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { <-copied; waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("exit: %v; stderr %q", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pinpad-sim did not exit on SIGTERM")
	}
	text := out.String()
	for _, want := range []string{"GCR amount 500: swipe 476173******0010 -> 000", "PAN 476173******0010", "-> 013", "ERR010", "stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("stdout lacks %q:\n%s", want, text)
		}
	}
	for _, secret := range []string{pan, "2512201", strings.ToUpper(hex.EncodeToString(block[:])), testBDK} {
		if strings.Contains(text+stderr.String(), secret) {
			t.Errorf("output contains %q:\n%s", secret, text)
		}
	}
	if b, err := os.ReadFile(state); err != nil || strings.TrimSpace(string(b)) != dukpt.KSN(ksn).String() {
		t.Errorf("state file %q, %v", b, err)
	}
}
