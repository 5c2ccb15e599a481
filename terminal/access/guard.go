package access

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ApprovalHeader carries a dual-control approval id; a JSON body field "approval" does too.
const ApprovalHeader = "Posd-Approval"

// Request is what a Classifier finds in a request: the operation and, for till requests
// and a till's journal, the SaleID it names.
//
// A plain value: safe for concurrent use when not modified.
type Request struct {
	Op     Op
	SaleID string
}

// Classifier tells the operation of a request on a route whose operation depends on the
// body (POST /nexo). It may read r.Body if it puts an equal one back. An error is the
// request's fault: it is answered 400 with the error's text.
//
// Classifiers are called from the serving goroutines: they must be safe for concurrent use.
type Classifier func(r *http.Request) (Request, error)

// Credentials verifies a person's own credential carried by a request whose caller lacks
// the role an operation needs: a supervisor's operator id and password sent by a
// cashier's till, or a code typed on the PIN pad. It returns the person's name for the
// audit, or an error when the credential is absent or wrong. Implementations rate-limit
// and lock out themselves. Not provided yet: see Options.Credentials.
//
// The Guard calls it from the serving goroutines: implementations must be safe for concurrent use.
type Credentials interface {
	Verify(ctx context.Context, r *http.Request, op Op, need []Role) (person string, err error)
}

// Options configures a Guard.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// Roles gives callers their roles. Required.
	Roles *Map
	// Audit records refusals and pending approvals (st.Audit). Default: none; refusals
	// are then only logged.
	Audit func(ctx context.Context, who, action, detail string) error
	// Logger gets a line for each refusal. Default: discard.
	Logger *slog.Logger
	// DualWindow is how long a dual-control approval waits for its second person.
	// Default 5m.
	DualWindow time.Duration
	// RatePerMinute bounds each person's write requests (all but GETs, Payment and
	// TransactionStatus), and the audit entries of its refusals. Default 30.
	RatePerMinute int
	// SearchesPerMinute bounds each person's card searches (OpCardSearch), on top of
	// RatePerMinute: a search answers whether a card was used here, which must not be
	// asked fast enough to guess. Default 10.
	SearchesPerMinute int
	// MaxPending bounds the dual-control approvals waiting at once. Default 64.
	MaxPending int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Credentials, when set, lets a request whose caller lacks the needed role through
	// if it carries the own credential of a person who holds it (the audit then names
	// both). Default nil: off, the caller's roles alone decide.
	Credentials Credentials
}

// Guard is the API's router and gatekeeper: register each route with the operation it
// runs, then serve. Routes registered without an operation do not exist: nothing reaches
// a handler without a decision.
//
// Safe for concurrent use once routes are registered (Handle is not safe to call while
// serving).
type Guard struct {
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	rules map[string]Classifier

	mu       sync.Mutex
	writes   map[string]*bucket // person → write budget
	searches map[string]*bucket // person → card search budget
	refusals map[string]*bucket // person → refusal audit budget
	pending  map[string]*pending
	sales    map[string]map[string]bool // person → SaleIDs used (cashier journal)
}

type pending struct {
	op      Op
	target  string // method and path
	person  string
	who     string
	expires time.Time
}

