package operators_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/operators"
)

// keyMAC is a MACer over a key held in memory (the token, in posd).
type keyMAC []byte

func (k keyMAC) MAC(_ context.Context, _ string, data []byte) ([]byte, error) {
	h := hmac.New(sha256.New, k)
	h.Write(data)
	return h.Sum(nil), nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func open(t *testing.T, path string, key keyMAC, c *clock) *operators.Store {
	t.Helper()
	s, err := operators.Open(path, operators.Options{MAC: key, Iterations: 1000, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyLockAndUnlock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "operators.json")
	key := keyMAC("token key")
	c := &clock{time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	s := open(t, path, key, c)
	if err := s.Add(ctx, "alice", operators.RoleSupervisor, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if op, err := s.Verify(ctx, "alice", "correct horse"); err != nil || op.Role != operators.RoleSupervisor {
		t.Fatalf("Verify = %+v, %v", op, err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "correct horse") {
		t.Fatal("the file holds the password")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	// Without the token's key the file tests nothing: the right password fails.
	other := open(t, path, keyMAC("another key"), c)
	if _, err := other.Verify(ctx, "alice", "correct horse"); !errors.Is(err, operators.ErrBadCredentials) {
		t.Errorf("Verify under another key = %v, want ErrBadCredentials", err)
	}
	c.t = c.t.Add(time.Minute)

	// Unknown id and wrong password look the same; a check within a second of a failure
	// is not made.
	if _, err := s.Verify(ctx, "mallory", "x"); !errors.Is(err, operators.ErrBadCredentials) {
		t.Errorf("unknown operator: %v", err)
	}
	for i := 1; i <= 5; i++ {
		_, err := s.Verify(ctx, "alice", "wrong guess")
		want := operators.ErrBadCredentials
		if i == 5 {
			want = operators.ErrLocked
		}
		if !errors.Is(err, want) {
			t.Fatalf("failure %d: %v, want %v", i, err, want)
		}
		if _, err := s.Verify(ctx, "alice", "wrong guess"); !errors.Is(err, operators.ErrTooSoon) {
			t.Fatalf("a second check within the second: %v, want ErrTooSoon", err)
		}
		c.t = c.t.Add(2 * time.Second)
	}
	if _, err := s.Verify(ctx, "alice", "correct horse"); !errors.Is(err, operators.ErrLocked) {
		t.Fatalf("locked operator with the right password: %v, want ErrLocked", err)
	}
	// The lock survives a restart; Unlock clears it.
	s2 := open(t, path, key, c)
	if ops := s2.List(); len(ops) != 1 || !ops[0].Locked || ops[0].Failures != 5 {
		t.Fatalf("after a restart: %+v", ops)
	}
	if err := s2.Unlock("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Verify(ctx, "alice", "correct horse"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	if err := s2.SetPassword(ctx, "alice", "battery staple"); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Minute)
	if _, err := s2.Verify(ctx, "alice", "correct horse"); !errors.Is(err, operators.ErrBadCredentials) {
		t.Errorf("old password after a change: %v", err)
	}
	if err := s2.Remove("alice"); err != nil || len(s2.List()) != 0 {
		t.Errorf("Remove: %v, %+v", err, s2.List())
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{time.Now()}
	s := open(t, filepath.Join(dir, "operators.json"), keyMAC("k"), c)
	for _, a := range []struct{ id, role, pw string }{
		{"", operators.RoleSupervisor, "long enough"},
		{"al ice", operators.RoleSupervisor, "long enough"},
		{"alice", "cashier", "long enough"},
		{"alice", operators.RoleSupervisor, "short"},
	} {
		if err := s.Add(ctx, a.id, a.role, a.pw); !errors.Is(err, operators.ErrInvalid) {
			t.Errorf("Add(%q, %q, %q) = %v, want ErrInvalid", a.id, a.role, a.pw, err)
		}
	}
	if err := s.Add(ctx, "bob", operators.RoleTechnician, "long enough"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, "bob", operators.RoleTechnician, "long enough"); !errors.Is(err, operators.ErrExists) {
		t.Errorf("second Add: %v", err)
	}
	for name, content := range map[string]string{
		"garbage":  "not json",
		"version":  `{"version": 2, "operators": []}`,
		"unknown":  `{"version": 1, "operators": [], "extra": 1}`,
		"bad role": `{"version": 1, "operators": [{"id": "x", "role": "root", "salt": "00", "iterations": 1, "hash": "00"}]}`,
	} {
		p := filepath.Join(dir, name+".json")
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := operators.Open(p, operators.Options{MAC: keyMAC("k")}); err == nil {
			t.Errorf("%s file opened", name)
		}
	}
}
