package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/access"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/nexo"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// The demo's keys are the public test keys of ANSI X9.24-1 (TDES) and of the ANSI
// X9.24-3-2017 supplement (AES-128): never use them for real cards.
const (
	demoBDK    = "0123456789ABCDEFFEDCBA9876543210"
	demoKSN    = "FFFF9876543210E00000"
	demoAESBDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	demoAESKSN = "FFFF9876543210E000000000"
)

// demoSale is one scripted sale and the outcome the demo expects.
type demoSale struct {
	title     string
	amount    string
	events    []padsim.Event
	result    string // nexo Response.Result
	condition string // nexo ErrorCondition
	online    bool   // whether it must reach the acquirer
}

func demoSales() []demoSale {
	swipe := func(t1, t2 string) padsim.Event {
		return padsim.Event{Swipe: &padsim.Swipe{Track1: t1, Track2: t2}}
	}
	pin := func(p string) padsim.Event { return padsim.Event{PIN: p} }
	return []demoSale{
		{
			title: "approved", amount: "12.50",
			events: []padsim.Event{swipe("B4761739001010010^DEMO/APPROVED^3012106000000000000", "4761739001010010=30121060000000000"), pin("1234")},
			result: "Success", online: true,
		},
		{
			title: "declined: wrong PIN", amount: "30.00",
			events: []padsim.Event{swipe("B4761739001010010^DEMO/WRONG PIN^3012106000000000000", "4761739001010010=30121060000000000"), pin("4321")},
			result: "Failure", condition: "WrongPIN", online: true,
		},
		{
			title: "expired card, refused before going online", amount: "7.99",
			events: []padsim.Event{swipe("B5413330089020011^DEMO/EXPIRED^2212101000000000000", "5413330089020011=22121010000000000")},
			result: "Failure", condition: "Refusal", online: false,
		},
		{
			title: "tap under the contactless CVM limit (50.00): no PIN", amount: "9.90",
			events: []padsim.Event{tap(padsim.Tap{FormFactor: "20700000"})},
			result: "Success", online: true,
		},
		{
			title: "tap above the CVM limit: online PIN", amount: "75.00",
			events: []padsim.Event{tap(padsim.Tap{}), pin("1234")},
			result: "Success", online: true,
		},
		{
			title: "tap above the contactless limit (100.00): the pad says insert, the chip pays", amount: "150.00",
			events: []padsim.Event{tap(padsim.Tap{}), {Insert: &padsim.Chip{PAN: "4761739001010010"}}},
			result: "Success", online: true,
		},
	}
}

// tap is a contactless tap of the demo's approving card.
func tap(t padsim.Tap) padsim.Event {
	t.PAN = "4761739001010010"
	return padsim.Event{Tap: &t}
}

// demoCtlsLimits are the simulated pad's contactless limits in the demo, in cents.
var demoCtlsLimits = padsim.CtlsLimits{Transaction: 100_00, CVM: 50_00}

// lineWriter prefixes each line written to it and serialises writers.
type lineWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	pfx string
}

func (l lineWriter) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(fmt.Sprintf(format, a...), "\n"), "\n") {
		fmt.Fprintf(l.w, "%-14s %s\n", l.pfx, line)
	}
}

