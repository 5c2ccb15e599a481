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

func testAdvice(t testing.TB) iso8583.Advice {
	return iso8583.Advice{
		AmountMinor: 2500, CurrencyNumeric: "978", STAN: 77,
		TransmissionTime: fixedUTC, LocalTime: fixedLocal,
		PAN: mustPAN(t, approvedPAN), Expiry: "3012", EntryMode: "051",
		TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
		ApprovalCode: "Y10077", ResponseCode: "00", Field55: testICC(t),
	}
}

func testReversal(t testing.TB) iso8583.Reversal {
	return iso8583.Reversal{
		STAN: 43, TransmissionTime: fixedUTC.Add(40 * time.Second), LocalTime: fixedLocal,
		OriginalMTI: "0200", OriginalSTAN: 42, OriginalTransmissionTime: fixedUTC,
		AcquiringInstitutionID: "12345", ForwardingInstitutionID: "",
		PAN: mustPAN(t, approvedPAN), Expiry: "3012", AmountMinor: 1234, CurrencyNumeric: "978",
		EntryMode: "021", TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", ReasonCode: iso8583.ReasonLateResponse,
	}
}

func testReconciliation() iso8583.Reconciliation {
	return iso8583.Reconciliation{
		BatchNumber: 7, STAN: 90, TransmissionTime: fixedUTC, TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
		CurrencyNumeric: "978",
		Totals: iso8583.Totals{DebitsCount: 3, DebitsAmount: 4500, DebitReversalsCount: 1, DebitReversalsAmount: 1000,
			CreditsCount: 1, CreditsAmount: 500},
	}
}

func TestAdviceMessage(t *testing.T) {
	a := testAdvice(t)
	m, err := a.Message()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{0: "0220", 2: approvedPAN, 3: "000000", 4: "000000002500", 7: "0314150926", 11: "000077",
		12: "160926", 13: "0314", 14: "3012", 22: "051", 38: "Y10077", 39: "00", 41: "TERM0001", 42: "MERCHANT0000001",
		49: "978", 55: fmt.Sprintf("%X", testICC(t))}
	if got := fieldsOf(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fields\n got %v\nwant %v", got, want)
	}
	a.Repeat = true
	a.Original = &iso8583.Original{MTI: "0100", STAN: 5, TransmissionTime: fixedUTC.Add(-time.Hour)}
	m, err = a.Message()
	if err != nil {
		t.Fatal(err)
	}
	if mti, _ := m.GetMTI(); mti != "0221" {
		t.Errorf("repeat MTI %s", mti)
	}
	if f90, _ := m.GetString(90); f90 != "0100"+"000005"+"0314140926"+"00000000000"+"00000000000" {
		t.Errorf("field 90 %q", f90)
	}
	s := a.String()
	if strings.Contains(s, approvedPAN) || !strings.Contains(s, "476173******0010") || !strings.HasPrefix(s, "0221 ") {
		t.Errorf("String %q", s)
	}
}

func TestReversalMessage(t *testing.T) {
	for _, tt := range []struct {
		advice, repeat bool
		mti            string
	}{{false, false, "0400"}, {false, true, "0401"}, {true, false, "0420"}, {true, true, "0421"}} {
		r := testReversal(t)
		r.Advice, r.Repeat = tt.advice, tt.repeat
		m, err := r.Message()
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]string{0: tt.mti, 2: approvedPAN, 3: "000000", 4: "000000001234", 7: "0314151006", 11: "000043",
			12: "160926", 13: "0314", 14: "3012", 22: "021", 39: "68", 41: "TERM0001", 42: "MERCHANT0000001", 49: "978",
			90: "0200" + "000042" + "0314150926" + "00000012345" + "00000000000"}
		if got := fieldsOf(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s fields\n got %v\nwant %v", tt.mti, got, want)
		}
	}
	// A void's reversal carries no card data: field 90 and the terminal identify the original.
	r := testReversal(t)
	r.PAN, r.Expiry, r.LocalTime, r.EntryMode = card.PAN{}, "", time.Time{}, ""
	m, err := r.Message()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{2, 14, 12, 13, 22} {
		if m.Has(id) {
			t.Errorf("field %d present", id)
		}
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("rev", "r", testReversal(t))
	for _, s := range []string{testReversal(t).String(), logged.String()} {
		if strings.Contains(s, approvedPAN) || !strings.Contains(s, "476173******0010") || !strings.Contains(s, "0314150926") {
			t.Errorf("masked form %q", s)
		}
	}
}

