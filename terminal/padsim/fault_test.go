package padsim_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// shortOpts: timeouts short enough that a fault test takes well under a
// second, long enough for a loaded machine to answer in time.
func shortOpts() *abecs.Options {
	return &abecs.Options{ACKTimeout: 150 * time.Millisecond, ResponseTimeout: 600 * time.Millisecond, AbortTimeout: 200 * time.Millisecond}
}

func fault(f string) string { return `{"fault":` + f + `}` }

func TestLinkFaults(t *testing.T) {
	open := func(r *rig) error { return r.client.Open(context.Background()) }
	cases := []struct {
		name    string
		events  string
		want    error // nil: the command succeeds in the end
		log     string
		maxTime time.Duration
	}{
		{"NAK twice then ACK", fault(`{"kind":"nak","count":2}`), nil, "OPN: fault nak -> NAK", time.Second},
		{"NAK storm", fault(`{"kind":"nak","count":3}`), abecs.ErrNoACK, "OPN: fault nak -> NAK", time.Second},
		{"missing ACK once", fault(`{"kind":"no_ack"}`), nil, "OPN: fault no_ack: packet ignored", time.Second},
		{"missing ACK always", fault(`{"kind":"no_ack","count":3}`), abecs.ErrNoACK, "packet ignored", 2 * time.Second},
		{"ACK late, within the retries", fault(`{"kind":"slow_ack","delay":"200ms"}`), nil, "fault slow_ack: ACK in 200ms", time.Second},
		{"bad CRC once", fault(`{"kind":"bad_crc"}`), nil, "NAK -> response sent again (2 of 3)", time.Second},
		{"bad CRC every time", fault(`{"kind":"bad_crc","count":3}`), abecs.ErrBadResponse, "fault bad_crc", time.Second},
		{"noise before the ACK", fault(`{"kind":"noise","hex":"16FF0013171715"}`), nil, "fault noise: 7 bytes sent", time.Second},
		{"answer later than the response timeout", `{"delay":"3s"}`, abecs.ErrNoResponse, "CAN -> EOT (command abandoned)", 1500 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, `{"events":[`+c.events+`]}`, rigOpts{clientOpts: shortOpts()})
			start := time.Now()
			err := open(r)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
			if el := time.Since(start); el > c.maxTime {
				t.Errorf("took %v", el)
			}
			if !strings.Contains(r.log.String(), c.log) {
				t.Errorf("log lacks %q:\n%s", c.log, r.log)
			}
			// Whatever happened, the link serves the next command.
			time.Sleep(300 * time.Millisecond) // let a late ACK or response arrive
			if err := r.client.Display(context.Background(), "NEXT", ""); err != nil {
				t.Fatalf("next command: %v", err)
			}
		})
	}
}

// A slow ACK beyond all the tries: the host gives up (not sent), and the
// pad's late ACK and answer do not confuse the next command.
func TestSlowACKBeyondTimeouts(t *testing.T) {
	// 3 tries of 150 ms end at about 450 ms; the ACK comes at 1.2 s, far enough beyond
	// for a loaded machine's late timers (at 600 ms it was once taken in time).
	r := newRig(t, `{"events":[`+fault(`{"kind":"slow_ack","delay":"1200ms"}`)+`]}`, rigOpts{clientOpts: shortOpts()})
	if err := r.client.Open(context.Background()); !errors.Is(err, abecs.ErrNoACK) {
		t.Fatalf("Open: %v, want ErrNoACK", err)
	}
	time.Sleep(1000 * time.Millisecond)
	if err := r.client.Display(context.Background(), "AGAIN", ""); err != nil {
		t.Fatalf("Display: %v", err)
	}
}

