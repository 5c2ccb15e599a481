package main

// Working-key exchange, terminal side: posd asks the acquirer for a new MAC (or PIN, or
// data) working key with an 0800 of the dialect's key-change code, imports the key the
// 0810 carries into hsm.data's token under the KEK, checks its check value and usage,
// confirms it to the host with a second 0800 carrying the new key's check value, and on
// that 0800's answer 00 switches to it, between two sales. Any failure keeps the old key,
// is audited and shows as an alert in posctl keys status.
//
// The key generations live in the token ("mac", "mac.g1", "mac.g2"...); which one is in
// use is kept in store.path + ".keys.json", written once the host has confirmed, so that
// a restart uses the confirmed key and never one the host did not take.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/ceremony"
	"github.com/posd-dev/posd/internal/atomicfile"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/access"
)

// KeyChangeConfig is acquirer.key_change: when posd asks the acquirer for new working keys.
type KeyChangeConfig struct {
	// Keys are the working keys posd asks for: "mac", "pin", "data". Default ["mac"]. posd
	// uses the MAC key itself; PIN and data working keys are imported and kept (posd's
	// PINs come from the pad's DUKPT key and its sealing key is its own).
	Keys []iso8583.KeyKind `json:"keys"`
	// KEK is the id of the key encryption key (TR-31 usage K1) in hsm.data's token that
	// the acquirer wraps working keys under. Default "kek".
	KEK string `json:"kek"`
	// AtSignOn asks for new keys on every sign-on to the acquirer: the first one and each
	// after a reconnect or a switch of host (each new connection, when acquirer.sign_on
	// is off). Default true.
	AtSignOn *bool `json:"at_sign_on"`
	// Every asks again after this long. Default 0: not on a schedule.
	Every Duration `json:"every"`
	// AfterTransactions asks again after this many sales and refunds. Default 0: not by
	// count.
	AfterTransactions int `json:"after_transactions"`
}

// fill checks acquirer.key_change and fills its defaults.
func (k *KeyChangeConfig) fill() error {
	if len(k.Keys) == 0 {
		k.Keys = []iso8583.KeyKind{iso8583.KeyMAC}
	}
	seen := map[iso8583.KeyKind]bool{}
	for i, kind := range k.Keys {
		if kind != iso8583.KeyMAC && kind != iso8583.KeyPIN && kind != iso8583.KeyData {
			return &ConfigError{fmt.Sprintf("acquirer.key_change.keys[%d]", i), fmt.Sprintf("%q is not one of mac, pin, data", kind)}
		}
		if seen[kind] {
			return &ConfigError{fmt.Sprintf("acquirer.key_change.keys[%d]", i), fmt.Sprintf("%q twice", kind)}
		}
		seen[kind] = true
	}
	if k.KEK == "" {
		k.KEK = "kek"
	}
	if k.AtSignOn == nil {
		yes := true
		k.AtSignOn = &yes
	}
	if k.Every < 0 {
		return &ConfigError{"acquirer.key_change.every", "must not be negative"}
	}
	if k.Every > 0 && k.Every < Duration(time.Minute) {
		return &ConfigError{"acquirer.key_change.every", "at least 1m"}
	}
	if k.AfterTransactions < 0 {
		return &ConfigError{"acquirer.key_change.after_transactions", "must not be negative"}
	}
	return nil
}

// keyState is one working key's state, as posctl keys status shows it and as the state
// file keeps its confirmed part.
type keyState struct {
	ID         string    `json:"id"`                    // the key id in use
	Generation uint64    `json:"generation"`            // 0: the key a technician loaded
	KCV        string    `json:"kcv,omitempty"`         // its check value
	Changed    time.Time `json:"changed,omitzero"`      // when the host confirmed it
	Alert      string    `json:"alert,omitempty"`       // the last failed change, until one succeeds
	AlertAt    time.Time `json:"alert_at,omitzero"`     // when it failed
	Duration   string    `json:"last_change,omitempty"` // how long the last change took (both round trips)
}

// keysFile is the state file: the confirmed generation of each working key.
type keysFile struct {
	Version int                          `json:"version"`
	Keys    map[iso8583.KeyKind]keyState `json:"keys"`
}

// keyLink is the acquirer link a key change goes over: *iso8583.Client (and a failover
// over several, which switches every host's link).
type keyLink interface {
	Send(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error)
	SetMACKey(id string)
}

