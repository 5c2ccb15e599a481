package iso8583_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata/")

// goldenPair returns the framed 0200 of a swiped sale with a PIN and the framed 0210 the
// simulated host answers, both deterministic.
func goldenPair(t *testing.T) (req, resp []byte) {
	t.Helper()
	a := testAuth(t)
	a.Track2 = testTrack2
	a.EntryMode = "021"
	a.PINBlock, a.KSN = newPINPad(t).block(t, "1234", approvedPAN) // KSN ...E00001
	reqMsg, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }})
	if err != nil {
		t.Fatal(err)
	}
	respMsg := srv.Respond(reqMsg)
	if respMsg == nil {
		t.Fatal("no response")
	}
	return frame(t, reqMsg), frame(t, respMsg)
}

func frame(t *testing.T, m *iso8583.Message) []byte {
	t.Helper()
	b, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := (iso8583.BinaryLengthFramer{}).WriteFrame(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// transcript writes b as an od-style dump (offset, then 16 bytes in hex), which both people
// and text2pcap read, after '#' comment lines.
func transcript(comment string, b []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(comment, "\n") {
		fmt.Fprintf(&out, "# %s\n", line)
	}
	for off := 0; off < len(b); off += 16 {
		end := min(off+16, len(b))
		fmt.Fprintf(&out, "%06x", off)
		for _, c := range b[off:end] {
			fmt.Fprintf(&out, " %02x", c)
		}
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// readTranscript returns the bytes of a transcript.
func readTranscript(t *testing.T, text []byte) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		b, err := hex.DecodeString(strings.Join(fields[1:], ""))
		if err != nil {
			t.Fatalf("bad transcript line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}

func TestGoldenTranscripts(t *testing.T) {
	req, resp := goldenPair(t)
	files := []struct {
		name, comment string
		got           []byte
	}{
		{"auth_0200.hex", "0200 swiped sale 12.34 EUR, card 476173******0010, PIN 1234 (DUKPT, test BDK), STAN 42.\n" +
			"2-byte big-endian length, then the message. Regenerate: go test ./iso8583 -run Golden -update", req},
		{"auth_0210.hex", "0210 answer of iso8583/hostsim to auth_0200.hex at 2025-03-14T15:09:27Z: approved.\n" +
			"2-byte big-endian length, then the message. Regenerate: go test ./iso8583 -run Golden -update", resp},
	}
	for _, f := range files {
		path := filepath.Join("testdata", f.name)
		if *update {
			if err := os.WriteFile(path, transcript(f.comment, f.got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if want := readTranscript(t, text); !bytes.Equal(f.got, want) {
			t.Errorf("%s differs:\n got %q\nwant %q", f.name, f.got, want)
		}
	}

	// Independent expectations for the answer, computed by hand.
	body, err := (iso8583.BinaryLengthFramer{}).ReadFrame(bytes.NewReader(resp))
	if err != nil {
		t.Fatal(err)
	}
	m, err := iso8583.Unpack(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int]string{
		0:  "0210",
		3:  "000000",
		4:  "000000001234",
		7:  "0314150926",
		11: "000042",
		12: "160926",
		13: "0314",
		37: "507315000001", // 2025 -> 5, 14 March = day 073, 15 h, sequence 1
		38: "000001",
		39: "00",
		41: "TERM0001",
		42: "MERCHANT0000001",
		49: "978",
	} {
		if got, _ := m.GetString(id); got != want {
			t.Errorf("0210 field %d = %q, want %q", id, got, want)
		}
	}
	if n := countFields(m); n != 12 {
		t.Errorf("0210 has %d fields, want 12", n)
	}
	// 0210 bitmap by hand: 3, 4, 7 -> 0x32; 11, 12, 13 -> 0x38; 37, 38, 39 -> 0x0E;
	// 41, 42 -> 0xC0; 49 -> 0x80.
	if !bytes.HasPrefix(body, []byte("0210"+"32380000"+"0E"+"C0"+"80")) {
		t.Errorf("0210 starts %q", body[:20])
	}
	// 0200 bitmap by hand: 3, 4, 7 -> 0x32; 11, 12, 13 -> 0x38; 22 -> 0x04; 35 -> 0x20;
	// 41, 42 -> 0xC0; 49, 52 -> 0x90; 62 -> 0x04.
	if !bytes.HasPrefix(req[2:], []byte("0200"+"3238040020C09004")) {
		t.Errorf("0200 starts %q", req[2:22])
	}
	if got := len(req) - 2; got != int(req[0])<<8|int(req[1]) {
		t.Errorf("0200 length header says %d, body is %d", int(req[0])<<8|int(req[1]), got)
	}
}

// goldenStep is one request of the message-set transcript and the file names of it and of
// the simulated host's answer.
type goldenStep struct {
	name    string // file name stem: msgset_NN_MTI
	comment string
	req     func(t *testing.T) *iso8583.Message
}

// messageSet is a terminal's day against iso8583/hostsim, every MTI of the message set in
// turn, deterministic: sign-on, an authorization, a chip sale, an offline advice and its
// repeat, a reversal of the sale and its repeat, a reversal advice of the authorization
// and its repeat, an echo, the reconciliation of the batch, sign-off.
func messageSet(t *testing.T) []goldenStep {
	nm := func(code string, stan uint32) func(*testing.T) *iso8583.Message {
		return func(t *testing.T) *iso8583.Message {
			return build(t)(iso8583.NetworkManagement{Code: code, STAN: stan, TransmissionTime: fixedUTC.Add(time.Duration(stan) * time.Second), TerminalID: "TERM0001"}.Message())
		}
	}
	auth := func(t *testing.T) iso8583.Authorization {
		a := testAuth(t)
		a.MTI, a.STAN, a.AmountMinor = "0100", 2, 10_00
		return a
	}
	sale := func(t *testing.T) iso8583.Authorization {
		a := typicalSale(t)
		a.STAN = 3
		a.TransmissionTime = fixedUTC.Add(3 * time.Second)
		return a
	}
	advice := func(t *testing.T, repeat bool) iso8583.Advice {
		a := testAdvice(t)
		a.STAN, a.Repeat = 4, repeat
		if repeat {
			a.TransmissionTime = a.TransmissionTime.Add(time.Minute)
		}
		return a
	}
	saleReversal := func(t *testing.T, repeat bool) iso8583.Reversal {
		r := reversalOf(t, sale(t), 5)
		r.Repeat = repeat
		return r
	}
	authReversal := func(t *testing.T, repeat bool) iso8583.Reversal {
		r := reversalOf(t, auth(t), 6)
		r.Advice, r.Repeat, r.ReasonCode = true, repeat, iso8583.ReasonCustomerCancel
		return r
	}
	return []goldenStep{
		{"msgset_01_0800", "sign-on (70=001), STAN 1", nm(iso8583.NMSignOn, 1)},
		{"msgset_02_0100", "authorization 10.00 EUR, keyed card 476173******0010, no PIN, STAN 2", func(t *testing.T) *iso8583.Message { return build(t)(auth(t).Message()) }},
		{"msgset_03_0200", "chip sale 12.34 EUR, track 2 equivalent, PIN (DUKPT, test BDK), field 55 with an ARQC, STAN 3", func(t *testing.T) *iso8583.Message { return build(t)(sale(t).Message()) }},
		{"msgset_04_0220", "offline approval advice 25.00 EUR, approval code Y10077, field 55, STAN 4", func(t *testing.T) *iso8583.Message { return build(t)(advice(t, false).Message()) }},
		{"msgset_05_0221", "repeat of the advice (new field 7): answered, not processed twice", func(t *testing.T) *iso8583.Message { return build(t)(advice(t, true).Message()) }},
		{"msgset_06_0400", "reversal of the chip sale (field 90: 0200, STAN 3), reason 68, STAN 5", func(t *testing.T) *iso8583.Message { return build(t)(saleReversal(t, false).Message()) }},
		{"msgset_07_0401", "repeat of the reversal: answered, not reversed twice", func(t *testing.T) *iso8583.Message { return build(t)(saleReversal(t, true).Message()) }},
		{"msgset_08_0420", "reversal advice of the authorization (field 90: 0100, STAN 2), reason 17, STAN 6", func(t *testing.T) *iso8583.Message { return build(t)(authReversal(t, false).Message()) }},
		{"msgset_09_0421", "repeat of the reversal advice", func(t *testing.T) *iso8583.Message { return build(t)(authReversal(t, true).Message()) }},
		{"msgset_10_0800", "echo (70=301), STAN 7", nm(iso8583.NMEcho, 7)},
		{"msgset_11_0500", "reconciliation of batch 1: 2 debits 37.34, 1 reversed 12.34, STAN 8", func(t *testing.T) *iso8583.Message {
			r := testReconciliation()
			r.BatchNumber, r.STAN = 1, 8
			r.Totals = iso8583.Totals{DebitsCount: 2, DebitsAmount: 12_34 + 25_00, DebitReversalsCount: 1, DebitReversalsAmount: 12_34}
			return build(t)(r.Message())
		}},
		{"msgset_12_0800", "sign-off (70=002), STAN 9", nm(iso8583.NMSignOff, 9)},
	}
}

func build(t testing.TB) func(*iso8583.Message, error) *iso8583.Message {
	return func(m *iso8583.Message, err error) *iso8583.Message {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

// messageSetTranscripts returns the file names and framed bytes of the message set, each
// request followed by the host's answer.
func messageSetTranscripts(t *testing.T) (names, comments []string, frames [][]byte) {
	srv, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range messageSet(t) {
		req := s.req(t)
		resp := srv.Respond(req)
		if resp == nil {
			t.Fatalf("%s: no answer", s.name)
		}
		respMTI, _ := resp.GetMTI()
		rc, _ := resp.GetString(39)
		names = append(names, s.name+".hex", s.name[:len(s.name)-4]+respMTI+".hex")
		comments = append(comments, s.comment, "answer of iso8583/hostsim to "+s.name+".hex: response code "+rc+" ("+iso8583.ResponseText(rc)+")")
		frames = append(frames, frame(t, req), frame(t, resp))
	}
	return names, comments, frames
}

// The whole message set has golden transcripts; each unpacks strictly, packs back to the
// same bytes, and the host's answers are the ones expected.
func TestGoldenMessageSet(t *testing.T) {
	names, comments, frames := messageSetTranscripts(t)
	wantRC := map[string]string{"0810": "00", "0110": "00", "0210": "00", "0230": "00", "0410": "00", "0430": "00", "0510": "00"}
	for i, name := range names {
		path := filepath.Join("testdata", name)
		if *update {
			c := comments[i] + "\n2-byte big-endian length, then the message. Regenerate: go test ./iso8583 -run Golden -update"
			if err := os.WriteFile(path, transcript(c, frames[i]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if want := readTranscript(t, text); !bytes.Equal(frames[i], want) {
			t.Errorf("%s differs:\n got %q\nwant %q", name, frames[i], want)
			continue
		}
		body := frames[i][2:]
		m, err := iso8583.Unpack(nil, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := iso8583.Pack(m)
		if err != nil || !bytes.Equal(again, body) {
			t.Errorf("%s does not repack to itself: %v", name, err)
		}
		mti, _ := m.GetMTI()
		if i%2 == 0 {
			if err := iso8583.CheckMandatory(m); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		r, err := iso8583.ParseResponse(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.ResponseCode != wantRC[mti] {
			t.Errorf("%s: response code %s", name, r.ResponseCode)
		}
	}
	// Hand-checked wire pieces: secondary bitmaps and field 90 of the sale's reversal.
	rev := string(frames[10][2:]) // msgset_06_0400
	if !strings.HasPrefix(rev, "0400"+"F238040002C08000"+"0000004000000000") {
		t.Errorf("0400 starts %q", rev[:36])
	}
	if !strings.Contains(rev, "0200"+"000003"+"0314150929"+"00000000000"+"00000000000") {
		t.Errorf("0400 lacks field 90 for the sale: %q", rev)
	}
	recon := string(frames[20][2:]) // msgset_11_0500
	if !strings.HasPrefix(recon, "0500"+"8220000000C04010"+"0078078080000000") {
		t.Errorf("0500 starts %q", recon[:36])
	}
}

// Wireshark's ISO 8583 dissector is an independent decoder. When tshark is installed, it
// must read every golden message without a malformed mark, and find each field with the
// value that was set.
//
// Its table has two known departures from ISO 8583:1987: field 53 is n8 (ISO: n16; no
// golden message has field 53) and fields 86 to 89 are n15 (ISO: n16). For the 0500,
// which carries 86 to 89, Wireshark is given the message with those four fields written
// as it expects them, 15 digits (their leading zero dropped); every other field, and the
// four amounts as numbers, must still match. The golden file itself is ISO.
func TestGoldenTranscriptsDecodeInWireshark(t *testing.T) {
	tshark, err1 := exec.LookPath("tshark")
	text2pcap, err2 := exec.LookPath("text2pcap")
	if err1 != nil || err2 != nil {
		t.Skip("SKIPPED: tshark or text2pcap not installed (Debian package tshark): the independent decoder check did not run")
	}
	files := []string{"auth_0200.hex", "auth_0210.hex"}
	names, _, _ := messageSetTranscripts(t)
	files = append(files, names...)
	// One capture: each transcript starts at offset 0, which text2pcap makes a packet.
	var all bytes.Buffer
	var msgs []*iso8583.Message
	for _, name := range files {
		text, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		body := readTranscript(t, text)[2:]
		m, err := iso8583.Unpack(nil, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		msgs = append(msgs, m)
		all.Write(transcript(name, frameBytes(t, wiresharkVariant(t, m, body))))
	}
	packets := dissect(t, tshark, text2pcap, all.Bytes(), len(files))
	for i, name := range files {
		got := map[string]string{}
		for _, p := range packets[i].Protos {
			if p.Name == "iso8583" {
				for _, f := range p.Fields {
					got[f.Name] = f.Show
				}
			}
		}
		m := msgs[i]
		mti, _ := m.GetMTI()
		if got["iso8583.mti"] != mti {
			t.Errorf("%s: Wireshark reads MTI %q", name, got["iso8583.mti"])
		}
		n := 0
		for id := range m.Present() {
			n++
			want, _ := m.GetString(id)
			key := fmt.Sprintf("iso8583.bit%d", id)
			g := got[key]
			if id >= 86 && id <= 89 {
				g = "0" + g // the variant dropped the leading zero
			}
			if strings.TrimRight(g, " ") != strings.TrimRight(want, " ") {
				t.Errorf("%s: Wireshark reads field %d as %q, we set %q", name, id, got[key], want)
			}
		}
		bits := 0
		for k := range got {
			if strings.HasPrefix(k, "iso8583.bit") {
				bits++
			}
		}
		if bits != n {
			t.Errorf("%s: Wireshark found %d fields, the message has %d", name, bits, n)
		}
	}
}

// wiresharkVariant returns body as Wireshark's table expects it: fields 86 to 89 as 15
// digits. Other messages are returned unchanged.
func wiresharkVariant(t *testing.T, m *iso8583.Message, body []byte) []byte {
	var iso, ws string
	for id := 86; id <= 89; id++ {
		v, _ := m.GetString(id)
		if v == "" {
			return body
		}
		if v[0] != '0' {
			t.Fatalf("field %d = %s does not fit Wireshark's n15", id, v)
		}
		iso += v
		ws += v[1:]
	}
	if bytes.Count(body, []byte(iso)) != 1 {
		t.Fatalf("fields 86-89 not found once in the message")
	}
	return bytes.Replace(body, []byte(iso), []byte(ws), 1)
}

func frameBytes(t *testing.T, body []byte) []byte {
	var buf bytes.Buffer
	if err := (iso8583.BinaryLengthFramer{}).WriteFrame(&buf, body); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
