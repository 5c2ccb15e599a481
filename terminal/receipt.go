package terminal

import (
	"fmt"
	"strings"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/money"
)

// ReceiptWidth is the number of characters on a receipt line (a 58 mm printer).
const ReceiptWidth = 32

// Receipt holds the printed lines of a sale for the customer and for the merchant. The PAN
// appears masked; nothing else of the card is printed.
//
// A plain value: safe for concurrent use when not modified.
type Receipt struct {
	Customer []string
	Merchant []string
}

func (t *Terminal) receipt(r SaleResult) Receipt {
	var body []string
	add := func(l, rgt string) {
		pad := ReceiptWidth - len(l) - len(rgt)
		if pad < 1 {
			pad = 1
		}
		body = append(body, l+strings.Repeat(" ", pad)+rgt)
	}
	body = append(body, center(t.opts.MerchantName))
	add("MID "+t.opts.MerchantID, "")
	add("TID "+t.opts.TerminalID, r.Time.Format("2006-01-02 15:04"))
	body = append(body, center("SALE"))
	if r.MaskedPAN != "" {
		add("CARD", r.MaskedPAN)
		entry := "SWIPE"
		if r.PINEntered {
			entry += ", PIN"
		}
		add("ENTRY", entry)
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
	switch {
	case r.Approved:
		add("APPROVED", "AUTH "+r.ApprovalCode)
	case r.ResponseCode == iso8583.RCApproved || iso8583.AuthResponse{ResponseCode: r.ResponseCode}.ApprovedWithCondition():
		add("CANCELLED", "REVERSED") // the host approved; posd undid it during the sale
	case r.ResponseCode != "":
		add("DECLINED", "CODE "+r.ResponseCode)
	default:
		add("NOT COMPLETED", "")
	}
	if !r.Approved {
		for _, l := range wrap(r.Message, ReceiptWidth) {
			body = append(body, l)
		}
	}
	cust := append(append([]string(nil), body...), center("CUSTOMER COPY"))
	merch := append([]string(nil), body...)
	if r.Approved {
		merch = append(merch, center("PIN VERIFIED"), center("NO SIGNATURE REQUIRED"))
	}
	merch = append(merch, center("MERCHANT COPY"))
	return Receipt{Customer: cust, Merchant: merch}
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
