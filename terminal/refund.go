package terminal

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/money"
)

// ProcessingCodeRefund is ISO 8583 field 3 of a refund (positions 1-2 "20": a credit to
// the cardholder's account; default accounts).
const ProcessingCodeRefund = "200000"

// RefundPolicy decides which refunds a Terminal takes.
//
// A plain value: safe for concurrent use when not modified.
type RefundPolicy struct {
	// Disabled refuses every refund. Default false: refunds are taken.
	Disabled bool
	// AllowUnhashed takes a linked refund of a sale whose journal record has no PAN hash
	// (journaled without a PAN hash key), whose card therefore cannot be checked. Default
	// false: such a refund is refused.
	AllowUnhashed bool
	// Unlinked takes refunds that name no original sale. Default false.
	Unlinked bool
	// MaxMinor bounds one unlinked refund, in minor units. Default 0: no bound but the
	// daily one (posd's config requires both when unlinked refunds are on).
	MaxMinor int64
	// DailyMaxMinor bounds the unlinked refunds of one local day (time.Local), approved or
	// whose outcome is not known yet, in minor units. Default 0: no bound.
	DailyMaxMinor int64
	// AfterClose takes a linked refund of a sale whose batch is closed (settled with the
	// acquirer): the acquirer's rules say whether it may. Default false: refused, the sale
	// settled; an unlinked refund is the way.
	AfterClose bool
}

// Refund runs one refund to its end: the card is presented as for a sale and a financial
// request (0200, also in dual message) with processing code 200000 credits it. A linked
// refund (req.Original set) must be of an approved, not voided sale of this terminal,
// paid with the same card (the journal's keyed PAN hash), and with the other refunds of
// that sale, approved or not yet known, stay within what the sale captured. An unlinked
// refund needs Options.Refunds.Unlinked and stays within its limits. A refund that breaks
// a rule ends with Condition CondNotAllowed and a message naming the rule: nothing is sent
// and nothing journaled. A refund is never approved offline: one the host does not answer
// is reversed. Repeats and conflicts are handled as Sale's.
func (t *Terminal) Refund(ctx context.Context, req SaleRequest) (SaleResult, error) {
	req.Refund = true
	return t.Sale(ctx, req)
}

// notAllowed ends a refund that breaks a rule, before anything is sent.
func (t *Terminal) notAllowed(ctx context.Context, res SaleResult, why string, log *slog.Logger) SaleResult {
	res.Condition = CondNotAllowed
	res.Message = why
	res.refusal = "NOT ALLOWED"
	log.Warn("refund not allowed", "reason", why)
	t.finishPad(ctx, log, "NOT ALLOWED")
	res.Receipt = t.receipt(res)
	return res
}

// refundAllowed checks the refund req before the card is presented: the policy, and for a
// linked refund its original (returned) and what remains of it. why says what breaks a
// rule; err is a fault (the journal cannot be read). t.mu is held, so nothing can begin
// between this check and the refund's intent.
func (t *Terminal) refundAllowed(ctx context.Context, req SaleRequest) (*store.Record, string, error) {
	pol := t.opts.Refunds
	if pol.Disabled {
		return nil, "refunds are turned off on this terminal (refund.enabled)", nil
	}
	if req.Original == "" {
		return nil, t.unlinkedAllowed(ctx, req.Amount, pol), nil
	}
	id, err := t.TxnIDFromPOI(req.Original)
	if err != nil {
		return nil, fmt.Sprintf("original transaction %q is not a transaction of this terminal", clip(req.Original)), nil
	}
	rec, err := t.st.Get(ctx, id)
	if errors.Is(err, store.ErrArchived) {
		return nil, fmt.Sprintf("original transaction %s is archived (its batch closed longer ago than store.keep): it can no longer be refunded linked", req.Original), nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Sprintf("original transaction %s is unknown on this terminal", req.Original), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("terminal: reading the original of a refund: %w", err)
	}
	captured, why := capturedOf(rec)
	if why != "" {
		return nil, fmt.Sprintf("original transaction %s %s", req.Original, why), nil
	}
	if b := rec.Outcome.Batch; b != 0 && b < t.st.OpenBatch() && !pol.AfterClose {
		return nil, fmt.Sprintf("original transaction %s is in batch %d, which is closed (settled with the acquirer): refund.after_close is off", req.Original, b), nil
	}
	if rec.Intent.Currency != req.Amount.Currency.Code {
		return nil, fmt.Sprintf("original transaction %s is in %s, not %s", req.Original, rec.Intent.Currency, req.Amount.Currency.Code), nil
	}
	if rec.Intent.PANHash == "" && !pol.AllowUnhashed {
		return nil, fmt.Sprintf("original transaction %s was journaled without a card hash, so the card cannot be checked (refund.allow_unhashed)", req.Original), nil
	}
	refunds, err := t.st.RefundsOf(ctx, id)
	if err != nil {
		return nil, "", fmt.Errorf("terminal: reading the refunds of %s: %w", req.Original, err)
	}
	left := captured - refundedSum(refunds)
	if req.Amount.Minor > left {
		cur := req.Amount.Currency
		return nil, fmt.Sprintf("refund of %s is above what remains of original transaction %s: %s of %s captured (refunds approved or not yet settled count)",
			req.Amount, req.Original, money.Amount{Minor: max(left, 0), Currency: cur}, money.Amount{Minor: captured, Currency: cur}), nil
	}
	return &rec, "", nil
}

