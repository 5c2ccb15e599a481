package abecs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// rawPad is a hand-driven PIN pad on the B side of a fresh pty pair, for
// link-layer fault tests. The client under test is on the A side.
type rawPad struct {
	t    *testing.T
	port *abecs.SerialPort
	dec  *abecs.Decoder
}

// fastOpts gives timeouts generous enough for a loaded machine where the
// pad answers; tests of the timeouts themselves shorten the one they test.
func fastOpts() *abecs.Options {
	return &abecs.Options{
		ACKTimeout:      time.Second,
		ResponseTimeout: time.Second,
		AbortTimeout:    500 * time.Millisecond,
	}
}

func newLink(t *testing.T, opts *abecs.Options) (*abecs.Client, *rawPad) {
	t.Helper()
	p, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	padPort, err := abecs.OpenSerial(p.B, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { padPort.Close() })
	if err := padPort.SetReadTimeout(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c, err := abecs.Dial(p.A, 19200, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, &rawPad{t: t, port: padPort, dec: abecs.NewDecoder(padPort)}
}

// next returns the next event the pad receives, or fails the test after d.
func (p *rawPad) next(d time.Duration) abecs.Event {
	p.t.Helper()
	ev, ok := p.tryNext(d)
	if !ok {
		p.t.Fatalf("pad: nothing received in %v", d)
	}
	return ev
}

// tryNext returns the next event within d, if any.
func (p *rawPad) tryNext(d time.Duration) (abecs.Event, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ev, err := p.dec.Next()
		if errors.Is(err, abecs.ErrTimeout) {
			continue
		}
		if err != nil {
			p.t.Errorf("pad: read: %v", err)
			return abecs.Event{}, false
		}
		return ev, true
	}
	return abecs.Event{}, false
}

// command waits for a good packet and returns its data.
func (p *rawPad) command() string {
	p.t.Helper()
	ev := p.next(2 * time.Second)
	if ev.Kind != abecs.KindPacket || ev.Err != nil {
		p.t.Fatalf("pad: got %v %v, want a good packet", ev.Kind, ev.Err)
	}
	return string(ev.Data)
}

func (p *rawPad) write(b ...byte) {
	p.t.Helper()
	if _, err := p.port.Write(b); err != nil {
		p.t.Fatalf("pad: write: %v", err)
	}
}

func (p *rawPad) send(data string) {
	p.t.Helper()
	p.write(frameOf(p.t, data)...)
}

// run runs f (the client side) in a goroutine and returns its error later.
func run(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func wait(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("client call did not return")
		return nil
	}
}

func TestOpenOK(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error { return c.Open(context.Background()) })
	if got := pad.command(); got != "OPN" {
		t.Fatalf("pad got %q, want OPN", got)
	}
	pad.write(abecs.ACK)
	pad.send("OPN000")
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestNoACKRetriesThenFails(t *testing.T) {
	opts := fastOpts()
	opts.ACKTimeout = 60 * time.Millisecond
	c, pad := newLink(t, opts)
	start := time.Now()
	done := run(func() error { return c.Display(context.Background(), "HELLO", "") })
	for i := range 3 {
		if got := pad.command(); got != "DSP032HELLO"+strings.Repeat(" ", 27) {
			t.Fatalf("try %d: pad got %q", i+1, got)
		}
	}
	err := wait(t, done)
	if !errors.Is(err, abecs.ErrNoACK) {
		t.Fatalf("err = %v, want ErrNoACK", err)
	}
	if !strings.Contains(err.Error(), "DSP") || !strings.Contains(err.Error(), "3 tries") {
		t.Errorf("error does not say what failed: %v", err)
	}
	if el := time.Since(start); el < 3*60*time.Millisecond {
		t.Errorf("gave up after %v, before 3 ACK timeouts", el)
	}
	if ev, ok := pad.tryNext(150 * time.Millisecond); ok {
		t.Fatalf("a fourth try arrived: %v", ev.Kind)
	}
}

func TestNAKThenACK(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error { return c.Open(context.Background()) })
	pad.command()
	pad.write(abecs.NAK)
	pad.command()
	pad.write(abecs.NAK)
	pad.command()
	pad.write(abecs.ACK)
	pad.send("OPN000")
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestThreeNAKsFail(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error { return c.Open(context.Background()) })
	for range 3 {
		pad.command()
		pad.write(abecs.NAK)
	}
	err := wait(t, done)
	if !errors.Is(err, abecs.ErrNoACK) || !strings.Contains(err.Error(), "3 NAK") {
		t.Fatalf("err = %v", err)
	}
}

