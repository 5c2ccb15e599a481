package iso8583_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/moov-io/iso8583/field"
	"github.com/posd-dev/posd/iso8583"
)

// Wireshark's ISO 8583 dissector (tshark) reads the traffic of the binary dialect (ASCII
// text and numerics, binary bitmap, raw b fields) with its preference "Bin data not
// encoded": the golden-style 0200/0210 of a chip sale and the dialect's message set (every
// MTI posd sends, and the host's answers) decode with no malformed packet, and every field
// Wireshark finds has the value that was set. The default ASCII dialect is checked the
// same way by TestGoldenTranscriptsDecodeInWireshark.
//
// The bcd-tpdu and ebcdic dialects are checked by golden files only
// (TestGoldenDialectPairs): the dissector (Wireshark 4.0) has no EBCDIC mode and no TPDU,
// and its "digits in nibbles" mode reads fields 35 and 49 otherwise than jPOS's
// ISO87BPackager (REFERENCE.md, ISO 8583 on the wire).
func TestBinaryDialectDecodesInWireshark(t *testing.T) {
	tshark, err1 := exec.LookPath("tshark")
	text2pcap, err2 := exec.LookPath("text2pcap")
	if err1 != nil || err2 != nil {
		t.Skip("SKIPPED: tshark or text2pcap not installed (Debian package tshark): the independent decoder check did not run")
	}
	d := shippedDialect(t, "binary")
	req, resp, _, _ := dialectGoldenPair(t, d)
	var frames [][]byte
	_, _, set := messageSetTranscripts(t)
	specs := []*iso8583.MessageSpec{d.Spec, d.Spec} // the pair; the message set is in the default dialect
	for i, f := range append([][]byte{req, resp}, set...) {
		var spec *iso8583.MessageSpec
		if i < len(specs) {
			spec = specs[i]
		}
		m, err := iso8583.Unpack(spec, f[2:])
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.GetString(86); v != "" {
			continue // Wireshark's table has fields 86-89 as n15 (ISO: n16); see the ASCII test
		}
		onWire, err := iso8583.Convert(m, d.Spec)
		if err != nil {
			t.Fatal(err)
		}
		// Wireshark's raw binary mode converts track 2 with a buffer of half the size it
		// writes (bin2hex in packet-iso8583.c allocates len+1 bytes for 2*len hexadecimal
		// characters): field 35 comes out cut and garbled and is marked malformed. Track 2
		// is left out of what Wireshark is given; the golden files check it.
		onWire.UnsetField(35)
		frames = append(frames, frameBytes(t, packed(t, onWire)))
	}

	var all bytes.Buffer
	var msgs []*iso8583.Message
	for i, f := range frames {
		m, err := iso8583.Unpack(d.Spec, f[2:])
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		msgs = append(msgs, m)
		all.Write(transcript(fmt.Sprintf("frame %d", i), f))
	}
	packets := dissect(t, tshark, text2pcap, all.Bytes(), len(frames), "iso8583.binencode:Bin data not encoded")
	for i, m := range msgs {
		got, raw := map[string]string{}, map[string]string{}
		for _, p := range packets[i].Protos {
			if p.Name == "iso8583" {
				for _, f := range p.Fields {
					got[f.Name], raw[f.Name] = f.Show, f.Value
				}
			}
		}
		mti, _ := m.GetMTI()
		if got["iso8583.mti"] != mti {
			t.Errorf("frame %d: Wireshark reads MTI %q, want %s", i, got["iso8583.mti"], mti)
		}
		n := 0
		for id := range m.Present() {
			n++
			key := fmt.Sprintf("iso8583.bit%d", id)
			g := got[key]
			want, _ := m.GetString(id)
			if _, bin := m.GetSpec().Fields[id].(*field.Binary); bin && id != 55 {
				// Raw bytes: compare the bytes Wireshark took for the value (what it shows
				// of them is garbled by the same bin2hex defect as track 2).
				b, _ := m.GetBytes(id)
				want, g = hex.EncodeToString(b), raw[key]
			}
			if strings.TrimRight(g, " ") != strings.TrimRight(want, " ") {
				t.Errorf("frame %d (%s): Wireshark reads field %d as %q, we set %q", i, mti, id, g, want)
			}
		}
		bits := 0
		for k := range got {
			if strings.HasPrefix(k, "iso8583.bit") {
				bits++
			}
		}
		if bits != n {
			t.Errorf("frame %d (%s): Wireshark found %d fields, the message has %d", i, mti, bits, n)
		}
	}
}

func packed(t *testing.T, m *iso8583.Message) []byte {
	t.Helper()
	b, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
