package firmware

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Roles of the metadata, as in TUF.
const (
	RoleRoot      = "root"
	RoleTimestamp = "timestamp"
	RoleSnapshot  = "snapshot"
	RoleTargets   = "targets"
)

// Target kinds: what a target image is for.
const (
	KindSystem = "system" // an image for the terminal's A/B slots
	KindPINPad = "pinpad" // PIN pad firmware, pushed over the serial line
)

// Limits on what a bundle may hold. They bound memory and time spent on
// outside bytes before any signature has been checked.
const (
	MaxMetadataSize = 1 << 20 // bytes of one metadata file
	maxKeys         = 64      // keys in a root
	maxSignatures   = 64      // signatures on one file
	maxTargets      = 256     // targets in targets.json
	maxRootFiles    = 256     // root versions in one bundle
	maxHardware     = 64      // hardware models of one target
)

// SignaturePrefix is prepended to the exact bytes of a metadata file's
// "signed" value to form the message its Ed25519 signatures sign, so that a
// firmware key's signature means nothing to any other protocol.
const SignaturePrefix = "posd firmware metadata v1\n"

// Errors returned (wrapped) by verification. Each wrapping error names the
// file and what is wrong with it; errors.Is tells the kind.
var (
	// ErrFormat: a bundle or metadata file is malformed: not the layout
	// documented in the package, a field missing or out of range, an entry
	// too large.
	ErrFormat = errors.New("malformed")
	// ErrSignature: a metadata file does not carry the threshold of valid
	// signatures from the keys the trusted root names for its role (a bad
	// signature, too few signatures, or signatures by a revoked key).
	ErrSignature = errors.New("not signed by enough trusted keys")
	// ErrExpired: a metadata file's expiry time has passed (a frozen or
	// stale mirror, or a terminal clock that is far off).
	ErrExpired = errors.New("expired")
	// ErrRollback: a metadata file is older than the version this terminal
	// already trusts (metadata rollback), or the same version with other
	// contents.
	ErrRollback = errors.New("older than trusted metadata")
	// ErrMismatch: metadata files that do not belong together (a mix of
	// releases): a file's version, length or hash is not the one listed by
	// the file above it.
	ErrMismatch = errors.New("does not match the metadata that lists it")
	// ErrLength: an image is shorter or longer than its signed length
	// (truncated or padded), or larger than the size cap.
	ErrLength = errors.New("wrong length")
	// ErrHash: an image's SHA-256 is not its signed hash.
	ErrHash = errors.New("hash mismatch")
	// ErrOldVersion: the image's firmware version is not higher than the
	// installed one (firmware anti-rollback).
	ErrOldVersion = errors.New("firmware version is not newer than the installed one")
	// ErrHardware: no image in the bundle is for this terminal's (or PIN
	// pad's) hardware model.
	ErrHardware = errors.New("not for this hardware model")
	// ErrNoTarget: the bundle has no image of the kind asked for.
	ErrNoTarget = errors.New("no image of this kind in the bundle")
)

// PublicKey is an Ed25519 public key that may sign firmware metadata. Its
// JSON form is {"keytype":"ed25519","public":"<64 hex digits>"}. It is a
// plain value, safe for concurrent use.
type PublicKey struct {
	key ed25519.PublicKey
}

// NewPublicKey returns the PublicKey of an Ed25519 public key.
func NewPublicKey(k ed25519.PublicKey) (PublicKey, error) {
	if len(k) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("firmware: public key is %d bytes, want %d: %w", len(k), ed25519.PublicKeySize, ErrFormat)
	}
	return PublicKey{key: slices.Clone(k)}, nil
}

// Ed25519 returns a copy of the key.
func (k PublicKey) Ed25519() ed25519.PublicKey { return slices.Clone(k.key) }

// ID returns the key's id: the lower-case hex SHA-256 of the 32 key bytes.
func (k PublicKey) ID() string {
	sum := sha256.Sum256(k.key)
	return hex.EncodeToString(sum[:])
}

// String returns "ed25519:" and the first 16 hex digits of the key id.
func (k PublicKey) String() string { return "ed25519:" + k.ID()[:16] }

type publicKeyJSON struct {
	KeyType string `json:"keytype"`
	Public  string `json:"public"`
}

// MarshalJSON encodes the key as {"keytype":"ed25519","public":"hex"}.
func (k PublicKey) MarshalJSON() ([]byte, error) {
	if len(k.key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("firmware: empty public key: %w", ErrFormat)
	}
	return json.Marshal(publicKeyJSON{KeyType: "ed25519", Public: hex.EncodeToString(k.key)})
}

