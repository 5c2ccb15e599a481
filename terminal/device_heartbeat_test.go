package terminal_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/padsim"
)

// wireLog records the commands the host writes to the pad, with when: what
// the heartbeat sent, and whether it sent anything during a command.
type wireLog struct {
	mu     sync.Mutex
	frames []wireFrame
}

type wireFrame struct {
	id string // the command, e.g. "GIN"
	at time.Time
}

// open returns an Open function for PadDeviceOptions that records the
// frames written to the pty at path.
func (w *wireLog) open(path string) func(context.Context) (io.ReadWriteCloser, error) {
	return func(context.Context) (io.ReadWriteCloser, error) {
		p, err := abecs.OpenSerial(path, 0)
		if err != nil {
			return nil, err
		}
		return recordingPort{p, w}, nil
	}
}

// sent returns the frames recorded so far.
func (w *wireLog) sent() []wireFrame {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wireFrame(nil), w.frames...)
}

// count returns how many id frames were written after t.
func (w *wireLog) count(id string, after time.Time) int {
	n := 0
	for _, f := range w.sent() {
		if f.id == id && f.at.After(after) {
			n++
		}
	}
	return n
}

// recordingPort notes each command frame (SYN and the command's 3 letters:
// abecs.Client writes a frame in one Write) before writing it.
type recordingPort struct {
	io.ReadWriteCloser
	w *wireLog
}

func (p recordingPort) Write(b []byte) (int, error) {
	if len(b) >= 4 && b[0] == abecs.SYN {
		p.w.mu.Lock()
		p.w.frames = append(p.w.frames, wireFrame{id: string(b[1:4]), at: time.Now()})
		p.w.mu.Unlock()
	}
	return p.ReadWriteCloser.Write(b)
}

// devOpen opens the pty at path as posd does.
func devOpen(path string) func(context.Context) (io.ReadWriteCloser, error) {
	return func(context.Context) (io.ReadWriteCloser, error) { return abecs.OpenSerial(path, 0) }
}

// heartbeatOpts: devDeviceOpts with a heartbeat every every.
func heartbeatOpts(every time.Duration) terminal.DeviceOptions {
	o := devDeviceOpts()
	o.Heartbeat = every
	return o
}

// eventually polls cond until it holds, for at most 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A pad that loses power on an RS-232 line: the port stays open and nothing
// comes back. The heartbeat notices within an interval and the ACK tries,
// says so in LastError, and the device reconnects once the pad answers again.
func TestPadHeartbeatNoticesSilentPad(t *testing.T) {
	const every = 30 * time.Millisecond
	sim := startDevPad(t, `{"events":[]}`, padsim.Options{})
	link := devLinkOpts()
	link.ACKTimeout = 200 * time.Millisecond
	dev := devDeviceWith(t, devOpen(sim.pair.A), link, heartbeatOpts(every))
	pp := terminal.NewPINPadDevice(dev)

	connectedAt := dev.Status().LastSeen
	eventually(t, "a heartbeat answered", func() bool { return dev.Status().LastSeen.After(connectedAt) })

	silentAt := time.Now()
	sim.pad.SetSilent(true)
	var st terminal.DeviceStatus
	eventually(t, "the heartbeat to notice the silent pad", func() bool {
		st = dev.Status()
		return st.State != terminal.DeviceConnected
	})
	took := time.Since(silentAt)
	if st.State != terminal.DeviceReconnecting || !strings.Contains(st.LastError, "heartbeat got no answer") ||
		!strings.Contains(st.LastError, "GIN: pad did not acknowledge") {
		t.Fatalf("status after the pad went silent: %+v", st)
	}
	// At most one interval of idle, then the tries of one GIN.
	if limit := every + 3*link.ACKTimeout + 500*time.Millisecond; took > limit {
		t.Errorf("noticed after %v, want at most %v", took, limit)
	}
	if st.LastSeen.After(silentAt) {
		t.Errorf("LastSeen %v is after the pad went silent at %v", st.LastSeen, silentAt)
	}
	if err := pp.Show(ctxFor(t, time.Second), "HELLO", ""); !errors.Is(err, terminal.ErrDeviceUnavailable) {
		t.Fatalf("Show while the pad is silent: %v", err)
	}

	backAt := time.Now()
	sim.pad.SetSilent(false)
	eventually(t, "the pad to be connected again", func() bool {
		st = dev.Status()
		return st.State == terminal.DeviceConnected
	})
	if st.Reconnects != 1 || st.LastError != "" || st.LastSeen.Before(backAt) {
		t.Fatalf("status after the pad came back: %+v", st)
	}
	if err := pp.Show(ctxFor(t, time.Second), "HELLO", "AGAIN"); err != nil {
		t.Fatalf("Show after the pad came back: %v", err)
	}
}

