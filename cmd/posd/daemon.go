package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/fwapi"
	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/pinpad"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/access"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/magstripe"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/nexo"
)

// daemon is one running posd: store, PIN pad, acquirer link, terminal and till API.
type daemon struct {
	cfg  *Config
	log  *slog.Logger
	st   *store.Store
	pad  *terminal.PadDevice
	msr  *terminal.MagstripeDevice
	acq  *iso8583.Failover
	term *terminal.Terminal
	lns  []net.Listener
	srv  *http.Server
	// metrics are posd's Prometheus metrics; status gathers GET /v1/status.
	metrics *metrics
	status  *statusSource
	// metricsLn and metricsSrv serve /metrics alone on metrics.listen; nil when unset.
	metricsLn  net.Listener
	metricsSrv *http.Server
	done       chan error
	// stopFwd stops the store-and-forward drain.
	stopFwd context.CancelFunc
	// closeData releases the data key's backend.
	closeData func()
	// panHash makes the journal's keyed PAN hashes; nil without a pan-hash key.
	panHash func(context.Context, card.PAN, card.Expiry) (string, error)
}

// startDaemon wires posd from cfg. Each failure is one clear error naming what could not be
// started; whatever was opened is closed again.
func startDaemon(ctx context.Context, cfg *Config, log *slog.Logger, trace func(string, ...any), fw *firmware.Manager, fwWake <-chan struct{}) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, log: log, done: make(chan error, 1), metrics: newMetrics()}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	// trace nil: nothing is traced, and nothing is formatted or described for it.

	// The data key that seals queued card data; without one, reversals carry no card data
	// and offline approval is refused.
	data, closeData, err := openDataModule(ctx, cfg.HSM.Data, log)
	if err != nil {
		return nil, err
	}
	d.closeData = closeData
	d.panHash = panHasher(ctx, data, log)
	var sealer store.Sealer
	if data != nil {
		sealer = data
	}
	d.st, err = store.Open(cfg.Store.Path, &store.Options{MaxSize: cfg.Store.MaxSizeMiB << 20, Sealer: sealer, Auditor: auditorFor(ctx, data, log), AuditKeyID: auditKeyID, ObserveWrite: d.metrics.observeWrite})
	if err != nil {
		return nil, fmt.Errorf("store: %w (posd store check --path %s says more; posd store salvage copies what is readable of a damaged file)", err, cfg.Store.Path)
	}
	// The PIN pad, kept connected: a pulled cable reconnects with backoff and fails only
	// the sale in progress. posd refuses to start if it never answers.
	devOpts := terminal.DeviceOptions{MinBackoff: time.Duration(cfg.PINPad.ReconnectMin), MaxBackoff: time.Duration(cfg.PINPad.ReconnectMax),
		FailAfter: time.Duration(cfg.PINPad.FailAfter), Logger: log}
	if _, err := os.Stat(cfg.PINPad.Port); err != nil {
		return nil, fmt.Errorf("PIN pad: %w", err)
	}
	padOpts := devOpts
	padOpts.Heartbeat = cfg.PINPad.Heartbeat.Duration() // negative: off
	d.pad, err = terminal.OpenPadDevice(terminal.PadDeviceOptions{Path: cfg.PINPad.Port, Baud: cfg.PINPad.Baud, Device: padOpts,
		Link: abecs.Options{ACKTimeout: time.Duration(cfg.PINPad.ACKTimeout), ResponseTimeout: time.Duration(cfg.PINPad.ResponseTimeout)}})
	if err != nil {
		return nil, fmt.Errorf("PIN pad: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = d.pad.WaitConnected(wctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("PIN pad on %s does not answer: %w", cfg.PINPad.Port, err)
	}
	pad := terminal.NewPINPadDevice(d.pad)
	params, err := openEMVParams(cfg, pad, log)
	if err != nil {
		return nil, err
	}
	var reader terminal.CardReader = pad
	if cfg.Reader.Source == "serial" {
		d.msr, err = terminal.OpenMagstripeDevice(terminal.MagstripeDeviceOptions{Path: cfg.Reader.Port,
			Reader: magstripe.Options{Baud: cfg.Reader.Baud}, Device: devOpts})
		if err != nil {
			return nil, fmt.Errorf("card reader: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = d.msr.WaitConnected(wctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("card reader on %s does not answer: %w", cfg.Reader.Port, err)
		}
		reader = d.msr
	}

	// The pad's PIN key: TDES DUKPT (format 0) or AES DUKPT (format 4, a 16-byte field 52).
	padKeys := &pinpad.Options{Keys: map[string]int{"pin": cfg.PINPad.PINKeyIndex}}
	if cfg.PINPad.DUKPT == DUKPTAES {
		padKeys.Algorithms = map[string]hsm.Algorithm{"pin": hsm.AES128}
	}
	pins, err := hsm.New(pinpad.New(pad, padKeys), &hsm.Options{
		Audit: func(e hsm.AuditEvent) {
			log.Info("hsm", "op", e.Op, "key", e.KeyID, "pan", e.MaskedPAN, "error", e.Err)
		},
	})
	if err != nil {
		return nil, err
	}

	aopts, err := acquirerOptions(cfg, d.st, trace, log)
	if err != nil {
		return nil, fmt.Errorf("acquirer: %w", err)
	}
	if err := macOptions(ctx, &aopts, data, cfg.Acquirer.MACKey); err != nil {
		return nil, err
	}
	// Each sign-on (the first and every one after a reconnect) asks for new working keys
	// when acquirer.key_change.at_sign_on is set; the key changes read the channel.
	signedOn := make(chan struct{}, 1)
	if kc := cfg.Acquirer.KeyChange; kc != nil && kc.AtSignOn != nil && *kc.AtSignOn {
		aopts.SignedOn = func(string) {
			select {
			case signedOn <- struct{}{}:
			default: // a change is already due
			}
		}
	}
	var hostAsks func(iso8583.KeyKind) // set below, before the link connects
	aopts.HostKeyChange = func(k iso8583.KeyKind) {
		if hostAsks != nil {
			hostAsks(k)
		}
	}
	d.acq, err = iso8583.NewFailover(iso8583.FailoverOptions{
		Addrs:        cfg.Acquirer.Hosts(),
		Client:       aopts,
		PrimaryRetry: time.Duration(cfg.Acquirer.PrimaryRetry),
		OnSwitch: func(s iso8583.Switch) {
			log.Warn("acquirer host switched: the next transactions go to "+s.To, "from", s.From, "to", s.To, "reason", s.Reason)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("acquirer: %w", err)
	}
	// Working-key changes: the MAC key in use is the last one the host confirmed.
	keys, err := d.keyRotator(ctx, aopts, data)
	if err != nil {
		return nil, err
	}
	if keys != nil {
		keys.signedOn = signedOn
	}
	hostAsks = keys.hostAsks
	if *cfg.Acquirer.RequireAtStart {
		// Dialling, then signing on.
		cctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Acquirer.DialTimeout)+10*time.Second)
		err := d.acq.Connect(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("acquirer %s unreachable: %w (set acquirer.require_at_start to false to start anyway)", strings.Join(cfg.Acquirer.Hosts(), ", "), err)
		}
	}

	cur, err := money.LookupCurrency(cfg.Terminal.Currency)
	if err != nil {
		return nil, err
	}
	// Sales are built on the link's dialect, so that a PIN block that does not fit its
	// field 52 is refused before anything is sent.
	var spec *iso8583.MessageSpec
	var ctlsModes terminal.CtlsEntryModes // taps' field 22: the dialect's, else 071/911
	if aopts.Dialect != nil {
		spec = aopts.Dialect.Spec
		ctlsModes = terminal.CtlsEntryModes{EMV: aopts.Dialect.EntryModes.ContactlessEMV, Magstripe: aopts.Dialect.EntryModes.ContactlessMagstripe}
	}
	acq := tracedAcquirer{d.acq, trace, d.metrics, keys.sent(), keys.answered()}
	d.term, err = terminal.New(reader, pad, pins, acq, d.st, terminal.Options{
		TerminalID:     cfg.Terminal.ID,
		MerchantID:     cfg.Terminal.MerchantID,
		MerchantName:   cfg.Terminal.MerchantName,
		Currency:       cur,
		DualMessage:    cfg.Terminal.DualMessage,
		CardTimeout:    time.Duration(cfg.Terminal.CardTimeout),
		PINKeyIndex:    cfg.PINPad.PINKeyIndex,
		PINKeyAES:      cfg.PINPad.DUKPT == DUKPTAES,
		Spec:           spec,
		CtlsEntryModes: ctlsModes,
		HostTimeout:    time.Duration(cfg.Acquirer.ResponseTimeout),
		ReversalWait:   time.Duration(cfg.Acquirer.ReversalWait),
		RefusePartial:  !*cfg.Terminal.PartialApproval,
		Logger:         log,
		Offline: terminal.OfflinePolicy{
			Enabled: cfg.Offline.Enabled, FloorLimitMinor: *cfg.Offline.FloorLimitMinor, MaxCount: *cfg.Offline.MaxCount,
			MaxTotalMinor: *cfg.Offline.MaxTotalMinor, MaxAge: time.Duration(cfg.Offline.MaxAge),
		},
		Refunds: terminal.RefundPolicy{
			Disabled: !*cfg.Refund.Enabled, AllowUnhashed: cfg.Refund.AllowUnhashed,
			Unlinked: cfg.Refund.Unlinked, MaxMinor: cfg.Refund.MaxMinor, DailyMaxMinor: cfg.Refund.DailyMaxMinor,
			AfterClose: cfg.Refund.AfterClose,
		},
		Failpoint:      failpointFromEnv(log),
		CloseDrainWait: time.Duration(cfg.Close.DrainWait),
		PANHash:        d.panHash,
		Forward: terminal.ForwardOptions{
			Window: cfg.SAF.Window, MaxAttempts: cfg.SAF.MaxAttempts,
			MinBackoff: time.Duration(cfg.SAF.MinBackoff), MaxBackoff: time.Duration(cfg.SAF.MaxBackoff),
		},
		Observe: d.metrics.observer(),
	})
	if err != nil {
		return nil, err
	}
	if n, err := d.term.Recover(ctx); err != nil {
		return nil, fmt.Errorf("store: settling transactions left open by a crash: %w", err)
	} else if n > 0 {
		log.Warn("settled transactions a crash left open: outcome-unknown, reversals queued", "count", n)
	}
	fctx, fcancel := context.WithCancel(context.WithoutCancel(ctx))
	d.stopFwd = fcancel
	go func() { _ = d.term.Forwarder().Run(fctx) }()
	keys.start(fctx)
	if at := cfg.Close.at; at != nil {
		go autoClose(fctx, *at, d.term.Close, time.Now, log)
	}
	// The journal stays bounded: closed batches older than store.keep go to the archive,
	// now and hourly after (a close's batch leaves once it is old enough).
	d.archive(ctx)
	go d.archiveLoop(fctx, time.Hour)

	// The API: every route registered with the operation the access policy knows it by.
	gopts := access.Options{Roles: cfg.API.roles, Audit: d.st.Audit, Logger: log,
		DualWindow: time.Duration(cfg.API.DualControlWindow), RatePerMinute: cfg.API.RatePerMinute, SearchesPerMinute: cfg.API.SearchesPerMinute}
	ops, err := openOperators(ctx, cfg, data)
	if err != nil {
		return nil, err
	}
	if ops != nil {
		gopts.Credentials = access.OperatorCredentials{Store: ops}
	}
	g, err := access.New(gopts)
	if err != nil {
		return nil, fmt.Errorf("till API: %w", err)
	}
	if cfg.API.roles.Empty() {
		log.Warn("api.roles maps no user, group or certificate to a role: every API request is refused")
	}
	devices := func() []terminal.DeviceStatus {
		ds := []terminal.DeviceStatus{d.pad.Status()}
		if d.msr != nil {
			ds = append(ds, d.msr.Status())
		}
		return ds
	}
	till := nexo.NewHandler(d.term, nexo.ServerOptions{POIID: cfg.Terminal.POIID, MerchantID: cfg.Terminal.MerchantID, Logger: log, AuditHead: d.st.AuditHead,
		Caller: func(ctx context.Context) string {
			if c, ok := access.CallerFrom(ctx); ok {
				return c.Who()
			}
			return ""
		},
		Devices: devices})
	g.HandleClassified("POST /nexo", classifyNexo, till)
	// Status, metrics and the technician's page.
	d.status = &statusSource{cfg: cfg, st: d.st, acq: d.acq, devices: devices, fw: fw, keys: keys.status(), now: time.Now}
	g.HandleFunc("GET /v1/status", access.OpStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSONTo(w, http.StatusOK, d.metrics.sample(r.Context(), d.status))
	})
	g.Handle("GET /metrics", access.OpMetrics, d.metrics.handler())
	g.HandleFunc("GET /{$}", access.OpStatusPage, serveStatusPage)
	g.HandleFunc("GET /v1/audit/recent", access.OpAuditRecent, recentAudit(d.st))
	go d.metrics.sampleLoop(fctx, d.status, sampleEvery)
	if cfg.Metrics.Listen != "" {
		if d.metricsLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		d.metricsSrv = serveMetricsListener(d.metricsLn, d.metrics.handler())
		log.Info("metrics without authentication", "listen", d.metricsLn.Addr().String())
	}
	(&admin{st: d.st, term: d.term, panHash: d.panHash, log: log, archiveDir: cfg.Store.ArchiveDir}).routes(g)
	if keys != nil {
		(&keysAPI{r: keys.r}).routes(g)
	}
	params.term = d.term
	params.routes(g)
	if fw != nil {
		g.HandleClassified("/v1/firmware/", classifyFirmware, firmwareWho(fwapi.NewHandler(fw, &fwapi.HandlerOptions{Logger: log,
			Pad: func(ctx context.Context) (firmware.PadLink, func(context.Context) (firmware.PadLink, error), func(), error) {
				release, err := d.term.Reserve() // no sales while the pad loads firmware
				if err != nil {
					return nil, nil, nil, err
				}
				link, err := d.pad.Link()
				if err != nil {
					release()
					return nil, nil, nil, err
				}
				return link, nil, release, nil
			}})))
		if err := copyFirmwareEvents(ctx, fw, d.st); err != nil {
			log.Warn("copying firmware events to the journal", "reason", err)
		}
		go func() {
			for {
				select {
				case <-fctx.Done():
					return
				case <-fwWake:
					if err := copyFirmwareEvents(fctx, fw, d.st); err != nil && fctx.Err() == nil {
						log.Warn("copying firmware events to the journal", "reason", err)
					}
				}
			}
		}()
	}
	d.lns, err = listenAPI(&cfg.API)
	if err != nil {
		return nil, fmt.Errorf("till API: %w", err)
	}
	// Requests must arrive whole within ReadTimeout; answers have no limit (a sale waits
	// for the customer), and idle connections close.
	d.srv = &http.Server{Handler: g, ConnContext: g.ConnContext, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: time.Duration(cfg.API.ReadTimeout), IdleTimeout: 60 * time.Second, MaxHeaderBytes: 64 << 10}
	for _, ln := range d.lns {
		go func() { d.done <- d.srv.Serve(ln) }()
	}
	log.Info("posd ready", "api", d.addr(), "terminal", cfg.Terminal.ID, "pinpad", cfg.PINPad.Port, "acquirer", d.acq.ActiveAddr(), "acquirer_hosts", len(cfg.Acquirer.Hosts()))
	return d, nil
}

