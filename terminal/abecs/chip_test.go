package abecs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/ptypair"
)

func TestInfoLayout(t *testing.T) {
	info := abecs.Info{Manufacturer: "ACME", Model: "P200", Contactless: true, Firmware: "4.2.1", SpecVersion: "1.08", AppVersion: "2.0", Serial: "SN123"}
	b, err := abecs.AppendInfo(nil, info)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%-20s%-19s%s%-20s%-4s%-16s%-20s", "ACME", "P200", "C", "4.2.1", "1.08", "2.0", "SN123")
	if string(b) != want || len(b) != 100 {
		t.Fatalf("GIN block\n%q\nwant\n%q", b, want)
	}
	back, err := abecs.ParseInfo(b)
	if err != nil || back != info {
		t.Fatalf("round trip %+v %v", back, err)
	}
	if idx, err := abecs.ParseInfoRequest(abecs.AppendInfoRequest(nil)); err != nil || idx != 0 {
		t.Fatalf("request %d %v", idx, err)
	}
	if _, err := abecs.AppendInfo(nil, abecs.Info{Serial: strings.Repeat("9", 21)}); err == nil {
		t.Error("21-character serial accepted")
	}
	if _, err := abecs.ParseInfo(b[:99]); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("short block: %v", err)
	}
}