// UnmarshalJSON decodes the JSON form strictly.
func (k *PublicKey) UnmarshalJSON(b []byte) error {
	var j publicKeyJSON
	if err := strictUnmarshal(b, &j); err != nil {
		return err
	}
	if j.KeyType != "ed25519" {
		return fmt.Errorf("key type %q is not ed25519: %w", j.KeyType, ErrFormat)
	}
	raw, err := hex.DecodeString(j.Public)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return fmt.Errorf("public key is not 64 hex digits: %w", ErrFormat)
	}
	k.key = raw
	return nil
}

// ParsePublicKey parses a key in its JSON form (as fwtool writes NAME.pub).
func ParsePublicKey(b []byte) (PublicKey, error) {
	var k PublicKey
	if err := k.UnmarshalJSON(b); err != nil {
		return PublicKey{}, fmt.Errorf("firmware: public key: %w", err)
	}
	return k, nil
}

// Signature is one signature of a metadata file. Like the other metadata
// types below, it is plain data: safe for concurrent reads, not for a
// concurrent write.
type Signature struct {
	KeyID string `json:"keyid"` // PublicKey.ID of the signer
	Sig   string `json:"sig"`   // hex Ed25519 signature of SignaturePrefix + signed
}

// Envelope is a metadata file: the signed body, byte for byte as in the file,
// and the signatures over it. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type Envelope struct {
	Signed     json.RawMessage `json:"signed"`
	Signatures []Signature     `json:"signatures"`
}

// Role lists the keys that may sign a role's metadata and how many of them
// must. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type Role struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
}

// Root is the signed body of N.root.json: the keys and thresholds of every
// role. Version N+1 must be signed by a threshold of version N's root keys
// and of its own. It is plain data: safe for
// concurrent reads, not for a concurrent write.
type Root struct {
	Type    string               `json:"_type"` // "root"
	Version int64                `json:"version"`
	Expires time.Time            `json:"expires"`
	Keys    map[string]PublicKey `json:"keys"`  // by key id
	Roles   map[string]Role      `json:"roles"` // root, timestamp, snapshot, targets
}

// FileMeta describes another metadata file: its version, length and SHA-256.
// It is plain data: safe for
// concurrent reads, not for a concurrent write.
type FileMeta struct {
	Version int64             `json:"version"`
	Length  int64             `json:"length"`
	Hashes  map[string]string `json:"hashes"` // "sha256": hex
}

// Timestamp is the signed body of timestamp.json: it names the current
// snapshot.json. It expires soonest, so a frozen mirror is noticed. It is plain
// data: safe for concurrent reads, not for a concurrent write.
type Timestamp struct {
	Type    string              `json:"_type"` // "timestamp"
	Version int64               `json:"version"`
	Expires time.Time           `json:"expires"`
	Meta    map[string]FileMeta `json:"meta"` // exactly "snapshot.json"
}

// Snapshot is the signed body of snapshot.json: it names the current
// targets.json, so that metadata of two releases cannot be mixed. It is plain
// data: safe for concurrent reads, not for a concurrent write.
type Snapshot struct {
	Type    string              `json:"_type"` // "snapshot"
	Version int64               `json:"version"`
	Expires time.Time           `json:"expires"`
	Meta    map[string]FileMeta `json:"meta"` // exactly "targets.json"
}

// TargetCustom is what posd needs beyond TUF's length and hashes. It is plain
// data: safe for concurrent reads, not for a concurrent write.
type TargetCustom struct {
	Kind     string   `json:"kind"`     // KindSystem or KindPINPad
	Version  string   `json:"version"`  // firmware version, see ParseVersion
	Hardware []string `json:"hardware"` // hardware models the image is for
}

// Target is one image listed in targets.json. It is plain data:
// safe for concurrent reads, not for a concurrent write.
type Target struct {
	Length int64             `json:"length"`
	Hashes map[string]string `json:"hashes"` // "sha256": hex
	Custom TargetCustom      `json:"custom"`
}

// Targets is the signed body of targets.json: the images of a release. It is plain
// data: safe for concurrent reads, not for a concurrent write.
type Targets struct {
	Type    string            `json:"_type"` // "targets"
	Version int64             `json:"version"`
	Expires time.Time         `json:"expires"`
	Targets map[string]Target `json:"targets"` // by file name
}

func alnum(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// validName reports whether s is 1 to max bytes, starts with a letter or
// digit and holds only letters, digits and the bytes of extra.
func validName(s string, max int, extra string) bool {
	if len(s) == 0 || len(s) > max || !alnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !alnum(s[i]) && !strings.ContainsRune(extra, rune(s[i])) {
			return false
		}
	}
	return true
}

