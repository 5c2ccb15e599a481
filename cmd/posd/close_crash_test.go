package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/nexo"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// closeCrashRig is posd (the built binary) with the PIN pad and the acquirer in this
// process, so that the test can kill posd at any step of a close and read what the host
// closed.
type closeCrashRig struct {
	t       *testing.T
	host    *hostsim.Server
	pair    *ptypair.Pair
	cfgPath string
	dbPath  string
	sock    string
	api     string
	logs    syncBuffer
	pid     atomic.Int64
	// kill0320, when positive, makes the host kill posd when that many 0320s have
	// arrived (the kill is in the middle of the batch upload).
	kill0320 atomic.Int64
	n0320    atomic.Int64
	c        captured
}

func newCloseCrashRig(t *testing.T, sales, loseEvery int) *closeCrashRig {
	t.Helper()
	r := &closeCrashRig{t: t}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	var err error
	if r.pair, err = ptypair.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.pair.Close() })
	events := make([]padsim.Event, sales+4)
	for i := range events {
		events[i] = padsim.Event{Swipe: &padsim.Swipe{Track2: "4761739001010010=30121010000000000"}} // signature: no PIN
	}
	bdk, _ := hex.DecodeString(demoBDK)
	ksn, _ := dukpt.ParseKSN(demoKSN)
	pad, err := padsim.New(&padsim.Script{Events: events}, &padsim.Options{BDK: bdk, KSN: ksn})
	if err != nil {
		t.Fatal(err)
	}
	padPort, err := serial.Open(r.pair.B, &serial.Mode{BaudRate: 19200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { padPort.Close() })
	go pad.Serve(ctx, padPort)
	r.host, err = hostsim.NewServer(hostsim.Options{BDK: bdk, LoseEvery: loseEvery,
		Delay: func(req *iso8583.Message) time.Duration {
			if mti, _ := req.GetMTI(); mti == iso8583.MTIBatchUpload {
				if k := r.kill0320.Load(); k > 0 && r.n0320.Add(1) == k {
					if pid := r.pid.Load(); pid > 0 {
						syscall.Kill(int(pid), syscall.SIGKILL) // in the middle of the upload
					}
				}
			}
			return 0
		}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.host.Serve(ctx, ln)
	r.sock, r.dbPath = filepath.Join(dir, "posd.sock"), filepath.Join(dir, "posd.db")
	r.api = "--api=unix:" + r.sock
	cfg := fmt.Sprintf(`{
  "version": 1,
  "terminal": {"id": "CLOSE001", "merchant_id": "CLOSE-MERCHANT", "currency": "EUR", "card_timeout": "5s"},
  "api": {"listen": "unix:%s", "roles": {"supervisor": {"users": ["%d"]}}},
  "pinpad": {"port": %q, "ack_timeout": "500ms"},
  "acquirer": {"address": %q, "response_timeout": "2s", "dial_timeout": "1s", "require_at_start": false},
  "store": {"path": %q},
  "hsm": {"data": {"backend": "soft", "allow_soft": true, "key_file": %q}}
}`, r.sock, os.Getuid(), r.pair.A, ln.Addr().String(), r.dbPath, filepath.Join(dir, "soft-data.key"))
	r.cfgPath = filepath.Join(dir, "posd.json")
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// start runs posd with env and waits until its API answers; the channel is closed when
// posd has exited.
func (r *closeCrashRig) start(env ...string) (*exec.Cmd, chan struct{}) {
	t := r.t
	t.Helper()
	os.Remove(r.sock)
	if err := r.pair.ClearExclusive(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binaries(t), "posd"), "run", "--config", r.cfgPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &r.logs, &r.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.pid.Store(int64(cmd.Process.Pid))
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	client := unixClient(r.sock)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("posd exited at start:\n%s", tail(r.logs.String()))
		default:
		}
		if resp, err := client.Get("http://posd/v1/status"); err == nil {
			resp.Body.Close()
			return cmd, done
		}
	}
	t.Fatalf("posd did not become ready:\n%s", tail(r.logs.String()))
	return nil, nil
}

// stop ends posd with SIGTERM.
func (r *closeCrashRig) stop(cmd *exec.Cmd, done chan struct{}) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		r.t.Fatalf("posd did not stop on SIGTERM:\n%s", tail(r.logs.String()))
	}
}