func TestWaitLayout(t *testing.T) {
	for _, c := range []struct {
		req  abecs.WaitRequest
		want string
	}{
		{abecs.WaitRequest{Keys: true}, "1000"},
		{abecs.WaitRequest{Swipe: true, Insert: true}, "0110"},
		{abecs.WaitRequest{Remove: true}, "0020"},
		{abecs.WaitRequest{Contactless: true}, "0001"},
		{abecs.WaitRequest{Keys: true, Swipe: true, Insert: true, Contactless: true}, "1111"},
	} {
		b, err := abecs.AppendWaitRequest(nil, c.req)
		if err != nil || string(b) != c.want {
			t.Fatalf("%+v: %q %v", c.req, b, err)
		}
		back, err := abecs.ParseWaitRequest(b)
		if err != nil || back != c.req {
			t.Fatalf("round trip %+v %v", back, err)
		}
	}
	for _, bad := range []abecs.WaitRequest{{}, {Insert: true, Remove: true}} {
		if _, err := abecs.AppendWaitRequest(nil, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	// CKE_CTLS is optional: 3 flags mean contactless off.
	if r, err := abecs.ParseWaitRequest([]byte("110")); err != nil || r != (abecs.WaitRequest{Keys: true, Swipe: true}) {
		t.Errorf("3 flags: %+v %v", r, err)
	}
	for _, bad := range []string{"0000", "0030", "2000", "000", "10000", "0002", "10", "100x"} {
		if _, err := abecs.ParseWaitRequest([]byte(bad)); !errors.Is(err, abecs.ErrFormat) {
			t.Errorf("%q: %v", bad, err)
		}
	}

	ev := abecs.PadEvent{Kind: abecs.EventSwipe, Card: abecs.NewMagstripeCard(testTrack1, testTrack2)}
	b, err := abecs.AppendPadEvent(nil, ev)
	if err != nil || len(b) != 229 || b[0] != '1' || string(b[1:3]) != "00" || string(b[81:83]) != "37" {
		t.Fatalf("swipe event %q %v", b, err)
	}
	back, err := abecs.ParsePadEvent(b)
	if err != nil || back.Kind != abecs.EventSwipe || back.Card.Track2() != testTrack2 || back.Card.Track1() != testTrack1 {
		t.Fatalf("swipe round trip %v %v", back, err)
	}
	if s := fmt.Sprintf("%v %#v", back, back); strings.Contains(s, testPAN) {
		t.Errorf("event shows the PAN: %s", s)
	}
	b, _ = abecs.AppendPadEvent(nil, abecs.PadEvent{Kind: abecs.EventKey, Key: abecs.KeyCancel})
	if back, err := abecs.ParsePadEvent(b); err != nil || back.Kind != abecs.EventKey || back.Key != abecs.KeyCancel || back.String() != "key CANCEL" {
		t.Fatalf("key round trip %v %v", back, err)
	}
	bad := append([]byte(nil), b...)
	bad[0] = '7'
	if _, err := abecs.ParsePadEvent(bad); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("event 7: %v", err)
	}
}

var gocTags = []string{"9F26", "9F27", "5A", "57", "9F02"}

func TestGoChipLayout(t *testing.T) {
	req := abecs.GoChipRequest{AmountMinor: 1234, KeyIndex: 1, RiskManagement: true, FloorLimitMinor: 0x1388,
		TargetPercent: 20, ThresholdMinor: 0x100, MaxTargetPercent: 50, Tags: gocTags}
	blocks, err := abecs.AppendGoChip(req)
	if err != nil {
		t.Fatal(err)
	}
	want := "000000001234" + "000000000000" + "0" + "1" + "3" + "01" + strings.Repeat("0", 32) + "1" + "00001388" + "20" + "00000100" + "50" + "000"
	if string(blocks[0]) != want || string(blocks[1]) != "9F269F275A579F02" {
		t.Fatalf("GOC blocks\n%q\n%q\nwant\n%q", blocks[0], blocks[1], want)
	}
	back, err := abecs.ParseGoChip(blocks)
	if err != nil || !reflect.DeepEqual(back, req) {
		t.Fatalf("round trip\n%+v\n%+v %v", back, req, err)
	}
	for _, bad := range []abecs.GoChipRequest{
		{AmountMinor: -1, Tags: gocTags}, {AmountMinor: 1e12, Tags: gocTags}, {KeyIndex: 100, Tags: gocTags},
		{FloorLimitMinor: 1 << 32, Tags: gocTags}, {TargetPercent: 100, Tags: gocTags}, {},
		{Tags: []string{"9F"}}, {Tags: []string{"9F2601"}}, {Tags: []string{"ZZ"}},
	} {
		if _, err := abecs.AppendGoChip(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}

	res := abecs.GoChipResult{Decision: abecs.DecisionOnline, OnlinePIN: true,
		PINBlock: [8]byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A},
		KSN:      [10]byte{0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x01},
		EMVData:  []byte{0x9F, 0x27, 0x01, 0x80}}
	b, err := abecs.AppendGoChipResult(nil, res)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "200001"+"1B9C1845EB993A7A"+"FFFF9876543210E00001"+"008"+"9F270180"+"000" {
		t.Fatalf("GOC response %q", b)
	}
	got, err := abecs.ParseGoChipResult(b)
	if err != nil || !reflect.DeepEqual(got, res) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if s := fmt.Sprintf("%v %+v %#v", got, got, got); strings.Contains(s, "1B9C") || strings.Contains(s, "9F27") {
		t.Errorf("result shows PIN block or data: %s", s)
	}
	for _, in := range []string{
		"300001" + strings.Repeat("0", 36) + "000000",                   // decision 3
		"200001" + strings.Repeat("0", 36) + "0039F2" + "000",           // odd hex length
		"200001" + strings.Repeat("0", 36) + "004ZZZZ" + "000",          // not hex
		"200001" + strings.Repeat("0", 36) + "000" + "000" + "x",        // trailing byte
		"200001" + strings.Repeat("0", 36) + "010" + "9F270180" + "000", // length past data
		"2",
	} {
		if _, err := abecs.ParseGoChipResult([]byte(in)); !errors.Is(err, abecs.ErrFormat) {
			t.Errorf("%q: %v, want ErrFormat", in, err)
		}
	}
}

func TestFinishChipLayout(t *testing.T) {
	req := abecs.FinishChipRequest{HostResponded: true, ResponseCode: "00", IssuerData: []byte{0x91, 0x02, 0xAB, 0xCD}, Tags: []string{"9F27", "95"}}
	blocks, err := abecs.AppendFinishChip(req)
	if err != nil {
		t.Fatal(err)
	}
	if string(blocks[0]) != "0"+"00"+"008"+"9102ABCD"+"000" || string(blocks[1]) != "9F2795" {
		t.Fatalf("FNC blocks %q %q", blocks[0], blocks[1])
	}
	back, err := abecs.ParseFinishChip(blocks)
	if err != nil || !reflect.DeepEqual(back, req) {
		t.Fatalf("round trip %+v %v", back, err)
	}
	noHost := abecs.FinishChipRequest{Tags: []string{"9F27"}}
	blocks, _ = abecs.AppendFinishChip(noHost)
	if string(blocks[0]) != "1  000000" {
		t.Fatalf("no host: %q", blocks[0])
	}
	if _, err := abecs.AppendFinishChip(abecs.FinishChipRequest{HostResponded: true, ResponseCode: "0", Tags: []string{"95"}}); err == nil {
		t.Error("1-character response code accepted")
	}
	res := abecs.FinishChipResult{Approved: false, EMVData: []byte{0x9F, 0x27, 0x01, 0x00}}
	b, _ := abecs.AppendFinishChipResult(nil, res)
	if string(b) != "1"+"008"+"9F270100"+"000" {
		t.Fatalf("FNC response %q", b)
	}
	if got, err := abecs.ParseFinishChipResult(b); err != nil || !reflect.DeepEqual(got, res) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if tags, err := abecs.ParseTagList([]byte("9f275A9F1F3F")); err == nil {
		t.Fatalf("tag list with a 2-byte tag whose end is missing: %v", tags)
	}
	if tags, err := abecs.ParseTagList([]byte("9f275a9F5B")); err != nil || strings.Join(tags, ",") != "9F27,5A,9F5B" {
		t.Fatalf("tag list: %v %v", tags, err)
	}
}

func TestChipDataCardRoundTrip(t *testing.T) {
	f := abecs.ChipFields{PAN: testPAN, Track2: testTrack2, Expiry: "251231", ServiceCode: "201",
		PANSequence: "01", Label: "VISA CREDITO", Name: "TEST/CARD", IssuerCountry: "076"}
	c := abecs.NewChipCard(f)
	b, err := abecs.AppendCardData(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:3]) != "030" || len(b) != 342 {
		t.Fatalf("chip GCR block starts %q, %d bytes", b[:3], len(b))
	}
	back, err := abecs.ParseCardData(b)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip %v %v", back, err)
	}
	if !back.Chip() || back.Magstripe() || back.Fallback() || back.PANSequence() != "01" || back.Label() != "VISA CREDITO" ||
		back.ExpiryDate() != "251231" || back.IssuerCountry() != "076" {
		t.Fatalf("accessors: %v %q %q %q", back, back.PANSequence(), back.Label(), back.ExpiryDate())
	}
	fb := abecs.NewFallbackCard(testTrack1, testTrack2)
	b, _ = abecs.AppendCardData(nil, fb)
	if b[2] != '1' {
		t.Fatalf("fallback chip status %q", b[2])
	}
	if back, err := abecs.ParseCardData(b); err != nil || !back.Fallback() || back.String() != "card 476173******0010 (magstripe fallback)" {
		t.Fatalf("fallback round trip %v %v", back, err)
	}
	if s := fmt.Sprintf("%v %#v %v", c, c, f); strings.Contains(s, testPAN) {
		t.Errorf("shows the PAN: %s", s)
	}
	bad := abecs.NewChipCard(abecs.ChipFields{PAN: testPAN, PANSequence: "x1"})
	if _, err := abecs.AppendCardData(nil, bad); err == nil {
		t.Error("non-numeric PAN sequence accepted")
	}
}

