package terminal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
)

// ChipReader is the optional capability of a CardReader that reads chip cards (the PIN
// pad's EMV kernel through GCR, GOC and FNC); Sale finds it by type assertion. *PINPad
// implements it.
//
// The Terminal calls it from one goroutine at a time (one sale at a time); it need not be safe
// for concurrent use.
type ChipReader interface {
	ReadCardAny(ctx context.Context, amount money.Amount) (PresentedCard, error)
	GoOnChip(ctx context.Context, req ChipRequest) (ChipAuth, error)
	FinishChip(ctx context.Context, ans HostAnswer) (ChipFinal, error)
}

// presented is the card the customer presented, checked, with what its authorization
// needs: card data for fields 2/14/35/23/55, the entry mode, and the PIN when one was
// entered.
type presented struct {
	pan         card.PAN
	expiry      card.Expiry
	sc          card.ServiceCode // magnetic stripe only
	track2      string           // field 35 ("" when none)
	entryMode   string
	pin         hsm.EncryptedPIN
	chip        bool
	field55     []byte
	panSeq      string // field 23, chip only
	chipOffline bool   // the card itself approved offline
}

// maxCardTries bounds how often the customer is asked to present a card again (insert
// instead of swipe, swipe after a chip failure, retry an unreadable card).
const maxCardTries = 3

// present has the customer present a card, checks it and captures the PIN. A non-nil
// *SaleResult means the sale ended there (refused, cancelled, device fault); nothing has
// gone online.
func (t *Terminal) present(ctx context.Context, req SaleRequest, res *SaleResult, log *slog.Logger) (presented, *SaleResult) {
	cr, chipCapable := t.reader.(ChipReader)
	prompt := "SWIPE CARD"
	if chipCapable {
		prompt = "INSERT/SWIPE"
	}
	fallback := false
	for try := 1; try <= maxCardTries; try++ {
		label := "SALE "
		if req.Refund {
			label = "REFUND "
		}
		if err := t.display.Show(ctx, fitLine(label+req.Amount.String()), prompt); err != nil {
			r := t.deviceFailure(ctx, *res, log, "PIN pad display", err)
			return presented{}, &r
		}
		cctx, cancel := context.WithTimeout(ctx, t.opts.CardTimeout)
		var t1, t2 string
		var pc PresentedCard
		var err error
		if chipCapable {
			pc, err = cr.ReadCardAny(cctx, req.Amount)
			t1, t2 = pc.Tracks()
		} else {
			t1, t2, err = t.reader.ReadCard(cctx, req.Amount)
		}
		cancel()
		switch {
		case errors.Is(err, ErrChangeInterface) && try < maxCardTries:
			log.Info("the tap cannot go on: asking for the chip or a swipe", "reason", err)
			prompt = "INSERT OR SWIPE"
			continue
		case errors.Is(err, ErrChipFallback):
			log.Info("chip could not be read: magnetic stripe fallback allowed")
			prompt, fallback = "SWIPE CARD", true
			continue
		case errors.Is(err, ErrCardUnreadable) && try < maxCardTries:
			prompt = "TRY AGAIN"
			continue
		case err != nil:
			r := t.deviceFailure(ctx, *res, log, "card read", err)
			return presented{}, &r
		}
		if chipCapable && pc.Chip() {
			return t.presentChip(ctx, cr, pc.Contactless(), req, res, log)
		}

		// A swipe.
		swipe, err := card.ParseSwipe(t1, t2)
		if err != nil {
			log.Warn("card unreadable", "reason", err)
			r := t.refuse(ctx, *res, "card could not be read: "+strings.TrimPrefix(err.Error(), "card: "), "CARD ERROR")
			return presented{}, &r
		}
		isFallback := fallback || (chipCapable && pc.Fallback())
		p := presented{pan: swipe.PAN(), expiry: swipe.Track2.Expiry(), sc: swipe.Track2.ServiceCode(), track2: swipe.Track2.Equivalent(), entryMode: "021"}
		if chipCapable {
			p.entryMode = pc.EntryMode()
			if pc.Contactless() {
				p.entryMode = t.opts.CtlsEntryModes.Magstripe // the dialect's "911"
			}
		}
		if isFallback {
			p.entryMode = "801" // magnetic stripe fallback after a chip failure
		}
		res.MaskedPAN, res.EntryMode = p.pan.Masked(), p.entryMode
		// A card whose service code asks for no PIN is a signature card.
		res.SignatureRequired = !wantsPIN(p.sc)
		// At info a sale is one line, its outcome's (sale); the card's details are at debug,
		// except a fallback swipe's, which the operator looks for.
		if lvl := swipeLevel(isFallback); log.Enabled(ctx, lvl) {
			log.Log(ctx, lvl, "card swiped", "pan", p.pan, "expiry", p.expiry.String(), "service_code", string(p.sc), "fallback", isFallback)
		}
		// A magnetic stripe tap (911) comes from the card's contactless chip:
		// its chip service code is expected.
		if err := swipe.CheckSale(t.opts.Now(), isFallback || pc.Contactless()); err != nil {
			if errors.Is(err, card.ErrChipCard) && chipCapable && try < maxCardTries {
				log.Info("chip card swiped: asking for the chip")
				prompt = "INSERT CARD"
				continue
			}
			log.Warn("card refused before going online", "pan", p.pan, "reason", err)
			short := "CARD REFUSED"
			if errors.Is(err, card.ErrExpired) {
				short = "CARD EXPIRED"
			} else if errors.Is(err, card.ErrChipCard) {
				short = "INSERT CARD"
			}
			r := t.refuse(ctx, *res, "card refused: "+strings.TrimPrefix(err.Error(), "card: "), short)
			return presented{}, &r
		}
		// The PIN, encrypted inside the secure device, when the card asks for one: its
		// service code requires a PIN (third digit 0, 3, 5) or asks for one where a PIN pad
		// is present (6, 7). Other cards are signature cards.
		if wantsPIN(p.sc) {
			pin, err := t.pins.PINBlock(ctx, t.opts.PINKeyID, p.pan, fitLine(req.Amount.String()))
			if err != nil {
				r := t.deviceFailure(ctx, *res, log, "PIN entry", err)
				return presented{}, &r
			}
			p.pin = pin
			res.PINEntered, res.CVM = true, CVMOnlinePIN
			log.Debug("PIN captured", "pan", p.pan, "pin", pin)
		}
		return p, nil
	}
	r := t.refuse(ctx, *res, fmt.Sprintf("no usable card after %d tries", maxCardTries), "CARD ERROR")
	return presented{}, &r
}

