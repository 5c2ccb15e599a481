package terminal_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/padsim"
)

// A second test card (hostsim's Mastercard, PIN 1234), for a refund to another card.
const (
	otherT2 = "5413330089020011=30121060000000000"
	otherT1 = "B5413330089020011^TEST/CARD^3012106000000000000"
)

// testPANHash is a keyed PAN hash as posd's (a MAC of PAN and expiry), written in letters
// only so that the store's digit-run check never mistakes it for a PAN.
func testPANHash(_ context.Context, pan card.PAN, exp card.Expiry) (string, error) {
	m := hmac.New(sha256.New, []byte("refund test key"))
	m.Write([]byte(pan.Digits() + "|" + exp.YYMM()))
	var b strings.Builder
	for _, c := range m.Sum(nil)[:16] {
		b.WriteByte('a' + c>>4)
		b.WriteByte('a' + c&15)
	}
	return b.String(), nil
}

func withRefunds(pol terminal.RefundPolicy) func(*terminal.Options) {
	return func(o *terminal.Options) { o.PANHash, o.Refunds = testPANHash, pol }
}

func (r *rig) refund(t *testing.T, orig string, minor int64) terminal.SaleResult {
	t.Helper()
	id := fmt.Sprintf("%s-%d", t.Name(), r.n.Add(1))
	res, err := r.term.Refund(context.Background(), terminal.SaleRequest{SaleID: "TILL", SaleTransactionID: id, Original: orig, Amount: money.Amount{Minor: minor, Currency: eur}})
	if err != nil {
		t.Fatalf("Refund: %v", err)
	}
	return res
}

// sentCount is how many requests reached the acquirer link.
func (r *rig) sentCount() int {
	r.sent.mu.Lock()
	defer r.sent.mu.Unlock()
	return len(r.sent.msgs)
}

func notAllowed(t *testing.T, res terminal.SaleResult, want string) {
	t.Helper()
	if res.Approved || res.Condition != terminal.CondNotAllowed || res.TxnID != 0 || !strings.Contains(res.Message, want) {
		t.Errorf("result = %+v; want NotAllowed naming %q", res, want)
	}
}

func TestRefundLinkedApproved(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")}, hostFaults{opts: withRefunds(terminal.RefundPolicy{})})
	sale := r.sale(t, 5000)
	if !sale.Approved {
		t.Fatalf("sale = %+v", sale)
	}
	before, _ := r.host.Balance(cardPAN)
	res := r.refund(t, sale.POITransactionID, 2000)
	if !res.Approved || !res.Refund || res.TxnID == 0 {
		t.Fatalf("refund = %+v", res)
	}
	if after, _ := r.host.Balance(cardPAN); after != before+2000 {
		t.Errorf("card balance %d after the refund, want %d", after, before+2000)
	}
	if mti, pc := r.sent.field(t, 1, 0), r.sent.field(t, 1, 3); mti != "0200" || pc != terminal.ProcessingCodeRefund {
		t.Errorf("refund sent as %s with processing code %s", mti, pc)
	}
	if got := strings.Join(res.Receipt.Customer, "\n"); !strings.Contains(got, "REFUND") || strings.Contains(got, "SALE") {
		t.Errorf("receipt:\n%s", got)
	}
	recs := r.records(t)
	if in := recs[1].Intent; in.Kind != store.KindRefund || in.Original != sale.TxnID || in.ProcessingCode != "200000" {
		t.Errorf("refund intent = %+v", in)
	}
	r.checkNoCardData(t)
}

func TestRefundPartialsThenOverRemainder(t *testing.T) {
	ev := []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")}
	r := newRig(t, ev, hostFaults{opts: withRefunds(terminal.RefundPolicy{})})
	sale := r.sale(t, 3000)
	if a := r.refund(t, sale.POITransactionID, 1000); !a.Approved {
		t.Fatalf("first refund = %+v", a)
	}
	if b := r.refund(t, sale.POITransactionID, 1500); !b.Approved {
		t.Fatalf("second refund = %+v", b)
	}
	n := r.sentCount()
	notAllowed(t, r.refund(t, sale.POITransactionID, 1000), "above what remains")
	if r.sentCount() != n {
		t.Errorf("the refused refund was sent")
	}
	if len(r.records(t)) != 3 {
		t.Errorf("journal holds %d records, want 3", len(r.records(t)))
	}
	// A sale with refunds cannot be voided as well.
	if _, err := r.term.Void(context.Background(), sale.POITransactionID, "till"); err == nil || !strings.Contains(err.Error(), "refunds") {
		t.Errorf("void of a refunded sale: %v", err)
	}
}

func TestRefundWrongCardRefused(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(otherT1, otherT2), pin("1234")}, hostFaults{opts: withRefunds(terminal.RefundPolicy{})})
	sale := r.sale(t, 2500)
	other, _ := r.host.Balance("5413330089020011")
	res := r.refund(t, sale.POITransactionID, 2500)
	notAllowed(t, res, "not the card of the original")
	if r.sentCount() != 1 || len(r.records(t)) != 1 {
		t.Errorf("%d requests sent, %d records; want only the sale's", r.sentCount(), len(r.records(t)))
	}
	if b, _ := r.host.Balance("5413330089020011"); b != other {
		t.Errorf("the other card's balance moved: %d -> %d", other, b)
	}
}

