package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/posd-dev/posd/terminal/access"
	"github.com/posd-dev/posd/terminal/nexo"
)

// listenAPI opens the API's listeners: the unix socket (mode and group set whatever the
// umask) and/or the mutual-TLS loopback listener, each capped at
// api.max_connections open connections. The first is the one addr reports.
func listenAPI(a *APIConfig) (_ []net.Listener, err error) {
	var lns []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
		}
	}()
	tcp := ""
	if path, ok := strings.CutPrefix(a.Listen, "unix:"); ok {
		ln, err := access.ListenUnix(path, a.socketMode, a.socketGID)
		if err != nil {
			return nil, fmt.Errorf("api.listen: %w", err)
		}
		lns = append(lns, access.LimitListener(ln, a.MaxConnections))
		if a.TLS != nil {
			tcp = a.TLS.Listen
		}
	} else {
		tcp = a.Listen
	}
	if tcp != "" {
		if a.TLS == nil { // fill refuses this already; never serve TCP without TLS
			return nil, errors.New("api.listen: a TCP listener needs api.tls (mutual TLS)")
		}
		tc, err := access.ServerTLS(a.TLS.CertFile, a.TLS.KeyFile, a.TLS.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("api.tls: %w", err)
		}
		ln, err := net.Listen("tcp", tcp)
		if err != nil {
			return nil, fmt.Errorf("api.tls: %w", err)
		}
		lns = append(lns, tls.NewListener(access.LimitListener(ln, a.MaxConnections), tc))
	}
	return lns, nil
}

// classifyNexo tells a till request's operation from its body (which it puts back), and
// the SaleID it names.
func classifyNexo(r *http.Request) (access.Request, error) {
	body, err := nexo.ReadBody(r) // decoded once, here, for the handler too
	if err != nil {
		return access.Request{}, err
	}
	peek := body.Peek() // the handler reports a malformed body
	req := access.Request{SaleID: peek.SaleID}
	switch peek.Category {
	case "Reversal":
		req.Op = access.OpVoid
	case "TransactionStatus":
		req.Op = access.OpTransactionStatus
	case "Abort":
		req.Op = access.OpAbort
	case "GetTotals":
		req.Op = access.OpTotals
	case "Reconciliation":
		req.Op = access.OpReconcile
	default: // Payment, and what the handler refuses as a malformed payment
		req.Op = access.OpPayment
		if peek.Refund {
			req.Op = access.OpRefund // money back: the supervisor's
		}
	}
	return req, nil
}

// classifyFirmware: rollback needs dual control; everything else under /v1/firmware/ is
// the technician's.
func classifyFirmware(r *http.Request) (access.Request, error) {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/firmware/rollback" {
		return access.Request{Op: access.OpFirmwareRollback}, nil
	}
	return access.Request{Op: access.OpFirmware}, nil
}

// maxNote bounds the free-text note a caller may add to its audited identity.
const maxNote = 64

// checkNote refuses a note that is too long or not printable.
func checkNote(note string) (string, error) {
	note = strings.TrimSpace(note)
	if utf8.RuneCountInString(note) > maxNote {
		return "", fmt.Errorf("note: at most %d characters", maxNote)
	}
	for _, c := range note {
		if c < 0x20 || c == 0x7f {
			return "", errors.New("note: control characters are not allowed")
		}
	}
	return note, nil
}

// who is what the audit records for a request: the authenticated caller, then the note.
func who(r *http.Request, note string) string {
	c, ok := access.CallerFrom(r.Context())
	s := "unauthenticated" // never: the guard lets no such request through
	if ok {
		s = c.Who()
	}
	if note != "" {
		s += " note: " + note
	}
	return s
}

// firmwareWho puts the authenticated caller in the "who" of firmware requests, in place
// of what the request claims (which becomes a note), and takes out the dual-control
// "approval" field, which the firmware API does not know.
func firmwareWho(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-tar") {
			q := r.URL.Query()
			note, err := checkNote(q.Get("who"))
			if err != nil {
				jsonError(w, http.StatusBadRequest, err)
				return
			}
			q.Set("who", who(r, note))
			r.URL.RawQuery = q.Encode()
			next.ServeHTTP(w, r)
			return
		}
		var body map[string]json.RawMessage
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
		if err != nil || len(b) > 64<<10 || json.Unmarshal(b, &body) != nil || body == nil {
			// Let the firmware API report its own format errors.
			r.Body = io.NopCloser(bytes.NewReader(b))
			next.ServeHTTP(w, r)
			return
		}
		var claimed string
		if raw, ok := body["who"]; ok {
			_ = json.Unmarshal(raw, &claimed)
		}
		note, err := checkNote(claimed)
		if err != nil {
			jsonError(w, http.StatusBadRequest, err)
			return
		}
		body["who"], _ = json.Marshal(who(r, note))
		delete(body, "approval")
		b, _ = json.Marshal(body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		next.ServeHTTP(w, r)
	})
}