func TestAmountOn32Bit(t *testing.T) {
	// The largest amount must survive on every word size (parseNum is
	// limited to 9 digits; amounts go through 64-bit parsing).
	now := time.Unix(0, 0).UTC()
	b, err := abecs.AppendCardRequest(nil, abecs.CardRequest{AmountMinor: 999999999999}, now)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := abecs.ParseCardRequest(b); err != nil || r.AmountMinor != 999999999999 {
		t.Fatalf("%+v %v", r, err)
	}
	blocks, _ := abecs.AppendGoChip(abecs.GoChipRequest{AmountMinor: 999999999999, Tags: gocTags})
	if r, err := abecs.ParseGoChip(blocks); err != nil || r.AmountMinor != 999999999999 {
		t.Fatalf("%+v %v", r, err)
	}
}

// The chip commands through a real pty, driven by hand on the pad side.
func TestGoOnChipAndFinishOverPTY(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	var res abecs.GoChipResult
	done := run(func() (err error) {
		res, err = c.GoOnChip(context.Background(), abecs.GoChipRequest{AmountMinor: 500, KeyIndex: 1, Tags: gocTags, Timeout: 2 * time.Second})
		return err
	})
	cmd := pad.command()
	if !strings.HasPrefix(cmd, "GOC085000000000500") || !strings.HasSuffix(cmd, "0169F269F275A579F02") {
		t.Fatalf("GOC command %q", cmd)
	}
	pad.write(abecs.ACK)
	pad.send("GOC002032" + fmt.Sprintf("%-32s", "DIGITE A SENHA")) // a notification while PIN entry runs
	body, _ := abecs.AppendGoChipResult(nil, abecs.GoChipResult{Decision: abecs.DecisionOnline, EMVData: []byte{0x9F, 0x27, 0x01, 0x80}})
	pad.send(fmt.Sprintf("GOC000%03d%s", len(body), body))
	if err := wait(t, done); err != nil || res.Decision != abecs.DecisionOnline || !bytes.Equal(res.EMVData, []byte{0x9F, 0x27, 0x01, 0x80}) {
		t.Fatalf("GoOnChip: %v %v", res, err)
	}

	var fin abecs.FinishChipResult
	done = run(func() (err error) {
		fin, err = c.FinishChip(context.Background(), abecs.FinishChipRequest{HostResponded: true, ResponseCode: "00", Tags: []string{"9F27"}})
		return err
	})
	if cmd := pad.command(); cmd != "FNC009000000000"+"0049F27" {
		t.Fatalf("FNC command %q", cmd)
	}
	pad.write(abecs.ACK)
	pad.send("FNC000" + "007" + "0000000")
	if err := wait(t, done); err != nil || !fin.Approved {
		t.Fatalf("FinishChip: %v %v", fin, err)
	}

	// A card removed during FNC.
	done = run(func() error {
		_, err := c.FinishChip(context.Background(), abecs.FinishChipRequest{Tags: []string{"9F27"}})
		return err
	})
	pad.command()
	pad.write(abecs.ACK)
	pad.send("FNC043")
	if err := wait(t, done); !errors.Is(err, abecs.ErrNoCard) {
		t.Fatalf("removed: %v", err)
	}

	// A malformed GOC answer is a clean error, not a panic.
	done = run(func() error {
		_, err := c.GoOnChip(context.Background(), abecs.GoChipRequest{Tags: gocTags, Timeout: time.Second})
		return err
	})
	pad.command()
	pad.write(abecs.ACK)
	pad.send("GOC000005" + "2000Z")
	if err := wait(t, done); !errors.Is(err, abecs.ErrBadResponse) || !errors.Is(err, abecs.ErrFormat) {
		t.Fatalf("malformed: %v", err)
	}
}