func corrupt(t *testing.T, data string) []byte {
	f := frameOf(t, data)
	f[2] ^= 0x01 // flip a bit of the data; the CRC no longer matches
	return f
}

func TestBadResponseNAKedAndResent(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error { return c.Open(context.Background()) })
	pad.command()
	pad.write(abecs.ACK)
	pad.write(corrupt(t, "OPN000")...)
	if ev := pad.next(time.Second); ev.Kind != abecs.KindNAK {
		t.Fatalf("host answered %v to a bad response, want NAK", ev.Kind)
	}
	pad.write(append([]byte("noise"), frameOf(t, "OPN000")...)...)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestBadResponseThreeTimes(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error { return c.Open(context.Background()) })
	pad.command()
	pad.write(abecs.ACK)
	for i := range 3 {
		pad.write(corrupt(t, "OPN000")...)
		if i < 2 {
			if ev := pad.next(time.Second); ev.Kind != abecs.KindNAK {
				t.Fatalf("try %d: host answered %v, want NAK", i+1, ev.Kind)
			}
		}
	}
	if err := wait(t, done); !errors.Is(err, abecs.ErrBadResponse) || !errors.Is(err, abecs.ErrBadCRC) {
		t.Fatalf("err = %v, want ErrBadResponse wrapping ErrBadCRC", err)
	}
}

func TestStatusAndUnknownCommand(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error { return c.Open(context.Background()) })
	pad.command()
	pad.write(abecs.ACK)
	pad.send("ERR010")
	err := wait(t, done)
	var se *abecs.StatusError
	if !errors.As(err, &se) || se.Cmd != "OPN" || se.Code != 10 || !errors.Is(err, abecs.ErrInvalidCall) {
		t.Fatalf("err = %v", err)
	}
}

func TestNotificationSkippedAndStaleIgnored(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error {
		_, err := c.GetCard(context.Background(), abecs.CardRequest{AmountMinor: 100, Timeout: 2 * time.Second})
		return err
	})
	cmd := pad.command()
	if !strings.HasPrefix(cmd, "GCR0410000000000000100") {
		t.Fatalf("command %q", cmd)
	}
	pad.write(abecs.ACK)
	pad.send("GCR002032INSIRA OU PASSE O CARTAO        ")
	pad.send("DSP000") // a stale response to another command
	pad.send("GCR013")
	if err := wait(t, done); !errors.Is(err, abecs.ErrCancelled) {
		t.Fatalf("err = %v, want ErrCancelled", err)
	}
}

