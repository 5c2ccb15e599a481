package nexo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/money"
)

// MaxBody is the largest request body the server reads.
const MaxBody = 64 << 10

// ServerOptions configures the HTTP handler.
//
// A plain value: safe for concurrent use when not modified.
type ServerOptions struct {
	POIID      string       // this terminal's POIID; required
	MerchantID string       // echoed in PaymentAcquirerData
	Logger     *slog.Logger // default: discard
	// Journal, when set, serves GET /v1/journal: the journal's records as JSON (masked PANs
	// only, as the store keeps them).
	Journal *store.Store
	// Caller, when set, names the authenticated caller of a request (from its context);
	// each void records it. Default: none.
	Caller func(ctx context.Context) string
	// Devices, when set, reports the devices' status in GET /v1/status.
	Devices func() []terminal.DeviceStatus
	// AuditHead, when set, reports the audit chain's head in GET /v1/status as audit_head
	// {"seq":..., "mac":...}, so that a cut tail shows against a head printed earlier.
	AuditHead func() (seq uint64, mac string)
}

// handler is the till API over one Terminal.
type handler struct {
	t    *terminal.Terminal
	opts ServerOptions
	log  *slog.Logger
}

// NewHandler returns the till API:
//
//	POST /nexo         a SaleToPOIRequest (Payment, Reversal, TransactionStatus, Abort);
//	                   answered with a SaleToPOIResponse
//	GET  /v1/status    liveness: {"status":"ok","poiid":...}
//	GET  /v1/journal   the journal (when ServerOptions.Journal is set)
//
// The handler is safe for concurrent use; the terminal answers Busy to a second sale, and
// a repeat of a request with the first request's answer.
func NewHandler(t *terminal.Terminal, opts ServerOptions) http.Handler {
	h := &handler{t: t, opts: opts, log: opts.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /nexo", h.serveNexo)
	mux.HandleFunc("GET /v1/status", h.serveStatus)
	if opts.Journal != nil {
		mux.HandleFunc("GET /v1/journal", h.serveJournal)
	}
	return mux
}

func (h *handler) serveNexo(w http.ResponseWriter, r *http.Request) {
	b, err := ReadBody(r) // read and decoded already when the API's guard peeked at it
	if errors.Is(err, ErrTooLarge) {
		httpError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	body := b.raw
	switch b.category() {
	case "Reversal":
		h.serveReversal(w, r, body)
	case "TransactionStatus":
		h.serveTransactionStatus(w, r, body)
	case "Abort":
		h.serveAbort(w, r, body)
	case "GetTotals":
		h.serveGetTotals(w, r, body)
	case "Reconciliation":
		h.serveReconciliation(w, r, body)
	default:
		h.servePayment(w, r, b)
	}
}

func (h *handler) servePayment(w http.ResponseWriter, r *http.Request, body *Body) {
	p, err := body.payment(h.opts.POIID)
	if err != nil {
		h.log.Warn("till request refused", "reason", err)
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	// At info a sale is one line, the terminal's "outcome journaled"; the till's request
	// and a successful answer are at debug (formatted only when debug is on).
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.log.Debug("till request", "sale_id", p.Header.SaleID, "service_id", p.Header.ServiceID, "sale_txn", p.SaleTransactionID.TransactionID, "amount", p.Amount.String(), "refund", p.Refund, "original", p.Original)
	}
	// The sale runs to its end even if the till hangs up: the journal and the customer
	// need an outcome either way, and the till finds the answer with TransactionStatus.
	ctx := context.WithoutCancel(r.Context())
	req := terminal.SaleRequest{SaleID: p.Header.SaleID, ServiceID: p.Header.ServiceID,
		SaleTransactionID: p.SaleTransactionID.TransactionID, Amount: p.Amount, Refund: p.Refund, Original: p.Original}
	run := h.t.Sale
	if p.Refund {
		run = h.t.Refund
	}
	res, err := run(ctx, req)
	var resp *SaleToPOIResponse
	var conflict *terminal.ConflictError
	switch {
	case errors.Is(err, terminal.ErrBusy):
		resp = failure(p, "Busy", "another transaction is in progress on this terminal")
	case errors.As(err, &conflict):
		resp = failure(p, "NotAllowed", conflictText(conflict))
	case errors.Is(err, terminal.ErrInvalidSale):
		httpError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		h.log.Error("sale failed", "reason", err)
		resp = failure(p, "Aborted", err.Error())
	default:
		resp = FromResult(p, res, h.opts.MerchantID)
	}
	pr := resp.PaymentResponse
	level := slog.LevelDebug
	if pr.Response.Result != "Success" {
		level = slog.LevelInfo // busy, refused, declined, aborted: the till's side of it
	}
	h.log.Log(r.Context(), level, "till answer", "sale_txn", p.SaleTransactionID.TransactionID, "result", pr.Response.Result, "condition", pr.Response.ErrorCondition)
	// The till is gone when its connection closed before the answer was written (the
	// server cancels the request's context), or when writing the answer fails. A till
	// that reads the answer and then hangs up at once also cancels the context: asked
	// after the write, that would record a delivered answer as undelivered, a commit with
	// two fdatasyncs on every such sale.
	gone := r.Context().Err() != nil
	werr := writeJSON(w, http.StatusOK, Envelope{Response: resp})
	if werr == nil && !gone {
		werr = http.NewResponseController(w).Flush()
	}
	if res.TxnID != 0 && (gone || werr != nil) {
		// The till went away before the answer: the sale stands as it ended, and the
		// journal says that the till did not hear it.
		h.log.Warn("the till did not hear the answer; it waits for a TransactionStatus request", "txn", uint64(res.TxnID), "sale_txn", p.SaleTransactionID.TransactionID)
		if err := h.t.NoteUndelivered(context.WithoutCancel(r.Context()), res.TxnID); err != nil {
			h.log.Error("recording that the till did not hear the answer", "txn", uint64(res.TxnID), "reason", err)
		}
	}
}

// conflictText names, in the till's JSON terms, what differs from the first request.
func conflictText(c *terminal.ConflictError) string {
	field := map[string]string{
		"amount":                   "PaymentRequest.PaymentTransaction.AmountsReq.RequestedAmount",
		"currency":                 "PaymentRequest.PaymentTransaction.AmountsReq.Currency",
		"SaleTransactionID":        "PaymentRequest.SaleData.SaleTransactionID.TransactionID",
		"POITransactionID":         "ReversalRequest.OriginalPOITransaction.POITransactionID.TransactionID",
		"PaymentType":              "PaymentRequest.PaymentData.PaymentType",
		"OriginalPOITransactionID": "PaymentRequest.PaymentTransaction.OriginalPOITransaction.POITransactionID.TransactionID",
	}[c.Field]
	if field == "" {
		field = c.Field
	}
	key := "MessageHeader.ServiceID"
	if c.Key == "SaleTransactionID" {
		key = "PaymentRequest.SaleData.SaleTransactionID.TransactionID"
	}
	return fmt.Sprintf("%s differs from the first request with this SaleID and %s; nothing was done", field, key)
}

func (h *handler) serveTransactionStatus(w http.ResponseWriter, r *http.Request, body []byte) {
	q, err := DecodeTransactionStatus(body, h.opts.POIID)
	if err != nil {
		h.log.Warn("till request refused", "reason", err)
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	hd := q.Header
	hd.MessageType = "Response"
	ref := q.Ref.message()
	tsr := &TransactionStatusResponse{MessageReference: ref}
	st, err := h.t.TransactionStatus(r.Context(), q.Ref.key())
	switch {
	case errors.Is(err, terminal.ErrUnknownTransaction):
		tsr.Response = Response{Result: "Failure", ErrorCondition: "NotFound", AdditionalResponse: "message=no payment with this reference on this terminal: nothing was charged under it"}
	case err != nil:
		h.log.Error("transaction status failed", "reason", err)
		tsr.Response = Response{Result: "Failure", ErrorCondition: "Busy", AdditionalResponse: "message=" + err.Error()}
	case st.Running:
		tsr.Response = Response{Result: "Failure", ErrorCondition: "InProgress", AdditionalResponse: "message=the payment is still running; ask again"}
	default:
		p := Payment{Header: MessageHeader{ProtocolVersion: hd.ProtocolVersion, MessageClass: "Service", MessageCategory: "Payment",
			SaleID: st.Request.SaleID, ServiceID: st.Request.ServiceID, POIID: h.opts.POIID},
			SaleTransactionID: TransactionID{TransactionID: st.Request.SaleTransactionID}, Amount: st.Request.Amount,
			Refund: st.Request.Refund, Original: st.Request.Original}
		pr := FromResult(p, st.Result, h.opts.MerchantID)
		rep := &RepeatedMessageResponse{MessageHeader: pr.MessageHeader}
		rep.RepeatedResponseMessageBody.PaymentResponse = pr.PaymentResponse
		tsr.Response = Response{Result: "Success"}
		tsr.RepeatedMessageResponse = rep
	}
	h.log.Info("till transaction status", "sale_id", q.Ref.SaleID, "service_id", q.Ref.ServiceID, "sale_txn", q.Ref.SaleTransactionID, "result", tsr.Response.Result, "condition", tsr.Response.ErrorCondition)
	writeJSON(w, http.StatusOK, Envelope{Response: &SaleToPOIResponse{MessageHeader: hd, TransactionStatusResponse: tsr}})
}

func (h *handler) serveAbort(w http.ResponseWriter, r *http.Request, body []byte) {
	a, err := DecodeAbort(body, h.opts.POIID)
	if err != nil {
		h.log.Warn("till request refused", "reason", err)
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	hd := a.Header
	hd.MessageType = "Response"
	ar := &AbortResponse{MessageReference: a.Ref.message()}
	res, err := h.t.Abort(r.Context(), a.Ref.key())
	switch {
	case err == nil:
		ar.Response = Response{Result: "Success", AdditionalResponse: "message=" + res.Message}
	case errors.Is(err, terminal.ErrUnknownTransaction):
		ar.Response = Response{Result: "Failure", ErrorCondition: "NotFound", AdditionalResponse: "message=no payment with this reference on this terminal"}
	case errors.Is(err, terminal.ErrTooLate):
		ar.Response = Response{Result: "Failure", ErrorCondition: "NotAllowed", AdditionalResponse: "message=the payment has finished already: ask its status, or void it"}
	default:
		h.log.Error("abort failed", "reason", err)
		ar.Response = Response{Result: "Failure", ErrorCondition: "Busy", AdditionalResponse: "message=" + err.Error()}
	}
	h.log.Info("till abort", "sale_id", a.Ref.SaleID, "service_id", a.Ref.ServiceID, "reason", a.Reason, "result", ar.Response.Result, "condition", ar.Response.ErrorCondition)
	writeJSON(w, http.StatusOK, Envelope{Response: &SaleToPOIResponse{MessageHeader: hd, AbortResponse: ar}})
}

// key is the terminal's key of the referenced request.
func (r Reference) key() store.TillKey {
	if r.SaleTransactionID != "" {
		return store.SaleTxnKey(r.SaleID, r.SaleTransactionID)
	}
	return store.ServiceKey(r.SaleID, r.ServiceID)
}

// message is the reference as the answer quotes it.
func (r Reference) message() *MessageReference {
	m := &MessageReference{MessageCategory: "Payment", SaleID: r.SaleID, ServiceID: r.ServiceID}
	if r.SaleTransactionID != "" {
		m.SaleTransactionID = &TransactionID{TransactionID: r.SaleTransactionID}
	}
	return m
}

func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := map[string]any{"status": "ok", "poiid": h.opts.POIID}
	if h.opts.Devices != nil {
		st["devices"] = h.opts.Devices()
	}
	if h.opts.AuditHead != nil {
		seq, mac := h.opts.AuditHead()
		st["audit_head"] = map[string]any{"seq": seq, "mac": mac}
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) serveJournal(w http.ResponseWriter, r *http.Request) {
	var recs []store.Record
	err := h.opts.Journal.Records(r.Context(), func(rec store.Record) error {
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, recs)
}

func header(p Payment) MessageHeader {
	h := p.Header
	h.MessageType = "Response"
	return h
}

// serveReversal voids an approved sale (a cancel after approval).
func (h *handler) serveReversal(w http.ResponseWriter, r *http.Request, body []byte) {
	rv, err := DecodeReversal(body, h.opts.POIID)
	if err != nil {
		h.log.Warn("till request refused", "reason", err)
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	hd := rv.Header
	hd.MessageType = "Response"
	rr := &ReversalResponse{}
	rr.POIData.POITransactionID = TransactionID{TransactionID: rv.POITransactionID}
	// A void runs to its end even if the till hangs up, as a sale does. The journal
	// names the authenticated caller beside the till's reason.
	reason := rv.Reason
	if h.opts.Caller != nil {
		if who := h.opts.Caller(r.Context()); who != "" {
			reason += "; by " + who
		}
	}
	res, err := h.t.VoidOnce(context.WithoutCancel(r.Context()), hd.SaleID, hd.ServiceID, rv.POITransactionID, reason)
	var conflict *terminal.ConflictError
	switch {
	case errors.As(err, &conflict):
		rr.Response = Response{Result: "Failure", ErrorCondition: "NotAllowed", AdditionalResponse: "message=" + conflictText(conflict)}
	case err == nil:
		rr.Response = Response{Result: "Success", AdditionalResponse: "message=" + res.Message}
	case errors.Is(err, terminal.ErrUnknownTransaction):
		rr.Response = Response{Result: "Failure", ErrorCondition: "NotFound", AdditionalResponse: "message=" + err.Error()}
	case errors.Is(err, store.ErrNotVoidable):
		rr.Response = Response{Result: "Failure", ErrorCondition: "NotAllowed", AdditionalResponse: "message=" + err.Error()}
	default:
		h.log.Error("void failed", "reason", err)
		rr.Response = Response{Result: "Failure", ErrorCondition: "Aborted", AdditionalResponse: "message=" + err.Error()}
	}
	h.log.Info("till void", "poi_txn", rv.POITransactionID, "result", rr.Response.Result, "condition", rr.Response.ErrorCondition)
	writeJSON(w, http.StatusOK, Envelope{Response: &SaleToPOIResponse{MessageHeader: hd, ReversalResponse: rr}})
}

func failure(p Payment, cond, msg string) *SaleToPOIResponse {
	pr := &PaymentResponse{Response: Response{Result: "Failure", ErrorCondition: cond, AdditionalResponse: "message=" + msg}}
	pr.SaleData.SaleTransactionID = p.SaleTransactionID
	return &SaleToPOIResponse{MessageHeader: header(p), PaymentResponse: pr}
}

// FromResult builds the till's answer to a sale that ran.
func FromResult(p Payment, r terminal.SaleResult, merchantID string) *SaleToPOIResponse {
	pr := &PaymentResponse{}
	pr.SaleData.SaleTransactionID = p.SaleTransactionID
	ts := r.Time.UTC().Format(time.RFC3339)
	pr.POIData.POITransactionID = TransactionID{TransactionID: r.POITransactionID, TimeStamp: ts}
	partial := r.Approved && r.AuthorizedMinor > 0 && r.AuthorizedMinor < r.Amount.Minor
	switch {
	case partial:
		pr.Response = Response{Result: "Partial", AdditionalResponse: "message=" + r.Message}
	case r.Approved:
		pr.Response = Response{Result: "Success", AdditionalResponse: "message=" + r.Message}
	default:
		pr.Response = Response{Result: "Failure", ErrorCondition: string(r.Condition), AdditionalResponse: "message=" + r.Message}
	}
	if r.MaskedPAN != "" {
		res := &PaymentResult{PaymentType: "Normal"}
		if r.Refund {
			res.PaymentType = "Refund"
		}
		res.AmountsResp.Currency = r.Amount.Currency.Code
		authorized := "0"
		switch {
		case partial:
			authorized = money.Amount{Minor: r.AuthorizedMinor, Currency: r.Amount.Currency}.Decimal()
			res.AmountsResp.RequestedAmount = json.Number(r.Amount.Decimal())
		case r.Approved:
			authorized = r.Amount.Decimal()
		}
		res.AmountsResp.AuthorizedAmount = json.Number(authorized)
		res.PaymentAcquirerData.AcquirerPOIID = p.Header.POIID
		res.PaymentAcquirerData.MerchantID = merchantID
		res.PaymentAcquirerData.ApprovalCode = r.ApprovalCode
		res.PaymentAcquirerData.ResponseCode = r.ResponseCode
		if r.STAN != 0 {
			res.PaymentAcquirerData.STAN = strconv.FormatUint(uint64(r.STAN), 10)
		}
		res.PaymentAcquirerData.AcquirerTransactionID = TransactionID{TransactionID: r.RRN, TimeStamp: ts}
		res.PaymentInstrumentData.PaymentInstrumentType = "Card"
		res.PaymentInstrumentData.CardData.MaskedPan = r.MaskedPAN
		res.PaymentInstrumentData.CardData.PaymentBrand = r.Brand()
		res.PaymentInstrumentData.CardData.EntryMode = []string{"MagStripe"}
		switch {
		case strings.HasPrefix(r.EntryMode, "07"):
			res.PaymentInstrumentData.CardData.EntryMode = []string{"Contactless"}
			res.PaymentInstrumentData.CardData.FormFactor = r.ChipData.FormFactor
		case strings.HasPrefix(r.EntryMode, "91"):
			res.PaymentInstrumentData.CardData.EntryMode = []string{"Tapped"}
		case r.Chip:
			res.PaymentInstrumentData.CardData.EntryMode = []string{"ICC"}
		}
		if r.CVM != terminal.CVMNone {
			res.AuthenticationMethod = append(res.AuthenticationMethod, string(r.CVM))
		}
		if r.SignatureRequired {
			res.AuthenticationMethod = append(res.AuthenticationMethod, "PaperSignature")
		}
		pr.PaymentResult = res
	}
	for _, d := range []struct {
		q     string
		lines []string
	}{{"CashierReceipt", r.Receipt.Merchant}, {"CustomerReceipt", r.Receipt.Customer}} {
		if len(d.lines) == 0 {
			continue
		}
		rc := PaymentReceipt{DocumentQualifier: d.q}
		rc.OutputContent.OutputFormat = "Text"
		for _, l := range d.lines {
			rc.OutputContent.OutputText = append(rc.OutputContent.OutputText, OutputText{Text: l})
		}
		pr.PaymentReceipt = append(pr.PaymentReceipt, rc)
	}
	return &SaleToPOIResponse{MessageHeader: header(p), PaymentResponse: pr}
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// writeJSON writes v as the answer, compact JSON and a newline, with its length, so that
// the answer leaves in one write (no indentation to build, no chunked framing to end); the
// error says the till did not get it whole.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return err
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	if _, err := w.Write(b); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}