// New returns a guard with no routes.
func New(opts Options) (*Guard, error) {
	if opts.Roles == nil {
		return nil, errors.New("access: Options.Roles is required")
	}
	if opts.DualWindow <= 0 {
		opts.DualWindow = 5 * time.Minute
	}
	if opts.RatePerMinute <= 0 {
		opts.RatePerMinute = 30
	}
	if opts.SearchesPerMinute <= 0 {
		opts.SearchesPerMinute = 10
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 64
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{opts: opts, log: log, mux: http.NewServeMux(), rules: map[string]Classifier{},
		writes: map[string]*bucket{}, searches: map[string]*bucket{}, refusals: map[string]*bucket{}, pending: map[string]*pending{},
		sales: map[string]map[string]bool{}}, nil
}

// Handle registers h for pattern (http.ServeMux syntax) as operation op.
func (g *Guard) Handle(pattern string, op Op, h http.Handler) {
	g.HandleClassified(pattern, func(*http.Request) (Request, error) { return Request{Op: op}, nil }, h)
}

// HandleFunc is Handle for a function.
func (g *Guard) HandleFunc(pattern string, op Op, h http.HandlerFunc) { g.Handle(pattern, op, h) }

// HandleClassified registers h for pattern; classify tells each request's operation.
func (g *Guard) HandleClassified(pattern string, classify Classifier, h http.Handler) {
	g.mux.Handle(pattern, h)
	g.rules[pattern] = classify
}

// ErrorBody is the JSON body of a refusal.
//
// A plain value: safe for concurrent use when not modified.
type ErrorBody struct {
	Error string `json:"error"`
	// Need names the roles the operation needs (403).
	Need []Role `json:"need,omitempty"`
}

// PendingBody is the 202 answer to the first request of a dual-control operation.
//
// A plain value: safe for concurrent use when not modified.
type PendingBody struct {
	Status   string    `json:"status"` // "pending"
	Approval string    `json:"approval"`
	Op       Op        `json:"op"`
	Expires  time.Time `json:"expires"`
	Message  string    `json:"message"`
}

// ServeHTTP authenticates the caller, decides, and runs the route's handler or refuses.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := identify(r)
	if err != nil {
		g.log.Warn("API request refused: unauthenticated", "path", quote32(r.URL.Path), "reason", err)
		writeJSON(w, http.StatusForbidden, ErrorBody{Error: err.Error()})
		return
	}
	c := Caller{Identity: id, Roles: g.opts.Roles.RolesOf(id)}
	target := r.Method + " " + r.URL.Path
	if len(c.Roles) == 0 {
		g.refuse(w, r, c, http.StatusForbidden, target, fmt.Sprintf("%s holds no role: posd's config (api.roles) gives it none", id), nil)
		return
	}
	_, pattern := g.mux.Handler(r)
	classify, ok := g.rules[pattern]
	if !ok {
		g.mux.ServeHTTP(w, r) // 404 or 405
		return
	}
	req, err := classify(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: err.Error()})
		return
	}
	c.Op = req.Op
	target += " (" + string(req.Op) + ")"
	need := req.Op.Roles()
	allowed := false
	for _, role := range need {
		if c.Has(role) {
			allowed = true
		}
	}
	if allowed && req.Op == OpJournalOwn && !c.Has(Supervisor) && !g.usedSaleID(id.Person(), req.SaleID) {
		g.refuse(w, r, c, http.StatusForbidden, target, fmt.Sprintf("a cashier sees the journal of the SaleIDs it has sold under since posd started; %q is not one of them", quote32(req.SaleID)), []Role{Supervisor})
		return
	}
	var credErr error
	if !allowed && g.opts.Credentials != nil && len(need) > 0 {
		person, err := g.opts.Credentials.Verify(r.Context(), r, req.Op, need)
		switch {
		case err == nil:
			allowed, c.Person = true, person
		case !errors.Is(err, ErrNoCredential):
			credErr = err
		}
	}
	if !allowed {
		names := make([]string, len(need))
		for i, n := range need {
			names[i] = string(n)
		}
		msg := fmt.Sprintf("%s needs role %s; %s has %s", req.Op, strings.Join(names, " or "), id, rolesText(c.Roles))
		if len(need) == 0 {
			msg = fmt.Sprintf("%s: no role may do this", req.Op)
		}
		if credErr != nil {
			msg += "; the operator credential it carried was refused: " + credErr.Error()
		}
		g.refuse(w, r, c, http.StatusForbidden, target, msg, need)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !req.Op.unlimited() {
		if !g.take(g.writes, id.Person(), g.opts.RatePerMinute) {
			g.refuse(w, r, c, http.StatusTooManyRequests, target, fmt.Sprintf("%s: more than %d write requests a minute from %s; try again shortly", req.Op, g.opts.RatePerMinute, id), nil)
			return
		}
	}
	if req.Op == OpCardSearch && !g.take(g.searches, id.Person(), g.opts.SearchesPerMinute) {
		g.refuse(w, r, c, http.StatusTooManyRequests, target, fmt.Sprintf("%s: more than %d card searches a minute from %s; try again in a minute", req.Op, g.opts.SearchesPerMinute, id), nil)
		return
	}
	if req.Op.Dual() {
		done := g.dual(w, r, &c, target)
		if done {
			return
		}
	}
	if req.Op.bindsSaleID() && req.SaleID != "" {
		g.bindSaleID(id.Person(), req.SaleID)
	}
	g.mux.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), c)))
}

