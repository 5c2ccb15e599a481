package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	moov "github.com/moov-io/iso8583"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/pinpad"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/nexo"
)

// daemon is one running posd: store, PIN pad, acquirer link, terminal and till API.
type daemon struct {
	cfg  *Config
	log  *slog.Logger
	st   *store.Store
	pad  *abecs.Client
	acq  *iso8583.Client
	term *terminal.Terminal
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// startDaemon wires posd from cfg. Each failure is one clear error naming what could not be
// started; whatever was opened is closed again.
func startDaemon(ctx context.Context, cfg *Config, log *slog.Logger, trace func(string, ...any)) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, log: log, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if trace == nil {
		trace = func(string, ...any) {}
	}

	d.st, err = store.Open(cfg.Store.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if open, err := d.st.Unfinished(ctx); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	} else if len(open) > 0 {
		// A crash between intent and outcome: the host may have acted. Record them as
		// unknown so that they are reversed, never silently forgotten.
		for _, r := range open {
			log.Warn("transaction found without an outcome after a restart; marking it outcome-unknown", "txn", uint64(r.ID), "stan", r.Intent.STAN, "pan", r.Intent.MaskedPAN)
			if err := d.st.Finish(ctx, r.ID, store.Outcome{State: store.StateUnknown, Reason: "posd stopped before the outcome was recorded; to be reversed", Time: time.Now()}); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
		}
	}

	d.pad, err = abecs.Dial(cfg.PINPad.Port, cfg.PINPad.Baud, &abecs.Options{ACKTimeout: time.Duration(cfg.PINPad.ACKTimeout)})
	if err != nil {
		return nil, fmt.Errorf("PIN pad: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = d.pad.Open(octx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("PIN pad on %s does not answer: %w", cfg.PINPad.Port, err)
	}
	pad := terminal.NewPINPad(d.pad)

	pins, err := hsm.New(pinpad.New(pad, &pinpad.Options{Keys: map[string]int{"pin": cfg.PINPad.PINKeyIndex}}), &hsm.Options{
		Audit: func(e hsm.AuditEvent) {
			log.Info("hsm", "op", e.Op, "key", e.KeyID, "pan", e.MaskedPAN, "error", e.Err)
		},
	})
	if err != nil {
		return nil, err
	}

	d.acq, err = iso8583.NewClient(iso8583.ClientOptions{
		Addr:        cfg.Acquirer.Address,
		DialTimeout: time.Duration(cfg.Acquirer.DialTimeout),
		Logf:        trace,
		LateResponse: func(m *moov.Message) {
			log.Error("response arrived after its timeout; the transaction is recorded outcome-unknown and must be reversed", "summary", iso8583.Summary(m))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("acquirer: %w", err)
	}
	if *cfg.Acquirer.RequireAtStart {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Acquirer.DialTimeout))
		err := d.acq.Connect(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("acquirer %s unreachable: %w (set acquirer.require_at_start to false to start anyway)", cfg.Acquirer.Address, err)
		}
	}

	cur, err := money.LookupCurrency(cfg.Terminal.Currency)
	if err != nil {
		return nil, err
	}
	d.term, err = terminal.New(pad, pad, pins, tracedAcquirer{d.acq, trace}, d.st, terminal.Options{
		TerminalID:   cfg.Terminal.ID,
		MerchantID:   cfg.Terminal.MerchantID,
		MerchantName: cfg.Terminal.MerchantName,
		Currency:     cur,
		DualMessage:  cfg.Terminal.DualMessage,
		CardTimeout:  time.Duration(cfg.Terminal.CardTimeout),
		HostTimeout:  time.Duration(cfg.Acquirer.ResponseTimeout),
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}

	d.ln, err = listen(cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("till API: %w", err)
	}
	d.srv = &http.Server{
		Handler:           nexo.NewHandler(d.term, nexo.ServerOptions{POIID: cfg.Terminal.POIID, MerchantID: cfg.Terminal.MerchantID, Logger: log, Journal: d.st}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { d.done <- d.srv.Serve(d.ln) }()
	log.Info("posd ready", "api", d.addr(), "terminal", cfg.Terminal.ID, "pinpad", cfg.PINPad.Port, "acquirer", cfg.Acquirer.Address)
	return d, nil
}

// addr is the till API's address as a URL base.
func (d *daemon) addr() string {
	if d.ln == nil {
		return ""
	}
	if d.ln.Addr().Network() == "unix" {
		return "unix:" + d.ln.Addr().String()
	}
	return "http://" + d.ln.Addr().String()
}

func listen(spec string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path) // a stale socket from an earlier run
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", spec)
}

// shutdown stops taking requests, lets a running sale finish (up to ctx), and closes
// everything.
func (d *daemon) shutdown(ctx context.Context) error {
	var err error
	if d.srv != nil {
		err = d.srv.Shutdown(ctx)
	}
	d.close()
	return err
}

func (d *daemon) close() {
	if d.srv != nil {
		_ = d.srv.Close()
	}
	if d.acq != nil {
		_ = d.acq.Close()
	}
	if d.pad != nil {
		_ = d.pad.Close()
	}
	if d.st != nil {
		_ = d.st.Close()
	}
}

var errUsage = errors.New("usage")

// tracedAcquirer describes every request and response, field by field with card data
// masked (iso8583.Describe), to the trace function: the demo's trace, debug logs in a run.
type tracedAcquirer struct {
	a     terminal.Acquirer
	trace func(string, ...any)
}

func (t tracedAcquirer) Send(ctx context.Context, req *moov.Message) (*moov.Message, error) {
	t.describe("request", req)
	resp, err := t.a.Send(ctx, req)
	if err != nil {
		t.trace("no response: %v", err)
		return resp, err
	}
	t.describe("response", resp)
	return resp, err
}

func (t tracedAcquirer) describe(what string, m *moov.Message) {
	var b strings.Builder
	if err := iso8583.Describe(&b, m); err != nil {
		t.trace("%s: cannot describe: %v", what, err)
		return
	}
	t.trace("%s:\n%s", what, b.String())
}
