package iso8583_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

func fieldsOf(t *testing.T, m *iso8583.Message) map[int]string {
	t.Helper()
	out := map[int]string{}
	if mti, err := m.GetMTI(); err == nil && m.Has(0) {
		out[0] = mti
	}
	for id := range m.Present() {
		s, err := m.GetString(id)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	return out
}

func TestAuthorizationMessageKeyed(t *testing.T) {
	m, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{
		0:  "0200",
		2:  approvedPAN,
		3:  "000000",
		4:  "000000001234",
		7:  "0314150926", // UTC
		11: "000042",
		12: "160926", // local time in CET (UTC+1)
		13: "0314",
		14: "3012",
		22: "012",
		41: "TERM0001",
		42: "MERCHANT0000001",
		49: "978",
	}
	got := fieldsOf(t, m)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fields\n got %v\nwant %v", got, want)
	}
}

func TestAuthorizationMessageTrack2AndPIN(t *testing.T) {
	a := testAuth(t)
	a.MTI = "0100"
	a.Track2 = testTrack2
	a.EntryMode = "021"
	a.PINBlock = []byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A}
	a.KSN = "ffff9876543210e00001"
	m, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	got := fieldsOf(t, m)
	if _, ok := got[2]; ok {
		t.Error("field 2 present with track 2")
	}
	if _, ok := got[14]; ok {
		t.Error("field 14 present with track 2")
	}
	for id, want := range map[int]string{0: "0100", 35: testTrack2, 52: "1B9C1845EB993A7A", 62: "FFFF9876543210E00001"} {
		if got[id] != want {
			t.Errorf("field %d = %q, want %q", id, got[id], want)
		}
	}
}

func TestAuthorizationMessageRejects(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*iso8583.Authorization)
		field int
		want  error
	}{
		{"MTI", func(a *iso8583.Authorization) { a.MTI = "0400" }, 0, iso8583.ErrInvalidValue},
		{"no terminal id", func(a *iso8583.Authorization) { a.TerminalID = "" }, 41, iso8583.ErrMissingField},
		{"no merchant id", func(a *iso8583.Authorization) { a.MerchantID = "" }, 42, iso8583.ErrMissingField},
		{"no currency", func(a *iso8583.Authorization) { a.CurrencyNumeric = "" }, 49, iso8583.ErrMissingField},
		{"no entry mode", func(a *iso8583.Authorization) { a.EntryMode = "" }, 22, iso8583.ErrMissingField},
		{"no STAN", func(a *iso8583.Authorization) { a.STAN = 0 }, 11, iso8583.ErrInvalidValue},
		{"STAN too big", func(a *iso8583.Authorization) { a.STAN = 1_000_000 }, 11, iso8583.ErrInvalidValue},
		{"negative amount", func(a *iso8583.Authorization) { a.AmountMinor = -1 }, 4, iso8583.ErrInvalidValue},
		{"no transmission time", func(a *iso8583.Authorization) { a.TransmissionTime = time.Time{} }, 7, iso8583.ErrMissingField},
		{"no card", func(a *iso8583.Authorization) { a.PAN = card.PAN{} }, 2, iso8583.ErrMissingField},
		{"bad expiry", func(a *iso8583.Authorization) { a.Expiry = "3013" }, 14, iso8583.ErrInvalidValue},
		{"currency letters", func(a *iso8583.Authorization) { a.CurrencyNumeric = "EUR" }, 49, iso8583.ErrInvalidCharacter},
		{"terminal id too long", func(a *iso8583.Authorization) { a.TerminalID = "TERMINAL1" }, 41, iso8583.ErrInvalidLength},
		{"short PIN block", func(a *iso8583.Authorization) { a.PINBlock = []byte{1}; a.KSN = "FFFF9876543210E00001" }, 52, iso8583.ErrInvalidLength},
		{"PIN block without KSN", func(a *iso8583.Authorization) { a.PINBlock = make([]byte, 8) }, 62, iso8583.ErrInvalidValue},
		{"KSN without PIN block", func(a *iso8583.Authorization) { a.KSN = "FFFF9876543210E00001" }, 62, iso8583.ErrInvalidValue},
		{"track with sentinels", func(a *iso8583.Authorization) { a.Track2 = ";" + testTrack2 + "?" }, 35, iso8583.ErrInvalidValue},
		{"track of another card", func(a *iso8583.Authorization) { a.Track2 = lowFundsPAN + "=30121010000000000" }, 35, iso8583.ErrInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testAuth(t)
			tt.edit(&a)
			_, err := a.Message()
			var fe *iso8583.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want a FieldError for field %d wrapping %v", err, tt.field, tt.want)
			}
			if strings.Contains(err.Error(), approvedPAN) || strings.Contains(err.Error(), lowFundsPAN) {
				t.Fatalf("error %q shows a PAN", err)
			}
		})
	}
}

func TestCheckMandatory(t *testing.T) {
	full := map[int]string{3: "000000", 4: "000000000100", 7: "0314150926", 11: "000001", 12: "150926",
		13: "0314", 22: "021", 35: testTrack2, 41: "TERM0001", 42: "MERCHANT0000001", 49: "978"}
	if err := iso8583.CheckMandatory(newMsg(t, "0200", full)); err != nil {
		t.Fatalf("complete 0200: %v", err)
	}
	for _, id := range []int{3, 4, 7, 11, 12, 13, 22, 35, 41, 42, 49} {
		fields := map[int]string{}
		for k, v := range full {
			if k != id {
				fields[k] = v
			}
		}
		err := iso8583.CheckMandatory(newMsg(t, "0200", fields))
		var fe *iso8583.FieldError
		want := id
		if id == 35 {
			want = 2 // "field 2 or field 35"
		}
		if !errors.As(err, &fe) || fe.Field != want || !errors.Is(err, iso8583.ErrMissingField) {
			t.Errorf("without field %d: err = %v, want missing field %d", id, err, want)
		}
	}
	if err := iso8583.CheckMandatory(newMsg(t, "0999", full)); !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Errorf("unknown MTI: err = %v, want ErrUnsupportedField", err)
	}
}

