package release

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/firmware"
)

// Default lifetimes of metadata written without an explicit expiry.
const (
	DefaultRootLifetime      = 365 * 24 * time.Hour
	DefaultTargetsLifetime   = 90 * 24 * time.Hour
	DefaultSnapshotLifetime  = 90 * 24 * time.Hour
	DefaultTimestampLifetime = 7 * 24 * time.Hour
)

// Repo is a release repository in a directory (see the package
// documentation). A Repo is not safe for concurrent use, nor for two
// processes at once.
type Repo struct {
	// Dir is the repository directory. Required.
	Dir string
	// Now is the clock for default expiry times. Default time.Now.
	Now func() time.Time
}

func (r *Repo) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

func (r *Repo) path(rel string) string { return filepath.Join(r.Dir, filepath.FromSlash(rel)) }

func (r *Repo) write(rel string, data []byte) error {
	p := r.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// RootVersions returns the root versions in the repository, in order.
func (r *Repo) RootVersions() ([]int64, error) {
	ents, err := os.ReadDir(r.path("metadata"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	var vs []int64
	for _, e := range ents {
		num, ok := strings.CutSuffix(e.Name(), ".root.json")
		if v, err := strconv.ParseInt(num, 10, 64); ok && err == nil && v > 0 {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs, nil
}

// Root returns the newest root of the repository and its file.
func (r *Repo) Root() (*firmware.Root, []byte, error) {
	vs, err := r.RootVersions()
	if err != nil {
		return nil, nil, err
	}
	if len(vs) == 0 {
		return nil, nil, fmt.Errorf("release: %s has no root metadata yet (write one first)", r.Dir)
	}
	return r.readRoot(vs[len(vs)-1])
}

func (r *Repo) readRoot(v int64) (*firmware.Root, []byte, error) {
	file, err := os.ReadFile(r.path(fmt.Sprintf("metadata/%d.root.json", v)))
	if err != nil {
		return nil, nil, fmt.Errorf("release: %w", err)
	}
	var root firmware.Root
	if err := decodeSigned(file, &root); err != nil {
		return nil, nil, fmt.Errorf("release: %d.root.json: %w", v, err)
	}
	return &root, file, nil
}

func decodeSigned(file []byte, v any) error {
	env, err := firmware.ParseEnvelope(file)
	if err != nil {
		return err
	}
	return json.Unmarshal(env.Signed, v)
}

// RootSpec describes a root version: the keys of each role and how many of
// them must sign. Like Image, Signers, Expiry and ReleaseSpec, it is plain
// data: safe for concurrent reads, not for a concurrent write.
type RootSpec struct {
	// Keys lists the public keys of each role (firmware.RoleRoot,
	// RoleTimestamp, RoleSnapshot, RoleTargets). Every role needs at least
	// one key.
	Keys map[string][]firmware.PublicKey
	// Thresholds gives each role's threshold. Default 1 for a role not
	// listed.
	Thresholds map[string]int
	// Expires is the root's expiry. Default: now + DefaultRootLifetime.
	Expires time.Time
}

// NewRoot returns the signed body of a root of the given version.
func NewRoot(version int64, spec RootSpec, now time.Time) (*firmware.Root, error) {
	root := &firmware.Root{Type: firmware.RoleRoot, Version: version, Expires: spec.Expires.UTC(),
		Keys: map[string]firmware.PublicKey{}, Roles: map[string]firmware.Role{}}
	if spec.Expires.IsZero() {
		root.Expires = now.Add(DefaultRootLifetime)
	}
	for _, role := range []string{firmware.RoleRoot, firmware.RoleTimestamp, firmware.RoleSnapshot, firmware.RoleTargets} {
		keys := spec.Keys[role]
		if len(keys) == 0 {
			return nil, fmt.Errorf("release: role %s has no keys", role)
		}
		th := spec.Thresholds[role]
		if th == 0 {
			th = 1
		}
		if th < 1 || th > len(keys) {
			return nil, fmt.Errorf("release: role %s: threshold %d with %d keys", role, th, len(keys))
		}
		var ids []string
		for _, k := range keys {
			id := k.ID()
			if slices.Contains(ids, id) {
				return nil, fmt.Errorf("release: role %s lists key %s twice", role, k)
			}
			ids = append(ids, id)
			root.Keys[id] = k
		}
		root.Roles[role] = firmware.Role{KeyIDs: ids, Threshold: th}
	}
	return root, nil
}

// countSigners returns how many of keys the role of root lists.
func countSigners(root *firmware.Root, role string, keys []*PrivateKey) int {
	n := 0
	for _, k := range keys {
		if slices.Contains(root.Roles[role].KeyIDs, k.ID()) {
			n++
		}
	}
	return n
}

// WriteRoot writes the next root version (1 in an empty repository) as
// spec describes, signed by signers. It refuses to write a root the
// terminals would refuse: signers must hold a threshold of the new root's
// root keys and, for a rotation, of the previous version's. It returns the
// version written.
func (r *Repo) WriteRoot(spec RootSpec, signers ...*PrivateKey) (int64, error) {
	vs, err := r.RootVersions()
	if err != nil {
		return 0, err
	}
	version := int64(1)
	if len(vs) > 0 {
		version = vs[len(vs)-1] + 1
		prev, _, err := r.readRoot(vs[len(vs)-1])
		if err != nil {
			return 0, err
		}
		if n, th := countSigners(prev, firmware.RoleRoot, signers), prev.Roles[firmware.RoleRoot].Threshold; n < th {
			return 0, fmt.Errorf("release: root version %d must be signed by %d root keys of version %d; %d of the signers are", version, th, prev.Version, n)
		}
	}
	root, err := NewRoot(version, spec, r.now())
	if err != nil {
		return 0, err
	}
	if n, th := countSigners(root, firmware.RoleRoot, signers), root.Roles[firmware.RoleRoot].Threshold; n < th {
		return 0, fmt.Errorf("release: root version %d must be signed by %d of its own root keys; %d of the signers are", version, th, n)
	}
	file, err := Sign(root, signers...)
	if err != nil {
		return 0, err
	}
	return version, r.write(fmt.Sprintf("metadata/%d.root.json", version), file)
}

// Image is one image of a release. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type Image struct {
	// Path is the image file to publish. Required.
	Path string
	// Name is its target name in the bundle. Default: the base name of Path.
	Name string
	// Kind is firmware.KindSystem or firmware.KindPINPad. Default
	// KindSystem.
	Kind string
	// Version is its firmware version (MAJOR.MINOR.PATCH). Required.
	Version string
	// Hardware lists the models it is for. Required.
	Hardware []string
}

// Signers are the keys that sign the non-root metadata. It is plain data:
// safe for concurrent reads, not for a concurrent write.
type Signers struct {
	Targets, Snapshot, Timestamp []*PrivateKey
}

// Expiry gives the expiry times of the non-root metadata; zero fields mean
// now plus the role's default lifetime. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type Expiry struct {
	Targets, Snapshot, Timestamp time.Time
}

// ReleaseSpec describes a release. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type ReleaseSpec struct {
	Images []Image
	// Keep keeps the images the previous targets.json lists. Default
	// false: the release lists only Images.
	Keep    bool
	Signers Signers
	Expires Expiry
}

// Publish copies the images into targets/ and writes new versions of
// targets.json, snapshot.json and timestamp.json.
func (r *Repo) Publish(spec ReleaseSpec) error {
	if _, _, err := r.Root(); err != nil {
		return err
	}
	prev, err := r.readTargets()
	if err != nil {
		return err
	}
	t := &firmware.Targets{Type: firmware.RoleTargets, Version: prev.Version + 1, Targets: map[string]firmware.Target{}}
	if spec.Keep {
		for n, tg := range prev.Targets {
			t.Targets[n] = tg
		}
	}
	for _, img := range spec.Images {
		name := img.Name
		if name == "" {
			name = filepath.Base(img.Path)
		}
		if !firmware.ValidTargetName(name) {
			return fmt.Errorf("release: image name %q is not a valid target name", name)
		}
		kind := img.Kind
		if kind == "" {
			kind = firmware.KindSystem
		}
		if _, err := firmware.ParseVersion(img.Version); err != nil {
			return fmt.Errorf("release: image %s: %w", name, err)
		}
		if len(img.Hardware) == 0 {
			return fmt.Errorf("release: image %s: no hardware model", name)
		}
		for _, m := range img.Hardware {
			if !firmware.ValidModel(m) {
				return fmt.Errorf("release: image %s: hardware model %q is not valid", name, m)
			}
		}
		data, err := os.ReadFile(img.Path)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		if len(data) == 0 {
			return fmt.Errorf("release: image %s is empty", img.Path)
		}
		if err := r.write("targets/"+name, data); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		t.Targets[name] = firmware.Target{Length: int64(len(data)), Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])},
			Custom: firmware.TargetCustom{Kind: kind, Version: img.Version, Hardware: slices.Clone(img.Hardware)}}
	}
	return r.writeTargets(t, spec.Signers, spec.Expires)
}