// addr is the till API's first address: "unix:PATH" or "https://IP:PORT".
func (d *daemon) addr() string {
	if len(d.lns) == 0 {
		return ""
	}
	if a := d.lns[0].Addr(); a.Network() == "unix" {
		return "unix:" + a.String()
	} else {
		return "https://" + a.String()
	}
}

// shutdown stops taking requests, lets a running sale finish (up to ctx), and closes
// everything.
func (d *daemon) shutdown(ctx context.Context) error {
	var err error
	if d.srv != nil {
		err = d.srv.Shutdown(ctx)
	}
	if d.acq != nil {
		// In-flight requests finish (or end outcome-unknown); then sign-off.
		if serr := d.acq.Shutdown(ctx); serr != nil {
			d.log.Warn("acquirer link shutdown", "reason", serr)
		}
	}
	d.close()
	return err
}

func (d *daemon) close() {
	if d.srv != nil {
		_ = d.srv.Close()
	}
	if d.metricsSrv != nil {
		_ = d.metricsSrv.Close()
	}
	if d.metricsLn != nil {
		_ = d.metricsLn.Close()
	}
	for _, ln := range d.lns {
		_ = ln.Close() // also when startDaemon failed before serving
	}
	if d.stopFwd != nil {
		d.stopFwd()
	}
	if d.acq != nil {
		_ = d.acq.Close()
	}
	if d.pad != nil {
		_ = d.pad.Close()
	}
	if d.msr != nil {
		_ = d.msr.Close()
	}
	if d.st != nil {
		_ = d.st.Close()
	}
	if d.closeData != nil {
		d.closeData()
	}
}

