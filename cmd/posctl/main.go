// Command posctl is posd's client: it talks to posd's local till API, never to its files.
//
// Usage:
//
//	posctl [--api URL] status [--sale-id ID (--service-id ID | --ref ID)]
//	posctl [--api URL] sale --amount 12.50 [--currency EUR] [--ref ID] [--sale-id ID] [--service-id ID]
//	posctl [--api URL] abort [--sale-id ID] --service-id ID
//	posctl [--api URL] journal [--sale-id ID] [find [--note TEXT]]   (find reads the card number and expiry from stdin, or --last4 --date)
//	posctl [--api URL] void POI-TRANSACTION-ID
//	posctl [--api URL] saf list | flush | park ID | unpark ID | delete ID [--note TEXT] [--reason TEXT] [--yes] [--approve ID]
//	posctl [--api URL] store check
//	posctl [--api URL] totals | close
//	posctl [--api URL] firmware status | install SOURCE | pinpad SOURCE | rollback | log
//	posctl [--api URL] params install FILE | status
//
// --api is unix:/run/posd/posd.sock by default (posd knows the caller from the socket), or
// https://127.0.0.1:PORT with --cert, --key and --ca (mutual TLS: the certificate's CN is
// the caller). posd decides what each caller may do; posctl only asks. Exit status: 0
// success, 1 posctl could not get an answer (or posd refused it), 2 usage, 3 the sale was
// answered but not approved, 4 a dual-control request waits for a second person.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/posd-dev/posd/internal/tty"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/nexo"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

const usage = `usage: posctl [--api URL] [--cert FILE --key FILE --ca FILE] COMMAND
commands:
  status                                   is posd up, and which POI is it
  status [--sale-id ID] --service-id ID|--ref ID
                                           what became of a till request: running, or
                                           its answer as first given (nexo TransactionStatus)
  sale --amount 12.50 [--currency EUR] [--ref ID] [--sale-id ID] [--service-id ID]
                                           run a sale and print the answer and receipt;
                                           the same --service-id or --ref again gets the
                                           first answer, never a second sale
  abort [--sale-id ID] --service-id ID     stop a running sale (nexo Abort)
  journal [--sale-id ID] [--archived]      list the journal (PANs masked; --archived: the
                                           archived records too, first); a cashier names
                                           its till's SaleID
  journal find [--note TEXT]               a card's sales: reads the card number and its
                                           expiry (YYMM) from stdin; or --last4 NNNN
                                           --date YYYY-MM-DD
                                           (never an argument: it would show in ps); recorded
  void POI-TRANSACTION-ID                  cancel an approved sale or refund (reversed at the acquirer)
  refund --amount 5.00 --original POI-TRANSACTION-ID | --unlinked [--ref REF]
                                           money back to the card (supervisor); a linked refund
                                           needs the sale's card and stays within what it captured
  saf list                                 the store-and-forward queue (masked)
  saf flush                                send everything queued now
  saf park|unpark|delete ID [--note TEXT] [--reason TEXT] [--yes]
                                           operator actions on a queued message (confirmed, recorded)
  saf delete ID --approve APPROVAL         the second person of a delete (dual control)
  totals                                   the open batch's totals, per type and card brand
  close                                    close the batch with the acquirer (supervisor) and
                                           print the report (exit 3: the close failed)
  store check                              verify the journal file and its invariants
  keys status                              the acquirer's working keys in use, with alerts
                                           (exit 3: a key change failed; technician)
  keys rotate [mac|pin|data ...]           ask the acquirer for new working keys now (default:
                                           those of acquirer.key_change); exit 3: refused, the
                                           old key stays
  audit verify [--head SEQ:MAC]            verify the audit chain (exit 1: broken, first broken link named)
  firmware status|install SOURCE|pinpad SOURCE|rollback|log
                                           signed firmware updates (see posctl firmware -h)
  params install FILE|status               the acquirer's signed EMV parameter file (technician)
--api: unix:/run/posd/posd.sock (default), or https://127.0.0.1:PORT with --cert/--key/--ca
--note: free text recorded after your identity in the audit (--who is its old name)
--operator ID: send a supervisor's or technician's own id and password (asked for, or the
  first line of stdin) for what your own role does not allow, e.g. a void at a cashier's till
`

