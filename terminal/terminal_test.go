package terminal_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinpad"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

const (
	testBDK = "0123456789ABCDEFFEDCBA9876543210"
	testKSN = "FFFF9876543210E00000"
	// The public AES-128 BDK and initial KSN of the ANSI X9.24-3-2017 supplement.
	testAESBDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	testAESKSN = "FFFF9876543210E000000000" // letters keep it from looking like a PAN to the leak scan
	goodT2     = "4761739001010010=30121060000000000"
	goodT1     = "B4761739001010010^TEST/CARD^3012106000000000000"
)

var eur = func() money.Currency { c, _ := money.LookupCurrency("EUR"); return c }()

func swipe(t1, t2 string) padsim.Event {
	return padsim.Event{Swipe: &padsim.Swipe{Track1: t1, Track2: t2}}
}
func pin(p string) padsim.Event { return padsim.Event{PIN: p} }

// rig is a terminal wired to real parts: a PIN pad simulator over a real pty pair, the
// acquirer simulator over real TCP, and a real bbolt file.
type rig struct {
	term *terminal.Terminal
	st   *store.Store
	host *hostsim.Server
	log  *strings.Builder
	logm *sync.Mutex
	addr string
	hopt hostsim.Options
	ctx  context.Context
	sent *recorder
	n    atomic.Int64 // sales run: each gets a till transaction id of its own
	// what New was given, for a test that restarts the terminal on the same devices
	topts terminal.Options
	pp    *terminal.PINPad
	pins  *hsm.Module
	pad   *padsim.Pad
}

// recorder is the acquirer link with a record of every request sent through it.
type recorder struct {
	terminal.Acquirer
	mu   sync.Mutex
	msgs []*iso8583.Message
}

func (r *recorder) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	return r.Acquirer.Send(ctx, m)
}

// field returns field id of the n-th request sent.
func (r *recorder) field(t *testing.T, n, id int) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= len(r.msgs) {
		t.Fatalf("only %d requests sent", len(r.msgs))
	}
	if id == 55 {
		b, _ := r.msgs[n].GetBytes(55)
		return fmt.Sprintf("%X", b)
	}
	v, _ := r.msgs[n].GetString(id)
	return v
}

// startHost starts the acquirer simulator on the rig's address (for rigs made with later).
func (r *rig) startHost(t *testing.T) {
	t.Helper()
	var err error
	r.host, err = hostsim.NewServer(r.hopt)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	go r.host.Serve(r.ctx, ln)
}

type hostFaults struct {
	addr    string // use this acquirer address instead of starting the simulator
	drop    bool   // the simulator never answers
	dropFn  func(*iso8583.Message) bool
	offline terminal.OfflinePolicy
	sealer  store.Sealer
	// later: reserve an address, start no simulator; rig.startHost starts it there.
	later bool
	// aes gives the pad an AES-128 DUKPT key (the public X9.24-3 test BDK and KSN), tells
	// the hsm module so, and gives the host the same BDK.
	aes bool
	// dialect, when set, is the acquirer link's dialect on both ends and the terminal's Spec.
	dialect *iso8583.Dialect
	// cards replaces the simulator's card table; corrupt is its Corrupt hook.
	cards   []hostsim.Card
	corrupt func(req *iso8583.Message, wire []byte) []byte
	// delay and override are the simulator's Delay and Override hooks; opts changes the
	// terminal's options.
	delay    func(req *iso8583.Message) time.Duration
	override func(req *iso8583.Message) string
	opts     func(*terminal.Options)
	dual     bool // Options.DualMessage: 0100 authorizations, completed by 0220
	lose     int  // the simulator's LoseEvery
	// pad changes the simulated pad's options (a contactless reader, its limits).
	pad func(*padsim.Options)
	// wrap, when set, is given the recorded acquirer link and returns what the terminal
	// gets (a router of backup hosts over it).
	wrap func(terminal.Acquirer) terminal.Acquirer
}

