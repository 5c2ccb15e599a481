package terminal_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/padsim"
)

func aesDialect(t *testing.T) *iso8583.Dialect {
	t.Helper()
	d, err := iso8583.LoadDialect("../iso8583/dialects/aes-pin.json")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A sale with an AES DUKPT pad over the AES PIN dialect: the 16-byte format 4 block goes in
// field 52 with its 24-digit KSN in field 62, the host approves the right PIN and declines
// a wrong one with 55, and no block shows in the logs.
func TestSaleAESDUKPT(t *testing.T) {
	d := aesDialect(t)
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("4321")}, hostFaults{aes: true, dialect: d})
	res := r.sale(t, 1250)
	if !res.Approved || res.ResponseCode != "00" || !res.PINEntered {
		t.Fatalf("right PIN: %+v", res)
	}
	res = r.sale(t, 3000)
	if res.Approved || res.Condition != terminal.CondWrongPIN || res.ResponseCode != "55" {
		t.Fatalf("wrong PIN: %+v", res)
	}
	var blocks []string
	for n := range 2 {
		r.sent.mu.Lock()
		m := r.sent.msgs[n]
		r.sent.mu.Unlock()
		if m.GetSpec() != d.Spec {
			t.Errorf("request %d is not built on the AES dialect", n+1)
		}
		block, _ := m.GetBytes(52)
		ksn := r.sent.field(t, n, 62)
		if len(block) != 16 || len(ksn) != 24 || !strings.HasPrefix(ksn, "FFFF9876543210E0") {
			t.Fatalf("request %d: %d-byte block, KSN %q", n+1, len(block), ksn)
		}
		// The host's view: the block decrypts to the PIN typed.
		k, _ := dukpt.ParseAESKSN(ksn)
		bdk, _ := hex.DecodeString(testAESBDK)
		key, _ := dukpt.AESWorkingKey(bdk, k, dukpt.UsagePINEncryption, dukpt.KeyAES128)
		field, _ := pinblock.DecryptFormat4(key, [16]byte(block), "4761739001010010")
		got, err := pinblock.Decode(pinblock.Format4, field[:], "4761739001010010")
		if want := []string{"1234", "4321"}[n]; err != nil || got != want {
			t.Errorf("request %d: the block does not hold the PIN typed (%v)", n+1, err)
		}
		blocks = append(blocks, hex.EncodeToString(block), string(block))
	}
	recs := r.records(t)
	if len(recs) != 2 || recs[0].Outcome.State != store.StateApproved || recs[1].Outcome.ResponseCode != "55" {
		t.Fatalf("journal = %+v", recs)
	}
	if len(r.host.Ledger()) != 1 {
		t.Errorf("ledger %v", r.host.Ledger())
	}
	r.checkNoCardData(t, blocks...)
}

// An AES pad with the default dialect (field 52 of 8 bytes): the request cannot be built,
// nothing is sent, and the journal says why, naming field 52 and both lengths.
func TestSaleAESPINBlockDoesNotFitDialect(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234")}, hostFaults{aes: true})
	_, err := r.term.Sale(t.Context(), terminal.SaleRequest{SaleID: "TILL", SaleTransactionID: t.Name(), Amount: money.Amount{Minor: 1250, Currency: eur}})
	if err == nil || !strings.Contains(err.Error(), "field 52") || !strings.Contains(err.Error(), "16 bytes") || !strings.Contains(err.Error(), "exactly 8") {
		t.Fatalf("Sale: %v, want an error naming field 52, 16 bytes and 8", err)
	}
	r.sent.mu.Lock()
	n := len(r.sent.msgs)
	r.sent.mu.Unlock()
	if n != 0 {
		t.Errorf("%d requests sent", n)
	}
	recs := r.records(t)
	if len(recs) != 1 || recs[0].Outcome == nil || recs[0].Outcome.State != store.StateNotSent || !strings.Contains(recs[0].Outcome.Reason, "field 52") {
		t.Fatalf("journal = %+v", recs)
	}
	if len(r.host.Charges()) != 0 {
		t.Error("the host saw the sale")
	}
}

// A chip card's online PIN with an AES pad: GOC asks for PIN method 4 and the format 4
// block goes in the 16-byte field 52.
func TestChipSaleOnlineWithAESPIN(t *testing.T) {
	d := aesDialect(t)
	r := newRig(t, []padsim.Event{insert(padsim.Chip{OnlinePIN: true}), pin("1234"), insert(padsim.Chip{OnlinePIN: true}), pin("9999")},
		hostFaults{aes: true, dialect: d})
	res := r.sale(t, 2500)
	if !res.Approved || !res.Chip || !res.PINEntered || res.ResponseCode != "00" {
		t.Fatalf("right PIN: %+v", res)
	}
	res = r.sale(t, 2600)
	if res.Approved || res.ResponseCode != "55" || res.Condition != terminal.CondWrongPIN {
		t.Fatalf("wrong PIN: %+v", res)
	}
	r.sent.mu.Lock()
	block, _ := r.sent.msgs[0].GetBytes(52)
	r.sent.mu.Unlock()
	if len(block) != 16 || len(r.sent.field(t, 0, 62)) != 24 {
		t.Fatalf("field 52 is %d bytes, field 62 %q", len(block), r.sent.field(t, 0, 62))
	}
	r.checkNoCardData(t, hex.EncodeToString(block), string(block))
}
