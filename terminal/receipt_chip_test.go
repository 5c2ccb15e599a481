package terminal_test

import (
	"context"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/emv"
	"github.com/posd-dev/posd/terminal/padsim"
)

// A chip sale through the PIN pad simulator: its receipt shows how the card was read and
// verified and the card's own AID, label, TVR, TSI and ARQC (the one sent in field 55); the
// journal keeps them, so the answer rebuilt for TransactionStatus and after a restart is the
// same, receipt included.
func TestReceiptChipSaleThroughThePad(t *testing.T) {
	const pan = "5413330089020011"
	r := newRig(t, []padsim.Event{insert(padsim.Chip{PAN: pan, AID: "A0000000041010", Label: "MC DEBIT", OnlinePIN: true}), pin("1234")},
		hostFaults{cards: []hostsim.Card{{PAN: pan, PIN: "1234", BalanceMinor: 100000, Expiry: "3012"}}})
	ctx := context.Background()
	first, err := r.term.Sale(ctx, tillReq("S1", "R-1", 2500))
	if err != nil || !first.Approved || !first.Chip {
		t.Fatalf("sale = %+v, %v", first, err)
	}
	// The cryptogram the card made, as the acquirer got it in field 55.
	f55, err := hex.DecodeString(r.sent.field(t, 0, 55))
	if err != nil {
		t.Fatal(err)
	}
	d, err := emv.Parse(f55)
	if err != nil {
		t.Fatal(err)
	}
	ac, ok := d.Value("9F26")
	if !ok || len(ac) != 8 {
		t.Fatalf("field 55 has no 9F26: %v", d)
	}
	arqc := strings.ToUpper(hex.EncodeToString(ac[:4]))
	want := terminal.ChipData{AID: "A0000000041010", AppLabel: "MC DEBIT", TVR: "0000008000", TSI: "E800", Cryptogram: "ARQC " + arqc}
	if first.ChipData != want || first.CVM != terminal.CVMOnlinePIN || first.SignatureRequired || first.Brand() != "Mastercard" {
		t.Errorf("chip data %+v, CVM %q, signature %v, brand %q; want %+v, OnlinePIN", first.ChipData, first.CVM, first.SignatureRequired, first.Brand(), want)
	}
	merch := strings.Join(first.Receipt.Merchant, "\n")
	for _, line := range []string{"ENTRY                       CHIP", "APP                     MC DEBIT", "AID               A0000000041010",
		"TVR                   0000008000", "TSI                         E800", "ARQC                    " + arqc, "PIN VERIFIED", "NO SIGNATURE REQUIRED"} {
		if !strings.Contains(merch, line) {
			t.Errorf("merchant copy lacks %q:\n%s", line, merch)
		}
	}
	if strings.Contains(merch, "SWIPE") {
		t.Errorf("a chip sale's receipt says SWIPE:\n%s", merch)
	}
	if rec := r.records(t)[0]; rec.Intent.AID != want.AID || rec.Intent.Cryptogram != want.Cryptogram || rec.Intent.CVM != "OnlinePIN" {
		t.Errorf("journal intent = %+v", rec.Intent)
	}

	st, err := r.term.TransactionStatus(ctx, store.SaleTxnKey("TILL", "R-1"))
	if err != nil || !reflect.DeepEqual(st.Result, first) {
		t.Errorf("status = %+v, %v\nwant %+v", st.Result, err, first)
	}
	t2, err := terminal.New(r.pp, r.pp, r.pins, r.sent, r.st, r.topts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := t2.Sale(ctx, tillReq("S1", "R-1", 2500))
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Errorf("repeat after a restart = %+v, %v\nwant %+v", again, err, first)
	}
	r.checkNoCardData(t, pinBlocks(t, pan, "1234")...)
}

// A swiped card whose service code asks for no PIN is a signature card: the merchant copy
// asks for a signature, also in the answer rebuilt from the journal.
func TestReceiptSignatureSwipeThroughThePad(t *testing.T) {
	r := newRig(t, []padsim.Event{swipe("", "4761739001010010=30121010000000000")}, hostFaults{})
	ctx := context.Background()
	first, err := r.term.Sale(ctx, tillReq("S1", "R-1", 1250))
	if err != nil || !first.Approved || first.PINEntered || !first.SignatureRequired || first.CVM != terminal.CVMNone {
		t.Fatalf("sale = %+v, %v", first, err)
	}
	merch := strings.Join(first.Receipt.Merchant, "\n")
	if !strings.Contains(merch, "SIGNATURE REQUIRED") || !strings.Contains(merch, terminal.SignatureLine) || strings.Contains(merch, "PIN VERIFIED") {
		t.Errorf("merchant copy:\n%s", merch)
	}
	st, err := r.term.TransactionStatus(ctx, store.SaleTxnKey("TILL", "R-1"))
	if err != nil || !reflect.DeepEqual(st.Result, first) {
		t.Errorf("status = %+v, %v\nwant %+v", st.Result, err, first)
	}
}

// A chip card swiped after its chip failed: the receipt says FALLBACK SWIPE, and its
// service code (201) asks for no PIN, so the merchant copy asks for a signature.
func TestReceiptFallbackSwipeThroughThePad(t *testing.T) {
	r := newRig(t, []padsim.Event{{ChipFault: "fallback"}, swipe("", "4761739001010010=30122010000000000")}, hostFaults{})
	res := r.sale(t, 1100)
	if !res.Approved || res.Chip || !res.SignatureRequired {
		t.Fatalf("result = %+v", res)
	}
	cust, merch := strings.Join(res.Receipt.Customer, "\n"), strings.Join(res.Receipt.Merchant, "\n")
	if !strings.Contains(cust, "FALLBACK SWIPE") || !strings.Contains(merch, terminal.SignatureLine) || strings.Contains(merch, "AID") {
		t.Errorf("customer copy:\n%s\nmerchant copy:\n%s", cust, merch)
	}
}
