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
	if n := len(m.GetFields()) - 2; n != 12 { // minus MTI and bitmap
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

// Wireshark's ISO 8583 dissector is an independent decoder. When tshark is installed, it
// must read both golden messages without a malformed-packet mark and find the fields
// where they are.
func TestGoldenTranscriptsDecodeInWireshark(t *testing.T) {
	tshark, err1 := exec.LookPath("tshark")
	text2pcap, err2 := exec.LookPath("text2pcap")
	if err1 != nil || err2 != nil {
		t.Skip("tshark or text2pcap not installed (Debian package tshark)")
	}
	dir := t.TempDir()
	for _, name := range []string{"auth_0200.hex", "auth_0210.hex"} {
		pcap := filepath.Join(dir, name+".pcap")
		out, err := exec.Command(text2pcap, "-q", "-4", "127.0.0.1,127.0.0.1", "-T", "40000,8583",
			filepath.Join("testdata", name), pcap).CombinedOutput()
		if err != nil {
			t.Fatalf("text2pcap: %v\n%s", err, out)
		}
		out, err = exec.Command(tshark, "-r", pcap, "-d", "tcp.port==8583,iso8583",
			"-o", "iso8583.len_endian:bigendian", "-V", "-O", "iso8583").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		text := string(out)
		if strings.Contains(strings.ToLower(text), "malformed") {
			t.Errorf("%s: Wireshark reports a malformed packet:\n%s", name, text)
		}
		wants := []string{"MTI: 0210", "Bitmap 1: 323800000EC08000", "Bit 11: 000042", "Bit 37: 507315000001",
			"Bit 39: 00", "Bit 41: TERM0001", "Bit 42: MERCHANT0000001", "Bit 49: 978"}
		if name == "auth_0200.hex" {
			wants = []string{"MTI: 0200", "Bitmap 1: 3238040020C09004", "Bit 4: 000000001234", "Bit 7: 0314150926",
				"Bit 22: 021", "Bit 35: " + testTrack2, "Bit 41: TERM0001", "Bit 49: 978", "Bit 62: FFFF9876543210E00001"}
		}
		for _, want := range wants {
			if !strings.Contains(text, want) {
				t.Errorf("%s: Wireshark's decode lacks %q:\n%s", name, want, text)
			}
		}
	}
}
