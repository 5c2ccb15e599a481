// Package operators keeps the credentials of the people who approve what a till may not do
// alone: a supervisor who voids a sale at a till whose process only has the cashier role,
// a technician. Each operator has an id, a role and a password.
//
// A password is never stored: the file holds a salted, slow hash of it (PBKDF2-HMAC-SHA256,
// 600,000 iterations by default) MACed under a key that stays in the token (Options.MAC,
// the hsm Module, key "operator"), so that whoever copies the file cannot test guesses
// without the token. Checks are rate-limited per operator (one failed check a second), and
// an operator is locked after MaxFailures failed checks in a row, until unlocked
// (Store.Unlock, posd operator unlock); counts and locks survive a restart.
//
// The file is JSON, written atomically with mode 0600; its format is versioned ("version":
// 1) and decoded strictly.
package operators

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/posd-dev/posd/internal/atomicfile"
)

// Errors of Verify and the Store's operations.
var (
	// ErrBadCredentials means the operator id is unknown or the password is wrong (Verify
	// does not say which).
	ErrBadCredentials = errors.New("operators: wrong operator id or password")
	// ErrLocked means the operator is locked after too many failed checks.
	ErrLocked = errors.New("operators: operator locked after too many failed checks")
	// ErrTooSoon means a check came less than a second after a failed one for the same
	// operator: not checked, not counted.
	ErrTooSoon = errors.New("operators: too many checks, try again in a second")
	// ErrExists means Add named an operator that exists.
	ErrExists = errors.New("operators: operator exists")
	// ErrNotFound means the operator does not exist.
	ErrNotFound = errors.New("operators: no such operator")
	// ErrInvalid means an id, role or password is not acceptable; the error says why.
	ErrInvalid = errors.New("operators: invalid")
)

// MACer computes a MAC under a key that never leaves it; *hsm.Module implements it.
//
// The Store calls it with its lock held, from any goroutine: it must be safe for concurrent use.
type MACer interface {
	MAC(ctx context.Context, keyID string, data []byte) ([]byte, error)
}

// Roles an operator may have.
const (
	RoleSupervisor = "supervisor"
	RoleTechnician = "technician"
)

// Options configures Open.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// MAC keys the stored hashes; required.
	MAC MACer
	// KeyID is the MAC key's id. Default "operator".
	KeyID string
	// Iterations of PBKDF2 for new passwords. Default 600,000 (OWASP's figure for
	// PBKDF2-HMAC-SHA256); tests use fewer. Existing entries keep theirs.
	Iterations int
	// MaxFailures locks an operator after this many failed checks in a row. Default 5.
	MaxFailures int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Operator is an operator as Verify and List return it: no secret.
//
// A plain value: safe for concurrent use when not modified.
type Operator struct {
	ID       string    `json:"id"`
	Role     string    `json:"role"`
	Failures int       `json:"failures"`
	Locked   bool      `json:"locked"`
	Changed  time.Time `json:"changed"`
}

// entry is an operator as the file holds it.
type entry struct {
	ID         string    `json:"id"`
	Role       string    `json:"role"`
	Salt       string    `json:"salt"`
	Iterations int       `json:"iterations"`
	Hash       string    `json:"hash"`
	Failures   int       `json:"failures"`
	Locked     bool      `json:"locked"`
	Changed    time.Time `json:"changed"`
}

type file struct {
	Version   int     `json:"version"`
	Operators []entry `json:"operators"`
}

const fileVersion = 1

// Store is the operators file. It is safe for concurrent use within one process; one
// process should own the file (posd, or posd operator while posd is stopped).
type Store struct {
	path string
	opts Options
	mu   sync.Mutex
	f    file
	last map[string]time.Time // the last failed check per id, in memory
}