func (r *Repo) readTargets() (*firmware.Targets, error) {
	var t firmware.Targets
	file, err := os.ReadFile(r.path("metadata/targets.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := decodeSigned(file, &t); err != nil {
		return nil, fmt.Errorf("release: targets.json: %w", err)
	}
	return &t, nil
}

func versionOf(file []byte) int64 {
	var h struct {
		Version int64 `json:"version"`
	}
	if decodeSigned(file, &h) != nil {
		return 0
	}
	return h.Version
}

func (r *Repo) current(name string) int64 {
	file, err := os.ReadFile(r.path("metadata/" + name))
	if err != nil {
		return 0
	}
	return versionOf(file)
}

func metaFor(name string, file []byte) map[string]firmware.FileMeta {
	sum := sha256.Sum256(file)
	return map[string]firmware.FileMeta{name: {Version: versionOf(file), Length: int64(len(file)), Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}}}
}

func orDefault(t, now time.Time, d time.Duration) time.Time {
	if t.IsZero() {
		return now.Add(d)
	}
	return t.UTC()
}

// writeTargets signs t and then new snapshot and timestamp versions.
func (r *Repo) writeTargets(t *firmware.Targets, s Signers, e Expiry) error {
	if len(s.Targets) == 0 {
		return errors.New("release: no targets key to sign with")
	}
	t.Expires = orDefault(e.Targets, r.now(), DefaultTargetsLifetime)
	file, err := Sign(t, s.Targets...)
	if err != nil {
		return err
	}
	if err := r.write("metadata/targets.json", file); err != nil {
		return err
	}
	return r.writeSnapshot(s, e)
}

