package terminal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
	// ErrAborted is the cause of a sale's context when the till aborted it (Terminal.Abort).
	ErrAborted = errors.New("terminal: aborted by the till")
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
	Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error)
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
	// RefusePartial makes a partial approval (response code 10: the host approved less
	// than asked) a refusal whose approval is reversed. Default false: the sale completes
	// for the amount approved and the till is told the remainder.
	RefusePartial bool
	// ReversalWait bounds how long a sale spends sending the reversals still pending from
	// earlier transactions before its own authorization may go out (reversals go first).
	// When one is still pending after it, the sale does not go online. Default 10s.
	ReversalWait time.Duration
	// Refunds decides which refunds the terminal takes. Default: linked refunds only, of
	// sales whose journal record carries the card's PAN hash.
	Refunds RefundPolicy
	// Forward configures the store-and-forward of reversals and advices; its Now and
	// Logger default to the Terminal's.
	Forward ForwardOptions
	// PANHash, when set, makes the keyed hash of a card's PAN and expiry that its journal
	// records carry (store.Intent.PANHash) for finding a card's sales; it must never return
	// anything from which the PAN can be read back without its key. The expiry is in it so
	// that whoever holds a masked PAN cannot find the card by trying its middle digits
	// alone. A failure stops the sale before anything is sent. Default nil: records carry
	// no hash.
	PANHash func(ctx context.Context, pan card.PAN, expiry card.Expiry) (string, error)
	Now     func() time.Time
	Logger  *slog.Logger // default: discard
	// Failpoint, when set, is called at named points of a sale ("after-intent",
	// "after-response": the host answered, the outcome is not yet recorded) and of a drain
	// ("mid-drain": sent and answered, not yet settled). Crash tests use it to kill posd
	// exactly there. Default nil.
	// Also "close-after-intent" (a close journaled, its 0500 not sent) and
	// "close-after-0500" (answered, the outcome not journaled).
	Failpoint func(name string)
	// CloseDrainWait bounds how long a batch close waits for the store-and-forward queue to
	// drain before it fails with the batch still open. Default 30s.
	CloseDrainWait time.Duration
	// CtlsEntryModes are ISO 8583 field 22 for a tap, as the acquirer's dialect wants
	// them. Each empty one defaults: EMV "071", Magstripe "911". A value that is not
	// exactly 3 digits is refused by New.
	CtlsEntryModes CtlsEntryModes
	// Observe, when set, is told of each sale's end and of reversals queued, for posd's
	// metrics. Default: none.
	Observe Observer
}

// Observer receives a Terminal's events for metrics. Each field may be nil. Its funcs run
// on the goroutine of the sale (or void) that caused the event: they must be quick (an
// atomic add, a histogram observation) and must not call the Terminal.
//
// A plain value: safe for concurrent use when not modified.
type Observer struct {
	// SaleEnded is called once for each sale or refund that ran, when it ends, with its
	// result and error and how long it took. A repeat answered from an earlier run, and a
	// request refused before it ran (invalid, busy, a conflict), are not reported.
	SaleEnded func(res SaleResult, err error, took time.Duration)
	// Reversals is called with n after n reversals were queued durably (a sale's outcome
	// unknown, a void, a chip card that declined after approval, recovery after a crash).
	Reversals func(n int)
}

// reversals tells the observer of n reversals queued, if n > 0.
func (o Observer) reversals(n int) {
	if o.Reversals != nil && n > 0 {
		o.Reversals(n)
	}
}

// reversalsQueued tells the observer of the reversals among items, queued durably.
func (t *Terminal) reversalsQueued(items ...store.Item) {
	n := 0
	for _, it := range items {
		if it.Kind == store.KindReversal {
			n++
		}
	}
	t.opts.Observe.reversals(n)
}

// CtlsEntryModes are the POS entry modes (ISO 8583 field 22) of contactless cards.
//
// A plain value: safe for concurrent use when not modified.
type CtlsEntryModes struct {
	EMV       string // a tap in EMV mode (card type 06); default "071"
	Magstripe string // a tap in magnetic stripe mode (card type 05); default "911"
}

// threeDigits reports whether s is exactly 3 ASCII digits.
func threeDigits(s string) bool {
	return len(s) == 3 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
}

