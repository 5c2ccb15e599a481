package terminal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

// checkReversedApproval checks what must follow an approval the sale cannot take: the till
// hears a refusal naming why, the journal holds the host's approval voided by posd with its
// reversal queued in the same write, and once the queue drains the host's charge is
// reversed and the card's balance is whole again.
func checkReversedApproval(t *testing.T, r *rig, res terminal.SaleResult, rc, why string, pan string, balance int64) {
	t.Helper()
	if res.Approved || res.Condition != terminal.CondRefusal || res.ResponseCode != rc || !strings.Contains(res.Message, why) {
		t.Fatalf("result = %+v, want a refusal with %s naming %q", res, rc, why)
	}
	recs := r.records(t)
	if len(recs) != 1 || recs[0].Outcome == nil {
		t.Fatalf("journal = %+v", recs)
	}
	out := recs[0].Outcome
	if out.State != store.StateApproved || out.ResponseCode != rc || out.Voided == nil || !strings.HasPrefix(out.Voided.By, "posd: ") || out.Voided.Withdrawn {
		t.Fatalf("outcome = %+v, voided %+v: want the host's approval voided by posd", out, out.Voided)
	}
	items, err := r.st.List(context.Background())
	if err != nil || len(items) != 1 || items[0].Kind != store.KindReversal || items[0].TxnID != recs[0].ID {
		t.Fatalf("queue = %+v, %v: want the approval's reversal", items, err)
	}
	if st := drain(t, r); st.Acked != 1 {
		t.Fatalf("drain = %+v", st)
	}
	if n := charged(r.host.Charges()); n != 0 {
		t.Errorf("%d charges still stand at the host after the reversal: %+v", n, r.host.Charges())
	}
	if got, _ := r.host.Balance(pan); got != balance {
		t.Errorf("balance %d after the reversal, want %d", got, balance)
	}
	if recs := r.records(t); recs[0].Outcome.Reversed == nil || recs[0].Outcome.Reversed.ResponseCode != "00" {
		t.Errorf("journal after the drain: %+v", recs[0].Outcome)
	}
	r.checkNoCardData(t)
}

// A prepaid card approved for less than the sale (10) on a terminal set to refuse partial
// approvals: it reverses the part the host took, with that amount.
func TestSalePartialApprovalIsReversed(t *testing.T) {
	const pan = "4761739001010010"
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{
		cards: []hostsim.Card{{PAN: pan, PIN: "1234", BalanceMinor: 700, Expiry: "3012", PartialApproval: true}},
		opts:  func(o *terminal.Options) { o.RefusePartial = true },
	})
	res := r.sale(t, 1250)
	checkReversedApproval(t, r, res, iso8583.RCPartialApproval, "approved only 7.00 EUR of 12.50 EUR", pan, 700)
}

// An approval of another amount than asked (a host echoing field 4 wrong) is not taken
// either: the customer must not be charged what the till did not ask.
func TestSaleApprovalOfAnotherAmountIsReversed(t *testing.T) {
	const pan = "4761739001010010"
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{
		cards: []hostsim.Card{{PAN: pan, PIN: "1234", BalanceMinor: 100_000, Expiry: "3012"}},
		corrupt: func(req *iso8583.Message, wire []byte) []byte {
			if mti, _ := req.GetMTI(); mti != iso8583.MTIFinancialRequest {
				return wire
			}
			// Field 4 follows the MTI, the 16-character bitmap and field 3 (6 digits).
			const at = 4 + 16 + 6
			out := append([]byte(nil), wire...)
			if string(out[at:at+12]) != "000000001250" {
				t.Errorf("field 4 not where expected: %q", out[at:at+12])
				return wire
			}
			copy(out[at:], "000000012500")
			return out
		},
	})
	res := r.sale(t, 1250)
	// The host charged the 12.50 asked and answered 125.00: the reversal undoes the request
	// as it was sent, which the host takes.
	checkReversedApproval(t, r, res, iso8583.RCApproved, "approved 125.00 EUR, not the 12.50 EUR asked", pan, 100_000)
}