func TestNetworkManagementAndReconciliationMessages(t *testing.T) {
	for _, code := range []string{iso8583.NMSignOn, iso8583.NMSignOff, iso8583.NMEcho} {
		m, err := iso8583.NetworkManagement{Code: code, STAN: 9, TransmissionTime: fixedUTC, TerminalID: "TERM0001"}.Message()
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]string{0: "0800", 7: "0314150926", 11: "000009", 41: "TERM0001", 70: code}
		if got := fieldsOf(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v", code, got)
		}
	}
	m, err := testReconciliation().Message()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{0: "0500", 7: "0314150926", 11: "000090", 41: "TERM0001", 42: "MERCHANT0000001", 50: "978",
		60: "000007", 74: "0000000001", 75: "0000000000", 76: "0000000003", 77: "0000000001",
		86: "0000000000000500", 87: "0000000000000000", 88: "0000000000004500", 89: "0000000000001000",
		97: "D0000000000003000"} // 4500 - 1000 - 500
	if got := fieldsOf(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("0500 fields\n got %v\nwant %v", got, want)
	}
	tot, err := iso8583.ParseTotals(m)
	if err != nil || tot != testReconciliation().Totals {
		t.Errorf("ParseTotals = %+v, %v", tot, err)
	}
	r := testReconciliation()
	r.Totals = iso8583.Totals{CreditsCount: 1, CreditsAmount: 700}
	m, _ = r.Message()
	if v, _ := m.GetString(97); v != "C0000000000000700" {
		t.Errorf("net credit: field 97 %q", v)
	}
}