// Open reads the operators file at path; a missing file is an empty store (created by the
// first Add).
func Open(path string, opts Options) (*Store, error) {
	if opts.MAC == nil {
		return nil, fmt.Errorf("%w: a MAC key is required", ErrInvalid)
	}
	if opts.KeyID == "" {
		opts.KeyID = "operator"
	}
	if opts.Iterations <= 0 {
		opts.Iterations = 600_000
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{path: path, opts: opts, f: file{Version: fileVersion}, last: map[string]time.Time{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("operators: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s.f); err != nil {
		return nil, fmt.Errorf("operators: %s: %w", path, err)
	}
	if s.f.Version != fileVersion {
		return nil, fmt.Errorf("operators: %s: version %d, this posd reads %d", path, s.f.Version, fileVersion)
	}
	for i, e := range s.f.Operators {
		if err := checkID(e.ID); err != nil || checkRole(e.Role) != nil || e.Iterations <= 0 {
			return nil, fmt.Errorf("operators: %s: operator %d is malformed", path, i+1)
		}
	}
	return s, nil
}

func checkID(id string) error {
	if id == "" || len(id) > 32 {
		return fmt.Errorf("%w: operator id must be 1 to 32 characters", ErrInvalid)
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: operator id may hold letters, digits, '-', '_' and '.' only", ErrInvalid)
		}
	}
	return nil
}

func checkRole(role string) error {
	if role != RoleSupervisor && role != RoleTechnician {
		return fmt.Errorf("%w: role %q is not %s or %s", ErrInvalid, role, RoleSupervisor, RoleTechnician)
	}
	return nil
}

// checkPassword refuses passwords too short to resist the online rate limit for long.
func checkPassword(pw string) error {
	if len(pw) < 8 || len(pw) > 128 {
		return fmt.Errorf("%w: a password must be 8 to 128 characters", ErrInvalid)
	}
	return nil
}

// hash is the stored form of pw: PBKDF2 with salt, then the token's MAC over it.
func (s *Store) hash(ctx context.Context, pw string, salt []byte, iterations int) ([]byte, error) {
	dk, err := pbkdf2.Key(sha256.New, pw, salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	mac, err := s.opts.MAC.MAC(ctx, s.opts.KeyID, append([]byte("posd/operator/1:"), dk...))
	clear(dk)
	if err != nil {
		return nil, fmt.Errorf("operators: the token's MAC (key %q): %w", s.opts.KeyID, err)
	}
	return mac, nil
}

func (s *Store) find(id string) int {
	return slices.IndexFunc(s.f.Operators, func(e entry) bool { return e.ID == id })
}

// save writes the file; s.mu held.
func (s *Store) save() error {
	b, err := json.MarshalIndent(s.f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("operators: saving %s: %w", s.path, err)
	}
	return nil
}

// Add creates operator id with role and password.
func (s *Store) Add(ctx context.Context, id, role, password string) error {
	if err := errors.Join(checkID(id), checkRole(role), checkPassword(password)); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find(id) >= 0 {
		return fmt.Errorf("%w: %s", ErrExists, id)
	}
	e, err := s.newEntry(ctx, id, role, password)
	if err != nil {
		return err
	}
	s.f.Operators = append(s.f.Operators, e)
	return s.save()
}

func (s *Store) newEntry(ctx context.Context, id, role, password string) (entry, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return entry{}, err
	}
	h, err := s.hash(ctx, password, salt, s.opts.Iterations)
	if err != nil {
		return entry{}, err
	}
	return entry{ID: id, Role: role, Salt: hex.EncodeToString(salt), Iterations: s.opts.Iterations, Hash: hex.EncodeToString(h), Changed: s.opts.Now().UTC()}, nil
}

// SetPassword replaces operator id's password, and unlocks it.
func (s *Store) SetPassword(ctx context.Context, id, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(id)
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	e, err := s.newEntry(ctx, id, s.f.Operators[i].Role, password)
	if err != nil {
		return err
	}
	s.f.Operators[i] = e
	return s.save()
}

// Remove deletes operator id.
func (s *Store) Remove(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(id)
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	s.f.Operators = slices.Delete(s.f.Operators, i, i+1)
	return s.save()
}

// Unlock clears operator id's failed checks and lock.
func (s *Store) Unlock(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(id)
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	s.f.Operators[i].Failures, s.f.Operators[i].Locked = 0, false
	delete(s.last, id)
	return s.save()
}

// List returns the operators, without secrets, in the file's order.
func (s *Store) List() []Operator {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Operator, 0, len(s.f.Operators))
	for _, e := range s.f.Operators {
		out = append(out, Operator{ID: e.ID, Role: e.Role, Failures: e.Failures, Locked: e.Locked, Changed: e.Changed})
	}
	return out
}

// Verify checks operator id's password and returns the operator. It returns an error
// wrapping ErrBadCredentials (unknown id or wrong password: the same error, and an unknown
// id costs the same time), ErrLocked, or ErrTooSoon. A failed check is counted in the file
// before Verify returns.
func (s *Store) Verify(ctx context.Context, id, password string) (Operator, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if t, ok := s.last[id]; ok && now.Sub(t) < time.Second {
		return Operator{}, ErrTooSoon
	}
	i := s.find(id)
	if i < 0 {
		// The same work as for a real operator, so that timing does not tell ids apart.
		_, _ = s.hash(ctx, password, make([]byte, 16), s.opts.Iterations)
		s.last[id] = now
		return Operator{}, ErrBadCredentials
	}
	e := &s.f.Operators[i]
	if e.Locked {
		return Operator{}, fmt.Errorf("%w: %s (posd operator unlock)", ErrLocked, id)
	}
	salt, err1 := hex.DecodeString(e.Salt)
	want, err2 := hex.DecodeString(e.Hash)
	if err := errors.Join(err1, err2); err != nil {
		return Operator{}, fmt.Errorf("operators: operator %s: malformed entry", id)
	}
	got, err := s.hash(ctx, password, salt, e.Iterations)
	if err != nil {
		return Operator{}, err
	}
	if !hmac.Equal(got, want) {
		s.last[id] = now
		e.Failures++
		if e.Failures >= s.opts.MaxFailures {
			e.Locked = true
		}
		if err := s.save(); err != nil {
			return Operator{}, err
		}
		if e.Locked {
			return Operator{}, fmt.Errorf("%w: %s", ErrLocked, id)
		}
		return Operator{}, ErrBadCredentials
	}
	delete(s.last, id)
	if e.Failures > 0 {
		e.Failures = 0
		if err := s.save(); err != nil {
			return Operator{}, err
		}
	}
	return Operator{ID: e.ID, Role: e.Role, Changed: e.Changed}, nil
}
