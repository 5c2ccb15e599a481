// Package fwapi is the firmware part of posd's local HTTP API: the handler
// posd mounts for /v1/firmware/, and the client `posctl firmware` uses.
//
// # Endpoints
//
//	GET  /v1/firmware/status             firmware.Status as JSON
//	GET  /v1/firmware/events?after=N     {"events":[firmware.Event...],"chain_error":"..."}
//	POST /v1/firmware/install            install a bundle (see below)
//	POST /v1/firmware/check              verify a bundle, change nothing
//	POST /v1/firmware/pinpad/install     push a bundle's PIN pad image to the pad
//	POST /v1/firmware/rollback           {"who":"..."} -> firmware.Result
//
// A bundle is given either as JSON {"source":"https://... or a path in
// posd's firmware inbox","who":"..."} (Content-Type application/json), or
// uploaded as the tar stream itself (Content-Type application/x-tar) with
// ?who=...&name=... in the URL. The answer streams newline-delimited JSON:
// {"progress":firmware.Progress} lines, then one {"result":firmware.Result}
// or {"error":"...","kind":"..."} line. Requests refused before any work
// starts get a 4xx status with one {"error":...,"kind":...} object: a
// source outside the inbox (or a symlink out of it), a FIFO, device or
// socket, or a URL not on the allowed prefixes gets 400 with kind
// "source", before posd opens or downloads anything.
//
// Error kinds: signature, expired, rollback, mismatch, length, hash,
// old-version, hardware, no-target, format, busy, not-confirmed,
// no-previous, no-who, source, slow-download, stopped, pad-hash, pad,
// internal.
package fwapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posd-dev/posd/firmware"
)

// HandlerOptions configures NewHandler. A nil *HandlerOptions means the
// defaults. NewHandler copies it, so it is safe for concurrent use.
type HandlerOptions struct {
	// Pad gives the PIN pad for /v1/firmware/pinpad/install: a link, a
	// redial function (may be nil) and a release function called when the
	// transfer ends (posd keeps sales off the pad until then). Default nil:
	// that endpoint answers 501.
	Pad func(ctx context.Context) (link firmware.PadLink, redial func(context.Context) (firmware.PadLink, error), release func(), err error)
	// MaxUpload caps an uploaded bundle, in bytes. Default 1 GiB.
	MaxUpload int64
	// ProgressEvery is the least time between two progress lines of one
	// phase. Default 100ms.
	ProgressEvery time.Duration
	// Logger logs each operation. Default: discard.
	Logger *slog.Logger
}

type handler struct {
	m    *firmware.Manager
	opts HandlerOptions
}

// NewHandler returns the handler of the /v1/firmware/ endpoints over m.
// It is safe for concurrent use (as the Manager is).
func NewHandler(m *firmware.Manager, opts *HandlerOptions) http.Handler {
	var o HandlerOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxUpload <= 0 {
		o.MaxUpload = 1 << 30
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{m: m, opts: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/firmware/status", h.status)
	mux.HandleFunc("GET /v1/firmware/events", h.events)
	mux.HandleFunc("POST /v1/firmware/install", func(w http.ResponseWriter, r *http.Request) { h.install(w, r, "install") })
	mux.HandleFunc("POST /v1/firmware/check", func(w http.ResponseWriter, r *http.Request) { h.install(w, r, "check") })
	mux.HandleFunc("POST /v1/firmware/pinpad/install", func(w http.ResponseWriter, r *http.Request) { h.install(w, r, "pinpad") })
	mux.HandleFunc("POST /v1/firmware/rollback", h.rollback)
	return mux
}

// ErrorBody is the JSON of an error answer. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type ErrorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// Line is one line of an install stream: Progress, Result, or Error with
// Kind. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type Line struct {
	Progress *firmware.Progress `json:"progress,omitempty"`
	Result   *firmware.Result   `json:"result,omitempty"`
	Error    string             `json:"error,omitempty"`
	Kind     string             `json:"kind,omitempty"`
}

// request is the JSON body of install, check and pinpad/install.
type request struct {
	Source string `json:"source"`
	Who    string `json:"who"`
}

var kinds = []struct {
	err  error
	kind string
	code int
}{
	{firmware.ErrSource, "source", http.StatusBadRequest},
	{firmware.ErrSlowDownload, "slow-download", http.StatusGatewayTimeout},
	{firmware.ErrSignature, "signature", http.StatusUnprocessableEntity},
	{firmware.ErrExpired, "expired", http.StatusUnprocessableEntity},
	{firmware.ErrRollback, "rollback", http.StatusUnprocessableEntity},
	{firmware.ErrMismatch, "mismatch", http.StatusUnprocessableEntity},
	{firmware.ErrLength, "length", http.StatusUnprocessableEntity},
	{firmware.ErrHash, "hash", http.StatusUnprocessableEntity},
	{firmware.ErrOldVersion, "old-version", http.StatusUnprocessableEntity},
	{firmware.ErrHardware, "hardware", http.StatusUnprocessableEntity},
	{firmware.ErrNoTarget, "no-target", http.StatusUnprocessableEntity},
	{firmware.ErrFormat, "format", http.StatusUnprocessableEntity},
	{firmware.ErrBusy, "busy", http.StatusConflict},
	{firmware.ErrStopped, "stopped", http.StatusServiceUnavailable},
	{firmware.ErrNotConfirmed, "not-confirmed", http.StatusConflict},
	{firmware.ErrNoPrevious, "no-previous", http.StatusConflict},
	{firmware.ErrNoWho, "no-who", http.StatusBadRequest},
	{firmware.ErrPadHash, "pad-hash", http.StatusBadGateway},
	{firmware.ErrPadProtocol, "pad", http.StatusBadGateway},
}

// kindOf returns the error kind and HTTP status of err.
func kindOf(err error) (string, int) {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.kind, k.code
		}
	}
	return "internal", http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, ErrorBody{Error: msg, Kind: kind})
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.m.Status(r.Context())
	if err != nil {
		k, code := kindOf(err)
		fail(w, code, k, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// EventsBody is the answer of /v1/firmware/events. It is plain data:
// safe for concurrent reads, not for a concurrent write.
type EventsBody struct {
	Events     []firmware.Event `json:"events"`
	ChainError string           `json:"chain_error,omitempty"`
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if s := r.URL.Query().Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fail(w, http.StatusBadRequest, "format", "after: not a sequence number")
			return
		}
		after = n
	}
	evs, err := h.m.Events(r.Context(), after)
	body := EventsBody{Events: evs}
	if errors.Is(err, firmware.ErrTampered) {
		body.ChainError = err.Error()
	} else if err != nil {
		k, code := kindOf(err)
		fail(w, code, k, err.Error())
		return
	}
	if body.Events == nil {
		body.Events = []firmware.Event{}
	}
	writeJSON(w, http.StatusOK, body)
}