func TestBuildersReject(t *testing.T) {
	type build func() (*iso8583.Message, error)
	adv := func(edit func(*iso8583.Advice)) build {
		return func() (*iso8583.Message, error) { a := testAdvice(t); edit(&a); return a.Message() }
	}
	rev := func(edit func(*iso8583.Reversal)) build {
		return func() (*iso8583.Message, error) { r := testReversal(t); edit(&r); return r.Message() }
	}
	rec := func(edit func(*iso8583.Reconciliation)) build {
		return func() (*iso8583.Message, error) { r := testReconciliation(); edit(&r); return r.Message() }
	}
	nm := func(n iso8583.NetworkManagement) build { return n.Message }
	tests := []struct {
		name  string
		build build
		field int
		want  error
	}{
		{"advice without PAN", adv(func(a *iso8583.Advice) { a.PAN = card.PAN{} }), 2, iso8583.ErrMissingField},
		{"advice without expiry", adv(func(a *iso8583.Advice) { a.Expiry = "" }), 14, iso8583.ErrInvalidValue},
		{"advice without decision", adv(func(a *iso8583.Advice) { a.ResponseCode = "" }), 39, iso8583.ErrMissingField},
		{"advice bad decision", adv(func(a *iso8583.Advice) { a.ResponseCode = "0" }), 39, iso8583.ErrInvalidValue},
		{"advice short approval code", adv(func(a *iso8583.Advice) { a.ApprovalCode = "Y1" }), 38, iso8583.ErrInvalidLength},
		{"advice no local time", adv(func(a *iso8583.Advice) { a.LocalTime = time.Time{} }), 12, iso8583.ErrMissingField},
		{"advice STAN", adv(func(a *iso8583.Advice) { a.STAN = 0 }), 11, iso8583.ErrInvalidValue},
		{"advice bad original", adv(func(a *iso8583.Advice) { a.Original = &iso8583.Original{MTI: "02"} }), 90, iso8583.ErrInvalidValue},
		{"reversal without original MTI", rev(func(r *iso8583.Reversal) { r.OriginalMTI = "" }), 90, iso8583.ErrInvalidValue},
		{"reversal without original time", rev(func(r *iso8583.Reversal) { r.OriginalTransmissionTime = time.Time{} }), 90, iso8583.ErrMissingField},
		{"reversal without original STAN", rev(func(r *iso8583.Reversal) { r.OriginalSTAN = 0 }), 90, iso8583.ErrInvalidValue},
		{"reversal long institution", rev(func(r *iso8583.Reversal) { r.AcquiringInstitutionID = "123456789012" }), 90, iso8583.ErrInvalidValue},
		{"reversal without reason", rev(func(r *iso8583.Reversal) { r.ReasonCode = "" }), 39, iso8583.ErrMissingField},
		{"reversal without terminal", rev(func(r *iso8583.Reversal) { r.TerminalID = "" }), 41, iso8583.ErrMissingField},
		{"reversal amount", rev(func(r *iso8583.Reversal) { r.AmountMinor = -5 }), 4, iso8583.ErrInvalidValue},
		{"reversal expiry without PAN", rev(func(r *iso8583.Reversal) { r.PAN = card.PAN{} }), 14, iso8583.ErrInvalidValue},
		{"sign-on code", nm(iso8583.NetworkManagement{Code: "999", STAN: 1, TransmissionTime: fixedUTC}), 70, iso8583.ErrInvalidValue},
		{"no code", nm(iso8583.NetworkManagement{STAN: 1, TransmissionTime: fixedUTC}), 70, iso8583.ErrMissingField},
		{"echo without time", nm(iso8583.NetworkManagement{Code: "301", STAN: 1}), 7, iso8583.ErrMissingField},
		{"batch 0", rec(func(r *iso8583.Reconciliation) { r.BatchNumber = 0 }), 60, iso8583.ErrInvalidValue},
		{"negative count", rec(func(r *iso8583.Reconciliation) { r.Totals.DebitsCount = -1 }), 76, iso8583.ErrInvalidValue},
		{"no settlement currency", rec(func(r *iso8583.Reconciliation) { r.CurrencyNumeric = "" }), 50, iso8583.ErrMissingField},
		// Fields that do not fit their definition, found by the pack check of finish.
		{"echo terminal id too long", nm(iso8583.NetworkManagement{Code: "301", STAN: 1, TransmissionTime: fixedUTC, TerminalID: "TERMINAL1"}), 41, iso8583.ErrInvalidLength},
		{"reversal merchant id too long", rev(func(r *iso8583.Reversal) { r.MerchantID = "MERCHANT-0000001" }), 42, iso8583.ErrInvalidLength},
		{"advice terminal id not ans", adv(func(a *iso8583.Advice) { a.TerminalID = "TERM\x01" }), 41, iso8583.ErrInvalidCharacter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.build()
			var fe *iso8583.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want a FieldError for field %d wrapping %v", err, tt.field, tt.want)
			}
			if strings.Contains(err.Error(), approvedPAN) {
				t.Fatalf("error %q shows the PAN", err)
			}
		})
	}
}

// Every MTI's mandatory fields, by removing each in turn from a built message.
func TestCheckMandatoryEveryMTI(t *testing.T) {
	auth, _ := testAuth(t).Message()
	advice, _ := testAdvice(t).Message()
	reversal, _ := testReversal(t).Message()
	recon, _ := testReconciliation().Message()
	echo, _ := iso8583.NetworkManagement{Code: "301", STAN: 1, TransmissionTime: fixedUTC}.Message()
	for _, tt := range []struct {
		msg  *iso8583.Message
		mtis []string
		ids  []int
	}{
		{auth, []string{"0100", "0200"}, []int{3, 4, 7, 11, 12, 13, 22, 41, 42, 49}},
		{advice, []string{"0220", "0221"}, []int{2, 3, 4, 7, 11, 12, 13, 14, 22, 39, 41, 42, 49}},
		{reversal, []string{"0400", "0401", "0420", "0421"}, []int{3, 4, 7, 11, 39, 41, 42, 49, 90}},
		{recon, []string{"0500"}, []int{7, 11, 41, 42, 50, 60, 74, 75, 76, 77, 86, 87, 88, 89, 97}},
		{echo, []string{"0800"}, []int{7, 11, 70}},
	} {
		for _, mti := range tt.mtis {
			tt.msg.MTI(mti)
			if err := iso8583.CheckMandatory(tt.msg); err != nil {
				t.Errorf("%s complete: %v", mti, err)
			}
			for _, id := range tt.ids {
				v, _ := tt.msg.GetBytes(id)
				v = bytes.Clone(v)
				tt.msg.UnsetField(id)
				err := iso8583.CheckMandatory(tt.msg)
				var fe *iso8583.FieldError
				if !errors.As(err, &fe) || fe.Field != id || !errors.Is(err, iso8583.ErrMissingField) {
					t.Errorf("%s without field %d: %v", mti, id, err)
				}
				tt.msg.BinaryField(id, v)
			}
		}
	}
	// No track or PIN data in advices and reversals.
	for _, id := range []int{35, 52} {
		m, _ := testAdvice(t).Message()
		m.BinaryField(id, []byte("4761739001010010=3012"[:8]))
		if err := iso8583.CheckMandatory(m); !errors.Is(err, iso8583.ErrInvalidValue) {
			t.Errorf("advice with field %d: %v", id, err)
		}
	}
	if err := iso8583.CheckMandatory(newMsg(t, "0210", nil)); !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Errorf("a response: %v", err)
	}
}

