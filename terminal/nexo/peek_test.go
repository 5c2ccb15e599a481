package nexo_test

import (
	"testing"

	"github.com/posd-dev/posd/terminal/nexo"
)

// PeekRequest reads in one pass what Category and IsRefund read each on its own, and the
// header's SaleID as far as the body can be read: the same answers on good and bad bodies.
func TestPeekRequestAgreesWithItsParts(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		saleID string
	}{
		{"payment", `{"SaleToPOIRequest":{"MessageHeader":{"MessageCategory":"Payment","SaleID":"TILL-1"},"PaymentRequest":{"PaymentData":{"PaymentType":"Normal"}}}}`, "TILL-1"},
		{"refund", `{"SaleToPOIRequest":{"MessageHeader":{"MessageCategory":"Payment","SaleID":"TILL-2"},"PaymentRequest":{"PaymentData":{"PaymentType":"Refund"}}}}`, "TILL-2"},
		{"reversal", `{"SaleToPOIRequest":{"MessageHeader":{"MessageCategory":"Reversal","SaleID":"TILL-3"}}}`, "TILL-3"},
		{"no header", `{"SaleToPOIRequest":{}}`, ""},
		{"not JSON", `{"SaleToPOIRequest":`, ""},
		{"empty", ``, ""},
		// A type error elsewhere: Category and IsRefund give up, the SaleID read before it stands.
		{"category a number", `{"SaleToPOIRequest":{"MessageHeader":{"SaleID":"TILL-4","MessageCategory":7},"PaymentRequest":{"PaymentData":{"PaymentType":"Refund"}}}}`, "TILL-4"},
		{"payment type a number", `{"SaleToPOIRequest":{"MessageHeader":{"SaleID":"TILL-5","MessageCategory":"Reversal"},"PaymentRequest":{"PaymentData":{"PaymentType":1}}}}`, "TILL-5"},
		{"sale id a number", `{"SaleToPOIRequest":{"MessageHeader":{"SaleID":5,"MessageCategory":"Abort"}}}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := nexo.PeekRequest([]byte(c.body))
			want := nexo.Peek{SaleID: c.saleID, Category: nexo.Category([]byte(c.body)), Refund: nexo.IsRefund([]byte(c.body))}
			if got != want {
				t.Errorf("PeekRequest = %+v, want %+v", got, want)
			}
		})
	}
	// The parts are not all empty: the cases above test something.
	if p := nexo.PeekRequest([]byte(cases[1].body)); p.Category != "Payment" || !p.Refund || p.SaleID != "TILL-2" {
		t.Errorf("refund peeked as %+v", p)
	}
	if p := nexo.PeekRequest([]byte(cases[7].body)); p.Category != "Reversal" || p.Refund {
		t.Errorf("a refund flag of the wrong type peeked as %+v", p)
	}
}
