package hostsim

// The ledger: what the host charged, how it knows a transaction again, and balances.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

// LedgerEntry is one 0100 or 0200 the host approved. It holds the PAN masked only. It is a
// plain value, safe for concurrent use if not modified.
type LedgerEntry struct {
	Time         time.Time
	STAN         uint32
	TerminalID   string
	MaskedPAN    string
	AmountMinor  int64
	Currency     string
	ApprovalCode string
	RRN          string
	Reversed     bool // a reversal has since undone it
}

// String returns the entry on one line.
func (e LedgerEntry) String() string {
	s := fmt.Sprintf("%s stan=%06d tid=%s pan=%s amount=%d cur=%s auth=%s rrn=%s",
		e.Time.UTC().Format(time.RFC3339), e.STAN, e.TerminalID, e.MaskedPAN, e.AmountMinor, e.Currency, e.ApprovalCode, e.RRN)
	if e.Reversed {
		s += " reversed"
	}
	return s
}

// Charge is what the host knows of one original transaction (an 0100, 0200 or 0220,
// approved or not), identified as Options.MatchBy says (terminal id, STAN and local or
// transmission time). A test checks
// with it that each sale was charged at most once net of reversals: Charged() is true for
// at most one Charge per transaction, and Times counts the copies that arrived. It holds
// the PAN masked only. A Charge is a plain value, safe for concurrent use if not modified.
type Charge struct {
	TerminalID       string
	STAN             uint32
	TransmissionTime string // field 7 of the first copy processed, MMDDhhmmss
	LocalTime        string // fields 13 and 12, MMDDhhmmss; "" when absent
	MTI              string // of the first copy processed: 0100, 0200 or 0220
	MaskedPAN        string
	AmountMinor      int64
	Currency         string
	Credit           bool   // a refund (processing code 20xxxx)
	ResponseCode     string // the host's answer to an 0100 or 0200; the terminal's decision in an 0220
	ApprovalCode     string
	RRN              string
	Approved         bool // the amount was charged (or credited)
	Reversed         bool // a reversal has since undone it
	Completed        bool // an 0100 whose hold a completion (0220) has replaced
	Settled          bool // counted in a reconciliation that balanced
	Lost             bool // dropped from the totals by Options.LoseEvery, not yet uploaded
	Times            int  // copies received: the first, then duplicates and repeats
	Reversals        int  // reversal messages received for it
	Time             time.Time
	// EntryMode is field 22 as received ("051" chip, "071" contactless chip, "911"
	// contactless magnetic stripe...), and ChipData whether field 55 came with it.
	EntryMode string
	ChipData  bool
}

// Charged reports whether the transaction's amount stands: approved, not reversed, and not
// an authorization replaced by its completion.
func (c Charge) Charged() bool { return c.Approved && !c.Reversed && !c.Completed }

// String returns the charge on one line.
func (c Charge) String() string {
	return fmt.Sprintf("%s stan=%06d tid=%s time=%s pan=%s amount=%d cur=%s rc=%s approved=%t reversed=%t times=%d reversals=%d",
		c.MTI, c.STAN, c.TerminalID, c.TransmissionTime, c.MaskedPAN, c.AmountMinor, c.Currency, c.ResponseCode,
		c.Approved, c.Reversed, c.Times, c.Reversals)
}

// txnKey identifies a transaction: terminal id, STAN, local date and time (or field 7:
// see MatchBy), and the MTI's first two digits (an 0100 and the 0220 that completes it
// are two transactions even when their STAN and time are the same).
type txnKey struct{ tid, stan, when, class string }

// origKey is what field 90 names: terminal id, STAN and transmission time.
type origKey struct{ tid, stan, sent string }

// charge is a Charge with what the host needs to answer copies and reversals.
type charge struct {
	Charge
	pan      string // digits: the card table's key
	asked    int64  // the request's amount: AmountMinor, or more for a partial approval
	uploaded bool   // in the batch upload under way (0320), not settled yet
}

// Ledger returns the approved 0100s and 0200s so far, oldest first (reversed ones
// included, marked).
func (s *Server) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []LedgerEntry
	for _, c := range s.charges {
		if !c.Approved || (c.MTI != iso8583.MTIAuthorizationRequest && c.MTI != iso8583.MTIFinancialRequest) {
			continue
		}
		out = append(out, LedgerEntry{Time: c.Time, STAN: c.STAN, TerminalID: c.TerminalID, MaskedPAN: c.MaskedPAN,
			AmountMinor: c.AmountMinor, Currency: c.Currency, ApprovalCode: c.ApprovalCode, RRN: c.RRN, Reversed: c.Reversed})
	}
	return out
}

// Charges returns every transaction the host has processed (approved or not), oldest first.
func (s *Server) Charges() []Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Charge, len(s.charges))
	for i, c := range s.charges {
		out[i] = c.Charge
	}
	return out
}

func (c *charge) decision() decision {
	d := decision{rc: c.ResponseCode, approval: c.ApprovalCode, rrn: c.RRN}
	if c.ResponseCode == iso8583.RCPartialApproval {
		d.amount = c.AmountMinor
	}
	return d
}

