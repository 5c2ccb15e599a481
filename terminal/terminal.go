package terminal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	moov "github.com/moov-io/iso8583"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
)

// Errors Sale returns when it cannot attempt a sale at all.
var (
	ErrBusy          = errors.New("terminal: another transaction is in progress")
	ErrInvalidSale   = errors.New("terminal: invalid sale request")
	ErrDeviceCancel  = errors.New("terminal: cancelled on the device")
	ErrDeviceTimeout = errors.New("terminal: device timed out waiting for the customer")
)

// CardReader delivers the tracks of a swiped card. The PIN pad's own reader (ABECS GCR) and a
// separate serial magstripe reader both implement it. A customer cancel wraps
// ErrDeviceCancel, a customer who never swipes wraps ErrDeviceTimeout.
//
// The Terminal calls it from one goroutine at a time (one sale at a time); it need not be safe
// for concurrent use.
type CardReader interface {
	ReadCard(ctx context.Context, amount money.Amount) (track1, track2 string, err error)
}

// Display is the PIN pad's screen: two lines of 16 characters.
//
// The Terminal calls it from one goroutine at a time (one sale at a time); it need not be safe
// for concurrent use.
type Display interface {
	// Show puts two lines on the display.
	Show(ctx context.Context, line1, line2 string) error
	// Finish ends the transaction on the pad, leaving msg (up to 32 characters) displayed.
	Finish(ctx context.Context, msg string) error
}

// Acquirer is the link to the acquirer host; *iso8583.Client implements it. Send returns an
// error wrapping iso8583.ErrNotSent when nothing reached the host, or
// iso8583.ErrOutcomeUnknown when the host may have acted on the request.
//
// The sale and the store-and-forward drain call it concurrently: implementations must be safe
// for concurrent use (*iso8583.Client is).
type Acquirer interface {
	Send(ctx context.Context, req *moov.Message) (*moov.Message, error)
}

// Options configures a Terminal.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	TerminalID   string         // ISO 8583 field 41, 8 characters; required
	MerchantID   string         // ISO 8583 field 42, up to 15 characters; required
	MerchantName string         // first receipt line; default "POSD MERCHANT"
	Currency     money.Currency // the only currency the terminal accepts; required
	DualMessage  bool           // send 0100 authorizations instead of 0200 financial requests; default false
	PINKeyID     string         // hsm key id for PIN blocks; default "" (the Module's default)
	PINKeyIndex  int            // the pad's DUKPT key slot for a chip card's online PIN; default 1
	PINKeyAES    bool           // that slot's key is AES DUKPT (a chip card's online PIN in ISO 9564 format 4); default false: TDES
	// Spec is the acquirer dialect's message spec that authorizations are built on, so that
	// a PIN block is checked against that dialect's field 52 (8 bytes for TDES DUKPT, 16
	// for AES) before anything is sent. Default nil: iso8583.DefaultSpec, whose field 52
	// takes 8 bytes.
	Spec        *iso8583.MessageSpec
	CardTimeout time.Duration // how long the customer has to present a card; default 60s
	HostTimeout time.Duration // how long to wait for the acquirer's response; default 30s
	// Offline decides which sales the host cannot answer are approved offline. Default:
	// none (the zero OfflinePolicy).
	Offline OfflinePolicy
	// Forward configures the store-and-forward of reversals and advices; its Now and
	// Logger default to the Terminal's.
	Forward ForwardOptions
	// PANHash, when set, makes the keyed hash of a card's PAN that its journal records carry
	// (store.Intent.PANHash) for finding a card's sales; it must never return anything from
	// which the PAN can be read back without its key. A failure stops the sale before
	// anything is sent. Default nil: records carry no hash.
	PANHash func(ctx context.Context, pan card.PAN) (string, error)
	Now     func() time.Time
	Logger  *slog.Logger // default: discard
	// Failpoint, when set, is called at named points of a sale ("after-intent",
	// "after-response": the host answered, the outcome is not yet recorded) and of a drain
	// ("mid-drain": sent and answered, not yet settled). Crash tests use it to kill posd
	// exactly there. Default nil.
	Failpoint func(name string)
}

// panHash returns the keyed hash of pan for the journal, "" when none is configured.
func (t *Terminal) panHash(ctx context.Context, pan card.PAN) (string, error) {
	if t.opts.PANHash == nil {
		return "", nil
	}
	h, err := t.opts.PANHash(ctx, pan)
	if err != nil {
		return "", fmt.Errorf("terminal: the card's PAN hash for the journal: %w", err)
	}
	return h, nil
}