// ValidTargetName reports whether name may name a target: 1 to 128 of
// A-Z a-z 0-9 . _ + -, starting with a letter or digit.
func ValidTargetName(name string) bool { return validName(name, 128, "._+-") }

// ValidModel reports whether s may name a hardware model: 1 to 32 of
// A-Z a-z 0-9 . _ -, starting with a letter or digit.
func ValidModel(s string) bool { return validName(s, 32, "._-") }

// strictUnmarshal decodes exactly one JSON value, refusing unknown fields and
// trailing data.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON value: %w", ErrFormat)
	}
	return nil
}

// ParseEnvelope parses a metadata file's outer layer. It does not check the
// signatures.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxMetadataSize {
		return nil, fmt.Errorf("%d bytes, more than %d: %w", len(b), MaxMetadataSize, ErrFormat)
	}
	var e Envelope
	if err := strictUnmarshal(b, &e); err != nil {
		return nil, err
	}
	if len(e.Signed) == 0 || e.Signed[0] != '{' {
		return nil, fmt.Errorf(`"signed" is not an object: %w`, ErrFormat)
	}
	if len(e.Signatures) > maxSignatures {
		return nil, fmt.Errorf("%d signatures, at most %d: %w", len(e.Signatures), maxSignatures, ErrFormat)
	}
	return &e, nil
}

// verifySignatures checks that at least role.Threshold distinct keys of role,
// found in keys, signed e. It returns a description of the failure.
func verifySignatures(e *Envelope, keys map[string]PublicKey, role Role) error {
	msg := make([]byte, 0, len(SignaturePrefix)+len(e.Signed))
	msg = append(append(msg, SignaturePrefix...), e.Signed...)
	valid := map[string]bool{}
	var bad, untrusted int
	for _, s := range e.Signatures {
		if !slices.Contains(role.KeyIDs, s.KeyID) {
			untrusted++
			continue
		}
		k, ok := keys[s.KeyID]
		sig, err := hex.DecodeString(s.Sig)
		if !ok || err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.key, msg, sig) {
			bad++
			continue
		}
		valid[s.KeyID] = true
	}
	if len(valid) >= role.Threshold {
		return nil
	}
	detail := ""
	if bad > 0 {
		detail += fmt.Sprintf("; %d signature(s) do not verify", bad)
	}
	if untrusted > 0 {
		detail += fmt.Sprintf("; %d signature(s) by keys the trusted root does not give this role (revoked or unknown)", untrusted)
	}
	return fmt.Errorf("%d valid signature(s) from distinct trusted keys, threshold is %d%s: %w", len(valid), role.Threshold, detail, ErrSignature)
}

func checkHeader(typ, want string, version int64, expires time.Time) error {
	if typ != want {
		return fmt.Errorf("_type is %q, want %q: %w", typ, want, ErrFormat)
	}
	if version < 1 {
		return fmt.Errorf("version %d is not positive: %w", version, ErrFormat)
	}
	if expires.IsZero() {
		return fmt.Errorf("expires is missing: %w", ErrFormat)
	}
	return nil
}

// parseRoot decodes and checks the signed body of a root. It does not check
// signatures or expiry.
func parseRoot(signed []byte) (*Root, error) {
	var r Root
	if err := strictUnmarshal(signed, &r); err != nil {
		return nil, err
	}
	if err := checkHeader(r.Type, RoleRoot, r.Version, r.Expires); err != nil {
		return nil, err
	}
	if len(r.Keys) > maxKeys {
		return nil, fmt.Errorf("%d keys, at most %d: %w", len(r.Keys), maxKeys, ErrFormat)
	}
	for id, k := range r.Keys {
		if k.key == nil || k.ID() != id {
			return nil, fmt.Errorf("key %.16s: id is not the SHA-256 of the key: %w", id, ErrFormat)
		}
	}
	for _, name := range []string{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets} {
		role, ok := r.Roles[name]
		if !ok {
			return nil, fmt.Errorf("role %q is missing: %w", name, ErrFormat)
		}
		if role.Threshold < 1 || role.Threshold > len(role.KeyIDs) {
			return nil, fmt.Errorf("role %q: threshold %d with %d keys: %w", name, role.Threshold, len(role.KeyIDs), ErrFormat)
		}
		seen := map[string]bool{}
		for _, id := range role.KeyIDs {
			if _, ok := r.Keys[id]; !ok {
				return nil, fmt.Errorf("role %q names key %.16s, which is not in keys: %w", name, id, ErrFormat)
			}
			if seen[id] {
				return nil, fmt.Errorf("role %q names key %.16s twice: %w", name, id, ErrFormat)
			}
			seen[id] = true
		}
	}
	if len(r.Roles) != 4 {
		return nil, fmt.Errorf("%d roles, want exactly root, timestamp, snapshot and targets: %w", len(r.Roles), ErrFormat)
	}
	return &r, nil
}

