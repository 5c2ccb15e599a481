package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

// TestStatusAndMetrics drives posd through its states and reads them in GET /v1/status and
// /metrics: ok after start; an approved sale and one whose outcome is unknown move the
// metrics; the reversal, parked, makes it degraded; the acquirer's listener closed makes it
// degraded and, two minutes on, down; the PIN pad gone makes it down. It runs with text
// and with JSON logs, and no log line carries card data in either.
func TestStatusAndMetrics(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) { testStatusAndMetrics(t, format) })
	}
}

func testStatusAndMetrics(t *testing.T, format string) {
	sales := demoSales()
	events := append(append([]padsim.Event{}, sales[0].events...), sales[0].events...)
	r := newOpsRig(t, format, events, "")
	ctx := context.Background()

	s := r.status(t)
	if s.Status != stateOK || len(s.Reasons) != 0 {
		t.Fatalf("after start: %s %q", s.Status, s.Reasons)
	}
	if !s.Acquirer.Connected || s.Acquirer.Addr == "" || s.Acquirer.InFlight != 0 {
		t.Errorf("acquirer after start: %+v", s.Acquirer)
	}
	if len(s.Devices) != 1 || s.Devices[0].State != terminal.DeviceConnected || s.Devices[0].Info == "" {
		t.Errorf("devices after start: %+v", s.Devices)
	}
	if s.Store.SizeBytes <= 0 || s.Store.CapBytes != 64<<20 || s.Queue.Depth != 0 || s.LastClose != nil || s.POIID != "POSD-OPS00001" {
		t.Errorf("after start: store %+v, queue %+v, last close %v, poiid %q", s.Store, s.Queue, s.LastClose, s.POIID)
	}
	m0 := r.metrics(t)

	// An approved sale.
	if res, cond := r.sale(t, 1250); res != "Success" {
		t.Fatalf("first sale: %s %s\n%s", res, cond, r.logs.String())
	}
	m1 := r.metrics(t)
	if d := m1.counter(`posd_sales_total{result="approved",type="sale"}`) - m0.counter(`posd_sales_total{result="approved",type="sale"}`); d != 1 {
		t.Errorf("posd_sales_total approved moved by %v, want 1", d)
	}
	if n := m1.count("posd_sale_duration_seconds", `type="sale"`); n != 1 {
		t.Errorf("posd_sale_duration_seconds count %d, want 1", n)
	}
	if n := m1.count("posd_acquirer_request_duration_seconds", `mti="0200",result="answered"`); n != 1 {
		t.Errorf("acquirer round trips answered: %d, want 1", n)
	}
	if d := m1.count("posd_store_write_duration_seconds", "") - m0.count("posd_store_write_duration_seconds", ""); d < 2 {
		t.Errorf("store writes observed during a sale: %d, want at least 2 (intent, outcome)", d)
	}
	if v := m1.gauge(`posd_build_info{goversion=`); v != 1 {
		t.Errorf("posd_build_info = %v", v)
	}

	// The host swallows the next sale: outcome unknown, a reversal queued. Parked, it
	// makes posd degraded.
	r.drop.Store(true)
	if res, cond := r.sale(t, 1300); cond != "InProgress" {
		t.Fatalf("second sale: %s %s", res, cond)
	}
	items, err := r.d.st.List(ctx)
	if err != nil || len(items) != 1 || items[0].Kind != store.KindReversal {
		t.Fatalf("queue after an unknown outcome: %+v %v", items, err)
	}
	if err := r.d.st.Park(ctx, items[0].ID, "test", "host away"); err != nil {
		t.Fatal(err)
	}
	s = r.status(t)
	if s.Status != stateDegraded || !hasReason(s, "1 parked message") || s.Queue.Parked != 1 || s.Queue.Reversals != 1 || s.Queue.Oldest.IsZero() {
		t.Errorf("with a parked reversal: %s %q queue %+v", s.Status, s.Reasons, s.Queue)
	}
	m2 := r.metrics(t)
	if v := m2.counter(`posd_sales_total{result="unknown",type="sale"}`); v != 1 {
		t.Errorf(`posd_sales_total{result="unknown"} = %v, want 1`, v)
	}
	if v := m2.counter("posd_reversals_total"); v != 1 {
		t.Errorf("posd_reversals_total = %v, want 1", v)
	}
	if n := m2.count("posd_acquirer_request_duration_seconds", `mti="0200",result="unknown"`); n != 1 {
		t.Errorf("acquirer round trips with outcome unknown: %d, want 1", n)
	}
	if v := m2.gauge(`posd_saf_queue_messages{state="parked"}`); v != 1 {
		t.Errorf("parked gauge = %v, want 1", v)
	}
	if v := m2.gauge(`posd_status{state="degraded"}`); v != 1 {
		t.Errorf(`posd_status{state="degraded"} = %v, want 1`, v)
	}

	// The acquirer's listener closes: the link drops and every redial is refused.
	r.hostStop()
	s = r.waitStatus(t, "the link down", func(s statusReport) bool { return !s.Acquirer.Connected })
	if s.Status != stateDegraded || !hasReason(s, "unreachable for") || s.Acquirer.LastError == "" {
		t.Errorf("link down for a moment: %s %q %+v", s.Status, s.Reasons, s.Acquirer)
	}
	// Two minutes and more on, the same link down makes posd down: the report read with a
	// clock moved on (a copy of the daemon's source, which its sampler reads meanwhile).
	later := *r.d.status
	later.now = func() time.Time { return time.Now().Add(linkDownAfter + time.Second) }
	s = later.report(ctx)
	if s.Status != stateDown || !strings.HasPrefix(s.Reasons[0], "acquirer ") || !strings.Contains(s.Reasons[0], "unreachable for 2m") {
		t.Errorf("link down for long: %s %q", s.Status, s.Reasons)
	}
	if v := r.metrics(t).gauge("posd_acquirer_up"); v != 0 {
		t.Errorf("posd_acquirer_up = %v with the link down", v)
	}

	// The pad goes away: the heartbeat finds it silent; after pinpad.fail_after it has failed.
	r.padStop()
	s = r.waitStatus(t, "the pad failed", func(s statusReport) bool { return s.Devices[0].State == terminal.DeviceFailed })
	if s.Status != stateDown || !hasReason(s, "pad not responding") {
		t.Errorf("pad gone: %s %q", s.Status, s.Reasons)
	}
	if v := r.metrics(t).gauge("posd_pinpad_up"); v != 0 {
		t.Errorf("posd_pinpad_up = %v with the pad gone", v)
	}

	logs := r.logs.String()
	assertNoCardData(t, logs, demoPINBlocks(t))
	if format == "json" {
		sc := bufio.NewScanner(strings.NewReader(logs))
		sc.Buffer(nil, 1<<20)
		lines := 0
		for sc.Scan() {
			lines++
			var v map[string]any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil || v["msg"] == nil || v["level"] == nil {
				t.Fatalf("log line %d is not a slog JSON record (%v): %s", lines, err, sc.Text())
			}
		}
		if lines < 10 {
			t.Errorf("only %d log lines", lines)
		}
	} else if strings.HasPrefix(strings.TrimSpace(logs), "{") {
		t.Errorf("text logs look like JSON: %.200s", logs)
	}
}