func TestInfoAndWaitOverPTY(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	var info abecs.Info
	done := run(func() (err error) { info, err = c.Info(context.Background()); return err })
	if cmd := pad.command(); cmd != "GIN00200" {
		t.Fatalf("GIN command %q", cmd)
	}
	pad.write(abecs.ACK)
	b, _ := abecs.AppendInfo(nil, abecs.Info{Manufacturer: "ACME", Serial: "42"})
	pad.send("GIN000100" + string(b))
	if err := wait(t, done); err != nil || info.Manufacturer != "ACME" || info.Serial != "42" {
		t.Fatalf("Info: %+v %v", info, err)
	}

	var ev abecs.PadEvent
	done = run(func() (err error) {
		ev, err = c.WaitEvent(context.Background(), abecs.WaitRequest{Keys: true, Insert: true, Timeout: 2 * time.Second})
		return err
	})
	if cmd := pad.command(); cmd != "CKE0041010" {
		t.Fatalf("CKE command %q", cmd)
	}
	pad.write(abecs.ACK)
	b, _ = abecs.AppendPadEvent(nil, abecs.PadEvent{Kind: abecs.EventInserted})
	pad.send(fmt.Sprintf("CKE000%03d", len(b)) + string(b))
	if err := wait(t, done); err != nil || ev.Kind != abecs.EventInserted {
		t.Fatalf("WaitEvent: %v %v", ev, err)
	}

	// Nothing happens: the client cancels after the timeout.
	done = run(func() error {
		_, err := c.WaitEvent(context.Background(), abecs.WaitRequest{Keys: true, Timeout: 100 * time.Millisecond})
		return err
	})
	pad.command()
	pad.write(abecs.ACK)
	if ev := pad.next(2 * time.Second); ev.Kind != abecs.KindCAN {
		t.Fatalf("pad got %v, want CAN", ev.Kind)
	}
	pad.write(abecs.EOT)
	if err := wait(t, done); !errors.Is(err, abecs.ErrPadTimeout) {
		t.Fatalf("timeout: %v", err)
	}
}

