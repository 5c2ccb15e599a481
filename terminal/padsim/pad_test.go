package padsim_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// Public test keys and vectors (ANSI X9.24-1:2009 Annex A, REFERENCE.md).
const (
	testBDK    = "0123456789ABCDEFFEDCBA9876543210"
	testKSN    = "FFFF9876543210E00000"
	vectorPAN  = "4012345678909"
	vectorPIN  = "1234"
	vectorEPB1 = "1B9C1845EB993A7A" // KSN ...E00001
	vectorEPB2 = "10A01C8D02C69107" // KSN ...E00002

	track1 = "B4761739001010010^VISA ACQUIRER TEST/CARD 01^2512201123400001230"
	track2 = "4761739001010010=25122011234000001230"
	pan    = "4761739001010010"
)

func bdk(t testing.TB) []byte {
	b, err := hex.DecodeString(testBDK)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ksn0(t testing.TB) dukpt.KSN {
	k, err := dukpt.ParseKSN(testKSN)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// logBuf collects the pad's log lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// noSecrets fails if s contains card data, a PIN block or a key.
func noSecrets(t testing.TB, s string) {
	t.Helper()
	for _, secret := range []string{pan, vectorPAN, track2[17:], "2512201", vectorEPB1, vectorEPB2, testBDK, "VISA ACQUIRER"} {
		if strings.Contains(s, secret) {
			t.Errorf("output contains sensitive %q:\n%s", secret, s)
		}
	}
}

type rig struct {
	client *abecs.Client
	pad    *padsim.Pad
	log    *logBuf
}

type rigOpts struct {
	padOpts    padsim.Options
	clientOpts *abecs.Options // default fastOpts()
	padWrap    func(io.ReadWriter) io.ReadWriter
	clientWrap func(*abecs.SerialPort) io.ReadWriteCloser
}

func fastOpts() *abecs.Options {
	return &abecs.Options{ACKTimeout: time.Second, ResponseTimeout: 2 * time.Second, AbortTimeout: 500 * time.Millisecond}
}

// newRig connects a client and a pad through a fresh pty pair.
func newRig(t testing.TB, script string, ro rigOpts) *rig {
	t.Helper()
	s, err := padsim.ParseScript([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuf{}
	opts := ro.padOpts
	if opts.BDK == nil {
		opts.BDK = bdk(t)
		opts.KSN = ksn0(t)
	}
	opts.Logf = lb.logf
	pad, err := padsim.New(s, &opts)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	padPort, err := abecs.OpenSerial(pair.B, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rw io.ReadWriter = padPort
	if ro.padWrap != nil {
		rw = ro.padWrap(padPort)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- pad.Serve(ctx, rw) }()

	hostPort, err := abecs.OpenSerial(pair.A, 0)
	if err != nil {
		t.Fatal(err)
	}
	var hp io.ReadWriteCloser = hostPort
	if ro.clientWrap != nil {
		hp = ro.clientWrap(hostPort)
	}
	co := ro.clientOpts
	if co == nil {
		co = fastOpts()
	}
	client := abecs.NewClient(hp, co)
	t.Cleanup(func() {
		client.Close()
		cancel()
		if err := <-served; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
		padPort.Close()
		pair.Close()
		noSecrets(t, lb.String())
		if t.Failed() {
			t.Logf("pad log:\n%s", lb)
		}
	})
	return &rig{client: client, pad: pad, log: lb}
}

const saleScript = `{"events":[
	{"swipe":{"track1":"` + track1 + `","track2":"` + track2 + `"}},
	{"pin":"1234"}
]}`

func TestSale(t *testing.T) {
	r := newRig(t, saleScript, rigOpts{})
	ctx := context.Background()
	if err := r.client.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := r.client.Display(ctx, "TOTAL", "12.34"); err != nil {
		t.Fatalf("Display: %v", err)
	}
	cd, err := r.client.GetCard(ctx, abecs.CardRequest{AmountMinor: 1234, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("GetCard: %v", err)
	}
	if cd.Track1() != track1 || cd.Track2() != track2 || cd.PAN() != pan || cd.Expiry() != "2512" || cd.ServiceCode() != "201" {
		t.Fatalf("card data differs from the script: %v", cd)
	}
	block, ksn, err := r.client.GetPIN(ctx, abecs.PINRequest{KeyIndex: 1, PAN: vectorPAN, Line1: "TOTAL 12.34", Line2: "PIN:", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("GetPIN: %v", err)
	}
	// The host side: derive the key from the BDK and the KSN received,
	// decrypt, decode.
	if got := dukpt.KSN(ksn).String(); got != "FFFF9876543210E00001" {
		t.Fatalf("KSN %s, want FFFF9876543210E00001", got)
	}
	if got := strings.ToUpper(hex.EncodeToString(block[:])); got != vectorEPB1 {
		t.Errorf("PIN block %s, want the published %s", got, vectorEPB1)
	}
	key, err := dukpt.TDESPINKey(bdk(t), dukpt.KSN(ksn))
	if err != nil {
		t.Fatal(err)
	}
	clearBlock, err := pinblock.DecryptTDES(key, block)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := pinblock.DecodeFormat0(clearBlock, vectorPAN)
	if err != nil || pin != vectorPIN {
		t.Fatalf("decoded PIN: ok=%v err=%v", pin == vectorPIN, err)
	}
	if err := r.client.Finish(ctx, "APPROVED"); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if r.pad.Remaining() != 0 || r.pad.KSN() != dukpt.KSN(ksn) {
		t.Errorf("pad state: %d events left, KSN %v", r.pad.Remaining(), r.pad.KSN())
	}
	log := r.log.String()
	for _, want := range []string{"OPN -> 000", `DSP "TOTAL" "12.34" -> 000`, "GCR amount 1234: swipe 476173******0010 -> 000",
		"GPN key 01 PAN 401234***8909", "KSN FFFF9876543210E00001 -> 000", `CLO "APPROVED" "" -> 000`} {
		if !strings.Contains(log, want) {
			t.Errorf("pad log lacks %q:\n%s", want, log)
		}
	}
}

func TestCancel(t *testing.T) {
	r := newRig(t, `{"events":[{"cancel":true},{"swipe":{"track2":"`+track2+`"}},{"cancel":true}]}`, rigOpts{})
	ctx := context.Background()
	_, err := r.client.GetCard(ctx, abecs.CardRequest{Timeout: 2 * time.Second})
	var se *abecs.StatusError
	if !errors.Is(err, abecs.ErrCancelled) || !errors.As(err, &se) || se.Code != 13 || se.Cmd != "GCR" {
		t.Fatalf("GetCard: %v, want status 013", err)
	}
	cd, err := r.client.GetCard(ctx, abecs.CardRequest{Timeout: 2 * time.Second})
	if err != nil || cd.Track1() != "" || cd.Track2() != track2 {
		t.Fatalf("GetCard after cancel: %v", err)
	}
	_, _, err = r.client.GetPIN(ctx, abecs.PINRequest{PAN: pan, Timeout: 2 * time.Second})
	if !errors.Is(err, abecs.ErrCancelled) {
		t.Fatalf("GetPIN: %v, want ErrCancelled", err)
	}
	// Exhausted script: timeout status, not a hang.
	_, err = r.client.GetCard(ctx, abecs.CardRequest{Timeout: 2 * time.Second})
	if !errors.As(err, &se) || se.Code != 12 || !errors.Is(err, abecs.ErrPadTimeout) {
		t.Fatalf("exhausted: %v, want status 012", err)
	}
}

func TestUnknownCommand(t *testing.T) {
	r := newRig(t, `{"events":[]}`, rigOpts{})
	_, err := r.client.Do(context.Background(), abecs.Command{ID: "XYZ"}, 0)
	var se *abecs.StatusError
	if !errors.As(err, &se) || se.Code != 10 || !errors.Is(err, abecs.ErrInvalidCall) {
		t.Fatalf("err = %v, want status 010", err)
	}
	if !strings.Contains(r.log.String(), `"XYZ": unknown command -> ERR010`) {
		t.Errorf("log:\n%s", r.log)
	}
	// Bad parameters answer 011.
	_, err = r.client.Do(context.Background(), abecs.Command{ID: "DSP", Blocks: [][]byte{[]byte("short")}}, 0)
	if !errors.Is(err, abecs.ErrInvalidParameter) {
		t.Fatalf("short DSP: %v, want status 011", err)
	}
	resp, err := r.client.Do(context.Background(), abecs.Command{ID: "OPN"}, 0)
	if err != nil || resp.ID != "OPN" || resp.Status != 0 {
		t.Fatalf("OPN via Do: %+v %v", resp, err)
	}
}

// corruptOnce flips one data bit of the first frame written through it whose
// data starts with prefix.
type corruptOnce struct {
	io.ReadWriter
	prefix string
	mu     sync.Mutex
	done   bool
}

func (c *corruptOnce) Write(b []byte) (int, error) {
	c.mu.Lock()
	if !c.done && len(b) > 4 && b[0] == abecs.SYN && bytes.HasPrefix(b[1:], []byte(c.prefix)) {
		c.done = true
		b = append([]byte(nil), b...)
		b[2] ^= 0x01
	}
	c.mu.Unlock()
	return c.ReadWriter.Write(b)
}

type rwc struct {
	io.ReadWriter
	io.Closer
}

func TestCorruptedResponseIsResent(t *testing.T) {
	r := newRig(t, saleScript, rigOpts{
		padWrap: func(p io.ReadWriter) io.ReadWriter { return &corruptOnce{ReadWriter: p, prefix: "GCR000"} },
	})
	cd, err := r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second})
	if err != nil || cd.Track2() != track2 {
		t.Fatalf("GetCard: %v", err)
	}
	if !strings.Contains(r.log.String(), "NAK -> response sent again (2 of 3)") {
		t.Errorf("pad log:\n%s", r.log)
	}
}

func TestCorruptedCommandIsRetried(t *testing.T) {
	r := newRig(t, saleScript, rigOpts{
		clientWrap: func(p *abecs.SerialPort) io.ReadWriteCloser {
			return rwc{ReadWriter: &corruptOnce{ReadWriter: p, prefix: "DSP"}, Closer: p}
		},
	})
	if err := r.client.Display(context.Background(), "HELLO", "WORLD"); err != nil {
		t.Fatalf("Display: %v", err)
	}
	log := r.log.String()
	if !strings.Contains(log, "bad packet (packet CRC mismatch) -> NAK") || !strings.Contains(log, `DSP "HELLO" "WORLD" -> 000`) {
		t.Errorf("pad log:\n%s", log)
	}
}

func TestDelayAndClientTimeout(t *testing.T) {
	r := newRig(t, `{"events":[{"delay":"5s"},{"swipe":{"track2":"`+track2+`"}}]}`, rigOpts{})
	start := time.Now()
	_, err := r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, abecs.ErrPadTimeout) {
		t.Fatalf("GetCard: %v, want ErrPadTimeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v; CAN did not stop the pad", el)
	}
	if !strings.Contains(r.log.String(), "CAN -> EOT (command abandoned)") {
		t.Errorf("pad log:\n%s", r.log)
	}
	// The delay was used up; the swipe is still there.
	cd, err := r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second})
	if err != nil || cd.PAN() != pan {
		t.Fatalf("second GetCard: %v", err)
	}
}

func TestDelayThenAnswer(t *testing.T) {
	r := newRig(t, `{"events":[{"delay":"150ms"},{"delay":"100ms"}]}`, rigOpts{})
	start := time.Now()
	if err := r.client.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("answered after %v, want at least the 250ms of delays", el)
	}
}

func TestScriptMismatchAndKeyIndex(t *testing.T) {
	r := newRig(t, `{"events":[{"pin":"1234"}]}`, rigOpts{padOpts: padsim.Options{BDK: bdk(t), KSN: ksn0(t), KeyIndex: 1}})
	ctx := context.Background()
	_, err := r.client.GetCard(ctx, abecs.CardRequest{Timeout: 2 * time.Second})
	if !errors.Is(err, abecs.ErrInternal) {
		t.Fatalf("GetCard with a pin next: %v, want status 040", err)
	}
	_, _, err = r.client.GetPIN(ctx, abecs.PINRequest{KeyIndex: 2, PAN: vectorPAN, Timeout: 2 * time.Second})
	if !errors.Is(err, abecs.ErrKeyMissing) {
		t.Fatalf("GetPIN slot 2: %v, want status 042", err)
	}
	_, _, err = r.client.GetPIN(ctx, abecs.PINRequest{KeyIndex: 1, PAN: vectorPAN, MinLen: 6, Timeout: 2 * time.Second})
	if !errors.Is(err, abecs.ErrInternal) {
		t.Fatalf("GetPIN with a 4-digit pin and MinLen 6: %v, want status 040", err)
	}
	// The pin event is still there.
	block, _, err := r.client.GetPIN(ctx, abecs.PINRequest{KeyIndex: 1, PAN: vectorPAN, Timeout: 2 * time.Second})
	if err != nil || strings.ToUpper(hex.EncodeToString(block[:])) != vectorEPB1 {
		t.Fatalf("GetPIN: %v", err)
	}
}

func TestStatePersistsAcrossPads(t *testing.T) {
	state := filepath.Join(t.TempDir(), "pad.state")
	opts := padsim.Options{BDK: bdk(t), KSN: ksn0(t), StatePath: state}
	for i, want := range []string{vectorEPB1, vectorEPB2} {
		r := newRig(t, `{"events":[{"pin":"1234"}]}`, rigOpts{padOpts: opts})
		block, ksn, err := r.client.GetPIN(context.Background(), abecs.PINRequest{PAN: vectorPAN, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(block[:])); got != want || dukpt.KSN(ksn).Counter() != uint32(i+1) {
			t.Fatalf("run %d: block %s KSN %v, want %s counter %d", i+1, got, dukpt.KSN(ksn), want, i+1)
		}
		b, err := os.ReadFile(state)
		if err != nil || strings.TrimSpace(string(b)) != dukpt.KSN(ksn).String() {
			t.Fatalf("state file %q, %v", b, err)
		}
	}

	// A state file from another key, or a corrupt one, stops New with a
	// message naming the file.
	other := padsim.Options{BDK: bdk(t), StatePath: state}
	other.KSN, _ = dukpt.ParseKSN("FFFF0000000000E00000")
	if _, err := padsim.New(nil, &other); err == nil || !strings.Contains(err.Error(), state) {
		t.Errorf("foreign state: %v", err)
	}
	os.WriteFile(state, []byte("garbage"), 0o600)
	if _, err := padsim.New(nil, &opts); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("corrupt state: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := padsim.New(nil, nil); err == nil {
		t.Error("nil options accepted")
	}
	if _, err := padsim.New(nil, &padsim.Options{BDK: []byte{1, 2, 3}}); err == nil {
		t.Error("3-byte BDK accepted")
	}
	bad := &padsim.Script{Events: []padsim.Event{{PIN: "1234"}, {PIN: "12", Cancel: true}}}
	if _, err := padsim.New(bad, &padsim.Options{BDK: bdk(t)}); err == nil || !strings.Contains(err.Error(), "events[1]") {
		t.Errorf("bad script: %v", err)
	}
}

func TestServeTwice(t *testing.T) {
	pad, err := padsim.New(nil, &padsim.Options{BDK: bdk(t)})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pad.Serve(ctx, struct {
			io.Reader
			io.Writer
		}{pr, io.Discard})
	}()
	time.Sleep(20 * time.Millisecond)
	if err := pad.Serve(ctx, nil); !errors.Is(err, padsim.ErrServing) {
		t.Errorf("second Serve: %v, want ErrServing", err)
	}
	pw.CloseWithError(errors.New("line dropped"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "line dropped") {
		t.Errorf("Serve after port failure: %v", err)
	}
	cancel()
}
