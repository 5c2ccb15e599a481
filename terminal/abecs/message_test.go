package abecs_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
)

func TestCommandAndResponseWire(t *testing.T) {
	cmd := abecs.Command{ID: "DSP", Blocks: [][]byte{[]byte("HELLO"), {}}}
	got, err := cmd.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "DSP005HELLO000" {
		t.Fatalf("command %q", got)
	}
	back, err := abecs.ParseCommand(got)
	if err != nil || back.ID != "DSP" || len(back.Blocks) != 2 || string(back.Blocks[0]) != "HELLO" || len(back.Blocks[1]) != 0 {
		t.Fatalf("ParseCommand: %+v %v", back, err)
	}

	resp := abecs.Response{ID: "ERR", Status: 10}
	got, err = resp.Append(nil)
	if err != nil || string(got) != "ERR010" {
		t.Fatalf("response %q %v", got, err)
	}
	r, err := abecs.ParseResponse([]byte("GPN000003ABC"))
	if err != nil || r.ID != "GPN" || r.Status != 0 || len(r.Blocks) != 1 || string(r.Blocks[0]) != "ABC" {
		t.Fatalf("ParseResponse: %+v %v", r, err)
	}
}

func TestMessageErrors(t *testing.T) {
	for _, in := range []string{"", "OP", "opn", "OP1", "OPN00", "OPN0a3abc", "OPN005abc", "OPN003abc0"} {
		if _, err := abecs.ParseCommand([]byte(in)); !errors.Is(err, abecs.ErrFormat) {
			t.Errorf("ParseCommand(%q): %v, want ErrFormat", in, err)
		}
	}
	for _, in := range []string{"", "OPN", "OPN00", "OPNabc", "OPN000003ab"} {
		if _, err := abecs.ParseResponse([]byte(in)); !errors.Is(err, abecs.ErrFormat) {
			t.Errorf("ParseResponse(%q): %v, want ErrFormat", in, err)
		}
	}
	if _, err := (abecs.Command{ID: "TOOLONG"}).Append(nil); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := (abecs.Command{ID: "DSP", Blocks: [][]byte{make([]byte, 1000)}}).Append(nil); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("long block: %v", err)
	}
	if _, err := (abecs.Response{ID: "DSP", Status: 1000}).Append(nil); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("bad status: %v", err)
	}
}

func TestStatusError(t *testing.T) {
	cases := []struct {
		code int
		want error
	}{
		{10, abecs.ErrInvalidCall}, {11, abecs.ErrInvalidParameter}, {12, abecs.ErrPadTimeout},
		{13, abecs.ErrCancelled}, {42, abecs.ErrKeyMissing}, {43, abecs.ErrNoCard},
		{60, abecs.ErrMuteCard}, {76, abecs.ErrFallbackAllowed},
	}
	for _, c := range cases {
		var err error = fmt.Errorf("wrapped: %w", &abecs.StatusError{Cmd: "GCR", Code: c.code})
		if !errors.Is(err, c.want) {
			t.Errorf("code %03d does not match %v", c.code, c.want)
		}
		if errors.Is(err, abecs.ErrFormat) {
			t.Errorf("code %03d matches ErrFormat", c.code)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("GCR: pad status %03d", c.code)) {
			t.Errorf("message %q", err)
		}
	}
	err := &abecs.StatusError{Cmd: "GCR", Code: 99}
	if errors.Is(err, abecs.ErrCancelled) || err.Error() != "abecs: GCR: pad status 099" {
		t.Errorf("unknown status: %v", err)
	}
}

const (
	testTrack1 = "B4761739001010010^VISA ACQUIRER TEST/CARD 01^2512201123400001230"
	testTrack2 = "4761739001010010=25122011234000001230"
	testPAN    = "4761739001010010"
)

