package main

// GET /: the technician's status page, one self-contained HTML file (inline CSS and
// script, nothing from another origin) that polls GET /v1/status and GET /v1/audit/recent.

import (
	_ "embed"
	"fmt"
	"net/http"
	"strconv"

	"github.com/posd-dev/posd/store"
)

//go:embed statuspage/status.html
var statusHTML []byte

// serveStatusPage serves the page. Its content security policy lets it run only its own
// inline script and style and fetch only from posd itself.
func serveStatusPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(statusHTML)
}

// maxRecentAudit bounds GET /v1/audit/recent?n=.
const maxRecentAudit = 200

// recentAudit serves the last n (default 20) entries of the audit log, newest first.
func recentAudit(st *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := 20
		if s := r.URL.Query().Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 || v > maxRecentAudit {
				jsonError(w, http.StatusBadRequest, fmt.Errorf("n: a number from 1 to %d", maxRecentAudit))
				return
			}
			n = v
		}
		entries, err := st.AuditLog(r.Context())
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err)
			return
		}
		out := make([]store.AuditEntry, 0, n)
		for i := len(entries) - 1; i >= 0 && len(out) < n; i-- {
			out = append(out, entries[i])
		}
		writeJSONTo(w, http.StatusOK, out)
	}
}