var errUsage = errors.New("usage")

// tracedAcquirer describes every request and response, field by field with card data
// masked (iso8583.Describe), to the trace function: the demo's trace, debug logs in a run
// (nil, as when the log level leaves debug out: nothing is described).
// It passes the acquirer's hosts on to the terminal (terminal.HostRouter), and times each
// round trip for the metrics. It must stay the one wrapper around the acquirer: a second
// one without NextHost/SendTo/RouteTo would hide the hosts from the terminal.
var _ terminal.HostRouter = tracedAcquirer{}

type tracedAcquirer struct {
	a     *iso8583.Failover
	trace func(string, ...any)
	m     *metrics
	// sent, when set, is told of each request sent (the working-key change counts sales).
	sent func(*iso8583.Message)
	// answered, when set, is told of each request's outcome (the working-key change
	// recovers a lost confirmation from the next MAC failure).
	answered func(error)
}

func (t tracedAcquirer) Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
	return t.SendTo(ctx, t.a.NextHost(ctx), req)
}

func (t tracedAcquirer) NextHost(ctx context.Context) string { return t.a.NextHost(ctx) }

func (t tracedAcquirer) RouteTo(origin string, reversal bool) string {
	return t.a.RouteTo(origin, reversal)
}

func (t tracedAcquirer) SendTo(ctx context.Context, host string, req *iso8583.Message) (*iso8583.Message, error) {
	if t.trace != nil {
		t.describe("request to "+host, req)
	}
	start := time.Now()
	resp, err := t.a.SendTo(ctx, host, req)
	t.m.observeAcquirer(req, err, time.Since(start))
	if t.sent != nil {
		t.sent(req)
	}
	if t.answered != nil {
		t.answered(err)
	}
	if err != nil {
		if t.trace != nil {
			t.trace("no response: %v", err)
		}
		return resp, err
	}
	t.describe("response", resp)
	return resp, err
}

