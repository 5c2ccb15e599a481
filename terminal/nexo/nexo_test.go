package nexo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/money"
)

const poiid = "POSD-T0000001"

func validBody(t *testing.T) map[string]any {
	t.Helper()
	eur, _ := money.LookupCurrency("EUR")
	amt, _ := money.ParseDecimal("12.50", eur)
	b, err := json.Marshal(NewPaymentRequest("TILL1", "S0001", poiid, "R-1", amt, time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// set walks a dotted path in a decoded JSON object and sets (or, with nil, deletes) a value.
func set(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		m = m[p].(map[string]any)
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = v
}

func TestDecodePaymentValid(t *testing.T) {
	b, _ := json.Marshal(validBody(t))
	p, err := DecodePayment(b, poiid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Amount.Minor != 1250 || p.Amount.Currency.Code != "EUR" || p.Header.SaleID != "TILL1" || p.SaleTransactionID.TransactionID != "R-1" {
		t.Errorf("decoded %+v", p)
	}
	// Adyen-style requests carry more fields than posd needs; those are ignored.
	m := validBody(t)
	set(m, "SaleToPOIRequest.PaymentRequest.SaleData.SaleToAcquirerData", "x=y")
	b, _ = json.Marshal(m)
	if _, err := DecodePayment(b, poiid); err != nil {
		t.Errorf("extra nexo field refused: %v", err)
	}
}

func TestDecodePaymentRefusals(t *testing.T) {
	const hdr = "SaleToPOIRequest.MessageHeader."
	const amt = "SaleToPOIRequest.PaymentRequest.PaymentTransaction.AmountsReq."
	for _, tc := range []struct {
		path  string
		value any
		field string
	}{
		{hdr + "MessageCategory", "Admin", "MessageHeader.MessageCategory"},
		{hdr + "MessageType", "Response", "MessageHeader.MessageType"},
		{hdr + "MessageClass", nil, "MessageHeader.MessageClass"},
		{hdr + "SaleID", "", "MessageHeader.SaleID"},
		{hdr + "ServiceID", "01234567890", "MessageHeader.ServiceID"},
		{hdr + "POIID", "OTHER", "MessageHeader.POIID"},
		{hdr + "ProtocolVersion", "2.0", "MessageHeader.ProtocolVersion"},
		{"SaleToPOIRequest.PaymentRequest", nil, "PaymentRequest"},
		{"SaleToPOIRequest.PaymentRequest.SaleData.SaleTransactionID.TransactionID", "", "SaleTransactionID.TransactionID"},
		{"SaleToPOIRequest.PaymentRequest.SaleData.SaleTransactionID.TimeStamp", "yesterday", "SaleTransactionID.TimeStamp"},
		{amt + "Currency", "XYZ", "AmountsReq.Currency"},
		{amt + "RequestedAmount", nil, "RequestedAmount"},
		{amt + "RequestedAmount", json.Number("-5"), "RequestedAmount"},
		{amt + "RequestedAmount", json.Number("0"), "RequestedAmount"},
		{amt + "RequestedAmount", json.Number("12.345"), "RequestedAmount"},
		{amt + "RequestedAmount", json.Number("1e3"), "RequestedAmount"},
		{amt + "RequestedAmount", json.Number("99999999999"), "RequestedAmount"},
		{amt + "RequestedAmount", true, "RequestedAmount"},
		{"SaleToPOIRequest.PaymentRequest.PaymentData", map[string]any{"PaymentType": "PaidOut"}, "PaymentType"},
	} {
		m := validBody(t)
		set(m, tc.path, tc.value)
		b, _ := json.Marshal(m)
		_, err := DecodePayment(b, poiid)
		if err == nil {
			t.Errorf("%s=%v accepted", tc.path, tc.value)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s=%v: error %q does not name %s", tc.path, tc.value, err, tc.field)
		}
	}
	for _, body := range []string{"", "[]", "{", `{"SaleToPOIRequest": 5}`, `{"Other": {}}`, `{"SaleToPOIRequest":{}} {}`} {
		if _, err := DecodePayment([]byte(body), poiid); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
	var fe *FieldError
	if _, err := DecodePayment([]byte(`{"Other": {}}`), poiid); !errors.As(err, &fe) || fe.Field != "SaleToPOIRequest" {
		t.Errorf("missing envelope: %v", err)
	}
}

func FuzzDecodePayment(f *testing.F) {
	f.Add([]byte(`{"SaleToPOIRequest":{"MessageHeader":{"MessageClass":"Service","MessageCategory":"Payment","MessageType":"Request","SaleID":"A","ServiceID":"1","POIID":"POSD-T0000001"},"PaymentRequest":{"SaleData":{"SaleTransactionID":{"TransactionID":"1"}},"PaymentTransaction":{"AmountsReq":{"Currency":"EUR","RequestedAmount":1.5}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePayment(b, poiid)
		if err == nil && (p.Amount.Minor <= 0 || p.Amount.Minor > money.MaxMinor || p.Header.POIID != poiid) {
			t.Fatalf("accepted an invalid payment: %+v", p)
		}
	})
}

func TestDecodeStatusAndAbortReferences(t *testing.T) {
	ref := func(m *MessageReference) Envelope {
		return NewTransactionStatusRequest("TILL1", "S0002", poiid, m)
	}
	body := func(e Envelope) []byte { b, _ := json.Marshal(e); return b }
	q, err := DecodeTransactionStatus(body(ref(&MessageReference{MessageCategory: "Payment", ServiceID: "S0001"})), poiid)
	if err != nil || q.Ref != (Reference{SaleID: "TILL1", ServiceID: "S0001"}) {
		t.Errorf("by ServiceID: %+v, %v (SaleID defaults to the header's)", q, err)
	}
	q, err = DecodeTransactionStatus(body(ref(&MessageReference{SaleID: "TILL2", SaleTransactionID: &TransactionID{TransactionID: "R-1"}})), poiid)
	if err != nil || q.Ref != (Reference{SaleID: "TILL2", SaleTransactionID: "R-1"}) {
		t.Errorf("by SaleTransactionID: %+v, %v", q, err)
	}
	for _, c := range []struct {
		ref   *MessageReference
		field string
	}{
		{nil, "TransactionStatusRequest.MessageReference"},
		{&MessageReference{}, "TransactionStatusRequest.MessageReference.ServiceID"},
		{&MessageReference{ServiceID: "12345678901"}, "TransactionStatusRequest.MessageReference.ServiceID"},
		{&MessageReference{ServiceID: "S\x01"}, "TransactionStatusRequest.MessageReference.ServiceID"},
		{&MessageReference{MessageCategory: "Loyalty", ServiceID: "S1"}, "TransactionStatusRequest.MessageReference.MessageCategory"},
		{&MessageReference{ServiceID: "S1", SaleTransactionID: &TransactionID{TransactionID: "R"}}, "TransactionStatusRequest.MessageReference"},
		{&MessageReference{SaleTransactionID: &TransactionID{}}, "TransactionStatusRequest.MessageReference.SaleTransactionID.TransactionID"},
		{&MessageReference{ServiceID: "S1", POIID: "OTHER"}, "TransactionStatusRequest.MessageReference.POIID"},
	} {
		_, err := DecodeTransactionStatus(body(ref(c.ref)), poiid)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("reference %+v: %v, want a FieldError naming %s", c.ref, err, c.field)
		}
	}
	a, err := DecodeAbort(body(NewAbortRequest("TILL1", "S0003", poiid, &MessageReference{ServiceID: "S0001"}, "MerchantAbort")), poiid)
	if err != nil || a.Ref.ServiceID != "S0001" || a.Reason != "MerchantAbort" {
		t.Errorf("abort: %+v, %v", a, err)
	}
	_, err = DecodeAbort(body(NewAbortRequest("TILL1", "S0003", poiid, &MessageReference{ServiceID: "S0001"}, "")), poiid)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "AbortRequest.AbortReason" {
		t.Errorf("abort without a reason: %v", err)
	}
}

// Till-supplied text is data, not trusted: an identifier holding what looks like a card
// number (13-19 digits passing Luhn) is refused before it reaches the log or the journal,
// and an error quotes at most 32 characters of any input.
func TestTillTextIsNotTrusted(t *testing.T) {
	for _, c := range []struct {
		path, value string
		refused     bool
	}{
		{"SaleToPOIRequest.PaymentRequest.SaleData.SaleTransactionID.TransactionID", "R-4761739001010010", true},
		{"SaleToPOIRequest.PaymentRequest.SaleData.SaleTransactionID.TransactionID", "4761739001010010", true},
		{"SaleToPOIRequest.PaymentRequest.SaleData.SaleTransactionID.TransactionID", "ORDER-4761739001010011", false}, // fails Luhn: a plain number
		{"SaleToPOIRequest.PaymentRequest.SaleData.SaleTransactionID.TransactionID", "ORDER-123456789012", false},     // 12 digits
		{"SaleToPOIRequest.MessageHeader.SaleID", "T4761739001010010", true},
		{"SaleToPOIRequest.MessageHeader.SaleID", "TILL\x01", true},
	} {
		m := validBody(t)
		set(m, c.path, c.value)
		b, _ := json.Marshal(m)
		_, err := DecodePayment(b, poiid)
		if (err != nil) != c.refused {
			t.Errorf("%s = %q: err %v, refused want %v", c.path, c.value, err, c.refused)
		}
		if err != nil && strings.Contains(err.Error(), "4761739001010010") {
			t.Errorf("the error quotes the card number: %v", err)
		}
	}
	m := validBody(t)
	set(m, "SaleToPOIRequest.PaymentRequest.PaymentTransaction.AmountsReq.RequestedAmount", json.Number(strings.Repeat("9", 60000)))
	b, _ := json.Marshal(m)
	if _, err := DecodePayment(b, poiid); err == nil || len(err.Error()) > 200 {
		t.Errorf("an over-long amount: error of %d characters, want a short one", len(err.Error()))
	}
}
