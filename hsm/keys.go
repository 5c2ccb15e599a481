package hsm

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"

	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/terminal/card"
)

// Algorithm is a key's algorithm and length. It is a value, safe for concurrent use.
type Algorithm int

// Key algorithms.
const (
	TDES2  Algorithm = iota + 1 // double-length TDES, 16 bytes
	TDES3                       // triple-length TDES, 24 bytes
	AES128                      // AES, 16 bytes
	AES192                      // AES, 24 bytes
	AES256                      // AES, 32 bytes
)

// String names the algorithm, such as "AES-128".
func (a Algorithm) String() string {
	switch a {
	case TDES2:
		return "TDES-2key"
	case TDES3:
		return "TDES-3key"
	case AES128:
		return "AES-128"
	case AES192:
		return "AES-192"
	case AES256:
		return "AES-256"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// KeyLen returns the key length in bytes, or 0 for an unknown algorithm.
func (a Algorithm) KeyLen() int {
	switch a {
	case TDES2, AES128:
		return 16
	case TDES3, AES192:
		return 24
	case AES256:
		return 32
	}
	return 0
}

// ParseAlgorithm reads an algorithm's name as an operator types it: tdes2, tdes3, aes128,
// aes192, aes256, or the names String prints ("AES-256", "TDES-2key"); case, "-", "_" and
// "key" do not matter. ok is false for any other name.
func ParseAlgorithm(s string) (a Algorithm, ok bool) {
	n := strings.NewReplacer("-", "", "_", "", "key", "").Replace(strings.ToLower(s))
	for _, a := range []Algorithm{TDES2, TDES3, AES128, AES192, AES256} {
		if n == strings.NewReplacer("-", "", "key", "").Replace(strings.ToLower(a.String())) {
			return a, true
		}
	}
	return 0, false
}

// IsAES reports whether a is an AES algorithm.
func (a Algorithm) IsAES() bool { return a == AES128 || a == AES192 || a == AES256 }

// IsTDES reports whether a is a TDES algorithm.
func (a Algorithm) IsTDES() bool { return a == TDES2 || a == TDES3 }

// Usage is what a key may be used for; the Module refuses every other use. It is a value,
// safe for concurrent use.
type Usage int

// Key usages, with the TR-31 key usage each corresponds to.
const (
	UsagePIN   Usage = iota + 1 // static PIN encryption key (P0)
	UsageDUKPT                  // DUKPT initial key: PIN blocks under per-transaction keys (B1)
	UsageBDK                    // DUKPT base derivation key, the receiving side (B0)
	UsageMAC                    // MAC generation and verification (M0-M8)
	UsageData                   // data encryption: Seal and Open (D0)
	UsageKBPK                   // TR-31 key block protection key (K1)
)

// String names the usage.
func (u Usage) String() string {
	switch u {
	case UsagePIN:
		return "PIN"
	case UsageDUKPT:
		return "DUKPT initial"
	case UsageBDK:
		return "BDK"
	case UsageMAC:
		return "MAC"
	case UsageData:
		return "data"
	case UsageKBPK:
		return "KBPK"
	}
	return fmt.Sprintf("Usage(%d)", int(u))
}

// CheckValue is a key check value: public, it confirms a key without showing it. TDES keys
// have the legacy 3-byte value (the key encrypting a zero block); AES keys the 5-byte CMAC
// value (the CMAC of a zero block). It is a value, safe for concurrent use.
type CheckValue struct {
	Method string // "legacy" or "CMAC"
	Value  []byte
}

// String returns the value in uppercase hex.
func (c CheckValue) String() string { return strings.ToUpper(hex.EncodeToString(c.Value)) }

// Matches reports whether want is c's value or its leftmost bytes (a KCV is often given
// shorter, 3 bytes), compared in constant time.
func (c CheckValue) Matches(want []byte) bool {
	return len(want) <= len(c.Value) && subtle.ConstantTimeCompare(want, c.Value[:len(want)]) == 1
}

// KeyCheckValue returns the check value of a key of algorithm a, as every backend computes
// it: legacy (the first bytes of zeros encrypted) for TDES, CMAC for AES.
func KeyCheckValue(a Algorithm, key []byte) (CheckValue, error) {
	if a.IsAES() {
		v, err := kcv.AES(key)
		return CheckValue{Method: kcv.CMAC.String(), Value: v}, err
	}
	v, err := kcv.TDES(key, kcv.Legacy)
	return CheckValue{Method: kcv.Legacy.String(), Value: v}, err
}

// KeyInfo describes a key without its value. It holds nothing secret. It is a value, safe
// for concurrent use.
type KeyInfo struct {
	ID         string
	Algorithm  Algorithm
	Usage      Usage
	CheckValue CheckValue
	// KSN is, for a DUKPT initial key, the KSN of the last transaction (the initial KSN
	// before the first): 10 bytes for TDES, 12 for AES. Nil for other keys.
	KSN []byte
	// Remaining is, for a DUKPT initial key, how many transactions are left before the
	// key is exhausted; a caller warns well before it reaches 0.
	Remaining uint64
}

// String describes the key in one line.
func (k KeyInfo) String() string {
	s := fmt.Sprintf("%s: %v %v key, KCV %s (%s)", k.ID, k.Algorithm, k.Usage, k.CheckValue, k.CheckValue.Method)
	if k.KSN != nil {
		s += fmt.Sprintf(", KSN %X, %d transactions left", k.KSN, k.Remaining)
	}
	return s
}

// LoadRequest loads a key from clear components, as a technician does in a key ceremony:
// the components are XORed together inside the backend. Its String, GoString and LogValue
// never show the components. It is not safe for concurrent use while being filled in.
type LoadRequest struct {
	ID         string
	Algorithm  Algorithm
	Usage      Usage
	Components [][]byte // one or more, each Algorithm.KeyLen() bytes; secret
	// KSN is required for a DUKPT initial key: the initial KSN (10 bytes, TDES) or the
	// initial key ID followed by a zero counter (12 bytes, AES). The counter in it is the
	// last one used; a backend that saved a later one continues from there.
	KSN []byte
	// CheckValue, if set, is the check value the technician expects; a loaded key with
	// another value is refused with ErrCheckValue and nothing is stored.
	CheckValue []byte
	// Replace allows overwriting an existing key with the same id (re-keying).
	Replace bool
}

// String describes the request without its components.
func (r LoadRequest) String() string {
	return fmt.Sprintf("LoadRequest{%s: %v %v key, %d components [hidden]}", r.ID, r.Algorithm, r.Usage, len(r.Components))
}

// GoString hides the components from %#v too.
func (r LoadRequest) GoString() string { return r.String() }

// LogValue implements slog.LogValuer without the components.
func (r LoadRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("algorithm", r.Algorithm.String()),
		slog.String("usage", r.Usage.String()), slog.Int("components", len(r.Components)))
}

// ImportRequest imports a TR-31 key block. The block is encrypted and not secret in
// itself, but String, GoString and LogValue show only its header. It is a value, safe for
// concurrent use.
type ImportRequest struct {
	ID      string // the new key's id
	KBPKID  string // the key block protection key, already in the backend
	Block   string // the TR-31 key block
	Replace bool   // allow overwriting an existing key with the same id
	// CheckValue, if set, is the check value the sender gave for the key (legacy for
	// TDES, CMAC for AES, at least 2 bytes); a block whose key has another value is
	// refused with ErrCheckValue and nothing is stored. Default nil: not checked.
	CheckValue []byte
}

// String describes the request with the block's header only.
func (r ImportRequest) String() string {
	h := r.Block
	if len(h) > 16 {
		h = h[:16]
	}
	return fmt.Sprintf("ImportRequest{%s under %s, block %s...}", r.ID, r.KBPKID, h)
}

// GoString is String.
func (r ImportRequest) GoString() string { return r.String() }

// LogValue implements slog.LogValuer like String.
func (r ImportRequest) LogValue() slog.Value { return slog.StringValue(r.String()) }

// MACAlgorithm is how a MAC is computed. It is a value, safe for concurrent use.
type MACAlgorithm int

// MAC algorithms.
const (
	MACRetail MACAlgorithm = iota + 1 // ISO 9797-1 algorithm 3 (ANSI X9.19), padding 1; TDES-2key
	MACCMAC                           // CMAC (NIST SP 800-38B); AES or TDES-3key
)

// String names the algorithm.
func (a MACAlgorithm) String() string {
	switch a {
	case MACRetail:
		return "ISO 9797-1 alg. 3"
	case MACCMAC:
		return "CMAC"
	}
	return fmt.Sprintf("MACAlgorithm(%d)", int(a))
}

// MACRequest asks a backend for a MAC. The data may hold card data: String, GoString and
// LogValue show only its length. It is a value, safe for concurrent use if Data is not
// modified.
type MACRequest struct {
	KeyID     string
	Algorithm MACAlgorithm
	Data      []byte
}

// String describes the request without its data.
func (r MACRequest) String() string {
	return fmt.Sprintf("MACRequest{%s, %v, %d bytes}", r.KeyID, r.Algorithm, len(r.Data))
}

// GoString is String.
func (r MACRequest) GoString() string { return r.String() }

// LogValue implements slog.LogValuer like String.
func (r MACRequest) LogValue() slog.Value { return slog.StringValue(r.String()) }

// Optional driver capabilities. A backend implements those it can; the Module finds them by
// type assertion and returns ErrUnsupported for the rest. Their methods must wrap
// ErrUnknownKey for an unknown id and ErrKeyUsage for a key that cannot do the operation,
// and must never put key bytes, PINs, PANs or PIN blocks into an error.
type (
	// KeyDescriber describes keys.
	//
	// The Module calls it from one goroutine at a time.
	KeyDescriber interface {
		KeyInfo(ctx context.Context, id string) (KeyInfo, error)
	}
	// MACer computes MACs. It returns the whole MAC (8 bytes for TDES, 16 for AES); the
	// Module truncates.
	//
	// The Module calls it from one goroutine at a time.
	MACer interface {
		MAC(ctx context.Context, req MACRequest) ([]byte, error)
	}
	// Sealer is authenticated encryption with AES-GCM: a 12-byte nonce chosen by the
	// Module, a 16-byte tag appended to the ciphertext. Open wraps ErrOpen when the tag
	// does not verify.
	//
	// The Module calls it from one goroutine at a time.
	Sealer interface {
		Seal(ctx context.Context, keyID string, nonce, plaintext, aad []byte) ([]byte, error)
		Open(ctx context.Context, keyID string, nonce, ciphertext, aad []byte) ([]byte, error)
	}
	// KeyLoader loads keys from clear components.
	//
	// The Module calls it from one goroutine at a time.
	KeyLoader interface {
		LoadKey(ctx context.Context, req LoadRequest) (KeyInfo, error)
	}
	// KeyBlockImporter imports TR-31 key blocks under a key block protection key.
	//
	// The Module calls it from one goroutine at a time.
	KeyBlockImporter interface {
		ImportKeyBlock(ctx context.Context, req ImportRequest) (KeyInfo, error)
	}
	// KeyLister lists the keys a backend holds, described as KeyDescriber describes them.
	//
	// The Module calls it from one goroutine at a time.
	KeyLister interface {
		Keys(ctx context.Context) ([]KeyInfo, error)
	}
	// PINKeyAlgorithmer names the algorithm of a PIN key, for a backend that cannot
	// describe its keys as a KeyDescriber does (a PIN pad: its DUKPT key's type is known
	// from configuration, its check value not at all). The Module asks it for the PIN
	// block format when the backend is not a KeyDescriber: format 4 for an AES key,
	// format 0 for a TDES one. It must not block.
	//
	// The Module calls it from one goroutine at a time.
	PINKeyAlgorithmer interface {
		PINKeyAlgorithm(id string) (Algorithm, error)
	}
	// PINTranslator re-encrypts a PIN block from one key to another inside the device,
	// the PIN never leaving it in the clear. It must refuse formats other than 0, 3 and 4
	// (PCI PIN).
	//
	// The Module calls it from one goroutine at a time.
	PINTranslator interface {
		TranslatePIN(ctx context.Context, req TranslateRequest) (EncryptedPIN, error)
	}
)

// TranslateRequest asks a backend to move a PIN block from one key to another, for the same
// PAN. It holds no clear secret; the PAN and the block mask themselves when printed. It is a
// value, safe for concurrent use.
type TranslateRequest struct {
	PIN       EncryptedPIN // the block as received, with its KSN under DUKPT
	PAN       card.PAN     // the account; the translated block is bound to the same one
	FromKeyID string       // a BDK (the PIN's KSN names the transaction key) or a PIN key
	ToKeyID   string       // a static PIN key
	ToFormat  Format
}

// ComponentCheckValue returns the check value of one clear component of a key of algorithm
// a, computed as a key's is (legacy for TDES, CMAC for AES), for a key ceremony: each
// custodian compares it with the value written beside the component before the components
// are combined. It keeps nothing; the component remains the caller's to clear.
func ComponentCheckValue(a Algorithm, component []byte) (CheckValue, error) {
	n := a.KeyLen()
	if n == 0 {
		return CheckValue{}, fmt.Errorf("hsm: unknown algorithm %v", a)
	}
	if len(component) != n {
		return CheckValue{}, fmt.Errorf("hsm: a %v component is %d bytes, got %d", a, n, len(component))
	}
	return KeyCheckValue(a, component)
}