// presentChip runs the chip card's first part (GOC): the card decides to go online, or
// approves or declines offline, and asks for the PIN itself when it wants one.
func (t *Terminal) presentChip(ctx context.Context, cr ChipReader, tapped bool, req SaleRequest, res *SaleResult, log *slog.Logger) (presented, *SaleResult) {
	auth, err := cr.GoOnChip(ctx, ChipRequest{Amount: req.Amount, KeyIndex: t.opts.PINKeyIndex, AES: t.opts.PINKeyAES})
	if err != nil {
		r := t.deviceFailure(ctx, *res, log, "chip", err)
		return presented{}, &r
	}
	auth.Contactless = tapped
	p := presented{pan: auth.Card.PAN(), expiry: auth.Card.Expiry(), entryMode: auth.EntryMode(), pin: auth.PIN, chip: true, field55: auth.DE55}
	if tr := auth.Card.Track2(); !tr.IsZero() {
		p.track2 = tr.Equivalent()
	}
	if seq, ok := auth.Card.PANSequence(); ok {
		p.panSeq = seq
	}
	if p.entryMode == "" {
		p.entryMode = "051"
	}
	if tapped {
		p.entryMode = t.opts.CtlsEntryModes.EMV // the dialect's "071"
	}
	res.MaskedPAN, res.EntryMode, res.PINEntered, res.Chip = p.pan.Masked(), p.entryMode, !p.pin.IsZero(), true
	res.CVM, res.SignatureRequired = chipCVM(auth)
	res.ChipData = chipDataOf(auth.Data)
	log.Debug("chip card read", "pan", p.pan, "decision", auth.Decision, "cvm", string(res.CVM), "signature", res.SignatureRequired,
		"aid", res.ChipData.AID, "tvr", res.ChipData.TVR)
	if p.expiry.Expired(t.opts.Now()) {
		r := t.refuse(ctx, *res, fmt.Sprintf("card refused: expired (valid through %s)", p.expiry), "CARD EXPIRED")
		return presented{}, &r
	}
	switch auth.Decision {
	case ChipDeclinedOffline:
		r := t.refuse(ctx, *res, "declined by the card (offline)", "DECLINED")
		return presented{}, &r
	case ChipApprovedOffline:
		p.chipOffline = true
	}
	return p, nil
}