// txn holds what the host reads of a financial request.
type txn struct {
	mti      string
	tid      string
	stan     uint32
	key      txnKey
	orig     origKey
	amount   int64
	currency string
	credit   bool
	pan      card.PAN
	exp      card.Expiry
	local    string
	entry    string
	chip     bool
}

// readTxn reads the common fields of an 0100, 0200 or 0220 that CheckMandatory accepted.
func (s *Server) readTxn(req *iso8583.Message) (txn, decision, bool) {
	get := func(id int) string { v, _ := req.GetString(id); return v }
	formatError := decision{rc: iso8583.RCFormatError}
	var t txn
	var err error
	t.mti, _ = req.GetMTI()
	if t.amount, err = strconv.ParseInt(get(4), 10, 64); err != nil {
		return t, formatError, false
	}
	stan, err := strconv.ParseUint(get(11), 10, 32)
	if err != nil {
		return t, formatError, false
	}
	t.stan = uint32(stan)
	t.tid = strings.TrimRight(get(41), " ")
	t.local = get(13) + get(12)
	when := t.local
	if when == "" || s.opts.MatchBy == MatchTransmission {
		when = get(7)
	}
	t.key = txnKey{t.tid, get(11), when, mtiClass(t.mti)}
	t.orig = origKey{t.tid, get(11), get(7)}
	t.currency = get(49)
	t.credit = strings.HasPrefix(get(3), "20")
	t.entry = get(22)
	if b, _ := req.GetBytes(55); len(b) > 0 {
		t.chip = true
	}
	// A chip or contactless chip authorization (05x, 07x) carries the card's data and
	// cryptogram in field 55; without it the issuer cannot check the card.
	if (strings.HasPrefix(t.entry, "05") || strings.HasPrefix(t.entry, "07")) && !t.chip && t.mti != iso8583.MTIAdvice && t.mti != iso8583.MTIAdviceRepeat {
		s.logf("hostsim: entry mode %s without field 55: format error", t.entry)
		return t, formatError, false
	}
	if t2 := get(35); t2 != "" {
		tr, err := card.ParseTrack2(t2)
		switch {
		case errors.Is(err, card.ErrLuhn) || errors.Is(err, card.ErrPANFormat):
			return t, decision{rc: iso8583.RCInvalidCard}, false
		case err != nil:
			return t, formatError, false
		}
		t.pan, t.exp = tr.PAN(), tr.Expiry()
	} else {
		if t.pan, err = card.ParsePAN(get(2)); err != nil {
			return t, decision{rc: iso8583.RCInvalidCard}, false
		}
		if t.exp, err = card.ParseExpiry(get(14)); err != nil {
			return t, formatError, false
		}
	}
	return t, decision{}, true
}

// mtiClass returns the version and class digits of an MTI: "02" for 0200, 0220 and 0221.
func mtiClass(mti string) string {
	if len(mti) < 2 {
		return mti
	}
	return mti[:2]
}

// seen answers a copy of a transaction already processed, if it is one. The caller holds
// s.mu.
func (s *Server) seen(t txn) (decision, bool) {
	c := s.byTxn[t.key]
	if c == nil {
		return decision{}, false
	}
	c.Times++
	if _, ok := s.byOrig[t.orig]; !ok {
		s.byOrig[t.orig] = c // a retransmission with a new field 7 names the same transaction
	}
	if c.asked != t.amount || c.pan != t.pan.Digits() {
		s.logf("hostsim: STAN %06d of %s reused with other content: 94", t.stan, t.tid)
		return decision{rc: iso8583.RCDuplicate}, true
	}
	return c.decision(), true
}

// record adds a new transaction. The caller holds s.mu.
func (s *Server) record(t txn, d decision, approved bool, now time.Time) *charge {
	c := &charge{pan: t.pan.Digits(), asked: t.amount, Charge: Charge{
		TerminalID: t.tid, STAN: t.stan, TransmissionTime: t.orig.sent, LocalTime: t.local, MTI: t.mti,
		MaskedPAN: t.pan.Masked(), AmountMinor: t.amount, Currency: t.currency, Credit: t.credit,
		ResponseCode: d.rc, ApprovalCode: d.approval, RRN: d.rrn, Approved: approved, Times: 1, Time: now,
		EntryMode: t.entry, ChipData: t.chip,
	}}
	if c.MTI == iso8583.MTIAdviceRepeat {
		c.MTI = iso8583.MTIAdvice
	}
	s.lose(c)
	s.charges = append(s.charges, c)
	s.byTxn[t.key] = c
	s.byOrig[t.orig] = c
	return c
}

// apply changes a card's balance by the amount of a transaction (minus for a debit).
// The caller holds s.mu. Unknown cards are ignored.
func (s *Server) apply(pan string, amount int64, credit bool, undo bool) {
	c := s.cards[pan]
	if c == nil {
		return
	}
	if credit != undo {
		c.BalanceMinor += amount
	} else {
		c.BalanceMinor -= amount
	}
}
