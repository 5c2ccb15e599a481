package terminal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
)

// OfflinePolicy decides whether a sale the acquirer could not answer may be approved
// offline, as terminal vendors' store-and-forward settings do. The zero value approves
// nothing offline.
//
// A plain value: safe for concurrent use when not modified.
type OfflinePolicy struct {
	// Enabled turns offline approval on. Default false: a sale the host cannot answer is
	// declined.
	Enabled bool
	// FloorLimitMinor is the largest amount approved offline per sale. Default 0 (none)
	// when Enabled is false; DefaultOfflinePolicy uses 5000 (50.00 in a 2-decimal currency).
	FloorLimitMinor int64
	// MaxCount is how many offline approvals may wait for the host at once.
	MaxCount int
	// MaxTotalMinor caps the sum of offline approvals waiting for the host.
	MaxTotalMinor int64
	// MaxAge refuses new offline approvals while the oldest waiting one is older.
	MaxAge time.Duration
}

// DefaultOfflinePolicy returns the policy posd uses when offline approval is enabled
// without further settings: floor limit 50.00, at most 100 approvals and 500.00 held, none
// older than 48 hours (the limits terminal vendors document: PAX, Datacap).
func DefaultOfflinePolicy() OfflinePolicy {
	return OfflinePolicy{Enabled: true, FloorLimitMinor: 5000, MaxCount: 100, MaxTotalMinor: 50000, MaxAge: 48 * time.Hour}
}

// offlineDecision says whether a sale may be approved offline, and why not.
func (p OfflinePolicy) decide(amount int64, onlinePIN bool, sc card.ServiceCode, t store.Totals, now time.Time) (bool, string) {
	switch {
	case !p.Enabled:
		return false, "offline approval is not enabled on this terminal"
	case onlinePIN:
		return false, "a PIN-verified card cannot be approved offline (the PIN can only be checked online)"
	case sc.OnlineOnly():
		return false, "the card's issuer requires online authorization (service code)"
	case amount > p.FloorLimitMinor:
		return false, fmt.Sprintf("amount above the offline floor limit (%d minor units)", p.FloorLimitMinor)
	case p.MaxCount > 0 && t.Advices >= p.MaxCount:
		return false, fmt.Sprintf("%d offline approvals already wait for the acquirer (limit %d)", t.Advices, p.MaxCount)
	case p.MaxTotalMinor > 0 && t.AdviceAmountMinor+amount > p.MaxTotalMinor:
		return false, fmt.Sprintf("offline total would exceed its limit (%d minor units)", p.MaxTotalMinor)
	case p.MaxAge > 0 && !t.OldestAdvice.IsZero() && now.Sub(t.OldestAdvice) > p.MaxAge:
		return false, fmt.Sprintf("the oldest offline approval has waited more than %s for the acquirer", p.MaxAge)
	}
	return true, ""
}

// queued is the non-sensitive part of a queued message (store.Item.Payload): what is
// needed, with the sealed card data, to build the reversal or advice at any later time.
type queued struct {
	OrigMTI          string    `json:"orig_mti"`
	OrigSTAN         uint32    `json:"orig_stan"`
	OrigTransmission time.Time `json:"orig_transmission"`
	LocalTime        time.Time `json:"local_time"`
	AmountMinor      int64     `json:"amount_minor"`
	CurrencyNumeric  string    `json:"currency_numeric"`
	ProcessingCode   string    `json:"processing_code"`
	EntryMode        string    `json:"entry_mode"`
	TerminalID       string    `json:"terminal_id"`
	MerchantID       string    `json:"merchant_id"`
	ReasonCode       string    `json:"reason_code,omitempty"`   // reversals
	ApprovalCode     string    `json:"approval_code,omitempty"` // advices: the offline approval code, or the host's for a completion
	// Completion: the advice completes the authorization Orig* names (dual message); it
	// carries that original in field 90. An offline approval's advice does not.
	Completion bool `json:"completion,omitempty"`
}

