// Package soft is an hsm backend that keeps its keys in process memory. It implements every
// driver capability in plain Go over the reference packages (dukpt, pinblock, mac, kcv, tr31)
// and is the reference the conformance suite holds other backends to.
//
// It is for tests and the simulators. It protects nothing: a process dump shows every key,
// and the PIN comes from a callback rather than a tamper-responsive PIN pad. posd refuses
// this backend unless its configuration asks for it explicitly, and then warns at every
// start.
//
// # Basics
//
// Keys arrive through LoadKey (clear components) or ImportKeyBlock (TR-31 under a loaded
// KBPK). A DUKPT initial key (hsm.UsageDUKPT) gives ISO 9564 format 0 blocks under TDES
// DUKPT or format 4 blocks under AES DUKPT, with the key's KSN; a static PIN key gives format
// 0 (TDES) or 4 (AES) blocks without a KSN.
//
// # Caveats
//
// Without Options.StateDir, DUKPT counters live in memory and a new Backend starts again
// from the KSN it is loaded with. With it, each DUKPT key's last KSN is written (and synced)
// to StateDir/<id>.ksn before the key for it is used.
package soft

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/internal/pinentry"
	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/hsm/mac"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/hsm/tr31"
)

// Warning is what a program that uses this backend outside a test must log, at warning
// level, every time it starts.
const Warning = "hsm: the soft backend keeps every key in process memory and takes PINs in the clear: for tests and simulators only, never for real cards or production keys"

// Options configures a Backend. The zero value is usable. New copies it.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// PINEntry supplies the PIN the customer would type on a PIN pad, for req. It wraps
	// hsm.ErrCancelled or hsm.ErrTimeout as a pad would. Default: none, and PINBlock
	// returns hsm.ErrUnsupported.
	PINEntry func(ctx context.Context, req hsm.PINRequest) (pin string, err error)
	// StateDir is where each DUKPT key's last KSN is kept, one file per key. Default "":
	// in memory only.
	StateDir string
	// Rand supplies the random fill of PIN blocks. Default crypto/rand.
	Rand io.Reader
}

// Backend is the soft hsm backend. It is safe for concurrent use.
type Backend struct {
	opts Options
	mu   sync.Mutex
	keys map[string]*key
}

type key struct {
	info  hsm.KeyInfo
	value []byte
	tdes  *dukpt.Originator
	aes   *dukpt.AESOriginator
}

// New returns an empty Backend.
func New(opts *Options) *Backend {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return &Backend{opts: o, keys: make(map[string]*key)}
}

// String describes the backend without its keys.
func (b *Backend) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("soft hsm backend (%d keys in process memory)", len(b.keys))
}

func (b *Backend) get(id string) (*key, error) {
	k, ok := b.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w %q (soft backend)", hsm.ErrUnknownKey, id)
	}
	return k, nil
}

// KeyInfo implements hsm.KeyDescriber.
func (b *Backend) KeyInfo(ctx context.Context, id string) (hsm.KeyInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.get(id)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	return k.describe(), nil
}

// Keys implements hsm.KeyLister.
func (b *Backend) Keys(ctx context.Context) ([]hsm.KeyInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]hsm.KeyInfo, 0, len(b.keys))
	for _, k := range b.keys {
		out = append(out, k.describe())
	}
	return out, nil
}

func (k *key) describe() hsm.KeyInfo {
	info := k.info
	info.CheckValue.Value = append([]byte(nil), info.CheckValue.Value...)
	switch {
	case k.tdes != nil:
		ksn := k.tdes.KSN()
		info.KSN, info.Remaining = ksn[:], k.tdes.Remaining()
	case k.aes != nil:
		ksn := k.aes.KSN()
		info.KSN, info.Remaining = ksn[:], k.aes.Remaining()
	}
	return info
}