func (l lineWriter) Write(p []byte) (int, error) {
	l.printf("%s", p)
	return len(p), nil
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("posd demo", flag.ContinueOnError)
	flags.SetOutput(stderr)
	acqAddr := flags.String("acquirer", "", "send the demo's traffic to this acquirer (HOST:PORT) instead of the built-in simulator; it must use the ANSI test BDK")
	kind := flags.String("dukpt", DUKPTTDES, "the simulated pad's PIN key: tdes (ISO 9564 format 0 in an 8-byte field 52) or\naes (AES-128 DUKPT, format 4 in the 16-byte field 52 of the shipped dialect aes-pin.json)")
	if err := flags.Parse(args); err != nil {
		return errUsage
	}
	if flags.NArg() != 0 {
		fmt.Fprintf(stderr, "posd demo: unexpected argument %q\n", flags.Arg(0))
		return errUsage
	}
	if *kind != DUKPTTDES && *kind != DUKPTAES {
		fmt.Fprintf(stderr, "posd demo: --dukpt %q is not tdes or aes\n", *kind)
		return errUsage
	}
	mu := new(sync.Mutex)
	out := func(pfx string) lineWriter { return lineWriter{mu: mu, w: stdout, pfx: pfx} }
	say := out("demo")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	bdk, _ := hex.DecodeString(demoBDK)
	ksn, err := dukpt.ParseKSN(demoKSN)
	if err != nil {
		return err
	}
	sales := demoSales()

	// The PIN pad: a pty pair, posd on one end, the simulator on the other.
	pair, err := ptypair.Open()
	if err != nil {
		return fmt.Errorf("demo: creating the PIN pad's pseudo-terminals: %w", err)
	}
	defer pair.Close()
	var events []padsim.Event
	for _, s := range sales {
		events = append(events, s.events...)
	}
	// After the sales, the refund's card: the tap sale's card again (same number and expiry).
	events = append(events, tap(padsim.Tap{}))
	padOpts := &padsim.Options{BDK: bdk, KSN: ksn, Logf: out("pinpad-sim").printf, Contactless: true, CtlsLimits: demoCtlsLimits}
	aesBDK, _ := hex.DecodeString(demoAESBDK)
	if *kind == DUKPTAES {
		aesKSN, err := dukpt.ParseAESKSN(demoAESKSN)
		if err != nil {
			return err
		}
		padOpts.BDK, padOpts.KeyType, padOpts.AESKSN = aesBDK, dukpt.KeyAES128, aesKSN
	}
	pad, err := padsim.New(&padsim.Script{Events: events}, padOpts)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	padPort, err := serial.Open(pair.B, &serial.Mode{BaudRate: 19200})
	if err != nil {
		return fmt.Errorf("demo: opening the simulator's end %s: %w", pair.B, err)
	}
	defer padPort.Close()
	padDone := make(chan error, 1)
	go func() { padDone <- pad.Serve(ctx, padPort) }()
	say.printf("PIN pad simulator on %s, posd's end of the line is %s", pair.B, pair.A)

	dir, err := os.MkdirTemp("", "posd-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)

	// The acquirer's dialect: posd's default, or for AES PIN blocks the shipped dialect
	// whose field 52 takes 16 bytes, written where posd's config can name it.
	var dialect *iso8583.Dialect
	dialectPath := ""
	if *kind == DUKPTAES {
		data, err := fs.ReadFile(iso8583.ShippedDialects(), "dialects/aes-pin.json")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if dialect, err = iso8583.ParseDialect(data); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		dialectPath = filepath.Join(dir, "aes-pin.json")
		if err := os.WriteFile(dialectPath, data, 0o600); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		say.printf("AES DUKPT: the pad sends ISO 9564 format 4 PIN blocks; acquirer dialect %s", dialect.Name)
	}

	// The acquirer.
	var host *hostsim.Server
	if *acqAddr == "" {
		host, err = hostsim.NewServer(hostsim.Options{BDK: bdk, AESBDK: aesBDK, Dialect: dialect, Logf: out("acquirer-sim").printf})
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		go func() { _ = host.Serve(ctx, ln) }()
		*acqAddr = ln.Addr().String()
		say.printf("acquirer simulator listening on %s", *acqAddr)
	} else {
		say.printf("using the external acquirer at %s", *acqAddr)
	}

	cfg := &Config{
		Version:  ConfigVersion,
		Terminal: TerminalConfig{ID: "DEMO0001", MerchantID: "000000000000001", MerchantName: "POSD DEMO SHOP", Currency: "EUR"},
		// The demo's till is this process: its user is the supervisor (the demo says so).
		API: APIConfig{Listen: "unix:" + filepath.Join(dir, "posd.sock"),
			Roles: access.RolesConfig{string(access.Supervisor): {Users: []string{strconv.Itoa(os.Getuid())}}}},
		PINPad:   PINPadConfig{Port: pair.A, DUKPT: *kind},
		Acquirer: AcquirerConfig{Address: *acqAddr, ResponseTimeout: Duration(15 * time.Second), Dialect: dialectPath},
		Store:    StoreConfig{Path: filepath.Join(dir, "posd.db")},
		// A soft data key (the demo's only): it keys the journal's card hashes, which a
		// linked refund checks the card by, and the audit chain.
		HSM: HSMConfig{Data: &DataKeyConfig{Backend: "soft", AllowSoft: true, KeyFile: filepath.Join(dir, "data.key")}},
	}
	if err := cfg.fill(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	log := slog.New(slog.NewTextHandler(out("posd"), &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
	d, err := startDaemon(ctx, cfg, log, out("posd<->acq").printf, nil, nil)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer d.close()

	say.printf("API on %s; uid %d (you) has the role supervisor (api.roles)", d.addr(), os.Getuid())
	eur, _ := money.LookupCurrency("EUR")
	sock := strings.TrimPrefix(d.addr(), "unix:")
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		}}}
	var failures []string
	pois := make([]string, len(sales)) // each sale's POITransactionID
	for i, s := range sales {
		say.printf("")
		say.printf("=== sale %d of %d: %s EUR, expecting %s", i+1, len(sales), s.amount, s.title)
		amt, err := money.ParseDecimal(s.amount, eur)
		if err != nil {
			return err
		}
		env := nexo.NewPaymentRequest("DEMO-TILL", fmt.Sprintf("%04d", i+1), cfg.Terminal.POIID, fmt.Sprintf("DEMO-%d", i+1), amt, time.Now())
		body, _ := json.Marshal(env)
		out("till->posd").printf("POST /nexo %s", body)
		resp, err := client.Post("http://posd/nexo", "application/json", bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("demo: sale %d: %w", i+1, err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ans nexo.Envelope
		if err := json.Unmarshal(rb, &ans); err != nil || ans.Response == nil || ans.Response.PaymentResponse == nil {
			return fmt.Errorf("demo: sale %d: HTTP %d, unreadable answer: %s", i+1, resp.StatusCode, rb)
		}
		pr := ans.Response.PaymentResponse
		pois[i] = pr.POIData.POITransactionID.TransactionID
		line := pr.Response.Result
		if pr.Response.ErrorCondition != "" {
			line += " (" + pr.Response.ErrorCondition + ")"
		}
		line += " " + strings.TrimPrefix(pr.Response.AdditionalResponse, "message=")
		if r := pr.PaymentResult; r != nil {
			line += fmt.Sprintf(" | card %s, approval %q, response code %q", r.PaymentInstrumentData.CardData.MaskedPan, r.PaymentAcquirerData.ApprovalCode, r.PaymentAcquirerData.ResponseCode)
		}
		out("till<-posd").printf("%s", line)
		for _, rc := range pr.PaymentReceipt {
			if rc.DocumentQualifier != "CustomerReceipt" {
				continue
			}
			for _, t := range rc.OutputContent.OutputText {
				out("receipt").printf("| %-32s |", t.Text)
			}
		}
		if pr.Response.Result != s.result || pr.Response.ErrorCondition != s.condition {
			failures = append(failures, fmt.Sprintf("sale %d (%s): got %s/%s, want %s/%s", i+1, s.title, pr.Response.Result, pr.Response.ErrorCondition, s.result, s.condition))
		}
	}

	// Check what reached the acquirer and what the journal holds.
	wantOnline := 0
	for _, s := range sales {
		if s.online {
			wantOnline++
		}
	}
	var recs []store.Record
	if err := d.st.Records(ctx, func(r store.Record) error { recs = append(recs, r); return nil }); err != nil {
		return fmt.Errorf("demo: reading the journal: %w", err)
	}
	say.printf("")
	say.printf("=== journal (%s)", cfg.Store.Path)
	for _, r := range recs {
		state := "NO OUTCOME"
		if r.Outcome != nil {
			state = string(r.Outcome.State) + " " + r.Outcome.ResponseCode
		}
		say.printf("txn %d  STAN %06d  %s  %d %s  %s", uint64(r.ID), r.Intent.STAN, r.Intent.MaskedPAN, r.Intent.AmountMinor, r.Intent.Currency, state)
		if r.Outcome == nil {
			failures = append(failures, fmt.Sprintf("journal: transaction %d has no outcome", uint64(r.ID)))
		}
	}
	if len(recs) != wantOnline {
		failures = append(failures, fmt.Sprintf("journal: %d records, want %d (one per sale that went online)", len(recs), wantOnline))
	}
	if host != nil {
		ledger := host.Ledger()
		say.printf("=== acquirer ledger: %d approved", len(ledger))
		for _, e := range ledger {
			say.printf("%+v", e)
		}
		approved := 0
		for _, s := range sales {
			if s.result == "Success" {
				approved++
			}
		}
		if len(ledger) != approved {
			failures = append(failures, fmt.Sprintf("acquirer ledger: %d approvals, want %d", len(ledger), approved))
		}
	}

	// A refund of part of the first tap (the same card, tapped again) and a void of the
	// first sale: a supervisor's work (the demo's user is one).
	say.printf("")
	say.printf("=== refund of 5.00 of sale 4 (linked to %s; the card is tapped again)", pois[3])
	five, _ := money.ParseDecimal("5.00", eur)
	if line, err := demoPost(client, nexo.NewRefundRequest("DEMO-TILL", "R001", cfg.Terminal.POIID, "DEMO-R1", pois[3], five, time.Now()), out); err != nil {
		failures = append(failures, "refund: "+err.Error())
	} else {
		out("till<-posd").printf("%s", line)
	}
	say.printf("")
	say.printf("=== void of sale 1 (%s): reversed at the acquirer before the close", pois[0])
	if line, err := demoPost(client, nexo.NewReversalRequest("DEMO-TILL", "V001", cfg.Terminal.POIID, pois[0], "MerchantCancel"), out); err != nil {
		failures = append(failures, "void: "+err.Error())
	} else {
		out("till<-posd").printf("%s", line)
	}

	// The day's close: a Reconciliation from the till, which the host balances.
	say.printf("")
	say.printf("=== batch close (nexo Reconciliation, AcquirerReconciliation)")
	if line, err := demoClose(client, cfg.Terminal.POIID, out); err != nil {
		failures = append(failures, "batch close: "+err.Error())
	} else {
		say.printf("%s", line)
	}

	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = d.shutdown(sctx)
	cancel()
	if err := <-padDone; err != nil && !errors.Is(err, context.Canceled) {
		say.printf("PIN pad simulator stopped: %v", err)
	}
	if len(failures) > 0 {
		for _, f := range failures {
			say.printf("UNEXPECTED: %s", f)
		}
		return fmt.Errorf("demo: %d unexpected outcome(s)", len(failures))
	}
	say.printf("all %d sales ended as expected", len(sales))
	return nil
}

// demoPost sends a till request that must succeed (a refund or a void), prints the
// customer's receipt when there is one, and returns the answer on one line.
func demoPost(client *http.Client, env nexo.Envelope, out func(string) lineWriter) (string, error) {
	var ans nexo.Envelope
	rb, err := demoExchange(client, env, &ans, out)
	if err != nil {
		return "", err
	}
	if ans.Response == nil {
		return "", fmt.Errorf("answer without a SaleToPOIResponse: %s", rb)
	}
	var r nexo.Response
	switch {
	case ans.Response.PaymentResponse != nil:
		r = ans.Response.PaymentResponse.Response
		for _, rc := range ans.Response.PaymentResponse.PaymentReceipt {
			if rc.DocumentQualifier == "CustomerReceipt" {
				for _, t := range rc.OutputContent.OutputText {
					out("receipt").printf("| %-32s |", t.Text)
				}
			}
		}
	case ans.Response.ReversalResponse != nil:
		r = ans.Response.ReversalResponse.Response
	default:
		return "", fmt.Errorf("answer without a payment or reversal response: %s", rb)
	}
	line := r.Result + " " + strings.TrimPrefix(r.AdditionalResponse, "message=")
	if r.Result != "Success" {
		return "", fmt.Errorf("%s (%s) %s", r.Result, r.ErrorCondition, line)
	}
	return line, nil
}

// demoExchange posts req to the till API, printing it, and decodes the answer into ans; it
// returns the answer's body for errors.
func demoExchange(client *http.Client, req, ans any, out func(string) lineWriter) ([]byte, error) {
	body, _ := json.Marshal(req)
	out("till->posd").printf("POST /nexo %s", body)
	resp, err := client.Post("http://posd/nexo", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(rb, ans); err != nil {
		return rb, fmt.Errorf("HTTP %d, unreadable answer: %s", resp.StatusCode, rb)
	}
	return rb, nil
}

// demoClose closes the batch through the till API and prints the totals report; it fails
// unless the host balanced the batch (00, no upload).
func demoClose(client *http.Client, poiid string, out func(string) lineWriter) (string, error) {
	var ans nexo.ReconcileEnvelope
	rb, err := demoExchange(client, nexo.NewReconciliationRequest("DEMO-TILL", "CLOSE1", poiid), &ans, out)
	if err != nil {
		return "", err
	}
	if ans.Response == nil || ans.Response.ReconciliationResponse == nil {
		return "", fmt.Errorf("answer without a ReconciliationResponse: %s", rb)
	}
	rr := ans.Response.ReconciliationResponse
	out("till<-posd").printf("%s %s %s", rr.Response.Result, rr.Response.ErrorCondition, strings.TrimPrefix(rr.Response.AdditionalResponse, "message="))
	for _, tt := range rr.TransactionTotals {
		for _, pt := range tt.PaymentTotals {
			out("totals").printf("%-10s %-14s %3d  %s %s", tt.CardBrand, pt.TransactionType, pt.TransactionCount, pt.TransactionAmount, tt.PaymentCurrency)
		}
	}
	rep := rr.Report
	if rr.Response.Result != "Success" || rep == nil {
		return "", fmt.Errorf("%s/%s: %s", rr.Response.Result, rr.Response.ErrorCondition, rr.Response.AdditionalResponse)
	}
	if rep.ResponseCode != "00" || rep.Uploaded || len(rep.Differences) != 0 {
		return "", fmt.Errorf("batch %d not balanced at once: response %s, uploaded %t, %d difference(s)", rep.Batch, rep.ResponseCode, rep.Uploaded, len(rep.Differences))
	}
	return fmt.Sprintf("batch %d closed in balance (0510 response 00), audit head %d", rep.Batch, rep.AuditSeq), nil
}
