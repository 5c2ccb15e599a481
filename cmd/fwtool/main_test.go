package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fwtool runs the command and returns its exit status and output.
func fwtool(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func ok(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := fwtool(t, args...)
	if code != 0 {
		t.Fatalf("fwtool %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func fails(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errOut := fwtool(t, args...)
	if code != 1 || !strings.Contains(errOut, want) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("fwtool %s: exit %d, stderr %q; want exit 1 and one line with %q\n%s", strings.Join(args, " "), code, errOut, want, out)
	}
}

// TestReleaseLifecycle builds everything from scratch with the command: keys,
// a root, a release, a bundle; then rotates the targets key, expires a
// timestamp on purpose and refreshes it.
func TestReleaseLifecycle(t *testing.T) {
	dir := t.TempDir()
	k := func(name string) string { return filepath.Join(dir, name) }
	repo := k("repo")
	out := ok(t, "keygen", k("root1"), k("root2"), k("targets1"), k("targets2"), k("snapshot"), k("timestamp"))
	if strings.Count(out, "key id") != 6 {
		t.Fatalf("keygen output:\n%s", out)
	}
	if fi, err := os.Stat(k("root1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root1.key: %v %v", fi, err)
	}
	fails(t, "file exists", "keygen", k("root1"))

	// Root version 1 needs both root keys.
	rootArgs := func(targets string, sign string) []string {
		return []string{"root", "--repo", repo, "--root-keys", k("root1.pub") + "," + k("root2.pub"), "--root-threshold", "2",
			"--targets-keys", targets, "--snapshot-keys", k("snapshot.pub"), "--timestamp-keys", k("timestamp.pub"), "--sign", sign}
	}
	fails(t, "must be signed by 2 of its own root keys; 1 of the signers are", rootArgs(k("targets1.pub"), k("root1.key"))...)
	ok(t, rootArgs(k("targets1.pub"), k("root1.key")+","+k("root2.key"))...)

	img := k("posd-2.0.0.img")
	os.WriteFile(img, bytes.Repeat([]byte("posd 2.0.0 "), 5000), 0o644)
	rel := func(version, targetsKey string, extra ...string) []string {
		return append([]string{"release", "--repo", repo, "--image", img, "--name", "posd-" + version + ".img", "--version", version, "--hardware", "POSD-A7,POSD-A8",
			"--targets-key", targetsKey, "--snapshot-key", k("snapshot.key"), "--timestamp-key", k("timestamp.key")}, extra...)
	}
	ok(t, rel("2.0.0", k("targets1.key"))...)
	ok(t, "bundle", "--repo", repo, "--out", k("b1.tar"))
	verify := func(bundle string, extra ...string) []string {
		return append([]string{"verify", "--root", filepath.Join(repo, "metadata/1.root.json"), "--bundle", bundle, "--model", "POSD-A8", "--installed", "1.0.0"}, extra...)
	}
	if out := ok(t, verify(k("b1.tar"))...); !strings.Contains(out, "posd-2.0.0.img version 2.0.0 verifies") {
		t.Errorf("verify: %s", out)
	}
	fails(t, "only a higher version may be installed", verify(k("b1.tar"), "--installed", "2.0.0")...)
	fails(t, "this one is POSD-X", "verify", "--root", filepath.Join(repo, "metadata/1.root.json"), "--bundle", k("b1.tar"), "--model", "POSD-X")

	// Rotate the targets key: root version 2, signed by the root keys.
	if code, _, _ := fwtool(t, rootArgs(k("targets2.pub"), "")...); code != 2 {
		t.Errorf("root without signers: exit %d, want 2", code)
	}
	ok(t, rootArgs(k("targets2.pub"), k("root1.key")+","+k("root2.key"))...)
	// A release still signed with the revoked key is refused by a terminal
	// that trusts version 1 and follows the chain to version 2.
	ok(t, rel("2.1.0", k("targets1.key"))...)
	ok(t, "bundle", "--repo", repo, "--out", k("b2.tar"))
	fails(t, "metadata/targets.json: 0 valid signature(s)", verify(k("b2.tar"))...)
	ok(t, rel("2.1.0", k("targets2.key"))...)
	ok(t, "bundle", "--repo", repo, "--out", k("b3.tar"))
	ok(t, verify(k("b3.tar"))...)

	// Expire the timestamp on purpose, then refresh it.
	ok(t, "resign", "--repo", repo, "--role", "timestamp", "--timestamp-key", k("timestamp.key"), "--expires-at", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	ok(t, "bundle", "--repo", repo, "--out", k("b4.tar"))
	fails(t, "metadata/timestamp.json version 4 expired at", verify(k("b4.tar"))...)
	ok(t, "resign", "--repo", repo, "--role", "targets", "--targets-key", k("targets2.key"), "--snapshot-key", k("snapshot.key"), "--timestamp-key", k("timestamp.key"), "--expires", "30d")
	ok(t, "bundle", "--repo", repo, "--out", k("b5.tar"))
	ok(t, verify(k("b5.tar"))...)

	out = ok(t, "show", "--repo", repo)
	for _, want := range []string{"root versions [1 2]", "targets   threshold 1 of", "root      threshold 2 of", "targets.json: version 4", "posd-2.1.0.img: system 2.1.0 for POSD-A7,POSD-A8, 55000 bytes"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

func TestSignRootByTwoPeople(t *testing.T) {
	dir := t.TempDir()
	k := func(name string) string { return filepath.Join(dir, name) }
	repo := k("repo")
	ok(t, "keygen", k("a"), k("b"), k("c"), k("t"))
	base := []string{"root", "--repo", repo, "--targets-keys", k("t.pub"), "--snapshot-keys", k("t.pub"), "--timestamp-keys", k("t.pub")}
	ok(t, append(base, "--root-keys", k("a.pub"), "--sign", k("a.key"))...)
	// Version 2 moves to keys b and c, threshold 2: a signs it, then b and
	// c add their signatures with sign-root.
	fails(t, "must be signed by 2 of its own root keys", append(base, "--root-keys", k("b.pub")+","+k("c.pub"), "--root-threshold", "2", "--sign", k("a.key")+","+k("b.key"))...)
	ok(t, append(base, "--root-keys", k("b.pub")+","+k("c.pub"), "--root-threshold", "2", "--sign", k("a.key")+","+k("b.key")+","+k("c.key"))...)
	ok(t, "sign-root", "--repo", repo, "--version", "2", "--sign", k("c.key"))
	b, _ := os.ReadFile(filepath.Join(repo, "metadata/2.root.json"))
	if n := strings.Count(string(b), `"keyid"`); n != 3 {
		t.Errorf("2.root.json has %d signatures, want 3 (sign-root does not add one twice)", n)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"release", "--repo", "x"}, {"bundle", "--bogus"}, {"keygen"}} {
		if code, _, _ := fwtool(t, args...); code != 2 {
			t.Errorf("fwtool %q: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := fwtool(t, "help"); code != 0 || !strings.Contains(out, "usage: fwtool") {
		t.Errorf("help: %d %s", code, out)
	}
}
