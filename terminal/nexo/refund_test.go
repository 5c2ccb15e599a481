package nexo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func refundBody(t *testing.T, original string) []byte {
	t.Helper()
	m := validBody(t)
	set(m, "SaleToPOIRequest.PaymentRequest.PaymentData", map[string]any{"PaymentType": "Refund"})
	if original != "" {
		set(m, "SaleToPOIRequest.PaymentRequest.PaymentTransaction.OriginalPOITransaction",
			map[string]any{"POITransactionID": map[string]any{"TransactionID": original, "TimeStamp": "2026-11-21T10:00:00Z"}})
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRefund(t *testing.T) {
	p, err := DecodePayment(refundBody(t, "TERM0001-00000042"), poiid)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Refund || p.Original != "TERM0001-00000042" || p.Amount.Minor != 1250 {
		t.Errorf("linked refund decoded as %+v", p)
	}
	p, err = DecodePayment(refundBody(t, ""), poiid)
	if err != nil || !p.Refund || p.Original != "" {
		t.Errorf("unlinked refund decoded as %+v, %v", p, err)
	}
	if !IsRefund(refundBody(t, "")) {
		t.Error("IsRefund false for a refund")
	}
	b, _ := json.Marshal(validBody(t))
	if p, err := DecodePayment(b, poiid); err != nil || p.Refund || IsRefund(b) {
		t.Errorf("a sale decoded as %+v, %v (IsRefund %v)", p, err, IsRefund(b))
	}
}

func TestDecodeRefundBadInput(t *testing.T) {
	var fe *FieldError
	// An original on a sale is refused: only a refund names one.
	m := validBody(t)
	set(m, "SaleToPOIRequest.PaymentRequest.PaymentTransaction.OriginalPOITransaction",
		map[string]any{"POITransactionID": map[string]any{"TransactionID": "TERM0001-00000042"}})
	b, _ := json.Marshal(m)
	if _, err := DecodePayment(b, poiid); !errors.As(err, &fe) || !strings.Contains(fe.Field, "OriginalPOITransaction") {
		t.Errorf("sale with an original: %v", err)
	}
	for _, bad := range []string{"4761739001010010", strings.Repeat("X", 65), "A\x01B"} {
		if _, err := DecodePayment(refundBody(t, bad), poiid); !errors.As(err, &fe) || !strings.HasSuffix(fe.Field, "POITransactionID.TransactionID") || strings.Contains(err.Error(), "4761739001010010") {
			t.Errorf("original %q: %v", bad, err)
		}
	}
	m = validBody(t)
	set(m, "SaleToPOIRequest.PaymentRequest.PaymentData", map[string]any{"PaymentType": "CashAdvance"})
	b, _ = json.Marshal(m)
	if _, err := DecodePayment(b, poiid); !errors.As(err, &fe) || !strings.Contains(err.Error(), "Refund") {
		t.Errorf("CashAdvance: %v", err)
	}
}