// keyRotator changes working keys. Safe for concurrent use: one change at a time.
type keyRotator struct {
	acq   keyLink
	x     *iso8583.KeyExchange
	m     *hsm.Module
	cfg   KeyChangeConfig
	base  map[iso8583.KeyKind]string // generation 0's id per key
	tid   string
	stan  func(context.Context) (uint32, error)
	now   func() time.Time
	pause func(context.Context) (func(), error) // holds sales off (Terminal.Pause)
	// persist saves an imported key where the backend does not keep it itself (the soft
	// key store); nil for a token.
	persist func(info hsm.KeyInfo, kbpk, block string) error
	audit   func(ctx context.Context, action, detail string)
	file    string
	log     *slog.Logger

	timeout time.Duration // bounds each 0800's wait for its 0810 (acquirer.response_timeout)

	changing sync.Mutex // one change at a time
	mu       sync.Mutex // guards state and lost
	state    map[iso8583.KeyKind]keyState
	// lost is a MAC key change whose confirming 0800 got no answer: the host may use
	// either key. nil when none.
	lost  *lostConfirm
	sales atomic.Int64 // sales since the last change, for AfterTransactions
}

// keyBases are the generation-0 ids of the PIN and data working keys: not posd's own
// "pin" or "data" ids.
var keyBases = map[iso8583.KeyKind]string{iso8583.KeyPIN: "acq-pin", iso8583.KeyData: "acq-data"}

// workingUsage is the hsm usage of each working key.
var workingUsage = map[iso8583.KeyKind]hsm.Usage{iso8583.KeyMAC: hsm.UsageMAC, iso8583.KeyPIN: hsm.UsagePIN, iso8583.KeyData: hsm.UsageData}

// load reads the state file and checks that each confirmed key is in the token; it returns
// the MAC key id to use.
func (r *keyRotator) load(ctx context.Context) (string, error) {
	r.state = map[iso8583.KeyKind]keyState{}
	for _, k := range r.cfg.Keys {
		r.state[k] = keyState{ID: r.base[k]}
	}
	b, err := os.ReadFile(r.file)
	if errors.Is(err, os.ErrNotExist) {
		return r.state[iso8583.KeyMAC].ID, nil
	}
	if err != nil {
		return "", fmt.Errorf("working keys: %w", err)
	}
	var f keysFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		return "", fmt.Errorf("working keys file %s is not posd's (version 1 JSON); it must not be edited: %v", r.file, err)
	}
	for k, st := range f.Keys {
		if _, ok := r.state[k]; !ok {
			continue
		}
		if _, err := hsm.ParseGeneration(r.base[k], st.ID); err != nil {
			return "", fmt.Errorf("working keys file %s: %s key: %w", r.file, k, err)
		}
		info, err := r.m.KeyInfo(ctx, st.ID)
		if err != nil {
			return "", fmt.Errorf("working keys file %s: the %s key in use is %q, which hsm.data does not hold: %w", r.file, k, st.ID, err)
		}
		st.KCV = info.CheckValue.String()
		r.state[k] = st
	}
	return r.state[iso8583.KeyMAC].ID, nil
}

func (r *keyRotator) setState(k iso8583.KeyKind, st keyState) {
	r.mu.Lock()
	r.state[k] = st
	r.mu.Unlock()
}

// save writes the confirmed state.
func (r *keyRotator) save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := keysFile{Version: 1, Keys: map[iso8583.KeyKind]keyState{}}
	for k, st := range r.state {
		f.Keys[k] = keyState{ID: st.ID, Generation: st.Generation, KCV: st.KCV, Changed: st.Changed}
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	return atomicfile.WriteFile(r.file, append(b, '\n'), 0o600)
}

// Status returns each working key's state.
func (r *keyRotator) Status() map[iso8583.KeyKind]keyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[iso8583.KeyKind]keyState, len(r.state))
	for k, v := range r.state {
		out[k] = v
	}
	return out
}

// unsavedAlert begins the alert of a key the host confirmed and posd uses, but whose state
// file could not be written.
const unsavedAlert = "state not saved: "

// ErrKeyNotChanged wraps every reason a key change failed: the old key stays in use.
var ErrKeyNotChanged = errors.New("key not changed; the old key stays in use")

