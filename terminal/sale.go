package terminal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/money"
)

// Sale runs one sale to its end. See the package documentation for the steps.
//
// A till request is known by two keys: its SaleID with its ServiceID, and its SaleID with
// its SaleTransactionID. A request whose key names a sale already seen (running, finished,
// or journaled before a restart) does not start another: it gets the first request's
// answer, waiting for it while the first still runs. The same key with other content (an
// amount, a currency or a transaction id that differs) is refused with a *ConflictError
// naming the field, and nothing runs.
func (t *Terminal) Sale(ctx context.Context, req SaleRequest) (SaleResult, error) {
	if err := t.checkSale(req); err != nil {
		return SaleResult{}, err
	}
	r, res, err := t.admit(ctx, req)
	if r == nil {
		return res, err
	}
	start := time.Now()
	res, err = t.sale(r.ctx, req, r)
	if t.opts.Observe.SaleEnded != nil {
		t.opts.Observe.SaleEnded(res, err, time.Since(start))
	}
	t.release(r, res, err)
	return res, err
}

func (t *Terminal) checkSale(req SaleRequest) error {
	if req.Amount.Minor <= 0 || req.Amount.Minor > money.MaxMinor {
		return fmt.Errorf("%w: amount must be positive and at most %d minor units", ErrInvalidSale, int64(money.MaxMinor))
	}
	if req.Amount.Currency != t.opts.Currency {
		return fmt.Errorf("%w: currency %s, this terminal takes %s", ErrInvalidSale, req.Amount.Currency.Code, t.opts.Currency.Code)
	}
	return nil
}

// sale runs the steps of one admitted sale; t.mu is held.
func (t *Terminal) sale(ctx context.Context, req SaleRequest, r *run) (SaleResult, error) {
	res := SaleResult{Time: t.opts.Now(), Amount: req.Amount, Condition: CondNone, Refund: req.Refund}
	log := t.log.With("sale", req.SaleTransactionID, "amount", req.Amount.String())
	var orig *store.Record
	if req.Refund {
		log = log.With("refund", true, "original", req.Original)
		o, why, err := t.refundAllowed(ctx, req)
		if err != nil {
			return SaleResult{}, err
		}
		if why != "" {
			return t.notAllowed(ctx, res, why, log), nil
		}
		orig = o
	}
	// At info a sale is one line, the outcome's ("outcome journaled", with the sale, the
	// masked card, the host, the transaction and STAN, the state); its steps are at debug.
	log.Debug("sale started")

	// 1-3. The card: shown the amount, presented (swipe, chip or fallback), checked
	// before anything goes online, and its PIN captured in the secure device.
	p, ended := t.present(ctx, req, &res, log)
	if ended != nil {
		return *ended, nil
	}
	log = log.With("pan", p.pan)
	if orig != nil {
		why, err := t.sameCard(ctx, *orig, p)
		if err != nil {
			t.finishPad(ctx, log, "SYSTEM ERROR")
			return SaleResult{}, err
		}
		if why != "" {
			res.MaskedPAN, res.EntryMode = p.pan.Masked(), p.entryMode
			return t.notAllowed(ctx, res, why, log), nil
		}
	}
	if !r.goOnline() {
		res.Condition = CondAborted
		res.Message = "aborted by the till before going online; nothing was charged"
		log.Info("sale aborted by the till before going online")
		t.finishPad(ctx, log, "CANCELLED")
		res.Receipt = t.receipt(res)
		return res, nil
	}
	if p.chipOffline && !req.Refund { // a refund goes online whatever the card said
		return t.chipOfflineApproval(ctx, req, res, p, log)
	}
	// The host, chosen between transactions: the sale never leaves it. Reversals waiting
	// for it from earlier transactions go before any new authorization.
	host := t.nextHost(ctx)
	if host != "" {
		log = log.With("host", host)
	}
	blocked := t.reversalsFirst(ctx, host, log)

	// 4. Write-ahead intent, with the STAN taken in the same write.
	mti := iso8583.MTIFinancialRequest
	if t.opts.DualMessage && !req.Refund { // a refund is a financial request (0200) in dual message too
		mti = iso8583.MTIAuthorizationRequest
	}
	j, err := t.beginIntent(ctx, req, p, res, mti, host)
	if err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, err
	}
	log = log.With("txn", uint64(j.id), "stan", j.auth.STAN)
	msg, err := j.auth.Message()
	if err != nil {
		// Nothing went out: the record ends not-sent, with the reason.
		ferr := t.st.Finish(ctx, j.id, store.Outcome{State: store.StateNotSent, Reason: "the request could not be built: " + err.Error(), Time: t.opts.Now()})
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, errors.Join(fmt.Errorf("terminal: building the %s: %w", mti, err), ferr)
	}
	log.Debug("intent journaled", "mti", mti)
	t.failpoint("after-intent")

	// 5. Online, unless a reversal still waits.
	resp, sendErr := t.send(ctx, host, msg, blocked)
	t.failpoint("after-response")
	if !errors.Is(sendErr, iso8583.ErrNotSent) {
		j.host = host // it may hold the request: what settles it goes there
	}

	// 6. Outcome and what settles it, durable before the till hears of it.
	d := t.decide(ctx, req, p, j, resp, sendErr, r, log)
	if err := t.finishIntent(ctx, j, &d); err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, err
	}
	log.Info("outcome journaled", "mti", mti, "state", string(d.out.State), "response_code", d.out.ResponseCode)

	// 7. The chip card hears the host's answer (FNC); if it declines what the host
	// approved, the approval is reversed.
	if p.chip {
		if cr, ok := t.reader.(ChipReader); ok {
			t.finishChip(ctx, cr, j, resp, &d, log)
		}
	}

	// 8. Pad and till: the answer is what the journal says.
	t.finishPad(ctx, log, d.padMsg)
	return t.answer(store.Record{ID: j.id, Intent: j.in, Outcome: &d.out}), nil
}

