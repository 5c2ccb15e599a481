package terminal

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/emv"
	"github.com/posd-dev/posd/terminal/money"
)

// ReceiptWidth is the number of characters on a receipt line (a 58 mm printer).
const ReceiptWidth = 32

// SignatureLine is where the cardholder signs the merchant copy.
const SignatureLine = "X______________________________"

// Receipt holds the printed lines of a sale for the customer and for the merchant. The PAN
// appears masked; of the card's chip only its application's identifier, label, TVR, TSI, the
// first half of its cryptogram and a tap's form factor (9F6E, in hex) are printed. Neither copy carries internal error text:
// a sale that did not complete says so with a short reason ("DECLINED", "NOT COMPLETED -
// NO CONNECTION"); the details are in the log and SaleResult.Message.
//
// A plain value: safe for concurrent use when not modified.
type Receipt struct {
	Customer []string
	Merchant []string
}

// CVM is how the cardholder was verified, in the vocabulary of nexo's AuthenticationMethod
// so that the till API can pass it on unchanged. A signature is not a CVM value of its own:
// it goes with one (SaleResult.SignatureRequired), since a card may ask for a PIN and a
// signature.
//
// A plain value: safe for concurrent use when not modified.
type CVM string

// Cardholder verification methods.
const (
	CVMNone       CVM = ""               // no PIN: the card asked for none, or a signature only
	CVMOnlinePIN  CVM = "OnlinePIN"      // a PIN for the issuer, checked with the authorization
	CVMOfflinePIN CVM = "OfflinePIN"     // a PIN the chip card checked itself (its CVM results, 9F34)
	CVMDevice     CVM = "ConsumerDevice" // a tap verified on the cardholder's phone or watch (CDCVM)
)

// ChipData is what a chip sale's receipt prints of the card's application, read from the
// data the card gave in its first cryptogram (GOC). None of it is card data: it may be
// logged and journaled.
//
// A plain value: safe for concurrent use when not modified.
type ChipData struct {
	AID        string // application identifier in hex (tag 4F, or 84)
	AppLabel   string // application label (50), or preferred name (9F12); printable ASCII
	TVR        string // terminal verification results in hex (95), 10 hex digits
	TSI        string // transaction status information in hex (9B), 4 hex digits
	Cryptogram string // the cryptogram's type (9F27) and first 8 hex digits (9F26): "ARQC 1A2B3C4D"
	// FormFactor is a tap's 9F6E in hex (1 to 32 bytes): Visa's form factor indicator
	// ("20700000": version 1, a card), Mastercard's third party data. Printed as it is,
	// since its meaning depends on the scheme.
	FormFactor string
}

// receiptTags are the tags the receipt needs that the DE 55 set does not ask the card for.
var receiptTags = []string{"4F", "50", "9F12", "9B"}

// chipDataOf reads the receipt's facts from a chip card's data. A value that is not what
// its tag holds (a wrong length, an unprintable label) is left out.
func chipDataOf(d emv.Data) ChipData {
	var c ChipData
	hexOf := func(tag string, min, max int) string {
		v, ok := d.Value(tag)
		if !ok || len(v) < min || len(v) > max {
			return ""
		}
		return strings.ToUpper(hex.EncodeToString(v))
	}
	if c.AID = hexOf("4F", 5, 16); c.AID == "" {
		c.AID = hexOf("84", 5, 16)
	}
	for _, tag := range []string{"50", "9F12"} {
		if v, ok := d.Value(tag); ok {
			if l := printable(v, 16); l != "" {
				c.AppLabel = l
				break
			}
		}
	}
	c.TVR = hexOf("95", 5, 5)
	c.TSI = hexOf("9B", 2, 2)
	c.FormFactor = hexOf("9F6E", 1, 32)
	if typ, ok := d.CryptogramType(); ok && typ != emv.RFU {
		if ac := hexOf("9F26", 8, 8); ac != "" {
			c.Cryptogram = typ.String() + " " + ac[:8]
		}
	}
	return c
}

// printable returns b as text when it is printable ASCII (trimmed, at most max
// characters), else "".
func printable(b []byte, max int) string {
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return ""
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = strings.TrimSpace(s[:max])
	}
	return s
}