func TestRefundBadOriginalsRefused(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("9999")}, hostFaults{opts: withRefunds(terminal.RefundPolicy{})})
	voided := r.sale(t, 1000)
	if _, err := r.term.Void(context.Background(), voided.POITransactionID, "till"); err != nil {
		t.Fatal(err)
	}
	declined := r.sale(t, 1000)
	if declined.Approved {
		t.Fatalf("wrong PIN sale approved: %+v", declined)
	}
	n := r.sentCount()
	for _, c := range []struct{ orig, want string }{
		{voided.POITransactionID, "was voided"},
		{declined.POITransactionID, "was declined"},
		{"TERM0001-00000077", "unknown"},
		{"OTHER001-00000001", "not a transaction of this terminal"},
	} {
		notAllowed(t, r.refund(t, c.orig, 500), c.want)
	}
	if r.sentCount() != n {
		t.Errorf("a refused refund was sent")
	}
}

func TestRefundUnhashedOriginalRefused(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{})
	sale := r.sale(t, 1000)
	notAllowed(t, r.refund(t, sale.POITransactionID, 500), "without a card hash")
}

func TestRefundDisabled(t *testing.T) {
	r := newRig(t, nil, hostFaults{opts: withRefunds(terminal.RefundPolicy{Disabled: true, Unlinked: true})})
	notAllowed(t, r.refund(t, "", 500), "refund.enabled")
}

func TestRefundUnlinkedOffByDefault(t *testing.T) {
	r := newRig(t, nil, hostFaults{opts: withRefunds(terminal.RefundPolicy{})})
	notAllowed(t, r.refund(t, "", 500), "refund.unlinked")
	if r.sentCount() != 0 {
		t.Errorf("sent")
	}
}

func TestRefundUnlinkedLimits(t *testing.T) {
	ev := []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(otherT1, otherT2), pin("1234")}
	r := newRig(t, ev, hostFaults{opts: withRefunds(terminal.RefundPolicy{Unlinked: true, MaxMinor: 5000, DailyMaxMinor: 8000})})
	notAllowed(t, r.refund(t, "", 5001), "refund.max_minor")
	before, _ := r.host.Balance(cardPAN)
	if a := r.refund(t, "", 4000); !a.Approved || a.Receipt.Customer == nil {
		t.Fatalf("first unlinked refund = %+v", a)
	}
	if after, _ := r.host.Balance(cardPAN); after != before+4000 {
		t.Errorf("balance %d, want %d", after, before+4000)
	}
	if b := r.refund(t, "", 4000); !b.Approved {
		t.Fatalf("second unlinked refund = %+v", b)
	}
	notAllowed(t, r.refund(t, "", 1), "refund.daily_max_minor")
	if n := r.sentCount(); n != 2 {
		t.Errorf("%d requests sent, want 2", n)
	}
}

func TestRefundTimeoutReversedNeverOffline(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(sigT1, sigT2), swipe(sigT1, sigT2)}, hostFaults{sealer: newGCM(t), offline: terminal.DefaultOfflinePolicy(),
		opts: withRefunds(terminal.RefundPolicy{}),
		dropFn: func(m *iso8583.Message) bool {
			pc, _ := m.GetString(3)
			mti, _ := m.GetMTI()
			return mti == "0200" && strings.HasPrefix(pc, "20")
		}})
	sale := r.sale(t, 1500)
	if !sale.Approved {
		t.Fatalf("sale = %+v", sale)
	}
	before, _ := r.host.Balance(cardPAN)
	res := r.refund(t, sale.POITransactionID, 1000)
	if res.Approved || res.ApprovedOffline || res.Condition != terminal.CondInProgress || !strings.Contains(res.Message, "never approved offline") {
		t.Fatalf("refund = %+v", res)
	}
	items, _ := r.st.List(context.Background())
	if len(items) != 1 || items[0].Kind != store.KindReversal {
		t.Fatalf("queue = %+v", items)
	}
	// Until its reversal is acknowledged, the unknown refund counts against the sale.
	notAllowed(t, r.refund(t, sale.POITransactionID, 1000), "above what remains")
	drain(t, r)
	recs := r.records(t)
	if out := recs[1].Outcome; out.State != store.StateUnknown || out.Reversed == nil {
		t.Errorf("refund record = %+v", out)
	}
	if after, _ := r.host.Balance(cardPAN); after != before {
		t.Errorf("balance %d, want %d: the dropped refund stands", after, before)
	}
}