func TestParseResponse(t *testing.T) {
	m := newMsg(t, "0410", map[int]string{4: "000000001234", 11: "000043", 39: "00", 41: "TERM0001"})
	m.BinaryField(55, []byte{0x91, 0x02, 0xAA, 0xBB})
	r, err := iso8583.ParseResponse(m)
	if err != nil {
		t.Fatal(err)
	}
	if r.MTI != "0410" || r.STAN != 43 || r.ResponseCode != "00" || r.TerminalID != "TERM0001" || r.AmountMinor != 1234 ||
		!bytes.Equal(r.Field55, []byte{0x91, 0x02, 0xAA, 0xBB}) || !r.Approved() {
		t.Fatalf("%+v", r)
	}
	if s := r.String() + fmt.Sprint(r.LogValue()); strings.Contains(s, "AABB") {
		t.Errorf("issuer data shown: %s", s)
	}
	r, err = iso8583.ParseResponse(newMsg(t, "0810", map[int]string{7: "0314150926", 11: "000001", 39: "00", 70: "301"}))
	if err != nil || r.NetworkCode != "301" || r.TerminalID != "" {
		t.Errorf("0810: %+v, %v", r, err)
	}
	for _, bad := range []*iso8583.Message{
		newMsg(t, "0400", map[int]string{11: "000001", 39: "00"}), // a request
		newMsg(t, "0430", map[int]string{39: "00"}),               // no STAN
		newMsg(t, "0430", map[int]string{11: "000001"}),           // no response code
		nil,
	} {
		if _, err := iso8583.ParseResponse(bad); err == nil {
			t.Errorf("ParseResponse(%s) succeeded", iso8583.Summary(bad))
		}
	}
}

func TestParseOriginal(t *testing.T) {
	o := testReversal(t).Original()
	f90, err := o.Field90()
	if err != nil {
		t.Fatal(err)
	}
	back, err := iso8583.ParseOriginal(f90, fixedUTC.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if back.MTI != "0200" || back.STAN != 42 || !back.TransmissionTime.Equal(fixedUTC) || back.AcquiringID != "00000012345" {
		t.Fatalf("%+v", back)
	}
	// Late December read early in January belongs to the year before.
	o = iso8583.Original{MTI: "0200", STAN: 1, TransmissionTime: time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC)}
	f90, _ = o.Field90()
	back, err = iso8583.ParseOriginal(f90, time.Date(2025, 1, 1, 0, 5, 0, 0, time.UTC))
	if err != nil || back.TransmissionTime.Year() != 2024 {
		t.Fatalf("%+v, %v", back, err)
	}
	for _, bad := range []string{"", "0200", strings.Repeat("0", 42), "0200000001" + "1399150926" + strings.Repeat("0", 22)} {
		if _, err := iso8583.ParseOriginal(bad, fixedUTC); err == nil {
			t.Errorf("ParseOriginal(%q) succeeded", bad)
		}
	}
}
