package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// TestCrashKill is the store-and-forward crash test: posd (the real binary) runs a stream
// of sales against the PIN pad and acquirer simulators (in this process, so that the host's
// ledger can be read at any time) and is killed with SIGKILL again and again: at random
// moments, at named failpoints (after the intent is journaled; after the host answered but
// before the outcome is; in the middle of a drain) and by the host the instant a request
// reaches it. After every kill the journal file is checked; at the end posd drains its
// queue and every charge at the host must be accounted for exactly once.
//
// POSD_CRASH_KILLS sets the number of kills (default 200, what make test runs);
// `make crash` runs 2000.
func TestCrashKill(t *testing.T) {
	kills := 200
	if v, err := strconv.Atoi(os.Getenv("POSD_CRASH_KILLS")); err == nil && v > 0 {
		kills = v
	}
	bin := filepath.Join(binaries(t), "posd")
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d kills", seed, kills)
	rng := rand.New(rand.NewPCG(seed, 7))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The PIN pad: signature cards only (no PIN), so a sale cut short by a kill never
	// leaves the script out of step, and sales may be approved offline.
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	events := make([]padsim.Event, kills*8+100)
	for i := range events {
		events[i] = padsim.Event{Swipe: &padsim.Swipe{Track2: "4761739001010010=30121010000000000"}}
	}
	bdk, _ := hex.DecodeString(demoBDK)
	ksn, _ := dukpt.ParseKSN(demoKSN)
	pad, err := padsim.New(&padsim.Script{Events: events}, &padsim.Options{BDK: bdk, KSN: ksn})
	if err != nil {
		t.Fatal(err)
	}
	padPort, err := serial.Open(pair.B, &serial.Mode{BaudRate: 19200})
	if err != nil {
		t.Fatal(err)
	}
	defer padPort.Close()
	go pad.Serve(ctx, padPort)

	// The acquirer, with faults: some answers late (after posd's timeout: posd must
	// reverse), some never, and some requests make it kill posd on arrival.
	var posdPID atomic.Int64
	var hostKill atomic.Bool
	// The host's faults draw from their own generator: its callbacks run on the host's
	// goroutines, concurrently with this test's loop.
	var mu sync.Mutex
	hostRng := rand.New(rand.NewPCG(seed, 8))
	frand := func() float64 { mu.Lock(); defer mu.Unlock(); return hostRng.Float64() }
	host, err := hostsim.NewServer(hostsim.Options{
		BDK: bdk,
		// The strictest host: it knows a message by terminal, STAN and field 7 only, so a
		// resend that took a new field 7 would be a second charge here.
		MatchBy: hostsim.MatchTransmission,
		Delay: func(req *iso8583.Message) time.Duration {
			if hostKill.Load() && frand() < 0.5 {
				if pid := posdPID.Load(); pid > 0 {
					syscall.Kill(int(pid), syscall.SIGKILL) // the request reached the host: kill now
				}
			}
			if frand() < 0.08 {
				return 500 * time.Millisecond // beyond posd's 300ms response timeout
			}
			return 0
		},
		Drop: func(*iso8583.Message) bool { return frand() < 0.04 },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go host.Serve(ctx, ln)

	sock := filepath.Join(dir, "posd.sock")
	dbPath := filepath.Join(dir, "posd.db")
	cfg := fmt.Sprintf(`{
  "version": 1,
  "terminal": {"id": "CRASH001", "merchant_id": "CRASH-MERCHANT", "currency": "EUR", "card_timeout": "5s"},
  "api": {"listen": "unix:%s", "roles": {"supervisor": {"users": ["%d"]}}},
  "pinpad": {"port": %q, "ack_timeout": "500ms"},
  "acquirer": {"address": %q, "response_timeout": "300ms", "dial_timeout": "300ms", "require_at_start": false},
  "store": {"path": %q},
  "offline": {"enabled": true},
  "hsm": {"data": {"backend": "soft", "allow_soft": true, "key_file": %q}},
  "saf": {"window": 8, "max_attempts": 100000, "min_backoff": "10ms", "max_backoff": "100ms"}
}`, sock, os.Getuid(), pair.A, ln.Addr().String(), dbPath, filepath.Join(dir, "soft-data.key"))
	cfgPath := filepath.Join(dir, "posd.json")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	client := unixClient(sock)

	var logs bytes.Buffer
	// start runs posd; the returned channel is closed when it has exited.
	start := func(env ...string) (*exec.Cmd, chan struct{}) {
		t.Helper()
		os.Remove(sock)
		if err := pair.ClearExclusive(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		posdPID.Store(int64(cmd.Process.Pid))
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		return cmd, done
	}
	waitReady := func(done chan struct{}) bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-done:
				return false // it died (a failpoint during recovery or drain)
			default:
			}
			if resp, err := client.Get("http://posd/v1/status"); err == nil {
				resp.Body.Close()
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("posd did not become ready:\n%s", tail(logs.String()))
		return false
	}
	// post sends a till request; the answer is nil when posd did not give one (killed).
	post := func(body string) *nexo.SaleToPOIResponse {
		resp, err := client.Post("http://posd/nexo", "application/json", strings.NewReader(body))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var env nexo.Envelope
		if json.NewDecoder(resp.Body).Decode(&env) != nil {
			return nil
		}
		return env.Response
	}
	// sale runs sale i. Now and then the till repeats it (a till that timed out: the
	// repeat must get the first answer, never a second sale) and voids an approval (the
	// charge must then be undone, whether it was approved online or offline).
	voids, repeats := 0, 0
	sale := func(i int) {
		amount := fmt.Sprintf("%d.%02d", rng.IntN(40), rng.IntN(100)+1)
		body := fmt.Sprintf(`{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"Payment","MessageType":"Request","SaleID":"CRASH","ServiceID":"%d","POIID":"POSD-CRASH001"},"PaymentRequest":{"SaleData":{"SaleTransactionID":{"TransactionID":"C%d"}},"PaymentTransaction":{"AmountsReq":{"Currency":"EUR","RequestedAmount":%s}}}}}`, i%1000000000, i, amount)
		first := post(body)
		if first == nil || first.PaymentResponse == nil {
			return
		}
		poi := first.PaymentResponse.POIData.POITransactionID.TransactionID
		if rng.IntN(6) == 0 {
			repeats++
			if again := post(body); again != nil && again.PaymentResponse != nil {
				if got := again.PaymentResponse.POIData.POITransactionID.TransactionID; got != poi || again.PaymentResponse.Response != first.PaymentResponse.Response {
					t.Errorf("sale %d repeated: answered %q %+v, the first answer was %q %+v", i, got, again.PaymentResponse.Response, poi, first.PaymentResponse.Response)
				}
			}
		}
		if first.PaymentResponse.Response.Result == "Success" && rng.IntN(4) == 0 {
			voids++
			post(fmt.Sprintf(`{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"Reversal","MessageType":"Request","SaleID":"CRASH","ServiceID":"V%d","POIID":"POSD-CRASH001"},"ReversalRequest":{"OriginalPOITransaction":{"POITransactionID":{"TransactionID":%q}},"ReversalReason":"MerchantCancel"}}}`, i%100000000, poi))
		}
	}

	// Modes, in turn: a kill at a random moment, at each failpoint, and by the host the
	// instant a request arrives (after send, before any answer).
	failpoint := map[int]string{1: "after-intent", 2: "after-response", 4: "mid-drain"}
	saleN := 0
	for k := 0; k < kills; k++ {
		mode := k % 5
		var env []string
		hostKill.Store(mode == 3)
		if p, ok := failpoint[mode]; ok {
			env = []string{"POSD_FAILPOINT=" + p, "POSD_FAILPOINT_SKIP=" + strconv.Itoa(rng.IntN(2))}
		}
		t0 := time.Now()
		cmd, done := start(env...)
		ready := waitReady(done)
		t1 := time.Now()
		if ready {
			var timer *time.Timer
			if mode == 0 {
				timer = time.AfterFunc(time.Duration(rng.IntN(80))*time.Millisecond, func() { cmd.Process.Kill() })
			}
			for s := 0; s < 4; s++ {
				select {
				case <-done:
				default:
					saleN++
					sale(saleN)
					continue
				}
				break
			}
			if timer != nil {
				timer.Stop()
			}
		}
		t2 := time.Now()
		cmd.Process.Kill()
		<-done
		hostKill.Store(false)
		checkAfterKill(t, k, dbPath, host)
		if os.Getenv("POSD_CRASH_TIMING") != "" {
			t.Logf("kill %d mode %d: start %v, sales %v, check %v", k, mode, t1.Sub(t0), t2.Sub(t1), time.Since(t2))
		}
		if t.Failed() {
			t.Fatalf("after kill %d (mode %d, seed %d); posd's log:\n%s", k, mode, seed, tail(logs.String()))
		}
		logs.Reset()
	}

	// Settle everything: a clean posd drains its queue; then every charge must match.
	cmd, done := start()
	if !waitReady(done) {
		t.Fatalf("final posd died:\n%s", tail(logs.String()))
	}
	for i := 0; ; i++ {
		resp, err := client.Post("http://posd/v1/saf/flush", "application/json", strings.NewReader(`{"who":"crash-test"}`))
		if err == nil {
			resp.Body.Close()
		}
		resp, err = client.Get("http://posd/v1/saf")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) == "[]" {
			break
		}
		if i > 400 {
			t.Fatalf("the queue never drained: %s\n%s", b, tail(logs.String()))
		}
		time.Sleep(25 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
	checkFinal(t, dbPath, host)
	t.Logf("%d kills, %d sales driven (%d repeated by the till, %d voided), %d charges at the host", kills, saleN, repeats, voids, len(host.Charges()))
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func tail(s string) string {
	if len(s) > 6000 {
		return "..." + s[len(s)-6000:]
	}
	return s
}

// openStoreRO opens the journal with a short lock timeout (posd must be dead).
func openStoreRO(path string) (*store.Store, error) {
	return store.Open(path, &store.Options{Timeout: 50 * time.Millisecond})
}

type journalView struct {
	recs   []store.Record
	queued map[store.TxnID][]store.Item
}

func readJournal(t *testing.T, path string) journalView {
	t.Helper()
	// The write-ahead log as the kill left it (records not yet folded) holds masked and
	// sealed data only.
	if log, err := os.ReadFile(path + "-wal"); err != nil {
		t.Errorf("reading the write-ahead log after a kill: %v", err)
	} else {
		assertNoCardData(t, string(log), nil)
	}
	s, err := openStoreRO(path)
	if err != nil {
		t.Fatalf("opening the journal after a kill: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	rep, err := s.Check(ctx)
	if err != nil || !rep.OK() {
		t.Errorf("store check after a kill: %v %+v", err, rep.Problems)
	}
	v := journalView{queued: map[store.TxnID][]store.Item{}}
	if err := s.Records(ctx, func(r store.Record) error { v.recs = append(v.recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		v.queued[it.TxnID] = append(v.queued[it.TxnID], it)
	}
	return v
}

func hasQueued(items []store.Item, kind store.Kind) bool {
	for _, it := range items {
		if it.Kind == kind {
			return true
		}
	}
	return false
}

// checkAfterKill: every charge standing at the host is, in the journal, a completed
// approval, or a transaction being reversed (reversal queued or acknowledged, or left open
// by the crash: recovery reverses it); every offline approval is queued or advised; the
// file checks clean.
func checkAfterKill(t *testing.T, k int, path string, host *hostsim.Server) {
	t.Helper()
	v := readJournal(t, path)
	bySTAN := map[uint32]store.Record{}
	byAdvice := map[uint32]store.Record{}
	for _, r := range v.recs {
		bySTAN[r.Intent.STAN] = r
		if r.Outcome == nil {
			continue
		}
		if r.Outcome.Advised != nil {
			byAdvice[r.Outcome.Advised.STAN] = r
		}
		for _, it := range v.queued[r.ID] {
			if it.Kind == store.KindAdvice {
				byAdvice[it.STAN] = r
			}
		}
		// (A voided one may have been withdrawn: never sent, nothing to advise.)
		if r.Outcome.State == store.StateApprovedOffline && r.Outcome.Voided == nil && r.Outcome.Advised == nil && !hasQueued(v.queued[r.ID], store.KindAdvice) {
			t.Errorf("kill %d: offline approval %d is neither queued nor advised", k, r.ID)
		}
		if r.Outcome.State == store.StateUnknown && r.Outcome.Reversed == nil && !hasQueued(v.queued[r.ID], store.KindReversal) {
			t.Errorf("kill %d: transaction %d has an unknown outcome and no reversal", k, r.ID)
		}
	}
	standing := map[store.TxnID]int{}
	for _, c := range host.Charges() {
		if !c.Approved || c.Reversed {
			continue
		}
		var r store.Record
		var ok bool
		if c.MTI == "0220" {
			r, ok = byAdvice[c.STAN]
		} else {
			r, ok = bySTAN[c.STAN]
		}
		if !ok {
			t.Errorf("kill %d: the host charged %s STAN %06d %d %s, which posd's journal does not know", k, c.MTI, c.STAN, c.AmountMinor, c.Currency)
			continue
		}
		standing[r.ID]++
		if standing[r.ID] > 1 {
			t.Errorf("kill %d: transaction %d is charged twice at the host", k, r.ID)
		}
		switch {
		case r.Outcome == nil: // open: recovery will reverse it
		case c.MTI != "0220" && hasQueued(v.queued[r.ID], store.KindReversal):
			// its reversal is on the way (a timed-out authorization, perhaps then
			// approved offline: the advice waits until the reversal is through)
		case r.Outcome.State == store.StateApproved && c.MTI != "0220":
		case r.Outcome.State == store.StateApprovedOffline && c.MTI == "0220":
		case r.Outcome.State == store.StateUnknown && (r.Outcome.Reversed == nil || hasQueued(v.queued[r.ID], store.KindReversal)):
			// being reversed
		default:
			t.Errorf("kill %d: the host charged transaction %d, which the journal records %s", k, r.ID, r.Outcome.State)
		}
	}
}

// checkFinal: after a full drain nothing is queued, and the host's standing charges are
// exactly the journal's approvals, each once.
func checkFinal(t *testing.T, path string, host *hostsim.Server) {
	t.Helper()
	v := readJournal(t, path)
	if len(v.queued) != 0 {
		t.Errorf("queue not empty after the final drain: %d transactions", len(v.queued))
	}
	want := map[string]store.Record{}
	voided := 0
	for _, r := range v.recs {
		if r.Outcome == nil {
			t.Errorf("transaction %d still open after the final start", r.ID)
			continue
		}
		if r.Outcome.Voided != nil {
			voided++
			continue // undone: the host must hold no charge for it
		}
		switch r.Outcome.State {
		case store.StateApproved:
			want["0200/"+strconv.Itoa(int(r.Intent.STAN))] = r
		case store.StateApprovedOffline:
			if r.Outcome.Advised == nil {
				t.Errorf("offline approval %d never advised", r.ID)
				continue
			}
			want["0220/"+strconv.Itoa(int(r.Outcome.Advised.STAN))] = r
		}
	}
	got := 0
	for _, c := range host.Charges() {
		if !c.Approved || c.Reversed {
			continue
		}
		got++
		key := c.MTI + "/" + strconv.Itoa(int(c.STAN))
		if _, ok := want[key]; !ok {
			t.Errorf("the host holds a charge posd did not approve: %s STAN %06d %d", c.MTI, c.STAN, c.AmountMinor)
		}
		delete(want, key)
	}
	for k, r := range want {
		t.Errorf("posd approved transaction %d (%s) but the host holds no charge for it", r.ID, k)
	}
	offline := 0
	for _, r := range v.recs {
		if r.Outcome != nil && r.Outcome.State == store.StateApprovedOffline {
			offline++
		}
	}
	t.Logf("final: %d charges stand at the host, all matched to the journal (%d offline approvals advised, %d voided sales charged nothing)", got, offline, voided)
}