// A port that fails under the client (the pty pair goes away: EIO) ends the
// client without any command running, and says why.
func TestClientDoneOnPortFailure(t *testing.T) {
	p, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	c, err := abecs.Dial(p.A, 0, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Err() != nil {
		t.Fatalf("Err before failure: %v", c.Err())
	}
	p.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not notice the failed port")
	}
	if err := c.Err(); !errors.Is(err, abecs.ErrClosed) || !strings.Contains(err.Error(), "read") {
		t.Fatalf("Err = %v", err)
	}
	if err := c.Open(context.Background()); !errors.Is(err, abecs.ErrClosed) || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("command after failure: %v", err)
	}
}

func TestModemLinesOnPTY(t *testing.T) {
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
	_, err = port.ModemStatus()
	if !errors.Is(err, abecs.ErrNoModemLines) || errors.Is(err, syscall.EIO) {
		t.Fatalf("ModemStatus on a pty: %v, want ErrNoModemLines", err)
	}
	// The port still works.
	if _, err := port.Write([]byte{abecs.ACK}); err != nil {
		t.Fatal(err)
	}
}

// FuzzChipBlocks: the pad's GOC, FNC, CKE and GIN answers parse or fail
// cleanly, and what parses encodes back to an equivalent block.
func FuzzChipBlocks(f *testing.F) {
	goc, _ := abecs.AppendGoChipResult(nil, abecs.GoChipResult{Decision: abecs.DecisionOnline, OnlinePIN: true, EMVData: []byte{0x9F, 0x27, 0x01, 0x80}})
	fnc, _ := abecs.AppendFinishChipResult(nil, abecs.FinishChipResult{Approved: true, EMVData: []byte{0x95, 0x01, 0x00}})
	cke, _ := abecs.AppendPadEvent(nil, abecs.PadEvent{Kind: abecs.EventSwipe, Card: abecs.NewMagstripeCard(testTrack1, testTrack2)})
	gin, _ := abecs.AppendInfo(nil, abecs.Info{Manufacturer: "ACME", Serial: "1"})
	gocAES, _ := abecs.AppendGoChipResult(nil, abecs.GoChipResult{Decision: abecs.DecisionOnline, OnlinePIN: true, AES: true, EMVData: []byte{0x9F, 0x27, 0x01, 0x80}})
	for _, b := range [][]byte{goc, gocAES, fnc, cke, gin, []byte("9F269F27"), []byte("2000000")} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if r, err := abecs.ParseGoChipResult(in); err == nil {
			out, err := abecs.AppendGoChipResult(nil, r)
			if err != nil {
				t.Fatalf("GOC result does not encode: %v", err)
			}
			if r2, err := abecs.ParseGoChipResult(out); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("GOC round trip: %v", err)
			}
		}
		if r, err := abecs.ParseGoChipResultAES(in); err == nil {
			out, err := abecs.AppendGoChipResult(nil, r)
			if err != nil {
				t.Fatalf("GOC (AES) result does not encode: %v", err)
			}
			if r2, err := abecs.ParseGoChipResultAES(out); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("GOC (AES) round trip: %v", err)
			}
		}
		if r, err := abecs.ParseFinishChipResult(in); err == nil {
			out, err := abecs.AppendFinishChipResult(nil, r)
			if err != nil {
				t.Fatalf("FNC result does not encode: %v", err)
			}
			if r2, err := abecs.ParseFinishChipResult(out); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("FNC round trip: %v", err)
			}
		}
		if e, err := abecs.ParsePadEvent(in); err == nil {
			if _, err := abecs.AppendPadEvent(nil, e); err != nil {
				t.Fatalf("CKE event does not encode: %v", err)
			}
		}
		if i, err := abecs.ParseInfo(in); err == nil {
			if _, err := abecs.AppendInfo(nil, i); err != nil {
				t.Fatalf("GIN info does not encode: %v", err)
			}
		}
		if tags, err := abecs.ParseTagList(in); err == nil && len(in) <= 999 {
			out, err := abecs.AppendTagList(nil, tags)
			if err != nil || !strings.EqualFold(string(out), string(in)) {
				t.Fatalf("tag list round trip %q -> %q %v", in, out, err)
			}
		}
		abecs.ParseGoChip([][]byte{in, []byte("9F27")})
		abecs.ParseFinishChip([][]byte{in, []byte("9F27")})
		abecs.ParseWaitRequest(in)
	})
}

