// Package nexo is posd's local till API: the nexo Retailer message shapes that tills know from
// Adyen's Terminal API (SaleToPOIRequest / SaleToPOIResponse with a MessageHeader and a
// PaymentRequest / PaymentResponse), carried as JSON over HTTP on loopback.
//
// Amounts arrive as JSON numbers in major units and are parsed digit by digit into integer
// minor units (never through a float). A request that is not well formed is answered with
// HTTP 400 and a reason naming the offending field; a sale that was attempted is always
// answered with HTTP 200 and a SaleToPOIResponse whose Response.Result says Success or
// Failure with an ErrorCondition.
//
// Unknown fields are ignored, as nexo is extended by every vendor; every field posd needs is
// checked.
package nexo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
)

// Envelope is the JSON body of a till request or of posd's answer: exactly one of the two
// members is set.
//
// A plain value: safe for concurrent use when not modified.
type Envelope struct {
	Request  *SaleToPOIRequest  `json:"SaleToPOIRequest,omitempty"`
	Response *SaleToPOIResponse `json:"SaleToPOIResponse,omitempty"`
}

// MessageHeader is nexo's header, the same shape in requests and responses.
//
// A plain value: safe for concurrent use when not modified.
type MessageHeader struct {
	ProtocolVersion string `json:"ProtocolVersion,omitempty"`
	MessageClass    string `json:"MessageClass"`    // "Service"
	MessageCategory string `json:"MessageCategory"` // "Payment"
	MessageType     string `json:"MessageType"`     // "Request" or "Response"
	SaleID          string `json:"SaleID"`
	ServiceID       string `json:"ServiceID"`
	POIID           string `json:"POIID"`
}

// SaleToPOIRequest is a till's request.
//
// A plain value: safe for concurrent use when not modified.
type SaleToPOIRequest struct {
	MessageHeader            MessageHeader             `json:"MessageHeader"`
	PaymentRequest           *PaymentRequest           `json:"PaymentRequest,omitempty"`
	ReversalRequest          *ReversalRequest          `json:"ReversalRequest,omitempty"`
	TransactionStatusRequest *TransactionStatusRequest `json:"TransactionStatusRequest,omitempty"`
	AbortRequest             *AbortRequest             `json:"AbortRequest,omitempty"`
}

// MessageReference names an earlier request (MessageCategory "Payment"): by its SaleID and
// ServiceID, or, as posd's extension, by its SaleTransactionID. SaleID defaults to the
// header's.
//
// A plain value: safe for concurrent use when not modified.
type MessageReference struct {
	MessageCategory   string         `json:"MessageCategory,omitempty"`
	ServiceID         string         `json:"ServiceID,omitempty"`
	DeviceID          string         `json:"DeviceID,omitempty"`
	SaleID            string         `json:"SaleID,omitempty"`
	POIID             string         `json:"POIID,omitempty"`
	SaleTransactionID *TransactionID `json:"SaleTransactionID,omitempty"` // posd's extension
}

// TransactionStatusRequest asks what became of an earlier request (MessageCategory
// "TransactionStatus").
//
// A plain value: safe for concurrent use when not modified.
type TransactionStatusRequest struct {
	MessageReference *MessageReference `json:"MessageReference,omitempty"`
}

// TransactionStatusResponse answers a TransactionStatusRequest. Response.Result "Success"
// means the request was found and has finished: its own answer is in
// RepeatedMessageResponse. "Failure" with "InProgress": it still runs; with "NotFound":
// posd has no such request.
//
// A plain value: safe for concurrent use when not modified.
type TransactionStatusResponse struct {
	Response                Response                 `json:"Response"`
	MessageReference        *MessageReference        `json:"MessageReference,omitempty"`
	RepeatedMessageResponse *RepeatedMessageResponse `json:"RepeatedMessageResponse,omitempty"`
}

// RepeatedMessageResponse is the answer of an earlier request, as it was given.
//
// A plain value: safe for concurrent use when not modified.
type RepeatedMessageResponse struct {
	MessageHeader               MessageHeader `json:"MessageHeader"`
	RepeatedResponseMessageBody struct {
		PaymentResponse *PaymentResponse `json:"PaymentResponse,omitempty"`
	} `json:"RepeatedResponseMessageBody"`
}

