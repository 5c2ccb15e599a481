package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/access"
	"github.com/posd-dev/posd/terminal/card"
)

// adminRequest is the body of an operator action. Who acts is the authenticated caller;
// Note (or Who, its deprecated name) is free text recorded after it.
type adminRequest struct {
	Note string `json:"note"`
	// Deprecated: Who is the note's old name; what it says is recorded as a note, never as
	// the actor.
	Who     string `json:"who"`
	Reason  string `json:"reason"`
	Confirm bool   `json:"confirm"`
	// Approval names a pending dual-control approval (the guard reads it).
	Approval string `json:"approval"`
}

// admin is the operator API: one method per route.
//
// Safe for concurrent use: its fields are not modified after routes.
type admin struct {
	st      *store.Store
	term    *terminal.Terminal
	panHash func(context.Context, card.PAN, card.Expiry) (string, error)
	log     *slog.Logger
	// archiveDir is store.archive_dir: GET /v1/journal?archived=1 reads it.
	archiveDir string
}

// routes adds the operator API to g, each route with the operation the access policy
// knows it by:
//
//	GET    /v1/journal          the journal (PANs masked); ?sale_id=ID: one till's records;
//	                            ?archived=1: the archived records first, then the live ones
//	POST   /v1/journal/find     a card's journal records, by its keyed PAN hash (body: note, pan)
//	GET    /v1/saf              the queue (masked)
//	POST   /v1/saf/flush        send everything due now
//	POST   /v1/saf/{id}/park    stop sending an item (body: note, reason, confirm)
//	POST   /v1/saf/{id}/unpark  send a parked item again (body: note)
//	DELETE /v1/saf/{id}         remove a parked item for good (body: note, reason, confirm;
//	                            dual control)
//	GET    /v1/store/check      verify the file and the journal's invariants
//	GET    /v1/audit            the operator audit chain
func (h *admin) routes(g *access.Guard) {
	g.HandleClassified("GET /v1/journal", classifyJournal, http.HandlerFunc(h.serveJournal))
	g.HandleFunc("POST /v1/journal/find", access.OpCardSearch, h.serveJournalFind)
	g.HandleFunc("GET /v1/saf", access.OpSAFList, h.serveSAFList)
	g.HandleFunc("POST /v1/saf/flush", access.OpSAFFlush, h.serveSAFFlush)
	g.HandleFunc("POST /v1/saf/{id}/park", access.OpSAFPark, h.serveSAFPark)
	g.HandleFunc("POST /v1/saf/{id}/unpark", access.OpSAFUnpark, h.serveSAFUnpark)
	g.HandleFunc("DELETE /v1/saf/{id}", access.OpSAFDelete, h.serveSAFDelete)
	g.HandleFunc("GET /v1/store/check", access.OpStoreCheck, h.serveStoreCheck)
	g.HandleFunc("GET /v1/audit", access.OpAudit, h.serveAudit)
	g.HandleFunc("GET /v1/audit/verify", access.OpAuditVerify, auditVerifyHandler(h.st))
}

// classifyJournal: the whole journal is a supervisor's; one till's lines (?sale_id=) a
// cashier's too, for the SaleIDs it sells under.
func classifyJournal(r *http.Request) (access.Request, error) {
	if r.URL.Query().Has("sale_id") {
		id := r.URL.Query().Get("sale_id")
		if id == "" || len(id) > 64 || !printable(id) {
			return access.Request{}, errors.New("sale_id: 1 to 64 printable characters")
		}
		return access.Request{Op: access.OpJournalOwn, SaleID: id}, nil
	}
	return access.Request{Op: access.OpJournal}, nil
}

func (h *admin) serveJournal(w http.ResponseWriter, r *http.Request) {
	saleID, one := r.URL.Query().Get("sale_id"), r.URL.Query().Has("sale_id")
	recs := []store.Record{}
	keep := func(rec store.Record) error {
		if !one || rec.Intent.SaleID == saleID {
			recs = append(recs, rec)
		}
		return nil
	}
	var err error
	switch a := r.URL.Query().Get("archived"); a {
	case "", "0":
	case "1":
		// Archived records first (closed batches older than store.keep), then the live ones.
		err = h.st.ArchivedRecords(r.Context(), h.archiveDir, keep)
	default:
		jsonError(w, http.StatusBadRequest, fmt.Errorf("archived=%.16q: want 1 or 0", a))
		return
	}
	if err == nil {
		err = h.st.Records(r.Context(), keep)
	}
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSONTo(w, http.StatusOK, recs)
}

func (h *admin) serveSAFList(w http.ResponseWriter, r *http.Request) {
	items, err := h.st.List(r.Context())
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	views := make([]store.ItemView, 0, len(items))
	for _, it := range items {
		views = append(views, it.View())
	}
	writeJSONTo(w, http.StatusOK, views)
}

