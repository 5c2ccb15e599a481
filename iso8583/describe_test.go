package iso8583_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

func TestDescribeMasksCardData(t *testing.T) {
	m := allClasses(t) // PAN, track 2, track 1, PIN block, ICC data, MACs
	var b strings.Builder
	if err := iso8583.Describe(&b, m); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, secret := range []string{
		approvedPAN,                    // field 2 and inside the tracks
		"4761739001010010=3012",        // track 2
		"30121010000000",               // track 2 after the PAN
		"DOE/JOHN",                     // track 1 name
		"1B9C1845EB993A7A", "1B9C1845", // PIN block
		"9F2608", "0102030405060708", // ICC data
		"AABBCCDD", "DEADBEEF", // MACs
	} {
		if strings.Contains(out, secret) {
			t.Errorf("Describe shows %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"MTI 0200\n",
		"  2 primary account number                     476173******0010\n",
		" 35 track 2 data                               476173******0010=****\n",
		" 45 track 1 data                               B476173******0010^****\n",
		" 52 personal identification number data        [hidden]\n",
		" 55 ICC data                                   9F26=[hidden] 95=0000000000\n",
		" 62 reserved, private (KSN)                    FFFF9876543210E00001\n",
		" 64 message authentication code                [hidden]\n",
		"128 message authentication code (secondary)    [hidden]\n",
		" 41 card acceptor terminal identification      TERM01\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Describe lacks %q:\n%s", want, out)
		}
	}
	// One line for the MTI, one per field from 2 up.
	fields := 0
	for range m.Present() {
		fields++
	}
	if n := strings.Count(out, "\n"); n != fields+1 {
		t.Errorf("Describe wrote %d lines for %d fields", n, fields)
	}
}

func TestDescribeTrackWithoutPAN(t *testing.T) {
	// A track 2 that does not start with a PAN is hidden entirely.
	m := newMsg(t, "0200", map[int]string{35: "12345=6789"})
	var b strings.Builder
	iso8583.Describe(&b, m)
	if strings.Contains(b.String(), "12345") || !strings.Contains(b.String(), "[hidden]") {
		t.Fatalf("Describe = %q", b.String())
	}
}

func TestSummary(t *testing.T) {
	m := newMsg(t, "0210", map[int]string{4: "000000001234", 11: "000042", 35: testTrack2, 39: "51", 41: "TERM0001", 49: "978"})
	got := iso8583.Summary(m)
	want := "0210 stan=000042 tid=TERM0001 amount=1234 cur=978 pan=476173******0010 rc=51 (insufficient funds)"
	if got != want {
		t.Fatalf("Summary =\n %q\nwant\n %q", got, want)
	}
	if got := iso8583.Summary(newMsg(t, "0800", map[int]string{4: "000000000000", 70: "301"})); got != "0800 amount=0 nmic=301" {
		t.Fatalf("Summary = %q", got)
	}
}

// Build a sale request and show it as an operator would see it: card data masked.
func Example() {
	pan, _ := card.ParsePAN("4761739001010010")
	sale := iso8583.Authorization{
		AmountMinor:      2500, // 25.00
		CurrencyNumeric:  "978",
		STAN:             7,
		TransmissionTime: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC),
		LocalTime:        time.Date(2025, 3, 14, 16, 9, 26, 0, time.FixedZone("CET", 3600)),
		PAN:              pan,
		Expiry:           "3012",
		EntryMode:        "012",
		PINBlock:         []byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A},
		KSN:              "FFFF9876543210E00001",
		TerminalID:       "TERM0001",
		MerchantID:       "MERCHANT0000001",
	}
	req, err := sale.Message()
	if err != nil {
		fmt.Println(err)
		return
	}
	wire, _ := iso8583.Pack(req)
	fmt.Println(len(wire), "bytes")
	iso8583.Describe(os.Stdout, req)
	// Output:
	// 154 bytes
	// MTI 0200
	//   2 primary account number                     476173******0010
	//   3 processing code                            000000
	//   4 amount, transaction                        000000002500
	//   7 transmission date and time                 0314150926
	//  11 systems trace audit number                 000007
	//  12 time, local transaction                    160926
	//  13 date, local transaction                    0314
	//  14 date, expiration                           3012
	//  22 point of service entry mode                012
	//  41 card acceptor terminal identification      TERM0001
	//  42 card acceptor identification code          MERCHANT0000001
	//  49 currency code, transaction                 978
	//  52 personal identification number data        [hidden]
	//  62 reserved, private (KSN)                    FFFF9876543210E00001
}