// AbortRequest asks to stop a running request (MessageCategory "Abort").
//
// A plain value: safe for concurrent use when not modified.
type AbortRequest struct {
	MessageReference *MessageReference `json:"MessageReference,omitempty"`
	AbortReason      string            `json:"AbortReason"`
}

// AbortResponse is posd's answer to an AbortRequest (nexo defines none; the effect shows in
// the payment's own answer too): "Success" when the abort was taken, with
// AdditionalResponse saying whether the payment stopped before going online or its
// approval will be reversed; "Failure" with "NotFound" (no such running request) or
// "NotAllowed" (it has finished).
//
// A plain value: safe for concurrent use when not modified.
type AbortResponse struct {
	Response         Response          `json:"Response"`
	MessageReference *MessageReference `json:"MessageReference,omitempty"`
}

// ReversalRequest asks to cancel an approved payment (MessageCategory "Reversal").
//
// A plain value: safe for concurrent use when not modified.
type ReversalRequest struct {
	OriginalPOITransaction struct {
		POITransactionID TransactionID `json:"POITransactionID"`
	} `json:"OriginalPOITransaction"`
	ReversalReason string `json:"ReversalReason"` // "CustCancel", "MerchantCancel", "Malfunction", "Unable2Compl"
}

// ReversalResponse answers a ReversalRequest.
//
// A plain value: safe for concurrent use when not modified.
type ReversalResponse struct {
	Response Response `json:"Response"`
	POIData  struct {
		POITransactionID TransactionID `json:"POITransactionID"`
	} `json:"POIData"`
}

// TransactionID is nexo's transaction identification: an id and a time stamp.
//
// A plain value: safe for concurrent use when not modified.
type TransactionID struct {
	TransactionID string `json:"TransactionID"`
	TimeStamp     string `json:"TimeStamp,omitempty"` // RFC 3339
}

// PaymentRequest asks for a payment.
//
// A plain value: safe for concurrent use when not modified.
type PaymentRequest struct {
	SaleData struct {
		SaleTransactionID TransactionID `json:"SaleTransactionID"`
	} `json:"SaleData"`
	PaymentTransaction struct {
		AmountsReq struct {
			Currency        string      `json:"Currency"`
			RequestedAmount json.Number `json:"RequestedAmount"`
		} `json:"AmountsReq"`
		// OriginalPOITransaction names the sale a linked refund refunds; absent for a sale
		// and for an unlinked refund.
		OriginalPOITransaction *struct {
			POITransactionID TransactionID `json:"POITransactionID"`
		} `json:"OriginalPOITransaction,omitempty"`
	} `json:"PaymentTransaction"`
	PaymentData *struct {
		PaymentType string `json:"PaymentType,omitempty"` // "Normal" (default) or "Refund"
	} `json:"PaymentData,omitempty"`
}

// SaleToPOIResponse is posd's answer.
//
// A plain value: safe for concurrent use when not modified.
type SaleToPOIResponse struct {
	MessageHeader             MessageHeader              `json:"MessageHeader"`
	PaymentResponse           *PaymentResponse           `json:"PaymentResponse,omitempty"`
	ReversalResponse          *ReversalResponse          `json:"ReversalResponse,omitempty"`
	TransactionStatusResponse *TransactionStatusResponse `json:"TransactionStatusResponse,omitempty"`
	AbortResponse             *AbortResponse             `json:"AbortResponse,omitempty"`
}

// PaymentResponse answers a PaymentRequest.
//
// A plain value: safe for concurrent use when not modified.
type PaymentResponse struct {
	Response Response `json:"Response"`
	SaleData struct {
		SaleTransactionID TransactionID `json:"SaleTransactionID"`
	} `json:"SaleData"`
	POIData struct {
		POITransactionID TransactionID `json:"POITransactionID"`
	} `json:"POIData"`
	PaymentResult  *PaymentResult   `json:"PaymentResult,omitempty"`
	PaymentReceipt []PaymentReceipt `json:"PaymentReceipt,omitempty"`
}

// Response is nexo's result block.
//
// A plain value: safe for concurrent use when not modified.
type Response struct {
	Result             string `json:"Result"`                   // "Success", "Partial" (part of the amount approved) or "Failure"
	ErrorCondition     string `json:"ErrorCondition,omitempty"` // e.g. "Refusal", "WrongPIN", "UnreachableHost"
	AdditionalResponse string `json:"AdditionalResponse,omitempty"`
}