func (h *admin) serveSAFFlush(w http.ResponseWriter, r *http.Request) {
	by, _, ok := readAdmin(w, r, false)
	if !ok {
		return
	}
	n, err := h.st.Reschedule(r.Context(), by)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	stats, err := h.term.Forwarder().Drain(context.WithoutCancel(r.Context()), false)
	resp := map[string]any{"rescheduled": n, "sent": stats.Sent, "acked": stats.Acked, "failed": stats.Failed, "parked": stats.Parked}
	if err != nil {
		resp["error"] = err.Error()
	}
	h.log.Info("operator flushed the queue", "who", by, "sent", stats.Sent, "acked", stats.Acked)
	writeJSONTo(w, http.StatusOK, resp)
}

func (h *admin) serveSAFPark(w http.ResponseWriter, r *http.Request) {
	h.itemOp(w, r, true, func(ctx context.Context, id store.QueueID, by, reason string) error {
		return h.st.Park(ctx, id, by, reason)
	})
}

// AuditVerifyView is the answer of GET /v1/audit/verify (posctl audit verify).
type AuditVerifyView struct {
	OK        bool   `json:"ok"`
	Mode      string `json:"mode"` // keyed, unkeyed, empty
	Links     uint64 `json:"links"`
	Keyed     int    `json:"keyed"`
	Unkeyed   int    `json:"unkeyed"`
	Legacy    int    `json:"legacy"`
	Records   int    `json:"records"`
	Items     int    `json:"items"`
	PreChain  int    `json:"pre_chain,omitempty"`
	HeadSeq   uint64 `json:"head_seq"`
	HeadMAC   string `json:"head_mac"`
	BrokenSeq uint64 `json:"broken_seq,omitempty"`
	Broken    string `json:"broken,omitempty"`
	Problems  int    `json:"problems,omitempty"`
}

// auditVerifyHandler verifies the audit chain (store.VerifyAudit) under posd's audit key;
// ?head=SEQ:MAC is a head printed earlier, to find a cut tail. 200 whether it verifies or
// not: "ok" says which.
func auditVerifyHandler(st *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var printed []store.ChainHead
		if h := r.URL.Query().Get("head"); h != "" {
			ch, err := store.ParseChainHead(h)
			if err != nil {
				jsonError(w, http.StatusBadRequest, err)
				return
			}
			printed = append(printed, ch)
		}
		rep, err := st.VerifyAudit(r.Context(), printed...)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		v := AuditVerifyView{OK: rep.OK(), Mode: rep.Mode(), Links: rep.Links, Keyed: rep.Keyed, Unkeyed: rep.Unkeyed, Legacy: rep.Legacy,
			Records: rep.Records, Items: rep.Items, PreChain: rep.PreChain, HeadSeq: rep.Head.Seq, HeadMAC: rep.Head.MAC, Problems: rep.Problems}
		if rep.Broken != nil {
			v.BrokenSeq, v.Broken = rep.Broken.Seq, rep.Broken.What
		}
		writeJSONTo(w, http.StatusOK, v)
	}
}

func (h *admin) serveSAFUnpark(w http.ResponseWriter, r *http.Request) {
	h.itemOp(w, r, false, func(ctx context.Context, id store.QueueID, by, _ string) error {
		err := h.st.Unpark(ctx, id, by)
		h.term.Forwarder().Kick()
		return err
	})
}

func (h *admin) serveSAFDelete(w http.ResponseWriter, r *http.Request) {
	h.itemOp(w, r, true, func(ctx context.Context, id store.QueueID, by, reason string) error {
		return h.st.Delete(ctx, id, by, reason)
	})
}