func checkFileMeta(m map[string]FileMeta, name string) (FileMeta, [32]byte, error) {
	if len(m) != 1 {
		return FileMeta{}, [32]byte{}, fmt.Errorf("meta must list exactly %s: %w", name, ErrFormat)
	}
	fm, ok := m[name]
	if !ok {
		return FileMeta{}, [32]byte{}, fmt.Errorf("meta does not list %s: %w", name, ErrFormat)
	}
	if fm.Version < 1 || fm.Length < 1 || fm.Length > MaxMetadataSize {
		return FileMeta{}, [32]byte{}, fmt.Errorf("meta for %s: version %d, length %d out of range: %w", name, fm.Version, fm.Length, ErrFormat)
	}
	sum, err := parseHashes(fm.Hashes)
	if err != nil {
		return FileMeta{}, [32]byte{}, fmt.Errorf("meta for %s: %w", name, err)
	}
	return fm, sum, nil
}

func parseHashes(h map[string]string) ([32]byte, error) {
	var sum [32]byte
	if len(h) != 1 {
		return sum, fmt.Errorf("hashes must hold exactly sha256: %w", ErrFormat)
	}
	raw, err := hex.DecodeString(h["sha256"])
	if err != nil || len(raw) != sha256.Size {
		return sum, fmt.Errorf("sha256 is not 64 hex digits: %w", ErrFormat)
	}
	copy(sum[:], raw)
	return sum, nil
}

func parseTimestamp(signed []byte) (*Timestamp, FileMeta, [32]byte, error) {
	var t Timestamp
	if err := strictUnmarshal(signed, &t); err != nil {
		return nil, FileMeta{}, [32]byte{}, err
	}
	if err := checkHeader(t.Type, RoleTimestamp, t.Version, t.Expires); err != nil {
		return nil, FileMeta{}, [32]byte{}, err
	}
	fm, sum, err := checkFileMeta(t.Meta, "snapshot.json")
	return &t, fm, sum, err
}

func parseSnapshot(signed []byte) (*Snapshot, FileMeta, [32]byte, error) {
	var s Snapshot
	if err := strictUnmarshal(signed, &s); err != nil {
		return nil, FileMeta{}, [32]byte{}, err
	}
	if err := checkHeader(s.Type, RoleSnapshot, s.Version, s.Expires); err != nil {
		return nil, FileMeta{}, [32]byte{}, err
	}
	fm, sum, err := checkFileMeta(s.Meta, "targets.json")
	return &s, fm, sum, err
}

func parseTargets(signed []byte) (*Targets, error) {
	var t Targets
	if err := strictUnmarshal(signed, &t); err != nil {
		return nil, err
	}
	if err := checkHeader(t.Type, RoleTargets, t.Version, t.Expires); err != nil {
		return nil, err
	}
	if len(t.Targets) > maxTargets {
		return nil, fmt.Errorf("%d targets, at most %d: %w", len(t.Targets), maxTargets, ErrFormat)
	}
	for name, tg := range t.Targets {
		if !ValidTargetName(name) {
			return nil, fmt.Errorf("target name %q is not valid: %w", name, ErrFormat)
		}
		if tg.Length < 1 {
			return nil, fmt.Errorf("target %s: length %d is not positive: %w", name, tg.Length, ErrFormat)
		}
		if _, err := parseHashes(tg.Hashes); err != nil {
			return nil, fmt.Errorf("target %s: %w", name, err)
		}
		if tg.Custom.Kind != KindSystem && tg.Custom.Kind != KindPINPad {
			return nil, fmt.Errorf("target %s: kind %q is not %q or %q: %w", name, tg.Custom.Kind, KindSystem, KindPINPad, ErrFormat)
		}
		if _, err := ParseVersion(tg.Custom.Version); err != nil {
			return nil, fmt.Errorf("target %s: %w", name, err)
		}
		if len(tg.Custom.Hardware) == 0 || len(tg.Custom.Hardware) > maxHardware {
			return nil, fmt.Errorf("target %s: %d hardware models, want 1 to %d: %w", name, len(tg.Custom.Hardware), maxHardware, ErrFormat)
		}
		for _, m := range tg.Custom.Hardware {
			if !ValidModel(m) {
				return nil, fmt.Errorf("target %s: hardware model %q is not valid: %w", name, m, ErrFormat)
			}
		}
	}
	return &t, nil
}

// SignedMessage returns the message a signature over signed covers:
// SignaturePrefix followed by signed.
func SignedMessage(signed []byte) []byte {
	return append([]byte(SignaturePrefix), signed...)
}
