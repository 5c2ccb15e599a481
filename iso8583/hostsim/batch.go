package hostsim

// Batch upload (0320) and the host's side of an out-of-balance close; see iso8583's
// batchupload.go for the dialect's definition.

import (
	"slices"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/iso8583"
)

// lose marks every Options.LoseEvery-th approved transaction as lost: approved to the
// terminal, missing from the host's totals until a batch upload brings it back. The
// caller holds s.mu.
func (s *Server) lose(c *charge) {
	if s.opts.LoseEvery <= 0 || !c.Approved {
		return
	}
	s.approvedN++
	if s.approvedN%s.opts.LoseEvery == 0 {
		c.Lost = true
		s.logf("hostsim: losing stan=%06d tid=%s amount=%d from the ledger (LoseEvery %d)", c.STAN, c.TerminalID, c.AmountMinor, s.opts.LoseEvery)
	}
}

// upload answers an 0320: 00 the host had the transaction as uploaded, 25 it did not have
// it (it now does), 13 it had it differently (it now has the terminal's version).
func (s *Server) upload(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	get := func(id int) string { v, _ := req.GetString(id); return v }
	amount, err1 := strconv.ParseInt(get(4), 10, 64)
	stan, err2 := strconv.ParseUint(get(11), 10, 32)
	if err1 != nil || err2 != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	tid := strings.TrimRight(get(41), " ")
	credit := strings.HasPrefix(get(3), "20")
	reversed := get(39) == iso8583.UploadReversed
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *charge
	for i := len(s.charges) - 1; i >= 0; i-- {
		x := s.charges[i]
		if x.TerminalID == tid && x.STAN == uint32(stan) && !x.Settled && x.MTI != iso8583.MTIAuthorizationRequest {
			c = x
			break
		}
	}
	rc := iso8583.RCApproved
	switch {
	case c == nil:
		c = &charge{Charge: Charge{TerminalID: tid, STAN: uint32(stan), MTI: iso8583.MTIFinancialRequest, AmountMinor: amount,
			Currency: get(49), Credit: credit, ResponseCode: iso8583.RCApproved, ApprovalCode: get(38), Approved: true,
			Reversed: reversed, Times: 1, Time: s.now()}}
		s.charges = append(s.charges, c)
		rc = iso8583.RCNoOriginal
	case c.Lost || !c.Approved:
		c.Lost, c.Approved, c.Reversed = false, true, reversed
		rc = iso8583.RCNoOriginal
	case c.AmountMinor != amount || c.Reversed != reversed || c.Credit != credit:
		c.AmountMinor, c.Reversed, c.Credit = amount, reversed, credit
		rc = iso8583.RCInvalidAmount
	}
	c.uploaded = true
	if rc != iso8583.RCApproved {
		s.logf("hostsim: upload stan=%06d tid=%s: %s, now as uploaded", stan, tid, rc)
	}
	return decision{rc: rc}
}

// ClosedBatch is a batch an 0500 reconciled at the host: the terminal, the batch number as
// field 60 carried it, the totals the host accepted, and how many 0500s named the batch
// (the first, the closing one after an upload, and every repeat of a close cut short). A
// plain value, safe for concurrent use if not modified.
type ClosedBatch struct {
	TerminalID string
	Batch      string
	Totals     iso8583.Totals // of the 0500 the host answered 00 first
	Requests   int            // 0500s received for the batch, those answered 95 included
	Closed     bool           // an 0500 balanced; false: every one so far was out of balance
	order      int
}

// ClosedBatches returns every batch an 0500 named, in the order of their first 0500. A test
// checks with it that a close repeated after a crash closed the batch once, with the
// terminal's totals.
func (s *Server) ClosedBatches() []ClosedBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ClosedBatch, 0, len(s.closes))
	for _, c := range s.closes {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b ClosedBatch) int { return a.order - b.order })
	for i := range out {
		out[i].order = 0
	}
	return out
}

// count0500 counts an 0500 for the batch. The caller holds s.mu.
func (s *Server) count0500(tid, batch string) {
	c := s.closes[tid+"/"+batch]
	if c == nil {
		c = &ClosedBatch{TerminalID: tid, Batch: batch, order: len(s.closes) + 1}
		s.closes[tid+"/"+batch] = c
	}
	c.Requests++
}

// closedBatch records the totals a batch balanced with. The caller holds s.mu.
func (s *Server) closedBatch(tid, batch string, t iso8583.Totals) {
	if c := s.closes[tid+"/"+batch]; c != nil && !c.Closed {
		c.Closed, c.Totals = true, t
	}
}