// PINBlock implements hsm.Driver: it asks Options.PINEntry for the PIN and encrypts it
// under the key, consuming a DUKPT counter only once it has a PIN.
func (b *Backend) PINBlock(ctx context.Context, req hsm.PINRequest) (hsm.EncryptedPIN, error) {
	b.mu.Lock()
	k, err := b.get(req.KeyID)
	var info hsm.KeyInfo
	if err == nil {
		info = k.info
	}
	b.mu.Unlock()
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	// The clear block is made before a counter is taken, so a bad PIN wastes none.
	want, clearBlock, err := pinentry.ClearBlock(ctx, "soft", info, req, b.opts.PINEntry, b.opts.Rand)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	defer clear(clearBlock)

	b.mu.Lock()
	defer b.mu.Unlock()
	if k, err = b.get(req.KeyID); err != nil { // it may have been replaced meanwhile
		return hsm.EncryptedPIN{}, err
	}
	var pinKey, ksn []byte
	switch {
	case k.tdes != nil:
		var s dukpt.KSN
		pinKey, s, err = k.tdes.NextPINKey()
		ksn = s[:]
	case k.aes != nil:
		var s dukpt.AESKSN
		pinKey, s, err = k.aes.NextPINKey(k.aes.KeyType())
		ksn = s[:]
	default:
		pinKey = append([]byte(nil), k.value...)
	}
	if errors.Is(err, dukpt.ErrExhausted) {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: key %q: %w", hsm.ErrExhausted, req.KeyID, err)
	}
	if err != nil {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: key %q: %w", hsm.ErrDevice, req.KeyID, err)
	}
	defer clear(pinKey)
	var block []byte
	if want == hsm.FormatISO4 {
		var b16 [16]byte
		b16, err = pinblock.EncryptFormat4(pinKey, [16]byte(clearBlock), req.PAN.Digits())
		block = b16[:]
	} else {
		var b8 [8]byte
		b8, err = pinblock.EncryptTDES(pinKey, [8]byte(clearBlock))
		block = b8[:]
	}
	if err != nil {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: %w", hsm.ErrDevice, err)
	}
	return hsm.NewEncryptedPIN(block, ksn, want)
}

// TranslatePIN implements hsm.PINTranslator: decrypt under the source key (the DUKPT PIN key
// of the block's KSN for a BDK), translate with pinblock.Translate (formats 0, 3 and 4, same
// PAN) and encrypt under the destination PIN key.
func (b *Backend) TranslatePIN(ctx context.Context, req hsm.TranslateRequest) (hsm.EncryptedPIN, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	from, err := b.get(req.FromKeyID)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	to, err := b.get(req.ToKeyID)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	if to.info.Usage != hsm.UsagePIN || (from.info.Usage != hsm.UsagePIN && from.info.Usage != hsm.UsageBDK) {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: translate from a %v key to a %v key", hsm.ErrKeyUsage, from.info.Usage, to.info.Usage)
	}
	if (req.ToFormat == hsm.FormatISO4) != to.info.Algorithm.IsAES() {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: %v under a %v key", hsm.ErrUnsupported, req.ToFormat, to.info.Algorithm)
	}
	inFormat := pinblock.Format(req.PIN.Format())
	if (inFormat == pinblock.Format4) != from.info.Algorithm.IsAES() {
		return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: a %v block under a %v key", hsm.ErrKeyUsage, req.PIN.Format(), from.info.Algorithm)
	}
	block, ksn := req.PIN.Block(), req.PIN.KSN()
	// The key that decrypts: the static key, or the DUKPT PIN key of the KSN.
	var key []byte
	switch {
	case from.info.Usage == hsm.UsagePIN:
		key = append([]byte(nil), from.value...)
	case from.info.Algorithm == hsm.TDES2 && len(ksn) == 10:
		key, err = dukpt.TDESPINKey(from.value, dukpt.KSN(ksn))
	case from.info.Algorithm.IsAES() && len(ksn) == 12:
		kt, _ := dukpt.AESKeyType(len(from.value))
		key, err = dukpt.AESWorkingKey(from.value, dukpt.AESKSN(ksn), dukpt.UsagePINEncryption, kt)
	default:
		err = fmt.Errorf("%w: a %d-byte KSN with a %v BDK", hsm.ErrKeyUsage, len(ksn), from.info.Algorithm)
	}
	if err != nil {
		return hsm.EncryptedPIN{}, fmt.Errorf("soft: translate: %w", err)
	}
	defer clear(key)
	pan := req.PAN.Digits()
	var clearIn []byte
	if inFormat == pinblock.Format4 {
		if len(block) != 16 {
			return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: a %d-byte format 4 block", hsm.ErrKeyUsage, len(block))
		}
		f, err := pinblock.DecryptFormat4(key, [16]byte(block), pan)
		if err != nil {
			return hsm.EncryptedPIN{}, fmt.Errorf("soft: translate: %w", err)
		}
		clearIn = f[:]
	} else {
		if len(block) != 8 {
			return hsm.EncryptedPIN{}, fmt.Errorf("%w: soft: a %d-byte %v block", hsm.ErrKeyUsage, len(block), req.PIN.Format())
		}
		c, err := pinblock.DecryptTDES(key, [8]byte(block))
		if err != nil {
			return hsm.EncryptedPIN{}, fmt.Errorf("soft: translate: %w", err)
		}
		clearIn = c[:]
	}
	defer clear(clearIn)
	out, err := pinblock.Translate(inFormat, clearIn, pan, pinblock.Format(req.ToFormat), b.opts.Rand)
	if err != nil {
		return hsm.EncryptedPIN{}, fmt.Errorf("soft: translate: %w", err)
	}
	defer clear(out)
	var enc []byte
	if req.ToFormat == hsm.FormatISO4 {
		e, err := pinblock.EncryptFormat4(to.value, [16]byte(out), pan)
		if err != nil {
			return hsm.EncryptedPIN{}, fmt.Errorf("soft: translate: %w", err)
		}
		enc = e[:]
	} else {
		e, err := pinblock.EncryptTDES(to.value, [8]byte(out))
		if err != nil {
			return hsm.EncryptedPIN{}, fmt.Errorf("soft: translate: %w", err)
		}
		enc = e[:]
	}
	return hsm.NewEncryptedPIN(enc, nil, req.ToFormat)
}