func rolesText(rs []Role) string {
	if len(rs) == 0 {
		return "no role"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// refuse answers code with msg, logs it and audits it (within the person's refusal
// budget; refusals over it are counted into the next entry).
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, c Caller, code int, target, msg string, need []Role) {
	g.log.Warn("API request refused", "who", c.Identity.String(), "request", quote64(target), "status", code, "reason", msg)
	writeJSON(w, code, ErrorBody{Error: msg, Need: need})
	if g.opts.Audit == nil {
		return
	}
	person := c.Identity.Person()
	g.mu.Lock()
	b := g.bucketOf(g.refusals, person)
	ok := b.take(g.opts.Now(), g.opts.RatePerMinute)
	var skipped int
	if ok {
		skipped, b.skipped = b.skipped, 0
	} else {
		b.skipped++
	}
	g.mu.Unlock()
	if !ok {
		return
	}
	detail := fmt.Sprintf("%s: HTTP %d: %s", quote64(target), code, msg)
	if skipped > 0 {
		detail += fmt.Sprintf(" (and %d more refusals of this caller not recorded one by one)", skipped)
	}
	if err := g.opts.Audit(context.WithoutCancel(r.Context()), c.Identity.String(), "refused", detail); err != nil {
		g.log.Error("recording a refused request in the audit", "reason", err)
	}
}

// dual runs dual control; it reports whether it answered the request (pending or
// refused). When it returns false, c names the approval and its first person.
func (g *Guard) dual(w http.ResponseWriter, r *http.Request, c *Caller, target string) bool {
	approval := strings.TrimSpace(r.Header.Get(ApprovalHeader))
	if approval == "" {
		var err error
		if approval, err = bodyApproval(r); err != nil {
			writeJSON(w, http.StatusBadRequest, ErrorBody{Error: err.Error()})
			return true
		}
	}
	now := g.opts.Now()
	// Two approvals are two people: two uids or certificates, or, through one till, two
	// operators' own credentials.
	person := c.Identity.Person()
	if c.Person != "" {
		person = "operator:" + c.Person
	}
	path := r.Method + " " + r.URL.Path
	if approval == "" {
		id, err := newApprovalID()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, ErrorBody{Error: err.Error()})
			return true
		}
		g.mu.Lock()
		for k, p := range g.pending {
			if now.After(p.expires) {
				delete(g.pending, k)
			}
		}
		full := len(g.pending) >= g.opts.MaxPending
		if !full {
			g.pending[id] = &pending{op: c.Op, target: path, person: person, who: c.Identity.String(), expires: now.Add(g.opts.DualWindow)}
		}
		g.mu.Unlock()
		if full {
			g.refuse(w, r, *c, http.StatusTooManyRequests, target, fmt.Sprintf("%d dual-control approvals are already waiting; try again when they are approved or expired", g.opts.MaxPending), nil)
			return true
		}
		if g.opts.Audit != nil {
			if err := g.opts.Audit(context.WithoutCancel(r.Context()), c.Identity.String(), "approval-requested",
				fmt.Sprintf("%s: approval %s waits for a second person until %s", quote64(target), id, now.Add(g.opts.DualWindow).UTC().Format(time.RFC3339))); err != nil {
				g.log.Error("recording a pending approval in the audit", "reason", err)
			}
		}
		writeJSON(w, http.StatusAccepted, PendingBody{Status: "pending", Approval: id, Op: c.Op, Expires: now.Add(g.opts.DualWindow),
			Message: fmt.Sprintf("nothing was done: %s needs a second person; another %s repeats this request with approval %s within %s",
				c.Op, rolesText(c.Op.Roles()), id, g.opts.DualWindow)})
		return true
	}
	g.mu.Lock()
	p := g.pending[approval]
	var msg string
	switch {
	case p == nil:
		msg = fmt.Sprintf("approval %q is not pending (never requested, already used, or forgotten by a restart)", quote32(approval))
	case now.After(p.expires):
		delete(g.pending, approval)
		msg = fmt.Sprintf("approval %s expired at %s: request it again", approval, p.expires.UTC().Format(time.RFC3339))
	case p.target != path:
		msg = fmt.Sprintf("approval %s is for %s, not %s", approval, quote64(p.target), quote64(path))
	case p.person == person:
		msg = fmt.Sprintf("approval %s was requested by %s: a second, different person must approve it", approval, p.who)
	default:
		delete(g.pending, approval)
		c.Approval, c.FirstBy = approval, p.who
	}
	g.mu.Unlock()
	if msg != "" {
		g.refuse(w, r, *c, http.StatusForbidden, target, msg, nil)
		return true
	}
	return false
}

