package main

// GET /metrics: posd's Prometheus metrics (client_golang, a registry of posd's own plus the
// Go and process collectors).
//
// A scrape never waits for a sale. Counters and histograms are client_golang's, updated
// with atomic operations on the sale's goroutine. What must be read from the store or the
// devices (queue depth and age, store size, link and pad state) is read by a sampler every
// sampleEvery, on its own goroutine, and published with one atomic pointer store; the
// scrape reads that pointer. (A store read can fold the write-ahead log under the store's
// write lock, which a sale's write also takes: the scrape must not do one.)

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal"
)

// sampleEvery is how often the sampler reads the store and the devices for the gauges.
const sampleEvery = 5 * time.Second

// metrics are posd's metrics. Safe for concurrent use.
type metrics struct {
	reg          *prometheus.Registry
	sales        *prometheus.CounterVec   // type, result
	saleSeconds  *prometheus.HistogramVec // type
	acqSeconds   *prometheus.HistogramVec // mti, result
	reversals    prometheus.Counter
	writeSeconds prometheus.Histogram
	sampled      atomic.Pointer[sample] // nil before the first sample
}

// sample is what the sampler read last. Immutable once published.
type sample struct {
	report        statusReport
	padReconnects int
	padUp         bool
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.sales = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "posd_sales_total",
		Help: "Sales and refunds that ran, by type (sale, refund) and result (approved, declined, unknown: outcome unknown and reversed, not_sent: ended before or without reaching the acquirer, error)."},
		[]string{"type", "result"})
	m.saleSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "posd_sale_duration_seconds",
		Help:    "How long a sale or refund took from the till's request to its answer, the customer's time included.",
		Buckets: prometheus.ExponentialBuckets(0.25, 2, 10)}, []string{"type"})
	m.acqSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "posd_acquirer_request_duration_seconds",
		Help:    "Round trips to the acquirer by request MTI and result (answered, not_sent, unknown).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"mti", "result"})
	m.reversals = prometheus.NewCounter(prometheus.CounterOpts{Name: "posd_reversals_total",
		Help: "Reversals queued (outcome unknown, voids, chip cards that declined after approval, recovery after a crash)."})
	m.writeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "posd_store_write_duration_seconds",
		Help:    "Durable store writes (write-ahead log append and fdatasync, or a bbolt commit).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)})
	m.reg.MustRegister(m.sales, m.saleSeconds, m.acqSeconds, m.reversals, m.writeSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	version, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = bi.Main.Version, bi.GoVersion
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "posd_build_info",
		Help: "Always 1; the labels say which posd runs.", ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}},
		func() float64 { return 1 }))

	// The sampled gauges: each reads the last sample (NaN before the first).
	gauge := func(name, help string, labels prometheus.Labels, f func(*sample) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 {
			s := m.sampled.Load()
			if s == nil {
				return 0
			}
			return f(s)
		}))
	}
	gauge("posd_saf_queue_messages", "Messages in the store-and-forward queue waiting to be sent.", prometheus.Labels{"state": "pending"},
		func(s *sample) float64 { return float64(s.report.Queue.Pending) })
	gauge("posd_saf_queue_messages", "Messages in the store-and-forward queue waiting to be sent.", prometheus.Labels{"state": "parked"},
		func(s *sample) float64 { return float64(s.report.Queue.Parked) })
	gauge("posd_saf_oldest_message_age_seconds", "Age of the oldest queued message; 0 when the queue is empty.", nil,
		func(s *sample) float64 {
			if s.report.Queue.Oldest.IsZero() {
				return 0
			}
			return max(0, time.Since(s.report.Queue.Oldest).Seconds())
		})
	gauge("posd_acquirer_up", "1 when the link to the acquirer is connected (and signed on).", nil,
		func(s *sample) float64 { return b2f(s.report.Acquirer.Connected) })
	gauge("posd_pinpad_up", "1 when the PIN pad is connected.", nil, func(s *sample) float64 { return b2f(s.padUp) })
	gauge("posd_store_size_bytes", "Size of the store's bbolt file.", nil, func(s *sample) float64 { return float64(s.report.Store.SizeBytes) })
	gauge("posd_store_cap_bytes", "The store's size cap (store.max_size_mib); 0: none.", nil, func(s *sample) float64 { return float64(s.report.Store.CapBytes) })
	for _, st := range []string{stateOK, stateDegraded, stateDown} {
		gauge("posd_status", "1 for posd's overall state (GET /v1/status says why).", prometheus.Labels{"state": st},
			func(s *sample) float64 { return b2f(s.report.Status == st) })
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "posd_pinpad_reconnects_total",
		Help: "Times the PIN pad's link came back after being lost."}, func() float64 {
		if s := m.sampled.Load(); s != nil {
			return float64(s.padReconnects)
		}
		return 0
	}))
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// handler serves the metrics in Prometheus' text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observer is the terminal's Observer feeding the sale and reversal metrics.
func (m *metrics) observer() terminal.Observer {
	return terminal.Observer{
		SaleEnded: func(res terminal.SaleResult, err error, took time.Duration) {
			typ := "sale"
			if res.Refund {
				typ = "refund"
			}
			m.sales.WithLabelValues(typ, saleResult(res, err)).Inc()
			m.saleSeconds.WithLabelValues(typ).Observe(took.Seconds())
		},
		Reversals: func(n int) { m.reversals.Add(float64(n)) },
	}
}

// saleResult is a sale's result label.
func saleResult(res terminal.SaleResult, err error) string {
	switch {
	case err != nil:
		return "error"
	case res.Approved:
		return "approved"
	case res.Condition == terminal.CondInProgress:
		return "unknown"
	case res.ResponseCode != "":
		return "declined"
	}
	return "not_sent"
}

// observeWrite is the store's ObserveWrite.
func (m *metrics) observeWrite(d time.Duration) { m.writeSeconds.Observe(d.Seconds()) }

// sample reads src now and publishes it for the gauges; it returns the report read.
func (m *metrics) sample(ctx context.Context, src *statusSource) statusReport {
	r := src.report(ctx)
	s := &sample{report: r}
	for _, d := range r.Devices {
		if d.Name == "pinpad" {
			s.padReconnects += d.Reconnects
			s.padUp = d.State == terminal.DeviceConnected
		}
	}
	m.sampled.Store(s)
	return r
}

// sampleLoop samples every interval until ctx ends.
func (m *metrics) sampleLoop(ctx context.Context, src *statusSource, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		m.sample(ctx, src)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observeAcquirer records one request's round trip: its MTI, how it ended (answered,
// not_sent, unknown) and how long it took.
func (m *metrics) observeAcquirer(req *iso8583.Message, err error, took time.Duration) {
	result := "answered"
	switch {
	case errors.Is(err, iso8583.ErrNotSent):
		result = "not_sent"
	case err != nil:
		result = "unknown"
	}
	mti, _ := req.GetMTI()
	if len(mti) != 4 {
		mti = "other" // never a label from outside bytes that could grow without bound
	}
	m.acqSeconds.WithLabelValues(mti, result).Observe(took.Seconds())
}

// serveMetricsListener serves /metrics alone, without authentication, on ln (the
// metrics.listen loopback address) until ln closes.
func serveMetricsListener(ln net.Listener, h http.Handler) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() { _ = srv.Serve(ln) }()
	return srv
}