// journaled is a sale whose intent is in the journal: its record id, the intent, and the
// authorization it stands for.
type journaled struct {
	id   store.TxnID
	in   store.Intent
	auth iso8583.Authorization
	host string // the acquirer host the request may have reached; "" none or no backups
}

// beginIntent journals the intent of the card p's sale with its STAN, in one write, and
// returns it with the authorization (MTI mti) it stands for. host is the acquirer host the
// request is for ("" none, or no backup hosts), journaled so that what undoes the request
// later (a void, Recover after a crash) goes there.
func (t *Terminal) beginIntent(ctx context.Context, req SaleRequest, p presented, res SaleResult, mti, host string) (journaled, error) {
	panHash, err := t.panHash(ctx, p.pan, p.expiry)
	if err != nil {
		return journaled{}, err
	}
	now := t.opts.Now()
	kind, pc, origID := "sale", iso8583.DefaultProcessingCode, store.TxnID(0)
	if req.Refund {
		kind, pc = store.KindRefund, ProcessingCodeRefund
		if req.Original != "" {
			if origID, err = t.TxnIDFromPOI(req.Original); err != nil {
				return journaled{}, err
			}
		}
	}
	in := store.Intent{
		Kind: kind, MTI: mti, Original: origID, TerminalID: t.opts.TerminalID,
		SaleID: req.SaleID, ServiceID: req.ServiceID, SaleTransactionID: req.SaleTransactionID,
		AmountMinor: req.Amount.Minor, Currency: req.Amount.Currency.Code,
		MaskedPAN: p.pan.Masked(), PANHash: panHash, EntryMode: p.entryMode, Time: now,
		Chip: p.chip, PINEntered: res.PINEntered,
		// What the receipt prints, for the answers rebuilt from the journal.
		CVM: string(res.CVM), Signature: res.SignatureRequired, AID: res.ChipData.AID, AppLabel: res.ChipData.AppLabel,
		TVR: res.ChipData.TVR, TSI: res.ChipData.TSI, Cryptogram: res.ChipData.Cryptogram, FormFactor: res.ChipData.FormFactor,
		Host: host,
	}
	if req.Refund {
		in.ProcessingCode = pc
	}
	id, stan, err := t.st.BeginWithSTAN(ctx, in)
	if err != nil {
		return journaled{}, fmt.Errorf("terminal: journaling the intent: %w", err)
	}
	in.STAN = stan
	auth := iso8583.Authorization{
		MTI:              mti,
		ProcessingCode:   pc,
		AmountMinor:      req.Amount.Minor,
		CurrencyNumeric:  req.Amount.Currency.Numeric,
		STAN:             stan,
		TransmissionTime: now.UTC(),
		LocalTime:        now,
		Track2:           p.track2,
		EntryMode:        p.entryMode,
		PINBlock:         p.pin.Block(),
		KSN:              pinKSN(p.pin),
		TerminalID:       t.opts.TerminalID,
		MerchantID:       t.opts.MerchantID,
		Field55:          p.field55,
		PANSequence:      p.panSeq,
		Spec:             t.opts.Spec,
	}
	if p.track2 == "" {
		auth.PAN, auth.Expiry = p.pan, p.expiry.YYMM()
	}
	return journaled{id: id, in: in, auth: auth}, nil
}