var (
	errUsage      = errors.New("usage")
	errNotSuccess = errors.New("not approved")
	errPending    = errors.New("pending a second person")
)

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("posctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: on stdout when asked for (-h), on stderr otherwise
	api := fs.String("api", "unix:/run/posd/posd.sock", "posd's API: unix:PATH or https://HOST:PORT")
	cert := fs.String("cert", "", "with https: your client certificate (PEM)")
	key := fs.String("key", "", "with https: its private key (PEM)")
	ca := fs.String("ca", "", "with https: the CA that issued posd's certificate (PEM)")
	operator := fs.String("operator", "", "a supervisor's or technician's own operator id, sent with the request with its password (read from the terminal without echo, or the first line of stdin)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) || (err == nil && fs.NArg() > 0 && fs.Arg(0) == "help") {
		if err == nil && fs.NArg() > 1 { // posctl help COMMAND
			return commandHelp(fs.Arg(1), stdout, stderr)
		}
		fmt.Fprint(stdout, usage) // asked for: on stdout, exit 0
		return 0
	} else if err != nil || fs.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if wantsHelp(fs.Args()[1:]) {
		return commandHelp(fs.Arg(0), stdout, stderr)
	}
	c, err := newClient(*api, *cert, *key, *ca)
	if err == nil && *operator != "" {
		raw := stdin
		var in *bufio.Reader
		in, stdin = stdinReader(stdin)
		err = c.withOperator(*operator, in, raw, stderr)
	}
	if err == nil {
		switch cmd := fs.Arg(0); cmd {
		case "status":
			if fs.NArg() == 1 {
				err = c.status(stdout)
			} else {
				err = c.txnStatus(fs.Args()[1:], stdout, stderr)
			}
		case "abort":
			err = c.abort(fs.Args()[1:], stdout, stderr)
		case "sale":
			err = c.sale(fs.Args()[1:], stdout, stderr)
		case "refund":
			err = c.payment("refund", fs.Args()[1:], stdout, stderr)
		case "journal":
			err = c.journal(fs.Args()[1:], stdin, stdout, stderr)
		case "void":
			err = c.void(fs.Args()[1:], stdout, stderr)
		case "saf":
			err = c.saf(fs.Args()[1:], stdin, stdout, stderr)
		case "firmware":
			err = firmwareOff(cmdFirmware(c, fs.Args()[1:], stdout, stderr))
		case "params":
			err = c.params(fs.Args()[1:], stdout, stderr)
		case "audit":
			err = c.audit(fs.Args()[1:], stdout, stderr)
		case "totals":
			err = c.totals(fs.Args()[1:], stdout, stderr)
		case "close":
			err = c.closeBatch(fs.Args()[1:], stdout, stderr)
		case "keys":
			err = c.keys(fs.Args()[1:], stdout, stderr)
		case "store":
			if fs.NArg() != 2 || fs.Arg(1) != "check" {
				fmt.Fprintln(stderr, "usage: posctl store check")
				return 2
			}
			err = c.storeCheck(stdout)
		default:
			fmt.Fprintf(stderr, "posctl: unknown command %q\n%s", cmd, usage)
			return 2
		}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errNotSuccess):
		return 3
	case errors.Is(err, errPending):
		return 4
	}
	fmt.Fprintf(stderr, "posctl: %v\n", err)
	return 1
}

type client struct {
	base string
	http *http.Client
}

func newClient(api, cert, key, ca string) (*client, error) {
	c := &client{base: strings.TrimRight(api, "/"), http: &http.Client{Timeout: 5 * time.Minute}}
	switch {
	case strings.HasPrefix(api, "unix:"):
		path := strings.TrimPrefix(api, "unix:")
		c.base = "http://posd"
		c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
	case strings.HasPrefix(api, "https://"):
		if cert == "" || key == "" || ca == "" {
			return nil, fmt.Errorf("--api %s: https needs --cert, --key and --ca (posd requires a client certificate)", api)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", ca)
		}
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{pair}, RootCAs: pool}}
	default:
		return nil, fmt.Errorf("--api %q: want unix:PATH or https://HOST:PORT (posd serves TCP only with mutual TLS)", api)
	}
	return c, nil
}