// bodyApproval reads a JSON body's "approval" field, leaving the body as it was.
func bodyApproval(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		return "", fmt.Errorf("reading the request: %w", err)
	}
	if len(b) > 64<<10 {
		return "", errors.New("request body larger than 64 KiB")
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	if len(bytes.TrimSpace(b)) == 0 {
		return "", nil
	}
	var v struct {
		Approval string `json:"approval"`
	}
	if json.Unmarshal(b, &v) != nil {
		return "", nil // the handler reports the body's own errors
	}
	return strings.TrimSpace(v.Approval), nil
}

func newApprovalID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("access: approval id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// maxSalesPerPerson bounds the SaleIDs remembered per person.
const maxSalesPerPerson = 256

func (g *Guard) bindSaleID(person, saleID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.sales[person]
	if s == nil {
		s = map[string]bool{}
		g.sales[person] = s
	}
	if len(s) >= maxSalesPerPerson && !s[saleID] {
		for k := range s { // forget one: a till uses few SaleIDs
			delete(s, k)
			break
		}
	}
	s[saleID] = true
}

func (g *Guard) usedSaleID(person, saleID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return saleID != "" && g.sales[person][saleID]
}

// bucket is a token bucket of rate tokens a minute, full at rate.
type bucket struct {
	tokens  float64
	last    time.Time
	skipped int
}

func (b *bucket) take(now time.Time, rate int) bool {
	if b.last.IsZero() {
		b.tokens = float64(rate)
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(rate), b.tokens+d.Minutes()*float64(rate))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// maxBuckets bounds the people whose budgets are remembered; full buckets are forgotten
// first, since forgetting them changes nothing.
const maxBuckets = 4096

// bucketOf returns person's bucket in m; g.mu is held.
func (g *Guard) bucketOf(m map[string]*bucket, person string) *bucket {
	b := m[person]
	if b == nil {
		if len(m) >= maxBuckets {
			now := g.opts.Now()
			for k, o := range m {
				if now.Sub(o.last) > time.Minute && o.skipped == 0 {
					delete(m, k)
				}
			}
		}
		b = &bucket{}
		m[person] = b
	}
	return b
}

func (g *Guard) take(m map[string]*bucket, person string, perMinute int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.bucketOf(m, person).take(g.opts.Now(), perMinute)
}

func quote64(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
