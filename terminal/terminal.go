package terminal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
type CardReader interface {
	ReadCard(ctx context.Context, amount money.Amount) (track1, track2 string, err error)
}

// Display is the PIN pad's screen: two lines of 16 characters.
type Display interface {
	// Show puts two lines on the display.
	Show(ctx context.Context, line1, line2 string) error
	// Finish ends the transaction on the pad, leaving msg (up to 32 characters) displayed.
	Finish(ctx context.Context, msg string) error
}

// Acquirer is the link to the acquirer host; *iso8583.Client implements it. Send returns an
// error wrapping iso8583.ErrNotSent when nothing reached the host, or
// iso8583.ErrOutcomeUnknown when the host may have acted on the request.
type Acquirer interface {
	Send(ctx context.Context, req *moov.Message) (*moov.Message, error)
}

// Options configures a Terminal.
type Options struct {
	TerminalID   string         // ISO 8583 field 41, 8 characters; required
	MerchantID   string         // ISO 8583 field 42, up to 15 characters; required
	MerchantName string         // first receipt line; default "POSD MERCHANT"
	Currency     money.Currency // the only currency the terminal accepts; required
	DualMessage  bool           // send 0100 authorizations instead of 0200 financial requests; default false
	PINKeyID     string         // hsm key id for PIN blocks; default "" (the Module's default)
	CardTimeout  time.Duration  // how long the customer has to present a card; default 60s
	HostTimeout  time.Duration  // how long to wait for the acquirer's response; default 30s
	Now          func() time.Time
	Logger       *slog.Logger // default: discard
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
	return &Terminal{reader: reader, display: display, pins: pins, acq: acq, st: st, opts: opts, log: log}, nil
}

// SaleRequest is a sale asked for by the till.
type SaleRequest struct {
	SaleID            string // the till's id
	SaleTransactionID string // the till's reference for this sale
	Amount            money.Amount
}

// Condition says why a sale did not succeed, in the vocabulary of nexo's ErrorCondition so
// that the till API can pass it on unchanged.
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

	// 1. Show the amount and wait for the card.
	if err := t.display.Show(ctx, fitLine("SALE "+req.Amount.String()), "SWIPE CARD"); err != nil {
		return t.deviceFailure(ctx, res, log, "PIN pad display", err), nil
	}
	cctx, cancel := context.WithTimeout(ctx, t.opts.CardTimeout)
	t1, t2, err := t.reader.ReadCard(cctx, req.Amount)
	cancel()
	if err != nil {
		return t.deviceFailure(ctx, res, log, "card read", err), nil
	}

	// 2. Check the card before anything goes online.
	swipe, err := card.ParseSwipe(t1, t2)
	if err != nil {
		log.Warn("card unreadable", "reason", err)
		return t.refuse(ctx, res, "card could not be read: "+strings.TrimPrefix(err.Error(), "card: "), "CARD ERROR"), nil
	}
	pan := swipe.PAN()
	res.MaskedPAN = pan.Masked()
	res.EntryMode = "021" // magnetic stripe read, terminal can accept PINs
	log = log.With("pan", pan)
	log.Info("card read", "expiry", swipe.Track2.Expiry().String(), "service_code", string(swipe.Track2.ServiceCode()))
	if err := swipe.CheckSale(t.opts.Now(), false); err != nil {
		log.Warn("card refused before going online", "reason", err)
		short := "CARD REFUSED"
		if errors.Is(err, card.ErrExpired) {
			short = "CARD EXPIRED"
		} else if errors.Is(err, card.ErrChipCard) {
			short = "INSERT CARD"
		}
		return t.refuse(ctx, res, "card refused: "+strings.TrimPrefix(err.Error(), "card: "), short), nil
	}

	// 3. PIN, encrypted inside the secure device.
	pin, err := t.pins.PINBlock(ctx, t.opts.PINKeyID, pan, fitLine(req.Amount.String()))
	if err != nil {
		return t.deviceFailure(ctx, res, log, "PIN entry", err), nil
	}
	res.PINEntered = true
	log.Info("PIN captured", "pin", pin)

	// 4. STAN and write-ahead intent.
	stan, err := t.st.NextSTAN(ctx)
	if err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, fmt.Errorf("terminal: taking a STAN: %w", err)
	}
	res.STAN = stan
	now := t.opts.Now()
	mti := "0200"
	if t.opts.DualMessage {
		mti = "0100"
	}
	auth := iso8583.Authorization{
		MTI:              mti,
		ProcessingCode:   "000000",
		AmountMinor:      req.Amount.Minor,
		CurrencyNumeric:  req.Amount.Currency.Numeric,
		STAN:             stan,
		TransmissionTime: now.UTC(),
		LocalTime:        now,
		Track2:           swipe.Track2.Equivalent(),
		EntryMode:        res.EntryMode,
		PINBlock:         pin.Block(),
		KSN:              pin.KSNHex(),
		TerminalID:       t.opts.TerminalID,
		MerchantID:       t.opts.MerchantID,
	}
	msg, err := auth.Message()
	if err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, fmt.Errorf("terminal: building the %s: %w", mti, err)
	}
	id, err := t.st.Begin(ctx, store.Intent{
		Kind: "sale", MTI: mti, STAN: stan, TerminalID: t.opts.TerminalID,
		SaleID: req.SaleID, SaleTransactionID: req.SaleTransactionID,
		AmountMinor: req.Amount.Minor, Currency: req.Amount.Currency.Code,
		MaskedPAN: pan.Masked(), EntryMode: res.EntryMode, Time: now,
	})
	if err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, fmt.Errorf("terminal: journaling the intent: %w", err)
	}
	res.TxnID = id
	res.POITransactionID = fmt.Sprintf("%s-%08d", t.opts.TerminalID, uint64(id))
	log = log.With("txn", uint64(id), "stan", stan)
	log.Info("intent journaled", "mti", mti)

	// 5. Online.
	hctx, cancel := context.WithTimeout(ctx, t.opts.HostTimeout)
	resp, sendErr := t.acq.Send(hctx, msg)
	cancel()

	// 6. Outcome, durable before the till hears of it.
	out := store.Outcome{Time: t.opts.Now()}
	padMsg := ""
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
		if ar.Approved() {
			res.Approved = true
			out.State = store.StateApproved
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
		if errors.Is(sendErr, iso8583.ErrNotSent) {
			out.State = store.StateNotSent
			res.Condition = CondUnreachableHost
			res.Message = "acquirer unreachable, nothing was charged: " + sendErr.Error()
			padMsg = "NO CONNECTION"
		} else {
			out.State = store.StateUnknown
			res.Condition = CondInProgress
			res.Message = "no answer from the acquirer; the sale will be reversed: " + sendErr.Error()
			padMsg = "NOT COMPLETED"
		}
		out.Reason = res.Message
	}
	if err := t.st.Finish(ctx, id, out); err != nil {
		t.finishPad(ctx, log, "SYSTEM ERROR")
		return SaleResult{}, fmt.Errorf("terminal: journaling the outcome of transaction %d: %w", uint64(id), err)
	}
	log.Info("outcome journaled", "state", string(out.State), "response_code", out.ResponseCode)

	// 7. Pad and till.
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
