package terminal

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/emv"
	"github.com/posd-dev/posd/terminal/money"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/receipts")

// receiptCase is a sale's result as the receipt builder gets it, with what its copies must
// and must not say beside the golden file.
type receiptCase struct {
	name     string
	res      SaleResult
	merchant []string // lines the merchant copy must carry
	never    []string // text neither copy may carry
}

func receiptCases() []receiptCase {
	eur, _ := money.LookupCurrency("EUR")
	at := time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC)
	sale := func(minor int64) SaleResult {
		return SaleResult{TxnID: 1, POITransactionID: "TERM0001-00000001", Time: at, Amount: money.Amount{Minor: minor, Currency: eur}}
	}
	approved := func(r SaleResult) SaleResult {
		r.Approved, r.ResponseCode, r.ApprovalCode, r.RRN, r.STAN, r.Message = true, "00", "A1B2C3", "632510000042", 42, "approved"
		return r
	}
	swipe := func(r SaleResult, entry string) SaleResult {
		r.MaskedPAN, r.EntryMode = "476173******0010", entry
		return r
	}
	chip := func(r SaleResult) SaleResult {
		r.MaskedPAN, r.EntryMode, r.Chip = "541333******0011", "051", true
		r.ChipData = ChipData{AID: "A0000000041010", AppLabel: "MASTERCARD", TVR: "0000008000", TSI: "E800", Cryptogram: "ARQC 1A2B3C4D"}
		return r
	}
	tapped := func(r SaleResult, ff string) SaleResult {
		r.MaskedPAN, r.EntryMode, r.Chip = "476173******0010", "071", true
		r.ChipData = ChipData{AID: "A0000000031010", AppLabel: "VISA CREDIT", TVR: "0000000000", TSI: "0000", Cryptogram: "ARQC 5E6F7A8B", FormFactor: ff}
		return r
	}
	pinned := func(r SaleResult) SaleResult { r.PINEntered, r.CVM = true, CVMOnlinePIN; return r }
	signed := func(r SaleResult) SaleResult { r.SignatureRequired = true; return r }

	declined := swipe(sale(3000), "021")
	declined.STAN, declined.ResponseCode, declined.Condition = 43, "51", CondRefusal
	declined.Message = "declined by the issuer: not sufficient funds (51)"

	chipDeclined := pinned(chip(sale(4000)))
	chipDeclined.STAN, chipDeclined.ResponseCode, chipDeclined.Condition = 44, "05", CondRefusal
	chipDeclined.Message = "declined by the issuer: do not honour (05)"

	noConn := pinned(swipe(sale(1250), "021"))
	noConn.STAN, noConn.Condition = 45, CondUnreachableHost
	noConn.Message = "acquirer unreachable, nothing was charged; not approved offline: offline approval is not enabled on this terminal"

	cancel := sale(990)
	cancel.Condition, cancel.Message = CondCancel, "cancelled by the customer during card read"

	device := swipe(sale(990), "021")
	device.Condition, device.Message = CondUnavailableDevice, "PIN entry failed: hsm: device: abecs: pad answered 040 (internal error)"

	expired := swipe(sale(500), "021")
	expired.Condition, expired.Message, expired.refusal = CondRefusal, "card refused: expired (valid through 2212)", "CARD EXPIRED"

	partial := approved(pinned(swipe(sale(2000), "021")))
	partial.AuthorizedMinor = 1450

	return []receiptCase{
		{"swipe_pin_approved", approved(pinned(swipe(sale(1250), "021"))), []string{"PIN VERIFIED", "NO SIGNATURE REQUIRED"}, []string{"\n" + center("SIGNATURE REQUIRED") + "\n", SignatureLine, "CHIP"}},
		{"swipe_pin_refund_approved", func() SaleResult { r := approved(pinned(swipe(sale(1250), "021"))); r.Refund = true; return r }(), []string{"REFUND", "PIN VERIFIED"}, []string{"SALE"}},
		{"swipe_signature_approved", approved(signed(swipe(sale(1250), "021"))), []string{"SIGNATURE REQUIRED", SignatureLine}, []string{"PIN VERIFIED"}},
		{"chip_online_pin_approved", approved(pinned(chip(sale(2500)))), []string{"PIN VERIFIED", "NO SIGNATURE REQUIRED"}, []string{"SWIPE", SignatureLine}},
		{"chip_offline_pin_signature_approved", approved(func() SaleResult { r := signed(chip(sale(2500))); r.CVM = CVMOfflinePIN; return r }()), []string{"OFFLINE PIN VERIFIED", "SIGNATURE REQUIRED", SignatureLine}, nil},
		{"tap_form_factor_approved", approved(tapped(sale(1250), "20700000")), []string{"CONTACTLESS", "FORM FACTOR             20700000", "NO CVM"}, []string{"CHIP", "PIN VERIFIED", SignatureLine}},
		{"tap_third_party_data_approved", approved(tapped(sale(1250), strings.Repeat("0123456789ABCDEF", 4))), []string{"FORM FACTOR\n0123456789ABCDEF0123456789ABCDEF\n0123456789ABCDEF0123456789ABCDEF\n"}, nil},
		{"chip_no_cvm_approved", approved(chip(sale(800))), []string{"NO CVM"}, []string{"PIN VERIFIED", SignatureLine}},
		{"chip_declined", chipDeclined, []string{"DO NOT HONOUR"}, []string{chipDeclined.Message, "PIN VERIFIED", "APPROVED"}},
		{"fallback_swipe_approved", approved(signed(swipe(sale(1100), "801"))), []string{"SIGNATURE REQUIRED", SignatureLine}, []string{"PIN VERIFIED"}},
		{"swipe_declined", declined, []string{"INSUFFICIENT FUNDS"}, []string{declined.Message, "PIN VERIFIED", "APPROVED"}},
		{"no_connection", noConn, nil, []string{noConn.Message, "offline approval", "PIN VERIFIED"}},
		{"customer_cancel", cancel, nil, []string{cancel.Message, "PIN VERIFIED", "NO CVM"}},
		{"device_fault", device, nil, []string{"abecs", "hsm:", "040", "failed"}},
		{"card_expired", expired, nil, []string{expired.Message, "2212"}},
		{"partial_approval", partial, []string{"PIN VERIFIED"}, []string{partial.Message}},
	}
}