// PaymentResult carries what was authorized and with which card.
//
// A plain value: safe for concurrent use when not modified.
type PaymentResult struct {
	PaymentType string `json:"PaymentType"`
	AmountsResp struct {
		Currency         string      `json:"Currency"`
		AuthorizedAmount json.Number `json:"AuthorizedAmount"`
		RequestedAmount  json.Number `json:"RequestedAmount,omitempty"` // posd's addition, with a partial approval
	} `json:"AmountsResp"`
	PaymentAcquirerData struct {
		AcquirerPOIID         string        `json:"AcquirerPOIID"`
		MerchantID            string        `json:"MerchantID"`
		ApprovalCode          string        `json:"ApprovalCode,omitempty"`
		AcquirerTransactionID TransactionID `json:"AcquirerTransactionID"`
		ResponseCode          string        `json:"ResponseCode,omitempty"` // posd's addition: ISO 8583 field 39
		STAN                  string        `json:"STAN,omitempty"`         // posd's addition: ISO 8583 field 11
	} `json:"PaymentAcquirerData"`
	PaymentInstrumentData struct {
		PaymentInstrumentType string `json:"PaymentInstrumentType"`
		CardData              struct {
			PaymentBrand string   `json:"PaymentBrand,omitempty"` // "Visa", "Mastercard", "Amex" when the BIN or AID tells
			MaskedPan    string   `json:"MaskedPan,omitempty"`
			EntryMode    []string `json:"EntryMode,omitempty"` // ["ICC"] chip, ["MagStripe"] swipe (fallback included)
			// FormFactor is posd's addition: a tap's tag 9F6E in hex (Visa form factor
			// indicator, Mastercard third party data), as the receipt prints it.
			FormFactor string `json:"FormFactor,omitempty"`
		} `json:"CardData"`
	} `json:"PaymentInstrumentData"`
	// AuthenticationMethod is how the cardholder was verified: "OnlinePIN" or "OfflinePIN",
	// and "PaperSignature" when the card asks for a signature; absent when none.
	AuthenticationMethod []string `json:"AuthenticationMethod,omitempty"`
}

// PaymentReceipt is one printable receipt.
//
// A plain value: safe for concurrent use when not modified.
type PaymentReceipt struct {
	DocumentQualifier string `json:"DocumentQualifier"` // "CustomerReceipt" or "CashierReceipt"
	OutputContent     struct {
		OutputFormat string       `json:"OutputFormat"` // "Text"
		OutputText   []OutputText `json:"OutputText"`
	} `json:"OutputContent"`
}

// OutputText is one receipt line.
//
// A plain value: safe for concurrent use when not modified.
type OutputText struct {
	Text string `json:"Text"`
}

// FieldError is a request that is not well formed; Field names the JSON path.
//
// A plain value: safe for concurrent use when not modified.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Payment is a validated payment request.
//
// A plain value: safe for concurrent use when not modified.
type Payment struct {
	Header            MessageHeader // its ServiceID keys the request, with its SaleID
	SaleTransactionID TransactionID
	Amount            money.Amount
	// Refund: PaymentType "Refund". Original is the POITransactionID of the sale a linked
	// refund refunds (PaymentTransaction.OriginalPOITransaction); "" for an unlinked one.
	Refund   bool
	Original string
}

// decodeRequest decodes a till's JSON body and checks its header for category.
func decodeRequest(body []byte, poiid, category string) (*SaleToPOIRequest, error) {
	env, err := decodeEnvelope(body)
	if err != nil {
		return nil, err
	}
	return checkRequest(env, poiid, category)
}

// decodeEnvelope decodes a till's JSON body, one object and nothing after it.
func decodeEnvelope(body []byte) (*Envelope, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, &FieldError{Field: te.Field, Reason: "must be a JSON " + te.Type.Kind().String()}
		}
		return nil, fmt.Errorf("request is not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("request has data after the JSON object")
	}
	return &env, nil
}