func TestAuthorizationStringAndLogValueAreMasked(t *testing.T) {
	a := testAuth(t)
	a.PINBlock = []byte{0x1B, 0x9C, 0x18, 0x45, 0xEB, 0x99, 0x3A, 0x7A}
	a.KSN = "FFFF9876543210E00001"
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("sale", "auth", a)
	for name, s := range map[string]string{"String": a.String(), "%v": fmt.Sprintf("%v", a), "slog": logged.String()} {
		if strings.Contains(s, approvedPAN) || strings.Contains(s, "1B9C1845") || strings.Contains(strings.ToUpper(s), "1B9C") {
			t.Errorf("%s shows card or PIN data: %s", name, s)
		}
		if !strings.Contains(s, "476173******0010") {
			t.Errorf("%s lacks the masked PAN: %s", name, s)
		}
	}

	a.PAN = card.PAN{}
	a.Track2 = testTrack2
	if s := a.String(); strings.Contains(s, "3012101") || strings.Contains(s, approvedPAN) || !strings.Contains(s, "476173******0010") {
		t.Errorf("String with track 2 = %q", s)
	}
}

func TestParseAuthResponse(t *testing.T) {
	m := newMsg(t, "0210", map[int]string{4: "000000001234", 11: "000042", 37: "503415000001", 38: "000001", 39: "00", 41: "TERM0001"})
	r, err := iso8583.ParseAuthResponse(m)
	if err != nil {
		t.Fatal(err)
	}
	want := iso8583.AuthResponse{MTI: "0210", ResponseCode: "00", ApprovalCode: "000001", RRN: "503415000001", TerminalID: "TERM0001", STAN: 42, AmountMinor: 1234}
	if r != want {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
	if !r.Approved() {
		t.Error("00 not approved")
	}
	for _, rc := range []string{"05", "10", "51", "91"} {
		if (iso8583.AuthResponse{ResponseCode: rc}).Approved() {
			t.Errorf("%s approved", rc)
		}
	}

	for id, wantErr := range map[int]error{39: iso8583.ErrMissingField, 11: iso8583.ErrMissingField, 41: iso8583.ErrMissingField} {
		m := newMsg(t, "0210", map[int]string{11: "000042", 39: "00", 41: "TERM0001"})
		m.UnsetField(id)
		_, err := iso8583.ParseAuthResponse(m)
		var fe *iso8583.FieldError
		if !errors.As(err, &fe) || fe.Field != id || !errors.Is(err, wantErr) {
			t.Errorf("without field %d: err = %v", id, err)
		}
	}
	if _, err := iso8583.ParseAuthResponse(newMsg(t, "0200", map[int]string{11: "000042", 39: "00", 41: "T"})); !errors.Is(err, iso8583.ErrInvalidValue) {
		t.Errorf("0200 parsed as a response: err = %v", err)
	}
}

func TestResponseText(t *testing.T) {
	for code, want := range map[string]string{
		"00": "approved", "14": "invalid card number", "30": "format error", "51": "insufficient funds",
		"54": "expired card", "55": "incorrect PIN", "91": "issuer or switch inoperative", "96": "system malfunction",
		"Z9": "unknown response code",
	} {
		if got := iso8583.ResponseText(code); got != want {
			t.Errorf("ResponseText(%q) = %q, want %q", code, got, want)
		}
	}
}

func TestResponseMTI(t *testing.T) {
	for req, want := range map[string]string{
		"0100": "0110", "0200": "0210", "0220": "0230", "0221": "0230", "0400": "0410",
		"0420": "0430", "0421": "0430", "0500": "0510", "0800": "0810", "0202": "0212",
	} {
		got, err := iso8583.ResponseMTI(req)
		if err != nil || got != want {
			t.Errorf("ResponseMTI(%q) = %q, %v; want %q", req, got, err, want)
		}
	}
	for _, bad := range []string{"0210", "0110", "0430", "020", "02OO", ""} {
		if _, err := iso8583.ResponseMTI(bad); err == nil {
			t.Errorf("ResponseMTI(%q) succeeded", bad)
		}
	}
}

// The messages Authorization builds can be read back by moov on our spec: a sanity check
// that they are ordinary moov messages.
func TestAuthorizationMessageIsPlainMoov(t *testing.T) {
	m, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	b, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	other, err := iso8583.Unpack(iso8583.DefaultSpec(), b)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := other.GetString(4); s != "000000001234" {
		t.Fatalf("field 4 = %q", s)
	}
}

func TestAuthorizationPANSequence(t *testing.T) {
	a := iso8583.Authorization{MTI: "0200", AmountMinor: 100, CurrencyNumeric: "978", STAN: 1, TransmissionTime: time.Now(), LocalTime: time.Now(),
		PAN: mustPAN(t, "4761739001010010"), Expiry: "3012", EntryMode: "051", TerminalID: "T1", MerchantID: "M1", Field55: []byte{0x9F, 0x26, 0x01, 0x00}, PANSequence: "001"}
	msg, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := msg.GetString(23); v != "001" {
		t.Errorf("field 23 = %q, want 001", v)
	}
	for _, bad := range []string{"1", "0001", "0a1"} {
		a.PANSequence = bad
		var fe *iso8583.FieldError
		if _, err := a.Message(); !errors.As(err, &fe) || fe.Field != 23 {
			t.Errorf("PANSequence %q: err = %v, want a field 23 error", bad, err)
		}
	}
}
