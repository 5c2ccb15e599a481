package padsim_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

func TestParseScript(t *testing.T) {
	s, err := padsim.ParseScript([]byte(`{"events":[
		{"swipe":{"track1":"` + track1 + `","track2":"` + track2 + `"}},
		{"pin":"1234"}, {"cancel":true}, {"delay":"200ms"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []padsim.Event{
		{Swipe: &padsim.Swipe{Track1: track1, Track2: track2}},
		{PIN: "1234"}, {Cancel: true}, {Delay: 200 * time.Millisecond},
	}
	if len(s.Events) != len(want) {
		t.Fatalf("%d events", len(s.Events))
	}
	for i := range want {
		g, w := s.Events[i], want[i]
		if (g.Swipe == nil) != (w.Swipe == nil) || (g.Swipe != nil && *g.Swipe != *w.Swipe) ||
			g.PIN != w.PIN || g.Cancel != w.Cancel || g.Delay != w.Delay {
			t.Errorf("event %d: %v, want %v", i, g, w)
		}
	}
	if got := fmt.Sprintf("%v|%+v|%#v", s.Events[0], s.Events[1], s.Events); strings.Contains(got, pan) || strings.Contains(got, "1234") {
		t.Errorf("formatting leaks: %s", got)
	}
}

func TestParseScriptErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"events":[{"pin":"1234"},{"pinn":"1234"}]}`, `events[1]: json: unknown field "pinn"`},
		{`{"events":[],"extra":1}`, `unknown field "extra"`},
		{`{"events":[{"pin":"12"}]}`, "events[0]: pin must be 4 to 12 digits"},
		{`{"events":[{"pin":"12a4"}]}`, "events[0]: pin must be 4 to 12 digits"},
		{`{"events":[{"pin":""}]}`, "events[0]: pin must be 4 to 12 digits"},
		{`{"events":[{"cancel":false}]}`, "cancel must be true"},
		{`{"events":[{"delay":"soon"}]}`, "delay must be a positive duration"},
		{`{"events":[{"delay":"-1s"}]}`, "delay must be a positive duration"},
		{`{"events":[{}]}`, "events[0]: empty event"},
		{`{"events":[{"pin":"1234","cancel":true}]}`, "more than one"},
		{`{"events":[{"swipe":{}}]}`, "swipe has no track"},
		{`{"events":[{"swipe":{"track2":";` + track2 + `?"}}]}`, "without its ; and ? sentinels"},
		{`{"events":[{"swipe":{"track2":"` + track2 + `0000000"}}]}`, "track2 is 44 characters, at most 37"},
		{`{"events":[{"swipe":{"track3":"1"}}]}`, `unknown field "track3"`},
		{`{"events":[]} {}`, "data after the script object"},
		{`{}`, `no "events" list`},
		{`[`, "padsim: script:"},
	}
	for _, c := range cases {
		_, err := padsim.ParseScript([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one containing %q", c.in, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "1234") || strings.Contains(err.Error(), pan) {
			t.Errorf("%s: error leaks data: %v", c.in, err)
		}
	}
}

func TestScriptJSONRoundTrip(t *testing.T) {
	in := &padsim.Script{Events: []padsim.Event{
		{Swipe: &padsim.Swipe{Track2: track2}}, {PIN: "1234"}, {Cancel: true}, {Delay: 1500 * time.Millisecond},
	}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"events":[{"swipe":{"track2":"` + track2 + `"}},{"pin":"1234"},{"cancel":true},{"delay":"1.5s"}]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var out padsim.Script
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Events) != 4 || *out.Events[0].Swipe != *in.Events[0].Swipe || out.Events[1].PIN != "1234" ||
		!out.Events[2].Cancel || out.Events[3].Delay != 1500*time.Millisecond {
		t.Fatalf("round trip: %v", out.Events)
	}
	if err := json.Unmarshal([]byte(`{"events":[{"pin":"12"}]}`), &out); err == nil {
		t.Fatal("json.Unmarshal accepted a bad event")
	}
}

func TestLoadScript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	if _, err := padsim.LoadScript(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte(`{"events":[{"pin":"1"}]}`), 0o600)
	if _, err := padsim.LoadScript(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "events[0]") {
		t.Errorf("bad file: %v", err)
	}
	os.WriteFile(path, []byte(saleScript), 0o600)
	s, err := padsim.LoadScript(path)
	if err != nil || len(s.Events) != 2 {
		t.Fatalf("%v", err)
	}
}