func TestVoidOfRefundReversesIt(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")}, hostFaults{sealer: newGCM(t), opts: withRefunds(terminal.RefundPolicy{})})
	sale := r.sale(t, 3000)
	before, _ := r.host.Balance(cardPAN)
	ref := r.refund(t, sale.POITransactionID, 3000)
	if !ref.Approved {
		t.Fatalf("refund = %+v", ref)
	}
	if _, err := r.term.Void(context.Background(), ref.POITransactionID, "till"); err != nil {
		t.Fatal(err)
	}
	items, _ := r.st.List(context.Background())
	if len(items) != 1 || items[0].Kind != store.KindReversal {
		t.Fatalf("queue = %+v", items)
	}
	if st := drain(t, r); st.Acked != 1 {
		t.Fatalf("drain = %+v", st)
	}
	var refundCharge *int
	for i, c := range r.host.Charges() {
		if c.Credit {
			refundCharge = &i
			if !c.Reversed || c.AmountMinor != 3000 {
				t.Errorf("refund at the host = %+v", c)
			}
		}
	}
	if refundCharge == nil {
		t.Errorf("no credit at the host: %+v", r.host.Charges())
	}
	if after, _ := r.host.Balance(cardPAN); after != before {
		t.Errorf("balance %d after the voided refund, want %d", after, before)
	}
	// The reversal carried the refund's processing code.
	var pc string
	r.sent.mu.Lock()
	for _, m := range r.sent.msgs {
		if mti, _ := m.GetMTI(); mti == "0400" || mti == "0420" {
			pc, _ = m.GetString(3)
		}
	}
	r.sent.mu.Unlock()
	if pc != terminal.ProcessingCodeRefund {
		t.Errorf("reversal processing code %q, want %s", pc, terminal.ProcessingCodeRefund)
	}
	// The voided refund gives the amount back: the sale can be refunded again.
	recs, err := r.st.RefundsOf(context.Background(), sale.TxnID)
	if err != nil || len(recs) != 1 {
		t.Fatalf("refunds of the sale = %+v, %v", recs, err)
	}
}

func TestRefundRepeatGetsTheFirstAnswer(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")}, hostFaults{opts: withRefunds(terminal.RefundPolicy{})})
	ctx := context.Background()
	sale := r.sale(t, 2000)
	req := tillReq("S1", "RF-1", 800)
	req.Original = sale.POITransactionID
	first, err := r.term.Refund(ctx, req)
	if err != nil || !first.Approved {
		t.Fatalf("first: %+v, %v", first, err)
	}
	again, err := r.term.Refund(ctx, req)
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Errorf("repeat = %+v, %v\nwant %+v", again, err, first)
	}
	// The same key as a sale is another request.
	if _, err := r.term.Sale(ctx, tillReq("S1", "RF-1", 800)); err == nil {
		t.Errorf("a sale under the refund's key ran")
	}
	t2, err := terminal.New(r.pp, r.pp, r.pins, r.sent, r.st, r.topts)
	if err != nil {
		t.Fatal(err)
	}
	again, err = t2.Refund(ctx, req)
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Errorf("repeat after a restart = %+v, %v\nwant %+v", again, err, first)
	}
	st, err := t2.TransactionStatus(ctx, store.ServiceKey("TILL", "S1"))
	if err != nil || !reflect.DeepEqual(st.Result, first) || !st.Request.Refund || st.Request.Original != sale.POITransactionID {
		t.Errorf("status after a restart = %+v, %v", st, err)
	}
	if n := r.financial(); n != 2 {
		t.Errorf("%d financial requests, want 2", n)
	}
}

// A linked refund of a sale whose batch is closed (settled with the acquirer) is refused
// unless RefundPolicy.AfterClose: the "in a closed batch (unless allowed)".
func TestRefundAfterTheClose(t *testing.T) {
	ev := []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")}
	r := newRig(t, ev, hostFaults{opts: withRefunds(terminal.RefundPolicy{})})
	sale := r.sale(t, 3000)
	if !sale.Approved {
		t.Fatalf("sale = %+v", sale)
	}
	if _, err := r.term.Close(context.Background(), "test"); err != nil {
		t.Fatalf("close: %v", err)
	}
	// Nor can it be voided: it is settled; a refund is the way.
	if _, err := r.term.Void(context.Background(), sale.POITransactionID, "test"); !errors.Is(err, store.ErrNotVoidable) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("void after the close: %v, want ErrNotVoidable naming the closed batch", err)
	}
	res, err := r.term.Refund(context.Background(), terminal.SaleRequest{SaleID: "TILL", SaleTransactionID: "REF-1",
		Original: sale.POITransactionID, Refund: true, Amount: money.Amount{Minor: 1000, Currency: eur}})
	if err != nil || res.Approved || !strings.Contains(res.Message, "closed") {
		t.Fatalf("refund after the close = %+v, %v; want refused naming the closed batch", res, err)
	}

	r2 := newRig(t, ev, hostFaults{opts: withRefunds(terminal.RefundPolicy{AfterClose: true})})
	sale = r2.sale(t, 3000)
	if _, err := r2.term.Close(context.Background(), "test"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if res := r2.refund(t, sale.POITransactionID, 1000); !res.Approved {
		t.Errorf("refund after the close with AfterClose = %+v", res)
	}
}