// A pad that answers stays connected across many intervals; LastSeen moves
// at each heartbeat, and heartbeats are at least an interval apart.
func TestPadHeartbeatKeepsAnsweringPadConnected(t *testing.T) {
	const every = 20 * time.Millisecond
	sim := startDevPad(t, `{"events":[]}`, padsim.Options{})
	wire := &wireLog{}
	dev := devDeviceWith(t, wire.open(sim.pair.A), devLinkOpts(), heartbeatOpts(every))
	start := time.Now()
	seen := []time.Time{dev.Status().LastSeen}
	eventually(t, "10 heartbeats", func() bool {
		st := dev.Status()
		if st.State != terminal.DeviceConnected || st.Reconnects != 0 {
			t.Fatalf("an answering pad: %+v", st)
		}
		if st.LastSeen.After(seen[len(seen)-1]) {
			seen = append(seen, st.LastSeen)
		}
		return len(seen) > 10
	})
	for i := 1; i < len(seen); i++ {
		if gap := seen[i].Sub(seen[i-1]); gap < every {
			t.Errorf("heartbeats %v apart, interval %v", gap, every)
		}
	}
	if n := wire.count(abecs.CmdInfo, start); n < 10 {
		t.Errorf("%d GIN sent for 10 LastSeen updates", n)
	}
	for _, f := range wire.sent()[2:] { // after the connection's OPN and GIN
		if f.id != abecs.CmdInfo {
			t.Errorf("the heartbeat sent %s", f.id)
		}
	}
	b, _ := json.Marshal(dev.Status())
	if !strings.Contains(string(b), `"last_seen":"`) {
		t.Errorf("status JSON without last_seen: %s", b)
	}
}

// A long command (GPN waiting for the cardholder over several intervals)
// runs alone: the heartbeat skips its turns, sends nothing meanwhile, and
// resumes afterwards.
func TestPadHeartbeatNeverOverlapsACommand(t *testing.T) {
	const every = 100 * time.Millisecond
	// devPlug makes the GPN, the first command after the connection, take
	// the delay. The first heartbeat cannot come before an interval of idle
	// link, and the GPN starts at once.
	sim := startDevPad(t, `{"events":[`+devPlug+`{"delay":"700ms"},{"pin":"1234"}]}`, padsim.Options{})
	wire := &wireLog{}
	dev := devDeviceWith(t, wire.open(sim.pair.A), devLinkOpts(), heartbeatOpts(every))
	pp := terminal.NewPINPadDevice(dev)
	pan, err := card.ParsePAN(devPAN)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = pp.EncryptPIN(ctxFor(t, 5*time.Second), pan, 1, "SALE 12.34")
	ended := time.Now()
	log := sim.log.String()
	if err != nil {
		t.Fatalf("GPN: %v; pad log:\n%s", err, log)
	}
	i := strings.Index(log, "GPN: delay 700ms")
	if i < 0 {
		t.Fatalf("the GPN did not take the delay; pad log:\n%s", log)
	}
	// The pad heard nothing between taking the GPN and answering it.
	if during := strings.SplitN(log[i:], "\n", 3); len(during) < 2 || !strings.HasPrefix(during[1], "GPN key 01") || !strings.Contains(during[1], "pin -> KSN") {
		t.Fatalf("the pad heard something during the GPN; pad log:\n%s", log)
	}
	var gpnAt time.Time
	for _, f := range wire.sent() {
		switch {
		case f.id == abecs.CmdGetPIN:
			gpnAt = f.at
		case !gpnAt.IsZero() && f.at.Before(ended):
			t.Errorf("%s sent %v into the GPN", f.id, f.at.Sub(gpnAt))
		}
	}
	if gpnAt.IsZero() || ended.Sub(gpnAt) < 7*every {
		t.Fatalf("the GPN did not span the intervals: sent %v, answered %v", gpnAt, ended)
	}
	eventually(t, "a heartbeat after the GPN", func() bool { return wire.count(abecs.CmdInfo, ended) > 0 })
	// The link is idle only an interval after the command's end.
	for _, f := range wire.sent() {
		if f.at.After(ended) {
			if f.at.Sub(ended) < every/2 {
				t.Errorf("first heartbeat %v after the GPN ended, interval %v", f.at.Sub(ended), every)
			}
			break
		}
	}
	if st := dev.Status(); st.State != terminal.DeviceConnected || st.Reconnects != 0 {
		t.Fatalf("status %+v", st)
	}
}