// Terminal runs sales, one at a time, since there is one card reader and one PIN pad. It is
// safe for concurrent use: a second sale while one is running gets ErrBusy at once.
type Terminal struct {
	reader  CardReader
	display Display
	pins    *hsm.Module
	acq     Acquirer
	st      *store.Store
	opts    Options
	log     *slog.Logger
	fwd     *Forwarder
	mu      sync.Mutex
}

// New returns a Terminal. All components are required.
func New(reader CardReader, display Display, pins *hsm.Module, acq Acquirer, st *store.Store, opts Options) (*Terminal, error) {
	if reader == nil || display == nil || pins == nil || acq == nil || st == nil {
		return nil, errors.New("terminal: a component is missing")
	}
	if len(opts.TerminalID) != 8 {
		return nil, fmt.Errorf("terminal: terminal id must be 8 characters, got %d", len(opts.TerminalID))
	}
	if opts.MerchantID == "" || len(opts.MerchantID) > 15 {
		return nil, errors.New("terminal: merchant id must be 1 to 15 characters")
	}
	if opts.Currency.Code == "" {
		return nil, errors.New("terminal: currency is required")
	}
	if opts.MerchantName == "" {
		opts.MerchantName = "POSD MERCHANT"
	}
	if opts.CardTimeout <= 0 {
		opts.CardTimeout = 60 * time.Second
	}
	if opts.PINKeyIndex <= 0 {
		opts.PINKeyIndex = 1
	}
	if opts.HostTimeout <= 0 {
		opts.HostTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fo := opts.Forward
	if fo.Now == nil {
		fo.Now = opts.Now
	}
	if fo.Logger == nil {
		fo.Logger = log
	}
	if fo.SendTimeout <= 0 {
		fo.SendTimeout = opts.HostTimeout
	}
	if fo.Failpoint == nil {
		fo.Failpoint = opts.Failpoint
	}
	t := &Terminal{reader: reader, display: display, pins: pins, acq: acq, st: st, opts: opts, log: log}
	t.fwd = NewForwarder(st, acq, fo)
	return t, nil
}

// Forwarder returns the terminal's store-and-forward drain; posd runs it in the background.
func (t *Terminal) Forwarder() *Forwarder { return t.fwd }

// SaleRequest is a sale asked for by the till.
//
// A plain value: safe for concurrent use when not modified.
type SaleRequest struct {
	SaleID            string // the till's id
	SaleTransactionID string // the till's reference for this sale
	Amount            money.Amount
}

// Condition says why a sale did not succeed, in the vocabulary of nexo's ErrorCondition so
// that the till API can pass it on unchanged.
//
// A plain value: safe for concurrent use when not modified.
type Condition string

// Conditions.
const (
	CondNone              Condition = ""
	CondRefusal           Condition = "Refusal"           // declined by the issuer, or the card refused by the terminal
	CondWrongPIN          Condition = "WrongPIN"          // issuer says the PIN is wrong
	CondCancel            Condition = "Cancel"            // customer cancelled on the pad
	CondAborted           Condition = "Aborted"           // customer did not act in time
	CondUnreachableHost   Condition = "UnreachableHost"   // the acquirer could not be reached: nothing was charged
	CondUnavailableDevice Condition = "UnavailableDevice" // the PIN pad or reader failed
	CondInProgress        Condition = "InProgress"        // the outcome at the host is unknown; it will be reversed
)

// SaleResult is the outcome of a sale. Approved is true only for an issuer approval.
//
// A plain value: safe for concurrent use when not modified.
type SaleResult struct {
	TxnID            store.TxnID // 0 when nothing was journaled (refused before going online)
	POITransactionID string
	Time             time.Time
	Amount           money.Amount
	Approved         bool
	Condition        Condition
	Message          string // for the cashier: why, in words
	ResponseCode     string // ISO 8583 field 39, when the host answered
	ApprovalCode     string
	RRN              string
	STAN             uint32
	MaskedPAN        string
	EntryMode        string
	PINEntered       bool // the customer entered a PIN (online PIN)
	Chip             bool // read from the chip (EMV)
	ApprovedOffline  bool // approved by posd within its offline policy; an advice is queued
	Receipt          Receipt
}

// Sale runs one sale to its end. See the package documentation for the steps.
func (t *Terminal) Sale(ctx context.Context, req SaleRequest) (SaleResult, error) {
	if req.Amount.Minor <= 0 || req.Amount.Minor > money.MaxMinor {
		return SaleResult{}, fmt.Errorf("%w: amount must be positive and at most %d minor units", ErrInvalidSale, int64(money.MaxMinor))
	}
	if req.Amount.Currency != t.opts.Currency {
		return SaleResult{}, fmt.Errorf("%w: currency %s, this terminal takes %s", ErrInvalidSale, req.Amount.Currency.Code, t.opts.Currency.Code)
	}
	if !t.mu.TryLock() {
		return SaleResult{}, ErrBusy
	}
	defer t.mu.Unlock()

	res := SaleResult{Time: t.opts.Now(), Amount: req.Amount, Condition: CondNone}
	log := t.log.With("sale", req.SaleTransactionID, "amount", req.Amount.String())
	log.Info("sale started")

	// 1-3. The card: shown the amount, presented (swipe, chip or fallback), checked
	// before anything goes online, and its PIN captured in the secure device.
	p, ended := t.present(ctx, req, &res, log)
	if ended != nil {
		return *ended, nil
	}
	pan := p.pan
	log = log.With("pan", pan)
	if p.chipOffline {
		return t.chipOfflineApproval(ctx, req, res, p, log)
	}

	// Reversals waiting from earlier sales go before any new authorization.
	if _, err := t.drainReversals(ctx); err != nil {
		log.Warn("pending reversals could not be sent before this sale", "reason", err)
	}

	// 4. Write-ahead intent, with the STAN taken in the same commit.
	now := t.opts.Now()
	mti := "0200"
	if t.opts.DualMessage {
		mti = "0100"
	}
	panHash, err := t.panHash(ctx, pan)
	if err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, err
	}
	id, stan, err := t.st.BeginWithSTAN(ctx, store.Intent{
		Kind: "sale", MTI: mti, TerminalID: t.opts.TerminalID,
		SaleID: req.SaleID, SaleTransactionID: req.SaleTransactionID,
		AmountMinor: req.Amount.Minor, Currency: req.Amount.Currency.Code,
		MaskedPAN: pan.Masked(), PANHash: panHash, EntryMode: res.EntryMode, Time: now,
	})
	if err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, fmt.Errorf("terminal: journaling the intent: %w", err)
	}
	res.STAN = stan
	auth := iso8583.Authorization{
		MTI:              mti,
		ProcessingCode:   "000000",
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
		auth.PAN, auth.Expiry = pan, p.expiry.YYMM()
	}
	msg, err := auth.Message()
	if err != nil {
		// Nothing went out: the record ends not-sent, with the reason.
		ferr := t.st.Finish(ctx, id, store.Outcome{State: store.StateNotSent, Reason: "the request could not be built: " + err.Error(), Time: t.opts.Now()})
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, errors.Join(fmt.Errorf("terminal: building the %s: %w", mti, err), ferr)
	}
	res.TxnID = id
	res.POITransactionID = fmt.Sprintf("%s-%08d", t.opts.TerminalID, uint64(id))
	log = log.With("txn", uint64(id), "stan", stan)
	log.Info("intent journaled", "mti", mti)
	t.failpoint("after-intent")

	// 5. Online.
	hctx, cancel := context.WithTimeout(ctx, t.opts.HostTimeout)
	resp, sendErr := t.acq.Send(hctx, msg)
	cancel()
	t.failpoint("after-response")

	// 6. Outcome, durable before the till hears of it.
	out := store.Outcome{Time: t.opts.Now()}
	padMsg := ""
	var items []store.Item
	switch {
	case sendErr == nil:
		ar, err := iso8583.ParseAuthResponse(resp)
		if err != nil {
			// The host answered something we cannot read: treat as unknown and reverse.
			sendErr = fmt.Errorf("%w: unreadable response: %w", iso8583.ErrOutcomeUnknown, err)
			break
		}
		res.ResponseCode, res.ApprovalCode, res.RRN = ar.ResponseCode, ar.ApprovalCode, ar.RRN
		out.ResponseCode, out.ApprovalCode, out.RRN = ar.ResponseCode, ar.ApprovalCode, ar.RRN
		if why := cannotComplete(ar, req.Amount); why != "" {
			// The host approved, but not the sale the till asked for: the approval is
			// recorded, voided and its reversal queued in one write, before the till hears
			// that the sale is declined, so that a crash cannot leave the customer charged.
			// A partial approval's reversal carries the amount approved (field 4 of the
			// answer, by definition of 10); any other reverses the request as it was sent.
			out.State = store.StateApproved
			out.Voided = &store.Void{Time: out.Time, By: "posd: " + why}
			approved := auth
			if ar.ResponseCode == iso8583.RCPartialApproval && ar.AmountMinor > 0 {
				approved.AmountMinor = ar.AmountMinor
			}
			items = append(items, t.queueItem(store.KindReversal, approved, p, iso8583.ReasonError, ""))
			res.Condition = CondRefusal
			res.Message = why + "; the approval is being reversed and the customer is not charged"
			out.Reason = res.Message
			padMsg = "DECLINED"
			log.Warn("acquirer approved what the sale did not ask: reversing", "response_code", ar.ResponseCode, "approved_minor", ar.AmountMinor)
		} else if ar.Approved() {
			res.Approved = true
			out.State = store.StateApproved
			if t.opts.DualMessage { // the 0100 holds the funds: its completion collects them
				items = append(items, t.completionItem(auth, p, req.Amount.Minor, ar.ApprovalCode))
			}
			res.Message = "approved"
			padMsg = "APPROVED"
		} else {
			out.State = store.StateDeclined
			res.Condition = CondRefusal
			if ar.ResponseCode == "55" {
				res.Condition = CondWrongPIN
			}
			res.Message = fmt.Sprintf("declined by the issuer: %s (%s)", iso8583.ResponseText(ar.ResponseCode), ar.ResponseCode)
			out.Reason = res.Message
			padMsg = "DECLINED"
		}
	}
	if sendErr != nil {
		reached := !errors.Is(sendErr, iso8583.ErrNotSent)
		if reached {
			// The host may have approved: reverse it, whatever happens next.
			items = append(items, t.queueItem(store.KindReversal, auth, p, iso8583.ReasonLateResponse, ""))
		}
		totals, terr := t.st.QueueTotals(ctx)
		ok, why := false, "the queue cannot be read: "+fmt.Sprint(terr)
		switch {
		case p.chip:
			ok, why = false, "the chip card decides offline approvals itself"
		case !t.st.CanSeal():
			ok, why = false, "no data key is configured to keep the card data of an offline approval encrypted"
		case terr == nil:
			ok, why = t.opts.Offline.decide(req.Amount.Minor, res.PINEntered, p.sc, totals, now)
		}
		switch {
		case ok:
			code := fmt.Sprintf("Y1%04d", stan%10000) // offline approval code, field 38
			items = append(items, t.queueItem(store.KindAdvice, auth, p, "", code))
			out.State = store.StateApprovedOffline
			out.ApprovalCode = code
			res.Approved = true
			res.ApprovedOffline = true
			res.ApprovalCode = code
			res.Message = "approved offline; the acquirer will be advised when it can be reached"
			padMsg = "APPROVED"
		case reached:
			out.State = store.StateUnknown
			res.Condition = CondInProgress
			res.Message = "no answer from the acquirer; the sale is being reversed and the customer will not be charged; not approved offline: " + why
			padMsg = "NOT COMPLETED"
		default:
			out.State = store.StateNotSent
			res.Condition = CondUnreachableHost
			res.Message = "acquirer unreachable, nothing was charged; not approved offline: " + why
			padMsg = "NO CONNECTION"
		}
		out.Reason = res.Message + " (" + sendErr.Error() + ")"
		log.Warn("acquirer did not answer", "reason", sendErr, "reversal_queued", reached, "offline_approved", ok)
	}
	for i := range items {
		// Each reversal or advice is a message of its own, with its own STAN; the original
		// STAN travels in field 90 (reversals) or stays in the journal.
		var serr error
		if items[i].STAN, serr = t.st.NextSTAN(ctx); serr != nil {
			t.finishPad(ctx, log, "SYSTEM ERROR")
			return SaleResult{}, fmt.Errorf("terminal: taking a STAN for the %s of transaction %d: %w", items[i].Kind, uint64(id), serr)
		}
	}
	if _, err := t.st.FinishAndQueue(ctx, id, out, items...); err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, fmt.Errorf("terminal: journaling the outcome of transaction %d: %w", uint64(id), err)
	}
	if len(items) > 0 {
		t.fwd.Kick()
	}
	log.Info("outcome journaled", "state", string(out.State), "response_code", out.ResponseCode)

	// 7. The chip card hears the host's answer (FNC); if it declines what the host
	// approved, the approval is reversed.
	if p.chip {
		if cr, ok := t.reader.(ChipReader); ok {
			padMsg = t.finishChip(ctx, cr, id, auth, resp, sendErr == nil, &res, log, padMsg)
		}
	}

	// 8. Pad and till.
	t.finishPad(ctx, log, padMsg)
	res.Receipt = t.receipt(res)
	return res, nil
}