// sale runs one sale through the till API and fails the test unless it is approved.
func (r *closeCrashRig) sale(i int, amount string) {
	t := r.t
	t.Helper()
	body := fmt.Sprintf(`{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"Payment","MessageType":"Request","SaleID":"CLOSE","ServiceID":"%d","POIID":"POSD-CLOSE001"},"PaymentRequest":{"SaleData":{"SaleTransactionID":{"TransactionID":"K%d"}},"PaymentTransaction":{"AmountsReq":{"Currency":"EUR","RequestedAmount":%s}}}}}`, i, i, amount)
	resp, err := unixClient(r.sock).Post("http://posd/nexo", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env nexo.Envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || env.Response == nil || env.Response.PaymentResponse == nil ||
		env.Response.PaymentResponse.Response.Result != "Success" {
		t.Fatalf("sale %d: %v %+v\n%s", i, err, env.Response, tail(r.logs.String()))
	}
}

// check stops nothing: posd must be stopped. It checks that each batch the host knows
// was closed once, with posd's totals; that every record is in one closed batch whose
// totals add up to the host's; that the open batch is empty; and that the store checks
// clean.
func (r *closeCrashRig) check(wantClosed int, want0500 map[string]int) {
	t := r.t
	t.Helper()
	s, err := openStoreRO(r.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Errorf("store check: %v %+v", err, rep.Problems)
	}
	ours := map[uint64]*iso8583.Totals{}
	seen := map[store.TxnID]bool{}
	err = s.Records(ctx, func(rec store.Record) error {
		if seen[rec.ID] {
			t.Errorf("record %d given twice", rec.ID)
		}
		seen[rec.ID] = true
		if rec.Outcome == nil || rec.Outcome.ResponseCode != iso8583.RCApproved || rec.Outcome.Batch == 0 {
			t.Errorf("record %d: outcome %+v, want approved in a batch", rec.ID, rec.Outcome)
			return nil
		}
		tot := ours[rec.Outcome.Batch]
		if tot == nil {
			tot = &iso8583.Totals{}
			ours[rec.Outcome.Batch] = tot
		}
		tot.DebitsCount++
		tot.DebitsAmount += rec.Intent.AmountMinor
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	batches, err := s.Batches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	closed := 0
	for _, b := range batches {
		switch b.State {
		case store.BatchClosed:
			closed++
			if b.ResponseCode != iso8583.RCApproved {
				t.Errorf("batch %d closed with %q", b.Number, b.ResponseCode)
			}
		case store.BatchOpen:
			if ours[b.Number] != nil {
				t.Errorf("the open batch %d holds %d transaction(s), want none", b.Number, ours[b.Number].DebitsCount)
			}
		default:
			t.Errorf("batch %d is %v after the close, want closed or open", b.Number, b.State)
		}
	}
	if n := s.OpenBatch(); n != uint64(wantClosed+1) {
		t.Errorf("open batch %d, want %d", n, wantClosed+1)
	}
	if closed != wantClosed {
		t.Errorf("%d closed batch(es) in posd, want %d", closed, wantClosed)
	}
	host := r.host.ClosedBatches()
	if len(host) != wantClosed {
		t.Errorf("the host knows %d batch(es), want %d: %+v", len(host), wantClosed, host)
	}
	for _, hb := range host {
		var n uint64
		fmt.Sscan(hb.Batch, &n)
		want := iso8583.Totals{}
		if ours[n] != nil {
			want = *ours[n]
		}
		if !hb.Closed || hb.Totals != want {
			t.Errorf("host batch %s of %s: closed %t with %+v; posd's totals %+v", hb.Batch, hb.TerminalID, hb.Closed, hb.Totals, want)
		}
		if w, ok := want0500[hb.Batch]; ok && hb.Requests != w {
			t.Errorf("host batch %s: %d 0500(s), want %d", hb.Batch, hb.Requests, w)
		}
	}
	for _, c := range r.host.Charges() {
		if c.Charged() && !c.Settled {
			t.Errorf("a charge the host never settled: %v", c)
		}
	}
	if t.Failed() {
		t.Logf("posd's log:\n%s", tail(r.logs.String()))
	}
}

// closeKilled runs posctl close against a posd that will die during it and waits for
// posd's end; posctl must fail.
func (r *closeCrashRig) closeKilled(done chan struct{}) {
	t := r.t
	t.Helper()
	code, out := r.c.run(t, "posctl", r.api, "close")
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("posd did not die during the close (posctl exit %d)\n%s\n%s", code, out, tail(r.logs.String()))
	}
	if code == 0 {
		t.Errorf("posctl close succeeded though posd died during it:\n%s", out)
	}
}

// closeAgain runs posctl close against a clean posd: it must finish the close left
// pending, and the next batch must be open and empty.
func (r *closeCrashRig) closeAgain(batch int, extra ...string) {
	t := r.t
	t.Helper()
	code, out := r.c.run(t, "posctl", r.api, "close")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("batch %d closed, host answered 00", batch)) {
		t.Fatalf("close after the kill: exit %d\n%s\n%s", code, out, tail(r.logs.String()))
	}
	for _, s := range extra {
		if !strings.Contains(out, s) {
			t.Errorf("close after the kill does not say %q:\n%s", s, out)
		}
	}
	code, out = r.c.run(t, "posctl", r.api, "totals")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("open batch %d", batch+1)) || !strings.Contains(out, "no transactions") {
		t.Errorf("posctl totals after the close: exit %d\n%s", code, out)
	}
	code, out = r.c.run(t, "posctl", r.api, "store", "check")
	if code != 0 || !strings.Contains(out, "store check: ok") {
		t.Errorf("posctl store check after the close: exit %d\n%s", code, out)
	}
}

