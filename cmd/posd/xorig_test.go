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
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/internal/serialport"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// xoRig is the exactly-once test's world: the real posd binary, a strict acquirer
// (hostsim in this process, so that its Charges can be read, and stopped and started
// again on the same address) and a scripted PIN pad (padsim in this process over a pty
// pair, replaced by a new script whenever a scenario needs one). The till talks to posd
// over its unix socket, as e2e_test does.
type xoRig struct {
	dir, bin, cfg, sock, db string
	tid, poiid              string
	client                  *http.Client
	logs                    *syncBuffer

	pair    *ptypair.Pair
	padStop func()
	line    *quietPort

	host      *hostsim.Server
	hostAddr  string
	hostStop  func()    // nil while the host is down
	hostClock turnClock // the acquirer's turns and its own time at them

	mu       sync.Mutex
	delay    func(m xoMsg) time.Duration // the host's delay hook; nil: none
	arrived  []xoMsg                     // every request the host received, in order
	arriveCh chan struct{}               // closed and replaced at each arrival

	posd     *exec.Cmd
	posdDone chan struct{}
	posdPID  atomic.Int64

	svcN  int  // ServiceIDs handed out
	dirty bool // a scenario failed: posd may still be running one of its sales
}

// xoMsg is what the test's hooks read of a request at the host.
type xoMsg struct {
	MTI, STAN, Sent string // field 7: Sent
	Amount          int64  // minor units
}

const (
	xoTrack2 = "4761739001010010=30121010000000000" // a signature card: no PIN, may be approved offline
	xoSaleID = "TILL1"
)

func xoSwipes(n int) []padsim.Event {
	ev := make([]padsim.Event, n)
	for i := range ev {
		ev[i] = padsim.Event{Swipe: &padsim.Swipe{Track2: xoTrack2}}
	}
	return ev
}

// xoDelayed is a pad that keeps the customer waiting d before the card, then n swipes.
func xoDelayed(d time.Duration, n int) []padsim.Event {
	return append([]padsim.Event{{Delay: d}}, xoSwipes(n)...)
}

func newXORig(t testing.TB) *xoRig {
	t.Helper()
	r := &xoRig{dir: t.TempDir(), bin: filepath.Join(binaries(t), "posd"), tid: "XOTEST01", logs: new(syncBuffer), arriveCh: make(chan struct{})}
	r.poiid = "POSD-" + r.tid
	r.sock = filepath.Join(r.dir, "posd.sock")
	r.db = filepath.Join(r.dir, "posd.db")
	r.client = unixClient(r.sock)

	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	r.pair = pair
	t.Cleanup(func() { pair.Close() })

	bdk, _ := hex.DecodeString(demoBDK)
	opts := hostsim.Options{
		BDK: bdk,
		Drop: func(req *iso8583.Message) bool {
			r.arrive(readXOMsg(req))
			return false
		},
		Delay: func(req *iso8583.Message) time.Duration {
			r.mu.Lock()
			f := r.delay
			r.mu.Unlock()
			if f == nil {
				return 0
			}
			return f(readXOMsg(req))
		},
	}
	opts.MatchBy = hostsim.MatchTransmission // a resend with a new field 7 is a second sale to it
	if r.host, err = hostsim.NewServer(opts); err != nil {
		t.Fatal(err)
	}
	r.hostAddr = "127.0.0.1:0"
	r.hostUp(t)
	t.Cleanup(r.hostDown)

	r.cfg = filepath.Join(r.dir, "posd.json")
	cfg := fmt.Sprintf(`{
  "version": 1,
  "terminal": {"id": %q, "merchant_id": "XO-MERCHANT", "currency": "EUR", "card_timeout": "10s"},
  "api": {"listen": "unix:%s", "roles": {"supervisor": {"users": ["%d"]}}},
  "pinpad": {"port": %q, "ack_timeout": "500ms"},
  "acquirer": {"address": %q, "response_timeout": "3s", "dial_timeout": "300ms", "require_at_start": false},
  "store": {"path": %q},
  "offline": {"enabled": true},
  "hsm": {"data": {"backend": "soft", "allow_soft": true, "key_file": %q}},
  "saf": {"window": 8, "max_attempts": 100000, "min_backoff": "20ms", "max_backoff": "200ms"}
}`, r.tid, r.sock, os.Getuid(), pair.A, r.hostAddr, r.db, filepath.Join(r.dir, "soft-data.key"))
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r.pad(t, nil)
	t.Cleanup(func() {
		if r.padStop != nil {
			r.padStop()
		}
	})
	t.Cleanup(func() {
		if r.posd != nil {
			r.posd.Process.Kill()
			<-r.posdDone
		}
	})
	return r
}