func TestCardDataRoundTrip(t *testing.T) {
	c := abecs.NewMagstripeCard(testTrack1, testTrack2)
	if c.PAN() != testPAN || c.Expiry() != "2512" || c.ServiceCode() != "201" ||
		c.CardholderName() != "VISA ACQUIRER TEST/CARD 01" || !c.Magstripe() {
		t.Fatalf("NewMagstripeCard: pan ok %v, expiry %q, service %q, name %q",
			c.PAN() == testPAN, c.Expiry(), c.ServiceCode(), c.CardholderName())
	}
	block, err := abecs.AppendCardData(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(block) != 342 {
		t.Fatalf("block is %d bytes, want 342", len(block))
	}
	// Spot-check the layout by hand: card type, track 1 length and start,
	// track 2 at offset 2+1+2+2+2+2+76 = 87.
	if string(block[:2]) != "00" || string(block[9:11]) != fmt.Sprint(len(testTrack1)) ||
		string(block[11:11+len(testTrack1)]) != testTrack1 || string(block[87:89]) != "37" ||
		string(block[89:89+37]) != testTrack2 {
		t.Fatalf("layout wrong")
	}
	back, err := abecs.ParseCardData(block)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip differs: %v vs %v", back, c)
	}
	if back.Track1() != testTrack1 || back.Track2() != testTrack2 {
		t.Fatal("tracks differ")
	}

	// Track 2 only.
	c2 := abecs.NewMagstripeCard("", testTrack2)
	block, err = abecs.AppendCardData(nil, c2)
	if err != nil {
		t.Fatal(err)
	}
	back, err = abecs.ParseCardData(block)
	if err != nil || back.Track1() != "" || back.Track2() != testTrack2 || back.PAN() != testPAN {
		t.Fatalf("track 2 only: %v", err)
	}

	if _, err := abecs.AppendCardData(nil, abecs.NewMagstripeCard("", testTrack2+"1234567890")); err == nil ||
		strings.Contains(err.Error(), testPAN) {
		t.Fatalf("long track 2: %v", err)
	}
}

func TestSensitiveFormatting(t *testing.T) {
	c := abecs.NewMagstripeCard(testTrack1, testTrack2)
	req := abecs.PINRequest{PAN: testPAN, MinLen: 4, MaxLen: 6}
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	logger.Info("x", "card", c, "req", req)
	for _, s := range []string{
		fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c),
		fmt.Sprint(req), fmt.Sprintf("%v %+v %#v %s", req, req, req, req),
		logBuf.String(),
	} {
		if strings.Contains(s, testPAN) || strings.Contains(s, "2512201") {
			t.Errorf("card data leaked: %s", s)
		}
		if !strings.Contains(s, "476173******0010") {
			t.Errorf("masked PAN missing: %s", s)
		}
	}
}

func TestPINRequestRoundTrip(t *testing.T) {
	req := abecs.PINRequest{KeyIndex: 7, PAN: "4012345678909", Line1: "TOTAL 12.34", Line2: "PIN:", MinLen: 4, MaxLen: 8}
	block, err := abecs.AppendPINRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	want := "3" + "07" + strings.Repeat("0", 32) + "13" + "4012345678909      " + "1" + "04" + "08" +
		"TOTAL 12.34     " + "PIN:            "
	if string(block) != want {
		t.Fatalf("block\n%q\nwant\n%q", block, want)
	}
	back, err := abecs.ParsePINRequest(block)
	if err != nil {
		t.Fatal(err)
	}
	if back != req {
		t.Fatalf("round trip: %+v", back)
	}
	// Defaults.
	block, err = abecs.AppendPINRequest(nil, abecs.PINRequest{PAN: "4012345678909"})
	if err != nil {
		t.Fatal(err)
	}
	if back, _ := abecs.ParsePINRequest(block); back.MinLen != 4 || back.MaxLen != 12 {
		t.Fatalf("defaults: %d-%d", back.MinLen, back.MaxLen)
	}
	for _, bad := range []abecs.PINRequest{
		{PAN: "12345"}, {PAN: "4012345678909", KeyIndex: 100}, {PAN: "4012345678909", MinLen: 3},
		{PAN: "4012345678909", MinLen: 8, MaxLen: 6}, {PAN: "4012345678909", Line1: "12345678901234567"},
		{PAN: "40123456789x9"},
	} {
		if _, err := abecs.AppendPINRequest(nil, bad); err == nil {
			t.Errorf("%+v: no error", bad)
		} else if strings.Contains(err.Error(), bad.PAN) && len(bad.PAN) > 10 {
			t.Errorf("error shows the PAN: %v", err)
		}
	}
}