// errReversalPending is why a sale did not go online: a reversal of an earlier transaction
// could not be delivered first.
var errReversalPending = errors.New("a reversal of an earlier transaction is still waiting for the acquirer")

// reversalsFirst sends the reversals still pending, within ReversalWait, and returns
// errReversalPending (wrapped, with the reason) when one for host (the sale's; "" the only
// one) is still pending after that: the sale's authorization must then not go out. nil
// when none is pending.
func (t *Terminal) reversalsFirst(ctx context.Context, host string, log *slog.Logger) error {
	// Usually none is pending: then nothing is read from or written to the file (the
	// check does not fold the write-ahead log), and the sale's path stays its own writes.
	if n, err := t.st.PendingReversals(ctx); err == nil && n == 0 {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, t.opts.ReversalWait)
	defer cancel()
	_, derr := t.fwd.DrainReversalsNow(dctx)
	n, err := t.reversalsFor(ctx, host)
	switch {
	case err != nil:
		return fmt.Errorf("%w: the queue cannot be read: %w", errReversalPending, err)
	case n == 0:
		return nil
	case derr != nil:
		err = fmt.Errorf("%w (%d pending; %w)", errReversalPending, n, derr)
	default:
		err = fmt.Errorf("%w (%d pending; the acquirer has not acknowledged it)", errReversalPending, n)
	}
	log.Warn("the sale does not go online: reversals go first", "reason", err)
	return err
}

// send sends the authorization to host ("": the acquirer's choice), unless blocked says
// why it must not go out.
func (t *Terminal) send(ctx context.Context, host string, msg *iso8583.Message, blocked error) (*iso8583.Message, error) {
	if blocked != nil {
		return nil, fmt.Errorf("%w: %w", iso8583.ErrNotSent, blocked)
	}
	// Once the request may be on the wire, nothing the till does stops the wait for its
	// answer: an abort takes the outcome as it comes.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.opts.HostTimeout)
	defer cancel()
	return sendTo(hctx, t.acq, host, msg)
}

// finishIntent journals d's outcome and queues its items in one write, each item with a
// STAN of its own taken in that write (the original STAN travels in field 90 of a
// reversal, or stays in the journal), and wakes the forwarder.
func (t *Terminal) finishIntent(ctx context.Context, j journaled, d *decision) error {
	for i := range d.items {
		if d.items[i].Host == "" {
			d.items[i].Host = j.host
		}
	}
	if _, err := t.st.FinishAndQueue(ctx, j.id, d.out, d.items...); err != nil {
		return fmt.Errorf("terminal: journaling the outcome of transaction %d: %w", uint64(j.id), err)
	}
	t.reversalsQueued(d.items...)
	if len(d.items) > 0 {
		t.fwd.Kick()
	}
	return nil
}

// poiTxnID is the POITransactionID of the journal record id.
func (t *Terminal) poiTxnID(id store.TxnID) string {
	return poiTxnID(t.opts.TerminalID, id)
}

// poiTxnID is the POITransactionID of the journal record id of terminal tid.
func poiTxnID(tid string, id store.TxnID) string {
	return fmt.Sprintf("%s-%08d", tid, uint64(id))
}
