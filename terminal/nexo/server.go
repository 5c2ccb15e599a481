package nexo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
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
	// Devices, when set, reports the devices' status in GET /v1/status.
	Devices func() []terminal.DeviceStatus
}

// NewHandler returns the till API:
//
//	POST /nexo         a SaleToPOIRequest; answered with a SaleToPOIResponse
//	GET  /v1/status    liveness: {"status":"ok","poiid":...}
//	GET  /v1/journal   the journal (when ServerOptions.Journal is set)
//
// The handler is safe for concurrent use; the terminal answers Busy to a second sale.
func NewHandler(t *terminal.Terminal, opts ServerOptions) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /nexo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
		if err != nil {
			httpError(w, http.StatusBadRequest, "reading the request: "+err.Error())
			return
		}
		if len(body) > MaxBody {
			httpError(w, http.StatusRequestEntityTooLarge, "request larger than 64 KiB")
			return
		}
		if Category(body) == "Reversal" {
			serveReversal(w, t, body, opts, log)
			return
		}
		p, err := DecodePayment(body, opts.POIID)
		if err != nil {
			log.Warn("till request refused", "reason", err)
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		log.Info("till request", "sale_id", p.Header.SaleID, "service_id", p.Header.ServiceID, "sale_txn", p.SaleTransactionID.TransactionID, "amount", p.Amount.String())
		// The sale runs to its end even if the till hangs up: the journal and the customer
		// need an outcome either way.
		ctx := context.WithoutCancel(r.Context())
		res, err := t.Sale(ctx, terminal.SaleRequest{SaleID: p.Header.SaleID, SaleTransactionID: p.SaleTransactionID.TransactionID, Amount: p.Amount})
		var resp *SaleToPOIResponse
		switch {
		case errors.Is(err, terminal.ErrBusy):
			resp = failure(p, "Busy", "another transaction is in progress on this terminal")
		case errors.Is(err, terminal.ErrInvalidSale):
			httpError(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			log.Error("sale failed", "reason", err)
			resp = failure(p, "Aborted", err.Error())
		default:
			resp = FromResult(p, res, opts.MerchantID)
		}
		log.Info("till answer", "sale_txn", p.SaleTransactionID.TransactionID, "result", resp.PaymentResponse.Response.Result, "condition", resp.PaymentResponse.Response.ErrorCondition)
		writeJSON(w, http.StatusOK, Envelope{Response: resp})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := map[string]any{"status": "ok", "poiid": opts.POIID}
		if opts.Devices != nil {
			st["devices"] = opts.Devices()
		}
		writeJSON(w, http.StatusOK, st)
	})
	if opts.Journal != nil {
		mux.HandleFunc("GET /v1/journal", func(w http.ResponseWriter, r *http.Request) {
			var recs []store.Record
			err := opts.Journal.Records(r.Context(), func(rec store.Record) error {
				recs = append(recs, rec)
				return nil
			})
			if err != nil {
				httpError(w, http.StatusInternalServerError, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, recs)
		})
	}
	return mux
}

func header(p Payment) MessageHeader {
	h := p.Header
	h.MessageType = "Response"
	return h
}

// serveReversal voids an approved sale (a cancel after approval).
func serveReversal(w http.ResponseWriter, t *terminal.Terminal, body []byte, opts ServerOptions, log *slog.Logger) {
	rv, err := DecodeReversal(body, opts.POIID)
	if err != nil {
		log.Warn("till request refused", "reason", err)
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	h := rv.Header
	h.MessageType = "Response"
	rr := &ReversalResponse{}
	rr.POIData.POITransactionID = TransactionID{TransactionID: rv.POITransactionID}
	res, err := t.Void(context.WithoutCancel(context.Background()), rv.POITransactionID, "till "+h.SaleID+" ("+rv.Reason+")")
	switch {
	case err == nil:
		rr.Response = Response{Result: "Success", AdditionalResponse: "message=" + res.Message}
	case errors.Is(err, terminal.ErrUnknownTransaction):
		rr.Response = Response{Result: "Failure", ErrorCondition: "NotFound", AdditionalResponse: "message=" + err.Error()}
	case errors.Is(err, store.ErrNotVoidable):
		rr.Response = Response{Result: "Failure", ErrorCondition: "NotAllowed", AdditionalResponse: "message=" + err.Error()}
	default:
		log.Error("void failed", "reason", err)
		rr.Response = Response{Result: "Failure", ErrorCondition: "Aborted", AdditionalResponse: "message=" + err.Error()}
	}
	log.Info("till void", "poi_txn", rv.POITransactionID, "result", rr.Response.Result, "condition", rr.Response.ErrorCondition)
	writeJSON(w, http.StatusOK, Envelope{Response: &SaleToPOIResponse{MessageHeader: h, ReversalResponse: rr}})
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
	if r.Approved {
		pr.Response = Response{Result: "Success", AdditionalResponse: "message=" + r.Message}
	} else {
		pr.Response = Response{Result: "Failure", ErrorCondition: string(r.Condition), AdditionalResponse: "message=" + r.Message}
	}
	if r.MaskedPAN != "" {
		res := &PaymentResult{PaymentType: "Normal"}
		res.AmountsResp.Currency = r.Amount.Currency.Code
		authorized := "0"
		if r.Approved {
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
		res.PaymentInstrumentData.CardData.EntryMode = []string{"MagStripe"}
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