// stdinReader returns one buffered reader over stdin, for the password and whatever a
// command reads after it.
func stdinReader(stdin io.Reader) (*bufio.Reader, io.Reader) {
	if b, ok := stdin.(*bufio.Reader); ok {
		return b, b
	}
	b := bufio.NewReader(stdin)
	return b, b
}

// withOperator sends operator id's own credential with every request (posd's
// Posd-Operator headers): for what the role of the process running posctl does not allow,
// such as a supervisor's void at a cashier's till. The password is read from the terminal
// without echo, or from the first line of raw when stdin is not a terminal.
func (c *client) withOperator(id string, in *bufio.Reader, raw io.Reader, stderr io.Writer) error {
	var pw string
	if f, ok := osStdin(raw); ok && tty.IsTerminal(f) {
		restore, err := tty.EchoOff(f, "posctl: interrupted")
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "password of operator %s: ", id)
		line, _ := bufio.NewReader(f).ReadString('\n')
		restore()
		fmt.Fprintln(stderr)
		pw = line
	} else {
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the operator's password: %w", err)
		}
		pw = line
	}
	pw = strings.TrimRight(pw, "\r\n")
	base := c.http.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.http.Transport = operatorTransport{base: base, id: id, pw: pw}
	return nil
}

// osStdin returns stdin as a file when it is the process's own.
func osStdin(r io.Reader) (*os.File, bool) {
	if r == io.Reader(os.Stdin) {
		return os.Stdin, true
	}
	return nil, false
}

// operatorTransport adds an operator's credential to each request.
type operatorTransport struct {
	base   http.RoundTripper
	id, pw string
}

func (t operatorTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Posd-Operator", t.id)
	r.Header.Set("Posd-Operator-Password", t.pw)
	return t.base.RoundTrip(r)
}

func (c *client) get(path string, v any) error {
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		return fmt.Errorf("posd is not answering at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == http.StatusNotFound && strings.TrimSpace(string(b)) == "404 page not found" {
		return fmt.Errorf("%s: this posd has no such API: a feature turned off in posd's config, or a posd older than this posctl", path)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: unreadable answer: %w", path, err)
	}
	return nil
}

func (c *client) sale(args []string, stdout, stderr io.Writer) error {
	return c.payment("sale", args, stdout, stderr)
}

