package iso8583_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// posConditionsFile is the shipped example of a dialect with a "messages" object: the
// default dialect, plus fields 24 (NII) "001" and 25 (POS condition code) "00" on every
// request, required, except that an 0800 must not carry 25; and field 43 on every 0200.
const posConditionsFile = "dialects/pos-conditions.json"

const posConditionsName = "posd ISO 8583:1987 ASCII, POS condition and NII on every request"

func loadPOSConditions(t testing.TB) *iso8583.Dialect {
	t.Helper()
	d, err := iso8583.LoadDialect(posConditionsFile)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// smallSpecFields is a spec of a few fields for the rule tests: text fields of each kind,
// a b field no builder owns (53, 8 bytes as 16 hexadecimal characters) and a variable b
// field (58, raw bytes, LL).
const smallSpecFields = `"fields": {
	"0": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"1": {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"},
	"4": {"type": "Numeric", "length": 12, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"7": {"type": "Numeric", "length": 10, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"11": {"type": "Numeric", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"24": {"type": "Numeric", "length": 3, "enc": "BCD", "prefix": "BCD.Fixed"},
	"25": {"type": "Numeric", "length": 2, "enc": "ASCII", "prefix": "ASCII.Fixed"},
	"35": {"type": "Track2", "length": 37, "enc": "ASCII", "prefix": "ASCII.LL"},
	"37": {"type": "String", "length": 12, "enc": "ASCII", "prefix": "ASCII.Fixed", "class": "an"},
	"41": {"type": "String", "length": 8, "enc": "ASCII", "prefix": "ASCII.Fixed", "padding": {"type": "Right", "pad": " "}},
	"43": {"type": "String", "length": 40, "enc": "ASCII", "prefix": "ASCII.Fixed", "padding": {"type": "Right", "pad": " "}},
	"48": {"type": "String", "length": 999, "enc": "ASCII", "prefix": "ASCII.LLL"},
	"53": {"type": "Binary", "length": 8, "enc": "HexToASCII", "prefix": "ASCII.Fixed"},
	"58": {"type": "Binary", "length": 4, "enc": "Binary", "prefix": "Binary.LL"},
	"70": {"type": "Numeric", "length": 3, "enc": "ASCII", "prefix": "ASCII.Fixed"}}`

// smallDialect returns a dialect file of the small spec with the given "messages" object.
func smallDialect(messages string) string {
	return `{"name": "small", "messages": ` + messages + `, ` + smallSpecFields + `}`
}

func TestDialectMessagesErrorsNameTheSetting(t *testing.T) {
	tests := []dialectErrorCase{
		{"not an object", smallDialect(`[]`), ""},
		{"misspelled top key", strings.Replace(smallDialect(`{}`), `"messages"`, `"message"`, 1), ""},
		{"unknown key in an entry", smallDialect(`{"0200": {"sets": {"25": "00"}}}`), "messages.0200"},
		{"entry not an object", smallDialect(`{"0200": [25]}`), "messages.0200"},
		{"MTI of 3 digits", smallDialect(`{"200": {"mandatory": [25]}}`), "messages.200"},
		{"MTI with a letter", smallDialect(`{"02x0": {"mandatory": [25]}}`), "messages.02x0"},
		{"MTI of a response", smallDialect(`{"0210": {"mandatory": [25]}}`), "messages.0210"},
		{"MTI posd never sends", smallDialect(`{"0120": {"mandatory": [25]}}`), "messages.0120"},
		{"wildcard spelled otherwise", smallDialect(`{"all": {"mandatory": [25]}}`), "messages.all"},
		{"set field not in spec", smallDialect(`{"*": {"set": {"30": "1"}}}`), "messages.*.set.30"},
		{"set key not a number", smallDialect(`{"*": {"set": {"NII": "001"}}}`), "messages.*.set.NII"},
		{"set key with a leading zero", smallDialect(`{"*": {"set": {"025": "00"}}}`), "messages.*.set.025"},
		{"set the MTI", smallDialect(`{"*": {"set": {"0": "0200"}}}`), "messages.*.set.0"},
		{"set field 129", smallDialect(`{"*": {"set": {"129": "1"}}}`), "messages.*.set.129"},
		{"set the amount", smallDialect(`{"0200": {"set": {"4": "000000000100"}}}`), "messages.0200.set.4"},
		{"set the STAN", smallDialect(`{"0800": {"set": {"11": "000001"}}}`), "messages.0800.set.11"},
		{"set track 2", smallDialect(`{"0200": {"set": {"35": "4761739001010010=3012"}}}`), "messages.0200.set.35"},
		{"set the terminal id", smallDialect(`{"*": {"set": {"41": "TERM0001"}}}`), "messages.*.set.41"},
		{"value too long", smallDialect(`{"*": {"set": {"25": "000"}}}`), "messages.*.set.25"},
		{"value too short for an unpadded field", smallDialect(`{"*": {"set": {"25": "0"}}}`), "messages.*.set.25"},
		{"value too long for a padded field", smallDialect(`{"0200": {"set": {"43": "` + strings.Repeat("X", 41) + `"}}}`), "messages.0200.set.43"},
		{"letter in an n field", smallDialect(`{"*": {"set": {"25": "0A"}}}`), "messages.*.set.25"},
		{"letter in a BCD field", smallDialect(`{"*": {"set": {"24": "0A1"}}}`), "messages.*.set.24"},
		{"punctuation in an an field", smallDialect(`{"0200": {"set": {"37": "ABC-12345678"}}}`), "messages.0200.set.37"},
		{"non-ASCII in an ans field", smallDialect(`{"0200": {"set": {"43": "CAFÉ"}}}`), "messages.0200.set.43"},
		{"empty value", smallDialect(`{"*": {"set": {"48": ""}}}`), "messages.*.set.48"},
		{"value not a string", smallDialect(`{"*": {"set": {"25": 0}}}`), "messages.*.set.25"},
		{"bad hex", smallDialect(`{"*": {"set": {"53": "01020304050607XY"}}}`), "messages.*.set.53"},
		{"odd hex", smallDialect(`{"*": {"set": {"58": "ABC"}}}`), "messages.*.set.58"},
		{"hex of the wrong length", smallDialect(`{"*": {"set": {"53": "0102"}}}`), "messages.*.set.53"},
		{"hex too long for a variable b field", smallDialect(`{"*": {"set": {"58": "0102030405"}}}`), "messages.*.set.58"},
		{"mandatory field not in spec", smallDialect(`{"0200": {"mandatory": [43, 30]}}`), "messages.0200.mandatory"},
		{"mandatory field 129", smallDialect(`{"0200": {"mandatory": [129]}}`), "messages.0200.mandatory"},
		{"mandatory bitmap", smallDialect(`{"0200": {"mandatory": [1]}}`), "messages.0200.mandatory"},
		{"mandatory field 65", smallDialect(`{"0200": {"mandatory": [65]}}`), "messages.0200.mandatory"},
		{"mandatory as strings", smallDialect(`{"0200": {"mandatory": ["43"]}}`), "messages.0200"},
		{"mandatory twice", smallDialect(`{"0200": {"mandatory": [43, 43]}}`), "messages.0200.mandatory"},
		{"forbidden field not in spec", smallDialect(`{"0800": {"forbidden": [30]}}`), "messages.0800.forbidden"},
		{"mandatory and forbidden", smallDialect(`{"0200": {"mandatory": [43], "forbidden": [43]}}`), "messages.0200.forbidden"},
		{"set and forbidden", smallDialect(`{"0800": {"set": {"25": "00"}, "forbidden": [25]}}`), "messages.0800.set.25"},
		{"forbid what the MTI always needs", smallDialect(`{"0800": {"forbidden": [70]}}`), "messages.0800.forbidden"},
		{"forbid what every request needs", smallDialect(`{"*": {"forbidden": [11]}}`), "messages.*.forbidden"},
		{"require track 2 in an advice", smallDialect(`{"0220": {"mandatory": [35]}}`), "messages.0220.mandatory"},
	}
	dialectErrorsNameTheSetting(t, tests)
	// The cases above differ from a good file only where they name.
	if _, err := iso8583.ParseDialect([]byte(smallDialect(`{"*": {"set": {"24": "001", "25": "00", "53": "0102030405060708", "58": "ABcd"}},
		"0200": {"mandatory": [37, 43], "set": {"43": "POSD TEST SHOP         LISBON       PT"}},
		"0800": {"forbidden": [25]}}`))); err != nil {
		t.Fatalf("good file: %v", err)
	}
}

// The fixed values of the MTI (and of "*") are added to a copy where the request lacks the
// field, an MTI's own entry wins over "*", a repeat uses its original's entry, and a b
// field's value is read as hexadecimal.
func TestDialectPrepareRequest(t *testing.T) {
	d, err := iso8583.ParseDialect([]byte(smallDialect(`{
		"*": {"set": {"24": "001", "25": "00", "53": "0102030405060708"}, "mandatory": [24, 25]},
		"0200": {"set": {"43": "POSD TEST SHOP         LISBON       PT", "58": "c0ffee"}},
		"0220": {"set": {"48": "ADVICE"}},
		"0800": {"forbidden": [25]}}`)))
	if err != nil {
		t.Fatal(err)
	}
	get := func(t *testing.T, m *iso8583.Message, id int) string {
		t.Helper()
		v, _ := m.GetString(id)
		return v
	}
	prepare := func(t *testing.T, m *iso8583.Message) *iso8583.Message {
		t.Helper()
		p, err := d.PrepareRequest(m)
		if err != nil {
			t.Fatal(err)
		}
		// What goes on the wire reads back the same.
		b, err := iso8583.Pack(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := iso8583.Unpack(d.Spec, b)
		if err != nil {
			t.Fatal(err)
		}
		return back
	}

	sale := newMsgOn(t, d.Spec, "0200")
	sale.Field(11, "000042")
	p := prepare(t, sale)
	if get(t, p, 24) != "001" || get(t, p, 25) != "00" || get(t, p, 43) != "POSD TEST SHOP         LISBON       PT" {
		t.Errorf("0200: 24=%q 25=%q 43=%q", get(t, p, 24), get(t, p, 25), get(t, p, 43))
	}
	if b, _ := p.GetBytes(53); !bytes.Equal(b, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("0200: 53 = % X", b)
	}
	if b, _ := p.GetBytes(58); !bytes.Equal(b, []byte{0xC0, 0xFF, 0xEE}) {
		t.Errorf("0200: 58 = % X", b)
	}
	if sale.Has(24) || sale.Has(43) {
		t.Error("PrepareRequest changed the request given")
	}

	// A value the request has stands.
	sale.Field(25, "08")
	if p := prepare(t, sale); get(t, p, 25) != "08" {
		t.Errorf("0200 with its own 25: 25=%q", get(t, p, 25))
	}

	// 0800: "*" minus what it forbids.
	echo := newMsgOn(t, d.Spec, "0800")
	p = prepare(t, echo)
	if get(t, p, 24) != "001" || p.Has(25) || p.Has(43) {
		t.Errorf("0800: 24=%q 25 present %t 43 present %t", get(t, p, 24), p.Has(25), p.Has(43))
	}
	echo.Field(25, "00")
	_, err = d.PrepareRequest(echo)
	var fe *iso8583.FieldError
	if !errors.As(err, &fe) || fe.Field != 25 || fe.Op != "check" || !errors.Is(err, iso8583.ErrForbiddenField) ||
		!strings.Contains(err.Error(), "0800") || !strings.Contains(err.Error(), `"small"`) {
		t.Errorf("0800 carrying 25: err = %v", err)
	}

	// An 0221 (a repeat) takes the 0220's entry; an 0420 (no entry) takes "*".
	if p := prepare(t, newMsgOn(t, d.Spec, "0221")); get(t, p, 48) != "ADVICE" || get(t, p, 25) != "00" {
		t.Errorf("0221: 48=%q 25=%q", get(t, p, 48), get(t, p, 25))
	}
	if p := prepare(t, newMsgOn(t, d.Spec, "0420")); p.Has(48) || get(t, p, 24) != "001" {
		t.Errorf("0420: 48 present %t, 24=%q", p.Has(48), get(t, p, 24))
	}

	// A message built on the default spec is converted first; the default dialect has no
	// rules and leaves the message as it is.
	if p, err := d.PrepareRequest(newMsg(t, "0800", map[int]string{11: "000001"})); err != nil || p.GetSpec() != d.Spec {
		t.Errorf("from the default spec: %v", err)
	}
	def := iso8583.DefaultDialect()
	m := newMsgOn(t, def.Spec, "0200")
	if p, err := def.PrepareRequest(m); err != nil || p != m {
		t.Errorf("default dialect: %v, same message %t", err, p == m)
	}
	if err := def.CheckRequest(m); err != nil {
		t.Errorf("default dialect checks: %v", err)
	}
}

// CheckRequest reports the first missing mandatory field with the MTI and the dialect, and
// never a value.
func TestDialectCheckRequest(t *testing.T) {
	d := loadPOSConditions(t)
	m := build(t)(testAuth(t).Message())
	err := d.CheckRequest(m)
	var fe *iso8583.FieldError
	if !errors.As(err, &fe) || fe.Field != 24 || fe.Op != "check" || !errors.Is(err, iso8583.ErrMissingField) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"field 24", "0200", posConditionsName} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), approvedPAN) {
		t.Errorf("error %q shows the PAN", err)
	}
	p, err := d.PrepareRequest(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckRequest(p); err != nil {
		t.Errorf("prepared request: %v", err)
	}
}

