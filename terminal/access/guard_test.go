package access

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type auditLog struct {
	mu      sync.Mutex
	entries []string
}

func (a *auditLog) add(_ context.Context, who, action, detail string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, who+"|"+action+"|"+detail)
	return nil
}

func (a *auditLog) count(substr string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.entries {
		if strings.Contains(e, substr) {
			n++
		}
	}
	return n
}

// rig is a guard over routes that count their runs, with a clock the test moves.
type rig struct {
	g     *Guard
	audit *auditLog
	now   time.Time
	mu    sync.Mutex
	ran   map[string]int
}

func newRig(t *testing.T, tweak ...func(*Options)) *rig {
	t.Helper()
	m, err := NewMap(RolesConfig{
		"cashier":    {Users: []string{"60001"}},
		"supervisor": {Users: []string{"60002", "60003"}, Subjects: []string{"CN=sup1"}},
		"technician": {Groups: []string{"60100"}, Users: []string{"60005"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{audit: &auditLog{}, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ran: map[string]int{}}
	opts := Options{Roles: m, Audit: r.audit.add, RatePerMinute: 5, Now: func() time.Time {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.now
	}}
	for _, f := range tweak {
		f(&opts)
	}
	r.g, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			c, ok := CallerFrom(req.Context())
			if !ok {
				t.Errorf("%s ran without a caller", name)
			}
			r.mu.Lock()
			r.ran[name]++
			r.mu.Unlock()
			fmt.Fprint(w, c.Who())
		}
	}
	nexoOp := func(req *http.Request) (Request, error) {
		return Request{Op: Op(req.URL.Query().Get("op")), SaleID: req.URL.Query().Get("sale")}, nil
	}
	r.g.HandleClassified("POST /nexo", nexoOp, h("nexo"))
	r.g.HandleFunc("GET /v1/status", OpStatus, h("status"))
	r.g.HandleClassified("GET /v1/journal", func(req *http.Request) (Request, error) {
		if req.URL.Query().Has("sale_id") {
			return Request{Op: OpJournalOwn, SaleID: req.URL.Query().Get("sale_id")}, nil
		}
		return Request{Op: OpJournal}, nil
	}, h("journal"))
	r.g.HandleFunc("POST /v1/journal/find", OpCardSearch, h("find"))
	r.g.HandleFunc("GET /v1/saf", OpSAFList, h("saf list"))
	r.g.HandleFunc("DELETE /v1/saf/{id}", OpSAFDelete, h("saf delete"))
	r.g.HandleFunc("GET /v1/store/check", OpStoreCheck, h("store check"))
	r.g.HandleFunc("POST /v1/firmware/install", OpFirmware, h("firmware"))
	r.g.HandleFunc("POST /v1/firmware/rollback", OpFirmwareRollback, h("rollback"))
	return r
}

func peer(uid uint32, gids ...uint32) Identity {
	id := Identity{Peer: true, UID: uid, GID: 65534, PID: 4242}
	if len(gids) > 0 {
		id.GID, id.Groups = gids[0], gids[1:]
	}
	return id
}

// do sends one request as id; approval, when set, goes in the header.
func (r *rig) do(id Identity, method, target, approval string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader("{}"))
	req = req.WithContext(context.WithValue(req.Context(), peerKey, peerResult{id: id}))
	if approval != "" {
		req.Header.Set(ApprovalHeader, approval)
	}
	w := httptest.NewRecorder()
	r.g.ServeHTTP(w, req)
	return w
}

func TestRolesAllowedAndRefused(t *testing.T) {
	cashier, supervisor, technician, nobody := peer(60001), peer(60002), peer(60009, 60100), peer(65534)
	type call struct{ method, target string }
	calls := map[string]call{
		"payment":     {"POST", "/nexo?op=payment&sale=TILL1"},
		"abort":       {"POST", "/nexo?op=abort&sale=TILL1"},
		"txn status":  {"POST", "/nexo?op=transaction+status&sale=TILL1"},
		"void":        {"POST", "/nexo?op=void"},
		"status":      {"GET", "/v1/status"},
		"journal":     {"GET", "/v1/journal"},
		"own journal": {"GET", "/v1/journal?sale_id=TILL1"},
		"card search": {"POST", "/v1/journal/find"},
		"saf list":    {"GET", "/v1/saf"},
		"store check": {"GET", "/v1/store/check"},
		"firmware":    {"POST", "/v1/firmware/install"},
	}
	for _, tc := range []struct {
		who     string
		id      Identity
		allowed []string
		need    string // the role a refusal names for "void"
	}{
		{"cashier", cashier, []string{"payment", "abort", "txn status", "status", "own journal"}, "supervisor"},
		{"supervisor", supervisor, []string{"payment", "abort", "txn status", "void", "status", "journal", "own journal", "card search", "saf list", "store check"}, ""},
		{"technician", technician, []string{"status", "store check", "firmware"}, "supervisor"},
		{"nobody", nobody, nil, ""},
	} {
		r := newRig(t)
		// The cashier's own journal is the journal of a SaleID it sold under: payment first.
		for _, name := range []string{"payment", "abort", "txn status", "void", "status", "journal", "own journal", "card search", "saf list", "store check", "firmware"} {
			c := calls[name]
			r.mu.Lock()
			r.now = r.now.Add(time.Minute) // each refusal within the audit budget
			r.mu.Unlock()
			w := r.do(tc.id, c.method, c.target, "")
			want := false
			for _, a := range tc.allowed {
				want = want || a == name
			}
			if got := w.Code == http.StatusOK; got != want {
				t.Errorf("%s %s: HTTP %d %s, want allowed=%v", tc.who, name, w.Code, w.Body, want)
				continue
			}
			if want {
				continue
			}
			var eb ErrorBody
			if w.Code != http.StatusForbidden || json.Unmarshal(w.Body.Bytes(), &eb) != nil {
				t.Errorf("%s %s: HTTP %d %s, want 403 with a JSON error", tc.who, name, w.Code, w.Body)
			}
			if name == "void" && tc.need != "" && (!strings.Contains(eb.Error, "needs role "+tc.need) || len(eb.Need) != 1 || eb.Need[0] != Role(tc.need)) {
				t.Errorf("%s void: %+v, want it to name role %s", tc.who, eb, tc.need)
			}
		}
		refused := len(calls) - len(tc.allowed)
		if n := r.audit.count(tc.id.String() + "|refused|"); n != refused {
			t.Errorf("%s: %d refusals audited, want %d: %q", tc.who, n, refused, r.audit.entries)
		}
		r.mu.Lock()
		ran := 0
		for _, n := range r.ran {
			ran += n
		}
		r.mu.Unlock()
		if ran != len(tc.allowed) {
			t.Errorf("%s: %d handlers ran, want %d (a refused call changes nothing)", tc.who, ran, len(tc.allowed))
		}
	}
}

func TestCashierJournalIsItsOwnTill(t *testing.T) {
	r := newRig(t)
	cashier, other := peer(60001), peer(60001)
	other.UID = 60011
	if w := r.do(cashier, "GET", "/v1/journal?sale_id=TILL1", ""); w.Code != http.StatusForbidden {
		t.Errorf("before selling under TILL1: HTTP %d", w.Code)
	}
	r.do(cashier, "POST", "/nexo?op=payment&sale=TILL1", "")
	if w := r.do(cashier, "GET", "/v1/journal?sale_id=TILL1", ""); w.Code != http.StatusOK {
		t.Errorf("after selling under TILL1: HTTP %d %s", w.Code, w.Body)
	}
	if w := r.do(cashier, "GET", "/v1/journal?sale_id=TILL2", ""); w.Code != http.StatusForbidden {
		t.Errorf("another till's journal: HTTP %d", w.Code)
	}
}

func TestDualControl(t *testing.T) {
	r := newRig(t)
	first, second, cashier := peer(60002), peer(60003), peer(60001)
	w := r.do(first, "DELETE", "/v1/saf/7", "")
	var p PendingBody
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Approval == "" || r.ran["saf delete"] != 0 {
		t.Fatalf("first request: HTTP %d %s, ran %d; want 202 with an approval and nothing done", w.Code, w.Body, r.ran["saf delete"])
	}
	if w := r.do(first, "DELETE", "/v1/saf/7", p.Approval); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "second, different person") {
		t.Errorf("same person approving: HTTP %d %s", w.Code, w.Body)
	}
	if w := r.do(cashier, "DELETE", "/v1/saf/7", p.Approval); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "needs role supervisor") {
		t.Errorf("a cashier approving: HTTP %d %s", w.Code, w.Body)
	}
	if w := r.do(second, "DELETE", "/v1/saf/8", p.Approval); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "is for DELETE /v1/saf/7") {
		t.Errorf("approval used for another item: HTTP %d %s", w.Code, w.Body)
	}
	w = r.do(second, "DELETE", "/v1/saf/7", p.Approval)
	if w.Code != http.StatusOK || r.ran["saf delete"] != 1 || !strings.Contains(w.Body.String(), "approving uid 60002") {
		t.Errorf("second person: HTTP %d %s, ran %d", w.Code, w.Body, r.ran["saf delete"])
	}
	if w := r.do(second, "DELETE", "/v1/saf/7", p.Approval); w.Code != http.StatusForbidden || r.ran["saf delete"] != 1 {
		t.Errorf("approval used twice: HTTP %d", w.Code)
	}
	// An approval expires after the window.
	w = r.do(first, "DELETE", "/v1/saf/9", "")
	json.Unmarshal(w.Body.Bytes(), &p)
	r.mu.Lock()
	r.now = r.now.Add(5*time.Minute + time.Second)
	r.mu.Unlock()
	if w := r.do(second, "DELETE", "/v1/saf/9", p.Approval); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "expired") || r.ran["saf delete"] != 1 {
		t.Errorf("expired approval: HTTP %d %s", w.Code, w.Body)
	}
	if n := r.audit.count("|approval-requested|"); n != 2 {
		t.Errorf("%d pending approvals audited, want 2", n)
	}
}

