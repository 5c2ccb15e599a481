package main

// posctl totals and posctl close: the open batch's totals and the batch close, through the
// till API's GetTotals and Reconciliation.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/nexo"
)

// reconcile posts a GetTotals or Reconciliation request and decodes the answer.
func (c *client) reconcile(req nexo.ReconcileEnvelope, what string) (*nexo.ReconcileResponse, error) {
	body, _ := json.Marshal(req)
	resp, err := c.http.Post(c.base+"/nexo", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("posd is not answering at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s refused: HTTP %d: %s", what, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var env nexo.ReconcileEnvelope
	if err := json.Unmarshal(b, &env); err != nil || env.Response == nil {
		return nil, fmt.Errorf("unreadable answer from posd: %.200s", b)
	}
	return env.Response, nil
}

// totals prints the open batch's totals, per type and per brand.
func (c *client) totals(args []string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: posctl totals")
		return errUsage
	}
	poiid, err := c.poiid()
	if err != nil {
		return err
	}
	resp, err := c.reconcile(nexo.NewGetTotalsRequest("POSCTL", newServiceID(), poiid), "totals")
	if err != nil {
		return err
	}
	gr := resp.GetTotalsResponse
	if gr == nil {
		return fmt.Errorf("posd's answer has no GetTotalsResponse")
	}
	if gr.Response.Result != "Success" {
		return fmt.Errorf("totals: %s (%s): %s", gr.Response.Result, gr.Response.ErrorCondition, strings.TrimPrefix(gr.Response.AdditionalResponse, "message="))
	}
	fmt.Fprintf(stdout, "open batch %s\n", gr.POIReconciliationID)
	printTotals(stdout, gr.TransactionTotals)
	return nil
}

// printTotals prints totals per type (all brands) and then per brand.
func printTotals(w io.Writer, tts []nexo.TransactionTotals) {
	if len(tts) == 0 {
		fmt.Fprintln(w, "  no transactions")
		return
	}
	order := []string{"Debit", "Credit", "ReverseDebit", "ReverseCredit", "OfflinePending"}
	names := map[string]string{"Debit": "sales", "Credit": "refunds", "ReverseDebit": "reversed sales",
		"ReverseCredit": "reversed refunds", "OfflinePending": "offline, not yet advised"}
	per := func(tt nexo.TransactionTotals) []nexo.PaymentTotals {
		pts := append([]nexo.PaymentTotals(nil), tt.PaymentTotals...)
		if tt.OfflinePending != nil {
			pts = append(pts, *tt.OfflinePending)
		}
		return pts
	}
	all := map[string]*[2]int64{}
	cur := ""
	for _, tt := range tts {
		cur = tt.PaymentCurrency
		for _, pt := range per(tt) {
			s := all[pt.TransactionType]
			if s == nil {
				s = &[2]int64{}
				all[pt.TransactionType] = s
			}
			s[0] += pt.TransactionCount
			s[1] += minorOf(pt.TransactionAmount, tt.PaymentCurrency)
		}
	}
	fmt.Fprintln(w, "  by type:")
	for _, typ := range order {
		if s := all[typ]; s != nil {
			fmt.Fprintf(w, "    %-26s %5d  %s\n", names[typ], s[0], formatAmount(s[1], cur))
		}
	}
	fmt.Fprintln(w, "  by brand:")
	for _, tt := range tts {
		for _, pt := range per(tt) {
			name := names[pt.TransactionType]
			if name == "" {
				name = pt.TransactionType
			}
			fmt.Fprintf(w, "    %-10s %-26s %5d  %s %s\n", tt.CardBrand, name, pt.TransactionCount, pt.TransactionAmount, tt.PaymentCurrency)
		}
	}
}

// minorOf reads a major-unit amount of currency as minor units; 0 when unreadable.
func minorOf(n json.Number, currency string) int64 {
	cur, err := money.LookupCurrency(currency)
	if err != nil {
		return 0
	}
	a, err := money.ParseDecimal(string(n), cur)
	if err != nil {
		return 0
	}
	return a.Minor
}

// closeBatch runs the batch close and prints its report; errNotSuccess when the close
// failed (the reason is printed).
func (c *client) closeBatch(args []string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: posctl close")
		return errUsage
	}
	poiid, err := c.poiid()
	if err != nil {
		return err
	}
	resp, err := c.reconcile(nexo.NewReconciliationRequest("POSCTL", newServiceID(), poiid), "close")
	if err != nil {
		return err
	}
	rr := resp.ReconciliationResponse
	if rr == nil {
		return fmt.Errorf("posd's answer has no ReconciliationResponse")
	}
	fmt.Fprintf(stdout, "result: %s", rr.Response.Result)
	if rr.Response.ErrorCondition != "" {
		fmt.Fprintf(stdout, " (%s)", rr.Response.ErrorCondition)
	}
	fmt.Fprintln(stdout)
	rep := rr.Report
	if rr.Response.Result != "Success" {
		fmt.Fprintf(stdout, "close failed: %s\n", strings.TrimPrefix(rr.Response.AdditionalResponse, "message="))
		return errNotSuccess
	}
	if rep == nil {
		return fmt.Errorf("posd's answer has no POSDReconciliationReport")
	}
	fmt.Fprintf(stdout, "batch %d closed, host answered %s", rep.Batch, rep.ResponseCode)
	if rep.Resumed {
		fmt.Fprint(stdout, " (a close left pending was finished)")
	}
	fmt.Fprintln(stdout)
	if rep.Uploaded {
		fmt.Fprintf(stdout, "out of balance: batch uploaded, reconciled; %d difference(s):\n", len(rep.Differences))
		for _, d := range rep.Differences {
			fmt.Fprintf(stdout, "  stan %s  %s  %s %s  %s  %s (host answered %s)\n", d.STAN, d.POITransactionID, d.Kind, d.Amount, d.MaskedPan, d.What, d.ResponseCode)
		}
	} else {
		fmt.Fprintln(stdout, "in balance")
	}
	fmt.Fprintln(stdout, "totals:")
	printTotals(stdout, rr.TransactionTotals)
	fmt.Fprintf(stdout, "audit head %d:%.16s\n", rep.AuditSeq, rep.AuditHead)
	return nil
}