// MAC implements hsm.MACer.
func (b *Backend) MAC(ctx context.Context, req hsm.MACRequest) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.get(req.KeyID)
	if err != nil {
		return nil, err
	}
	if k.info.Usage != hsm.UsageMAC {
		return nil, fmt.Errorf("%w: soft: key %q is a %v key", hsm.ErrKeyUsage, req.KeyID, k.info.Usage)
	}
	a := k.info.Algorithm
	switch {
	case req.Algorithm == hsm.MACRetail && a == hsm.TDES2:
		return mac.RetailMAC(k.value, req.Data)
	case req.Algorithm == hsm.MACCMAC && a.IsAES():
		c, err := aes.NewCipher(k.value)
		if err != nil {
			return nil, fmt.Errorf("%w: soft: %w", hsm.ErrDevice, err)
		}
		return mac.CMAC(c, req.Data), nil
	case req.Algorithm == hsm.MACCMAC && a.IsTDES():
		c, err := kcv.TDESCipher(k.value)
		if err != nil {
			return nil, fmt.Errorf("%w: soft: %w", hsm.ErrDevice, err)
		}
		return mac.CMAC(c, req.Data), nil
	}
	return nil, fmt.Errorf("%w: soft: %v with a %v key", hsm.ErrKeyUsage, req.Algorithm, a)
}

func (b *Backend) gcm(keyID string) (cipher.AEAD, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.get(keyID)
	if err != nil {
		return nil, err
	}
	if k.info.Usage != hsm.UsageData || !k.info.Algorithm.IsAES() {
		return nil, fmt.Errorf("%w: soft: key %q is a %v %v key", hsm.ErrKeyUsage, keyID, k.info.Algorithm, k.info.Usage)
	}
	c, err := aes.NewCipher(k.value)
	if err != nil {
		return nil, fmt.Errorf("%w: soft: %w", hsm.ErrDevice, err)
	}
	return cipher.NewGCM(c)
}

// Seal implements hsm.Sealer.
func (b *Backend) Seal(ctx context.Context, keyID string, nonce, plaintext, aad []byte) ([]byte, error) {
	g, err := b.gcm(keyID)
	if err != nil {
		return nil, err
	}
	if len(nonce) != g.NonceSize() {
		return nil, fmt.Errorf("soft: seal: a %d-byte nonce, want %d", len(nonce), g.NonceSize())
	}
	return g.Seal(nil, nonce, plaintext, aad), nil
}

// Open implements hsm.Sealer.
func (b *Backend) Open(ctx context.Context, keyID string, nonce, ciphertext, aad []byte) ([]byte, error) {
	g, err := b.gcm(keyID)
	if err != nil {
		return nil, err
	}
	if len(nonce) != g.NonceSize() {
		return nil, fmt.Errorf("%w: soft: a %d-byte nonce", hsm.ErrOpen, len(nonce))
	}
	pt, err := g.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("%w (soft)", hsm.ErrOpen)
	}
	return pt, nil
}