func readXOMsg(req *iso8583.Message) xoMsg {
	m := xoMsg{}
	m.MTI, _ = req.GetMTI()
	m.STAN, _ = req.GetString(11)
	m.Sent, _ = req.GetString(7)
	a, _ := req.GetString(4)
	m.Amount, _ = strconv.ParseInt(a, 10, 64)
	return m
}

func (r *xoRig) arrive(m xoMsg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.arrived = append(r.arrived, m)
	close(r.arriveCh)
	r.arriveCh = make(chan struct{})
}

// setDelay sets the host's delay hook (nil: answer at once). The hook may also kill posd
// (killPosd): the host has decided and recorded the request by then.
func (r *xoRig) setDelay(f func(m xoMsg) time.Duration) {
	r.mu.Lock()
	r.delay = f
	r.mu.Unlock()
}

// mark returns a position in the host's arrivals for waitArrival.
func (r *xoRig) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.arrived)
}

// waitArrival waits until a request matching match reaches the host after from.
func (r *xoRig) waitArrival(t testing.TB, from int, what string, match func(xoMsg) bool) xoMsg {
	t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		for _, m := range r.arrived[from:] {
			if match(m) {
				r.mu.Unlock()
				return m
			}
		}
		ch := r.arriveCh
		r.mu.Unlock()
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("the host never received %s; posd's log:\n%s", what, tail(r.logs.String()))
		}
	}
}

func isAdvice(m xoMsg) bool { return strings.HasPrefix(m.MTI, "022") }

// hostUp starts the acquirer (again) on its address.
func (r *xoRig) hostUp(t testing.TB) {
	t.Helper()
	if r.hostStop != nil {
		return
	}
	ln, err := net.Listen("tcp", r.hostAddr)
	if err != nil {
		t.Fatalf("acquirer: %v", err)
	}
	r.hostAddr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.host.Serve(ctx, clockedListener{ln, &r.hostClock}); close(done) }()
	r.hostStop = func() { cancel(); <-done }
}

// hostDown stops the acquirer: its listener and every connection close, and posd's dials
// are refused (nothing can reach it, so sales may be approved offline).
func (r *xoRig) hostDown() {
	if r.hostStop != nil {
		r.hostStop()
		r.hostStop = nil
	}
}

// pad replaces the PIN pad with a new one running events, once the line has been quiet
// for a moment (posd may still be showing the last sale's result).
func (r *xoRig) pad(t testing.TB, events []padsim.Event) {
	t.Helper()
	if r.padStop != nil {
		r.line.waitQuiet(150*time.Millisecond, 5*time.Second)
		r.padStop()
	}
	if err := r.pair.ClearExclusive(); err != nil {
		t.Fatal(err)
	}
	port, err := serialport.Open(r.pair.B, &serial.Mode{BaudRate: 19200})
	if err != nil {
		t.Fatal(err)
	}
	bdk, _ := hex.DecodeString(demoBDK)
	ksn, _ := dukpt.ParseKSN(demoKSN)
	p, err := padsim.New(&padsim.Script{Events: events}, &padsim.Options{BDK: bdk, KSN: ksn})
	if err != nil {
		t.Fatal(err)
	}
	r.line = &quietPort{rw: port}
	r.line.touch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Serve(ctx, r.line); close(done) }()
	r.padStop = func() { cancel(); <-done; port.Close() }
}