// refuse ends a sale refused before going online: nothing is journaled because nothing was
// asked of the acquirer.
func (t *Terminal) refuse(ctx context.Context, res SaleResult, why, padMsg string) SaleResult {
	res.Condition = CondRefusal
	res.Message = why
	t.finishPad(ctx, t.log, padMsg)
	res.Receipt = t.receipt(res)
	return res
}

// deviceFailure ends a sale whose device step failed: customer cancel, timeout or a fault.
func (t *Terminal) deviceFailure(ctx context.Context, res SaleResult, log *slog.Logger, step string, err error) SaleResult {
	switch {
	case errors.Is(err, ErrDeviceCancel) || errors.Is(err, hsm.ErrCancelled):
		res.Condition = CondCancel
		res.Message = "cancelled by the customer during " + step
	case errors.Is(err, ErrDeviceTimeout) || errors.Is(err, hsm.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		res.Condition = CondAborted
		res.Message = "the customer did not complete " + step + " in time"
	default:
		res.Condition = CondUnavailableDevice
		res.Message = step + " failed: " + err.Error()
	}
	log.Warn("sale ended at the device", "step", step, "reason", err)
	t.finishPad(ctx, log, "CANCELLED")
	res.Receipt = t.receipt(res)
	return res
}

// finishPad shows the closing message; a pad that fails here does not change the outcome.
func (t *Terminal) finishPad(ctx context.Context, log *slog.Logger, msg string) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.display.Finish(fctx, msg); err != nil {
		log.Warn("PIN pad did not take the closing message", "reason", err)
	}
}

