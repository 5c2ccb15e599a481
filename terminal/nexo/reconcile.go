package nexo

// The day's totals and close in nexo terms: GetTotals (the open batch's totals) and
// Reconciliation (ReconciliationType "AcquirerReconciliation": the batch close).

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/money"
)

// GetTotalsRequest asks for the open batch's totals (MessageCategory "GetTotals"). posd
// breaks totals down per card brand only; TotalDetails and TotalFilter are accepted and not
// applied.
//
// A plain value: safe for concurrent use when not modified.
type GetTotalsRequest struct {
	TotalDetails []string        `json:"TotalDetails,omitempty"`
	TotalFilter  json.RawMessage `json:"TotalFilter,omitempty"`
}

// GetTotalsResponse answers a GetTotalsRequest: POIReconciliationID is the open batch's
// number.
//
// A plain value: safe for concurrent use when not modified.
type GetTotalsResponse struct {
	Response            Response            `json:"Response"`
	POIReconciliationID string              `json:"POIReconciliationID"`
	TransactionTotals   []TransactionTotals `json:"TransactionTotals,omitempty"`
}

// TransactionTotals are the totals of one card brand.
//
// A plain value: safe for concurrent use when not modified.
type TransactionTotals struct {
	PaymentInstrumentType string          `json:"PaymentInstrumentType"` // "Card"
	CardBrand             string          `json:"CardBrand,omitempty"`   // "Visa", "Mastercard", "Amex", "Other"
	PaymentCurrency       string          `json:"PaymentCurrency,omitempty"`
	PaymentTotals         []PaymentTotals `json:"PaymentTotals"`
	// OfflinePending, posd's extension, are the offline approvals whose advice the host
	// has not acknowledged: not in PaymentTotals, since the host does not know them yet.
	OfflinePending *PaymentTotals `json:"OfflinePending,omitempty"`
}

// PaymentTotals are the count and amount of one TransactionType: "Debit" (sales),
// "Credit" (refunds), "ReverseDebit", "ReverseCredit" (their reversals).
//
// A plain value: safe for concurrent use when not modified.
type PaymentTotals struct {
	TransactionType   string      `json:"TransactionType"`
	TransactionCount  int64       `json:"TransactionCount"`
	TransactionAmount json.Number `json:"TransactionAmount"` // major units
}

// ReconciliationRequest asks for the batch close (MessageCategory "Reconciliation"); posd
// knows ReconciliationType "AcquirerReconciliation".
//
// A plain value: safe for concurrent use when not modified.
type ReconciliationRequest struct {
	ReconciliationType  string   `json:"ReconciliationType"`
	AcquirerID          []string `json:"AcquirerID,omitempty"`
	POIReconciliationID string   `json:"POIReconciliationID,omitempty"`
}

// ReconciliationResponse answers a ReconciliationRequest: TransactionTotals are those of
// the closed batch (when Success). POIReconciliationID is absent, as nexo has it for an
// AcquirerReconciliation; the batch number is in Report. AdditionalResponse says the
// outcome in words, differences included.
//
// A plain value: safe for concurrent use when not modified.
type ReconciliationResponse struct {
	Response           Response            `json:"Response"`
	ReconciliationType string              `json:"ReconciliationType"`
	TransactionTotals  []TransactionTotals `json:"TransactionTotals,omitempty"`
	// Report, posd's extension, is the close's report: set when the close ran (or failed
	// after its intent was journaled).
	Report *ReconciliationReport `json:"POSDReconciliationReport,omitempty"`
}