// quietPort is the pad's end of the line, noting when a byte last passed, how often the
// line turned from the host's turn to the pad's (each turn is one round trip on the line),
// and how long the pad took at each turn.
type quietPort struct {
	rw   io.ReadWriter
	last atomic.Int64 // unix nanoseconds
	turnClock
}

func (q *quietPort) touch() { q.last.Store(time.Now().UnixNano()) }

func (q *quietPort) Read(p []byte) (int, error) {
	n, err := q.rw.Read(p)
	if n > 0 {
		q.touch()
		q.read()
	}
	return n, err
}

func (q *quietPort) Write(p []byte) (int, error) {
	q.touch()
	q.wrote()
	return q.rw.Write(p)
}

// turnClock counts the turns of one side of a conversation (a write that follows a read)
// and sums the time from each read to the last write that answered it: the side's own time
// at each turn (an acknowledgement and then an answer count to the answer).
type turnClock struct {
	turns   atomic.Int64 // writes that followed a read
	busy    atomic.Int64 // nanoseconds from a read to the last write that followed it
	mark    atomic.Int64 // unix nanoseconds of the last read, or of a write since
	ownTurn atomic.Bool  // this side wrote last
}

func (c *turnClock) read() {
	c.mark.Store(time.Now().UnixNano())
	c.ownTurn.Store(false)
}

func (c *turnClock) wrote() {
	if !c.ownTurn.Swap(true) {
		c.turns.Add(1)
	}
	now := time.Now().UnixNano()
	if at := c.mark.Swap(now); at != 0 {
		c.busy.Add(now - at)
	}
}

// clockedListener's connections keep their turns on one turnClock (the acquirer's).
type clockedListener struct {
	net.Listener
	clock *turnClock
}

func (l clockedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &clockedConn{Conn: c, clock: l.clock}, nil
}

type clockedConn struct {
	net.Conn
	clock *turnClock
}

func (c *clockedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.clock.read()
	}
	return n, err
}

func (c *clockedConn) Write(p []byte) (int, error) {
	c.clock.wrote()
	return c.Conn.Write(p)
}

func (q *quietPort) waitQuiet(quiet, max time.Duration) {
	for deadline := time.Now().Add(max); time.Now().Before(deadline); {
		if time.Since(time.Unix(0, q.last.Load())) >= quiet {
			return
		}
		time.Sleep(quiet / 5)
	}
}

// start runs posd with env added to its environment and waits until it answers (false:
// it exited first, as a failpoint makes it).
func (r *xoRig) start(t testing.TB, env ...string) bool {
	t.Helper()
	os.Remove(r.sock)
	if err := r.pair.ClearExclusive(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(r.bin, "run", "--config", r.cfg)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.posd, r.posdDone = cmd, done
	r.posdPID.Store(int64(cmd.Process.Pid))
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		select {
		case <-done:
			return false
		default:
		}
		if resp, err := r.client.Get("http://posd/v1/status"); err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("posd did not become ready:\n%s", tail(r.logs.String()))
	return false
}

// running reports whether posd is up.
func (r *xoRig) running() bool {
	if r.posd == nil {
		return false
	}
	select {
	case <-r.posdDone:
		return false
	default:
		return true
	}
}

// killPosd sends SIGKILL to posd; safe from the host's hooks.
func (r *xoRig) killPosd() {
	if pid := r.posdPID.Swap(0); pid > 0 {
		syscall.Kill(int(pid), syscall.SIGKILL)
	}
}

// waitExit waits for posd to end (killed, or by a failpoint).
func (r *xoRig) waitExit(t testing.TB, why string) {
	t.Helper()
	select {
	case <-r.posdDone:
		r.posdPID.Store(0)
	case <-time.After(20 * time.Second):
		t.Fatalf("posd did not exit (%s):\n%s", why, tail(r.logs.String()))
	}
}

// stop ends posd with SIGTERM.
func (r *xoRig) stop(t testing.TB) {
	t.Helper()
	if !r.running() {
		return
	}
	r.posd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.posdDone:
	case <-time.After(10 * time.Second):
		r.posd.Process.Kill()
		<-r.posdDone
		t.Errorf("posd did not stop on SIGTERM:\n%s", tail(r.logs.String()))
	}
	r.posdPID.Store(0)
}