// The receipts of each card type and outcome, against testdata/receipts/*.golden
// (go test -run TestReceiptGolden -update rewrites them).
func TestReceiptGolden(t *testing.T) {
	term := &Terminal{opts: Options{MerchantName: "POSD MERCHANT", MerchantID: "MERCHANT0001", TerminalID: "TERM0001"}}
	for _, tc := range receiptCases() {
		t.Run(tc.name, func(t *testing.T) {
			rc := term.receipt(tc.res)
			got := strings.Join(rc.Customer, "\n") + "\n-- \n" + strings.Join(rc.Merchant, "\n") + "\n"
			path := filepath.Join("testdata", "receipts", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("receipt differs from %s:\n%s\nwant:\n%s", path, got, want)
			}
			for _, l := range append(rc.Customer, rc.Merchant...) {
				if len(l) > ReceiptWidth {
					t.Errorf("line %q is wider than %d", l, ReceiptWidth)
				}
			}
			merch := strings.Join(rc.Merchant, "\n") + "\n"
			for _, s := range tc.merchant {
				if !strings.Contains(merch, s) {
					t.Errorf("merchant copy lacks %q:\n%s", s, merch)
				}
			}
			for _, s := range tc.never {
				if strings.Contains(got, s) {
					t.Errorf("a copy carries %q:\n%s", s, got)
				}
			}
			cust := strings.Join(rc.Customer, "\n")
			for _, s := range []string{SignatureLine, "PIN VERIFIED", "NO CVM"} {
				if strings.Contains(cust, s) {
					t.Errorf("customer copy carries %q", s)
				}
			}
		})
	}
}

func chipAuth(t *testing.T, objs ...emv.Object) ChipAuth {
	t.Helper()
	d, err := emv.New(objs...)
	if err != nil {
		t.Fatal(err)
	}
	return ChipAuth{Data: d}
}