func TestPINResponse(t *testing.T) {
	block := [8]byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A}
	ksn := [10]byte{0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x01}
	b := abecs.AppendPINResponse(nil, block, ksn)
	if string(b) != "1B9C1845EB993A7AFFFF9876543210E00001" {
		t.Fatalf("got %s", b)
	}
	gb, gk, err := abecs.ParsePINResponse(b)
	if err != nil || gb != block || gk != ksn {
		t.Fatalf("parse: %v", err)
	}
	if _, _, err := abecs.ParsePINResponse([]byte("1B9C1845EB993A7XFFFF9876543210E00001")); !errors.Is(err, abecs.ErrFormat) {
		t.Fatalf("bad hex: %v", err)
	}
}

func TestCardRequest(t *testing.T) {
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	b, err := abecs.AppendCardRequest(nil, abecs.CardRequest{AmountMinor: 1234}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := "0000" + "000000001234" + "250314" + "150926" + "0000000000" + "00" + "0"
	if string(b) != want {
		t.Fatalf("got %q want %q", b, want)
	}
	r, err := abecs.ParseCardRequest(b)
	if err != nil || r.AmountMinor != 1234 {
		t.Fatalf("parse: %+v %v", r, err)
	}
	if _, err := abecs.AppendCardRequest(nil, abecs.CardRequest{AmountMinor: -1}, now); err == nil {
		t.Fatal("negative amount accepted")
	}
}

func TestDisplay(t *testing.T) {
	b, err := abecs.AppendDisplay(nil, "TOTAL", "12.34")
	if err != nil || string(b) != "TOTAL           12.34           " {
		t.Fatalf("%q %v", b, err)
	}
	l1, l2, err := abecs.ParseDisplay(b)
	if err != nil || l1 != "TOTAL" || l2 != "12.34" {
		t.Fatalf("%q %q %v", l1, l2, err)
	}
	if _, err := abecs.AppendDisplay(nil, "é", ""); err == nil {
		t.Fatal("non-ASCII accepted")
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("OPN000"))
	f.Add([]byte("ERR010"))
	f.Add([]byte("GPN0000361B9C1845EB993A7AFFFF9876543210E00001"))
	f.Add([]byte("GPN000056A912150391AB65A67E52883D81CE2D15123456789012345600000001"))
	f.Add([]byte("DSP005HELLO000"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := abecs.ParseResponse(in)
		if err != nil {
			return
		}
		out, err := r.Append(nil)
		if err != nil {
			t.Fatalf("parsed response does not encode: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("round trip %q -> %q", in, out)
		}
		for _, b := range r.Blocks {
			abecs.ParseCardData(b)
			abecs.ParsePINResponse(b)
			abecs.ParsePINResponseAES(b)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	f.Add([]byte("OPN"))
	f.Add([]byte("DSP032TOTAL           12.34           "))
	pin, _ := abecs.AppendPINRequest(nil, abecs.PINRequest{PAN: "4012345678909"})
	f.Add(append([]byte("GPN093"), pin...))
	pin, _ = abecs.AppendPINRequest(nil, abecs.PINRequest{PAN: "4111111111111111", AES: true})
	f.Add(append([]byte("GPN093"), pin...))
	gcr, _ := abecs.AppendCardRequest(nil, abecs.CardRequest{AmountMinor: 1}, time.Unix(0, 0))
	f.Add(append([]byte("GCR041"), gcr...))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := abecs.ParseCommand(in)
		if err != nil {
			return
		}
		out, err := c.Append(nil)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("round trip %q -> %q, %v", in, out, err)
		}
		for _, b := range c.Blocks {
			abecs.ParseCardRequest(b)
			abecs.ParseDisplay(b)
			if r, err := abecs.ParsePINRequest(b); err == nil {
				again, err := abecs.AppendPINRequest(nil, r)
				if err != nil {
					t.Fatalf("parsed PIN request does not encode: %v", err)
				}
				if r2, err := abecs.ParsePINRequest(again); err != nil || r2 != r {
					t.Fatalf("PIN request round trip: %v", err)
				}
			}
		}
	})
}

func FuzzParseCardData(f *testing.F) {
	b, _ := abecs.AppendCardData(nil, abecs.NewMagstripeCard(testTrack1, testTrack2))
	f.Add(b)
	f.Add(bytes.Repeat([]byte{'0'}, 342))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := abecs.ParseCardData(in)
		if err != nil {
			return
		}
		out, err := abecs.AppendCardData(nil, c)
		if err != nil {
			t.Fatalf("parsed card data does not encode: %v", err)
		}
		c2, err := abecs.ParseCardData(out)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}
