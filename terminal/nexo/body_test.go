package nexo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBodyAgreesWithDecodingAgain: the body decoded once by ReadBody tells the guard and
// the handler what PeekRequest, Category and DecodePayment of the bytes tell, on good and
// bad bodies: the role the guard checks is the request the handler runs.
func TestBodyAgreesWithDecodingAgain(t *testing.T) {
	good, _ := json.Marshal(validBody(t))
	refund := validBody(t)
	set(refund, "SaleToPOIRequest.PaymentRequest.PaymentData", map[string]any{"PaymentType": "Refund"})
	rb, _ := json.Marshal(refund)
	badAmount := validBody(t)
	set(badAmount, "SaleToPOIRequest.PaymentRequest.PaymentTransaction.AmountsReq.RequestedAmount", "12.50")
	ab, _ := json.Marshal(badAmount)
	cases := map[string]string{
		"payment":             string(good),
		"refund":              string(rb),
		"amount a string":     string(ab),
		"data after it":       string(good) + ` {}`,
		"not JSON":            `{"SaleToPOIRequest":`,
		"empty":               ``,
		"no request":          `{}`,
		"category a number":   `{"SaleToPOIRequest":{"MessageHeader":{"SaleID":"TILL-4","MessageCategory":7},"PaymentRequest":{"PaymentData":{"PaymentType":"Refund"}}}}`,
		"payment type number": `{"SaleToPOIRequest":{"MessageHeader":{"SaleID":"TILL-5","MessageCategory":"Reversal"},"PaymentRequest":{"PaymentData":{"PaymentType":1}}}}`,
		"reversal":            `{"SaleToPOIRequest":{"MessageHeader":{"MessageCategory":"Reversal","SaleID":"TILL-3"}}}`,
		"keys in lower case":  strings.ReplaceAll(string(rb), `"PaymentType"`, `"paymenttype"`),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/nexo", strings.NewReader(raw))
			b, err := ReadBody(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.Body != b {
				t.Error("ReadBody did not set the request's body")
			}
			if again, err := ReadBody(r); err != nil || again != b {
				t.Errorf("ReadBody again = %p, %v; want the same body", again, err)
			}
			if got, want := b.Peek(), PeekRequest([]byte(raw)); got != want {
				t.Errorf("Peek = %+v, PeekRequest = %+v", got, want)
			}
			if got, want := b.category(), Category([]byte(raw)); got != want {
				t.Errorf("category = %q, Category = %q", got, want)
			}
			p, err := b.payment(poiid)
			wp, werr := DecodePayment([]byte(raw), poiid)
			if fmt.Sprint(err) != fmt.Sprint(werr) || fmt.Sprintf("%+v", p) != fmt.Sprintf("%+v", wp) {
				t.Errorf("payment = %+v, %v; DecodePayment = %+v, %v", p, err, wp, werr)
			}
		})
	}
	r := httptest.NewRequest("POST", "/nexo", strings.NewReader(string(rb)))
	if b, err := ReadBody(r); err != nil || !b.Peek().Refund || b.Peek().Category != "Payment" || b.env == nil {
		t.Errorf("a refund read as %+v, %v", b.Peek(), err)
	}
}

func TestReadBodyTooLarge(t *testing.T) {
	r := httptest.NewRequest("POST", "/nexo", strings.NewReader(strings.Repeat(" ", MaxBody+1)))
	if _, err := ReadBody(r); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadBody of %d bytes: %v, want ErrTooLarge", MaxBody+1, err)
	}
	r = httptest.NewRequest("POST", "/nexo", strings.NewReader(strings.Repeat(" ", MaxBody)))
	if _, err := ReadBody(r); err != nil {
		t.Errorf("ReadBody of %d bytes: %v", MaxBody, err)
	}
}