func TestRateLimit(t *testing.T) {
	r := newRig(t) // 5 a minute
	sup := peer(60002)
	for i := range 5 {
		if w := r.do(sup, "POST", "/v1/journal/find", ""); w.Code != http.StatusOK {
			t.Fatalf("request %d: HTTP %d", i+1, w.Code)
		}
	}
	if w := r.do(sup, "POST", "/v1/journal/find", ""); w.Code != http.StatusTooManyRequests {
		t.Errorf("sixth write in a minute: HTTP %d", w.Code)
	}
	// Sales and status questions are never limited; reads are not either.
	for range 10 {
		if w := r.do(sup, "POST", "/nexo?op=payment&sale=T", ""); w.Code != http.StatusOK {
			t.Fatalf("payment limited: HTTP %d", w.Code)
		}
		if w := r.do(sup, "GET", "/v1/saf", ""); w.Code != http.StatusOK {
			t.Fatalf("read limited: HTTP %d", w.Code)
		}
	}
	if r.audit.count("HTTP 429") != 1 {
		t.Errorf("the 429 was not audited: %q", r.audit.entries)
	}
	r.mu.Lock()
	r.now = r.now.Add(13 * time.Second) // one token back at 5 a minute
	r.mu.Unlock()
	if w := r.do(sup, "POST", "/v1/journal/find", ""); w.Code != http.StatusOK {
		t.Errorf("after the budget refilled: HTTP %d", w.Code)
	}
	// A flood of refusals is audited within the budget, the rest counted.
	nobody := peer(65534)
	for range 50 {
		r.do(nobody, "GET", "/v1/status", "")
	}
	if n := r.audit.count(nobody.String() + "|refused|"); n != 5 {
		t.Errorf("%d refusals of a flood audited, want 5 (the budget)", n)
	}
}