// scrape is one parsed /metrics answer.
type scrape map[string]*dto.MetricFamily

func (r *opsRig) metrics(t *testing.T) scrape {
	t.Helper()
	code, b := r.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, b)
	}
	return parseMetrics(t, b)
}

func parseMetrics(t *testing.T, b []byte) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the metrics do not parse: %v\n%s", err, b)
	}
	return fams
}

// find returns the metric of sel: `name` or `name{l1="v1",...}` with its labels in
// order, or, when sel ends inside the braces (`name{l=`), the first whose labels start so.
func (s scrape) find(sel string) *dto.Metric {
	name, labels, _ := strings.Cut(sel, "{")
	labels = strings.TrimSuffix(labels, "}")
	f := s[name]
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		var parts []string
		for _, l := range m.Label {
			parts = append(parts, l.GetName()+"="+`"`+l.GetValue()+`"`)
		}
		if got := strings.Join(parts, ","); got == labels || (labels != "" && strings.HasPrefix(got, labels)) {
			return m
		}
	}
	return nil
}

func (s scrape) counter(sel string) float64 {
	if m := s.find(sel); m != nil && m.Counter != nil {
		return m.Counter.GetValue()
	}
	return 0
}

func (s scrape) gauge(sel string) float64 {
	if m := s.find(sel); m != nil && m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return -1
}

// count is a histogram's sample count; labels as in find, "" for none.
func (s scrape) count(name, labels string) uint64 {
	sel := name
	if labels != "" {
		sel += "{" + labels + "}"
	}
	if m := s.find(sel); m != nil && m.Histogram != nil {
		return m.Histogram.GetSampleCount()
	}
	return 0
}