// Field 55 shows its tags; the cryptogram, track equivalents, the name and issuer data are
// hidden, the PAN in tag 5A masked. A field 55 that is not TLV is hidden whole.
func TestDescribeICCData(t *testing.T) {
	icc := tlvBytes(t,
		"9F26", "8E2B54B1C6A7D3F0", // cryptogram
		"57", "4761739001010010D30121010000000000", // track 2 equivalent (odd F pad not needed)
		"5A", "4761739001010010",
		"5F20", "444F452F4A4F484E", // DOE/JOHN
		"9F27", "80",
		"95", "0000008000",
		"91", "0102030405060708", // issuer authentication data
		"72", "9F180400000001", // script (constructed)
	)
	m := newMsg(t, "0200", map[int]string{11: "000001"})
	m.BinaryField(55, icc)
	var b strings.Builder
	if err := iso8583.Describe(&b, m); err != nil {
		t.Fatal(err)
	}
	js, err := iso8583.MarshalJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"Describe": b.String(), "JSON": string(js)} {
		for _, secret := range []string{"8E2B54B1", approvedPAN, "D3012101", "444F452F", "0102030405060708", "9F1804"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows %q:\n%s", name, secret, out)
			}
		}
	}
	want := " 55 ICC data                                   9F26=[hidden] 57=[hidden] 5A=476173******0010 5F20=[hidden] 9F27=80 95=0000008000 91=[hidden] 72=[hidden]\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("Describe:\n%s\nwant line\n%s", b.String(), want)
	}
	wantJSON := `{"0":"0200","11":"000001","55":{"9F26":"[hidden]","57":"[hidden]","5A":"476173******0010","5F20":"[hidden]","9F27":"80","95":"0000008000","91":"[hidden]","72":"[hidden]"}}`
	if string(js) != wantJSON {
		t.Errorf("JSON\n %s\nwant\n %s", js, wantJSON)
	}
	// Not TLV: a length running past the end.
	m.BinaryField(55, []byte{0x9F, 0x26, 0x08, 0x01, 0x02})
	b.Reset()
	iso8583.Describe(&b, m)
	if !strings.Contains(b.String(), "[hidden: 5 bytes, not TLV]") {
		t.Errorf("Describe of broken TLV:\n%s", b.String())
	}
}

// The JSON form is masked like Describe and in numeric field order; Masked puts it in slog.
func TestMarshalJSONMasked(t *testing.T) {
	m := allClasses(t)
	js, err := iso8583.MarshalJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, js)
	}
	s := string(js)
	for _, secret := range []string{approvedPAN, "DOE/JOHN", "1B9C1845", "AABBCCDD", "DEADBEEF", "0102030405060708", "30121010000000"} {
		if strings.Contains(s, secret) {
			t.Errorf("JSON shows %q: %s", secret, s)
		}
	}
	for _, want := range []string{`"2":"476173******0010"`, `"35":"476173******0010=****"`, `"52":"[hidden]"`, `"62":"FFFF9876543210E00001"`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s: %s", want, s)
		}
	}
	if i, j := strings.Index(s, `"3":`), strings.Index(s, `"11":`); i < 0 || j < i {
		t.Errorf("fields out of numeric order: %s", s)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("sent", "msg", iso8583.Masked{Msg: m})
	if strings.Contains(logged.String(), approvedPAN) || !strings.Contains(logged.String(), "476173******0010") {
		t.Errorf("slog: %s", logged.String())
	}
	if js, _ := json.Marshal(iso8583.Masked{Msg: m}); strings.Contains(string(js), approvedPAN) {
		t.Errorf("json.Marshal(Masked): %s", js)
	}
	if js, _ := iso8583.MarshalJSON(nil); string(js) != "null" {
		t.Errorf("nil: %s", js)
	}
}