// A real TCP round trip: the client adds 24 and 25 (and 43 to the 0200), the host, loading
// the same dialect, requires them and approves; what went out carries them on the wire.
// The sign-on (0800) goes out with 24 and without 25, as the dialect says.
func TestClientAddsDialectFieldsOnTheWire(t *testing.T) {
	dc, dh := loadPOSConditions(t), loadPOSConditions(t)
	var logs logSink
	addr, srv := startHost(t, hostsim.Options{Dialect: dh, Logf: logs.logf})
	var rec wireRecorder
	c := newClient(t, iso8583.ClientOptions{Addr: addr, Dialect: dc, Dial: rec.dial, SignOn: true,
		TerminalID: "TERM0001", NextSTAN: stanCounter(900), Now: func() time.Time { return fixedUTC }})
	a := typicalSale(t)
	req, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Send(ctxTimeout(t, 5*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := iso8583.ParseAuthResponse(resp); err != nil || !r.Approved() {
		t.Fatalf("response %+v, %v\nhost log:\n%s", r, err, logs.text())
	}
	if !srv.SignedOn("TERM0001") {
		t.Errorf("sign-on not approved\nhost log:\n%s", logs.text())
	}
	if req.Has(24) || req.Has(25) {
		t.Error("Send changed the caller's request")
	}
	c.Close()

	frames := readFrames(t, rec.bytes())
	if len(frames) != 2 {
		t.Fatalf("%d frames went out, want 2 (sign-on, sale)", len(frames))
	}
	want := []map[int]string{
		{0: "0800", 24: "001", 70: "001"},
		{0: "0200", 24: "001", 25: "00", 43: "POSD TEST SHOP         LISBON       PT", 11: "000042"},
	}
	for i, f := range frames {
		m, err := iso8583.Unpack(dc.Spec, f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		for id, v := range want[i] {
			if got, _ := m.GetString(id); got != v {
				t.Errorf("frame %d: field %d = %q, want %q", i, id, got, v)
			}
		}
		if i == 0 && m.Has(25) {
			t.Error("the 0800 carries field 25, which the dialect forbids in it")
		}
	}
}

// readFrames splits what a client wrote into messages (2-byte binary length framing).
func readFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		f, err := (iso8583.BinaryLengthFramer{}).ReadFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// A request that lacks a field the dialect requires (and no fixed value supplies), or
// carries one it forbids, is refused before anything is sent: the host sees nothing.
func TestClientRefusesRequestBreakingDialectRules(t *testing.T) {
	good, err := os.ReadFile(posConditionsFile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	old := `"mandatory": [43]`
	if !strings.Contains(s, old) {
		t.Fatalf("%s lacks %s", posConditionsFile, old)
	}
	s = strings.Replace(s, old, `"mandatory": [37, 43], "forbidden": [23]`, 1)
	d, err := iso8583.ParseDialect([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	var logs logSink
	addr, srv := startHost(t, hostsim.Options{Logf: logs.logf})
	c := newClient(t, iso8583.ClientOptions{Addr: addr, Dialect: d})

	var fe *iso8583.FieldError
	_, err = c.Send(ctxTimeout(t, 5*time.Second), build(t)(testAuth(t).Message()))
	if !errors.Is(err, iso8583.ErrNotSent) || !errors.As(err, &fe) || fe.Field != 37 || !errors.Is(err, iso8583.ErrMissingField) ||
		!strings.Contains(err.Error(), "0200") || !strings.Contains(err.Error(), posConditionsName) {
		t.Fatalf("missing 37: err = %v", err)
	}
	a := testAuth(t)
	a.PANSequence = "001"
	m := build(t)(a.Message())
	m.Field(37, "000000000001")
	_, err = c.Send(ctxTimeout(t, 5*time.Second), m)
	if !errors.Is(err, iso8583.ErrNotSent) || !errors.As(err, &fe) || fe.Field != 23 || !errors.Is(err, iso8583.ErrForbiddenField) {
		t.Fatalf("forbidden 23: err = %v", err)
	}
	if st := c.Stats(); st.FramesOut != 0 || st.Connects != 0 {
		t.Errorf("stats %+v: something was sent", st)
	}
	if len(srv.Charges()) != 0 || logs.text() != "" {
		t.Errorf("the host saw something: %v\n%s", srv.Charges(), logs.text())
	}
	// The same request with 37 and without 23 goes through.
	m = build(t)(testAuth(t).Message())
	m.Field(37, "000000000001")
	if _, err := c.Send(ctxTimeout(t, 5*time.Second), m); err != nil {
		t.Fatal(err)
	}
}

// Wireshark's ISO 8583 dissector, an independent decoder, reads the fixed values where the
// dialect puts them. Skipped without tshark.
func TestDialectFixedFieldsDecodeInWireshark(t *testing.T) {
	tshark, err1 := exec.LookPath("tshark")
	text2pcap, err2 := exec.LookPath("text2pcap")
	if err1 != nil || err2 != nil {
		t.Skip("SKIPPED: tshark or text2pcap not installed (Debian package tshark): the independent decoder check did not run")
	}
	d := loadPOSConditions(t)
	m, err := d.PrepareRequest(build(t)(typicalSale(t).Message()))
	if err != nil {
		t.Fatal(err)
	}
	body, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, pcap := filepath.Join(dir, "sale.txt"), filepath.Join(dir, "sale.pcap")
	if err := os.WriteFile(in, transcript("0200 with fixed fields", frameBytes(t, body)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(text2pcap, "-q", "-4", "127.0.0.1,127.0.0.1", "-T", "40000,8583", in, pcap).CombinedOutput(); err != nil {
		t.Fatalf("text2pcap: %v\n%s", err, out)
	}
	out, err := exec.Command(tshark, "-r", pcap, "-d", "tcp.port==8583,iso8583",
		"-o", "iso8583.len_endian:bigendian", "-T", "fields",
		"-e", "iso8583.mti", "-e", "iso8583.bit24", "-e", "iso8583.bit25", "-e", "iso8583.bit43", "-e", "_ws.malformed").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimRight(string(out), "\n"), "\t")
	want := []string{"0200", "001", "00", "POSD TEST SHOP         LISBON       PT", ""}
	if len(got) != len(want) {
		t.Fatalf("tshark printed %q", out)
	}
	for i := range want {
		if strings.TrimRight(got[i], " ") != want[i] {
			t.Errorf("Wireshark reads %q, want %q (columns: MTI, 24, 25, 43, malformed)", got[i], want[i])
		}
	}
}