// Rotate changes working key k: it asks the host, imports and checks the key, confirms it
// and switches. On failure the old key stays, the failure is audited and kept as the key's
// alert, and the error wraps ErrKeyNotChanged.
func (r *keyRotator) Rotate(ctx context.Context, k iso8583.KeyKind, who string) (keyState, error) {
	r.changing.Lock()
	defer r.changing.Unlock()
	r.mu.Lock()
	st, ok := r.state[k]
	r.mu.Unlock()
	if !ok {
		return keyState{}, fmt.Errorf("%w: acquirer.key_change.keys does not name the %q key", ErrKeyNotChanged, k)
	}
	start := time.Now()
	next, err := r.change(ctx, k, st)
	if err != nil {
		st.Alert, st.AlertAt = err.Error(), r.now()
		r.setState(k, st)
		r.log.Error("working key change failed; the old key stays in use", "key", k, "id", st.ID, "error", err)
		r.audit(ctx, "key change failed", fmt.Sprintf("%s key: %v (by %s; %s stays in use)", k, err, who, st.ID))
		return st, fmt.Errorf("%w: %w", ErrKeyNotChanged, err)
	}
	next.Duration = time.Since(start).Round(time.Microsecond).String()
	r.setState(k, next)
	r.sales.Store(0)
	if err := r.save(); err != nil {
		// The key is in use now; a restart would go back to the old one, which the host
		// no longer takes: say so loudly.
		r.log.Error("working key changed but its state could not be saved: a restart would use the old key", "file", r.file, "error", err)
		next.Alert, next.AlertAt = unsavedAlert+err.Error(), r.now()
		r.setState(k, next)
	}
	r.log.Info("working key changed", "key", k, "id", next.ID, "kcv", next.KCV, "took", next.Duration)
	r.audit(ctx, "key change", fmt.Sprintf("%s key: %s (KCV %s) replaces %s (by %s)", k, next.ID, next.KCV, st.ID, who))
	return next, nil
}

// change runs one key change and returns the new state; st is the key's current state.
func (r *keyRotator) change(ctx context.Context, k iso8583.KeyKind, st keyState) (keyState, error) {
	resp, err := r.send(ctx, k, nil, false)
	if err != nil {
		return st, err
	}
	id := hsm.GenerationID(r.base[k], st.Generation+1)
	info, err := r.m.ImportWorkingKey(ctx, hsm.WorkingKeyRequest{ID: id, KBPKID: r.cfg.KEK, Block: resp.Block, Usage: workingUsage[k], CheckValue: resp.CheckValue})
	if err != nil {
		return st, fmt.Errorf("the host's key does not import: %w", err)
	}
	if r.persist != nil {
		if err := r.persist(info, r.cfg.KEK, resp.Block); err != nil {
			return st, fmt.Errorf("keeping the new key: %w", err)
		}
	}
	// The switch: no sale in flight while the host and posd change keys.
	release, err := r.pause(ctx)
	if err != nil {
		return st, fmt.Errorf("waiting for the sale in flight: %w", err)
	}
	defer release()
	if _, err := r.send(ctx, k, info.CheckValue.Value, true); err != nil {
		if k == iso8583.KeyMAC && errors.Is(err, iso8583.ErrOutcomeUnknown) {
			// The host may have switched: keep both keys and let the next MAC check tell.
			r.mu.Lock()
			r.lost = &lostConfirm{old: st, next: keyState{ID: id, Generation: st.Generation + 1, KCV: info.CheckValue.String()}}
			r.mu.Unlock()
			err = fmt.Errorf("%w; posd tries %s on the next MAC failure from the host", err, id)
		}
		return st, fmt.Errorf("confirming: %w", err)
	}
	if k == iso8583.KeyMAC {
		r.acq.SetMACKey(id)
	}
	return keyState{ID: id, Generation: st.Generation + 1, KCV: info.CheckValue.String(), Changed: r.now()}, nil
}

