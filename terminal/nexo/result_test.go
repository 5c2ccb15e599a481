package nexo

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/money"
)

// FromResult tells the till how the card was read (EntryMode), how the cardholder was
// verified (AuthenticationMethod) and the card's brand, from the sale's result.
func TestFromResultCardData(t *testing.T) {
	eur, _ := money.LookupCurrency("EUR")
	p := Payment{Header: MessageHeader{SaleID: "TILL1", ServiceID: "S1", POIID: poiid}, Amount: money.Amount{Minor: 1250, Currency: eur}}
	base := terminal.SaleResult{POITransactionID: "TERM0001-00000001", Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
		Amount: p.Amount, Approved: true, ResponseCode: "00", ApprovalCode: "123456", STAN: 7}
	for _, tc := range []struct {
		name   string
		set    func(r *terminal.SaleResult)
		entry  []string
		auth   []string
		brand  string
		noAuth bool   // AuthenticationMethod absent from the JSON
		ff     string // CardData.FormFactor, posd's addition
	}{
		{"chip online PIN, Mastercard by AID", func(r *terminal.SaleResult) {
			r.MaskedPAN, r.Chip, r.EntryMode, r.CVM, r.PINEntered = "601100******0004", true, "051", terminal.CVMOnlinePIN, true
			r.ChipData = terminal.ChipData{AID: "A0000000041010"}
		}, []string{"ICC"}, []string{"OnlinePIN"}, "Mastercard", false, ""},
		{"chip offline PIN and signature, Visa", func(r *terminal.SaleResult) {
			r.MaskedPAN, r.Chip, r.EntryMode, r.CVM, r.SignatureRequired = "476173******0010", true, "051", terminal.CVMOfflinePIN, true
			r.ChipData = terminal.ChipData{AID: "A0000000031010"}
		}, []string{"ICC"}, []string{"OfflinePIN", "PaperSignature"}, "Visa", false, ""},
		{"swipe signature card, Amex by BIN", func(r *terminal.SaleResult) {
			r.MaskedPAN, r.EntryMode, r.SignatureRequired = "371449******8431", "021", true
		}, []string{"MagStripe"}, []string{"PaperSignature"}, "Amex", false, ""},
		{"fallback swipe with PIN, Mastercard 2-series", func(r *terminal.SaleResult) {
			r.MaskedPAN, r.EntryMode, r.CVM, r.PINEntered = "222100******0009", "801", terminal.CVMOnlinePIN, true
		}, []string{"MagStripe"}, []string{"OnlinePIN"}, "Mastercard", false, ""},
		{"chip without CVM, brand unknown", func(r *terminal.SaleResult) {
			r.MaskedPAN, r.Chip, r.EntryMode = "601100******0004", true, "051"
			r.ChipData = terminal.ChipData{AID: "A0000001523010"}
		}, []string{"ICC"}, nil, "", true, ""},
		{"tap with a form factor, Visa", func(r *terminal.SaleResult) {
			r.MaskedPAN, r.Chip, r.EntryMode = "476173******0010", true, "071"
			r.ChipData = terminal.ChipData{AID: "A0000000031010", FormFactor: "20700000"}
		}, []string{"Contactless"}, nil, "Visa", true, "20700000"},
		{"chip card with a 9F6E is no tap: no form factor", func(r *terminal.SaleResult) {
			r.MaskedPAN, r.Chip, r.EntryMode = "476173******0010", true, "051"
			r.ChipData = terminal.ChipData{AID: "A0000000031010", FormFactor: "20700000"}
		}, []string{"ICC"}, nil, "Visa", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			tc.set(&r)
			resp := FromResult(p, r, "MERCHANT0001")
			pr := resp.PaymentResponse.PaymentResult
			if pr == nil {
				t.Fatal("no PaymentResult")
			}
			cd := pr.PaymentInstrumentData.CardData
			if !reflect.DeepEqual(cd.EntryMode, tc.entry) || !reflect.DeepEqual(pr.AuthenticationMethod, tc.auth) || cd.PaymentBrand != tc.brand {
				t.Errorf("EntryMode %q AuthenticationMethod %q PaymentBrand %q, want %q %q %q", cd.EntryMode, pr.AuthenticationMethod, cd.PaymentBrand, tc.entry, tc.auth, tc.brand)
			}
			b, err := json.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(b), `"AuthenticationMethod"`); got == tc.noAuth {
				t.Errorf("AuthenticationMethod in the JSON: %v, want %v: %s", got, !tc.noAuth, b)
			}
			if cd.FormFactor != tc.ff || (tc.ff == "") == strings.Contains(string(b), `"FormFactor"`) {
				t.Errorf("FormFactor %q, want %q: %s", cd.FormFactor, tc.ff, b)
			}
			if tc.brand == "" && strings.Contains(string(b), `"PaymentBrand"`) {
				t.Errorf("PaymentBrand sent though unknown: %s", b)
			}
		})
	}
}
