package terminal_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/internal/serialport"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
	"golang.org/x/sys/unix"
)

const (
	devBDK   = "0123456789ABCDEFFEDCBA9876543210" // public ANSI X9.24 test key
	devKSN   = "FFFF9876543210E00000"
	devPAN   = "4761739001010010"
	devChipT = "4761739001010010=30122010000000000" // service code 201: a chip card
)

var devEUR = money.Currency{Code: "EUR", Numeric: "978", Exponent: 2}

func devAmount(minor int64) money.Amount { return money.Amount{Minor: minor, Currency: devEUR} }

// devLogs collects simulator log lines for the no-card-data checks.
type devLogs struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *devLogs) logf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, f+"\n", a...)
}

func (l *devLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// devPad is a simulated pad on side B of a fresh pty pair.
type devPad struct {
	pair *ptypair.Pair
	pad  *padsim.Pad
	log  *devLogs
	stop func()
}

func startDevPad(t *testing.T, script string, opts padsim.Options) *devPad {
	t.Helper()
	s, err := padsim.ParseScript([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	bdk, _ := hex.DecodeString(devBDK)
	ksn, _ := dukpt.ParseKSN(devKSN)
	opts.BDK, opts.KSN = bdk, ksn
	logs := &devLogs{}
	opts.Logf = logs.logf
	pad, err := padsim.New(s, &opts)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	port, err := abecs.OpenSerial(pair.B, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { pad.Serve(ctx, port); close(served) }()
	var once sync.Once
	d := &devPad{pair: pair, pad: pad, log: logs, stop: func() {
		once.Do(func() { cancel(); <-served; port.Close(); pair.Close() })
	}}
	t.Cleanup(func() {
		d.stop()
		if pans := card.ScanPANs(logs.String()); len(pans) > 0 {
			t.Errorf("pad log shows PANs %v", pans)
		}
	})
	return d
}

// devLinkOpts: an ACK timeout generous enough for a loaded machine (a
// command sent twice would run twice on the simulator), a short response
// timeout for the fault tests.
func devLinkOpts() abecs.Options {
	return abecs.Options{ACKTimeout: time.Second, ResponseTimeout: time.Second, AbortTimeout: 200 * time.Millisecond}
}

// devPlug is the script prefix the device's connection probe (OPN, then
// GIN) consumes, so that the delays and faults after it reach the sale's
// first command: each probe command takes a fault (a harmless noise byte)
// and a delay, and the last fault keeps the next delay apart from GIN's.
const devPlug = `{"fault":{"kind":"noise","hex":"00"}},{"delay":"1ms"},{"fault":{"kind":"noise","hex":"00"}},{"delay":"1ms"},{"fault":{"kind":"noise","hex":"00"}},`

// devDevice returns a PadDevice whose port is opened through *path, so that
// a test can move it to another pty pair.
func devDevice(t *testing.T, path func() string, link abecs.Options) *terminal.PadDevice {
	t.Helper()
	open := func(context.Context) (io.ReadWriteCloser, error) { return abecs.OpenSerial(path(), 0) }
	return devDeviceWith(t, open, link, devDeviceOpts())
}

// devDeviceOpts: quick reconnection for the tests.
func devDeviceOpts() terminal.DeviceOptions {
	return terminal.DeviceOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ProbeTimeout: 2 * time.Second}
}

// devDeviceWith returns a connected PadDevice over the ports open opens.
func devDeviceWith(t *testing.T, open func(context.Context) (io.ReadWriteCloser, error), link abecs.Options, opts terminal.DeviceOptions) *terminal.PadDevice {
	t.Helper()
	dev, err := terminal.OpenPadDevice(terminal.PadDeviceOptions{
		Path:   "test-pty",
		Link:   link,
		Open:   open,
		Device: opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dev.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return dev
}

func devPINPad(t *testing.T, script string, opts padsim.Options) (*terminal.PINPad, *devPad, *terminal.PadDevice) {
	t.Helper()
	p := startDevPad(t, script, opts)
	dev := devDevice(t, func() string { return p.pair.A }, devLinkOpts())
	return terminal.NewPINPadDevice(dev), p, dev
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

const devChip = `{"pan":"` + devPAN + `","expiry":"301231","online_pin":true}`

func TestPINPadChipSaleApproved(t *testing.T) {
	pp, sim, dev := devPINPad(t, `{"events":[{"insert":`+devChip+`},{"pin":"1234"}]}`, padsim.Options{})
	if st := dev.Status(); st.State != terminal.DeviceConnected || !strings.Contains(st.Info, "PADSIM") || st.ModemLines != "not supported" {
		t.Fatalf("status %+v", st)
	}
	if err := pp.Show(ctxFor(t, time.Second), "SALE 12.34 EUR", "INSERT CARD"); err != nil {
		t.Fatal(err)
	}
	pc, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(1234))
	if err != nil {
		t.Fatal(err)
	}
	if !pc.Chip() || pc.EntryMode() != "051" || pc.MaskedPAN() != "476173******0010" {
		t.Fatalf("presented %v %s", pc, pc.EntryMode())
	}
	auth, err := pp.GoOnChip(ctxFor(t, 3*time.Second), terminal.ChipRequest{Amount: devAmount(1234), KeyIndex: 1})
	if err != nil {
		t.Fatal(err)
	}
	if auth.Decision != terminal.ChipOnline || auth.PIN.IsZero() || auth.Card.PAN().Digits() != devPAN || auth.Card.Expiry().YYMM() != "3012" {
		t.Fatalf("auth %v", auth)
	}
	if psn, ok := auth.Card.PANSequence(); !ok || psn != "001" {
		t.Fatalf("field 23 %q", psn)
	}
	if len(auth.DE55) == 0 || auth.EntryMode() != "051" {
		t.Fatalf("DE 55 %d bytes", len(auth.DE55))
	}
	// The host side decrypts the online PIN with the card's PAN.
	bdk, _ := hex.DecodeString(devBDK)
	var ksn [10]byte
	copy(ksn[:], auth.PIN.KSN())
	key, _ := dukpt.TDESPINKey(bdk, dukpt.KSN(ksn))
	var blk [8]byte
	copy(blk[:], auth.PIN.Block())
	clearBlock, _ := pinblock.DecryptTDES(key, blk)
	if pin, err := pinblock.DecodeFormat0(clearBlock, devPAN); err != nil || pin != "1234" {
		t.Fatalf("online PIN: %v", err)
	}
	issuer, _ := hex.DecodeString("910A0102030405060708090A")
	fin, err := pp.FinishChip(ctxFor(t, 3*time.Second), terminal.HostAnswer{Responded: true, ResponseCode: "00", Field55: issuer})
	if err != nil || !fin.Approved || fin.MustReverse(true) {
		t.Fatalf("finish %v %v", fin, err)
	}
	if err := pp.WaitRemoval(ctxFor(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := pp.Finish(ctxFor(t, time.Second), "APPROVED"); err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("%v %#v %v %v %v", pc, pc, auth, auth.Data, fin.Data)
	if strings.Contains(out, devPAN) || len(card.ScanPANs(out)) > 0 {
		t.Fatalf("formatting shows the PAN: %s", out)
	}
	if sim.pad.Remaining() != 0 {
		t.Fatalf("%d script events left", sim.pad.Remaining())
	}
}

func TestPINPadChipDeclinedAfterHostApproval(t *testing.T) {
	pp, _, _ := devPINPad(t, `{"events":[{"insert":{"pan":"`+devPAN+`","finish":"decline"}}]}`, padsim.Options{})
	if _, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(500)); err != nil {
		t.Fatal(err)
	}
	auth, err := pp.GoOnChip(ctxFor(t, 3*time.Second), terminal.ChipRequest{Amount: devAmount(500), KeyIndex: 1})
	if err != nil || !auth.PIN.IsZero() {
		t.Fatalf("GoOnChip %v %v", auth, err)
	}
	fin, err := pp.FinishChip(ctxFor(t, 3*time.Second), terminal.HostAnswer{Responded: true, ResponseCode: "00"})
	if err != nil {
		t.Fatal(err)
	}
	if fin.Approved || !fin.MustReverse(true) || fin.MustReverse(false) {
		t.Fatalf("the card's decline after approval is not reported: %v", fin)
	}
}

func TestPINPadFallbackSwipe(t *testing.T) {
	pp, _, _ := devPINPad(t, `{"events":[{"chip_fault":"fallback"},{"swipe":{"track2":"`+devChipT+`"}},{"chip_fault":"mute"}]}`, padsim.Options{})
	_, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(100))
	if !errors.Is(err, terminal.ErrChipFallback) {
		t.Fatalf("chip error: %v, want ErrChipFallback", err)
	}
	pc, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(100))
	if err != nil || pc.Chip() || !pc.Fallback() || pc.EntryMode() != "801" {
		t.Fatalf("fallback swipe %v %v", pc, err)
	}
	t1, t2 := pc.Tracks()
	sw, err := card.ParseSwipe(t1, t2)
	if err != nil {
		t.Fatal(err)
	}
	// A chip card on the stripe is refused, except as a fallback.
	if err := sw.CheckSale(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), false); !errors.Is(err, card.ErrChipCard) {
		t.Fatalf("chip card swiped without fallback: %v", err)
	}
	if err := sw.CheckSale(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), pc.Fallback()); err != nil {
		t.Fatalf("fallback: %v", err)
	}
	if _, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(100)); !errors.Is(err, terminal.ErrCardUnreadable) {
		t.Fatalf("mute card: %v, want ErrCardUnreadable", err)
	}
}

func TestPINPadCustomerFaults(t *testing.T) {
	cases := []struct {
		name   string
		script string
		step   func(pp *terminal.PINPad) error
		want   error
	}{
		{"cancel at the card", `{"cancel":true}`, func(pp *terminal.PINPad) error {
			_, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(1))
			return err
		}, terminal.ErrDeviceCancel},
		{"no card", `{"delay":"5s"}`, func(pp *terminal.PINPad) error {
			_, err := pp.ReadCardAny(ctxFor(t, 300*time.Millisecond), devAmount(1))
			return err
		}, terminal.ErrDeviceTimeout},
		{"cancel at the PIN", `{"insert":` + devChip + `},{"cancel":true}`, chipUpToGOC, terminal.ErrDeviceCancel},
		{"PIN entry timeout", `{"insert":` + devChip + `},{"timeout":true}`, chipUpToGOC, terminal.ErrDeviceTimeout},
		{"card pulled at the PIN", `{"insert":` + devChip + `},{"remove":true}`, chipUpToGOC, terminal.ErrCardRemoved},
		{"card pulled before FNC", `{"insert":{"pan":"` + devPAN + `"}},{"remove":true}`, func(pp *terminal.PINPad) error {
			if err := chipUpToGOC(pp); err != nil {
				return err
			}
			_, err := pp.FinishChip(ctxFor(t, 3*time.Second), terminal.HostAnswer{Responded: true, ResponseCode: "00"})
			return err
		}, terminal.ErrCardRemoved},
		{"chip data with two PANs", `{"insert":{"pan":"` + devPAN + `","track2":"4111111111111111=30122010000000000"}}`, chipUpToGOC, terminal.ErrCardUnreadable},
		{"pad's tables in another currency", `{"insert":{"pan":"` + devPAN + `"}}`, chipUpToGOC, terminal.ErrChipData},
		{"chip card where a swipe is expected", `{"insert":{"pan":"` + devPAN + `"}}`, func(pp *terminal.PINPad) error {
			_, _, err := pp.ReadCard(ctxFor(t, 3*time.Second), devAmount(1))
			return err
		}, terminal.ErrCardUnreadable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := padsim.Options{}
			if strings.Contains(c.name, "currency") {
				opts.Currency = "986"
			}
			pp, sim, dev := devPINPad(t, `{"events":[`+c.script+`]}`, opts)
			err := c.step(pp)
			if !errors.Is(err, c.want) {
				t.Fatalf("%v, want %v; pad log:\n%s", err, c.want, sim.log)
			}
			if strings.Contains(err.Error(), devPAN) {
				t.Fatalf("error shows the PAN: %v", err)
			}
			// A customer fault is not a link fault.
			if st := dev.Status(); st.State != terminal.DeviceConnected {
				t.Fatalf("status %v", st)
			}
			if err := pp.Finish(ctxFor(t, time.Second), "CANCELLED"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func chipUpToGOC(pp *terminal.PINPad) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := pp.ReadCardAny(ctx, devAmount(700)); err != nil {
		return err
	}
	_, err := pp.GoOnChip(ctx, terminal.ChipRequest{Amount: devAmount(700), KeyIndex: 1})
	return err
}

// The cable is pulled during a sale: the sale in progress fails at once with
// a clear reason, the device reports it, reconnects when the pad is back
// (here on another pty), and the next sale works.
func TestPadDeviceReconnectsAfterPortFailure(t *testing.T) {
	first := startDevPad(t, `{"events":[`+devPlug+`{"delay":"10s"}]}`, padsim.Options{})
	var mu sync.Mutex
	path := first.pair.A
	dev := devDevice(t, func() string { mu.Lock(); defer mu.Unlock(); return path }, devLinkOpts())
	pp := terminal.NewPINPadDevice(dev)

	errc := make(chan error, 1)
	start := time.Now()
	go func() { _, err := pp.ReadCardAny(ctxFor(t, 10*time.Second), devAmount(100)); errc <- err }()
	time.Sleep(200 * time.Millisecond)
	first.stop() // both ptys vanish: the host's reads fail with EIO
	var err error
	select {
	case err = <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("the sale waited for the card timeout")
	}
	if !errors.Is(err, terminal.ErrDeviceUnavailable) || time.Since(start) > 3*time.Second {
		t.Fatalf("sale in progress: %v after %v; pad log:\n%s", err, time.Since(start), first.log)
	}
	waitState(t, dev, terminal.DeviceReconnecting)
	st := dev.Status()
	if st.LastError == "" || st.Reconnects != 0 {
		t.Fatalf("status %+v", st)
	}
	_, err = pp.ReadCardAny(ctxFor(t, time.Second), devAmount(100))
	if !errors.Is(err, terminal.ErrDeviceUnavailable) || !strings.Contains(err.Error(), "reconnecting since") {
		t.Fatalf("sale while reconnecting: %v", err)
	}

	second := startDevPad(t, `{"events":[{"swipe":{"track2":"`+devChipT+`"}}]}`, padsim.Options{})
	mu.Lock()
	path = second.pair.A
	mu.Unlock()
	waitState(t, dev, terminal.DeviceConnected)
	if st := dev.Status(); st.Reconnects != 1 || st.LastError != "" {
		t.Fatalf("status after reconnection %+v", st)
	}
	if pc, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(100)); err != nil || pc.Chip() {
		t.Fatalf("sale after reconnection: %v %v", pc, err)
	}
}

// The pad goes deaf (unplugged behind a USB adapter that stays): the command
// fails as not acknowledged, the device reconnects when the pad answers OPN
// again.
func TestPadDeviceReconnectsAfterSilentPad(t *testing.T) {
	sim := startDevPad(t, `{"events":[`+devPlug+`{"fault":{"kind":"unplug","delay":"800ms"}},{"swipe":{"track2":"`+devChipT+`"}}]}`, padsim.Options{})
	link := devLinkOpts()
	link.ACKTimeout = 150 * time.Millisecond
	dev := devDevice(t, func() string { return sim.pair.A }, link)
	pp := terminal.NewPINPadDevice(dev)
	err := pp.Show(ctxFor(t, 3*time.Second), "HELLO", "")
	if !errors.Is(err, terminal.ErrDeviceUnavailable) || !errors.Is(err, abecs.ErrNoACK) {
		t.Fatalf("Show to a deaf pad: %v", err)
	}
	if st := dev.Status(); st.State == terminal.DeviceConnected {
		t.Fatalf("status %+v", st)
	}
	waitState(t, dev, terminal.DeviceConnected)
	if pc, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(100)); err != nil || pc.MaskedPAN() != "476173******0010" {
		t.Fatalf("after the pad came back: %v %v", pc, err)
	}
}

func waitState(t *testing.T, dev interface{ Status() terminal.DeviceStatus }, want terminal.DeviceState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if dev.Status().State == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("state %+v, want %s", dev.Status(), want)
}

func TestPINPadOverPlainClient(t *testing.T) {
	sim := startDevPad(t, `{"events":[{"swipe":{"track2":"`+devChipT+`"}}]}`, padsim.Options{})
	lo := devLinkOpts()
	c, err := abecs.Dial(sim.pair.A, 0, &lo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pp := terminal.NewPINPad(c)
	if st := pp.Status(); st.State != terminal.DeviceConnected {
		t.Fatalf("status %+v", st)
	}
	t1, t2, err := pp.ReadCard(ctxFor(t, 3*time.Second), devAmount(1))
	if err != nil || t1 != "" || t2 != devChipT {
		t.Fatalf("ReadCard %q %v", t2, err)
	}
	info, err := pp.Info(ctxFor(t, time.Second))
	if err != nil || info.Model != "PADSIM" {
		t.Fatalf("Info %+v %v", info, err)
	}
	sim.stop()
	select {
	case <-c.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("client did not stop")
	}
	if st := pp.Status(); st.State != terminal.DeviceFailed {
		t.Fatalf("status after the port failed %+v", st)
	}
	if err := pp.Show(ctxFor(t, time.Second), "X", ""); !errors.Is(err, terminal.ErrDeviceUnavailable) {
		t.Fatalf("Show: %v", err)
	}
}

// TestPadDeviceNoiseBeforeConnect: line noise that reached the port while
// posd was not reading it (between two connections, or before the first) is
// discarded when the port is opened: the first byte the link reads is the
// pad's ACK to OPN, not noise decoded as the start of the pad's answer.
func TestPadDeviceNoiseBeforeConnect(t *testing.T) {
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	// Noise from the pad's side while nobody has the host's side open: it
	// waits in the host side's input queue. A run of bytes with ABECS
	// control characters in it, as a bouncing connector makes, ending in
	// the start of a frame that never ends.
	noise := make([]byte, 0, 520)
	for i := 0; len(noise) < 500; i++ {
		noise = append(noise, byte(i*37), 0x16, byte(i), 0x17, 0x06, 0x15)
	}
	noise = append(noise, 0x16, 'G', 'I', 'N', '0', '0', '0')
	raw, err := os.OpenFile(pair.B, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write(noise); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if err := ptypair.WaitQueued(pair.A, len(noise), 5*time.Second); err != nil {
		t.Fatal(err)
	}

	s, err := padsim.ParseScript([]byte(`{"events":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	bdk, _ := hex.DecodeString(devBDK)
	ksn, _ := dukpt.ParseKSN(devKSN)
	pad, err := padsim.New(s, &padsim.Options{BDK: bdk, KSN: ksn})
	if err != nil {
		t.Fatal(err)
	}
	port, err := abecs.OpenSerial(pair.B, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { pad.Serve(ctx, port); close(served) }()
	defer func() { cancel(); <-served; port.Close() }()

	// One ACK timeout is longer than a clean connection takes by far; a
	// connection that read the noise first would fail and back off.
	link := abecs.Options{ACKTimeout: 2 * time.Second, ResponseTimeout: 2 * time.Second}
	var first firstByte
	open := func(context.Context) (io.ReadWriteCloser, error) {
		p, err := abecs.OpenSerial(pair.A, 0)
		if err != nil {
			return nil, err
		}
		return &firstByteReader{SerialPort: p, first: &first}, nil
	}
	dev, err := terminal.OpenPadDevice(terminal.PadDeviceOptions{Path: pair.A, Link: link, Open: open, Device: devDeviceOpts()})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	start := time.Now()
	wctx, wcancel := context.WithTimeout(context.Background(), link.ACKTimeout)
	defer wcancel()
	if err := dev.WaitConnected(wctx); err != nil {
		t.Fatalf("not connected within one ACK timeout (%v) of noise: %v; status %v", link.ACKTimeout, err, dev.Status())
	}
	if st := dev.Status(); st.State != terminal.DeviceConnected || !strings.Contains(st.Info, "PADSIM") {
		t.Fatalf("status %v after %v", st, time.Since(start))
	}
	if b, ok := first.get(); !ok || b != abecs.ACK {
		t.Fatalf("the link's first byte read is %#02x, want the pad's ACK to OPN (the noise was read)", b)
	}
}

// firstByte records the first byte read through a firstByteReader.
type firstByte struct {
	mu  sync.Mutex
	b   byte
	set bool
}

func (f *firstByte) get() (byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b, f.set
}

type firstByteReader struct {
	*abecs.SerialPort
	first *firstByte
}

func (r *firstByteReader) Read(b []byte) (int, error) {
	n, err := r.SerialPort.Read(b)
	if n > 0 {
		r.first.mu.Lock()
		if !r.first.set {
			r.first.b, r.first.set = b[0], true
		}
		r.first.mu.Unlock()
	}
	return n, err
}

// TestPadDevicePortInUse: a pad whose port another holder has (here this
// process, as a second posd would find the first) is not waited for: the
// first connection fails at once, naming the holder.
func TestPadDevicePortInUse(t *testing.T) {
	p := startDevPad(t, `{"events":[]}`, padsim.Options{})
	first := devDevice(t, func() string { return p.pair.A }, devLinkOpts())
	if st := first.Status(); st.State != terminal.DeviceConnected {
		t.Fatalf("first device: %v", st)
	}

	second, err := terminal.OpenPadDevice(terminal.PadDeviceOptions{Path: p.pair.A, Link: devLinkOpts(), Device: devDeviceOpts()})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = second.WaitConnected(ctx)
	want := fmt.Sprintf("%s is in use by PID %d", p.pair.A, os.Getpid())
	if !errors.Is(err, serialport.ErrInUse) || !errors.Is(err, terminal.ErrDeviceUnavailable) || !strings.Contains(fmt.Sprint(err), want) {
		t.Fatalf("second device: %v, want ErrDeviceUnavailable and %q", err, want)
	}
	if ctx.Err() != nil {
		t.Fatal("WaitConnected waited for its context instead of returning at once")
	}
	if st := second.Status(); st.State == terminal.DeviceConnected || !strings.Contains(st.LastError, want) {
		t.Fatalf("second device status: %v", st)
	}
}