// payment runs posctl sale or posctl refund (name).
func (c *client) payment(name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("posctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	amount := fs.String("amount", "", "amount in major units, e.g. 12.50 (required)")
	currency := fs.String("currency", "EUR", "ISO 4217 currency code")
	ref := fs.String("ref", "", "the till's transaction reference (default: posctl-TIME)")
	saleID := fs.String("sale-id", "POSCTL", "the till's id")
	serviceID := fs.String("service-id", "", "the request's id, 1-10 characters (default: a new one)")
	var original *string
	var unlinked *bool
	if name == "refund" {
		original = fs.String("original", "", "the POI transaction id of the sale refunded (a linked refund)")
		unlinked = fs.Bool("unlinked", false, "a refund that names no sale (if posd's refund.unlinked allows)")
	}
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	if name == "refund" && (*original == "") == !*unlinked {
		fmt.Fprintln(stderr, "posctl refund: exactly one of --original POI-TRANSACTION-ID and --unlinked")
		return errUsage
	}
	cur, err := money.LookupCurrency(*currency)
	if err != nil {
		return fmt.Errorf("--currency: %w", err)
	}
	if *amount == "" {
		fmt.Fprintf(stderr, "posctl %s: --amount is required\n", name)
		return errUsage
	}
	amt, err := money.ParseDecimal(*amount, cur)
	if err != nil {
		return fmt.Errorf("--amount: %w", err)
	}
	poiid, err := c.poiid()
	if err != nil {
		return err
	}
	now := time.Now()
	if *ref == "" {
		*ref = "posctl-" + now.UTC().Format("20060102T150405.000000")
	}
	if *serviceID == "" {
		*serviceID = newServiceID()
	}
	req := nexo.NewPaymentRequest(*saleID, *serviceID, poiid, *ref, amt, now)
	if name == "refund" {
		req = nexo.NewRefundRequest(*saleID, *serviceID, poiid, *ref, *original, amt, now)
	}
	env, err := c.nexo(req, name)
	if err != nil {
		return err
	}
	if env.Response.PaymentResponse == nil {
		return fmt.Errorf("posd's answer has no PaymentResponse")
	}
	return printPayment(env.Response.PaymentResponse, stdout)
}

// printPayment prints a payment's answer and its customer receipt; errNotSuccess when it
// was not approved (in full or in part).
func printPayment(pr *nexo.PaymentResponse, stdout io.Writer) error {
	fmt.Fprintf(stdout, "result: %s", pr.Response.Result)
	if pr.Response.ErrorCondition != "" {
		fmt.Fprintf(stdout, " (%s)", pr.Response.ErrorCondition)
	}
	fmt.Fprintf(stdout, "\n%s\n", strings.TrimPrefix(pr.Response.AdditionalResponse, "message="))
	if pr.POIData.POITransactionID.TransactionID != "" {
		fmt.Fprintf(stdout, "POI transaction: %s\n", pr.POIData.POITransactionID.TransactionID)
	}
	for _, rc := range pr.PaymentReceipt {
		if rc.DocumentQualifier != "CustomerReceipt" {
			continue
		}
		for _, t := range rc.OutputContent.OutputText {
			fmt.Fprintf(stdout, "| %-32s |\n", t.Text)
		}
	}
	if pr.Response.Result != "Success" && pr.Response.Result != "Partial" {
		return errNotSuccess
	}
	return nil
}

// reference reads the flags that name an earlier till request.
func reference(name string, args []string, stderr io.Writer, withRef bool) (*nexo.MessageReference, error) {
	fs := flag.NewFlagSet("posctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	saleID := fs.String("sale-id", "POSCTL", "the till's id")
	serviceID := fs.String("service-id", "", "the request's ServiceID")
	ref := new(string)
	if withRef {
		ref = fs.String("ref", "", "the sale's transaction reference (SaleTransactionID), instead of --service-id")
	}
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*serviceID == "") == (*ref == "") {
		if withRef {
			fmt.Fprintf(stderr, "usage: posctl %s [--sale-id ID] --service-id ID | --ref ID\n", name)
		} else {
			fmt.Fprintf(stderr, "usage: posctl %s [--sale-id ID] --service-id ID\n", name)
		}
		return nil, errUsage
	}
	m := &nexo.MessageReference{MessageCategory: "Payment", SaleID: *saleID, ServiceID: *serviceID}
	if *ref != "" {
		m.SaleTransactionID = &nexo.TransactionID{TransactionID: *ref}
	}
	return m, nil
}

// txnStatus asks what became of a till request (nexo TransactionStatus).
func (c *client) txnStatus(args []string, stdout, stderr io.Writer) error {
	ref, err := reference("status", args, stderr, true)
	if err != nil {
		return err
	}
	poiid, err := c.poiid()
	if err != nil {
		return err
	}
	env, err := c.nexo(nexo.NewTransactionStatusRequest(ref.SaleID, newServiceID(), poiid, ref), "status")
	if err != nil {
		return err
	}
	tsr := env.Response.TransactionStatusResponse
	if tsr == nil {
		return fmt.Errorf("posd's answer has no TransactionStatusResponse")
	}
	switch {
	case tsr.Response.Result == "Success" && tsr.RepeatedMessageResponse != nil && tsr.RepeatedMessageResponse.RepeatedResponseMessageBody.PaymentResponse != nil:
		fmt.Fprintln(stdout, "status: finished; its answer, as first given:")
		return printPayment(tsr.RepeatedMessageResponse.RepeatedResponseMessageBody.PaymentResponse, stdout)
	case tsr.Response.ErrorCondition == "InProgress":
		fmt.Fprintln(stdout, "status: in progress (ask again)")
		return errNotSuccess
	}
	fmt.Fprintf(stdout, "status: %s (%s)\n%s\n", tsr.Response.Result, tsr.Response.ErrorCondition, strings.TrimPrefix(tsr.Response.AdditionalResponse, "message="))
	return errNotSuccess
}

// abort stops a running sale (nexo Abort).
func (c *client) abort(args []string, stdout, stderr io.Writer) error {
	ref, err := reference("abort", args, stderr, false)
	if err != nil {
		return err
	}
	poiid, err := c.poiid()
	if err != nil {
		return err
	}
	env, err := c.nexo(nexo.NewAbortRequest(ref.SaleID, newServiceID(), poiid, ref, "MerchantAbort"), "abort")
	if err != nil {
		return err
	}
	ar := env.Response.AbortResponse
	if ar == nil {
		return fmt.Errorf("posd's answer has no AbortResponse")
	}
	fmt.Fprintf(stdout, "result: %s", ar.Response.Result)
	if ar.Response.ErrorCondition != "" {
		fmt.Fprintf(stdout, " (%s)", ar.Response.ErrorCondition)
	}
	fmt.Fprintf(stdout, "\n%s\n", strings.TrimPrefix(ar.Response.AdditionalResponse, "message="))
	if ar.Response.Result != "Success" {
		return errNotSuccess
	}
	return nil
}

func (c *client) journal(args []string, stdin io.Reader, w, stderr io.Writer) error {
	var recs []store.Record
	switch {
	case len(args) == 0 || strings.HasPrefix(args[0], "-"):
		fs := flag.NewFlagSet("posctl journal", flag.ContinueOnError)
		fs.SetOutput(stderr)
		saleID := fs.String("sale-id", "", "only this till's records (all a cashier may see)")
		archived := fs.Bool("archived", false, "the archived records too (closed batches older than store.keep), first")
		if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
			fmt.Fprintln(stderr, "usage: posctl journal [--sale-id ID] [--archived]")
			return errUsage
		}
		q := url.Values{}
		if *saleID != "" {
			q.Set("sale_id", *saleID)
		}
		if *archived {
			q.Set("archived", "1")
		}
		path := "/v1/journal"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		if err := c.get(path, &recs); err != nil {
			return err
		}
	case args[0] == "find":
		fs := flag.NewFlagSet("posctl journal find", flag.ContinueOnError)
		fs.SetOutput(stderr)
		note := noteFlags(fs)
		last4 := fs.String("last4", "", "the card number's last 4 digits, with --date (instead of the card number)")
		date := fs.String("date", "", "with --last4: the day of the sale, YYYY-MM-DD")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 || (*last4 == "") != (*date == "") {
			fmt.Fprintln(stderr, "usage: posctl journal find [--note TEXT] < card-number-and-expiry\n       posctl journal find [--note TEXT] --last4 NNNN --date YYYY-MM-DD")
			return errUsage
		}
		body := map[string]string{"note": *note, "last4": *last4, "date": *date}
		if *last4 == "" {
			in := bufio.NewReader(io.LimitReader(stdin, 512))
			fmt.Fprint(stderr, "card number: ")
			pan, err := in.ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the card number: %w", err)
			}
			fmt.Fprint(stderr, "\nexpiry (YYMM): ")
			exp, err := in.ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the expiry: %w", err)
			}
			fmt.Fprintln(stderr)
			body = map[string]string{"note": *note, "pan": strings.TrimSpace(pan), "expiry": strings.TrimSpace(exp)}
		}
		if err := c.do(http.MethodPost, "/v1/journal/find", body, &recs); err != nil {
			return err
		}
		if len(recs) == 0 {
			fmt.Fprintln(w, "no sales with that card in the journal")
			return nil
		}
	default:
		fmt.Fprintln(stderr, "usage: posctl journal [--sale-id ID] [find [--note TEXT]]")
		return errUsage
	}
	fmt.Fprintf(w, "%-6s %-6s %-5s %-20s %-19s %14s  %s\n", "TXN", "STAN", "MTI", "TIME", "CARD", "AMOUNT", "OUTCOME")
	for _, r := range recs {
		out := "NO OUTCOME (to be reversed)"
		if r.Outcome != nil {
			out = string(r.Outcome.State)
			if r.Outcome.ResponseCode != "" {
				out += " " + r.Outcome.ResponseCode
			}
		}
		if r.Intent.Kind == store.KindRefund {
			prefix := "REFUND"
			if r.Intent.Original != 0 {
				prefix += fmt.Sprintf(" of txn %d", uint64(r.Intent.Original))
			}
			out = prefix + ", " + out
		}
		amt := formatAmount(r.Intent.AmountMinor, r.Intent.Currency)
		if r.Outcome != nil && r.Outcome.Voided != nil {
			out += ", voided by " + r.Outcome.Voided.By
		}
		if r.Outcome != nil && r.Outcome.Reversed != nil {
			out += ", reversed"
		}
		if r.Outcome != nil && r.Outcome.Advised != nil {
			out += ", advised"
		}
		if r.Outcome != nil && r.Outcome.AuthorizedMinor > 0 {
			out += ", partial: " + formatAmount(r.Outcome.AuthorizedMinor, r.Intent.Currency)
		}
		if r.Outcome != nil && r.Outcome.Undelivered != nil {
			out += ", the till did not hear the answer"
		}
		fmt.Fprintf(w, "%-6d %06d %-5s %-20s %-19s %14s  %s\n", uint64(r.ID), r.Intent.STAN, r.Intent.MTI, r.Intent.Time.UTC().Format("2006-01-02 15:04:05"), r.Intent.MaskedPAN, amt, out)
	}
	return nil
}

