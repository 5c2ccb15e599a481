package nexo

import (
	"encoding/json"
	"time"

	"github.com/posd-dev/posd/terminal/money"
)

// NewPaymentRequest builds the envelope a till sends for a sale of amount.
func NewPaymentRequest(saleID, serviceID, poiid, saleTransactionID string, amount money.Amount, now time.Time) Envelope {
	pr := &PaymentRequest{}
	pr.SaleData.SaleTransactionID = TransactionID{TransactionID: saleTransactionID, TimeStamp: now.UTC().Format(time.RFC3339)}
	pr.PaymentTransaction.AmountsReq.Currency = amount.Currency.Code
	pr.PaymentTransaction.AmountsReq.RequestedAmount = json.Number(amount.Decimal())
	return Envelope{Request: &SaleToPOIRequest{
		MessageHeader: MessageHeader{
			ProtocolVersion: "3.0", MessageClass: "Service", MessageCategory: "Payment", MessageType: "Request",
			SaleID: saleID, ServiceID: serviceID, POIID: poiid,
		},
		PaymentRequest: pr,
	}}
}

// NewRefundRequest builds the envelope a till sends for a refund of amount: linked to the
// sale original (its POITransactionID), or unlinked when original is "".
func NewRefundRequest(saleID, serviceID, poiid, saleTransactionID, original string, amount money.Amount, now time.Time) Envelope {
	env := NewPaymentRequest(saleID, serviceID, poiid, saleTransactionID, amount, now)
	pr := env.Request.PaymentRequest
	pr.PaymentData = &struct {
		PaymentType string `json:"PaymentType,omitempty"`
	}{PaymentType: "Refund"}
	if original != "" {
		pr.PaymentTransaction.OriginalPOITransaction = &struct {
			POITransactionID TransactionID `json:"POITransactionID"`
		}{POITransactionID: TransactionID{TransactionID: original}}
	}
	return env
}

// NewReversalRequest builds the envelope a till sends to void the payment poiTxnID.
func NewReversalRequest(saleID, serviceID, poiid, poiTxnID, reason string) Envelope {
	rr := &ReversalRequest{ReversalReason: reason}
	rr.OriginalPOITransaction.POITransactionID = TransactionID{TransactionID: poiTxnID}
	return Envelope{Request: &SaleToPOIRequest{
		MessageHeader: MessageHeader{
			ProtocolVersion: "3.0", MessageClass: "Service", MessageCategory: "Reversal", MessageType: "Request",
			SaleID: saleID, ServiceID: serviceID, POIID: poiid,
		},
		ReversalRequest: rr,
	}}
}

// NewTransactionStatusRequest builds the envelope a till sends to ask what became of the
// request ref names.
func NewTransactionStatusRequest(saleID, serviceID, poiid string, ref *MessageReference) Envelope {
	return Envelope{Request: &SaleToPOIRequest{
		MessageHeader: MessageHeader{
			ProtocolVersion: "3.0", MessageClass: "Service", MessageCategory: "TransactionStatus", MessageType: "Request",
			SaleID: saleID, ServiceID: serviceID, POIID: poiid,
		},
		TransactionStatusRequest: &TransactionStatusRequest{MessageReference: ref},
	}}
}

// NewAbortRequest builds the envelope a till sends to stop the running request ref names.
func NewAbortRequest(saleID, serviceID, poiid string, ref *MessageReference, reason string) Envelope {
	return Envelope{Request: &SaleToPOIRequest{
		MessageHeader: MessageHeader{
			ProtocolVersion: "3.0", MessageClass: "Service", MessageCategory: "Abort", MessageType: "Request",
			SaleID: saleID, ServiceID: serviceID, POIID: poiid,
		},
		AbortRequest: &AbortRequest{MessageReference: ref, AbortReason: reason},
	}}
}