// itemOp runs op on the queue item the path names, for an operator request.
func (h *admin) itemOp(w http.ResponseWriter, r *http.Request, confirm bool, op func(ctx context.Context, id store.QueueID, by, reason string) error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		jsonError(w, http.StatusBadRequest, errors.New("queue id must be a positive number"))
		return
	}
	by, req, ok := readAdmin(w, r, confirm)
	if !ok {
		return
	}
	err = op(r.Context(), store.QueueID(id), by, req.Reason)
	switch {
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, err)
	case errors.Is(err, store.ErrInvalid):
		jsonError(w, http.StatusConflict, err)
	case err != nil:
		jsonError(w, http.StatusInternalServerError, err)
	default:
		h.log.Info("operator action on the queue", "action", r.Method+" "+r.URL.Path, "who", by, "reason", req.Reason)
		writeJSONTo(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

func (h *admin) serveStoreCheck(w http.ResponseWriter, r *http.Request) {
	rep, err := h.st.Check(r.Context())
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSONTo(w, http.StatusOK, rep)
}

// serveJournalFind finds a card's journal records: by its full PAN and expiry (the keyed
// hash the records carry covers both, so that whoever holds a masked PAN cannot find the
// card by trying its middle digits), or by the last 4 digits and the day of the sale (the
// masked PANs of that day; no hash, nothing to guess against). Each search is audited.
func (h *admin) serveJournalFind(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Note   string `json:"note"`
		Who    string `json:"who"` // Deprecated: the note's old name
		PAN    string `json:"pan"`
		Expiry string `json:"expiry"` // YYMM, with pan
		Last4  string `json:"last4"`  // with date
		Date   string `json:"date"`   // YYYY-MM-DD, the terminal's local day
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		// The decoder's message may quote the body, which holds a PAN: not repeated.
		jsonError(w, http.StatusBadRequest, errors.New(`body must be JSON {"note":..., "pan":..., "expiry":"YYMM"} or {"note":..., "last4":..., "date":"YYYY-MM-DD"}`))
		return
	}
	note, err := checkNote(cmp.Or(req.Note, req.Who))
	if err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return
	}
	by := who(r, note)
	var recs []store.Record
	var what string
	switch {
	case req.PAN != "" && req.Last4 == "":
		pan, err := card.ParsePAN(strings.TrimSpace(req.PAN))
		if err != nil {
			jsonError(w, http.StatusBadRequest, fmt.Errorf("pan: %w", err))
			return
		}
		exp, err := card.ParseExpiry(strings.TrimSpace(req.Expiry))
		if err != nil {
			jsonError(w, http.StatusBadRequest, errors.New("expiry: required with pan, YYMM as printed on the card: the card number alone does not find a card"))
			return
		}
		if h.panHash == nil {
			jsonError(w, http.StatusConflict, errors.New("no PAN-hash key is configured (hsm.data, key \"pan-hash\"): records carry no hash to find"))
			return
		}
		hash, err := h.panHash(r.Context(), pan, exp)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		if recs, err = h.st.FindByPANHash(r.Context(), hash); err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		what = "card " + pan.Masked()
	case req.Last4 != "" && req.PAN == "":
		day, err := time.ParseInLocation("2006-01-02", req.Date, time.Local)
		if len(req.Last4) != 4 || strings.Trim(req.Last4, "0123456789") != "" {
			jsonError(w, http.StatusBadRequest, errors.New("last4: the card number's last 4 digits"))
			return
		}
		if err != nil {
			jsonError(w, http.StatusBadRequest, errors.New("date: required with last4, YYYY-MM-DD (the day of the sale)"))
			return
		}
		err = h.st.Records(r.Context(), func(rec store.Record) error {
			t := rec.Intent.Time.In(time.Local)
			if strings.HasSuffix(rec.Intent.MaskedPAN, req.Last4) && !t.Before(day) && t.Before(day.AddDate(0, 0, 1)) {
				recs = append(recs, rec)
			}
			return nil
		})
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		what = "cards ending " + req.Last4 + " on " + req.Date
	default:
		jsonError(w, http.StatusBadRequest, errors.New("give pan with expiry, or last4 with date"))
		return
	}
	if recs == nil {
		recs = []store.Record{}
	}
	// Looking a card up is itself recorded: who looked, for which (masked) card.
	if err := h.st.Audit(r.Context(), by, "journal-find", fmt.Sprintf("%s: %d records", what, len(recs))); err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	h.log.Info("operator searched the journal by card", "who", by, "search", what, "records", len(recs))
	writeJSONTo(w, http.StatusOK, recs)
}

func (h *admin) serveAudit(w http.ResponseWriter, r *http.Request) {
	entries, err := h.st.AuditLog(r.Context())
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSONTo(w, http.StatusOK, entries)
}

// readAdmin decodes an operator request and returns who acts (the authenticated caller
// and the note); confirm is required where the action destroys or stops something.
func readAdmin(w http.ResponseWriter, r *http.Request, needConfirm bool) (string, adminRequest, bool) {
	var req adminRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		jsonError(w, http.StatusBadRequest, errors.New("body must be JSON {\"note\":..., \"reason\":..., \"confirm\":...}: "+err.Error()))
		return "", req, false
	}
	note, err := checkNote(cmp.Or(req.Note, req.Who))
	if err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return "", req, false
	}
	if len(req.Reason) > 256 {
		jsonError(w, http.StatusBadRequest, errors.New("reason: at most 256 characters"))
		return "", req, false
	}
	if needConfirm && !req.Confirm {
		jsonError(w, http.StatusBadRequest, errors.New("confirm: required for this action"))
		return "", req, false
	}
	return who(r, note), req, true
}

func jsonError(w http.ResponseWriter, code int, err error) {
	writeJSONTo(w, code, map[string]string{"error": err.Error()})
}

func writeJSONTo(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