// A sale that starts while the heartbeat's GIN is on the line waits for
// it, for no longer than the pad takes to answer, and is not refused as
// busy.
func TestPadHeartbeatDoesNotFailASaleStartedDuringIt(t *testing.T) {
	const every = 30 * time.Millisecond
	// devPlug makes the first command after the connection, which is the
	// first heartbeat while the test waits, take the delay.
	sim := startDevPad(t, `{"events":[`+devPlug+`{"delay":"300ms"},{"swipe":{"track2":"`+devChipT+`"}}]}`, padsim.Options{})
	dev := devDeviceWith(t, devOpen(sim.pair.A), devLinkOpts(), heartbeatOpts(every))
	pp := terminal.NewPINPadDevice(dev)
	eventually(t, "the pad to hold the heartbeat's GIN", func() bool { return strings.Contains(sim.log.String(), "GIN: delay 300ms") })
	start := time.Now()
	pc, err := pp.ReadCardAny(ctxFor(t, 3*time.Second), devAmount(100))
	if err != nil || pc.MaskedPAN() != "476173******0010" {
		t.Fatalf("sale started during a heartbeat: %v %v; pad log:\n%s", pc, err, sim.log)
	}
	if took := time.Since(start); took > 300*time.Millisecond+time.Second {
		t.Errorf("the sale took %v behind a 300ms heartbeat", took)
	}
	log := sim.log.String()
	log = log[strings.Index(log, "GIN: delay 300ms"):]
	if gin, gcr := strings.Index(log, "GIN 00 -> 000"), strings.Index(log, "GCR"); gin < 0 || gcr < gin {
		t.Fatalf("the GCR did not wait for the heartbeat's answer; pad log:\n%s", log)
	}
	if st := dev.Status(); st.State != terminal.DeviceConnected || st.Reconnects != 0 {
		t.Fatalf("status %+v", st)
	}
}

// A negative Heartbeat turns it off: nothing but the connection's OPN and GIN
// goes to an idle pad. (An absence can only be watched for a while.)
func TestPadHeartbeatOff(t *testing.T) {
	sim := startDevPad(t, `{"events":[]}`, padsim.Options{})
	wire := &wireLog{}
	dev := devDeviceWith(t, wire.open(sim.pair.A), devLinkOpts(), heartbeatOpts(-1))
	connected := dev.Status().LastSeen
	time.Sleep(200 * time.Millisecond)
	if sent := wire.sent(); len(sent) != 2 {
		t.Fatalf("%d commands sent to an idle pad without heartbeat: %v", len(sent), sent)
	}
	if st := dev.Status(); !st.LastSeen.Equal(connected) || st.State != terminal.DeviceConnected {
		t.Fatalf("status %+v", st)
	}
}
