package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/nexo"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// opsRig is posd in this process (startDaemon) on a scripted PIN pad over a pty pair and
// an acquirer simulator on loopback, for the status, metrics and status page tests. The
// test's uid is a supervisor and its gid a technician, so that it holds both roles.
type opsRig struct {
	d      *daemon
	cfg    *Config
	client *http.Client
	logs   *syncBuffer

	hostStop func()       // stops the acquirer simulator and closes its listener
	drop     atomic.Bool  // the simulator swallows requests
	delay    atomic.Int64 // the simulator answers after this many nanoseconds
	padStop  func()       // the pad goes away (its end of the line closes)
	n        atomic.Int64
}

// newOpsRig starts the rig. extra is spliced into the config's top level (",\n" first).
func newOpsRig(t *testing.T, logFormat string, events []padsim.Event, extra string) *opsRig {
	t.Helper()
	if testing.Short() {
		t.Skip("runs posd with a pad on a pty and an acquirer on loopback; skipped with -short")
	}
	r := &opsRig{logs: new(syncBuffer)}
	dir := t.TempDir()
	bdk, _ := hex.DecodeString(demoBDK)

	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	ksn, _ := dukpt.ParseKSN(demoKSN)
	pad, err := padsim.New(&padsim.Script{Events: events}, &padsim.Options{BDK: bdk, KSN: ksn})
	if err != nil {
		t.Fatal(err)
	}
	port, err := serial.Open(pair.B, &serial.Mode{BaudRate: 19200})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan struct{})
	go func() { _ = pad.Serve(pctx, port); close(pdone) }()
	var padOnce sync.Once
	r.padStop = func() { padOnce.Do(func() { pcancel(); <-pdone; port.Close() }) }
	t.Cleanup(r.padStop)

	host, err := hostsim.NewServer(hostsim.Options{BDK: bdk, Drop: func(*iso8583.Message) bool { return r.drop.Load() },
		Delay: func(*iso8583.Message) time.Duration { return time.Duration(r.delay.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan struct{})
	go func() { _ = host.Serve(hctx, ln); close(hdone) }()
	var hostOnce sync.Once
	r.hostStop = func() { hostOnce.Do(func() { hcancel(); <-hdone }) }
	t.Cleanup(r.hostStop)

	sock := filepath.Join(dir, "posd.sock")
	cfgText := fmt.Sprintf(`{
  "version": 1,
  "terminal": {"id": "OPS00001", "merchant_id": "OPS-MERCHANT", "currency": "EUR", "card_timeout": "10s"},
  "api": {"listen": "unix:%s", "roles": {"supervisor": {"users": ["%d"]}, "technician": {"groups": ["%d"]}}},
  "pinpad": {"port": %q, "ack_timeout": "500ms", "heartbeat": "200ms", "fail_after": "1s", "reconnect_min": "50ms", "reconnect_max": "200ms"},
  "acquirer": {"address": %q, "response_timeout": "1s", "dial_timeout": "500ms"},
  "store": {"path": %q, "max_size_mib": 64},
  "hsm": {"data": {"backend": "soft", "allow_soft": true, "key_file": %q}},
  "saf": {"min_backoff": "1h", "max_backoff": "1h"},
  "log": {"level": "debug", "format": %q}%s
}`, sock, os.Getuid(), os.Getgid(), pair.A, ln.Addr().String(), filepath.Join(dir, "posd.db"), filepath.Join(dir, "data.key"), logFormat, extra)
	cfgPath := filepath.Join(dir, "posd.json")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	r.cfg, err = LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(r.logs, r.cfg.Log)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.d, err = startDaemon(ctx, r.cfg, log, func(format string, a ...any) { log.Debug(fmt.Sprintf(format, a...)) }, nil, nil)
	if err != nil {
		t.Fatalf("startDaemon: %v\n%s", err, r.logs.String())
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = r.d.shutdown(sctx)
	})
	r.client = unixClient(sock)
	return r
}

// sale posts one payment of minor cents and returns the nexo result and condition.
func (r *opsRig) sale(t *testing.T, minor int64) (string, string) {
	t.Helper()
	eur, _ := money.LookupCurrency("EUR")
	n := r.n.Add(1)
	env := nexo.NewPaymentRequest("OPS-TILL", strconv.FormatInt(n, 10), r.cfg.Terminal.POIID, fmt.Sprintf("OPS-%d", n), money.Amount{Minor: minor, Currency: eur}, time.Now())
	body, _ := json.Marshal(env)
	resp, err := r.client.Post("http://posd/nexo", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans nexo.Envelope
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans.Response == nil || ans.Response.PaymentResponse == nil {
		t.Fatalf("sale: HTTP %d, unreadable answer (%v)", resp.StatusCode, err)
	}
	pr := ans.Response.PaymentResponse.Response
	return pr.Result, pr.ErrorCondition
}

// get fetches path from the API and returns the status code and body.
func (r *opsRig) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := r.client.Get("http://posd" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// status reads GET /v1/status.
func (r *opsRig) status(t *testing.T) statusReport {
	t.Helper()
	code, b := r.get(t, "/v1/status")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/status: %d %s", code, b)
	}
	var s statusReport
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("GET /v1/status: %v\n%s", err, b)
	}
	return s
}

// waitStatus polls GET /v1/status until ok returns true (at most 15s).
func (r *opsRig) waitStatus(t *testing.T, what string, ok func(statusReport) bool) statusReport {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := r.status(t)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s: %+v", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasReason(s statusReport, part string) bool {
	for _, r := range s.Reasons {
		if strings.Contains(r, part) {
			return true
		}
	}
	return false
}
