package terminal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/money"
)

// decision is how a sale that went online (or tried to) ends: its outcome, the messages
// that settle it (a reversal, an advice), and the PIN pad's closing message.
type decision struct {
	out    store.Outcome
	items  []store.Item
	padMsg string
}

// voidedByPosd starts the Void.By of an approval posd undid during the sale itself (an
// approval of something the till did not ask for, an abort, a card that declined after
// the host approved): the till's answer already says the sale did not complete.
const voidedByPosd = "posd: "

// decide turns the host's answer (or its absence, sendErr) into the sale's outcome. Its
// rules:
//   - an approval of the amount asked completes the sale; a partial approval (10)
//     completes it for the amount approved unless RefusePartial;
//   - an approval of anything else (another amount, a condition posd does not support),
//     or any approval of a sale the till aborted, is recorded, voided and reversed in
//     the same write;
//   - a decline with a response code posd knows is a decline;
//   - an answer posd cannot trust (unreadable, an unknown response code, another
//     terminal, STAN, currency or amount) is outcome-unknown and reversed, as is no
//     answer at all after the request may have left;
//   - a request that never left may be approved offline within the offline policy.
func (t *Terminal) decide(ctx context.Context, req SaleRequest, p presented, j journaled, resp *iso8583.Message, sendErr error, r *run, log *slog.Logger) decision {
	d := decision{out: store.Outcome{Time: t.opts.Now()}}
	out := &d.out
	aborted := r.abortedOnline()
	if sendErr == nil {
		ar, err := readAnswer(resp, j.auth)
		if err != nil {
			sendErr = fmt.Errorf("%w: %w", iso8583.ErrOutcomeUnknown, err)
		} else {
			t.decideAnswer(&d, req, p, j, ar, aborted, log)
			return d
		}
	}
	reached := !errors.Is(sendErr, iso8583.ErrNotSent)
	if reached {
		// The host may have approved: reverse it, whatever happens next.
		d.items = append(d.items, t.queueItem(store.KindReversal, j.auth, p, iso8583.ReasonLateResponse, ""))
	}
	ok, why := t.offlineAllowed(ctx, req, p, aborted)
	switch {
	case ok:
		code := fmt.Sprintf("Y1%04d", j.auth.STAN%10000) // offline approval code, field 38
		d.items = append(d.items, t.queueItem(store.KindAdvice, j.auth, p, "", code))
		out.State = store.StateApprovedOffline
		out.ApprovalCode = code
		out.Message = "approved offline; the acquirer will be advised when it can be reached"
		d.padMsg = "APPROVED"
	case aborted && reached:
		out.State = store.StateUnknown
		out.Condition = string(CondAborted)
		out.Message = "aborted by the till while the acquirer was deciding; no answer came, so the sale is being reversed and the customer will not be charged"
		d.padMsg = "CANCELLED"
	case aborted:
		out.State = store.StateNotSent
		out.Condition = string(CondAborted)
		out.Message = "aborted by the till; the acquirer was not reached and nothing was charged"
		d.padMsg = "CANCELLED"
	case reached:
		out.State = store.StateUnknown
		out.Condition = string(CondInProgress)
		out.Message = "no answer from the acquirer; the sale is being reversed and the customer will not be charged; not approved offline: " + why
		d.padMsg = "NOT COMPLETED"
	default:
		out.State = store.StateNotSent
		out.Condition = string(CondUnreachableHost)
		out.Message = "acquirer unreachable, nothing was charged; not approved offline: " + why
		d.padMsg = "NO CONNECTION"
	}
	out.Reason = out.Message + " (" + sendErr.Error() + ")"
	log.Warn("acquirer did not answer", "reason", sendErr, "reversal_queued", reached, "offline_approved", ok)
	return d
}

// decideAnswer decides an answer the host gave and posd can read.
func (t *Terminal) decideAnswer(d *decision, req SaleRequest, p presented, j journaled, ar iso8583.AuthResponse, aborted bool, log *slog.Logger) {
	out := &d.out
	out.ResponseCode, out.ApprovalCode, out.RRN = ar.ResponseCode, ar.ApprovalCode, ar.RRN
	partial := ar.ResponseCode == iso8583.RCPartialApproval && ar.AmountMinor > 0 && ar.AmountMinor < req.Amount.Minor
	why := cannotComplete(ar, req.Amount)
	if partial && !t.opts.RefusePartial {
		why = ""
	}
	if why == "" && aborted && (ar.Approved() || partial) {
		why = "aborted by the till while the acquirer was deciding, and the acquirer approved"
	}
	switch {
	case why != "":
		// The host approved, but not a sale that may stand: the approval is recorded,
		// voided and its reversal queued in one write, before the till hears that the sale
		// did not complete, so that a crash cannot leave the customer charged. A partial
		// approval's reversal carries the amount approved (field 4 of the answer, by
		// definition of 10); any other reverses the request as it was sent.
		out.State = store.StateApproved
		out.Voided = &store.Void{Time: out.Time, By: voidedByPosd + why}
		approved := j.auth
		if ar.ResponseCode == iso8583.RCPartialApproval && ar.AmountMinor > 0 {
			approved.AmountMinor = ar.AmountMinor
		}
		d.items = append(d.items, t.queueItem(store.KindReversal, approved, p, iso8583.ReasonError, ""))
		out.Condition = string(CondRefusal)
		if aborted {
			out.Condition = string(CondAborted)
		}
		out.Message = why + "; the approval is being reversed and the customer is not charged"
		out.Reason = out.Message
		d.padMsg = "DECLINED"
		log.Warn("acquirer approved what may not stand: reversing", "response_code", ar.ResponseCode, "approved_minor", ar.AmountMinor, "aborted", aborted)
	case partial:
		got := money.Amount{Minor: ar.AmountMinor, Currency: req.Amount.Currency}
		rest := money.Amount{Minor: req.Amount.Minor - ar.AmountMinor, Currency: req.Amount.Currency}
		out.State = store.StateApproved
		out.AuthorizedMinor = ar.AmountMinor
		out.Message = fmt.Sprintf("approved for %s of %s (partial approval); %s remains to be paid", got, req.Amount, rest)
		d.padMsg = "APPROVED " + got.String()
		d.complete(t, j, p, ar.AmountMinor, ar.ApprovalCode)
		log.Info("partial approval", "approved_minor", ar.AmountMinor)
	case ar.Approved():
		out.State = store.StateApproved
		out.Message = "approved"
		d.padMsg = "APPROVED"
		d.complete(t, j, p, req.Amount.Minor, ar.ApprovalCode)
	default:
		out.State = store.StateDeclined
		out.Condition = string(CondRefusal)
		if ar.ResponseCode == iso8583.RCIncorrectPIN {
			out.Condition = string(CondWrongPIN)
		}
		out.Message = fmt.Sprintf("declined by the issuer: %s (%s)", iso8583.ResponseText(ar.ResponseCode), ar.ResponseCode)
		out.Reason = out.Message
		d.padMsg = "DECLINED"
	}
}