func (r *Repo) writeSnapshot(s Signers, e Expiry) error {
	if len(s.Snapshot) == 0 {
		return errors.New("release: no snapshot key to sign with")
	}
	targets, err := os.ReadFile(r.path("metadata/targets.json"))
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	sn := &firmware.Snapshot{Type: firmware.RoleSnapshot, Version: r.current("snapshot.json") + 1,
		Expires: orDefault(e.Snapshot, r.now(), DefaultSnapshotLifetime), Meta: metaFor("targets.json", targets)}
	file, err := Sign(sn, s.Snapshot...)
	if err != nil {
		return err
	}
	if err := r.write("metadata/snapshot.json", file); err != nil {
		return err
	}
	return r.writeTimestamp(s, e)
}

func (r *Repo) writeTimestamp(s Signers, e Expiry) error {
	if len(s.Timestamp) == 0 {
		return errors.New("release: no timestamp key to sign with")
	}
	snap, err := os.ReadFile(r.path("metadata/snapshot.json"))
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	ts := &firmware.Timestamp{Type: firmware.RoleTimestamp, Version: r.current("timestamp.json") + 1,
		Expires: orDefault(e.Timestamp, r.now(), DefaultTimestampLifetime), Meta: metaFor("snapshot.json", snap)}
	file, err := Sign(ts, s.Timestamp...)
	if err != nil {
		return err
	}
	return r.write("metadata/timestamp.json", file)
}

// Resign writes a new version of role's metadata (firmware.RoleTargets,
// RoleSnapshot or RoleTimestamp) with the same contents and a new expiry,
// and new versions of the metadata above it (targets -> snapshot ->
// timestamp). It is how a vendor keeps a release fresh, or moves to new
// keys after a root rotation.
func (r *Repo) Resign(role string, s Signers, e Expiry) error {
	switch role {
	case firmware.RoleTargets:
		t, err := r.readTargets()
		if err != nil {
			return err
		}
		if t.Version == 0 {
			return errors.New("release: nothing published yet")
		}
		t.Version++
		return r.writeTargets(t, s, e)
	case firmware.RoleSnapshot:
		return r.writeSnapshot(s, e)
	case firmware.RoleTimestamp:
		return r.writeTimestamp(s, e)
	}
	return fmt.Errorf("release: cannot re-sign role %q (root versions are written with WriteRoot)", role)
}

// WriteBundle writes the repository as a bundle to w: a tar stream of every
// root version, timestamp.json, snapshot.json and targets.json, then the
// images named (all listed images when names is empty). Metadata comes
// first so that a terminal can verify it before it reads an image.
func (r *Repo) WriteBundle(w io.Writer, names ...string) error {
	vs, err := r.RootVersions()
	if err != nil {
		return err
	}
	var files []string
	for _, v := range vs {
		files = append(files, fmt.Sprintf("metadata/%d.root.json", v))
	}
	files = append(files, "metadata/timestamp.json", "metadata/snapshot.json", "metadata/targets.json")
	if len(names) == 0 {
		t, err := r.readTargets()
		if err != nil {
			return err
		}
		for n := range t.Targets {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	for _, n := range names {
		files = append(files, "targets/"+n)
	}
	tw := tar.NewWriter(w)
	for _, f := range files {
		if err := addFile(tw, f, r.path(f)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("release: bundle: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("release: bundle: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("release: bundle: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("release: bundle: %s: %w", name, err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("release: bundle: %s: %w", name, err)
	}
	return nil
}