// Unplugged under Serve: the pad ignores the line; the host's command fails
// as not acknowledged, and once the pad is back the link works.
func TestUnplugUnderServe(t *testing.T) {
	r := newRig(t, `{"events":[`+fault(`{"kind":"unplug","delay":"500ms"}`)+`]}`, rigOpts{clientOpts: shortOpts()})
	if err := r.client.Open(context.Background()); !errors.Is(err, abecs.ErrNoACK) {
		t.Fatalf("Open while unplugged: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := r.client.Open(context.Background()); err != nil {
		t.Fatalf("Open after: %v", err)
	}
	if !strings.Contains(r.log.String(), "OPN: fault unplug: line ignored for 500ms") {
		t.Errorf("log:\n%s", r.log)
	}
}

// Unplugged under ServeDevice: the pad closes its port and opens it again.
// With a pty pair the other end stays, so the host's link survives.
func TestUnplugUnderServeDevice(t *testing.T) {
	s, _ := padsim.ParseScript([]byte(`{"events":[` + fault(`{"kind":"unplug","delay":"600ms"}`) + `,{"swipe":{"track2":"` + track2 + `"}}]}`))
	lb := &logBuf{}
	pad, err := padsim.New(s, &padsim.Options{BDK: bdk(t), KSN: ksn0(t), Logf: lb.logf})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	opens := 0
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- pad.ServeDevice(ctx, func() (io.ReadWriteCloser, error) {
			opens++
			return abecs.OpenSerial(pair.B, 0)
		})
	}()
	c, err := abecs.Dial(pair.A, 0, shortOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Open(context.Background()); !errors.Is(err, abecs.ErrNoACK) {
		t.Fatalf("Open while unplugged: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	cd, err := c.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second})
	if err != nil || cd.Track2() != track2 {
		t.Fatalf("GetCard after replug: %v", err)
	}
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Fatalf("ServeDevice: %v", err)
	}
	if opens != 2 || !strings.Contains(lb.String(), "plugged in again: port reopened") {
		t.Fatalf("%d opens; log:\n%s", opens, lb)
	}
	noSecrets(t, lb.String())
}

func TestFaultScriptErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{fault(`{"kind":"nak","delay":"1s"}`), "takes only a count"},
		{fault(`{"kind":"slow_ack"}`), "needs a positive delay"},
		{fault(`{"kind":"unplug","delay":"-1s"}`), "positive duration"},
		{fault(`{"kind":"noise","hex":"zz"}`), "hex of 1 to 64 bytes"},
		{fault(`{"kind":"melt"}`), "fault kind must be"},
		{fault(`{"kind":"nak","extra":1}`), `unknown field "extra"`},
		{`{"insert":{"pan":"12"}}`, "insert pan must be"},
		{`{"insert":{"pan":"` + pan + `","decision":"maybe"}}`, "insert decision"},
		{`{"insert":{"pan":"` + pan + `","track2":"1=2=3"}}`, "insert track2"},
		{`{"chip_fault":"smoke"}`, "chip_fault must be"},
		{`{"key":"any"}`, "key must be one of"},
		{`{"remove":false}`, "remove must be true"},
		{`{"timeout":true,"remove":true}`, "more than one"},
	}
	for _, c := range cases {
		_, err := padsim.ParseScript([]byte(`{"events":[` + c.in + `]}`))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), pan) {
			t.Errorf("%s: error shows the PAN", c.in)
		}
	}
}

// A silent pad: the port stays open, nothing comes back (the host sees no
// ACK), the script is not consumed, and the pad answers again once told.
// A command accepted before the silence gets no response.
func TestSetSilent(t *testing.T) {
	r := newRig(t, `{"events":[{"delay":"300ms"},{"swipe":{"track2":"`+track2+`"}}]}`, rigOpts{clientOpts: shortOpts()})
	errc := make(chan error, 1)
	go func() { errc <- r.client.Display(context.Background(), "SLOW", "") }()
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(r.log.String(), "DSP: delay 300ms") {
		if time.Now().After(deadline) {
			t.Fatalf("the pad did not take DSP; log:\n%s", r.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.pad.SetSilent(true)
	if err := <-errc; !errors.Is(err, abecs.ErrNoResponse) {
		t.Fatalf("DSP accepted before the silence: %v, want ErrNoResponse", err)
	}
	if err := r.client.Open(context.Background()); !errors.Is(err, abecs.ErrNoACK) {
		t.Fatalf("Open while silent: %v, want ErrNoACK", err)
	}
	if n := r.pad.Remaining(); n != 1 {
		t.Fatalf("%d script events left while silent, want 1", n)
	}
	r.pad.SetSilent(false)
	cd, err := r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second})
	if err != nil || cd.Track2() != track2 {
		t.Fatalf("GetCard after the silence: %v", err)
	}
	for _, want := range []string{"silent: the pad stops answering", "DSP: silent: response not sent", "silent no more"} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.log)
		}
	}
}