// send sends one key-change 0800 and checks its answer.
func (r *keyRotator) send(ctx context.Context, k iso8583.KeyKind, confirm []byte, isConfirm bool) (iso8583.KeyChangeResponse, error) {
	what := "asking for a new key"
	if isConfirm {
		what = "confirming the new key"
	}
	stan, err := r.stan(ctx)
	if err != nil {
		return iso8583.KeyChangeResponse{}, fmt.Errorf("%s: taking a STAN: %w", what, err)
	}
	req, err := r.x.Request(iso8583.KeyChange{Key: k, STAN: stan, TransmissionTime: r.now(), TerminalID: r.tid, Confirm: confirm})
	if err != nil {
		return iso8583.KeyChangeResponse{}, fmt.Errorf("%s: %w", what, err)
	}
	sctx, cancel := context.WithTimeout(ctx, r.timeout)
	msg, err := r.acq.Send(sctx, req)
	cancel()
	if !isConfirm {
		r.observe(err) // an answer to the ask settles a lost confirmation too
	}
	if err != nil {
		if isConfirm && errors.Is(err, iso8583.ErrOutcomeUnknown) {
			err = fmt.Errorf("%w (the host may have switched)", err)
		}
		return iso8583.KeyChangeResponse{}, fmt.Errorf("%s: %w", what, err)
	}
	resp, err := r.x.ParseResponse(msg, isConfirm)
	if err != nil {
		return resp, fmt.Errorf("%s: %w", what, err)
	}
	if resp.ResponseCode != iso8583.RCApproved {
		return resp, fmt.Errorf("%s: the host answered %s", what, resp.ResponseCode)
	}
	return resp, nil
}

// counted counts a sale and reports whether AfterTransactions asks for a change now.
func (r *keyRotator) counted() bool {
	n := r.sales.Add(1)
	return r.cfg.AfterTransactions > 0 && n >= int64(r.cfg.AfterTransactions)
}

// rotateAll changes every configured key, logging failures (they are audited already).
func (r *keyRotator) rotateAll(ctx context.Context, who string) {
	for _, k := range r.cfg.Keys {
		if _, err := r.Rotate(ctx, k, who); err != nil && ctx.Err() != nil {
			return
		}
	}
}

// run asks on each sign-on (signedOn, fed when AtSignOn is set) and on the schedule
// (Every), until ctx ends; wake asks now (after AfterTransactions sales), and host for one
// key (the acquirer's 0800).
func (r *keyRotator) run(ctx context.Context, signedOn, wake <-chan struct{}, host <-chan iso8583.KeyKind) {
	var tick <-chan time.Time
	if r.cfg.Every > 0 {
		t := time.NewTicker(time.Duration(r.cfg.Every))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-signedOn:
			r.rotateAll(ctx, "posd (sign-on)")
		case <-tick:
			r.rotateAll(ctx, "posd (every "+time.Duration(r.cfg.Every).String()+")")
		case <-wake:
			r.rotateAll(ctx, fmt.Sprintf("posd (after %d transactions)", r.cfg.AfterTransactions))
		case k := <-host:
			if _, err := r.Rotate(ctx, k, "the acquirer (0800)"); err != nil {
				r.log.Warn("the acquirer asked for a key change that did not complete", "key", k, "error", err)
			}
		}
	}
}

// keysAPI serves POST /v1/keys/rotate and GET /v1/keys.
type keysAPI struct {
	r *keyRotator
}

func (h *keysAPI) routes(g *access.Guard) {
	g.HandleFunc("GET /v1/keys", access.OpKeys, h.serveStatus)
	g.HandleFunc("POST /v1/keys/rotate", access.OpKeys, h.serveRotate)
}

func (h *keysAPI) serveStatus(w http.ResponseWriter, r *http.Request) {
	writeJSONTo(w, http.StatusOK, map[string]any{"keys": h.r.Status()})
}