func newRig(t *testing.T, events []padsim.Event, faults hostFaults) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bdk, _ := hex.DecodeString(testBDK)
	ksn, _ := dukpt.ParseKSN(testKSN)

	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	r := &rig{log: new(strings.Builder), logm: new(sync.Mutex)}
	logf := func(f string, a ...any) {
		r.logm.Lock()
		fmt.Fprintf(r.log, f+"\n", a...)
		r.logm.Unlock()
	}
	padOpts := &padsim.Options{BDK: bdk, KSN: ksn, Logf: logf}
	aesBDK, _ := hex.DecodeString(testAESBDK)
	if faults.aes {
		aesKSN, _ := dukpt.ParseAESKSN(testAESKSN)
		padOpts = &padsim.Options{BDK: aesBDK, KeyType: dukpt.KeyAES128, AESKSN: aesKSN, Logf: logf}
	}
	if faults.pad != nil {
		faults.pad(padOpts)
	}
	pad, err := padsim.New(&padsim.Script{Events: events}, padOpts)
	if err != nil {
		t.Fatal(err)
	}
	padPort, err := serial.Open(pair.B, &serial.Mode{BaudRate: 19200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { padPort.Close() })
	go pad.Serve(ctx, padPort)
	r.pad = pad

	r.ctx = ctx
	r.hopt = hostsim.Options{BDK: bdk, AESBDK: aesBDK, Dialect: faults.dialect, Logf: logf, Drop: func(m *iso8583.Message) bool {
		return faults.drop || (faults.dropFn != nil && faults.dropFn(m))
	}, Cards: faults.cards, Corrupt: faults.corrupt, Delay: faults.delay, Override: faults.override, LoseEvery: faults.lose}
	addr := faults.addr
	switch {
	case addr != "":
	case faults.later:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	default:
		r.host, err = hostsim.NewServer(r.hopt)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go r.host.Serve(ctx, ln)
		addr = ln.Addr().String()
	}
	r.addr = addr

	r.st, err = store.Open(filepath.Join(t.TempDir(), "posd.db"), &store.Options{Sealer: faults.sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	client, err := abecs.Dial(pair.A, 19200, &abecs.Options{ACKTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	pp := terminal.NewPINPad(client)
	var ppOpts *pinpad.Options
	if faults.aes {
		ppOpts = &pinpad.Options{Algorithms: map[string]hsm.Algorithm{"pin": hsm.AES128}}
	}
	pins, err := hsm.New(pinpad.New(pp, ppOpts), nil)
	if err != nil {
		t.Fatal(err)
	}
	var spec *iso8583.MessageSpec
	if faults.dialect != nil {
		spec = faults.dialect.Spec
	}
	acq, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr, Logf: logf, ReconnectMin: time.Millisecond, ReconnectMax: 5 * time.Millisecond,
		Dialect: faults.dialect})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acq.Close() })
	// Debug: checkNoCardData then reads the steps' lines too, not only what info shows.
	logger := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) { logf("%s", b) }), &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.sent = &recorder{Acquirer: acq}
	r.topts = terminal.Options{
		TerminalID: "TERM0001", MerchantID: "MERCHANT0001", Currency: eur,
		HostTimeout: time.Second, CardTimeout: 5 * time.Second, Logger: logger,
		Offline: faults.offline, Spec: spec, PINKeyAES: faults.aes, DualMessage: faults.dual,
		Forward: terminal.ForwardOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, MaxAttempts: 3, SendTimeout: 300 * time.Millisecond},
	}
	if faults.opts != nil {
		faults.opts(&r.topts)
	}
	r.pp, r.pins = pp, pins
	var link terminal.Acquirer = r.sent
	if faults.wrap != nil {
		link = faults.wrap(r.sent)
	}
	r.term, err = terminal.New(pp, pp, pins, link, r.st, r.topts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) { w(append([]byte(nil), b...)); return len(b), nil }

func (r *rig) sale(t *testing.T, minor int64) terminal.SaleResult {
	t.Helper()
	id := fmt.Sprintf("%s-%d", t.Name(), r.n.Add(1))
	res, err := r.term.Sale(context.Background(), terminal.SaleRequest{SaleID: "TILL", SaleTransactionID: id, Amount: money.Amount{Minor: minor, Currency: eur}})
	if err != nil {
		t.Fatalf("Sale: %v", err)
	}
	return res
}