// --- the till --------------------------------------------------------------------------

// svc returns a new ServiceID (nexo: 1 to 10 characters, unique per SaleID).
func (r *xoRig) svc() string {
	r.svcN++
	return "S" + strconv.Itoa(r.svcN)
}

func (r *xoRig) header(category, serviceID string) string {
	return fmt.Sprintf(`"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":%q,"MessageType":"Request","SaleID":%q,"ServiceID":%q,"POIID":%q}`,
		category, xoSaleID, serviceID, r.poiid)
}

func (r *xoRig) paymentBody(serviceID, txn, amount string) string {
	return fmt.Sprintf(`{"SaleToPOIRequest":{%s,"PaymentRequest":{"SaleData":{"SaleTransactionID":{"TransactionID":%q}},"PaymentTransaction":{"AmountsReq":{"Currency":"EUR","RequestedAmount":%s}}}}}`,
		r.header("Payment", serviceID), txn, amount)
}

// statusBody asks for a payment by its ServiceID (ref "S…") or, as posd's extension, by
// its SaleTransactionID (byTxn).
func (r *xoRig) statusBody(serviceID, ref string, byTxn bool) string {
	mr := fmt.Sprintf(`{"MessageCategory":"Payment","SaleID":%q,"ServiceID":%q}`, xoSaleID, ref)
	if byTxn {
		mr = fmt.Sprintf(`{"SaleTransactionID":{"TransactionID":%q}}`, ref)
	}
	return fmt.Sprintf(`{"SaleToPOIRequest":{%s,"TransactionStatusRequest":{"MessageReference":%s}}}`, r.header("TransactionStatus", serviceID), mr)
}

func (r *xoRig) abortBody(serviceID, ref string) string {
	return fmt.Sprintf(`{"SaleToPOIRequest":{%s,"AbortRequest":{"MessageReference":{"MessageCategory":"Payment","SaleID":%q,"ServiceID":%q},"AbortReason":"MerchantAbort"}}}`,
		r.header("Abort", serviceID), xoSaleID, ref)
}

func (r *xoRig) voidBody(serviceID, poiTxnID string) string {
	return fmt.Sprintf(`{"SaleToPOIRequest":{%s,"ReversalRequest":{"OriginalPOITransaction":{"POITransactionID":{"TransactionID":%q}},"ReversalReason":"MerchantCancel"}}}`,
		r.header("Reversal", serviceID), poiTxnID)
}

// xoReply is posd's answer to one till request.
type xoReply struct {
	HTTP int
	Body string
	Env  struct {
		SaleToPOIResponse struct {
			PaymentResponse           json.RawMessage
			ReversalResponse          *struct{ Response xoResult }
			AbortResponse             *struct{ Response xoResult }
			TransactionStatusResponse *struct {
				Response                xoResult
				RepeatedMessageResponse *struct {
					RepeatedResponseMessageBody struct{ PaymentResponse json.RawMessage }
				}
			}
		}
	}
}

type xoResult struct{ Result, ErrorCondition, AdditionalResponse string }

func (x xoResult) String() string {
	return fmt.Sprintf("%s/%s (%s)", x.Result, x.ErrorCondition, x.AdditionalResponse)
}

// xoPayment is what the test reads of a PaymentResponse; Raw is all of it.
type xoPayment struct {
	Response xoResult
	POIData  struct {
		POITransactionID struct{ TransactionID string }
	}
	Raw json.RawMessage `json:"-"`
}

func decodeXOPayment(raw json.RawMessage) (xoPayment, bool) {
	var p xoPayment
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return p, false
	}
	p.Raw = raw
	return p, true
}

// payment is the reply's PaymentResponse (the test fails without one).
func (x xoReply) payment(t testing.TB) xoPayment {
	t.Helper()
	p, ok := decodeXOPayment(x.Env.SaleToPOIResponse.PaymentResponse)
	if !ok {
		t.Fatalf("no PaymentResponse in HTTP %d %s", x.HTTP, x.Body)
	}
	return p
}

