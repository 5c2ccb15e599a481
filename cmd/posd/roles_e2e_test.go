package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/padsim"
)

// Throwaway uids (no /etc/passwd entry) the roles test maps to one role each.
const (
	cashierUID    = 60001
	supervisorUID = 60002 // secondSupervisor's uid: supervisor in every test config
	technicianUID = 60003
	nobodyUID     = 65534
)

// TestRolesThroughBinaries runs the built posctl as people of each role against the real
// posd over its socket: each operation allowed or refused as issue 13's table says, a
// refusal naming the role it needs; a cashier's till carrying a supervisor's own
// credential may void (and the audit names both); a supervisor's credential locks after
// five wrong passwords; and a user of no role gets nothing.
func TestRolesThroughBinaries(t *testing.T) {
	c := &captured{}
	dir := t.TempDir()
	sale := demoSales()[0]
	events := append(append([]padsim.Event{}, sale.events...), sale.events...)
	pair := startPad(t, c, dir, events)
	_, addr := startAcquirer(t, c)
	cfgPath, sock := writeTestConfig(t, dir, pair.A, addr)
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	cfg = strings.Replace(cfg, `"roles": {"supervisor": {"users": [`,
		`"operators_file": "`+dir+`/operators.json", "roles": {"cashier": {"users": ["60001"]}, "technician": {"users": ["60003"]}, "supervisor": {"users": [`, 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := c.runIn(t, "correct horse 1\n", "posd", "operator", "add", "--config", cfgPath, "--id", "alice", "--role", "supervisor"); code != 0 {
		t.Fatalf("posd operator add: %d %s", code, out)
	}
	if code, out := c.runIn(t, "correct horse 2\n", "posd", "operator", "add", "--config", cfgPath, "--id", "tom", "--role", "technician"); code != 0 {
		t.Fatalf("posd operator add: %d %s", code, out)
	}
	posd := c.start(t, "posd", "run", "--config", cfgPath)
	posd.waitFor(t, "posd ready")
	shareDir(t, dir)
	api := "--api=unix:" + sock
	as := func(uid uint32, stdin string, args ...string) (int, string) {
		t.Helper()
		return c.runAs(t, uid, 0, stdin, "posctl", append([]string{api}, args...)...)
	}

	// A cashier sells; the sale is what a supervisor later voids.
	code, out := as(cashierUID, "", "sale", "--amount", sale.amount, "--sale-id", "TILL7")
	if code != 0 || !strings.Contains(out, "result: Success") {
		t.Fatalf("the cashier's sale: exit %d\n%s", code, out)
	}
	poi := regexp.MustCompile(`POI transaction: (\S+)`).FindStringSubmatch(out)
	if poi == nil {
		t.Fatalf("no POI transaction id in\n%s", out)
	}

	type call struct {
		what  string
		stdin string
		args  []string
	}
	calls := map[string]call{
		"status":       {"posd's status", "", []string{"status"}},
		"sale":         {"a sale", "", []string{"sale", "--amount", "1.00"}},
		"void":         {"a void", "", []string{"void", poi[1]}},
		"saf list":     {"the queue", "", []string{"saf", "list"}},
		"journal":      {"the whole journal", "", []string{"journal"}},
		"journal find": {"card search", "4761739001010010\n", []string{"journal", "find"}},
		"store check":  {"store check", "", []string{"store", "check"}},
		"audit verify": {"audit verify", "", []string{"audit", "verify"}},
	}
	// Refused for each role; every other call of the table is allowed (those that would
	// move money or read the pad are left out where allowed: the pad has one sale left).
	refused := map[uint32][]string{
		cashierUID:    {"void", "saf list", "journal", "journal find", "store check", "audit verify"},
		technicianUID: {"sale", "void", "saf list", "journal", "journal find"},
		supervisorUID: {},
	}
	allowed := map[uint32][]string{
		cashierUID:    {"status"},
		technicianUID: {"status", "store check", "audit verify"},
		supervisorUID: {"status", "saf list", "journal", "store check", "audit verify"},
	}
	for uid, names := range refused {
		for _, n := range names {
			cl := calls[n]
			code, out := as(uid, cl.stdin, cl.args...)
			if code == 0 || !strings.Contains(out, "needs role") {
				t.Errorf("uid %d: %s was not refused with the role it needs: exit %d\n%s", uid, cl.what, code, out)
			}
		}
	}
	for uid, names := range allowed {
		for _, n := range names {
			cl := calls[n]
			if code, out := as(uid, cl.stdin, cl.args...); code != 0 || strings.Contains(out, "needs role") {
				t.Errorf("uid %d: %s refused: exit %d\n%s", uid, cl.what, code, out)
			}
		}
	}
	// A user of no role (nobody, even in posd's group) gets nothing.
	for _, n := range []string{"status", "sale", "saf list"} {
		cl := calls[n]
		if code, out := as(nobodyUID, cl.stdin, cl.args...); code == 0 || !strings.Contains(out, "holds no role") {
			t.Errorf("nobody: %s: exit %d\n%s", cl.what, code, out)
		}
	}

	// The cashier's till voids with the supervisor's own credential; a technician's
	// credential, or a wrong password, does not do.
	if code, out := as(cashierUID, "correct horse 2\n", "--operator", "tom", "void", poi[1]); code == 0 || !strings.Contains(out, "needs role") {
		t.Errorf("void with a technician's credential: exit %d\n%s", code, out)
	}
	if code, out := as(cashierUID, "correct horse 1\n", "--operator", "alice", "void", poi[1]); code != 0 || !strings.Contains(out, "result: Success") {
		t.Errorf("void with the supervisor's credential: exit %d\n%s", code, out)
	}
	var entries []store.AuditEntry
	resp, err := unixClient(sock).Get("http://posd/v1/audit") // the test's own uid is a supervisor
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&entries)
	resp.Body.Close()
	if !auditNames(entries, "uid 60001", "operator alice") {
		t.Errorf("no audit entry names both the till (uid 60001) and the supervisor (alice): %+v", entries)
	}

	// Five wrong passwords lock the operator (one check a second counts); then even the
	// right one is refused.
	for i := 0; i < 5; i++ {
		if code, out := as(cashierUID, "wrong password\n", "--operator", "alice", "saf", "list"); code == 0 {
			t.Fatalf("a wrong password let the cashier list the queue:\n%s", out)
		}
		time.Sleep(1100 * time.Millisecond)
	}
	if code, out := as(cashierUID, "correct horse 1\n", "--operator", "alice", "saf", "list"); code == 0 || !strings.Contains(out, "locked") {
		t.Errorf("the supervisor's credential after five wrong passwords: exit %d\n%s", code, out)
	}
}

// auditNames reports whether an audit entry's who holds every part.
func auditNames(entries []store.AuditEntry, parts ...string) bool {
	for _, e := range entries {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(e.Who, p)
		}
		if all {
			return true
		}
	}
	return false
}
