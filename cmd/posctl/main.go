// Command posctl is posd's client: it talks to posd's local till API, never to its files.
//
// Usage:
//
//	posctl [--api URL] status
//	posctl [--api URL] sale --amount 12.50 [--currency EUR] [--ref ID] [--sale-id ID]
//	posctl [--api URL] journal
//
// --api is http://127.0.0.1:8765 by default, or unix:/path/to.sock. Exit status: 0 success,
// 1 posctl could not get an answer, 2 usage, 3 the sale was answered but not approved.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/nexo"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage: posctl [--api URL] COMMAND
commands:
  status                                   is posd up, and which POI is it
  sale --amount 12.50 [--currency EUR] [--ref ID] [--sale-id ID]
                                           run a sale and print the answer and receipt
  journal                                  list the journal (PANs masked)
--api: http://127.0.0.1:8765 (default) or unix:/path/to.sock
`

var (
	errUsage      = errors.New("usage")
	errNotSuccess = errors.New("not approved")
)

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("posctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	api := fs.String("api", "http://127.0.0.1:8765", "posd's till API")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		if err == nil {
			fs.Usage()
		}
		return 2
	}
	c, err := newClient(*api)
	if err == nil {
		switch cmd := fs.Arg(0); cmd {
		case "status":
			err = c.status(stdout)
		case "sale":
			err = c.sale(fs.Args()[1:], stdout, stderr)
		case "journal":
			err = c.journal(stdout)
		default:
			fmt.Fprintf(stderr, "posctl: unknown command %q\n", cmd)
			fs.Usage()
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
	}
	fmt.Fprintf(stderr, "posctl: %v\n", err)
	return 1
}

type client struct {
	base string
	http *http.Client
}

func newClient(api string) (*client, error) {
	c := &client{base: strings.TrimRight(api, "/"), http: &http.Client{Timeout: 5 * time.Minute}}
	if path, ok := strings.CutPrefix(api, "unix:"); ok {
		c.base = "http://posd"
		c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
	} else if !strings.HasPrefix(api, "http://") && !strings.HasPrefix(api, "https://") {
		return nil, fmt.Errorf("--api %q: want http://HOST:PORT or unix:PATH", api)
	}
	return c, nil
}

func (c *client) get(path string, v any) error {
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		return fmt.Errorf("posd is not answering at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: unreadable answer: %w", path, err)
	}
	return nil
}

func (c *client) status(w io.Writer) error {
	var st map[string]string
	if err := c.get("/v1/status", &st); err != nil {
		return err
	}
	fmt.Fprintf(w, "posd %s, POIID %s\n", st["status"], st["poiid"])
	return nil
}

func (c *client) sale(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("posctl sale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	amount := fs.String("amount", "", "amount in major units, e.g. 12.50 (required)")
	currency := fs.String("currency", "EUR", "ISO 4217 currency code")
	ref := fs.String("ref", "", "the till's transaction reference (default: posctl-TIME)")
	saleID := fs.String("sale-id", "POSCTL", "the till's id")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cur, err := money.LookupCurrency(*currency)
	if err != nil {
		return fmt.Errorf("--currency: %w", err)
	}
	if *amount == "" {
		fmt.Fprintln(stderr, "posctl sale: --amount is required")
		return errUsage
	}
	amt, err := money.ParseDecimal(*amount, cur)
	if err != nil {
		return fmt.Errorf("--amount: %w", err)
	}
	var st map[string]string
	if err := c.get("/v1/status", &st); err != nil {
		return err
	}
	now := time.Now()
	if *ref == "" {
		*ref = "posctl-" + now.UTC().Format("20060102T150405")
	}
	body, _ := json.Marshal(nexo.NewPaymentRequest(*saleID, now.UTC().Format("150405"), st["poiid"], *ref, amt, now))
	resp, err := c.http.Post(c.base+"/nexo", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("posd is not answering at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sale refused: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var env nexo.Envelope
	if err := json.Unmarshal(b, &env); err != nil || env.Response == nil || env.Response.PaymentResponse == nil {
		return fmt.Errorf("unreadable answer from posd: %s", b)
	}
	pr := env.Response.PaymentResponse
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
	if pr.Response.Result != "Success" {
		return errNotSuccess
	}
	return nil
}

func (c *client) journal(w io.Writer) error {
	var recs []store.Record
	if err := c.get("/v1/journal", &recs); err != nil {
		return err
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
		amt := fmt.Sprintf("%d %s", r.Intent.AmountMinor, r.Intent.Currency)
		if cur, err := money.LookupCurrency(r.Intent.Currency); err == nil {
			amt = money.Amount{Minor: r.Intent.AmountMinor, Currency: cur}.String()
		}
		fmt.Fprintf(w, "%-6d %06d %-5s %-20s %-19s %14s  %s\n", uint64(r.ID), r.Intent.STAN, r.Intent.MTI, r.Intent.Time.UTC().Format("2006-01-02 15:04:05"), r.Intent.MaskedPAN, amt, out)
	}
	return nil
}