func hexv(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The receipt's chip facts come from the card's data: 4F before 84, 50 before 9F12, TVR,
// TSI, and the cryptogram's type with the first 8 hex digits of 9F26; junk is left out.
func TestReceiptChipDataOf(t *testing.T) {
	ac := []byte{0x1A, 0x2B, 0x3C, 0x4D, 0x5E, 0x6F, 0x70, 0x81}
	a := chipAuth(t,
		emv.Object{Tag: "84", Value: []byte{0xA0, 0, 0, 0, 0x03, 0x10, 0x10}},
		emv.Object{Tag: "4F", Value: []byte{0xA0, 0, 0, 0, 0x04, 0x10, 0x10}},
		emv.Object{Tag: "9F12", Value: []byte("PREFERRED")},
		emv.Object{Tag: "50", Value: []byte("MASTERCARD ")},
		emv.Object{Tag: "95", Value: []byte{0, 0, 0, 0x80, 0}},
		emv.Object{Tag: "9B", Value: []byte{0xE8, 0}},
		emv.Object{Tag: "9F27", Value: []byte{0x80}},
		emv.Object{Tag: "9F26", Value: ac},
	)
	want := ChipData{AID: "A0000000041010", AppLabel: "MASTERCARD", TVR: "0000008000", TSI: "E800", Cryptogram: "ARQC 1A2B3C4D"}
	if got := chipDataOf(a.Data); got != want {
		t.Errorf("chipDataOf = %+v, want %+v", got, want)
	}
	b := chipAuth(t,
		emv.Object{Tag: "84", Value: []byte{0xA0, 0, 0, 0, 0x25, 0x01}},
		emv.Object{Tag: "50", Value: []byte{'A', 0x01}},
		emv.Object{Tag: "9F12", Value: []byte("AMEX")},
		emv.Object{Tag: "95", Value: []byte{0, 0}},
		emv.Object{Tag: "9F27", Value: []byte{0x40}},
		emv.Object{Tag: "9F26", Value: ac},
	)
	want = ChipData{AID: "A00000002501", AppLabel: "AMEX", Cryptogram: "TC 1A2B3C4D"}
	if got := chipDataOf(b.Data); got != want {
		t.Errorf("chipDataOf = %+v, want %+v", got, want)
	}
}

// The CVM comes from what happened: the pad's online PIN, the card's CVM results (9F34),
// the pad's signature flag.
func TestReceiptChipCVM(t *testing.T) {
	for _, tc := range []struct {
		cvmResults string
		padSig     bool
		want       CVM
		sig        bool
	}{
		{"1F0302", false, CVMNone, false},       // no CVM
		{"410302", false, CVMOfflinePIN, false}, // plaintext offline PIN, successful
		{"440302", false, CVMOfflinePIN, false}, // enciphered offline PIN, successful
		{"410301", false, CVMNone, false},       // offline PIN failed
		{"5E0300", false, CVMNone, true},        // signature
		{"050300", false, CVMOfflinePIN, true},  // enciphered offline PIN and signature
		{"1F0302", true, CVMNone, true},         // the pad says signature
		{"3F0001", false, CVMNone, false},       // CVM failed
	} {
		a := chipAuth(t, emv.Object{Tag: "9F34", Value: hexv(t, tc.cvmResults)})
		a.SignatureRequired = tc.padSig
		if cvm, sig := chipCVM(a); cvm != tc.want || sig != tc.sig {
			t.Errorf("9F34 %s, pad signature %v: %q, %v; want %q, %v", tc.cvmResults, tc.padSig, cvm, sig, tc.want, tc.sig)
		}
	}
}

func TestReceiptBrand(t *testing.T) {
	for _, tc := range []struct{ pan, aid, want string }{
		{"476173******0010", "", "Visa"},
		{"541333******0011", "", "Mastercard"},
		{"222100******0009", "", "Mastercard"},
		{"272099******0001", "", "Mastercard"},
		{"272100******0000", "", ""},
		{"371449******8431", "", "Amex"},
		{"340000******0009", "", "Amex"},
		{"601100******0004", "", ""},
		{"601100******0004", "A0000000041010", "Mastercard"},
		{"", "", ""},
	} {
		r := SaleResult{MaskedPAN: tc.pan, ChipData: ChipData{AID: tc.aid}}
		if got := r.Brand(); got != tc.want {
			t.Errorf("Brand(%q, %q) = %q, want %q", tc.pan, tc.aid, got, tc.want)
		}
	}
}
