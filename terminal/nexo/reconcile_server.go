package nexo

// The till API's GetTotals and Reconciliation.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/terminal"
)

// serveGetTotals answers the open batch's totals.
func (h *handler) serveGetTotals(w http.ResponseWriter, r *http.Request, body []byte) {
	hd, err := DecodeGetTotals(body, h.opts.POIID)
	if err != nil {
		h.log.Warn("till request refused", "reason", err)
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	hd.MessageType = "Response"
	gr := &GetTotalsResponse{}
	bt, err := h.t.OpenTotals(r.Context())
	if err != nil {
		h.log.Error("totals failed", "reason", err)
		gr.Response = Response{Result: "Failure", ErrorCondition: "Busy", AdditionalResponse: "message=" + err.Error()}
	} else {
		gr.Response = Response{Result: "Success", AdditionalResponse: "message=batch " + strconv.FormatUint(bt.Batch, 10) + ": " + bt.Summary()}
		gr.POIReconciliationID = strconv.FormatUint(bt.Batch, 10)
		gr.TransactionTotals = FromTotals(bt)
	}
	h.log.Info("till totals", "sale_id", hd.SaleID, "batch", bt.Batch, "result", gr.Response.Result)
	writeJSON(w, http.StatusOK, ReconcileEnvelope{Response: &ReconcileResponse{MessageHeader: hd, GetTotalsResponse: gr}})
}

// serveReconciliation closes the batch with the acquirer (terminal.Close).
func (h *handler) serveReconciliation(w http.ResponseWriter, r *http.Request, body []byte) {
	hd, err := DecodeReconciliation(body, h.opts.POIID)
	if err != nil {
		h.log.Warn("till request refused", "reason", err)
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	hd.MessageType = "Response"
	by := "till " + hd.SaleID
	if h.opts.Caller != nil {
		if who := h.opts.Caller(r.Context()); who != "" {
			by = who
		}
	}
	// A close runs to its end even if the till hangs up, as a sale does: it is journaled,
	// and a close asked again finishes a pending one.
	rep, err := h.t.Close(context.WithoutCancel(r.Context()), by)
	rr := &ReconciliationResponse{ReconciliationType: "AcquirerReconciliation"}
	switch {
	case errors.Is(err, terminal.ErrBusy):
		rr.Response = Response{Result: "Failure", ErrorCondition: "Busy", AdditionalResponse: "message=a transaction is in progress on this terminal; close again when it has ended"}
	case err != nil:
		h.log.Error("batch close failed", "reason", err)
		rr.Response = Response{Result: "Failure", ErrorCondition: "UnreachableHost", AdditionalResponse: "message=" + err.Error()}
		if rep.Totals.Batch != 0 {
			rr.Report = FromCloseReport(rep, h.t.POITransactionID)
		}
	default:
		rr.Response = Response{Result: "Success", AdditionalResponse: "message=" + closeText(rep)}
		rr.TransactionTotals = FromTotals(rep.Totals)
		rr.Report = FromCloseReport(rep, h.t.POITransactionID)
	}
	h.log.Info("till reconciliation", "sale_id", hd.SaleID, "by", by, "result", rr.Response.Result, "condition", rr.Response.ErrorCondition)
	writeJSON(w, http.StatusOK, ReconcileEnvelope{Response: &ReconcileResponse{MessageHeader: hd, ReconciliationResponse: rr}})
}

// closeText is a close's outcome in words, each difference named.
func closeText(rep terminal.CloseReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch %d closed, host answered %s: %s", rep.Batch.Number, rep.ResponseCode, rep.Totals.Summary())
	if rep.Uploaded {
		fmt.Fprintf(&b, "; out of balance, batch uploaded, %d difference(s)", len(rep.Differences))
		for _, d := range rep.Differences {
			fmt.Fprintf(&b, "; stan %06d %s %d: %s", d.STAN, d.Kind, d.AmountMinor, d.What)
		}
	} else {
		b.WriteString("; in balance")
	}
	fmt.Fprintf(&b, "; audit head %d", rep.AuditSeq)
	return b.String()
}
