// Package release is the vendor's side of posd firmware updates: Ed25519
// keys, signed metadata and bundles that package firmware verifies on the
// terminal. cmd/fwtool is a thin command over it, and tests build their
// bundles from scratch with it.
//
// # Basics
//
// A release repository is a directory laid out as a bundle:
//
//	metadata/1.root.json ... N.root.json   every root version, each signed by the one before
//	metadata/timestamp.json                names snapshot.json (version, length, SHA-256)
//	metadata/snapshot.json                 names targets.json
//	metadata/targets.json                  the images: length, SHA-256, kind, version, hardware
//	targets/NAME                           the images
//
// Repo.WriteRoot writes the next root version (the first, or a rotation of
// any role's keys), Repo.Publish a release, Repo.Resign new versions and
// expiry times of existing metadata, and Repo.WriteBundle the tar file a
// technician carries. The terminal (package firmware) accepts a root version
// only when a threshold of the previous version's root keys and of its own
// signed it; Repo.WriteRoot checks the same before it writes.
//
// # Caveats
//
// Keys are files (NAME.key, mode 0600): keep root keys offline and apart.
// Nothing here is needed on a terminal; posd does not import this package.
package release

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"

	"github.com/posd-dev/posd/firmware"
)

// PrivateKey is an Ed25519 signing key. Its String, GoString and LogValue
// show only the key id. It is immutable and safe for concurrent use.
type PrivateKey struct {
	priv ed25519.PrivateKey
	pub  firmware.PublicKey
}

// GenerateKey returns a new key from r (nil means crypto/rand).
func GenerateKey(r io.Reader) (*PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("release: generate key: %w", err)
	}
	return NewPrivateKey(priv.Seed())
}

// NewPrivateKey returns the key of a 32-byte Ed25519 seed.
func NewPrivateKey(seed []byte) (*PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("release: key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub, err := firmware.NewPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &PrivateKey{priv: priv, pub: pub}, nil
}

// Public returns the public key.
func (k *PrivateKey) Public() firmware.PublicKey { return k.pub }

// ID returns the key id (firmware.PublicKey.ID).
func (k *PrivateKey) ID() string { return k.pub.ID() }

// String returns "private " and the public key's short form.
func (k *PrivateKey) String() string { return "private " + k.pub.String() }

// GoString is String, so that %#v never prints the key.
func (k *PrivateKey) GoString() string { return k.String() }

// LogValue is String, so that slog never prints the key.
func (k *PrivateKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// sign returns the hex signature of the message for signed.
func (k *PrivateKey) sign(signed []byte) firmware.Signature {
	return firmware.Signature{KeyID: k.ID(), Sig: hex.EncodeToString(ed25519.Sign(k.priv, firmware.SignedMessage(signed)))}
}

type privateKeyJSON struct {
	KeyType string `json:"keytype"`
	Seed    string `json:"seed"`
	Public  string `json:"public"`
}

// MarshalPrivateKey encodes k as {"keytype":"ed25519","seed":hex,"public":hex}.
func MarshalPrivateKey(k *PrivateKey) []byte {
	b, _ := json.MarshalIndent(privateKeyJSON{KeyType: "ed25519", Seed: hex.EncodeToString(k.priv.Seed()), Public: hex.EncodeToString(k.priv.Public().(ed25519.PublicKey))}, "", "  ")
	return append(b, '\n')
}

// ParsePrivateKey decodes a key written by MarshalPrivateKey.
func ParsePrivateKey(b []byte) (*PrivateKey, error) {
	var j privateKeyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("release: private key: %w", err)
	}
	seed, err := hex.DecodeString(j.Seed)
	if j.KeyType != "ed25519" || err != nil {
		return nil, errors.New("release: private key: not an ed25519 key with a hex seed")
	}
	k, err := NewPrivateKey(seed)
	if err != nil {
		return nil, err
	}
	if j.Public != "" && j.Public != hex.EncodeToString(k.priv.Public().(ed25519.PublicKey)) {
		return nil, errors.New("release: private key: the public key does not belong to the seed")
	}
	return k, nil
}

// LoadPrivateKey reads a key file.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// LoadPublicKey reads a public key file (NAME.pub) or, for convenience, the
// public half of a private key file.
func LoadPublicKey(path string) (firmware.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return firmware.PublicKey{}, fmt.Errorf("release: %w", err)
	}
	if k, err := firmware.ParsePublicKey(b); err == nil {
		return k, nil
	}
	priv, err := ParsePrivateKey(b)
	if err != nil {
		return firmware.PublicKey{}, fmt.Errorf("release: %s is neither a public nor a private key", path)
	}
	return priv.Public(), nil
}

// SaveKeyPair writes base.key (mode 0600) and base.pub. It refuses to
// overwrite either.
func SaveKeyPair(base string, k *PrivateKey) error {
	pub, err := json.MarshalIndent(k.Public(), "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode fs.FileMode
	}{{base + ".key", MarshalPrivateKey(k), 0o600}, {base + ".pub", append(pub, '\n'), 0o644}} {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		_, err = fh.Write(f.data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
	}
	return nil
}

// Sign encodes signed as JSON and returns the metadata file carrying it and
// a signature by each key.
func Sign(signed any, keys ...*PrivateKey) ([]byte, error) {
	body, err := json.Marshal(signed)
	if err != nil {
		return nil, fmt.Errorf("release: encode metadata: %w", err)
	}
	return SignRaw(body, keys...)
}

// SignRaw returns the metadata file carrying exactly the bytes signed (a
// JSON object) and a signature over them by each key.
func SignRaw(signed []byte, keys ...*PrivateKey) ([]byte, error) {
	sigs := make([]firmware.Signature, 0, len(keys))
	for _, k := range keys {
		sigs = append(sigs, k.sign(signed))
	}
	return envelope(signed, sigs)
}

func envelope(signed []byte, sigs []firmware.Signature) ([]byte, error) {
	sj, err := json.MarshalIndent(sigs, "", "  ")
	if err != nil {
		return nil, err
	}
	out := append([]byte(`{"signed":`), signed...)
	out = append(out, `,"signatures":`...)
	out = append(out, sj...)
	return append(out, "}\n"...), nil
}

// AddSignatures returns file with a signature by each key added (keys that
// already signed it are skipped), for roots whose keys are held by
// different people.
func AddSignatures(file []byte, keys ...*PrivateKey) ([]byte, error) {
	env, err := firmware.ParseEnvelope(file)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	sigs := slices.Clone(env.Signatures)
	for _, k := range keys {
		if slices.ContainsFunc(sigs, func(s firmware.Signature) bool { return s.KeyID == k.ID() }) {
			continue
		}
		sigs = append(sigs, k.sign(env.Signed))
	}
	return envelope(env.Signed, sigs)
}