func (r *rig) records(t *testing.T) []store.Record {
	t.Helper()
	var recs []store.Record
	if err := r.st.Records(context.Background(), func(rec store.Record) error { recs = append(recs, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkNoCardData fails if the logs hold a full PAN, a track or an encrypted PIN block.
func (r *rig) checkNoCardData(t *testing.T, extra ...string) {
	t.Helper()
	r.logm.Lock()
	logs := r.log.String()
	r.logm.Unlock()
	if pans := card.ScanPANs(logs); len(pans) > 0 {
		t.Errorf("logs carry full PANs: %v", pans)
	}
	for _, s := range append([]string{"=3012106", "^TEST/CARD^"}, extra...) {
		if strings.Contains(strings.ToUpper(logs), strings.ToUpper(s)) {
			t.Errorf("logs carry %q", s)
		}
	}
}

// pinBlocks returns the encrypted blocks the simulator produces for its first n PINs.
func pinBlocks(t *testing.T, pan string, pins ...string) []string {
	t.Helper()
	bdk, _ := hex.DecodeString(testBDK)
	ksn, _ := dukpt.ParseKSN(testKSN)
	ipek, _ := dukpt.TDESInitialKey(bdk, ksn)
	o, _ := dukpt.NewOriginator(ipek, ksn)
	var out []string
	for _, p := range pins {
		key, _, err := o.NextPINKey()
		if err != nil {
			t.Fatal(err)
		}
		blk := formatZero(t, p, pan)
		out = append(out, hex.EncodeToString(encrypt(t, key, blk)))
	}
	return out
}

func TestSaleApproved(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{})
	res := r.sale(t, 1250)
	if !res.Approved || res.Condition != terminal.CondNone || res.ResponseCode != "00" || len(res.ApprovalCode) != 6 || res.RRN == "" {
		t.Fatalf("result = %+v", res)
	}
	if res.MaskedPAN != "476173******0010" || res.STAN == 0 || res.TxnID == 0 || res.EntryMode != "021" {
		t.Errorf("result = %+v", res)
	}
	recs := r.records(t)
	if len(recs) != 1 || recs[0].Outcome == nil || recs[0].Outcome.State != store.StateApproved || recs[0].Intent.STAN != res.STAN || recs[0].Intent.AmountMinor != 1250 {
		t.Fatalf("journal = %+v", recs)
	}
	ledger := r.host.Ledger()
	if len(ledger) != 1 || ledger[0].STAN != res.STAN || ledger[0].AmountMinor != 1250 || ledger[0].TerminalID != "TERM0001" {
		t.Errorf("ledger = %+v", ledger)
	}
	receipt := strings.Join(res.Receipt.Customer, "\n")
	if !strings.Contains(receipt, "476173******0010") || !strings.Contains(receipt, "APPROVED") || !strings.Contains(receipt, "12.50 EUR") {
		t.Errorf("receipt:\n%s", receipt)
	}
	r.checkNoCardData(t, pinBlocks(t, "4761739001010010", "1234")...)
}

// TestSaleOneLineAtInfo: at info an approved sale writes one line (a write, and the
// formatting, per step was a tenth of posd's CPU per sale), the outcome's, and it says
// what the steps' lines said: the sale, amount, masked card, transaction, STAN, state.
func TestSaleOneLineAtInfo(t *testing.T) {
	var mu sync.Mutex
	var info strings.Builder
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{opts: func(o *terminal.Options) {
		o.Logger = slog.New(slog.NewTextHandler(writerFunc(func(b []byte) {
			mu.Lock()
			info.Write(b)
			mu.Unlock()
		}), nil))
	}})
	res := r.sale(t, 1250)
	if !res.Approved {
		t.Fatalf("result = %+v", res)
	}
	mu.Lock()
	lines := strings.Split(strings.TrimSuffix(info.String(), "\n"), "\n")
	mu.Unlock()
	if len(lines) != 1 {
		t.Fatalf("%d lines at info for one approved sale, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`msg="outcome journaled"`, "sale=" + t.Name() + "-1", `amount="12.50 EUR"`, "pan=476173******0010",
		fmt.Sprintf("txn=%d", res.TxnID), fmt.Sprintf("stan=%d", res.STAN), "mti=0200", "state=approved", "response_code=00"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the sale's line lacks %s: %s", want, lines[0])
		}
	}
}

func TestSaleWrongPIN(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("9999")}, hostFaults{})
	res := r.sale(t, 3000)
	if res.Approved || res.Condition != terminal.CondWrongPIN || res.ResponseCode != "55" {
		t.Fatalf("result = %+v", res)
	}
	recs := r.records(t)
	if len(recs) != 1 || recs[0].Outcome.State != store.StateDeclined || recs[0].Outcome.ResponseCode != "55" {
		t.Fatalf("journal = %+v", recs)
	}
	if len(r.host.Ledger()) != 0 {
		t.Error("a wrong-PIN sale reached the ledger")
	}
	r.checkNoCardData(t, pinBlocks(t, "4761739001010010", "9999")...)
}