// try posts body to posd's till API with client.
func (r *xoRig) try(client *http.Client, body string) (xoReply, error) {
	return tryAt(client, "http://posd/nexo", body)
}

// tryAt posts body to url with client and decodes the answer as a till does.
func tryAt(client *http.Client, url, body string) (xoReply, error) {
	var x xoReply
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return x, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return x, err
	}
	x.HTTP, x.Body = resp.StatusCode, string(b)
	if x.HTTP == http.StatusOK {
		if err := json.Unmarshal(b, &x.Env); err != nil {
			return x, fmt.Errorf("answer is not a SaleToPOIResponse: %v: %s", err, b)
		}
	}
	return x, nil
}

func (r *xoRig) post(t testing.TB, body string) xoReply {
	t.Helper()
	x, err := r.try(r.client, body)
	if err != nil {
		t.Fatalf("till request: %v\nposd's log:\n%s", err, tail(r.logs.String()))
	}
	return x
}

func (r *xoRig) pay(t testing.TB, serviceID, txn, amount string) xoReply {
	t.Helper()
	return r.post(t, r.paymentBody(serviceID, txn, amount))
}

// status asks TransactionStatus about a payment (see statusBody).
func (r *xoRig) status(t testing.TB, ref string, byTxn bool) (xoResult, xoPayment, bool) {
	t.Helper()
	x := r.post(t, r.statusBody(r.svc(), ref, byTxn))
	ts := x.Env.SaleToPOIResponse.TransactionStatusResponse
	if x.HTTP != http.StatusOK || ts == nil {
		t.Fatalf("TransactionStatus %s: HTTP %d %s", ref, x.HTTP, x.Body)
	}
	return statusOf(t, ref, x)
}

// inProgress reports whether TransactionStatus says the payment runs (false on any other
// answer, an error included).
func (r *xoRig) inProgress(ref string) bool {
	x, err := r.try(r.client, r.statusBody(r.svc(), ref, false))
	ts := x.Env.SaleToPOIResponse.TransactionStatusResponse
	return err == nil && ts != nil && ts.Response.ErrorCondition == "InProgress"
}

func statusOf(t testing.TB, ref string, x xoReply) (xoResult, xoPayment, bool) {
	t.Helper()
	ts := x.Env.SaleToPOIResponse.TransactionStatusResponse
	if ts.RepeatedMessageResponse == nil {
		return ts.Response, xoPayment{}, false
	}
	p, ok := decodeXOPayment(ts.RepeatedMessageResponse.RepeatedResponseMessageBody.PaymentResponse)
	if !ok {
		t.Fatalf("TransactionStatus %s: RepeatedMessageResponse without a PaymentResponse: %s", ref, x.Body)
	}
	return ts.Response, p, true
}

// waitDone polls TransactionStatus until the payment is no longer in progress and returns
// the stored answer.
func (r *xoRig) waitDone(t testing.TB, ref string, byTxn bool) xoPayment {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		res, p, ok := r.status(t, ref, byTxn)
		if res.Result == "Failure" && res.ErrorCondition == "InProgress" {
			continue
		}
		if res.Result != "Success" || !ok {
			t.Fatalf("TransactionStatus %s: %v, want Success with the stored answer", ref, res)
		}
		return p
	}
	t.Fatalf("TransactionStatus %s: still in progress after 20s", ref)
	return xoPayment{}
}

// samePayment checks that a repeated request got the first request's PaymentResponse.
func samePayment(t testing.TB, what string, first, again xoPayment) {
	t.Helper()
	var a, b any
	json.Unmarshal(first.Raw, &a)
	json.Unmarshal(again.Raw, &b)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("%s: the answer differs from the first: POITransactionID %q %v, first %q %v\nfirst: %s\nthis:  %s",
			what, again.POIData.POITransactionID.TransactionID, again.Response, first.POIData.POITransactionID.TransactionID, first.Response, first.Raw, again.Raw)
	}
}