// panHash returns the keyed hash of pan and expiry for the journal, "" when none is
// configured.
func (t *Terminal) panHash(ctx context.Context, pan card.PAN, expiry card.Expiry) (string, error) {
	if t.opts.PANHash == nil {
		return "", nil
	}
	h, err := t.opts.PANHash(ctx, pan, expiry)
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
	mu      sync.Mutex // held by the running sale
	tills   tillRequests

	pauseMu sync.Mutex
	pause   chan struct{} // closed when a Pause ends; nil when none holds sales off
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
	if opts.DualMessage && !st.CanSeal() {
		// A completion advice carries the card's PAN and expiry, kept only sealed.
		return nil, errors.New("terminal: dual message needs a data key: the completion (0220) of each authorization carries card data that is kept only encrypted")
	}
	if opts.CtlsEntryModes.EMV == "" {
		opts.CtlsEntryModes.EMV = "071"
	}
	if opts.CtlsEntryModes.Magstripe == "" {
		opts.CtlsEntryModes.Magstripe = "911"
	}
	for _, m := range []struct{ name, v string }{{"EMV", opts.CtlsEntryModes.EMV}, {"Magstripe", opts.CtlsEntryModes.Magstripe}} {
		if !threeDigits(m.v) {
			return nil, fmt.Errorf("terminal: CtlsEntryModes.%s %q: must be 3 digits", m.name, m.v)
		}
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
	if opts.ReversalWait <= 0 {
		opts.ReversalWait = 10 * time.Second
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
	t.tills.init()
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
	ServiceID         string // the till's id of this request (nexo ServiceID); "" when none
	SaleTransactionID string // the till's reference for this sale
	Amount            money.Amount
	// Refund makes the request a refund, money back to the card (Terminal.Refund); false:
	// a sale.
	Refund bool
	// Original is the POITransactionID (as this terminal issued it) of the sale a linked
	// refund refunds; "" for an unlinked refund, and for a sale.
	Original string
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
	CondAborted           Condition = "Aborted"           // the till aborted it, or the customer did not act in time
	CondNotAllowed        Condition = "NotAllowed"        // not possible in this combination (see ConflictError)
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
	Amount           money.Amount // asked
	// AuthorizedMinor is the amount approved when the host approved part of Amount (a
	// partial approval); 0 when it approved all of it, or nothing.
	AuthorizedMinor int64
	Approved        bool
	Condition       Condition
	Message         string // for the cashier: why, in words
	ResponseCode    string // ISO 8583 field 39, when the host answered
	ApprovalCode    string
	RRN             string
	STAN            uint32
	MaskedPAN       string
	EntryMode       string
	PINEntered      bool // the customer entered a PIN (online PIN)
	Chip            bool // read from the chip (EMV)
	ApprovedOffline bool // approved by posd within its offline policy; an advice is queued
	// CVM is how the cardholder was verified; SignatureRequired that the card asks for a
	// signature (a chip card's CVM, or a swiped card whose service code asks for no PIN).
	CVM               CVM
	SignatureRequired bool
	ChipData          ChipData // of a chip card's application, for the receipt; zero for a swipe
	Refund            bool     // the transaction is a refund (money to the cardholder)
	Receipt           Receipt
	// refusal is the short reason (the pad's closing message) of a sale refused before it
	// went online, for the receipt; "" otherwise.
	refusal string
}

// refuse ends a sale refused before going online: nothing is journaled because nothing was
// asked of the acquirer.
func (t *Terminal) refuse(ctx context.Context, res SaleResult, why, padMsg string) SaleResult {
	res.Condition = CondRefusal
	res.Message = why
	res.refusal = padMsg
	t.finishPad(ctx, t.log, padMsg)
	res.Receipt = t.receipt(res)
	return res
}

// deviceFailure ends a sale whose device step failed: customer cancel, timeout or a fault.
func (t *Terminal) deviceFailure(ctx context.Context, res SaleResult, log *slog.Logger, step string, err error) SaleResult {
	switch {
	case errors.Is(context.Cause(ctx), ErrAborted):
		res.Condition = CondAborted
		res.Message = "aborted by the till during " + step + "; nothing was charged"
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

// queueItem builds the store item of a reversal or advice of auth. The card data kept is
// the PAN and expiry only, sealed by the store; never the track or the PIN block.
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
		Kind: kind, AmountMinor: auth.AmountMinor, Currency: cur, // its STAN: the store's, in the outcome's write
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