func TestSaleRefusedBeforeOnline(t *testing.T) {
	for _, tc := range []struct {
		name, t2 string
		want     string
	}{
		{"expired", "4761739001010010=22121010000000000", "expired"},
		{"bad luhn", "4761739001010011=30121060000000000", "Luhn"},
		{"atm only", "4761739001010010=30121030000000000", "service code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, []padsim.Event{swipe("", tc.t2)}, hostFaults{})
			res := r.sale(t, 799)
			if res.Approved || res.Condition != terminal.CondRefusal || !strings.Contains(res.Message, tc.want) {
				t.Fatalf("result = %+v", res)
			}
			if res.STAN != 0 || res.TxnID != 0 {
				t.Errorf("a refused card took a STAN or a journal record: %+v", res)
			}
			if recs := r.records(t); len(recs) != 0 {
				t.Errorf("journal = %+v", recs)
			}
			if len(r.host.Ledger()) != 0 {
				t.Error("refused card reached the acquirer")
			}
			r.checkNoCardData(t)
		})
	}
}

func TestSaleAcquirerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{addr: addr})
	res := r.sale(t, 1250)
	if res.Approved || res.Condition != terminal.CondUnreachableHost || !strings.Contains(res.Message, "nothing was charged") {
		t.Fatalf("result = %+v", res)
	}
	recs := r.records(t)
	if len(recs) != 1 || recs[0].Outcome == nil || recs[0].Outcome.State != store.StateNotSent {
		t.Fatalf("journal = %+v (want one not-sent record, nothing half-recorded)", recs)
	}
	if open, _ := r.st.Unfinished(context.Background()); len(open) != 0 {
		t.Errorf("unfinished records left: %+v", open)
	}
}

func TestSaleHostNeverAnswers(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{drop: true})
	res := r.sale(t, 1250)
	if res.Approved || res.Condition != terminal.CondInProgress || !strings.Contains(res.Message, "reversed") {
		t.Fatalf("result = %+v", res)
	}
	recs := r.records(t)
	if len(recs) != 1 || recs[0].Outcome.State != store.StateUnknown {
		t.Fatalf("journal = %+v", recs)
	}
}

func TestSaleCancelledOnPad(t *testing.T) {
	r := newRig(t, []padsim.Event{{Cancel: true}}, hostFaults{})
	res := r.sale(t, 1250)
	if res.Condition != terminal.CondCancel {
		t.Fatalf("result = %+v", res)
	}
	r2 := newRig(t, []padsim.Event{swipe(goodT1, goodT2), {Cancel: true}}, hostFaults{})
	res = r2.sale(t, 1250)
	if res.Condition != terminal.CondCancel || !strings.Contains(res.Message, "PIN") {
		t.Fatalf("cancel at PIN: result = %+v", res)
	}
	if recs := r2.records(t); len(recs) != 0 {
		t.Errorf("journal = %+v", recs)
	}
}

func TestSaleValidationAndBusy(t *testing.T) {
	r := newRig(t, []padsim.Event{{Delay: 300 * time.Millisecond}, swipe(goodT1, goodT2), pin("1234")}, hostFaults{})
	ctx := context.Background()
	usd, _ := money.LookupCurrency("USD")
	for _, req := range []terminal.SaleRequest{
		{Amount: money.Amount{Minor: 0, Currency: eur}},
		{Amount: money.Amount{Minor: -5, Currency: eur}},
		{Amount: money.Amount{Minor: 100, Currency: usd}},
	} {
		if _, err := r.term.Sale(ctx, req); !errors.Is(err, terminal.ErrInvalidSale) {
			t.Errorf("Sale(%+v) err = %v, want ErrInvalidSale", req.Amount, err)
		}
	}
	done := make(chan terminal.SaleResult)
	go func() { done <- r.sale(t, 100) }()
	time.Sleep(100 * time.Millisecond)
	if _, err := r.term.Sale(ctx, terminal.SaleRequest{Amount: money.Amount{Minor: 100, Currency: eur}}); !errors.Is(err, terminal.ErrBusy) {
		t.Errorf("second sale err = %v, want ErrBusy", err)
	}
	if res := <-done; !res.Approved {
		t.Errorf("first sale = %+v", res)
	}
}

func TestSTANsAreUniqueAcrossSales(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("9999")}, hostFaults{})
	seen := map[uint32]bool{}
	for i := 0; i < 3; i++ {
		res := r.sale(t, 100)
		if res.STAN == 0 || seen[res.STAN] {
			t.Fatalf("sale %d STAN %d repeats or is zero", i, res.STAN)
		}
		seen[res.STAN] = true
	}
}