// The ICC and contactless events on the wire: CKE_EVENT "2" with CKE_ICCSTAT, "3" with
// CKE_CTLSSTAT (ABECS §3.3.3), each read back through the frame decoder a byte at a time.
func TestPadEventICCAndContactless(t *testing.T) {
	for _, c := range []struct {
		kind           abecs.PadEventKind
		event, iccStat byte
		ctlsStat       byte
	}{
		{abecs.EventInserted, '2', '1', '0'},
		{abecs.EventRemoved, '2', '0', '0'},
		{abecs.EventTapped, '3', '0', '1'},
		{abecs.EventNoTap, '3', '0', '0'},
	} {
		b, err := abecs.AppendPadEvent(nil, abecs.PadEvent{Kind: c.kind})
		if err != nil || len(b) != 229 || b[0] != c.event || b[227] != c.iccStat || b[228] != c.ctlsStat {
			t.Fatalf("%v: %q %v", c.kind, b, err)
		}
		data, err := abecs.Response{ID: abecs.CmdEvent, Status: abecs.StatusOK, Blocks: [][]byte{b}}.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		frame, err := abecs.AppendFrame(nil, data)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := abecs.NewDecoder(iotest.OneByteReader(bytes.NewReader(frame))).Next()
		if err != nil || ev.Err != nil {
			t.Fatalf("%v: decode %v %v", c.kind, err, ev.Err)
		}
		resp, err := abecs.ParseResponse(ev.Data)
		if err != nil || len(resp.Blocks) != 1 {
			t.Fatalf("%v: response %+v %v", c.kind, resp, err)
		}
		back, err := abecs.ParsePadEvent(resp.Blocks[0])
		if err != nil || back.Kind != c.kind {
			t.Fatalf("%v: parsed %v %v", c.kind, back, err)
		}
	}
	b, _ := abecs.AppendPadEvent(nil, abecs.PadEvent{Kind: abecs.EventTapped})
	for name, bad := range map[string][]byte{
		"no statuses":      b[:227],
		"CTLS status 2":    append(append([]byte(nil), b[:228]...), '2'),
		"ICC status x":     append(append([]byte{'2'}, b[1:227]...), 'x', '0'),
		"event 4 on wire":  append([]byte{'4'}, b[1:]...),
		"short of a track": b[:100],
	} {
		if _, err := abecs.ParsePadEvent(bad); !errors.Is(err, abecs.ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := abecs.AppendPadEvent(nil, abecs.PadEvent{Kind: 6}); err == nil {
		t.Error("kind 6 accepted")
	}
}
