package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/access"
	"github.com/posd-dev/posd/terminal/padsim"
)

// TestScrapeDuringSale: scrapes answer at once while a sale waits for the acquirer, and a
// sale run under a continuous scrape takes no longer than one without (within noise).
func TestScrapeDuringSale(t *testing.T) {
	ev := demoSales()[0].events
	var events []padsim.Event
	for range 3 {
		events = append(events, ev...)
	}
	r := newOpsRig(t, "text", events, "")
	if res, _ := r.sale(t, 100); res != "Success" { // warm: the first sale dials nothing new, but fills caches
		t.Fatalf("warm-up sale: %s", res)
	}
	const hostDelay = 400 * time.Millisecond
	r.delay.Store(int64(hostDelay))
	timeSale := func() time.Duration {
		start := time.Now()
		if res, cond := r.sale(t, 1250); res != "Success" {
			t.Fatalf("sale: %s %s", res, cond)
		}
		return time.Since(start)
	}
	quiet := timeSale()

	// The same sale with two goroutines scraping without pause.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var scrapes atomic.Int64
	var slowest atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				resp, err := r.client.Get("http://posd/metrics")
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if d := int64(time.Since(start)); d > slowest.Load() {
					slowest.Store(d)
				}
				scrapes.Add(1)
			}
		}()
	}
	busy := timeSale()
	close(stop)
	wg.Wait()
	t.Logf("sale %v alone, %v under %d scrapes (slowest scrape %v)", quiet, busy, scrapes.Load(), time.Duration(slowest.Load()))
	if scrapes.Load() < 5 {
		t.Fatalf("only %d scrapes ran during the sale", scrapes.Load())
	}
	// The sale waits hostDelay for the host: a scrape that waited for the sale would take
	// about as long.
	if s := time.Duration(slowest.Load()); s >= hostDelay {
		t.Errorf("a scrape took %v during a sale whose host answers after %v: it waited for the sale", s, hostDelay)
	}
	if busy > quiet*3/2+300*time.Millisecond {
		t.Errorf("a sale took %v under scraping, %v without", busy, quiet)
	}
}

// TestMetricsListen: metrics.listen serves /metrics to anyone on loopback, and nothing
// else; the config refuses an address that is not loopback.
func TestMetricsListen(t *testing.T) {
	r := newOpsRig(t, "text", []padsim.Event{}, `,
  "metrics": {"listen": "127.0.0.1:0"}`)
	addr := r.d.metricsLn.Addr().String()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics on metrics.listen: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if s := parseMetrics(t, b); s["posd_build_info"] == nil || s["posd_reversals_total"] == nil || s["posd_saf_queue_messages"] == nil {
		t.Errorf("metrics.listen answer lacks posd's metrics:\n%.500s", b)
	}
	for _, path := range []string{"/", "/v1/status", "/v1/audit/recent"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the unauthenticated metrics listener: %d, want 404", path, resp.StatusCode)
		}
	}

	var m MetricsConfig
	for _, bad := range []string{"0.0.0.0:9464", "192.0.2.1:9464", "localhost:9464", "9464"} {
		m.Listen = bad
		if err := m.fill(); err == nil || !strings.Contains(err.Error(), "metrics.listen") {
			t.Errorf("metrics.listen %q: %v", bad, err)
		}
	}
	var l LogConfig
	l.Format = "yaml"
	if err := l.fill(); err == nil || !strings.Contains(err.Error(), "log.format") {
		t.Errorf("log.format yaml: %v", err)
	}
}

// BenchmarkSaleObserve measures what a sale's metrics cost on its own goroutine (the
// observer's counter and histogram, two store writes), alone and with a scrape running
// without pause beside it: the two figures should be close (a scrape takes no lock the
// sale path takes).
func BenchmarkSaleObserve(b *testing.B) {
	for _, scraping := range []bool{false, true} {
		name := "alone"
		if scraping {
			name = "scraping"
		}
		b.Run(name, func(b *testing.B) {
			m := newMetrics()
			obs := m.observer()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if scraping {
				h := m.handler()
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/metrics", nil))
					}
				}()
			}
			res := terminal.SaleResult{Approved: true}
			b.ResetTimer()
			for b.Loop() {
				m.observeWrite(150 * time.Microsecond)
				m.observeWrite(150 * time.Microsecond)
				obs.SaleEnded(res, nil, 2*time.Second)
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
		})
	}
}

// TestOpsRoles: metrics and the status page are the technician's; the recent audit the
// supervisor's and the technician's; a cashier has none of them.
func TestOpsRoles(t *testing.T) {
	for op, want := range map[access.Op]string{
		access.OpMetrics:     "technician",
		access.OpStatusPage:  "technician",
		access.OpAuditRecent: "supervisor technician",
	} {
		var got []string
		for _, r := range op.Roles() {
			got = append(got, string(r))
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s: roles %v, want %s", op, got, want)
		}
	}
}
