package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/card"
)

// adminRequest is the body of an operator action: who does it and why. posctl fills Who
// from --who or the login name; posd records it in the store's audit chain.
type adminRequest struct {
	Who     string `json:"who"`
	Reason  string `json:"reason"`
	Confirm bool   `json:"confirm"`
}

// adminRoutes adds the operator API to mux:
//
//	GET    /v1/saf              the queue (masked)
//	POST   /v1/saf/flush        send everything due now
//	POST   /v1/saf/{id}/park    stop sending an item (body: who, reason, confirm)
//	POST   /v1/saf/{id}/unpark  send a parked item again (body: who)
//	DELETE /v1/saf/{id}         remove a parked item for good (body: who, reason, confirm)
//	GET    /v1/store/check      verify the file and the journal's invariants
//	GET    /v1/audit            the operator audit chain
//	POST   /v1/journal/find     a card's journal records, by its keyed PAN hash (body: who, pan)
func adminRoutes(mux *http.ServeMux, st *store.Store, term *terminal.Terminal, panHash func(context.Context, card.PAN) (string, error), log *slog.Logger) {
	mux.HandleFunc("GET /v1/saf", func(w http.ResponseWriter, r *http.Request) {
		items, err := st.List(r.Context())
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		views := make([]store.ItemView, 0, len(items))
		for _, it := range items {
			views = append(views, it.View())
		}
		writeJSONTo(w, http.StatusOK, views)
	})
	mux.HandleFunc("POST /v1/saf/flush", func(w http.ResponseWriter, r *http.Request) {
		req, ok := readAdmin(w, r, false)
		if !ok {
			return
		}
		n, err := st.Reschedule(r.Context(), req.Who)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		stats, err := term.Forwarder().Drain(context.WithoutCancel(r.Context()), false)
		resp := map[string]any{"rescheduled": n, "sent": stats.Sent, "acked": stats.Acked, "failed": stats.Failed, "parked": stats.Parked}
		if err != nil {
			resp["error"] = err.Error()
		}
		log.Info("operator flushed the queue", "who", req.Who, "sent", stats.Sent, "acked", stats.Acked)
		writeJSONTo(w, http.StatusOK, resp)
	})
	itemOp := func(confirm bool, op func(ctx context.Context, id store.QueueID, req adminRequest) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
			if err != nil || id == 0 {
				jsonError(w, http.StatusBadRequest, errors.New("queue id must be a positive number"))
				return
			}
			req, ok := readAdmin(w, r, confirm)
			if !ok {
				return
			}
			err = op(r.Context(), store.QueueID(id), req)
			switch {
			case errors.Is(err, store.ErrNotFound):
				jsonError(w, http.StatusNotFound, err)
			case errors.Is(err, store.ErrInvalid):
				jsonError(w, http.StatusConflict, err)
			case err != nil:
				jsonError(w, http.StatusInternalServerError, err)
			default:
				log.Info("operator action on the queue", "action", r.Method+" "+r.URL.Path, "who", req.Who, "reason", req.Reason)
				writeJSONTo(w, http.StatusOK, map[string]string{"status": "ok"})
			}
		}
	}
	mux.HandleFunc("POST /v1/saf/{id}/park", itemOp(true, func(ctx context.Context, id store.QueueID, req adminRequest) error {
		return st.Park(ctx, id, req.Who, req.Reason)
	}))
	mux.HandleFunc("POST /v1/saf/{id}/unpark", itemOp(false, func(ctx context.Context, id store.QueueID, req adminRequest) error {
		err := st.Unpark(ctx, id, req.Who)
		term.Forwarder().Kick()
		return err
	}))
	mux.HandleFunc("DELETE /v1/saf/{id}", itemOp(true, func(ctx context.Context, id store.QueueID, req adminRequest) error {
		return st.Delete(ctx, id, req.Who, req.Reason)
	}))
	mux.HandleFunc("GET /v1/store/check", func(w http.ResponseWriter, r *http.Request) {
		rep, err := st.Check(r.Context())
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSONTo(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/journal/find", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Who string `json:"who"`
			PAN string `json:"pan"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			// The decoder's message may quote the body, which holds a PAN: not repeated.
			jsonError(w, http.StatusBadRequest, errors.New(`body must be JSON {"who":..., "pan":...}`))
			return
		}
		req.Who = strings.TrimSpace(req.Who)
		if req.Who == "" || len(req.Who) > 64 {
			jsonError(w, http.StatusBadRequest, errors.New("who: required (1 to 64 characters): the audit record names who searched"))
			return
		}
		pan, err := card.ParsePAN(strings.TrimSpace(req.PAN))
		if err != nil {
			jsonError(w, http.StatusBadRequest, fmt.Errorf("pan: %w", err))
			return
		}
		if panHash == nil {
			jsonError(w, http.StatusConflict, errors.New("no PAN-hash key is configured (hsm.data, key \"pan-hash\"): records carry no hash to find"))
			return
		}
		h, err := panHash(r.Context(), pan)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		recs, err := st.FindByPANHash(r.Context(), h)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		// Looking a card up is itself recorded: who looked, for which (masked) card.
		if err := st.Audit(r.Context(), req.Who, "journal-find", fmt.Sprintf("card %s: %d records", pan.Masked(), len(recs))); err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		log.Info("operator searched the journal by card", "who", req.Who, "pan", pan, "records", len(recs))
		writeJSONTo(w, http.StatusOK, recs)
	})
	mux.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
		log, err := st.AuditLog(r.Context())
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSONTo(w, http.StatusOK, log)
	})
	mux.HandleFunc("GET /v1/audit/verify", auditVerifyHandler(st))
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

// readAdmin decodes an operator request; who is required, and so is confirm where the
// action destroys or stops something.
func readAdmin(w http.ResponseWriter, r *http.Request, needConfirm bool) (adminRequest, bool) {
	var req adminRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, errors.New("body must be JSON {\"who\":..., \"reason\":..., \"confirm\":...}: "+err.Error()))
		return req, false
	}
	req.Who = strings.TrimSpace(req.Who)
	if req.Who == "" || len(req.Who) > 64 {
		jsonError(w, http.StatusBadRequest, errors.New("who: required (1 to 64 characters): the audit record names who acted"))
		return req, false
	}
	if needConfirm && !req.Confirm {
		jsonError(w, http.StatusBadRequest, errors.New("confirm: required for this action"))
		return req, false
	}
	return req, true
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
