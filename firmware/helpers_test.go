package firmware_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
)

const (
	model   = "POSD-A7"
	factory = "1.0.0"
)

// epoch is the fixed "now" of the tests: the vendor signs and the terminal
// verifies at this time, unless a test moves the terminal's clock.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// key returns a deterministic test key.
func key(t testing.TB, name string) *release.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte("posd firmware test key " + name))
	k, err := release.NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubs(keys ...*release.PrivateKey) []firmware.PublicKey {
	var out []firmware.PublicKey
	for _, k := range keys {
		out = append(out, k.Public())
	}
	return out
}

// vendor is a release repository with its keys, built from scratch.
type vendor struct {
	t     testing.TB
	inbox string // the terminal's firmware inbox: the repository and bundle files are in it
	repo  *release.Repo
	root  []*release.PrivateKey
	sig   release.Signers
}

// newVendor creates a repository with root version 1: one key per role,
// threshold 1.
func newVendor(t testing.TB) *vendor {
	t.Helper()
	inbox := t.TempDir()
	v := &vendor{t: t, inbox: inbox, repo: &release.Repo{Dir: filepath.Join(inbox, "repo"), Now: func() time.Time { return epoch }}}
	if err := os.Mkdir(v.repo.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v.root = []*release.PrivateKey{key(t, "root1")}
	v.sig = release.Signers{
		Targets:   []*release.PrivateKey{key(t, "targets1")},
		Snapshot:  []*release.PrivateKey{key(t, "snapshot1")},
		Timestamp: []*release.PrivateKey{key(t, "timestamp1")},
	}
	if _, err := v.repo.WriteRoot(v.spec(nil), v.root...); err != nil {
		t.Fatal(err)
	}
	return v
}

// spec describes a root with the vendor's current keys; thresholds may be
// nil.
func (v *vendor) spec(th map[string]int) release.RootSpec {
	return release.RootSpec{
		Keys: map[string][]firmware.PublicKey{
			firmware.RoleRoot:      pubs(v.root...),
			firmware.RoleTargets:   pubs(v.sig.Targets...),
			firmware.RoleSnapshot:  pubs(v.sig.Snapshot...),
			firmware.RoleTimestamp: pubs(v.sig.Timestamp...),
		},
		Thresholds: th,
		Expires:    epoch.Add(365 * 24 * time.Hour),
	}
}

// image returns deterministic image bytes of n bytes for version.
func image(version string, n int) []byte {
	b := make([]byte, n)
	seed := sha256.Sum256([]byte(version))
	for i := range b {
		if i%32 == 0 {
			seed = sha256.Sum256(seed[:])
		}
		b[i] = seed[i%32]
	}
	return b
}

// publish writes a release of one system image and returns its bytes.
func (v *vendor) publish(version string, n int, hardware ...string) []byte {
	v.t.Helper()
	return v.publishWith(release.ReleaseSpec{Signers: v.sig}, firmware.KindSystem, version, n, hardware...)
}

func (v *vendor) publishWith(spec release.ReleaseSpec, kind, version string, n int, hardware ...string) []byte {
	v.t.Helper()
	if len(hardware) == 0 {
		hardware = []string{model}
	}
	data := image(version, n)
	path := filepath.Join(v.t.TempDir(), "posd-"+version+".img")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		v.t.Fatal(err)
	}
	spec.Images = append(spec.Images, release.Image{Path: path, Kind: kind, Version: version, Hardware: hardware})
	if err := v.repo.Publish(spec); err != nil {
		v.t.Fatal(err)
	}
	return data
}

// bundle returns the repository as a bundle file's bytes.
func (v *vendor) bundle() []byte {
	v.t.Helper()
	var buf bytes.Buffer
	if err := v.repo.WriteBundle(&buf); err != nil {
		v.t.Fatal(err)
	}
	return buf.Bytes()
}

// tempInbox returns a new directory in the inbox.
func (v *vendor) tempInbox(prefix string) string {
	v.t.Helper()
	d, err := os.MkdirTemp(v.inbox, prefix)
	if err != nil {
		v.t.Fatal(err)
	}
	return d
}

// bundleFile writes the bundle to a file in the inbox and returns its path.
func (v *vendor) bundleFile() string {
	v.t.Helper()
	path := filepath.Join(v.tempInbox("bundle"), "bundle.tar")
	if err := os.WriteFile(path, v.bundle(), 0o644); err != nil {
		v.t.Fatal(err)
	}
	return path
}

// copyDir copies the repository directory (a bundle directory) and returns
// the copy (in the inbox), which a test may then damage.
func (v *vendor) copyDir() string {
	v.t.Helper()
	dst := v.tempInbox("copy")
	err := filepath.WalkDir(v.repo.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(v.repo.Dir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		v.t.Fatal(err)
	}
	return dst
}

func (v *vendor) file(rel string) []byte {
	v.t.Helper()
	b, err := os.ReadFile(filepath.Join(v.repo.Dir, rel))
	if err != nil {
		v.t.Fatal(err)
	}
	return b
}

func (v *vendor) rootFile() []byte { return v.file("metadata/1.root.json") }

// open opens a Manager over dir that trusts the vendor's root version 1.
func (v *vendor) open(dir string, opts *firmware.Options) *firmware.Manager {
	v.t.Helper()
	o := firmware.Options{}
	if opts != nil {
		o = *opts
	}
	if o.TrustedRoot == nil {
		o.TrustedRoot = v.rootFile()
	}
	if o.Model == "" {
		o.Model = model
	}
	if o.FactoryVersion == "" {
		o.FactoryVersion = factory
	}
	if o.Now == nil {
		o.Now = func() time.Time { return epoch.Add(time.Hour) }
	}
	if o.Inbox == "" {
		o.Inbox = v.inbox
	}
	m, err := firmware.Open(dir, &o)
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(func() { m.Close() })
	return m
}

// tree returns every file under dir but the event log and the lock, with the
// SHA-256 of its contents.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "events.log" || rel == "lock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t testing.TB, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for k, v := range before {
		if after[k] != v {
			diffs = append(diffs, "changed or removed: "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, "new: "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("state directory changed:\n%s", strings.Join(diffs, "\n"))
	}
}

// fileHash returns the hex SHA-256 of a file.
func fileHash(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// startable checks that the slot BootAttempt chose can start: the factory
// firmware, or an image whose file hash is the recorded one.
func startable(t testing.TB, dir string, st firmware.Status, slot string) {
	t.Helper()
	for _, s := range st.Slots {
		if s.Name != slot {
			continue
		}
		if s.State != firmware.SlotReady {
			t.Fatalf("slot %s chosen to start is %s", slot, s.State)
		}
		if s.Factory {
			return
		}
		if got := fileHash(t, filepath.Join(dir, "slot-"+slot+".img")); got != s.SHA256 {
			t.Fatalf("slot %s chosen to start has image hash %s, recorded %s", slot, got, s.SHA256)
		}
		return
	}
	t.Fatalf("no slot %s", slot)
}

func status(t testing.TB, m *firmware.Manager) firmware.Status {
	t.Helper()
	st, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func events(t testing.TB, m *firmware.Manager) []firmware.Event {
	t.Helper()
	evs, err := m.Events(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