func TestUnauthenticatedAndCertificates(t *testing.T) {
	r := newRig(t)
	req := httptest.NewRequest("GET", "/v1/status", nil)
	w := httptest.NewRecorder()
	r.g.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "unauthenticated") {
		t.Errorf("no identity: HTTP %d %s", w.Code, w.Body)
	}
	if w := r.do(Identity{Subject: "sup1"}, "GET", "/v1/saf", ""); w.Code != http.StatusOK || w.Body.String() != "cert CN=sup1" {
		t.Errorf("certificate subject: HTTP %d %s", w.Code, w.Body)
	}
	if w := r.do(Identity{Subject: "stranger"}, "GET", "/v1/status", ""); w.Code != http.StatusForbidden {
		t.Errorf("unmapped subject: HTTP %d", w.Code)
	}
}

func TestNewMapRefuses(t *testing.T) {
	for _, tc := range []struct {
		cfg  RolesConfig
		want string
	}{
		{RolesConfig{"admin": {Users: []string{"1"}}}, `admin: unknown role "admin"`},
		{RolesConfig{"cashier": {Users: []string{"7"}}, "supervisor": {Users: []string{"7"}}}, "supervisor.users[0]: user 7 is already under role cashier"},
		{RolesConfig{"cashier": {Groups: []string{""}}}, "cashier.groups[0]: empty name"},
		{RolesConfig{"cashier": {Users: []string{"no-such-user-xyz"}}}, `cashier.users[0]: "no-such-user-xyz" is not a known name`},
		{RolesConfig{"cashier": {Subjects: []string{"CN=a,O=b"}}}, "cashier.subjects[0]"},
	} {
		_, err := NewMap(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// Card searches have a budget of their own (default 10 a minute), below the writes': a
// search tells whether a card was used here, and must not be asked fast enough to guess.
func TestCardSearchLimit(t *testing.T) {
	r := newRig(t, func(o *Options) { o.RatePerMinute = 1000 })
	sup := peer(60002)
	for i := range 10 {
		if w := r.do(sup, "POST", "/v1/journal/find", ""); w.Code != http.StatusOK {
			t.Fatalf("search %d: HTTP %d", i+1, w.Code)
		}
	}
	if w := r.do(sup, "POST", "/v1/journal/find", ""); w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "card searches") {
		t.Errorf("eleventh search in a minute: HTTP %d %s", w.Code, w.Body)
	}
	if w := r.do(sup, "POST", "/v1/saf/flush", ""); w.Code == http.StatusTooManyRequests {
		t.Errorf("a flush counted against the search budget")
	}
	if r.audit.count("card searches") != 1 {
		t.Errorf("the refused search was not audited: %q", r.audit.entries)
	}
}