func TestGetCardTimeoutSendsCAN(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	start := time.Now()
	done := run(func() error {
		_, err := c.GetCard(context.Background(), abecs.CardRequest{Timeout: 200 * time.Millisecond})
		return err
	})
	pad.command()
	pad.write(abecs.ACK)
	if ev := pad.next(2 * time.Second); ev.Kind != abecs.KindCAN {
		t.Fatalf("pad got %v, want CAN", ev.Kind)
	}
	pad.write(abecs.EOT)
	err := wait(t, done)
	if !errors.Is(err, abecs.ErrPadTimeout) {
		t.Fatalf("err = %v, want ErrPadTimeout", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("returned after %v", el)
	}
}

func TestContextCancelSendsCAN(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	ctx, cancel := context.WithCancel(context.Background())
	done := run(func() error {
		_, _, err := c.GetPIN(ctx, abecs.PINRequest{PAN: "4012345678909", Timeout: 10 * time.Second})
		return err
	})
	pad.command()
	pad.write(abecs.ACK)
	time.Sleep(20 * time.Millisecond)
	cancel()
	if ev := pad.next(2 * time.Second); ev.Kind != abecs.KindCAN {
		t.Fatalf("pad got %v, want CAN", ev.Kind)
	}
	pad.write(abecs.EOT)
	if err := wait(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The link is usable afterwards; a late stray packet is ignored.
	pad.send("GPN013")
	done = run(func() error { return c.Open(context.Background()) })
	for {
		if got := pad.command(); got == "OPN" {
			break
		}
	}
	pad.write(abecs.ACK)
	pad.send("OPN000")
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestNoResponse(t *testing.T) {
	opts := fastOpts()
	opts.ResponseTimeout = 200 * time.Millisecond
	c, pad := newLink(t, opts)
	done := run(func() error { return c.Finish(context.Background(), "APPROVED\nTHANK YOU") })
	if got := pad.command(); got != "CLO032APPROVED        THANK YOU       " {
		t.Fatalf("got %q", got)
	}
	pad.write(abecs.ACK)
	if ev := pad.next(2 * time.Second); ev.Kind != abecs.KindCAN {
		t.Fatalf("pad got %v, want CAN", ev.Kind)
	}
	if err := wait(t, done); !errors.Is(err, abecs.ErrNoResponse) {
		t.Fatalf("err = %v, want ErrNoResponse", err)
	}
}

func TestCloseDuringCommandAndBusy(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	done := run(func() error {
		_, err := c.GetCard(context.Background(), abecs.CardRequest{Timeout: 10 * time.Second})
		return err
	})
	pad.command()
	pad.write(abecs.ACK)
	time.Sleep(20 * time.Millisecond)
	if err := c.Open(context.Background()); !errors.Is(err, abecs.ErrBusy) {
		t.Fatalf("concurrent command: %v, want ErrBusy", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); !errors.Is(err, abecs.ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if err := c.Open(context.Background()); !errors.Is(err, abecs.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestInputValidation(t *testing.T) {
	c, _ := newLink(t, fastOpts())
	ctx := context.Background()
	if err := c.Display(ctx, "THIS LINE IS TOO LONG", ""); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Display: %v", err)
	}
	if err := c.Finish(ctx, strings.Repeat("X", 33)); err == nil {
		t.Error("Finish: 33 characters accepted")
	}
	if _, _, err := c.GetPIN(ctx, abecs.PINRequest{PAN: "4012345678909", MinLen: 2}); err == nil {
		t.Error("GetPIN: MinLen 2 accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Open(cctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not sent") {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestDialMissingPort(t *testing.T) {
	_, err := abecs.Dial("/dev/does-not-exist-posd", 0, nil)
	if err == nil || !strings.Contains(err.Error(), "/dev/does-not-exist-posd") {
		t.Fatalf("err = %v, want one naming the path", err)
	}
}

func TestSerialTimeoutIsError(t *testing.T) {
	p, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	port, err := abecs.OpenSerial(p.A, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	port.SetReadTimeout(20 * time.Millisecond)
	n, err := port.Read(make([]byte, 4))
	if n != 0 || !errors.Is(err, abecs.ErrTimeout) {
		t.Fatalf("Read = %d, %v; want 0, ErrTimeout", n, err)
	}
}

// Commands run one at a time even when many goroutines share a link in turn.
func TestSequentialCommands(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			cmd := pad.command()
			pad.write(abecs.ACK)
			pad.send(cmd[:3] + "000")
		}
	}()
	for i := range 5 {
		if err := c.Display(context.Background(), "LINE", strings.Repeat("*", i)); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	wg.Wait()
}
