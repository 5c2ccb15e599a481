package iso8583_test

import (
	"bytes"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// pdmlPacket is what the tests read of one packet in tshark's PDML output.
type pdmlPacket struct {
	Protos []struct {
		Name   string `xml:"name,attr"`
		Fields []struct {
			Name  string `xml:"name,attr"`
			Show  string `xml:"show,attr"`
			Value string `xml:"value,attr"`
		} `xml:"field"`
	} `xml:"proto"`
}

// dissect turns transcripts (text2pcap's hex dump, one packet each) into a capture on TCP port
// 8583 and has Wireshark's ISO 8583 dissector decode it with its options opts (beside the
// big-endian length): it fails the test on a malformed packet or a count other than want.
func dissect(t *testing.T, tshark, text2pcap string, transcripts []byte, want int, opts ...string) []pdmlPacket {
	t.Helper()
	dir := t.TempDir()
	in, pcap := filepath.Join(dir, "all.txt"), filepath.Join(dir, "all.pcap")
	if err := os.WriteFile(in, transcripts, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(text2pcap, "-q", "-4", "127.0.0.1,127.0.0.1", "-T", "40000,8583", in, pcap).CombinedOutput(); err != nil {
		t.Fatalf("text2pcap: %v\n%s", err, out)
	}
	args := []string{"-r", pcap, "-d", "tcp.port==8583,iso8583", "-o", "iso8583.len_endian:bigendian"}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	out, err := exec.Command(tshark, append(args, "-T", "pdml")...).Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	if bytes.Contains(bytes.ToLower(out), []byte("malformed")) {
		t.Errorf("Wireshark reports a malformed packet:\n%s", out)
	}
	var pdml struct {
		Packets []pdmlPacket `xml:"packet"`
	}
	if err := xml.Unmarshal(out, &pdml); err != nil {
		t.Fatalf("tshark's PDML: %v", err)
	}
	if len(pdml.Packets) != want {
		t.Fatalf("Wireshark decoded %d packets, want %d", len(pdml.Packets), want)
	}
	return pdml.Packets
}