// queuedFromAuth describes the original authorization auth, for its reversal (reason) or
// its advice (approval, the offline approval code).
func queuedFromAuth(auth iso8583.Authorization, reason, approval string) queued {
	return queued{
		OrigMTI: auth.MTI, OrigSTAN: auth.STAN, OrigTransmission: auth.TransmissionTime, LocalTime: auth.LocalTime,
		AmountMinor: auth.AmountMinor, CurrencyNumeric: auth.CurrencyNumeric, ProcessingCode: auth.ProcessingCode,
		EntryMode: auth.EntryMode, TerminalID: auth.TerminalID, MerchantID: auth.MerchantID,
		ReasonCode: reason, ApprovalCode: approval,
	}
}

// queuedFromRecord describes the original of a journal record, for its reversal; the card
// data is gone by then, so the reversal identifies the original by field 90.
func (t *Terminal) queuedFromRecord(rec store.Record, reason string) (queued, error) {
	cur, err := money.LookupCurrency(rec.Intent.Currency)
	if err != nil {
		return queued{}, err
	}
	return queued{
		OrigMTI: rec.Intent.MTI, OrigSTAN: rec.Intent.STAN, OrigTransmission: rec.Intent.Time.UTC(), LocalTime: rec.Intent.Time,
		AmountMinor: rec.Intent.AmountMinor, CurrencyNumeric: cur.Numeric, ProcessingCode: processingCode(rec.Intent),
		EntryMode: rec.Intent.EntryMode, TerminalID: rec.Intent.TerminalID, MerchantID: t.opts.MerchantID,
		ReasonCode: reason,
	}, nil
}

// processingCode is field 3 of the request a journal record stands for: a refund's
// "200000" (the intent keeps it), a sale's default purchase code.
func processingCode(in store.Intent) string {
	if in.ProcessingCode != "" {
		return in.ProcessingCode
	}
	return iso8583.DefaultProcessingCode
}

// reversalItem is the queue item of the reversal q describes, without card data, with a
// STAN of its own from the counter.
func (t *Terminal) reversalItem(ctx context.Context, q queued, currency, maskedPAN string) (store.Item, error) {
	stan, err := t.st.NextSTAN(ctx)
	if err != nil {
		return store.Item{}, err
	}
	payload, _ := json.Marshal(q)
	return store.Item{Kind: store.KindReversal, STAN: stan, AmountMinor: q.AmountMinor, Currency: currency, MaskedPAN: maskedPAN, Payload: payload}, nil
}

// queuedCard is the sensitive part, sealed by the store. No track data and no PIN block:
// PCI DSS forbids keeping them after authorization, even encrypted.
type queuedCard struct {
	PAN     string `json:"pan"`
	Expiry  string `json:"expiry"`
	Field55 []byte `json:"field55,omitempty"` // a chip card's data (its cryptogram) for the advice
}

// completionItem is the queue item of the 0220 completion advice of auth, an 0100 the host
// approved for approvedMinor with approvalCode (dual message): it collects the funds the
// 0100 holds. Field 90 names the 0100 (its MTI, STAN and field 7), for the host to match
// and release the hold. It is queued with the sale's outcome (FinishAndQueue), so an
// approved 0100 is completed exactly once; its STAN is the caller's to set, as for any
// queued message. It carries the card's PAN and expiry, sealed, as an advice must: a
// terminal without a data key cannot complete, and should not run dual message.
func (t *Terminal) completionItem(auth iso8583.Authorization, p presented, approvedMinor int64, approvalCode string) store.Item {
	if !validApprovalCode(approvalCode) {
		approvalCode = "" // field 38 is optional; a malformed one would make the advice unsendable
	}
	it := t.queueItem(store.KindAdvice, auth, p, "", approvalCode)
	q := queuedFromAuth(auth, "", approvalCode)
	q.AmountMinor, q.Completion = approvedMinor, true
	it.Payload, _ = json.Marshal(q)
	it.AmountMinor = approvedMinor
	return it
}