// ReconciliationReport is posd's report of a batch close: the host's answer, whether the
// batch was uploaded, every difference the upload found (the automatic reconciliation),
// and the audit chain's head after the close.
//
// A plain value: safe for concurrent use when not modified.
type ReconciliationReport struct {
	Batch        uint64       `json:"Batch"`
	ResponseCode string       `json:"ResponseCode,omitempty"` // ISO 8583 field 39 of the last 0510
	Resumed      bool         `json:"Resumed,omitempty"`      // a close left pending was finished
	Uploaded     bool         `json:"Uploaded,omitempty"`     // out of balance: the batch was uploaded
	Summary      string       `json:"Summary,omitempty"`      // the totals sent, in words
	Differences  []Difference `json:"Differences,omitempty"`
	AuditSeq     uint64       `json:"AuditSeq,omitempty"`
	AuditHead    string       `json:"AuditHead,omitempty"`
}

// Difference is one transaction the host did not have, or had differently.
//
// A plain value: safe for concurrent use when not modified.
type Difference struct {
	POITransactionID string      `json:"POITransactionID"`
	STAN             string      `json:"STAN"`
	MaskedPan        string      `json:"MaskedPan,omitempty"`
	Amount           json.Number `json:"Amount"`
	Kind             string      `json:"Kind"`         // "sale", "refund"
	ResponseCode     string      `json:"ResponseCode"` // the host's answer to the upload
	What             string      `json:"What"`
}

// ReconcileEnvelope is the JSON body of a GetTotals or Reconciliation request or answer:
// the Envelope of those categories.
//
// A plain value: safe for concurrent use when not modified.
type ReconcileEnvelope struct {
	Request  *ReconcileRequest  `json:"SaleToPOIRequest,omitempty"`
	Response *ReconcileResponse `json:"SaleToPOIResponse,omitempty"`
}

// ReconcileRequest is a till's GetTotals or Reconciliation request.
//
// A plain value: safe for concurrent use when not modified.
type ReconcileRequest struct {
	MessageHeader         MessageHeader          `json:"MessageHeader"`
	GetTotalsRequest      *GetTotalsRequest      `json:"GetTotalsRequest,omitempty"`
	ReconciliationRequest *ReconciliationRequest `json:"ReconciliationRequest,omitempty"`
}

// ReconcileResponse is posd's answer to a GetTotals or Reconciliation request.
//
// A plain value: safe for concurrent use when not modified.
type ReconcileResponse struct {
	MessageHeader          MessageHeader           `json:"MessageHeader"`
	GetTotalsResponse      *GetTotalsResponse      `json:"GetTotalsResponse,omitempty"`
	ReconciliationResponse *ReconciliationResponse `json:"ReconciliationResponse,omitempty"`
}

// decodeReconcile checks the header of a GetTotals or Reconciliation request and decodes
// its body.
func decodeReconcile(body []byte, poiid, category string) (ReconcileRequest, error) {
	if _, err := decodeRequest(body, poiid, category); err != nil {
		return ReconcileRequest{}, err
	}
	var env ReconcileEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return ReconcileRequest{}, fmt.Errorf("%s request: %w", category, err)
	}
	return *env.Request, nil
}

// DecodeGetTotals decodes and validates a till's GetTotalsRequest.
func DecodeGetTotals(body []byte, poiid string) (MessageHeader, error) {
	req, err := decodeReconcile(body, poiid, "GetTotals")
	if err != nil {
		return MessageHeader{}, err
	}
	if req.GetTotalsRequest == nil {
		return MessageHeader{}, &FieldError{"GetTotalsRequest", "missing"}
	}
	return req.MessageHeader, nil
}

// DecodeReconciliation decodes and validates a till's ReconciliationRequest; posd runs
// ReconciliationType "AcquirerReconciliation" only.
func DecodeReconciliation(body []byte, poiid string) (MessageHeader, error) {
	req, err := decodeReconcile(body, poiid, "Reconciliation")
	if err != nil {
		return MessageHeader{}, err
	}
	rr := req.ReconciliationRequest
	if rr == nil {
		return MessageHeader{}, &FieldError{"ReconciliationRequest", "missing"}
	}
	switch rr.ReconciliationType {
	case "AcquirerReconciliation":
	case "SaleReconciliation", "AcquirerSynchronisation", "PreviousReconciliation":
		return MessageHeader{}, &FieldError{"ReconciliationRequest.ReconciliationType", fmt.Sprintf("%q not supported (AcquirerReconciliation is)", rr.ReconciliationType)}
	default:
		return MessageHeader{}, &FieldError{"ReconciliationRequest.ReconciliationType", fmt.Sprintf("%q is not a ReconciliationType (AcquirerReconciliation is supported)", clip(rr.ReconciliationType))}
	}
	return req.MessageHeader, nil
}