// checkRequest checks a decoded request's header for category. It does not modify env.
func checkRequest(env *Envelope, poiid, category string) (*SaleToPOIRequest, error) {
	req := env.Request
	if req == nil {
		return nil, &FieldError{Field: "SaleToPOIRequest", Reason: "missing"}
	}
	h := req.MessageHeader
	switch {
	case h.ProtocolVersion != "" && !strings.HasPrefix(h.ProtocolVersion, "3."):
		return nil, &FieldError{"MessageHeader.ProtocolVersion", fmt.Sprintf("%q not supported (3.x is)", clip(h.ProtocolVersion))}
	case h.MessageClass != "Service":
		return nil, &FieldError{"MessageHeader.MessageClass", "must be \"Service\""}
	case h.MessageCategory != category:
		return nil, &FieldError{"MessageHeader.MessageCategory", fmt.Sprintf("%q not supported here (%s is)", clip(h.MessageCategory), category)}
	case h.MessageType != "Request":
		return nil, &FieldError{"MessageHeader.MessageType", "must be \"Request\""}
	case !validID(h.SaleID, 64):
		return nil, &FieldError{"MessageHeader.SaleID", idRule64}
	case !validID(h.ServiceID, 10):
		return nil, &FieldError{"MessageHeader.ServiceID", idRule10}
	case h.POIID != poiid:
		return nil, &FieldError{"MessageHeader.POIID", fmt.Sprintf("%q is not this terminal (%s)", clip(h.POIID), poiid)}
	}
	return req, nil
}

// IsRefund reports whether body is a PaymentRequest whose PaymentType is "Refund", without
// validating the rest (DecodePayment does): for telling a refund's role before it runs.
func IsRefund(body []byte) bool {
	var env struct {
		SaleToPOIRequest struct {
			PaymentRequest *struct {
				PaymentData *struct{ PaymentType string }
			}
		}
	}
	if json.Unmarshal(body, &env) != nil {
		return false
	}
	pr := env.SaleToPOIRequest.PaymentRequest
	return pr != nil && pr.PaymentData != nil && pr.PaymentData.PaymentType == "Refund"
}

// Peek is what a till's request says of itself before it is decoded and checked: what the
// API's guard needs to tell the request's role.
//
// A plain value: safe for concurrent use when not modified.
type Peek struct {
	SaleID   string // MessageHeader.SaleID, "" if none
	Category string // as Category returns it
	Refund   bool   // as IsRefund reports it
}

// PeekRequest returns the SaleID of body's header, its Category and whether IsRefund, in one
// reading of body (the guard's classification is on every request's path).
func PeekRequest(body []byte) Peek {
	var env struct {
		SaleToPOIRequest struct {
			MessageHeader  struct{ SaleID, MessageCategory string }
			PaymentRequest *struct {
				PaymentData *struct{ PaymentType string }
			}
		}
	}
	if json.Unmarshal(body, &env) != nil {
		// Malformed: each part as its own reading finds it, as a type error in one part
		// leaves the others readable.
		return Peek{SaleID: peekSaleID(body), Category: Category(body), Refund: IsRefund(body)}
	}
	req := env.SaleToPOIRequest
	pr := req.PaymentRequest
	return Peek{SaleID: req.MessageHeader.SaleID, Category: req.MessageHeader.MessageCategory,
		Refund: pr != nil && pr.PaymentData != nil && pr.PaymentData.PaymentType == "Refund"}
}

// peekSaleID is the header's SaleID as far as body can be read.
func peekSaleID(body []byte) string {
	var env struct {
		SaleToPOIRequest struct {
			MessageHeader struct{ SaleID string }
		}
	}
	_ = json.Unmarshal(body, &env) // what was read before a type error stands
	return env.SaleToPOIRequest.MessageHeader.SaleID
}

// Category returns the MessageCategory of a till's request body, or "" if it has none.
func Category(body []byte) string {
	var env struct {
		SaleToPOIRequest struct {
			MessageHeader struct{ MessageCategory string }
		}
	}
	if json.Unmarshal(body, &env) != nil {
		return ""
	}
	return env.SaleToPOIRequest.MessageHeader.MessageCategory
}

// Reversal is a validated reversal request.
//
// A plain value: safe for concurrent use when not modified.
type Reversal struct {
	Header           MessageHeader
	POITransactionID string
	Reason           string
}