// LoadKey implements hsm.KeyLoader.
func (b *Backend) LoadKey(ctx context.Context, req hsm.LoadRequest) (hsm.KeyInfo, error) {
	n := req.Algorithm.KeyLen()
	if n == 0 {
		return hsm.KeyInfo{}, fmt.Errorf("soft: load key %q: unknown algorithm %v", req.ID, req.Algorithm)
	}
	if len(req.Components) == 0 {
		return hsm.KeyInfo{}, fmt.Errorf("soft: load key %q: no components", req.ID)
	}
	value := make([]byte, n)
	for i, c := range req.Components {
		if len(c) != n {
			clear(value)
			return hsm.KeyInfo{}, fmt.Errorf("soft: load key %q: component %d is %d bytes, a %v key needs %d", req.ID, i+1, len(c), req.Algorithm, n)
		}
		for j := range value {
			value[j] ^= c[j]
		}
	}
	defer clear(value)
	return b.store(req.ID, req.Algorithm, req.Usage, value, req.KSN, req.CheckValue, req.Replace)
}

// ImportKeyBlock implements hsm.KeyBlockImporter.
func (b *Backend) ImportKeyBlock(ctx context.Context, req hsm.ImportRequest) (hsm.KeyInfo, error) {
	b.mu.Lock()
	kbpk, err := b.get(req.KBPKID)
	var kv []byte
	if err == nil {
		if kbpk.info.Usage != hsm.UsageKBPK {
			err = fmt.Errorf("%w: soft: key %q is a %v key, not a KBPK", hsm.ErrKeyUsage, req.KBPKID, kbpk.info.Usage)
		} else {
			kv = append([]byte(nil), kbpk.value...)
		}
	}
	b.mu.Unlock()
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	defer clear(kv)
	h, value, err := tr31.Unwrap(kv, req.Block)
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("soft: import %q: %w", req.ID, err)
	}
	defer clear(value)
	alg, usage, ksn, err := hsm.TR31Spec(h, len(value))
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("soft: import %q: %w", req.ID, err)
	}
	return b.store(req.ID, alg, usage, value, ksn, req.CheckValue, req.Replace)
}

// allowed reports whether a key of algorithm a may have usage u.
func allowed(a hsm.Algorithm, u hsm.Usage) bool {
	switch u {
	case hsm.UsagePIN, hsm.UsageMAC, hsm.UsageKBPK:
		return a.KeyLen() != 0
	case hsm.UsageDUKPT, hsm.UsageBDK:
		return a == hsm.TDES2 || a.IsAES()
	case hsm.UsageData:
		return a.IsAES()
	}
	return false
}

// store checks and stores a key; value is copied.
func (b *Backend) store(id string, a hsm.Algorithm, u hsm.Usage, value, ksn, wantKCV []byte, replace bool) (hsm.KeyInfo, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return hsm.KeyInfo{}, errors.New("soft: a key id may not be empty, start with '.' or hold a path separator")
	}
	if !allowed(a, u) {
		return hsm.KeyInfo{}, fmt.Errorf("%w: soft: a %v key cannot be a %v key", hsm.ErrKeyUsage, a, u)
	}
	cv, err := hsm.KeyCheckValue(a, value)
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("soft: key %q: %w", id, err)
	}
	if wantKCV != nil && !cv.Matches(wantKCV) {
		return hsm.KeyInfo{}, fmt.Errorf("%w: key %q has check value %s", hsm.ErrCheckValue, id, cv)
	}
	k := &key{info: hsm.KeyInfo{ID: id, Algorithm: a, Usage: u, CheckValue: cv}, value: append([]byte(nil), value...)}
	if u == hsm.UsageDUKPT {
		var opts *dukpt.OriginatorOptions
		if b.opts.StateDir != "" {
			opts = &dukpt.OriginatorOptions{Store: dukpt.NewFileStore(filepath.Join(b.opts.StateDir, id+".ksn"))}
		}
		switch {
		case a == hsm.TDES2 && len(ksn) == 10:
			k.tdes, err = dukpt.NewTDESOriginator(value, dukpt.KSN(ksn), opts)
		case a.IsAES() && len(ksn) == 12:
			k.aes, err = dukpt.NewAESOriginator(value, dukpt.AESKSN(ksn), opts)
		default:
			err = fmt.Errorf("a %v DUKPT initial key needs a %d-byte KSN, got %d bytes", a, map[bool]int{true: 12, false: 10}[a.IsAES()], len(ksn))
		}
		if err != nil {
			clear(k.value)
			return hsm.KeyInfo{}, fmt.Errorf("soft: key %q: %w", id, err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.keys[id]; ok {
		if !replace {
			clear(k.value)
			return hsm.KeyInfo{}, fmt.Errorf("%w: %q", hsm.ErrKeyExists, id)
		}
		clear(old.value)
	}
	b.keys[id] = k
	return k.describe(), nil
}