// decodeRequest reads a JSON request body of at most 64 KiB, strictly.
func decodeRequest(r *http.Request, v any) error {
	d := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if d.More() {
		return errors.New("request body: data after the JSON object")
	}
	return nil
}

// stream writes NDJSON lines, sending the status line with the first one.
type stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	mu      sync.Mutex
	started bool
	every   time.Duration
	last    time.Time
	phase   string
}

func (s *stream) line(l Line) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.w.Header().Set("Content-Type", "application/x-ndjson")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	json.NewEncoder(s.w).Encode(l)
	s.rc.Flush()
}

func (s *stream) progress(p firmware.Progress) {
	now := time.Now()
	s.mu.Lock()
	skip := p.Phase == s.phase && now.Sub(s.last) < s.every && p.Done != p.Total
	if !skip {
		s.phase, s.last = p.Phase, now
	}
	s.mu.Unlock()
	if !skip {
		s.line(Line{Progress: &p})
	}
}

func (h *handler) install(w http.ResponseWriter, r *http.Request, op string) {
	ctx := r.Context()
	req := firmware.InstallRequest{}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	rc := http.NewResponseController(w)
	switch ct {
	case "application/json":
		var body request
		if err := decodeRequest(r, &body); err != nil {
			fail(w, http.StatusBadRequest, "format", err.Error())
			return
		}
		if body.Source == "" {
			fail(w, http.StatusBadRequest, "source", "source is required: a bundle file in posd's firmware inbox, or an https:// URL on firmware.allowed_urls")
			return
		}
		req.Source, req.Who = body.Source, body.Who
	case "application/x-tar":
		// The upload may be left unread (a refused bundle): do not keep
		// the connection for another request.
		w.Header().Set("Connection", "close")
		req.Bundle = http.MaxBytesReader(w, r.Body, h.opts.MaxUpload)
		req.Who = r.URL.Query().Get("who")
		req.Source = "upload"
		if n := r.URL.Query().Get("name"); n != "" {
			req.Source = "upload of " + n
		}
	default:
		fail(w, http.StatusUnsupportedMediaType, "format", "Content-Type must be application/json or application/x-tar")
		return
	}
	if strings.TrimSpace(req.Who) == "" {
		fail(w, http.StatusBadRequest, "no-who", firmware.ErrNoWho.Error())
		return
	}
	if req.Bundle != nil {
		// The upload is read while progress goes out.
		_ = rc.EnableFullDuplex()
	}
	s := &stream{w: w, rc: rc, every: h.opts.ProgressEvery}
	req.Progress = s.progress
	var res firmware.Result
	var err error
	switch op {
	case "install":
		res, err = h.m.Install(ctx, req)
	case "check":
		res, err = h.m.Check(ctx, req)
	case "pinpad":
		if h.opts.Pad == nil {
			fail(w, http.StatusNotImplemented, "pad", "this posd has no PIN pad for firmware transfers")
			return
		}
		link, redial, release, perr := h.opts.Pad(ctx)
		if perr != nil {
			k, code := kindOf(perr)
			fail(w, code, k, "PIN pad: "+perr.Error())
			return
		}
		res, err = h.m.InstallPad(ctx, firmware.PadInstallRequest{InstallRequest: req, Link: link, Redial: redial})
		if release != nil {
			release()
		}
	}
	h.opts.Logger.Info("firmware "+op, "who", req.Who, "source", req.Source, "version", res.Version, "error", err)
	if err != nil {
		k, code := kindOf(err)
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if !started {
			fail(w, code, k, err.Error())
			return
		}
		s.line(Line{Error: err.Error(), Kind: k})
		return
	}
	s.line(Line{Result: &res})
}

func (h *handler) rollback(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Who string `json:"who"`
	}
	if err := decodeRequest(r, &body); err != nil {
		fail(w, http.StatusBadRequest, "format", err.Error())
		return
	}
	res, err := h.m.Rollback(r.Context(), body.Who)
	h.opts.Logger.Info("firmware rollback", "who", body.Who, "slot", res.Slot, "error", err)
	if err != nil {
		k, code := kindOf(err)
		fail(w, code, k, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}