// NewGetTotalsRequest builds the envelope a till sends to ask for the open batch's totals.
func NewGetTotalsRequest(saleID, serviceID, poiid string) ReconcileEnvelope {
	return ReconcileEnvelope{Request: &ReconcileRequest{
		MessageHeader: MessageHeader{ProtocolVersion: "3.0", MessageClass: "Service", MessageCategory: "GetTotals", MessageType: "Request",
			SaleID: saleID, ServiceID: serviceID, POIID: poiid},
		GetTotalsRequest: &GetTotalsRequest{},
	}}
}

// NewReconciliationRequest builds the envelope a till sends to close the batch.
func NewReconciliationRequest(saleID, serviceID, poiid string) ReconcileEnvelope {
	return ReconcileEnvelope{Request: &ReconcileRequest{
		MessageHeader: MessageHeader{ProtocolVersion: "3.0", MessageClass: "Service", MessageCategory: "Reconciliation", MessageType: "Request",
			SaleID: saleID, ServiceID: serviceID, POIID: poiid},
		ReconciliationRequest: &ReconciliationRequest{ReconciliationType: "AcquirerReconciliation"},
	}}
}

// FromTotals is a batch's totals as nexo's TransactionTotals, one per card brand.
func FromTotals(bt terminal.BatchTotals) []TransactionTotals {
	cur, err := money.LookupCurrency(bt.Currency)
	amount := func(minor int64) json.Number {
		if err != nil {
			return json.Number(strconv.FormatInt(minor, 10))
		}
		return json.Number(money.Amount{Minor: minor, Currency: cur}.Decimal())
	}
	out := []TransactionTotals{}
	for _, b := range bt.Brands {
		tt := TransactionTotals{PaymentInstrumentType: "Card", CardBrand: b.Brand, PaymentCurrency: bt.Currency, PaymentTotals: []PaymentTotals{}}
		for _, t := range b.Totals {
			pt := PaymentTotals{TransactionType: t.Type, TransactionCount: t.Count, TransactionAmount: amount(t.AmountMinor)}
			if t.Type == terminal.TypeOfflinePending {
				tt.OfflinePending = &pt
				continue
			}
			tt.PaymentTotals = append(tt.PaymentTotals, pt)
		}
		out = append(out, tt)
	}
	return out
}

// FromCloseReport is a close's report as the till gets it; poiTxnID names a journal record
// as the till knows it.
func FromCloseReport(rep terminal.CloseReport, poiTxnID func(store.TxnID) string) *ReconciliationReport {
	r := &ReconciliationReport{Batch: rep.Batch.Number, ResponseCode: rep.ResponseCode, Resumed: rep.Resumed, Uploaded: rep.Uploaded,
		Summary: rep.Totals.Summary(), AuditSeq: rep.AuditSeq, AuditHead: rep.AuditHead}
	if r.Batch == 0 {
		r.Batch = rep.Totals.Batch
	}
	cur, err := money.LookupCurrency(rep.Totals.Currency)
	for _, d := range rep.Differences {
		amt := json.Number(strconv.FormatInt(d.AmountMinor, 10))
		if err == nil {
			amt = json.Number(money.Amount{Minor: d.AmountMinor, Currency: cur}.Decimal())
		}
		r.Differences = append(r.Differences, Difference{POITransactionID: poiTxnID(d.TxnID), STAN: fmt.Sprintf("%06d", d.STAN),
			MaskedPan: d.MaskedPAN, Amount: amt, Kind: d.Kind, ResponseCode: d.ResponseCode, What: d.What})
	}
	return r
}