func (t tracedAcquirer) describe(what string, m *iso8583.Message) {
	if t.trace == nil {
		return // no one reads it: the request is not described, nor the label built
	}
	var b strings.Builder
	if err := iso8583.Describe(&b, m); err != nil {
		t.trace("%s: cannot describe: %v", what, err)
		return
	}
	t.trace("%s:\n%s", what, b.String())
}

// failpointFromEnv returns the crash tests' failpoint: with POSD_FAILPOINT=NAME (and
// optionally POSD_FAILPOINT_SKIP=N), posd kills itself with SIGKILL the (N+1)th time the
// sale or the drain passes the point NAME. Unset, it returns nil and costs nothing. It is
// for tests only and says so in the log when armed.
func failpointFromEnv(log *slog.Logger) func(string) {
	name := os.Getenv("POSD_FAILPOINT")
	if name == "" {
		return nil
	}
	skip, _ := strconv.Atoi(os.Getenv("POSD_FAILPOINT_SKIP"))
	log.Warn("failpoint armed: posd will kill itself (crash test)", "point", name, "skip", skip)
	var mu sync.Mutex
	hits := 0
	return func(p string) {
		if p != name {
			return
		}
		mu.Lock()
		hits++
		n := hits
		mu.Unlock()
		if n > skip {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never continue past the point
		}
	}
}