// chipCVM says how a chip card's cardholder was verified: an online PIN when the card asked
// for one, an offline PIN when its CVM results (9F34) say the card checked one, and a
// signature when the pad says the card asks for one or its CVM results name a signature.
func chipCVM(a ChipAuth) (CVM, bool) {
	cvm, sig := CVMNone, a.SignatureRequired
	if !a.PIN.IsZero() {
		cvm = CVMOnlinePIN
	}
	if v, ok := a.Data.Value("9F34"); ok && len(v) == 3 {
		const failed, successful = 0x01, 0x02
		code, result := v[0]&0x3F, v[2]
		switch {
		case result == failed:
		case a.Contactless && code == 0x01 && result == successful && cvm == CVMNone:
			cvm = CVMDevice // a tap's CDCVM (kernel CVM results 010002)
		case code == 0x1E: // signature (paper)
			sig = true
		case code == 0x03 || code == 0x05: // offline PIN (plaintext, enciphered) and signature
			sig = true
			if cvm == CVMNone {
				cvm = CVMOfflinePIN
			}
		case (code == 0x01 || code == 0x04) && result == successful: // offline PIN
			if cvm == CVMNone {
				cvm = CVMOfflinePIN
			}
		}
	}
	return cvm, sig
}

// Brand is the card's payment brand as far as its BIN (the masked PAN's first digits) or
// its chip application (AID) tell: "Visa", "Mastercard", "Amex", or "" when they do not.
func (r SaleResult) Brand() string {
	switch aid := r.ChipData.AID; {
	case strings.HasPrefix(aid, "A000000003"):
		return "Visa"
	case strings.HasPrefix(aid, "A000000004"):
		return "Mastercard"
	case strings.HasPrefix(aid, "A000000025"):
		return "Amex"
	}
	bin := r.MaskedPAN
	if len(bin) < 4 {
		return ""
	}
	two, err2 := strconv.Atoi(bin[:2])
	four, err4 := strconv.Atoi(bin[:4])
	switch {
	case err2 != nil || err4 != nil:
		return ""
	case bin[0] == '4':
		return "Visa"
	case two >= 51 && two <= 55, four >= 2221 && four <= 2720:
		return "Mastercard"
	case two == 34 || two == 37:
		return "Amex"
	}
	return ""
}

// entryLabel says how the card was read, for the receipt.
func entryLabel(r SaleResult) string {
	switch {
	case strings.HasPrefix(r.EntryMode, "07") || strings.HasPrefix(r.EntryMode, "91"):
		return "CONTACTLESS"
	case r.Chip || strings.HasPrefix(r.EntryMode, "05"):
		return "CHIP"
	case strings.HasPrefix(r.EntryMode, "80"):
		return "FALLBACK SWIPE"
	}
	return "SWIPE"
}

// shortReason is why a sale did not complete, in a few words fit for the customer.
func shortReason(r SaleResult) string {
	if r.refusal != "" {
		return r.refusal
	}
	switch r.Condition {
	case CondCancel, CondAborted:
		return "CANCELLED"
	case CondUnreachableHost:
		return "NOT COMPLETED - NO CONNECTION"
	case CondInProgress:
		return "NOT COMPLETED - NO ANSWER"
	case CondUnavailableDevice:
		return "NOT COMPLETED - DEVICE ERROR"
	case CondWrongPIN:
		return "INCORRECT PIN"
	case CondRefusal:
		return "DECLINED"
	case CondNotAllowed:
		return "NOT ALLOWED"
	}
	return "NOT COMPLETED"
}

