package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/posd-dev/posd/internal/atomicfile"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/access"
	"github.com/posd-dev/posd/terminal/emvparams"
)

// maxParamsFile bounds an EMV parameter file posd accepts.
const maxParamsFile = 4 << 20

// emvParams keeps the EMV parameter file in use: verified against the firmware trust
// root, kept beside the store as emv-params.json, and loaded into the PIN pad. It is safe
// for concurrent use.
type emvParams struct {
	path string
	root []byte
	pad  *terminal.PINPad
	term *terminal.Terminal
	log  *slog.Logger

	mu  sync.Mutex
	cur *emvparams.Params
}

// paramsPath is where posd keeps the installed parameter file: beside the store.
func paramsPath(cfg *Config) string {
	return filepath.Join(filepath.Dir(cfg.Store.Path), "emv-params.json")
}

// openEMVParams reads the installed file, if any, and gives its tables to the pad adapter
// (GCR names their version; a pad that answers 020 gets them loaded). A file that no
// longer verifies is not used, and said so.
func openEMVParams(cfg *Config, pad *terminal.PINPad, log *slog.Logger) (*emvParams, error) {
	root, err := trustedRoot()
	if err != nil {
		return nil, err
	}
	e := &emvParams{path: paramsPath(cfg), root: root, pad: pad, log: log}
	b, err := os.ReadFile(e.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return e, nil
	case err != nil:
		return nil, fmt.Errorf("EMV parameters: %w", err)
	}
	p, err := emvparams.Verify(root, b)
	if err != nil {
		log.Error("the installed EMV parameter file does not verify: not used; install a good one with posctl params install", "path", e.path, "reason", err)
		return e, nil
	}
	recs, err := p.Records()
	if err != nil {
		return nil, fmt.Errorf("EMV parameters: %w", err)
	}
	pad.SetEMVTables(p.TableVersion(), recs)
	e.cur = p
	log.Info("EMV parameters", "acquirer", p.Acquirer, "version", p.Version, "aids", len(p.AIDs), "capks", len(p.CAPKs))
	return e, nil
}

// install verifies file, checks it is newer than the one in use, loads it into the pad
// (TLI, TLR, TLE, then GTS) with sales held off, and only then keeps it. On any failure
// nothing changes: posd keeps its file and the pad its committed tables.
func (e *emvParams) install(ctx context.Context, file []byte) (*emvparams.Params, error) {
	p, err := emvparams.Verify(e.root, file)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := p.Newer(e.cur); err != nil {
		return nil, err
	}
	recs, err := p.Records()
	if err != nil {
		return nil, err
	}
	release, err := e.term.Reserve()
	if err != nil {
		return nil, fmt.Errorf("the PIN pad is in use: %w", err)
	}
	defer release()
	if err := e.pad.LoadEMVTables(ctx, p.TableVersion(), recs); err != nil {
		return nil, fmt.Errorf("loading the PIN pad: %w", err)
	}
	if err := atomicfile.WriteFile(e.path, file, 0o600); err != nil {
		return nil, fmt.Errorf("keeping the parameter file: %w", err)
	}
	e.cur = p
	e.log.Info("EMV parameters installed", "acquirer", p.Acquirer, "version", p.Version, "aids", len(p.AIDs), "capks", len(p.CAPKs), "records", len(recs))
	return p, nil
}

type paramsStatus struct {
	Installed       bool   `json:"installed"`
	Acquirer        string `json:"acquirer,omitempty"`
	Version         int64  `json:"version,omitempty"`
	TableVersion    string `json:"table_version,omitempty"`
	AIDs            int    `json:"aids"`
	CAPKs           int    `json:"capks"`
	Revoked         int    `json:"revoked"`
	PadTableVersion string `json:"pad_table_version,omitempty"`
	PadError        string `json:"pad_error,omitempty"`
}

func (e *emvParams) status(ctx context.Context) paramsStatus {
	e.mu.Lock()
	p := e.cur
	e.mu.Unlock()
	var s paramsStatus
	if p != nil {
		s = paramsStatus{Installed: true, Acquirer: p.Acquirer, Version: p.Version, TableVersion: p.TableVersion(),
			AIDs: len(p.AIDs), CAPKs: len(p.CAPKs), Revoked: len(p.Revoked)}
	}
	if v, err := e.pad.PadTableVersion(ctx); err != nil {
		s.PadError = err.Error()
	} else {
		s.PadTableVersion = v
	}
	return s
}

// routes adds the technician's parameter routes:
//
//	POST /v1/params  install a signed parameter file (the body)
//	GET  /v1/params  the file in use and the pad's table version (GTS)
func (e *emvParams) routes(g *access.Guard) {
	g.HandleFunc("POST /v1/params", access.OpParams, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxParamsFile+1))
		if err != nil || len(b) > maxParamsFile {
			jsonError(w, http.StatusBadRequest, fmt.Errorf("the parameter file must be at most %d bytes", maxParamsFile))
			return
		}
		p, err := e.install(r.Context(), b)
		switch {
		case errors.Is(err, emvparams.ErrNotNewer):
			jsonError(w, http.StatusConflict, err)
			return
		case errors.Is(err, emvparams.ErrSignature), errors.Is(err, emvparams.ErrFormat), errors.Is(err, emvparams.ErrChecksum):
			jsonError(w, http.StatusBadRequest, err)
			return
		case err != nil:
			jsonError(w, http.StatusServiceUnavailable, err)
			return
		}
		_ = p
		writeJSONTo(w, http.StatusOK, e.status(r.Context()))
	})
	g.HandleFunc("GET /v1/params", access.OpParams, func(w http.ResponseWriter, r *http.Request) {
		writeJSONTo(w, http.StatusOK, e.status(r.Context()))
	})
}
