package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/ptypair"
)

func TestAESFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dukpt", "aes512"}, `--dukpt "aes512" is not tdes, aes128, aes192 or aes256`},
		{[]string{"--dukpt", "tdes3"}, `--dukpt "tdes3"`},
		{[]string{"--dukpt", "aes256"}, "--dukpt aes256 needs --bdk: 64 hexadecimal digits"},
		{[]string{"--dukpt", "aes128", "--bdk", testBDK + "00"}, "--bdk must be 32 hexadecimal digits for --dukpt aes128"},
		{[]string{"--dukpt", "aes192", "--bdk", testAESBDK}, "--bdk must be 48 hexadecimal digits"},
		{[]string{"--dukpt", "aes128", "--ksn", testKSN}, "--ksn must be 24 hexadecimal digits"},
		{[]string{"--ksn", testAESKSN}, "--ksn must be 20 hexadecimal digits"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"--port", "/dev/null"}, c.args...), &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and one line containing %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// runAESPad runs the simulator's main in-process with --dukpt aes128 and a state file,
// answers one GPN method 4 and stops; it returns the block and KSN.
func runAESPad(t *testing.T, state string, pin string) ([16]byte, [12]byte, string) {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	script := writeScript(t, `{"events":[{"pin":"`+pin+`"}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	var stderr lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--port", pair.B, "--script", script, "--dukpt", "aes128", "--state", state}, out, &stderr)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "listening on"); {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line; stderr %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := abecs.Dial(pair.A, 0, &abecs.Options{ACKTimeout: 500 * time.Millisecond, ResponseTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := abecs.PINRequest{PAN: pan, Timeout: 5 * time.Second}
	if _, _, err := c.GetPIN(context.Background(), req); !errors.Is(err, abecs.ErrKeyMissing) {
		t.Fatalf("TDES GPN on the AES pad: %v", err)
	}
	block, ksn, err := c.GetPINAES(context.Background(), req)
	if err != nil {
		t.Fatalf("GetPINAES: %v", err)
	}
	cancel()
	if got := <-code; got != 0 {
		t.Fatalf("exit %d: %s", got, stderr.String())
	}
	return block, ksn, out.String()
}

// --dukpt aes128 with the default keys: format 4 blocks the X9.24-3 receiver decrypts, the
// counter kept in the state file across runs, nothing secret in the output.
func TestAESInProcess(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	bdk, _ := hex.DecodeString(testAESBDK)
	var blocks []string
	for run, want := range []string{"1234", "8765"} {
		block, ksn, out := runAESPad(t, state, want)
		k := dukpt.AESKSN(ksn)
		if k.String() != testAESKSN[:16]+"0000000"+string(rune('1'+run)) {
			t.Errorf("run %d: KSN %v", run+1, k)
		}
		key, err := dukpt.AESWorkingKey(bdk, k, dukpt.UsagePINEncryption, dukpt.KeyAES128)
		if err != nil {
			t.Fatal(err)
		}
		field, _ := pinblock.DecryptFormat4(key, block, pan)
		if got, err := pinblock.Decode(pinblock.Format4, field[:], pan); err != nil || got != want {
			t.Errorf("run %d: the block does not decrypt to the PIN typed (%v)", run+1, err)
		}
		if b, err := os.ReadFile(state); err != nil || strings.TrimSpace(string(b)) != k.String() {
			t.Errorf("run %d: state file %q, %v", run+1, b, err)
		}
		if !strings.Contains(out, "AES-128 DUKPT, KSN "+testAESKSN[:16]) || !strings.Contains(out, "public ANSI X9.24 test BDK") {
			t.Errorf("run %d: listening line:\n%s", run+1, out)
		}
		blocks = append(blocks, strings.ToUpper(hex.EncodeToString(block[:])))
		for _, secret := range append(blocks, pan, testAESBDK) {
			if strings.Contains(strings.ToUpper(out), secret) {
				t.Errorf("output contains %q:\n%s", secret, out)
			}
		}
	}
}