// unlinkedAllowed checks an unlinked refund of amount against the policy.
func (t *Terminal) unlinkedAllowed(ctx context.Context, amount money.Amount, pol RefundPolicy) string {
	if !pol.Unlinked {
		return "unlinked refunds are turned off on this terminal (refund.unlinked): name the original transaction"
	}
	if pol.MaxMinor > 0 && amount.Minor > pol.MaxMinor {
		return fmt.Sprintf("unlinked refund of %s is above the limit of %s per refund (refund.max_minor)", amount, money.Amount{Minor: pol.MaxMinor, Currency: amount.Currency})
	}
	if pol.DailyMaxMinor <= 0 {
		return ""
	}
	today, err := t.st.UnlinkedRefundsOn(ctx, t.opts.Now())
	if err != nil {
		return "the unlinked refunds of today cannot be read: " + err.Error()
	}
	if sum := refundedSum(today); sum+amount.Minor > pol.DailyMaxMinor {
		return fmt.Sprintf("unlinked refund of %s is above today's limit of %s (refund.daily_max_minor; %s refunded today)",
			amount, money.Amount{Minor: pol.DailyMaxMinor, Currency: amount.Currency}, money.Amount{Minor: sum, Currency: amount.Currency})
	}
	return ""
}

// capturedOf returns what the sale rec captured (the amount approved), or why it cannot be
// refunded.
func capturedOf(rec store.Record) (int64, string) {
	out := rec.Outcome
	switch {
	case rec.Intent.Kind == store.KindRefund:
		return 0, "is a refund, not a sale"
	case rec.Intent.Kind != "sale":
		return 0, fmt.Sprintf("is a %q, not a sale", rec.Intent.Kind)
	case out == nil:
		return 0, "has no outcome yet"
	case out.Voided != nil:
		return 0, "was voided"
	case out.State == store.StateDeclined:
		return 0, "was declined"
	case out.State != store.StateApproved && out.State != store.StateApprovedOffline:
		return 0, fmt.Sprintf("was not approved (%s)", out.State)
	case out.AuthorizedMinor > 0:
		return out.AuthorizedMinor, ""
	}
	return rec.Intent.AmountMinor, ""
}

// refundedSum is what the refunds recs took or may have taken: approved ones not undone,
// and those whose outcome is unknown or not recorded until the host acknowledged their
// reversal. Declined and never sent ones count nothing.
func refundedSum(recs []store.Record) int64 {
	var sum int64
	for _, r := range recs {
		out := r.Outcome
		amount := r.Intent.AmountMinor
		switch {
		case out == nil:
			sum += amount
		case out.State == store.StateDeclined || out.State == store.StateNotSent:
		case out.Reversed != nil:
		case out.AuthorizedMinor > 0:
			sum += out.AuthorizedMinor
		default:
			sum += amount
		}
	}
	return sum
}

// sameCard says why the card p is not the one that paid the sale orig ("" when it is):
// their keyed PAN hashes must be equal.
func (t *Terminal) sameCard(ctx context.Context, orig store.Record, p presented) (string, error) {
	want := orig.Intent.PANHash
	if want == "" {
		return "", nil // refundAllowed refused it unless the policy allows it
	}
	if t.opts.PANHash == nil {
		return "the card cannot be checked against the original transaction: no PAN hash key is configured", nil
	}
	got, err := t.panHash(ctx, p.pan, p.expiry)
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return "the card presented is not the card of the original transaction", nil
	}
	return "", nil
}

// refundsCount reports whether the sale id has refunds that took or may have taken money
// back: such a sale cannot be voided.
func (t *Terminal) refundsCount(ctx context.Context, id store.TxnID) (bool, error) {
	recs, err := t.st.RefundsOf(ctx, id)
	if err != nil {
		return false, err
	}
	return refundedSum(recs) > 0, nil
}