func formatAmount(minor int64, currency string) string {
	if cur, err := money.LookupCurrency(currency); err == nil {
		return money.Amount{Minor: minor, Currency: cur}.String()
	}
	return fmt.Sprintf("%d %s", minor, currency)
}

func (c *client) void(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: posctl void POI-TRANSACTION-ID (as printed by posctl sale)")
		return errUsage
	}
	poiid, err := c.poiid()
	if err != nil {
		return err
	}
	env, err := c.nexo(nexo.NewReversalRequest("POSCTL", newServiceID(), poiid, args[0], "MerchantCancel"), "void")
	if err != nil {
		return err
	}
	if env.Response.ReversalResponse == nil {
		return fmt.Errorf("posd's answer has no ReversalResponse")
	}
	r := env.Response.ReversalResponse.Response
	fmt.Fprintf(stdout, "result: %s", r.Result)
	if r.ErrorCondition != "" {
		fmt.Fprintf(stdout, " (%s)", r.ErrorCondition)
	}
	fmt.Fprintf(stdout, "\n%s\n", strings.TrimPrefix(r.AdditionalResponse, "message="))
	if r.Result != "Success" {
		return errNotSuccess
	}
	return nil
}

// newServiceID returns a fresh nexo ServiceID (at most 10 characters): the microseconds
// since 1970 in base 36. posd keys requests by SaleID and ServiceID, so each new request
// needs a new one; a retry of the same request passes --service-id with the old one.
func newServiceID() string { return strconv.FormatInt(time.Now().UnixMicro(), 36) }

// poiid asks posd which POI it is, for the header of a till request.
func (c *client) poiid() (string, error) {
	var st struct{ POIID string }
	if err := c.get("/v1/status", &st); err != nil {
		return "", err
	}
	return st.POIID, nil
}

// nexo posts a till request to posd and returns its answer; what names the request in
// errors.
func (c *client) nexo(req nexo.Envelope, what string) (nexo.Envelope, error) {
	body, _ := json.Marshal(req)
	resp, err := c.http.Post(c.base+"/nexo", "application/json", bytes.NewReader(body))
	if err != nil {
		return nexo.Envelope{}, fmt.Errorf("posd is not answering at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nexo.Envelope{}, fmt.Errorf("%s refused: HTTP %d: %s", what, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var env nexo.Envelope
	if err := json.Unmarshal(b, &env); err != nil || env.Response == nil {
		return nexo.Envelope{}, fmt.Errorf("unreadable answer from posd: %s", b)
	}
	return env, nil
}
