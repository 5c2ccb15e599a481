package firmware

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Paths of the metadata inside a bundle.
const (
	metaDir       = "metadata/"
	targetsDir    = "targets/"
	timestampPath = metaDir + "timestamp.json"
	snapshotPath  = metaDir + "snapshot.json"
	targetsPath   = metaDir + "targets.json"
)

func rootPath(v int64) string { return fmt.Sprintf("%s%d.root.json", metaDir, v) }

// floor is the newest version of a role's metadata this terminal has
// accepted, and the hash of that file.
type floor struct {
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
}

// trust is what the terminal trusts: the newest verified root and the floors
// of the other roles. It is stored as trust.json in the state directory.
type trust struct {
	V         int    `json:"v"`
	RootFile  []byte `json:"root_file"` // the root's file bytes, as signed
	Timestamp floor  `json:"timestamp"`
	Snapshot  floor  `json:"snapshot"`
	Targets   floor  `json:"targets"`

	root *Root // parsed RootFile
}

// bundleMeta is the metadata read from a bundle, not yet verified.
type bundleMeta struct {
	roots     map[int64][]byte // by version
	timestamp []byte
	snapshot  []byte
	targets   []byte
}

// newTrust returns the trust of a root file: it must be a root signed by a
// threshold of its own root keys. Its expiry is not checked here.
func newTrust(rootFile []byte) (*trust, error) {
	env, err := ParseEnvelope(rootFile)
	if err != nil {
		return nil, err
	}
	r, err := parseRoot(env.Signed)
	if err != nil {
		return nil, err
	}
	if err := verifySignatures(env, r.Keys, r.Roles[RoleRoot]); err != nil {
		return nil, fmt.Errorf("root version %d is not signed by its own root keys: %w", r.Version, err)
	}
	return &trust{V: 1, RootFile: rootFile, root: r}, nil
}

func fileSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func roleChanged(a, b *Root, role string) bool {
	ra, rb := a.Roles[role], b.Roles[role]
	if ra.Threshold != rb.Threshold {
		return true
	}
	x, y := slices.Clone(ra.KeyIDs), slices.Clone(rb.KeyIDs)
	slices.Sort(x)
	slices.Sort(y)
	return !slices.Equal(x, y)
}