// chipOfflineApproval records a sale the chip card approved offline: journaled as an
// offline approval with its advice (carrying the card's cryptogram) queued, in one write.
// Without a data key the advice cannot be kept, so the sale is refused.
func (t *Terminal) chipOfflineApproval(ctx context.Context, req SaleRequest, res SaleResult, p presented, log *slog.Logger) (SaleResult, error) {
	if !t.st.CanSeal() {
		return t.refuse(ctx, res, "the card approved offline, but no data key is configured to keep its advice encrypted", "NOT COMPLETED"), nil
	}
	j, err := t.beginIntent(ctx, req, p, res, iso8583.MTIAdvice, "") // never online: no host
	if err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, err
	}
	code := fmt.Sprintf("Y1%04d", j.auth.STAN%10000)
	d := decision{
		out:    store.Outcome{State: store.StateApprovedOffline, ApprovalCode: code, Reason: "approved offline by the chip card", Message: "approved offline by the card; the acquirer will be advised", Time: t.opts.Now()},
		items:  []store.Item{t.queueItem(store.KindAdvice, j.auth, p, "", code)},
		padMsg: "APPROVED",
	}
	if err := t.finishIntent(ctx, j, &d); err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, err
	}
	log.Info("chip card approved offline; advice queued", "txn", uint64(j.id))
	t.finishPad(ctx, log, d.padMsg)
	return t.answer(store.Record{ID: j.id, Intent: j.in, Outcome: &d.out}), nil
}

// finishChip gives the card the host's answer (FNC). When the host approved and the card
// declines (or is pulled out), the approval is voided: a reversal is queued at once, and
// d says so.
func (t *Terminal) finishChip(ctx context.Context, cr ChipReader, j journaled, resp *iso8583.Message, d *decision, log *slog.Logger) {
	ans := HostAnswer{Responded: d.out.ResponseCode != "", ResponseCode: d.out.ResponseCode}
	if ans.Responded && resp != nil {
		if b, err := resp.GetBytes(55); err == nil && len(b) > 0 {
			ans.Field55 = b
		}
	}
	approved := d.out.State == store.StateApproved && d.out.Voided == nil
	fin, err := cr.FinishChip(ctx, ans)
	if !approved || (err == nil && !fin.MustReverse(true)) {
		if err != nil {
			log.Warn("the card did not complete (FNC)", "reason", err)
		}
		return
	}
	why := "the card declined after the acquirer approved"
	if err != nil {
		why = "the card did not complete after the acquirer approved (" + err.Error() + ")"
	}
	approvedAuth := j.auth
	if d.out.AuthorizedMinor > 0 { // a partial approval: the host holds the amount approved
		approvedAuth.AmountMinor = d.out.AuthorizedMinor
	}
	rev, err := t.reversalItem(ctx, queuedFromAuth(approvedAuth, iso8583.ReasonError, ""), t.opts.Currency.Code, j.in.MaskedPAN)
	rev.Host = j.host // the host that approved
	if err == nil {
		var rep store.VoidReport
		rep, err = t.st.Void(ctx, j.id, voidedByPosd+why, &rev)
		t.opts.Observe.reversals(rep.Reversals)
	}
	if err != nil {
		log.Error("the card declined after approval and the reversal could not be queued", "txn", uint64(j.id), "reason", err)
	}
	t.fwd.Kick()
	log.Warn(why+": reversing", "txn", uint64(j.id))
	d.out.Voided = &store.Void{Time: t.opts.Now(), By: voidedByPosd + why}
	d.padMsg = "DECLINED"
}

// swipeLevel is the level of a sale's "card swiped" line: info for a magnetic stripe
// fallback, debug otherwise.
func swipeLevel(fallback bool) slog.Level {
	if fallback {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}