func FuzzParseScript(f *testing.F) {
	f.Add([]byte(saleScript))
	f.Add([]byte(`{"events":[{"cancel":true},{"delay":"1ms"}]}`))
	f.Add([]byte(`{"events":[{"swipe":{"track2":"1=2"}}]}`))
	f.Add([]byte(`{"events":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := padsim.ParseScript(in)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed script does not validate: %v", err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("parsed script does not encode: %v", err)
		}
		s2, err := padsim.ParseScript(b)
		if err != nil || len(s2.Events) != len(s.Events) {
			t.Fatalf("re-encoded script does not parse: %v", err)
		}
		for i := range s.Events {
			if s.Events[i].String() != s2.Events[i].String() || s.Events[i].PIN != s2.Events[i].PIN || s.Events[i].Delay != s2.Events[i].Delay {
				t.Fatalf("event %d changed in a round trip", i)
			}
		}
	})
}

// A simulated pad and the host client, linked through a pair of
// pseudo-terminals: the host reads a card and gets a PIN block, which it
// checks with the base derivation key.
func Example() {
	bdk, _ := hex.DecodeString("0123456789ABCDEFFEDCBA9876543210") // public test key
	ksn, _ := dukpt.ParseKSN("FFFF9876543210E00000")
	script, err := padsim.ParseScript([]byte(`{"events":[
		{"swipe":{"track2":"4012345678909=25121011234000001230"}},
		{"pin":"1234"}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	pad, err := padsim.New(script, &padsim.Options{BDK: bdk, KSN: ksn, Logf: func(f string, a ...any) {
		fmt.Printf("pad: "+f+"\n", a...)
	}})
	if err != nil {
		fmt.Println(err)
		return
	}

	link, _ := ptypair.Open()
	defer link.Close()
	padPort, _ := abecs.OpenSerial(link.B, 0)
	defer padPort.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pad.Serve(ctx, padPort)

	host, err := abecs.Dial(link.A, 0, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer host.Close()
	c, err := host.GetCard(ctx, abecs.CardRequest{AmountMinor: 1234})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("host:", c)
	block, sent, err := host.GetPIN(ctx, abecs.PINRequest{PAN: c.PAN(), Line1: "PIN:"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("host: PIN block %X under KSN %v\n", block, dukpt.KSN(sent))
	// Output:
	// pad: GCR amount 1234: swipe 401234***8909 -> 000
	// host: card 401234***8909 (magstripe)
	// pad: GPN key 00 PAN 401234***8909 prompt "PIN:" "": pin -> KSN FFFF9876543210E00001 -> 000
	// host: PIN block 1B9C1845EB993A7A under KSN FFFF9876543210E00001
}

func TestScriptJSONRoundTripChipAndFaults(t *testing.T) {
	in := `{"events":[{"insert":{"pan":"` + pan + `","expiry":"251231","online_pin":true,"decision":"online","finish":"decline"}},` +
		`{"chip_fault":"fallback"},{"key":"f2"},{"remove":true},{"timeout":true},` +
		`{"fault":{"kind":"nak","count":3}},{"fault":{"kind":"slow_ack","delay":"2.5s"}},{"fault":{"kind":"noise","hex":"00ff"}}]}`
	s, err := padsim.ParseScript([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if s.Events[0].Insert.Finish != padsim.FinishDecline || s.Events[6].Fault.Delay != 2500*time.Millisecond || s.Events[5].Fault.Count != 3 {
		t.Fatalf("parsed %v", s.Events)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != in {
		t.Fatalf("got  %s\nwant %s", b, in)
	}
	got := fmt.Sprint(s.Events)
	if strings.Contains(got, pan) {
		t.Fatalf("events show the PAN: %s", got)
	}
	if want := "[insert chip 476173******0010 chip fault fallback key f2 remove timeout fault nak x3 fault slow_ack 2.5s fault noise 2 bytes]"; got != want {
		t.Fatalf("String\n%s\nwant\n%s", got, want)
	}
}