func (h *keysAPI) serveRotate(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Keys []iso8583.KeyKind `json:"keys"` // default: every key of acquirer.key_change.keys
		Note string            `json:"note"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		jsonError(w, http.StatusBadRequest, errors.New(`body must be JSON {"keys": ["mac"], "note": ...}: `+err.Error()))
		return
	}
	note, err := checkNote(body.Note)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return
	}
	by := who(r, note)
	kinds := body.Keys
	if len(kinds) == 0 {
		kinds = h.r.cfg.Keys
	}
	out := map[iso8583.KeyKind]keyState{}
	var errs []string
	for _, k := range kinds {
		st, err := h.r.Rotate(context.WithoutCancel(r.Context()), k, by)
		out[k] = st
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k, err))
		}
	}
	if errs != nil {
		writeJSONTo(w, http.StatusBadGateway, map[string]any{"error": strings.Join(errs, "; "), "keys": out})
		return
	}
	writeJSONTo(w, http.StatusOK, map[string]any{"keys": out})
}

// keyChanges is the daemon's working-key changes; nil when acquirer.key_change is not set.
// Its methods are safe on nil.
type keyChanges struct {
	r    *keyRotator
	wake chan struct{}
	// signedOn is fed by the link's sign-on hook (ClientOptions.SignedOn) when AtSignOn is
	// set; nil otherwise.
	signedOn chan struct{}
	host     chan iso8583.KeyKind // keys the acquirer asked to change (its 0800)
}

// hostAsks passes on the acquirer's request to change key k now.
func (k *keyChanges) hostAsks(kind iso8583.KeyKind) {
	if k == nil {
		return
	}
	select {
	case k.host <- kind:
	default: // changes already waiting
	}
}

// keyRotator makes the daemon's key changes from acquirer.key_change, checking the
// dialect, the data module and its KEK, and switches the link to the MAC key in use.
func (d *daemon) keyRotator(ctx context.Context, aopts iso8583.ClientOptions, data *hsm.Module) (*keyChanges, error) {
	cfg := d.cfg
	kc := cfg.Acquirer.KeyChange
	if kc == nil {
		return nil, nil
	}
	if aopts.Dialect == nil || aopts.Dialect.KeyExchange == nil {
		return nil, &ConfigError{"acquirer.key_change", "the acquirer's dialect declares no \"key_exchange\" (which field carries the key): set acquirer.dialect to one that does, such as iso8583/dialects/mac-retail-keyx.json"}
	}
	if aopts.Dialect.KeyExchange.Form != iso8583.KeyFormTR31 {
		return nil, &ConfigError{"acquirer.key_change", fmt.Sprintf("the dialect's key_exchange form is %q: posd imports TR-31 key blocks only (a legacy ECB key carries no usage or integrity of its own)", aopts.Dialect.KeyExchange.Form)}
	}
	if data == nil {
		return nil, &ConfigError{"hsm.data", "acquirer.key_change imports working keys into hsm.data's token: configure it"}
	}
	info, err := data.KeyInfo(ctx, kc.KEK)
	if err != nil {
		return nil, &ConfigError{"acquirer.key_change.kek", fmt.Sprintf("key %q: %v (load the key encryption key with posd key load --id %s --usage kbpk)", kc.KEK, err, kc.KEK)}
	}
	if info.Usage != hsm.UsageKBPK {
		return nil, &ConfigError{"acquirer.key_change.kek", fmt.Sprintf("key %q is a %v key, not a key encryption key (KBPK)", kc.KEK, info.Usage)}
	}
	for _, k := range kc.Keys {
		if k == iso8583.KeyMAC && aopts.Dialect.MAC == nil {
			return nil, &ConfigError{"acquirer.key_change.keys", "\"mac\": the dialect declares no MAC"}
		}
	}
	r := &keyRotator{acq: d.acq, x: aopts.Dialect.KeyExchange, m: data, cfg: *kc, tid: cfg.Terminal.ID, stan: d.st.NextSTAN, now: time.Now,
		timeout: time.Duration(cfg.Acquirer.ResponseTimeout),
		base:    map[iso8583.KeyKind]string{iso8583.KeyMAC: cfg.Acquirer.MACKey, iso8583.KeyPIN: keyBases[iso8583.KeyPIN], iso8583.KeyData: keyBases[iso8583.KeyData]},
		pause:   func(ctx context.Context) (func(), error) { return d.term.Pause(ctx) },
		audit: func(ctx context.Context, action, detail string) {
			if err := d.st.Audit(ctx, "posd", action, detail); err != nil {
				d.log.Error("audit", "action", action, "error", err)
			}
		},
		file: cfg.Store.Path + ".keys.json", log: d.log}
	if cfg.HSM.Data.Backend == "soft" {
		keyFile := cfg.HSM.Data.KeyFile
		r.persist = func(info hsm.KeyInfo, kbpk, block string) error {
			s := ceremony.NewSoftFiles(keyFile)
			defer s.Clear()
			if err := s.ReadOthers(); err != nil {
				return err
			}
			return s.SaveImported(info, kbpk, block)
		}
	}
	macID, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	if aopts.Dialect.MAC != nil {
		d.acq.SetMACKey(macID)
		d.log.Info("MAC key in use", "id", macID)
	}
	return &keyChanges{r: r, wake: make(chan struct{}, 1), host: make(chan iso8583.KeyKind, 3)}, nil
}

// sent counts sales and refunds for after_transactions; nil without key changes.
func (k *keyChanges) sent() func(*iso8583.Message) {
	if k == nil || k.r.cfg.AfterTransactions == 0 {
		return nil
	}
	return func(m *iso8583.Message) {
		mti, _ := m.GetMTI()
		if mti != iso8583.MTIFinancialRequest && mti != iso8583.MTIAuthorizationRequest {
			return
		}
		if k.r.counted() {
			select {
			case k.wake <- struct{}{}:
			default:
			}
		}
	}
}

// start runs the changes at start and on the schedule until ctx ends.
func (k *keyChanges) start(ctx context.Context) {
	if k != nil {
		go k.r.run(ctx, k.signedOn, k.wake, k.host)
	}
}

// status returns the working keys' state for GET /v1/status; nil without key changes.
func (k *keyChanges) status() func() map[iso8583.KeyKind]keyState {
	if k == nil {
		return nil
	}
	return k.r.Status
}

// lostConfirm is a MAC key change whose confirmation got no answer: old is the key in use
// before it, next the imported key the host may have switched to; trying says that the
// link uses next now, on trial.
type lostConfirm struct {
	old, next keyState
	trying    bool
}

// observe learns from each answer (or failure) of a request to the acquirer whether the
// host switched MAC keys after a lost confirmation. A MAC failure with the old key in use
// makes posd try the new key (once); a MAC failure under the new one too goes back to the
// old. A response whose MAC verifies settles on the key in use: the new one is saved as
// confirmed. Each step is logged and audited. Nothing happens without a lost confirmation.
func (r *keyRotator) observe(err error) {
	r.mu.Lock()
	l := r.lost
	if l == nil || (err != nil && !errors.Is(err, iso8583.ErrMACInvalid)) {
		r.mu.Unlock()
		return
	}
	var action, detail string
	save := false
	switch {
	case err != nil && !l.trying:
		l.trying = true
		r.acq.SetMACKey(l.next.ID)
		action, detail = "key change recovery", fmt.Sprintf("mac key: a response failed its MAC after a lost confirmation: trying %s (KCV %s)", l.next.ID, l.next.KCV)
	case err != nil:
		r.lost = nil
		r.acq.SetMACKey(l.old.ID)
		action, detail = "key change recovery failed", fmt.Sprintf("mac key: responses fail their MAC under %s and %s: back to %s", l.old.ID, l.next.ID, l.old.ID)
	case l.trying:
		r.lost = nil
		next := l.next
		next.Changed = r.now()
		r.state[iso8583.KeyMAC] = next
		r.sales.Store(0)
		save = true
		action, detail = "key change", fmt.Sprintf("mac key: %s (KCV %s) replaces %s: its confirmation was lost, and the host's answers verify under it", next.ID, next.KCV, l.old.ID)
	default:
		r.lost = nil
		action, detail = "key change recovery", fmt.Sprintf("mac key: the host's answers verify under %s after a lost confirmation: the host kept it; %s is not used", l.old.ID, l.next.ID)
	}
	r.mu.Unlock()
	if save {
		if err := r.save(); err != nil {
			r.log.Error("working key settled but its state could not be saved: a restart would use the old key", "file", r.file, "error", err)
			r.mu.Lock()
			st := r.state[iso8583.KeyMAC]
			st.Alert, st.AlertAt = unsavedAlert+err.Error(), r.now()
			r.state[iso8583.KeyMAC] = st
			r.mu.Unlock()
		}
	}
	r.log.Warn("working key after a lost confirmation: "+detail, "key", iso8583.KeyMAC)
	r.audit(context.Background(), action, detail+" (by posd)")
}

// answered is told of each answer or failure of the daemon's requests to the acquirer
// (sales, refunds, the queue's reversals and advices); nil without key changes.
func (k *keyChanges) answered() func(error) {
	if k == nil {
		return nil
	}
	return k.r.observe
}
