package terminal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

func insert(c padsim.Chip) padsim.Event {
	if c.PAN == "" {
		c.PAN = "4761739001010010"
	}
	return padsim.Event{Insert: &c}
}

func TestChipSaleOnlineWithPIN(t *testing.T) {
	r := newRig(t, []padsim.Event{insert(padsim.Chip{OnlinePIN: true}), pin("1234")}, hostFaults{})
	res := r.sale(t, 2500)
	if !res.Approved || !res.Chip || res.EntryMode != "051" || !res.PINEntered || res.ResponseCode != "00" {
		t.Fatalf("result = %+v", res)
	}
	ch := r.host.Charges()
	if len(ch) != 1 || !ch[0].Approved || ch[0].Reversed {
		t.Errorf("host = %+v", ch)
	}
	// On the wire: entry mode 051, card sequence number (field 23), the card's data (55)
	// with its cryptogram (9F26).
	if f22, f23, f55 := r.sent.field(t, 0, 22), r.sent.field(t, 0, 23), r.sent.field(t, 0, 55); f22 != "051" || f23 != "001" || !strings.Contains(f55, "9F26") {
		t.Errorf("fields 22=%q 23=%q 55 has 9F26: %v", f22, f23, strings.Contains(f55, "9F26"))
	}
	r.checkNoCardData(t, pinBlocks(t, "4761739001010010", "1234")...)
}

func TestChipCardSwipedIsAskedForTheChip(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe("", "4761739001010010=30122010000000000"), insert(padsim.Chip{})}, hostFaults{})
	res := r.sale(t, 900)
	if !res.Approved || !res.Chip {
		t.Fatalf("result = %+v", res)
	}
}

func TestChipDeclinesAfterHostApproval(t *testing.T) {
	r := newRig(t, []padsim.Event{insert(padsim.Chip{Finish: "decline"})}, hostFaults{sealer: newGCM(t)})
	res := r.sale(t, 3300)
	if res.Approved || res.Condition != terminal.CondRefusal || !strings.Contains(res.Message, "declined after the acquirer approved") {
		t.Fatalf("result = %+v", res)
	}
	items, _ := r.st.List(context.Background())
	if len(items) != 1 || items[0].Kind != store.KindReversal {
		t.Fatalf("queue = %+v", items)
	}
	if st := drain(t, r); st.Acked != 1 {
		t.Fatalf("drain = %+v", st)
	}
	if n := charged(r.host.Charges()); n != 0 {
		t.Errorf("%d charges stand at the host after the reversal: %+v", n, r.host.Charges())
	}
	rec := r.records(t)[0]
	if rec.Outcome.State != store.StateApproved || rec.Outcome.Voided == nil || rec.Outcome.Reversed == nil {
		t.Errorf("journal = %+v", rec.Outcome)
	}
}

func TestChipFallbackToSwipe(t *testing.T) {
	r := newRig(t, []padsim.Event{{ChipFault: "fallback"}, swipe("", "4761739001010010=30122010000000000")}, hostFaults{})
	res := r.sale(t, 1100)
	if !res.Approved || res.EntryMode != "801" || res.Chip {
		t.Fatalf("result = %+v", res)
	}
	if rec := r.records(t)[0]; rec.Intent.EntryMode != "801" {
		t.Errorf("journal entry mode %q, want 801", rec.Intent.EntryMode)
	}
}

func TestChipDeclinedOfflineStaysOffline(t *testing.T) {
	r := newRig(t, []padsim.Event{insert(padsim.Chip{Decision: "decline"})}, hostFaults{})
	res := r.sale(t, 1100)
	if res.Approved || res.Condition != terminal.CondRefusal || res.TxnID != 0 {
		t.Fatalf("result = %+v", res)
	}
	if len(r.host.Charges()) != 0 {
		t.Error("an offline decline reached the host")
	}
}

func TestChipApprovedOfflineIsAdvised(t *testing.T) {
	r := newRig(t, []padsim.Event{insert(padsim.Chip{Decision: "approve"})}, hostFaults{sealer: newGCM(t)})
	res := r.sale(t, 1500)
	if !res.Approved || !res.ApprovedOffline {
		t.Fatalf("result = %+v", res)
	}
	if st := drain(t, r); st.Acked != 1 {
		t.Fatalf("drain = %+v", st)
	}
	ch := r.host.Charges()
	if len(ch) != 1 || ch[0].MTI != "0220" || !ch[0].Approved {
		t.Errorf("host = %+v", ch)
	}
}