// update verifies b against t as a TUF client does (root chain, then
// timestamp, snapshot and targets) and returns the new trust and the
// verified targets. t is not modified.
func (t *trust) update(b *bundleMeta, now time.Time) (*trust, *Targets, error) {
	nt := *t
	// 1. The root chain: each version signed by the previous and by itself.
	for v := t.root.Version + 1; ; v++ {
		raw, ok := b.roots[v]
		if !ok {
			break
		}
		name := rootPath(v)
		env, err := ParseEnvelope(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := verifySignatures(env, nt.root.Keys, nt.root.Roles[RoleRoot]); err != nil {
			return nil, nil, fmt.Errorf("%s: not signed by the root keys of trusted root version %d: %w", name, nt.root.Version, err)
		}
		r, err := parseRoot(env.Signed)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if r.Version != v {
			return nil, nil, fmt.Errorf("%s holds root version %d: %w", name, r.Version, ErrMismatch)
		}
		if err := verifySignatures(env, r.Keys, r.Roles[RoleRoot]); err != nil {
			return nil, nil, fmt.Errorf("%s: not signed by its own root keys: %w", name, err)
		}
		if roleChanged(nt.root, r, RoleTimestamp) || roleChanged(nt.root, r, RoleSnapshot) {
			// TUF 5.3.11: after a rotation of these keys, forget their
			// floors so that a fast-forward attack can be recovered from.
			nt.Timestamp, nt.Snapshot = floor{}, floor{}
		}
		nt.root, nt.RootFile = r, raw
	}
	for v := range b.roots {
		if v > nt.root.Version {
			return nil, nil, fmt.Errorf("%s cannot be chained to trusted root version %d: %s is missing: %w",
				rootPath(v), nt.root.Version, rootPath(nt.root.Version+1), ErrMismatch)
		}
	}
	if !now.Before(nt.root.Expires) {
		return nil, nil, fmt.Errorf("root version %d expired at %s: %w", nt.root.Version, nt.root.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	keys := nt.root.Keys

	// 2. timestamp.json
	if b.timestamp == nil {
		return nil, nil, fmt.Errorf("bundle has no %s: %w", timestampPath, ErrFormat)
	}
	env, err := ParseEnvelope(b.timestamp)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", timestampPath, err)
	}
	if err := verifySignatures(env, keys, nt.root.Roles[RoleTimestamp]); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", timestampPath, err)
	}
	ts, snapMeta, snapSum, err := parseTimestamp(env.Signed)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", timestampPath, err)
	}
	tsSum := fileSum(b.timestamp)
	if err := checkFloor(timestampPath, ts.Version, tsSum, nt.Timestamp); err != nil {
		return nil, nil, err
	}
	if snapMeta.Version < nt.Snapshot.Version {
		return nil, nil, fmt.Errorf("%s lists snapshot version %d, older than trusted version %d: %w", timestampPath, snapMeta.Version, nt.Snapshot.Version, ErrRollback)
	}
	if !now.Before(ts.Expires) {
		return nil, nil, fmt.Errorf("%s version %d expired at %s: %w", timestampPath, ts.Version, ts.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}

	// 3. snapshot.json
	if b.snapshot == nil {
		return nil, nil, fmt.Errorf("bundle has no %s: %w", snapshotPath, ErrFormat)
	}
	if int64(len(b.snapshot)) != snapMeta.Length || sha256.Sum256(b.snapshot) != snapSum {
		return nil, nil, fmt.Errorf("%s is not the file %s version %d lists (length or hash differs): %w", snapshotPath, timestampPath, ts.Version, ErrMismatch)
	}
	env, err = ParseEnvelope(b.snapshot)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", snapshotPath, err)
	}
	if err := verifySignatures(env, keys, nt.root.Roles[RoleSnapshot]); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", snapshotPath, err)
	}
	sn, tgtMeta, tgtSum, err := parseSnapshot(env.Signed)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", snapshotPath, err)
	}
	if sn.Version != snapMeta.Version {
		return nil, nil, fmt.Errorf("%s is version %d, %s lists version %d: %w", snapshotPath, sn.Version, timestampPath, snapMeta.Version, ErrMismatch)
	}
	snSum := fileSum(b.snapshot)
	if err := checkFloor(snapshotPath, sn.Version, snSum, nt.Snapshot); err != nil {
		return nil, nil, err
	}
	if tgtMeta.Version < nt.Targets.Version {
		return nil, nil, fmt.Errorf("%s lists targets version %d, older than trusted version %d: %w", snapshotPath, tgtMeta.Version, nt.Targets.Version, ErrRollback)
	}
	if !now.Before(sn.Expires) {
		return nil, nil, fmt.Errorf("%s version %d expired at %s: %w", snapshotPath, sn.Version, sn.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}

	// 4. targets.json
	if b.targets == nil {
		return nil, nil, fmt.Errorf("bundle has no %s: %w", targetsPath, ErrFormat)
	}
	if int64(len(b.targets)) != tgtMeta.Length || sha256.Sum256(b.targets) != tgtSum {
		return nil, nil, fmt.Errorf("%s is not the file %s version %d lists (length or hash differs): %w", targetsPath, snapshotPath, sn.Version, ErrMismatch)
	}
	env, err = ParseEnvelope(b.targets)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", targetsPath, err)
	}
	if err := verifySignatures(env, keys, nt.root.Roles[RoleTargets]); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", targetsPath, err)
	}
	tg, err := parseTargets(env.Signed)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", targetsPath, err)
	}
	if tg.Version != tgtMeta.Version {
		return nil, nil, fmt.Errorf("%s is version %d, %s lists version %d: %w", targetsPath, tg.Version, snapshotPath, tgtMeta.Version, ErrMismatch)
	}
	tgSum := fileSum(b.targets)
	if err := checkFloor(targetsPath, tg.Version, tgSum, nt.Targets); err != nil {
		return nil, nil, err
	}
	if !now.Before(tg.Expires) {
		return nil, nil, fmt.Errorf("%s version %d expired at %s: %w", targetsPath, tg.Version, tg.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	nt.Timestamp = floor{ts.Version, tsSum}
	nt.Snapshot = floor{sn.Version, snSum}
	nt.Targets = floor{tg.Version, tgSum}
	return &nt, tg, nil
}

// checkFloor refuses a version older than the trusted one, and the trusted
// version with other contents.
func checkFloor(name string, version int64, sum string, f floor) error {
	switch {
	case version < f.Version:
		return fmt.Errorf("%s is version %d, older than trusted version %d: %w", name, version, f.Version, ErrRollback)
	case version == f.Version && sum != f.SHA256:
		return fmt.Errorf("%s is version %d, which this terminal already trusts with other contents (a signing key may be compromised): %w", name, version, ErrRollback)
	}
	return nil
}

// chosen is the target picked for an install.
type chosen struct {
	Name    string
	Target  Target
	Version Version
	SHA256  [32]byte
}

// choose picks the newest target of kind for model and checks that it is
// newer than installed.
func choose(t *Targets, kind, model string, installed Version) (chosen, error) {
	var ofKind []string
	var best chosen
	found := false
	names := make([]string, 0, len(t.Targets))
	for n := range t.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tg := t.Targets[n]
		if tg.Custom.Kind != kind {
			continue
		}
		ofKind = append(ofKind, tg.Custom.Hardware...)
		if !slices.Contains(tg.Custom.Hardware, model) {
			continue
		}
		v, err := ParseVersion(tg.Custom.Version)
		if err != nil {
			return chosen{}, err
		}
		if !found || v.Compare(best.Version) > 0 {
			sum, _ := parseHashes(tg.Hashes)
			best, found = chosen{Name: n, Target: tg, Version: v, SHA256: sum}, true
		}
	}
	switch {
	case len(ofKind) == 0:
		return chosen{}, fmt.Errorf("bundle lists no %s image: %w", kind, ErrNoTarget)
	case !found:
		slices.Sort(ofKind)
		return chosen{}, fmt.Errorf("bundle's %s images are for hardware %s; this one is %s: %w", kind, strings.Join(slices.Compact(ofKind), ", "), model, ErrHardware)
	case best.Version.Compare(installed) <= 0:
		return chosen{}, fmt.Errorf("%s is version %s and the installed version is %s; only a higher version may be installed: %w", best.Name, best.Version, installed, ErrOldVersion)
	}
	return best, nil
}