// validApprovalCode reports whether code fits field 38 of an advice: 6 letters or digits.
func validApprovalCode(code string) bool {
	if len(code) != 6 {
		return false
	}
	for _, c := range []byte(code) {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// sendable turns a queued item, marked sending (store.MarkSending), into the message to
// send now: the first send of a reversal is an 0400, retries are 0420 then repeats 0421;
// an advice is 0220, repeats 0221. Every send of an item carries the STAN and the field 7
// of its first send (it.FirstSent), so that the host sees one message sent again, never a
// new one.
func sendable(it store.Item) (*iso8583.Message, error) {
	if it.FirstSent.IsZero() {
		return nil, fmt.Errorf("queued item %d: not marked sending: its transmission time is not recorded", it.ID)
	}
	sentAt := it.FirstSent.UTC()
	var q queued
	if err := json.Unmarshal(it.Payload, &q); err != nil {
		return nil, fmt.Errorf("queued item %d: payload: %w", it.ID, err)
	}
	// A reversal queued by a void carries no card data: posd no longer holds it, and field
	// 90 identifies the original for the host.
	var c queuedCard
	var pan card.PAN
	if len(it.Sensitive) > 0 {
		if err := json.Unmarshal(it.Sensitive, &c); err != nil {
			return nil, fmt.Errorf("queued item %d: card data cannot be decoded", it.ID)
		}
		var err error
		if pan, err = card.ParsePAN(c.PAN); err != nil {
			return nil, fmt.Errorf("queued item %d: %w", it.ID, err)
		}
	}
	switch it.Kind {
	case store.KindReversal:
		if o := it.Reverses; o != nil {
			// The reversal of an advice (a voided offline approval or completion): field 90
			// names the advice as it was sent.
			q.OrigMTI, q.OrigSTAN, q.OrigTransmission = o.MTI, o.STAN, o.Time.UTC()
		}
		r := iso8583.Reversal{
			Advice: it.Attempts > 0, Repeat: it.Attempts > 1,
			STAN: it.STAN, TransmissionTime: sentAt, LocalTime: q.LocalTime,
			OriginalMTI: q.OrigMTI, OriginalSTAN: q.OrigSTAN, OriginalTransmissionTime: q.OrigTransmission,
			PAN: pan, Expiry: c.Expiry, AmountMinor: q.AmountMinor, CurrencyNumeric: q.CurrencyNumeric,
			ProcessingCode: q.ProcessingCode, EntryMode: q.EntryMode, TerminalID: q.TerminalID, MerchantID: q.MerchantID,
			ReasonCode: q.ReasonCode,
		}
		return r.Message()
	case store.KindAdvice:
		a := iso8583.Advice{
			Repeat: it.Attempts > 0,
			STAN:   it.STAN, TransmissionTime: sentAt, LocalTime: q.LocalTime,
			PAN: pan, Expiry: c.Expiry, AmountMinor: q.AmountMinor, CurrencyNumeric: q.CurrencyNumeric,
			ProcessingCode: q.ProcessingCode, EntryMode: q.EntryMode, TerminalID: q.TerminalID, MerchantID: q.MerchantID,
			ApprovalCode: q.ApprovalCode, ResponseCode: "00", Field55: c.Field55,
		}
		if q.Completion {
			a.Original = &iso8583.Original{MTI: q.OrigMTI, STAN: q.OrigSTAN, TransmissionTime: q.OrigTransmission}
		}
		return a.Message()
	}
	return nil, fmt.Errorf("queued item %d: unknown kind %q", it.ID, it.Kind)
}

// ForwardOptions configures the Forwarder.
//
// A plain value: safe for concurrent use when not modified.
type ForwardOptions struct {
	// Window is how many queued messages are in flight at once; Drain reads, marks and
	// settles them 4*Window at a time. Default 16.
	Window int
	// MaxAttempts is how many sends that may have reached the host an item gets before it
	// is parked and an alert raised (never dropped). Default 10.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between failed attempts, which doubles per
	// failure with ±20% jitter. Defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// SendTimeout bounds each send. Default 30s.
	SendTimeout time.Duration
	// Alert is called when an item is parked. Default: logged only.
	Alert func(store.Item, string)
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger // default: discard
	// Failpoint: see Options.Failpoint ("mid-drain"). Default nil.
	Failpoint func(name string)
}

// Forwarder drains the store-and-forward queue to the acquirer: reversals first, then
// advices, a window at a time, with exponential backoff and jitter while the host is away.
// It is safe for concurrent use; Run runs it in the background and Drain can be called
// directly (the sale path drains reversals before each authorization).
type Forwarder struct {
	st   *store.Store
	acq  Acquirer
	opts ForwardOptions
	log  *slog.Logger
	kick chan struct{}
	mu   sync.Mutex // one drain at a time
	// streak counts drains in a row that reached nothing (host down): it sets the backoff
	// of not-sent failures, which do not count as attempts.
	streak int
}

// NewForwarder returns a forwarder over st and acq.
func NewForwarder(st *store.Store, acq Acquirer, opts ForwardOptions) *Forwarder {
	if opts.Window <= 0 {
		opts.Window = 16
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{st: st, acq: acq, opts: opts, log: log, kick: make(chan struct{}, 1)}
}

// Kick makes a running forwarder look at the queue now.
func (f *Forwarder) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// DrainStats counts what a Drain did.
//
// A plain value: safe for concurrent use when not modified.
type DrainStats struct {
	Sent, Acked, Failed, Parked int
}

// Drain sends every due item (reversals only, if reversalsOnly), in windows of 4*Window
// items, until nothing is due or a whole window failed to reach the host. Each window is
// marked sending in one commit before its first byte goes out (store.MarkSending: the field
// 7 of each item's first send is recorded then, and a crash after it makes the next send a
// repeat), and its results are settled in one commit. While one window is in flight the
// next is read, marked and started; the two share Window send slots, and a window of the
// other kind waits until the one in flight is settled. Reversals go first, host by host: no
// advice is sent to a host while a reversal for it is still waiting, since an advice that
// overtook the reversal of the same sale's timed-out authorization would leave the customer
// charged twice until the reversal got through; with backup hosts, a reversal waiting for
// one host does not hold back advices to another (see heldHosts for when a reversal holds
// every host). The one exception goes the other way: the reversal of an advice that may be
// on its way (a void) is held until that advice is acknowledged, so that it never reaches
// the host before the advice it undoes.
func (f *Forwarder) Drain(ctx context.Context, reversalsOnly bool) (DrainStats, error) {
	return f.drain(ctx, reversalsOnly, false)
}

// DrainReversalsNow sends every pending reversal now, whatever its backoff: a sale calls it
// before its own authorization, since no authorization may overtake a reversal.
func (f *Forwarder) DrainReversalsNow(ctx context.Context) (DrainStats, error) {
	return f.drain(ctx, true, true)
}

func (f *Forwarder) drain(ctx context.Context, reversalsOnly, ignoreBackoff bool) (DrainStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var total DrainStats
	// One window may be in flight (marked sending, not settled) while the next is read,
	// marked and started: the store's work for one window runs beside the sends of the
	// other, and the sends of both share Window slots, so that the link never waits for a
	// window's slowest send or for a commit. inflight is that window; nil when none.
	sem := make(chan struct{}, f.opts.Window)
	var inflight *window
	// land waits for w's sends and settles them; more is false when nothing got through
	// (the host is away: wait for the backoff).
	land := func(w *window) (more bool, err error) {
		st := f.tally(w)
		if f.opts.Failpoint != nil {
			f.opts.Failpoint("mid-drain")
		}
		if err := f.st.Settle(context.WithoutCancel(ctx), w.results); err != nil {
			return false, err
		}
		total.Sent += st.Sent
		total.Acked += st.Acked
		total.Failed += st.Failed
		total.Parked += st.Parked
		return st.Acked > 0, nil
	}
	// landAll lands the window in flight, if any, before the drain returns or turns to
	// the other kind.
	landAll := func() (bool, error) {
		if inflight == nil {
			return true, nil
		}
		w := inflight
		inflight = nil
		return land(w)
	}
	stop := func(err error) (DrainStats, error) {
		if _, lerr := landAll(); err == nil {
			err = lerr
		}
		return total, err
	}
	for {
		dueBy := f.opts.Now()
		if ignoreBackoff {
			dueBy = dueBy.Add(100 * 365 * 24 * time.Hour)
		}
		batch, err := f.st.DueAfter(ctx, dueBy, inflight.after(store.KindReversal), f.opts.Window*4, store.KindReversal)
		if err != nil {
			return stop(err)
		}
		if len(batch) > 0 && inflight != nil && inflight.kind != store.KindReversal {
			// A reversal came due behind advices in flight: they land first, and the
			// reversals go before any more advices.
			if more, err := landAll(); err != nil || !more {
				return total, err
			}
			continue
		}
		var hosts map[store.QueueID]string
		if len(batch) == 0 && !reversalsOnly {
			if inflight != nil && inflight.kind == store.KindReversal {
				// Reversals in flight: no advice goes before they land (those that fail
				// then hold the advices, see heldHosts).
				if more, err := landAll(); err != nil || !more {
					return total, err
				}
				continue
			}
			held, all, err := f.heldHosts(ctx)
			if err != nil {
				return stop(err)
			}
			if all {
				return stop(nil) // a reversal waits for its backoff: advices wait for it
			}
			if batch, err = f.st.DueAfter(ctx, f.opts.Now(), inflight.after(store.KindAdvice), f.opts.Window*4, store.KindAdvice); err != nil {
				return stop(err)
			}
			// Only the advices to a host where no reversal waits: a reversal for one
			// host holds that host's later messages, not another's.
			hosts = f.routes(ctx, batch)
			batch = slices.DeleteFunc(batch, func(it store.Item) bool { return held[hosts[it.ID]] })
		}
		if len(batch) == 0 {
			if inflight == nil {
				return total, nil
			}
			// Nothing behind the window in flight: land it, then look again from the
			// front (what it failed is due later, after its backoff).
			if more, err := landAll(); err != nil || !more {
				return total, err
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return stop(err)
		}
		if hosts == nil {
			hosts = f.routes(ctx, batch)
		}
		last := batch[len(batch)-1].ID // Due reads in queue order
		// Recorded before the bytes go out. An item a void withdrew since Due read it is
		// left out here, and not sent.
		marked, err := f.st.MarkSending(ctx, batch, f.opts.Now())
		if err != nil {
			return stop(err)
		}
		if len(marked) == 0 {
			continue
		}
		w := f.dispatch(ctx, sem, marked, hosts, last)
		prev := inflight
		inflight = w
		if prev == nil {
			continue
		}
		if more, err := land(prev); err != nil || !more {
			return stop(err) // nothing got through: wait for the backoff
		}
		if ctx.Err() != nil {
			return stop(ctx.Err())
		}
	}
}

// window is a batch of marked items being sent: results[i] is items[i]'s, complete once
// done is closed.
type window struct {
	kind    store.Kind
	last    store.QueueID // the last id Due returned for it: the next window starts after
	items   []store.Item
	hosts   map[store.QueueID]string
	results []store.Result
	done    chan struct{}
}

// after is the id after which the next window of kind starts: w's last, when w is a window
// of kind in flight; 0 otherwise.
func (w *window) after(kind store.Kind) store.QueueID {
	if w == nil || w.kind != kind {
		return 0
	}
	return w.last
}

// dispatch starts sending items, each to its host in hosts (nil: no backup hosts), in
// slots of sem shared with the window before it, and returns at once.
func (f *Forwarder) dispatch(ctx context.Context, sem chan struct{}, items []store.Item, hosts map[store.QueueID]string, last store.QueueID) *window {
	w := &window{kind: items[0].Kind, last: last, items: items, hosts: hosts, results: make([]store.Result, len(items)), done: make(chan struct{})}
	go func() {
		var wg sync.WaitGroup
		for i, it := range items {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				w.results[i] = f.sendOne(ctx, it, hosts[it.ID])
			}()
		}
		wg.Wait()
		close(w.done)
	}()
	return w
}

// tally waits for w's sends to end, counts them, raises the alerts of parked items and sets
// when the not-sent ones are tried again.
func (f *Forwarder) tally(w *window) DrainStats {
	<-w.done
	results := w.results
	var st DrainStats
	reachedNothing := true
	for i, r := range results {
		st.Sent++
		switch {
		case r.Acked:
			st.Acked++
			reachedNothing = false
		case r.Park:
			st.Parked++
			f.alert(w.items[i], r.Err)
		default:
			st.Failed++
			if r.Reached {
				reachedNothing = false
			}
		}
	}
	if reachedNothing {
		f.streak++
	} else {
		f.streak = 0
	}
	// Not-sent failures back off on the streak: the host is away, not refusing.
	for i := range results {
		if !results[i].Acked && !results[i].Reached && !results[i].Park {
			results[i].Next = f.opts.Now().Add(f.backoff(f.streak))
		}
	}
	return st
}

func (f *Forwarder) sendOne(ctx context.Context, it store.Item, host string) store.Result {
	now := f.opts.Now()
	res := it.Result(now) // Settle takes the item as MarkSending left it
	msg, err := sendable(it)
	if err != nil {
		// It can never be built: park it for an operator rather than retry forever.
		res.Err, res.Park = err.Error(), true
		return res
	}
	sctx, cancel := context.WithTimeout(ctx, f.opts.SendTimeout)
	res.Host = host
	resp, err := sendTo(sctx, f.acq, host, msg)
	cancel()
	if err == nil {
		r, perr := iso8583.ParseResponse(resp)
		if perr == nil {
			res.Acked, res.ResponseCode = true, r.ResponseCode
			f.log.Info("queued message acknowledged", "kind", string(it.Kind), "txn", uint64(it.TxnID), "stan", it.STAN, "response_code", r.ResponseCode, "host", res.Host)
			return res
		}
		err = fmt.Errorf("%w: unreadable answer: %w", iso8583.ErrOutcomeUnknown, perr)
	}
	res.Err = err.Error()
	res.Reached = !errors.Is(err, iso8583.ErrNotSent)
	if res.Reached {
		attempts := it.Attempts + 1
		if attempts >= f.opts.MaxAttempts {
			res.Park = true
			return res
		}
		res.Next = now.Add(f.backoff(attempts))
	}
	return res
}

// backoff is MinBackoff doubled n-1 times, capped at MaxBackoff, with ±20% jitter.
func (f *Forwarder) backoff(n int) time.Duration {
	d := f.opts.MinBackoff
	for i := 1; i < n && d < f.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, f.opts.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (f *Forwarder) alert(it store.Item, why string) {
	f.log.Error("queued message parked: retries exhausted or unsendable; an operator must act (posctl saf list)", "kind", string(it.Kind), "queue_id", uint64(it.ID), "txn", uint64(it.TxnID), "pan", it.MaskedPAN, "reason", why)
	if f.opts.Alert != nil {
		f.opts.Alert(it, why)
	}
}

// Run drains the queue until ctx ends: at once, whenever kicked, and when the next item
// falls due.
func (f *Forwarder) Run(ctx context.Context) error {
	for {
		if _, err := f.Drain(ctx, false); err != nil && ctx.Err() == nil {
			f.log.Warn("store-and-forward drain failed", "reason", err)
		}
		wait := f.nextWait(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-f.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// nextWait is how long until the earliest pending item is due (at most a minute).
func (f *Forwarder) nextWait(ctx context.Context) time.Duration {
	next, ok, err := f.st.NextDue(ctx)
	if err != nil || !ok {
		return time.Minute
	}
	return min(max(next.Sub(f.opts.Now()), 10*time.Millisecond), time.Minute)
}
