package access

import (
	"fmt"
	"os/user"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Role is a set of operations a caller may run.
//
// A plain value: safe for concurrent use when not modified.
type Role string

// The roles, least privilege each.
const (
	// Cashier sells: payment, abort, transaction status, its own till's journal, status.
	Cashier Role = "cashier"
	// Supervisor may also void, search by card, read the whole journal and the audit, and
	// act on the store-and-forward queue.
	Supervisor Role = "supervisor"
	// Technician runs firmware and diagnostics; it moves no money and searches no card.
	Technician Role = "technician"
)

// Roles are all the roles, in the order documents list them.
var roles = [...]Role{Cashier, Supervisor, Technician}

// RoleConfig lists who holds a role: users and groups by name or numeric id, and TLS
// client certificate subjects (their CN, written "till1" or "CN=till1").
//
// A plain value: safe for concurrent use when not modified.
type RoleConfig struct {
	Users    []string `json:"users"`
	Groups   []string `json:"groups"`
	Subjects []string `json:"subjects"`
}

// RolesConfig is the config's role map: role name → who holds it.
//
// A plain value: safe for concurrent use when not modified.
type RolesConfig map[string]RoleConfig

// KeyError is a role map that posd must not start with: Key is the config key (relative
// to the roles map's own key, e.g. "supervisor.users"), Reason says what is wrong.
//
// A plain value: safe for concurrent use when not modified.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

// Map gives identities their roles. Build it with NewMap.
//
// Safe for concurrent use: it is not modified after NewMap.
type Map struct {
	users    map[uint32]Role
	groups   map[uint32]Role
	subjects map[string]Role
}

// NewMap resolves a role map: names to ids with os/user. It refuses an unknown role, an
// unknown user or group name, an empty entry, and the same user, group or subject under
// two roles, with a *KeyError naming the key.
func NewMap(cfg RolesConfig) (*Map, error) {
	m := &Map{users: map[uint32]Role{}, groups: map[uint32]Role{}, subjects: map[string]Role{}}
	names := make([]string, 0, len(cfg))
	for n := range cfg {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		role := Role(name)
		if !slices.Contains(roles[:], role) {
			return nil, &KeyError{name, fmt.Sprintf("unknown role %q (roles: cashier, supervisor, technician)", name)}
		}
		rc := cfg[name]
		for i, u := range rc.Users {
			key := fmt.Sprintf("%s.users[%d]", name, i)
			id, err := resolve(u, lookupUser)
			if err != nil {
				return nil, &KeyError{key, err.Error()}
			}
			if prev, dup := m.users[id]; dup {
				return nil, &KeyError{key, fmt.Sprintf("user %s is already under role %s: overlapping role maps", u, prev)}
			}
			m.users[id] = role
		}
		for i, g := range rc.Groups {
			key := fmt.Sprintf("%s.groups[%d]", name, i)
			id, err := resolve(g, lookupGroup)
			if err != nil {
				return nil, &KeyError{key, err.Error()}
			}
			if prev, dup := m.groups[id]; dup {
				return nil, &KeyError{key, fmt.Sprintf("group %s is already under role %s: overlapping role maps", g, prev)}
			}
			m.groups[id] = role
		}
		for i, s := range rc.Subjects {
			key := fmt.Sprintf("%s.subjects[%d]", name, i)
			cn := strings.TrimPrefix(strings.TrimSpace(s), "CN=")
			if cn == "" || len(cn) > 64 || strings.ContainsAny(cn, ",+=\x00") {
				return nil, &KeyError{key, fmt.Sprintf("%q is not a certificate CN (1 to 64 characters, written till1 or CN=till1)", quote32(s))}
			}
			if prev, dup := m.subjects[cn]; dup {
				return nil, &KeyError{key, fmt.Sprintf("subject CN=%s is already under role %s: overlapping role maps", cn, prev)}
			}
			m.subjects[cn] = role
		}
	}
	return m, nil
}

// Empty reports whether the map gives no one any role.
func (m *Map) Empty() bool {
	return len(m.users) == 0 && len(m.groups) == 0 && len(m.subjects) == 0
}

// RolesOf returns the roles id holds: its user's, its groups' (effective and
// supplementary), or its certificate subject's; in the order cashier, supervisor,
// technician.
func (m *Map) RolesOf(id Identity) []Role {
	has := map[Role]bool{}
	if id.Peer {
		if r, ok := m.users[id.UID]; ok {
			has[r] = true
		}
		if r, ok := m.groups[id.GID]; ok {
			has[r] = true
		}
		for _, g := range id.Groups {
			if r, ok := m.groups[g]; ok {
				has[r] = true
			}
		}
	} else if r, ok := m.subjects[id.Subject]; ok {
		has[r] = true
	}
	var out []Role
	for _, r := range roles {
		if has[r] {
			out = append(out, r)
		}
	}
	return out
}

func lookupUser(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", err
	}
	return u.Uid, nil
}

func lookupGroup(name string) (string, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return "", err
	}
	return g.Gid, nil
}

// resolve takes a numeric id as it is, and a name through lookup.
func resolve(s string, lookup func(string) (string, error)) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty name")
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	id, err := lookup(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a known name on this machine (or give the numeric id)", quote32(s))
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q has the non-numeric id %q", quote32(s), id)
	}
	return uint32(n), nil
}

// quote32 cuts s to 32 characters, so that an error never repeats long input.
func quote32(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