// TestCloseKilledAtEachStep kills posd (SIGKILL, through its failpoints) at each step of
// a batch close: after the close's intent is journaled, before any 0500; and after the
// 0500 reached the host, before posd journaled the answer. A clean posd then closes again:
// the host closed each batch once, with posd's totals, and the next batch is open and
// empty.
func TestCloseKilledAtEachStep(t *testing.T) {
	for _, tt := range []struct {
		failpoint string
		want0500  int // 0500s the host receives for the batch
	}{
		{"close-after-intent", 1}, // none before the kill, one after
		{"close-after-0500", 2},   // one before the kill, its repeat after
	} {
		t.Run(tt.failpoint, func(t *testing.T) {
			r := newCloseCrashRig(t, 6, 0)
			cmd, done := r.start()
			for i := range 3 {
				r.sale(i, fmt.Sprintf("%d.25", 10+i))
			}
			r.stop(cmd, done)
			_, done = r.start("POSD_FAILPOINT=" + tt.failpoint)
			r.closeKilled(done)
			cmd, done = r.start()
			r.closeAgain(1)
			r.sale(10, "3.00") // the next batch takes sales, and closes
			r.closeAgain(2)
			r.stop(cmd, done)
			r.check(2, map[string]int{"000001": tt.want0500, "000002": 1})
		})
	}
}

// TestCloseKilledOutOfBalance: the host loses every second sale. posd is killed after the
// first 0500 (answered 95) and then again in the middle of the batch upload (the host
// kills it at the second 0320); a clean posd's close still ends with the batch closed once
// at the host, with posd's totals, and the report names the lost sales.
func TestCloseKilledOutOfBalance(t *testing.T) {
	r := newCloseCrashRig(t, 6, 2)
	cmd, done := r.start()
	for i := range 4 {
		r.sale(i, fmt.Sprintf("%d.50", 20+i))
	}
	r.stop(cmd, done)
	_, done = r.start("POSD_FAILPOINT=close-after-0500")
	r.closeKilled(done) // 0500 #1: 95
	r.kill0320.Store(2)
	_, done = r.start()
	r.closeKilled(done) // 0500 #2: 95; upload cut at the second 0320
	r.kill0320.Store(0)
	cmd, done = r.start()
	// 0500 #3: 95 (the upload restored the host's totals but the batch is not closed);
	// the upload again; the closing 0500 #4.
	r.closeAgain(1, "out of balance: batch uploaded")
	r.stop(cmd, done)
	r.check(1, map[string]int{"000001": 4})
}
