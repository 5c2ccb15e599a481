package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// secondSupervisor is a throwaway uid (no /etc/passwd entry) that test configs map to
// supervisor beside the test's own uid: dual control needs two people.
const secondSupervisor = 60002

// runAs runs a built binary as uid/gid (no supplementary groups), as another person on
// the terminal would. It skips the test, saying why, when the suite cannot change uid.
func (c *captured) runAs(t *testing.T, uid, gid uint32, stdin, name string, args ...string) (int, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("running %s as uid %d needs root (the suite runs as uid %d)", name, uid, os.Geteuid())
	}
	dir := binaries(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	c.mu.Lock()
	c.extra = append(c.extra, string(out))
	c.mu.Unlock()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("%s %v as uid %d: %v", name, args, uid, err)
		}
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// shareDir lets a child of another uid in the test's group reach a socket in dir (a
// t.TempDir, whose parent is the test's own 0700 directory).
func shareDir(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
}