func wantResult(t testing.TB, what string, got xoResult, result, condition string) {
	t.Helper()
	if got.Result != result || got.ErrorCondition != condition {
		t.Errorf("%s: %v, want %s/%s", what, got, result, condition)
	}
}

// --- posd's journal and the host's charges ----------------------------------------------

// getJSON reads one of posd's admin resources.
func (r *xoRig) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := r.client.Get("http://posd" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// waitDrained waits until posd's store-and-forward queue is empty.
func (r *xoRig) waitDrained(t testing.TB) {
	t.Helper()
	for i := 0; ; i++ {
		if resp, err := r.client.Post("http://posd/v1/saf/flush", "application/json", strings.NewReader(`{"who":"xo-test"}`)); err == nil {
			resp.Body.Close()
		}
		var items []store.ItemView
		r.getJSON(t, "/v1/saf", &items)
		if len(items) == 0 {
			return
		}
		if i > 600 {
			t.Fatalf("the queue never drained: %+v\n%s", items, tail(r.logs.String()))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ledger is posd's journal and queue beside the host's charges, live.
type ledger struct {
	recs    []store.Record
	stans   map[uint32]store.Record // every STAN a record's messages used: intent, advice, queued
	charges []hostsim.Charge
}

func (r *xoRig) ledger(t testing.TB) ledger {
	t.Helper()
	var l ledger
	r.getJSON(t, "/v1/journal", &l.recs)
	var items []store.ItemView
	r.getJSON(t, "/v1/saf", &items)
	queued := map[store.TxnID][]store.Item{}
	for _, it := range items {
		queued[store.TxnID(it.TxnID)] = append(queued[store.TxnID(it.TxnID)], store.Item{Kind: store.Kind(it.Kind), STAN: it.STAN})
	}
	l.stans = recordSTANs(l.recs, queued)
	l.charges = r.host.Charges()
	return l
}

// recordSTANs maps every STAN of every record's messages that may book a charge (the
// authorization and the advice) to the record.
func recordSTANs(recs []store.Record, queued map[store.TxnID][]store.Item) map[uint32]store.Record {
	m := map[uint32]store.Record{}
	for _, rec := range recs {
		m[rec.Intent.STAN] = rec
		if rec.Outcome != nil && rec.Outcome.Advised != nil {
			m[rec.Outcome.Advised.STAN] = rec
		}
		for _, it := range queued[rec.ID] {
			if it.Kind == store.KindAdvice {
				m[it.STAN] = rec
			}
		}
	}
	return m
}

// records returns the journal's records of one till transaction.
func (l ledger) records(txn string) []store.Record {
	var out []store.Record
	for _, rec := range l.recs {
		if rec.Intent.SaleID == xoSaleID && rec.Intent.SaleTransactionID == txn {
			out = append(out, rec)
		}
	}
	return out
}

// charges returns the host's charges booked for one till transaction, standing or not.
func (l ledger) chargesOf(tid, txn string) []hostsim.Charge {
	var out []hostsim.Charge
	for _, c := range l.charges {
		rec, ok := l.stans[c.STAN]
		if c.TerminalID == tid && ok && rec.Intent.SaleID == xoSaleID && rec.Intent.SaleTransactionID == txn {
			out = append(out, c)
		}
	}
	return out
}

// wantCharged checks, with posd's queue drained, how many charges stand at the host for
// each till transaction (1: the customer paid once; 0: nothing is charged).
func (r *xoRig) wantCharged(t testing.TB, want map[string]int) {
	t.Helper()
	r.waitDrained(t)
	l := r.ledger(t)
	for _, c := range l.charges {
		if _, ok := l.stans[c.STAN]; c.TerminalID == r.tid && c.Charged() && !ok {
			t.Errorf("the host holds a charge posd's journal does not know (its advice or sale was dropped from the journal?): %v", c)
		}
	}
	for txn, n := range want {
		got := 0
		var all []string
		for _, c := range l.chargesOf(r.tid, txn) {
			all = append(all, c.String())
			if c.Charged() {
				got++
			}
		}
		if got != n {
			t.Errorf("till transaction %s: %d charges stand at the host, want %d; its journal records: %+v; the host's charges for it:\n  %s",
				txn, got, n, l.records(txn), strings.Join(all, "\n  "))
		}
	}
}

// checkExactlyOnce is the test's final account, over the journal (posd stopped, its queue
// drained) and the host's charges: every charge standing at the host belongs to a sale
// posd calls completed (approved online or offline, not voided, not reversed); no sale has
// two; and every completed sale has exactly one.
func checkExactlyOnce(t testing.TB, v journalView, charges []hostsim.Charge, tid string) {
	t.Helper()
	if len(v.queued) != 0 {
		t.Errorf("the queue is not empty after the final drain: %d transactions", len(v.queued))
	}
	stans := recordSTANs(v.recs, v.queued)
	standing := map[store.TxnID][]hostsim.Charge{}
	for _, c := range charges {
		if c.TerminalID != tid || !c.Charged() {
			continue
		}
		rec, ok := stans[c.STAN]
		if !ok {
			t.Errorf("the host holds a charge posd's journal does not know: %v", c)
			continue
		}
		standing[rec.ID] = append(standing[rec.ID], c)
	}
	completed, dup := 0, 0
	byTill := map[[2]string][]store.TxnID{}
	for _, rec := range v.recs {
		if completedSale(rec) {
			k := [2]string{rec.Intent.SaleID, rec.Intent.SaleTransactionID}
			byTill[k] = append(byTill[k], rec.ID)
		}
	}
	for k, ids := range byTill {
		if len(ids) > 1 {
			t.Errorf("till %s transaction %s was completed %d times, by transactions %v: one till sale, one charge", k[0], k[1], len(ids), ids)
		}
	}
	for _, rec := range v.recs {
		n := len(standing[rec.ID])
		want := 0
		if completedSale(rec) {
			want = 1
			completed++
			if rec.Outcome.State == store.StateApprovedOffline && rec.Outcome.Advised == nil {
				t.Errorf("offline approval %d (till %s) was never advised", rec.ID, rec.Intent.SaleTransactionID)
			}
		}
		if n > 1 {
			dup++
		}
		if n != want {
			var cs []string
			for _, c := range standing[rec.ID] {
				cs = append(cs, c.String())
			}
			state := "open"
			if rec.Outcome != nil {
				state = fmt.Sprintf("%s voided=%v reversed=%v advised=%v", rec.Outcome.State, rec.Outcome.Voided != nil, rec.Outcome.Reversed != nil, rec.Outcome.Advised != nil)
			}
			t.Errorf("transaction %d (till %s, %d minor): %d charges stand at the host, want %d (journal: %s):\n  %s",
				rec.ID, rec.Intent.SaleTransactionID, rec.Intent.AmountMinor, n, want, state, strings.Join(cs, "\n  "))
		}
	}
	t.Logf("final account: %d sales completed, %d charges standing at the host, %d transactions charged more than once, %d journal records",
		completed, countStanding(charges, tid), dup, len(v.recs))
}

// completedSale: posd told the till the customer paid, and nothing undid it.
func completedSale(rec store.Record) bool {
	o := rec.Outcome
	if o == nil || o.Voided != nil {
		return false
	}
	switch o.State {
	case store.StateApproved:
		return o.Reversed == nil
	case store.StateApprovedOffline:
		return true // a Reversed here undid a timed-out authorization, not the advice
	}
	return strings.Contains(string(o.State), "partial")
}

func countStanding(charges []hostsim.Charge, tid string) int {
	n := 0
	for _, c := range charges {
		if c.TerminalID == tid && c.Charged() {
			n++
		}
	}
	return n
}

// rawPost writes a payment request on a new connection to posd and hangs up after wait,
// before the answer: a till whose connection was cut.
func (r *xoRig) rawPost(t testing.TB, body string, wait time.Duration) {
	t.Helper()
	c, err := net.Dial("unix", r.sock)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST /nexo HTTP/1.1\r\nHost: posd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(wait)
	c.Close()
}