// fitLine trims s to one 16-character display line.
func fitLine(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

// wantsPIN reports whether a card with service code sc is asked for its PIN on a terminal
// with a PIN pad: third digit 0, 3 or 5 (PIN required) or 6, 7 (PIN if a PIN pad is present).
func wantsPIN(sc card.ServiceCode) bool {
	if len(sc) != 3 {
		return true
	}
	switch sc[2] {
	case '0', '3', '5', '6', '7':
		return true
	}
	return false
}

func pinKSN(p hsm.EncryptedPIN) string {
	if p.IsZero() {
		return ""
	}
	return p.KSNHex()
}

// drainReversals sends due reversals, bounded by the host timeout.
func (t *Terminal) drainReversals(ctx context.Context) (DrainStats, error) {
	dctx, cancel := context.WithTimeout(ctx, t.opts.HostTimeout)
	defer cancel()
	return t.fwd.Drain(dctx, true)
}

// queueItem builds the store item of a reversal or advice of auth. The card data kept is
// the PAN and expiry only, sealed by the store; never the track or the PIN block.
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

func (t *Terminal) queueItem(kind store.Kind, auth iso8583.Authorization, p presented, reason, approval string) store.Item {
	q := queuedFromAuth(auth, reason, approval)
	payload, _ := json.Marshal(q)
	var sensitive []byte
	if t.st.CanSeal() {
		// Without a data key the card data is not kept at all: a reversal then identifies
		// the original by field 90 alone.
		sensitive, _ = json.Marshal(queuedCard{PAN: p.pan.Digits(), Expiry: p.expiry.YYMM(), Field55: p.field55})
	}
	cur := t.opts.Currency.Code
	return store.Item{
		Kind: kind, STAN: auth.STAN, AmountMinor: auth.AmountMinor, Currency: cur,
		MaskedPAN: p.pan.Masked(), Payload: payload, Sensitive: sensitive,
	}
}

func (t *Terminal) failpoint(name string) {
	if t.opts.Failpoint != nil {
		t.opts.Failpoint(name)
	}
}

// Reserve keeps sales off the devices (for a PIN pad firmware transfer) until release is
// called. It fails with ErrBusy while a sale runs.
func (t *Terminal) Reserve() (release func(), err error) {
	if !t.mu.TryLock() {
		return nil, ErrBusy
	}
	var once sync.Once
	return func() { once.Do(t.mu.Unlock) }, nil
}