// acquirerOptions turns the acquirer config into the link's options: dialect, framing,
// TLS, sign-on, echo and dead-link detection.
func acquirerOptions(cfg *Config, st *store.Store, trace func(string, ...any), log *slog.Logger) (iso8583.ClientOptions, error) {
	a := cfg.Acquirer
	o := iso8583.ClientOptions{
		DialTimeout:     time.Duration(a.DialTimeout),
		Logf:            trace,
		MaxInFlight:     a.MaxInFlight,
		SignOn:          *a.SignOn,
		EchoInterval:    time.Duration(a.EchoInterval),
		DeadLinkTimeout: time.Duration(a.DeadLinkTimeout),
		FrameTimeout:    time.Duration(a.ResponseTimeout),
		TerminalID:      cfg.Terminal.ID,
		NextSTAN:        st.NextSTAN,
		LateResponse: func(m *iso8583.Message) {
			// The sale this answers already ended outcome-unknown with its reversal queued.
			log.Error("response arrived after its timeout; its transaction was recorded outcome-unknown and is being reversed", "summary", iso8583.Summary(m))
		},
	}
	if a.Dialect != "" {
		d, err := iso8583.LoadDialect(a.Dialect)
		if err != nil {
			return o, err
		}
		o.Dialect = d
	}
	if a.Framing != nil {
		f, err := a.Framing.Framer()
		if err != nil {
			return o, err
		}
		o.Framer = f
	}
	if a.TLS != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: a.TLS.ServerName}
		if a.TLS.CAFile != "" {
			pem, err := os.ReadFile(a.TLS.CAFile)
			if err != nil {
				return o, fmt.Errorf("tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", a.TLS.CAFile)
			}
		}
		if a.TLS.CertFile != "" {
			c, err := tls.LoadX509KeyPair(a.TLS.CertFile, a.TLS.KeyFile)
			if err != nil {
				return o, fmt.Errorf("tls.cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		o.TLS = tc
	}
	return o, nil
}
