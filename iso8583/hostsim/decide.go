package hostsim

// Deciding each request type: authorizations, advices, reversals, reconciliation and
// network management.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/iso8583"
)

// authorize decides an 0100 or 0200.
func (s *Server) authorize(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	if s.opts.Override != nil {
		if rc := s.opts.Override(req); rc != "" {
			return decision{rc: rc}
		}
	}
	t, d, ok := s.readTxn(req)
	if !ok {
		return d
	}
	now := s.now()

	// A copy of a transaction already decided is answered as it was.
	s.mu.Lock()
	if d, ok := s.seen(t); ok {
		s.mu.Unlock()
		return d
	}
	cp := s.cards[t.pan.Digits()]
	var c Card
	if cp != nil {
		c = *cp
	}
	s.mu.Unlock()

	// The card and the PIN, outside the lock.
	switch {
	case cp == nil || c.Blocked:
		d = decision{rc: iso8583.RCInvalidCard}
	case t.exp.Expired(now) || t.exp.YYMM() != c.Expiry:
		d = decision{rc: iso8583.RCExpiredCard}
	default:
		if block, _ := req.GetBytes(52); block != nil {
			ksnHex, _ := req.GetString(62)
			d.rc = s.checkPIN(&c, t.pan, block, ksnHex)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.seen(t); ok { // a concurrent copy won the race
		return d
	}
	switch {
	case d.rc != "":
	case s.orphans[t.orig]:
		d = decision{rc: iso8583.RCInvalidTxn} // reversed before it arrived
	case !t.credit && t.amount > s.cards[t.pan.Digits()].BalanceMinor && (!c.PartialApproval || s.cards[t.pan.Digits()].BalanceMinor <= 0):
		d = decision{rc: iso8583.RCInsufficientFunds}
	default:
		rc, asked := iso8583.RCApproved, t.amount
		if bal := s.cards[t.pan.Digits()].BalanceMinor; !t.credit && t.amount > bal {
			// A partial approval: the charge is the balance, and the response says so.
			rc, t.amount = iso8583.RCPartialApproval, bal
		}
		s.apply(t.pan.Digits(), t.amount, t.credit, false)
		s.seq++
		d = decision{
			rc:       rc,
			approval: fmt.Sprintf("%06d", s.seq%1_000_000),
			// YDDDhh then a 6-digit sequence: the common retrieval reference number layout.
			rrn: fmt.Sprintf("%d%03d%02d%06d", now.Year()%10, now.YearDay(), now.Hour(), s.seq%1_000_000),
		}
		if rc == iso8583.RCPartialApproval {
			d.amount = t.amount
		}
		ch := s.record(t, d, true, now)
		ch.asked = asked
		return d
	}
	s.record(t, d, false, now)
	return d
}

// advice records an 0220 or 0221.
func (s *Server) advice(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	t, d, ok := s.readTxn(req)
	if !ok {
		return d
	}
	rc, _ := req.GetString(39)
	approval, _ := req.GetString(38)
	f90, _ := req.GetString(90)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen(t); ok {
		return decision{rc: iso8583.RCApproved}
	}
	approved := rc == iso8583.RCApproved && !s.orphans[t.orig]
	c := s.record(t, decision{rc: rc, approval: approval}, approved, now)
	if !approved {
		return decision{rc: iso8583.RCApproved}
	}
	s.apply(c.pan, t.amount, t.credit, false)
	if f90 != "" { // a completion: release the authorization's hold
		if o, err := iso8583.ParseOriginal(f90, now); err == nil {
			h := s.byOrig[origKey{t.tid, fmt.Sprintf("%06d", o.STAN), o.Transmission()}]
			if h != nil && h.MTI == iso8583.MTIAuthorizationRequest && h.Approved && !h.Reversed && !h.Completed {
				h.Completed = true
				s.apply(h.pan, h.AmountMinor, h.Credit, true)
			}
		}
	}
	return decision{rc: iso8583.RCApproved}
}

// reverse decides a reversal by its field 90.
func (s *Server) reverse(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	get := func(id int) string { v, _ := req.GetString(id); return v }
	amount, err := strconv.ParseInt(get(4), 10, 64)
	if err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	o, err := iso8583.ParseOriginal(get(90), s.now())
	if err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	tid := strings.TrimRight(get(41), " ")
	key := origKey{tid, fmt.Sprintf("%06d", o.STAN), o.Transmission()}
	pan := get(2)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.MatchBy == MatchTransmission {
		// The reversal is known by its own terminal id, STAN and field 7: a copy gets the
		// first answer and changes nothing.
		own := txnKey{tid, get(11), get(7), "04"}
		if d, ok := s.revs[own]; ok {
			return d
		}
		d := s.reverseLocked(key, o.MTI, pan, amount)
		s.revs[own] = d
		return d
	}
	return s.reverseLocked(key, o.MTI, pan, amount)
}

// reverseLocked reverses the original key names, if it matches. The caller holds s.mu.
func (s *Server) reverseLocked(key origKey, origMTI, pan string, amount int64) decision {
	c := s.byOrig[key]
	switch {
	case c == nil:
		s.orphans[key] = true
		return decision{rc: iso8583.RCNoOriginal}
	case base(origMTI) != base(c.MTI):
		return decision{rc: iso8583.RCInvalidTxn}
	case pan != "" && pan != c.pan:
		return decision{rc: iso8583.RCInvalidTxn}
	case amount != c.AmountMinor:
		return decision{rc: iso8583.RCInvalidAmount}
	}
	c.Reversals++
	if !c.Reversed {
		c.Reversed = true
		if c.Approved && !c.Completed {
			s.apply(c.pan, c.AmountMinor, c.Credit, true)
		}
	}
	return decision{rc: iso8583.RCApproved}
}

// base returns an MTI with a repeat made into the first transmission (0221 -> 0220).
func base(mti string) string {
	if len(mti) == 4 && (mti[3] == '1' || mti[3] == '3') {
		return mti[:3] + string(mti[3]-1)
	}
	return mti
}

// reconcile compares an 0500's totals with the host's.
func (s *Server) reconcile(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	theirs, err := iso8583.ParseTotals(req)
	if err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	tid, _ := req.GetString(41)
	tid = strings.TrimRight(tid, " ")
	batch, _ := req.GetString(60)
	afterUpload := func() bool { p, _ := req.GetString(3); return p == iso8583.ProcSettlementAfterUpload }()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count0500(tid, batch)
	if s.batches[tid+"/"+batch] {
		return decision{rc: iso8583.RCApproved} // a copy of a reconciliation that balanced
	}
	var ours iso8583.Totals
	var open []*charge
	for _, c := range s.charges {
		if c.TerminalID != tid || c.Settled || !c.Approved || c.MTI == iso8583.MTIAuthorizationRequest || c.Lost {
			continue
		}
		if afterUpload && !c.uploaded {
			s.logf("hostsim: stan=%06d of %s not in the upload of batch %s: left for the next batch", c.STAN, tid, batch)
			continue
		}
		open = append(open, c)
		switch {
		case c.Credit:
			ours.CreditsCount++
			ours.CreditsAmount += c.AmountMinor
			if c.Reversed {
				ours.CreditReversalsCount++
				ours.CreditReversalsAmount += c.AmountMinor
			}
		default:
			ours.DebitsCount++
			ours.DebitsAmount += c.AmountMinor
			if c.Reversed {
				ours.DebitReversalsCount++
				ours.DebitReversalsAmount += c.AmountMinor
			}
		}
	}
	if ours != theirs {
		s.logf("hostsim: batch %s of %s out of balance: host %+v, terminal %+v", batch, tid, ours, theirs)
		return decision{rc: iso8583.RCReconcileError}
	}
	for _, c := range open {
		c.Settled = true
	}
	for _, c := range s.charges {
		if c.TerminalID == tid {
			c.uploaded = false
		}
	}
	s.batches[tid+"/"+batch] = true
	s.closedBatch(tid, batch, theirs)
	return decision{rc: iso8583.RCApproved}
}

// network answers an 0800.
func (s *Server) network(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	if s.dialect != nil && s.dialect.KeyExchange != nil {
		if d, ok := s.keyChange(req); ok {
			return d
		}
	}
	code, _ := req.GetString(70)
	tid, _ := req.GetString(41)
	tid = strings.TrimRight(tid, " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch code {
	case iso8583.NMSignOn:
		s.signedOn[tid] = true
	case iso8583.NMSignOff:
		delete(s.signedOn, tid)
	case iso8583.NMEcho:
	default:
		return decision{rc: iso8583.RCInvalidTxn}
	}
	return decision{rc: iso8583.RCApproved}
}