// DecodeReversal decodes and validates a till's reversal request (a void).
func DecodeReversal(body []byte, poiid string) (Reversal, error) {
	req, err := decodeRequest(body, poiid, "Reversal")
	if err != nil {
		return Reversal{}, err
	}
	rr := req.ReversalRequest
	if rr == nil {
		return Reversal{}, &FieldError{"ReversalRequest", "missing"}
	}
	id := rr.OriginalPOITransaction.POITransactionID.TransactionID
	if !validID(id, 64) {
		return Reversal{}, &FieldError{"ReversalRequest.OriginalPOITransaction.POITransactionID.TransactionID", idRule64}
	}
	switch rr.ReversalReason {
	case "CustCancel", "MerchantCancel", "Malfunction", "Unable2Compl":
	default:
		return Reversal{}, &FieldError{"ReversalRequest.ReversalReason", fmt.Sprintf("%q is not one of CustCancel, MerchantCancel, Malfunction, Unable2Compl", clip(rr.ReversalReason))}
	}
	return Reversal{Header: req.MessageHeader, POITransactionID: id, Reason: rr.ReversalReason}, nil
}

// DecodePayment decodes and validates a till's JSON body. poiid is this terminal's POIID;
// a request addressed to another POI is refused. Errors are *FieldError or wrap a JSON
// syntax error, and never echo more than the field's name.
func DecodePayment(body []byte, poiid string) (Payment, error) {
	env, err := decodeEnvelope(body)
	if err != nil {
		return Payment{}, err
	}
	return decodePayment(env, poiid)
}

// decodePayment is DecodePayment of a decoded body.
func decodePayment(env *Envelope, poiid string) (Payment, error) {
	req, err := checkRequest(env, poiid, "Payment")
	if err != nil {
		return Payment{}, err
	}
	h := req.MessageHeader
	pr := req.PaymentRequest
	if pr == nil {
		return Payment{}, &FieldError{"PaymentRequest", "missing"}
	}
	refund := false
	if pr.PaymentData != nil {
		switch pr.PaymentData.PaymentType {
		case "", "Normal":
		case "Refund":
			refund = true
		default:
			return Payment{}, &FieldError{"PaymentRequest.PaymentData.PaymentType", fmt.Sprintf("%q not supported (Normal and Refund are)", clip(pr.PaymentData.PaymentType))}
		}
	}
	var original string
	if o := pr.PaymentTransaction.OriginalPOITransaction; o != nil {
		const origField = "PaymentRequest.PaymentTransaction.OriginalPOITransaction.POITransactionID.TransactionID"
		if !refund {
			return Payment{}, &FieldError{"PaymentRequest.PaymentTransaction.OriginalPOITransaction", "only a Refund (PaymentData.PaymentType) names an original transaction"}
		}
		if !validID(o.POITransactionID.TransactionID, 64) {
			return Payment{}, &FieldError{origField, idRule64}
		}
		original = o.POITransactionID.TransactionID
	}
	st := pr.SaleData.SaleTransactionID
	if !validID(st.TransactionID, 64) {
		return Payment{}, &FieldError{"PaymentRequest.SaleData.SaleTransactionID.TransactionID", idRule64}
	}
	if st.TimeStamp != "" {
		if _, err := time.Parse(time.RFC3339, st.TimeStamp); err != nil {
			return Payment{}, &FieldError{"PaymentRequest.SaleData.SaleTransactionID.TimeStamp", "must be an RFC 3339 time"}
		}
	}
	ar := pr.PaymentTransaction.AmountsReq
	cur, err := money.LookupCurrency(ar.Currency)
	if err != nil || len(ar.Currency) != 3 {
		return Payment{}, &FieldError{"PaymentRequest.PaymentTransaction.AmountsReq.Currency", fmt.Sprintf("%q is not a supported ISO 4217 code", clip(ar.Currency))}
	}
	const amountField = "PaymentRequest.PaymentTransaction.AmountsReq.RequestedAmount"
	if ar.RequestedAmount == "" {
		return Payment{}, &FieldError{amountField, "missing"}
	}
	amt, err := money.ParseDecimal(string(ar.RequestedAmount), cur)
	if err != nil {
		return Payment{}, &FieldError{amountField, strings.TrimPrefix(err.Error(), "money: ")}
	}
	if amt.Minor == 0 {
		return Payment{}, &FieldError{amountField, "must be greater than zero"}
	}
	return Payment{Header: h, SaleTransactionID: st, Amount: amt, Refund: refund, Original: original}, nil
}

// validID reports whether id, a till's identifier, is 1 to max printable ASCII characters
// with no card number in it: identifiers key requests in the journal and appear in logs,
// where a full PAN must never be (see hasPAN).
func validID(id string, max int) bool {
	if id == "" || len(id) > max {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return !hasPAN(id)
}

// hasPAN reports whether s holds a run of 13 to 19 digits that passes the Luhn check: what
// a card number looks like. A till that puts one in an identifier is refused before it
// reaches the log or the journal.
func hasPAN(s string) bool {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if n := j - i; n >= 13 && n <= 19 && card.Luhn(s[i:j]) {
			return true
		}
		if j == i {
			j++
		}
		i = j
	}
	return false
}