func (t *Terminal) receipt(r SaleResult) Receipt {
	var body []string
	add := func(l, rgt string) {
		pad := ReceiptWidth - len(l) - len(rgt)
		if pad < 1 {
			pad = 1
		}
		body = append(body, strings.TrimRight(l+strings.Repeat(" ", pad)+rgt, " "))
	}
	body = append(body, center(t.opts.MerchantName))
	add("MID "+t.opts.MerchantID, "")
	add("TID "+t.opts.TerminalID, r.Time.Format("2006-01-02 15:04"))
	if r.Refund {
		body = append(body, center("REFUND"))
	} else {
		body = append(body, center("SALE"))
	}
	if r.MaskedPAN != "" {
		add("CARD", r.MaskedPAN)
		add("ENTRY", entryLabel(r))
		c := r.ChipData
		for _, f := range [][2]string{{"APP", c.AppLabel}, {"AID", c.AID}, {"TVR", c.TVR}, {"TSI", c.TSI}} {
			if f[1] != "" {
				add(f[0], f[1])
			}
		}
		if typ, ac, ok := strings.Cut(c.Cryptogram, " "); ok {
			add(typ, ac)
		}
		switch ff := c.FormFactor; {
		case ff == "":
		case len(ff) <= ReceiptWidth-len("FORM FACTOR "):
			add("FORM FACTOR", ff)
		default: // Mastercard's third party data: up to 64 hex digits, on lines of their own
			add("FORM FACTOR", "")
			for ; ff != ""; ff = ff[min(len(ff), ReceiptWidth):] {
				body = append(body, ff[:min(len(ff), ReceiptWidth)])
			}
		}
	}
	if r.AuthorizedMinor > 0 && r.AuthorizedMinor < r.Amount.Minor {
		// A partial approval: what was asked, what the card paid, what is left to pay.
		add("REQUESTED", r.Amount.String())
		add("AMOUNT", money.Amount{Minor: r.AuthorizedMinor, Currency: r.Amount.Currency}.String())
		add("REMAINING", money.Amount{Minor: r.Amount.Minor - r.AuthorizedMinor, Currency: r.Amount.Currency}.String())
	} else {
		add("AMOUNT", r.Amount.String())
	}
	if r.STAN != 0 {
		add("STAN", fmt.Sprintf("%06d", r.STAN))
	}
	if r.RRN != "" {
		add("RRN", r.RRN)
	}
	var cause string // the merchant's short cause of a decline
	switch {
	case r.Approved:
		add("APPROVED", "AUTH "+r.ApprovalCode)
	case r.ResponseCode == iso8583.RCApproved || iso8583.AuthResponse{ResponseCode: r.ResponseCode}.ApprovedWithCondition():
		add("CANCELLED", "REVERSED") // the host approved; posd undid it during the sale
		body = append(body, center("NOT CHARGED"))
	case r.ResponseCode != "":
		add("DECLINED", "CODE "+r.ResponseCode)
		if r.Condition == CondWrongPIN {
			body = append(body, center("INCORRECT PIN"))
		} else if txt := iso8583.ResponseText(r.ResponseCode); txt != "unknown response code" {
			cause = strings.ToUpper(txt)
		}
	default:
		body = append(body, center(shortReason(r)))
	}
	cust := append(append([]string(nil), body...), center("CUSTOMER COPY"))
	merch := append([]string(nil), body...)
	for _, l := range wrap(cause, ReceiptWidth) {
		merch = append(merch, center(l))
	}
	if r.Approved {
		merch = append(merch, verification(r)...)
	}
	merch = append(merch, center("MERCHANT COPY"))
	return Receipt{Customer: cust, Merchant: merch}
}

// verification is what the merchant copy of an approved sale says of the cardholder's
// verification: the PIN only when it was verified (an online PIN with an online approval,
// or an offline PIN the card checked), and a line to sign on when the card asks for a
// signature.
func verification(r SaleResult) []string {
	var lines []string
	pin := false
	switch {
	case r.CVM == CVMOnlinePIN && !r.ApprovedOffline:
		lines, pin = append(lines, center("PIN VERIFIED")), true
	case r.CVM == CVMOnlinePIN:
		lines = append(lines, center("PIN NOT VERIFIED"))
	case r.CVM == CVMOfflinePIN:
		lines, pin = append(lines, center("OFFLINE PIN VERIFIED")), true
	case r.CVM == CVMDevice:
		lines, pin = append(lines, center("VERIFIED ON DEVICE")), true
	}
	switch {
	case r.SignatureRequired:
		lines = append(lines, center("SIGNATURE REQUIRED"), "", SignatureLine)
	case pin:
		lines = append(lines, center("NO SIGNATURE REQUIRED"))
	case r.CVM == CVMNone:
		lines = append(lines, center("NO CVM"))
	}
	return lines
}

func center(s string) string {
	if len(s) >= ReceiptWidth {
		return s[:ReceiptWidth]
	}
	return strings.Repeat(" ", (ReceiptWidth-len(s))/2) + s
}

func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		for len(w) > width {
			if line != "" {
				lines = append(lines, line)
				line = ""
			}
			lines = append(lines, w[:width])
			w = w[width:]
		}
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