// readAnswer reads the host's answer to auth and checks that it answers auth: a response
// code posd knows, the same terminal and STAN, and the same currency and amount where the
// host echoes them (an approval of another amount is left to cannotComplete). An error
// means the answer cannot be trusted either way: the outcome is unknown.
func readAnswer(resp *iso8583.Message, auth iso8583.Authorization) (iso8583.AuthResponse, error) {
	ar, err := iso8583.ParseAuthResponse(resp)
	if err != nil {
		return ar, fmt.Errorf("unreadable response: %w", err)
	}
	approves := ar.Approved() || ar.ApprovedWithCondition()
	switch {
	case !iso8583.KnownResponseCode(ar.ResponseCode):
		return ar, fmt.Errorf("response code %q is not one posd knows: the host may have approved", clip(ar.ResponseCode))
	case ar.TerminalID != auth.TerminalID:
		return ar, fmt.Errorf("the response names terminal %q, not %s", clip(ar.TerminalID), auth.TerminalID)
	case ar.STAN != auth.STAN:
		return ar, fmt.Errorf("the response has STAN %06d, not %06d", ar.STAN, auth.STAN)
	case ar.Currency != "" && ar.Currency != auth.CurrencyNumeric:
		return ar, fmt.Errorf("the response is in currency %s, not %s", clip(ar.Currency), auth.CurrencyNumeric)
	case !approves && ar.AmountMinor != 0 && ar.AmountMinor != auth.AmountMinor:
		return ar, fmt.Errorf("the response's amount %d is not the %d asked", ar.AmountMinor, auth.AmountMinor)
	}
	return ar, nil
}

// clip bounds a value from the wire quoted in an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// offlineAllowed says whether a sale the host did not answer may be approved offline.
func (t *Terminal) offlineAllowed(ctx context.Context, req SaleRequest, p presented, aborted bool) (bool, string) {
	switch {
	case req.Refund:
		return false, "a refund is never approved offline"
	case aborted:
		return false, "the till aborted the sale"
	case p.chip:
		return false, "the chip card decides offline approvals itself"
	case !t.st.CanSeal():
		return false, "no data key is configured to keep the card data of an offline approval encrypted"
	}
	totals, err := t.st.QueueTotals(ctx)
	if err != nil {
		return false, "the queue cannot be read: " + err.Error()
	}
	return t.opts.Offline.decide(req.Amount.Minor, !p.pin.IsZero(), p.sc, totals, t.opts.Now())
}

// cannotComplete says why an answer that approves cannot complete the sale asked for
// amount: a condition this terminal does not take (08 identification, 10 a partial amount,
// 11, 16), or an approval of another amount than asked. "" when the answer is a plain
// approval of the amount, or a decline.
func cannotComplete(ar iso8583.AuthResponse, asked money.Amount) string {
	switch {
	case ar.ResponseCode == iso8583.RCPartialApproval && ar.AmountMinor > 0:
		got := money.Amount{Minor: ar.AmountMinor, Currency: asked.Currency}
		return fmt.Sprintf("the acquirer approved only %s of %s (partial approval, 10), which this terminal does not complete", got, asked)
	case ar.ApprovedWithCondition():
		return fmt.Sprintf("the acquirer approved with condition %s (%s), which this terminal does not complete", ar.ResponseCode, iso8583.ResponseText(ar.ResponseCode))
	case ar.Approved() && ar.AmountMinor != 0 && ar.AmountMinor != asked.Minor:
		got := money.Amount{Minor: ar.AmountMinor, Currency: asked.Currency}
		return fmt.Sprintf("the acquirer approved %s, not the %s asked", got, asked)
	}
	return ""
}

// complete queues, with a dual-message sale's approved 0100, the 0220 that completes it for
// amount (the 0100 only holds the funds; its completion collects them).
func (d *decision) complete(t *Terminal, j journaled, p presented, amount int64, approvalCode string) {
	if j.auth.MTI == iso8583.MTIAuthorizationRequest {
		d.items = append(d.items, t.completionItem(j.auth, p, amount, approvalCode))
	}
}