// The rules validID checks, as errors state them.
const (
	idRule64 = "must be 1 to 64 printable ASCII characters, and no card number"
	idRule10 = "must be 1 to 10 printable ASCII characters, and no card number"
)

// Reference is a validated MessageReference to an earlier payment: SaleID with ServiceID,
// or SaleID with SaleTransactionID (one of the two is set).
//
// A plain value: safe for concurrent use when not modified.
type Reference struct {
	SaleID, ServiceID, SaleTransactionID string
}

// decodeReference validates the MessageReference at path of a request whose header is h.
func decodeReference(ref *MessageReference, path string, h MessageHeader) (Reference, error) {
	if ref == nil {
		return Reference{}, &FieldError{path, "missing"}
	}
	if ref.MessageCategory != "" && ref.MessageCategory != "Payment" {
		return Reference{}, &FieldError{path + ".MessageCategory", fmt.Sprintf("%q not supported (Payment is)", clip(ref.MessageCategory))}
	}
	r := Reference{SaleID: ref.SaleID, ServiceID: ref.ServiceID}
	if r.SaleID == "" {
		r.SaleID = h.SaleID
	}
	if !validID(r.SaleID, 64) {
		return Reference{}, &FieldError{path + ".SaleID", idRule64}
	}
	if ref.POIID != "" && ref.POIID != h.POIID {
		return Reference{}, &FieldError{path + ".POIID", fmt.Sprintf("%q is not this terminal", clip(ref.POIID))}
	}
	switch {
	case ref.SaleTransactionID != nil && ref.ServiceID != "":
		return Reference{}, &FieldError{path, "give ServiceID or SaleTransactionID, not both"}
	case ref.SaleTransactionID != nil:
		if !validID(ref.SaleTransactionID.TransactionID, 64) {
			return Reference{}, &FieldError{path + ".SaleTransactionID.TransactionID", idRule64}
		}
		r.SaleTransactionID = ref.SaleTransactionID.TransactionID
	case !validID(ref.ServiceID, 10):
		return Reference{}, &FieldError{path + ".ServiceID", idRule10 + " (or give SaleTransactionID)"}
	}
	return r, nil
}

// StatusQuery is a validated TransactionStatusRequest.
//
// A plain value: safe for concurrent use when not modified.
type StatusQuery struct {
	Header MessageHeader
	Ref    Reference
}

// DecodeTransactionStatus decodes and validates a till's TransactionStatusRequest.
func DecodeTransactionStatus(body []byte, poiid string) (StatusQuery, error) {
	req, err := decodeRequest(body, poiid, "TransactionStatus")
	if err != nil {
		return StatusQuery{}, err
	}
	if req.TransactionStatusRequest == nil {
		return StatusQuery{}, &FieldError{"TransactionStatusRequest", "missing"}
	}
	ref, err := decodeReference(req.TransactionStatusRequest.MessageReference, "TransactionStatusRequest.MessageReference", req.MessageHeader)
	return StatusQuery{Header: req.MessageHeader, Ref: ref}, err
}

// Abort is a validated AbortRequest.
//
// A plain value: safe for concurrent use when not modified.
type Abort struct {
	Header MessageHeader
	Ref    Reference
	Reason string
}

// DecodeAbort decodes and validates a till's AbortRequest.
func DecodeAbort(body []byte, poiid string) (Abort, error) {
	req, err := decodeRequest(body, poiid, "Abort")
	if err != nil {
		return Abort{}, err
	}
	ar := req.AbortRequest
	if ar == nil {
		return Abort{}, &FieldError{"AbortRequest", "missing"}
	}
	if !validID(ar.AbortReason, 64) {
		return Abort{}, &FieldError{"AbortRequest.AbortReason", idRule64}
	}
	ref, err := decodeReference(ar.MessageReference, "AbortRequest.MessageReference", req.MessageHeader)
	return Abort{Header: req.MessageHeader, Ref: ref, Reason: ar.AbortReason}, err
}

// clip bounds an echoed value so an error never carries a large or binary blob.
func clip(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