// TestAssess: the overall state from each part, most serious reason first.
func TestAssess(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	okLink := iso8583.LinkStatus{Addr: "127.0.0.1:8583", Connected: true, Since: now.Add(-time.Hour)}
	pad := terminal.DeviceStatus{Name: "pinpad", State: terminal.DeviceConnected, Since: now.Add(-time.Hour)}
	base := func() statusReport {
		return statusReport{Acquirer: okLink, Devices: []terminal.DeviceStatus{pad}, Store: storeStatus{SizeBytes: 1 << 20, CapBytes: 64 << 20}}
	}
	tests := []struct {
		name    string
		change  func(*statusReport)
		state   string
		reasons []string
	}{
		{"all well", func(*statusReport) {}, stateOK, nil},
		{"link never tried", func(r *statusReport) { r.Acquirer = iso8583.LinkStatus{Addr: "a:1"} }, stateOK, nil},
		{"link down 30s", func(r *statusReport) {
			r.Acquirer = iso8583.LinkStatus{Addr: "a:1", Since: now.Add(-30 * time.Second), LastError: "connection refused"}
		}, stateDegraded, []string{"acquirer a:1 unreachable for 30s (connection refused)"}},
		{"link down 2m", func(r *statusReport) {
			r.Acquirer = iso8583.LinkStatus{Addr: "a:1", Since: now.Add(-2 * time.Minute)}
		}, stateDown, []string{"acquirer a:1 unreachable for 2m0s"}},
		{"echo failed", func(r *statusReport) { r.Acquirer.LastEchoError = "timeout"; r.Acquirer.LastEcho = now }, stateDegraded,
			[]string{"acquirer 127.0.0.1:8583 did not answer the last echo at 2026-12-06T12:00:00Z (timeout)"}},
		{"pad reconnecting", func(r *statusReport) {
			r.Devices[0].State, r.Devices[0].Since, r.Devices[0].LastError = terminal.DeviceReconnecting, now.Add(-5*time.Second), "heartbeat got no answer"
		}, stateDegraded, []string{"pad reconnecting for 5s (heartbeat got no answer)"}},
		{"pad failed, 3 parked", func(r *statusReport) {
			r.Devices[0].State, r.Devices[0].Since = terminal.DeviceFailed, now.Add(-90*time.Second)
			r.Queue.Parked, r.Queue.Depth = 3, 3
		}, stateDown, []string{"pad not responding for 1m30s", "3 parked messages (posctl saf list)"}},
		{"old queue", func(r *statusReport) { r.Queue.Depth, r.Queue.Oldest = 1, now.Add(-time.Hour) }, stateDegraded,
			[]string{"oldest queued message waiting for 1h0m0s"}},
		{"store nearly full", func(r *statusReport) { r.Store.SizeBytes = 60 << 20 }, stateDegraded, []string{"store 93% of its cap (60 of 64 MiB)"}},
		{"store without cap", func(r *statusReport) { r.Store = storeStatus{SizeBytes: 1 << 30} }, stateOK, nil},
		{"queue unreadable", func(r *statusReport) { r.Queue.Error = "store: closed" }, stateDown, []string{"store-and-forward queue unreadable: store: closed"}},
		{"key change failed", func(r *statusReport) {
			r.WorkingKeys = map[iso8583.KeyKind]keyState{
				iso8583.KeyMAC: {ID: "mac.g2", Generation: 2, Alert: "the host's key does not import: check value does not match", AlertAt: now.Add(-time.Minute)},
				iso8583.KeyPIN: {ID: "acq-pin"},
			}
		}, stateDegraded, []string{"mac working-key change failed at 2026-12-06T11:59:00Z: the host's key does not import: check value does not match; the old key (mac.g2) is in use"}},
		{"key changed, not saved", func(r *statusReport) {
			r.WorkingKeys = map[iso8583.KeyKind]keyState{iso8583.KeyMAC: {ID: "mac.g1", Generation: 1, Alert: unsavedAlert + "disk full", AlertAt: now}}
		}, stateDegraded, []string{"mac working key mac.g1 in use since 2026-12-06T12:00:00Z but not saved (disk full): a restart would go back to the old key"}},
		{"keys well", func(r *statusReport) {
			r.WorkingKeys = map[iso8583.KeyKind]keyState{iso8583.KeyMAC: {ID: "mac.g1", Generation: 1}}
		}, stateOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.change(&r)
			state, reasons := assess(r, now)
			if state != tt.state || strings.Join(reasons, "|") != strings.Join(tt.reasons, "|") {
				t.Errorf("assess = %s %q, want %s %q", state, reasons, tt.state, tt.reasons)
			}
		})
	}
}
