//go:build pkcs11

package pkcs11

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/internal/pinentry"
	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/hsm/tr31"
)

// DefaultModule is Debian's SoftHSM2 PKCS#11 library.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// application marks the data objects that describe posd's keys.
const application = "posd-hsm"

// Options configures a Backend. Open copies it.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// Module is the PKCS#11 library to load. Default DefaultModule.
	Module string
	// Token is the label of the token to use. Required.
	Token string
	// PIN is the token's user PIN. Required.
	PIN string
	// PINEntry supplies the PIN for PINBlock (see the Caveats). Default: none, and
	// PINBlock returns hsm.ErrUnsupported.
	PINEntry func(ctx context.Context, req hsm.PINRequest) (pin string, err error)
	// StateDir is where each DUKPT key's last KSN is kept, one file per key, written
	// before the counter is used. Default "": in memory only.
	StateDir string
	// Rand supplies the random fill of PIN blocks. Default crypto/rand.
	Rand io.Reader
}

// Backend is the PKCS#11 backend. It is safe for concurrent use.
type Backend struct {
	opts Options
	ctx  *p11.Ctx
	fin  bool // this Backend initialised the library and finalises it

	mu      sync.Mutex
	session p11.SessionHandle
	keys    map[string]*key
	closed  bool
}

type key struct {
	info    hsm.KeyInfo
	handle  p11.ObjectHandle
	meta    p11.ObjectHandle
	counter *dukpt.AESCounter
	// variant holds, for a TDES KBPK, its TR-31 version A and C encryption and MAC variant
	// keys (labels id+variantEnc, id+variantMAC); zero when the token has none.
	variant [2]p11.ObjectHandle
}

// The label suffixes of a TDES KBPK's variant keys. A '/' is never part of a key id, so
// these labels cannot name a key of their own.
const (
	variantEnc = "/tr31-variant-enc"
	variantMAC = "/tr31-variant-mac"
)

// Open loads the library, finds the token and logs in.
func Open(opts *Options) (*Backend, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Module == "" {
		o.Module = DefaultModule
	}
	if o.Token == "" || o.PIN == "" {
		return nil, errors.New("pkcs11: Options.Token and Options.PIN are required")
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	c := p11.New(o.Module)
	if c == nil {
		return nil, fmt.Errorf("pkcs11: cannot load the PKCS#11 library %s", o.Module)
	}
	b := &Backend{opts: o, ctx: c, keys: make(map[string]*key)}
	err := c.Initialize()
	switch {
	case err == nil:
		b.fin = true
	case errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
	default:
		c.Destroy()
		return nil, fmt.Errorf("pkcs11: initialise %s: %w", o.Module, err)
	}
	if err := b.open(); err != nil {
		b.shutdown()
		return nil, err
	}
	return b, nil
}

func (b *Backend) open() error {
	slots, err := b.ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("pkcs11: slot list: %w", err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		ti, err := b.ctx.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " \x00") == b.opts.Token {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("pkcs11: no token labelled %q in %s", b.opts.Token, b.opts.Module)
	}
	if b.session, err = b.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION); err != nil {
		return fmt.Errorf("pkcs11: open session: %w", err)
	}
	if err := b.ctx.Login(b.session, p11.CKU_USER, b.opts.PIN); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
		return fmt.Errorf("pkcs11: log in to token %q: %w", b.opts.Token, err)
	}
	return b.loadMeta()
}

// Close logs out and releases the library.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.ctx.Logout(b.session)
	b.ctx.CloseSession(b.session)
	b.shutdown()
	return nil
}

func (b *Backend) shutdown() {
	if b.fin {
		b.ctx.Finalize()
	}
	b.ctx.Destroy()
}

// String describes the backend.
func (b *Backend) String() string {
	return fmt.Sprintf("PKCS#11 backend (token %q, %s)", b.opts.Token, b.opts.Module)
}

func (b *Backend) lock() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("%w: pkcs11: backend closed", hsm.ErrDevice)
	}
	return nil
}

func devErr(what string, err error) error {
	return fmt.Errorf("%w: pkcs11: %s: %w", hsm.ErrDevice, what, err)
}

func (b *Backend) get(id string) (*key, error) {
	k, ok := b.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w %q (pkcs11 backend)", hsm.ErrUnknownKey, id)
	}
	return k, nil
}

// mechs encodes CKA_ALLOWED_MECHANISMS.
func mechs(ms ...uint) []byte {
	var out []byte
	for _, m := range ms {
		out = append(out, p11.NewAttribute(0, m).Value...)
	}
	return out
}

func keyType(a hsm.Algorithm) uint {
	switch a {
	case hsm.TDES2:
		return p11.CKK_DES2
	case hsm.TDES3:
		return p11.CKK_DES3
	}
	return p11.CKK_AES
}

// template returns the attributes of a key of algorithm a and usage u: what it may do and
// with which mechanisms. Every key is sensitive and non-extractable.
func template(a hsm.Algorithm, u hsm.Usage) ([]*p11.Attribute, error) {
	var (
		allowed                                   []uint
		enc, dec, sign, verify, derive, supported bool
	)
	switch {
	case u == hsm.UsageDUKPT && a.IsAES(), u == hsm.UsageBDK && a.IsAES():
		allowed, derive, supported = []uint{p11.CKM_AES_ECB_ENCRYPT_DATA}, true, true
	case u == hsm.UsagePIN && a.IsAES():
		allowed, enc, supported = []uint{p11.CKM_AES_ECB}, true, true
	case u == hsm.UsagePIN && a.IsTDES():
		allowed, enc, supported = []uint{p11.CKM_DES3_ECB}, true, true
	case (u == hsm.UsageMAC || u == hsm.UsageKBPK) && a.IsAES():
		allowed, sign, verify, supported = []uint{p11.CKM_AES_CMAC}, true, u == hsm.UsageMAC, true
	case (u == hsm.UsageMAC || u == hsm.UsageKBPK) && a.IsTDES():
		allowed, sign, verify, supported = []uint{p11.CKM_DES3_CMAC}, true, u == hsm.UsageMAC, true
	case u == hsm.UsageData && a.IsAES():
		allowed, enc, dec, supported = []uint{p11.CKM_AES_GCM}, true, true, true
	}
	if !supported {
		return nil, fmt.Errorf("%w: pkcs11: a %v %v key cannot work inside a token with standard mechanisms", hsm.ErrUnsupported, a, u)
	}
	return []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, keyType(a)),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, enc),
		p11.NewAttribute(p11.CKA_DECRYPT, dec),
		p11.NewAttribute(p11.CKA_SIGN, sign),
		p11.NewAttribute(p11.CKA_VERIFY, verify),
		p11.NewAttribute(p11.CKA_DERIVE, derive),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_ALLOWED_MECHANISMS, mechs(allowed...)),
	}, nil
}

// meta is the text of a key's data object: version, usage, algorithm, KCV method and
// value, and the initial KSN (or "-").
func meta(info hsm.KeyInfo) string {
	ksn := "-"
	if info.KSN != nil {
		ksn = hex.EncodeToString(info.KSN)
	}
	return fmt.Sprintf("1 %d %d %s %s %s", int(info.Usage), int(info.Algorithm), info.CheckValue.Method, hex.EncodeToString(info.CheckValue.Value), ksn)
}

func parseMeta(id, s string) (hsm.KeyInfo, error) {
	var (
		v, u, a          int
		method, cv, ksnS string
	)
	if n, err := fmt.Sscanf(s, "%d %d %d %s %s %s", &v, &u, &a, &method, &cv, &ksnS); err != nil || n != 6 || v != 1 {
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: the description of key %q is damaged; delete its objects and load it again", id)
	}
	info := hsm.KeyInfo{ID: id, Usage: hsm.Usage(u), Algorithm: hsm.Algorithm(a), CheckValue: hsm.CheckValue{Method: method}}
	var err error
	if info.CheckValue.Value, err = hex.DecodeString(cv); err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: the check value of key %q is damaged", id)
	}
	if ksnS != "-" {
		if info.KSN, err = hex.DecodeString(ksnS); err != nil || len(info.KSN) != 12 {
			return hsm.KeyInfo{}, fmt.Errorf("pkcs11: the KSN of key %q is damaged", id)
		}
	}
	return info, nil
}

func (b *Backend) find(tmpl []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := b.ctx.FindObjectsInit(b.session, tmpl); err != nil {
		return nil, err
	}
	var all []p11.ObjectHandle
	for {
		hs, _, err := b.ctx.FindObjects(b.session, 64)
		if err != nil {
			b.ctx.FindObjectsFinal(b.session)
			return nil, err
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	return all, b.ctx.FindObjectsFinal(b.session)
}

// loadMeta finds posd's keys in the token.
func (b *Backend) loadMeta() error {
	objs, err := b.find([]*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
		p11.NewAttribute(p11.CKA_APPLICATION, application),
	})
	if err != nil {
		return devErr("find key descriptions", err)
	}
	for _, o := range objs {
		attrs, err := b.ctx.GetAttributeValue(b.session, o, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, nil), p11.NewAttribute(p11.CKA_VALUE, nil)})
		if err != nil {
			return devErr("read a key description", err)
		}
		id := string(attrs[0].Value)
		info, err := parseMeta(id, string(attrs[1].Value))
		if err != nil {
			return err
		}
		hs, err := b.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY), p11.NewAttribute(p11.CKA_LABEL, id)})
		if err != nil || len(hs) != 1 {
			return fmt.Errorf("pkcs11: key %q is described but %d key objects carry its label; delete them and load it again", id, len(hs))
		}
		k := &key{info: info, handle: hs[0], meta: o}
		if err := b.startCounter(k); err != nil {
			return err
		}
		if info.Usage == hsm.UsageKBPK && info.Algorithm.IsTDES() {
			// Missing or doubled variant keys leave the KBPK without version A and C
			// imports (which say so), not the backend unopenable.
			for i, suffix := range []string{variantEnc, variantMAC} {
				hs, err := b.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY), p11.NewAttribute(p11.CKA_LABEL, id+suffix)})
				if err == nil && len(hs) == 1 {
					k.variant[i] = hs[0]
				}
			}
		}
		b.keys[id] = k
	}
	return nil
}

func (b *Backend) startCounter(k *key) error {
	if k.info.Usage != hsm.UsageDUKPT {
		return nil
	}
	var opts *dukpt.OriginatorOptions
	if b.opts.StateDir != "" {
		opts = &dukpt.OriginatorOptions{Store: dukpt.NewFileStore(filepath.Join(b.opts.StateDir, k.info.ID+".ksn"))}
	}
	c, err := dukpt.NewAESCounter(dukpt.AESKSN(k.info.KSN), opts)
	if err != nil {
		return fmt.Errorf("pkcs11: key %q: %w", k.info.ID, err)
	}
	k.counter = c
	return nil
}

func (k *key) describe() hsm.KeyInfo {
	info := k.info
	info.CheckValue.Value = append([]byte(nil), info.CheckValue.Value...)
	if k.counter != nil {
		ksn := k.counter.KSN()
		info.KSN, info.Remaining = ksn[:], k.counter.Remaining()
	}
	return info
}

// Keys implements hsm.KeyLister: the keys this backend created in the token (those with a
// description object), not other objects the token may hold.
func (b *Backend) Keys(ctx context.Context) ([]hsm.KeyInfo, error) {
	if err := b.lock(); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	out := make([]hsm.KeyInfo, 0, len(b.keys))
	for _, k := range b.keys {
		out = append(out, k.describe())
	}
	return out, nil
}

// KeyInfo implements hsm.KeyDescriber.
func (b *Backend) KeyInfo(ctx context.Context, id string) (hsm.KeyInfo, error) {
	if err := b.lock(); err != nil {
		return hsm.KeyInfo{}, err
	}
	defer b.mu.Unlock()
	k, err := b.get(id)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	return k.describe(), nil
}

// LoadKey implements hsm.KeyLoader: the components are XORed in process memory and the
// key created in the token; the clear value is then overwritten.
func (b *Backend) LoadKey(ctx context.Context, req hsm.LoadRequest) (hsm.KeyInfo, error) {
	n := req.Algorithm.KeyLen()
	if n == 0 || len(req.Components) == 0 {
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: load key %q: an algorithm and at least one component are needed", req.ID)
	}
	value := make([]byte, n)
	defer clear(value)
	for i, c := range req.Components {
		if len(c) != n {
			return hsm.KeyInfo{}, fmt.Errorf("pkcs11: load key %q: component %d is %d bytes, a %v key needs %d", req.ID, i+1, len(c), req.Algorithm, n)
		}
		for j := range value {
			value[j] ^= c[j]
		}
	}
	return b.create(req.ID, req.Algorithm, req.Usage, value, req.KSN, req.CheckValue, req.Replace)
}

// ImportKeyBlock implements hsm.KeyBlockImporter: TR-31 versions B and D through CMACs
// under the KBPK, versions A and C through the variant keys kept beside a TDES KBPK.
func (b *Backend) ImportKeyBlock(ctx context.Context, req hsm.ImportRequest) (hsm.KeyInfo, error) {
	if err := b.lock(); err != nil {
		return hsm.KeyInfo{}, err
	}
	kbpk, err := b.get(req.KBPKID)
	if err == nil && kbpk.info.Usage != hsm.UsageKBPK {
		err = fmt.Errorf("%w: pkcs11: key %q is a %v key, not a KBPK", hsm.ErrKeyUsage, req.KBPKID, kbpk.info.Usage)
	}
	if err != nil {
		b.mu.Unlock()
		return hsm.KeyInfo{}, err
	}
	if req.Block != "" && (req.Block[0] == 'A' || req.Block[0] == 'C') {
		return b.importVariant(req, kbpk)
	}
	mech := uint(p11.CKM_AES_CMAC)
	if kbpk.info.Algorithm.IsTDES() {
		mech = p11.CKM_DES3_CMAC
	}
	cmac := func(data []byte) ([]byte, error) {
		if err := b.ctx.SignInit(b.session, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, kbpk.handle); err != nil {
			return nil, devErr("CMAC under the KBPK", err)
		}
		out, err := b.ctx.Sign(b.session, data)
		if err != nil {
			return nil, devErr("CMAC under the KBPK", err)
		}
		return out, nil
	}
	h, value, err := tr31.UnwrapCMAC(cmac, kbpk.info.Algorithm.KeyLen(), req.Block)
	b.mu.Unlock()
	return b.finishImport(req, h, value, err)
}

// importVariant unwraps a version A or C block with the KBPK's variant keys: the MAC is a
// TDES CBC encryption under the MAC variant, the key data a TDES CBC decryption under the
// encryption variant, both in the token. It is called with b.mu held and releases it.
func (b *Backend) importVariant(req hsm.ImportRequest, kbpk *key) (hsm.KeyInfo, error) {
	if !kbpk.info.Algorithm.IsTDES() {
		b.mu.Unlock()
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: import %q: KBPK %q is an %v key; TR-31 versions A and C need a TDES KBPK: %w", req.ID, req.KBPKID, kbpk.info.Algorithm, tr31.ErrKBPK)
	}
	if kbpk.variant[0] == 0 || kbpk.variant[1] == 0 {
		b.mu.Unlock()
		return hsm.KeyInfo{}, fmt.Errorf("%w: pkcs11: import %q: the token has no TR-31 version A/C variant keys beside KBPK %q (it was loaded by an older posd); load the KBPK again to import version %c blocks", hsm.ErrUnsupported, req.ID, req.KBPKID, req.Block[0])
	}
	cbc := func(k p11.ObjectHandle, iv, data []byte, decrypt bool) ([]byte, error) {
		m := []*p11.Mechanism{p11.NewMechanism(p11.CKM_DES3_CBC, iv)}
		if decrypt {
			if err := b.ctx.DecryptInit(b.session, m, k); err != nil {
				return nil, devErr("TDES CBC under the KBPK's encryption variant", err)
			}
			out, err := b.ctx.Decrypt(b.session, data)
			if err != nil {
				return nil, devErr("TDES CBC under the KBPK's encryption variant", err)
			}
			return out, nil
		}
		if err := b.ctx.EncryptInit(b.session, m, k); err != nil {
			return nil, devErr("TDES CBC-MAC under the KBPK's MAC variant", err)
		}
		out, err := b.ctx.Encrypt(b.session, data)
		if err != nil {
			return nil, devErr("TDES CBC-MAC under the KBPK's MAC variant", err)
		}
		return out, nil
	}
	enc, auth := kbpk.variant[0], kbpk.variant[1]
	h, value, err := tr31.UnwrapVariant(
		func(data []byte) ([]byte, error) { return cbc(auth, make([]byte, 8), data, false) },
		func(iv, data []byte) ([]byte, error) { return cbc(enc, iv, data, true) },
		req.Block)
	b.mu.Unlock()
	return b.finishImport(req, h, value, err)
}

// finishImport creates the key an unwrap gave, or reports why there is none.
func (b *Backend) finishImport(req hsm.ImportRequest, h tr31.Header, value []byte, err error) (hsm.KeyInfo, error) {
	if errors.Is(err, tr31.ErrVersion) {
		return hsm.KeyInfo{}, fmt.Errorf("%w: pkcs11: import %q: %w", hsm.ErrUnsupported, req.ID, err)
	}
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: import %q: %w", req.ID, err)
	}
	defer clear(value)
	alg, usage, ksn, err := hsm.TR31Spec(h, len(value))
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: import %q: %w", req.ID, err)
	}
	return b.create(req.ID, alg, usage, value, ksn, req.CheckValue, req.Replace)
}

// create checks and creates a key and its description in the token.
func (b *Backend) create(id string, a hsm.Algorithm, u hsm.Usage, value, ksn, wantKCV []byte, replace bool) (hsm.KeyInfo, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return hsm.KeyInfo{}, errors.New("pkcs11: a key id may not be empty, start with '.' or hold a path separator")
	}
	if u == hsm.UsageDUKPT && (!a.IsAES() || len(ksn) != 12) {
		if a.IsTDES() {
			return hsm.KeyInfo{}, fmt.Errorf("%w: pkcs11: TDES DUKPT cannot run inside a token with standard mechanisms; use the PIN pad backend", hsm.ErrUnsupported)
		}
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: key %q: an AES DUKPT initial key needs a 12-byte KSN, got %d bytes", id, len(ksn))
	}
	tmpl, err := template(a, u)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	var cv hsm.CheckValue
	if a.IsAES() {
		cv.Method = kcv.CMAC.String()
		cv.Value, err = kcv.AES(value)
	} else {
		cv.Method = kcv.Legacy.String()
		cv.Value, err = kcv.TDES(value, kcv.Legacy)
	}
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: key %q: %w", id, err)
	}
	if wantKCV != nil && (len(wantKCV) > len(cv.Value) || subtle.ConstantTimeCompare(wantKCV, cv.Value[:len(wantKCV)]) != 1) {
		return hsm.KeyInfo{}, fmt.Errorf("%w: key %q has check value %s", hsm.ErrCheckValue, id, cv)
	}
	info := hsm.KeyInfo{ID: id, Algorithm: a, Usage: u, CheckValue: cv}
	if u == hsm.UsageDUKPT {
		info.KSN = append([]byte(nil), ksn...)
	}
	k := &key{info: info}
	if err := b.startCounter(k); err != nil {
		return hsm.KeyInfo{}, err
	}

	if err := b.lock(); err != nil {
		return hsm.KeyInfo{}, err
	}
	defer b.mu.Unlock()
	old, exists := b.keys[id]
	if exists && !replace {
		return hsm.KeyInfo{}, fmt.Errorf("%w: %q", hsm.ErrKeyExists, id)
	}
	tmpl = append(tmpl,
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_LABEL, id),
		p11.NewAttribute(p11.CKA_ID, []byte(id)),
		p11.NewAttribute(p11.CKA_VALUE, value))
	if k.handle, err = b.ctx.CreateObject(b.session, tmpl); err != nil {
		return hsm.KeyInfo{}, devErr("create key "+id, err)
	}
	k.meta, err = b.ctx.CreateObject(b.session, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_APPLICATION, application),
		p11.NewAttribute(p11.CKA_LABEL, id),
		p11.NewAttribute(p11.CKA_VALUE, meta(info)),
	})
	if err != nil {
		b.ctx.DestroyObject(b.session, k.handle)
		return hsm.KeyInfo{}, devErr("describe key "+id, err)
	}
	if u == hsm.UsageKBPK && a.IsTDES() {
		if err := b.createVariants(k, value); err != nil {
			b.ctx.DestroyObject(b.session, k.handle)
			b.ctx.DestroyObject(b.session, k.meta)
			return hsm.KeyInfo{}, err
		}
	}
	if exists {
		b.ctx.DestroyObject(b.session, old.handle)
		b.ctx.DestroyObject(b.session, old.meta)
		for _, v := range old.variant {
			if v != 0 {
				b.ctx.DestroyObject(b.session, v)
			}
		}
	}
	b.keys[id] = k
	return k.describe(), nil
}

// createVariants stores a TDES KBPK's TR-31 version A/C variant keys (the KBPK XOR 45s,
// which may only decrypt, and XOR 4Ds, which may only encrypt, both with CKM_DES3_CBC),
// sensitive and non-extractable, while the KBPK's value is at hand: a token cannot XOR a
// key it holds with a constant. Called with b.mu held.
func (b *Backend) createVariants(k *key, value []byte) error {
	ke, km, err := tr31.VariantKeys(value)
	if err != nil {
		return fmt.Errorf("pkcs11: KBPK %q: %w", k.info.ID, err)
	}
	defer clear(ke)
	defer clear(km)
	for i, v := range []struct {
		suffix  string
		value   []byte
		decrypt bool
	}{{variantEnc, ke, true}, {variantMAC, km, false}} {
		label := k.info.ID + v.suffix
		k.variant[i], err = b.ctx.CreateObject(b.session, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, keyType(k.info.Algorithm)),
			p11.NewAttribute(p11.CKA_SENSITIVE, true),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
			p11.NewAttribute(p11.CKA_ENCRYPT, !v.decrypt),
			p11.NewAttribute(p11.CKA_DECRYPT, v.decrypt),
			p11.NewAttribute(p11.CKA_SIGN, false),
			p11.NewAttribute(p11.CKA_VERIFY, false),
			p11.NewAttribute(p11.CKA_DERIVE, false),
			p11.NewAttribute(p11.CKA_WRAP, false),
			p11.NewAttribute(p11.CKA_UNWRAP, false),
			p11.NewAttribute(p11.CKA_ALLOWED_MECHANISMS, mechs(p11.CKM_DES3_CBC)),
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_LABEL, label),
			p11.NewAttribute(p11.CKA_ID, []byte(label)),
			p11.NewAttribute(p11.CKA_VALUE, v.value),
		})
		if err != nil {
			if i == 1 {
				b.ctx.DestroyObject(b.session, k.variant[0])
			}
			k.variant = [2]p11.ObjectHandle{}
			return devErr("create the TR-31 variant keys of KBPK "+k.info.ID, err)
		}
	}
	return nil
}

// deriveChain runs AES DUKPT derivations in the token from base, each into a session key;
// the last one gets the attributes of last (what the working key may do).
func (b *Backend) deriveChain(base p11.ObjectHandle, path []dukpt.DerivationStep, last []*p11.Attribute) (p11.ObjectHandle, error) {
	cur, own := base, false
	for i, st := range path {
		m, free, err := ecbDerive(p11.CKM_AES_ECB_ENCRYPT_DATA, st.Data)
		if err != nil {
			return 0, err
		}
		tmpl := []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
			p11.NewAttribute(p11.CKA_VALUE_LEN, st.KeyType.Len()),
			p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_SENSITIVE, true),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		}
		if i < len(path)-1 {
			tmpl = append(tmpl, p11.NewAttribute(p11.CKA_DERIVE, true), p11.NewAttribute(p11.CKA_ENCRYPT, false),
				p11.NewAttribute(p11.CKA_ALLOWED_MECHANISMS, mechs(p11.CKM_AES_ECB_ENCRYPT_DATA)))
		} else {
			tmpl = append(tmpl, last...)
		}
		next, err := b.ctx.DeriveKey(b.session, []*p11.Mechanism{m}, cur, tmpl)
		free()
		if own {
			b.ctx.DestroyObject(b.session, cur)
		}
		if err != nil {
			return 0, devErr("DUKPT derivation", err)
		}
		cur, own = next, true
	}
	return cur, nil
}

func (b *Backend) ecb(mech uint, k p11.ObjectHandle, data []byte, decrypt bool) ([]byte, error) {
	m := []*p11.Mechanism{p11.NewMechanism(mech, nil)}
	if decrypt {
		if err := b.ctx.DecryptInit(b.session, m, k); err != nil {
			return nil, devErr("decrypt", err)
		}
		out, err := b.ctx.Decrypt(b.session, data)
		if err != nil {
			return nil, devErr("decrypt", err)
		}
		return out, nil
	}
	if err := b.ctx.EncryptInit(b.session, m, k); err != nil {
		return nil, devErr("encrypt", err)
	}
	out, err := b.ctx.Encrypt(b.session, data)
	if err != nil {
		return nil, devErr("encrypt", err)
	}
	return out, nil
}

// PINBlock implements hsm.Driver: ISO 9564 format 4 under AES DUKPT (derived in the token)
// or a static AES PIN key, format 0 under a static TDES PIN key. The PIN comes from
// Options.PINEntry.
func (b *Backend) PINBlock(ctx context.Context, req hsm.PINRequest) (hsm.EncryptedPIN, error) {
	if err := b.lock(); err != nil {
		return hsm.EncryptedPIN{}, err
	}
	k, err := b.get(req.KeyID)
	var info hsm.KeyInfo
	if err == nil {
		info = k.info
	}
	b.mu.Unlock()
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	want, field, err := pinentry.ClearBlock(ctx, "pkcs11", info, req, b.opts.PINEntry, b.opts.Rand)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	defer clear(field)

	if err := b.lock(); err != nil {
		return hsm.EncryptedPIN{}, err
	}
	defer b.mu.Unlock()
	if k, err = b.get(req.KeyID); err != nil {
		return hsm.EncryptedPIN{}, err
	}
	if want == hsm.FormatISO0 {
		block, err := b.ecb(p11.CKM_DES3_ECB, k.handle, field, false)
		if err != nil {
			return hsm.EncryptedPIN{}, err
		}
		return hsm.NewEncryptedPIN(block, nil, want)
	}
	pinKey, ksn := k.handle, []byte(nil)
	if k.counter != nil {
		s, err := k.counter.Next()
		if errors.Is(err, dukpt.ErrExhausted) {
			return hsm.EncryptedPIN{}, fmt.Errorf("%w: pkcs11: key %q: %w", hsm.ErrExhausted, req.KeyID, err)
		}
		if err != nil {
			return hsm.EncryptedPIN{}, fmt.Errorf("%w: pkcs11: key %q: %w", hsm.ErrDevice, req.KeyID, err)
		}
		kt, _ := dukpt.AESKeyType(info.Algorithm.KeyLen())
		path, err := dukpt.AESDerivationPath(kt, s, dukpt.UsagePINEncryption, kt)
		if err != nil {
			return hsm.EncryptedPIN{}, fmt.Errorf("%w: pkcs11: %w", hsm.ErrDevice, err)
		}
		pinKey, err = b.deriveChain(k.handle, path, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_ENCRYPT, true),
			p11.NewAttribute(p11.CKA_DERIVE, false),
			p11.NewAttribute(p11.CKA_ALLOWED_MECHANISMS, mechs(p11.CKM_AES_ECB)),
		})
		if err != nil {
			return hsm.EncryptedPIN{}, err
		}
		defer b.ctx.DestroyObject(b.session, pinKey)
		ksn = s[:]
	}
	panField, err := pinblock.Format4PANField(req.PAN.Digits())
	if err != nil {
		return hsm.EncryptedPIN{}, fmt.Errorf("pkcs11: %w", err)
	}
	x, err := b.ecb(p11.CKM_AES_ECB, pinKey, field, false)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	for i := range x {
		x[i] ^= panField[i]
	}
	block, err := b.ecb(p11.CKM_AES_ECB, pinKey, x, false)
	clear(x)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	return hsm.NewEncryptedPIN(block, ksn, want)
}

// MAC implements hsm.MACer: CMAC in the token. The retail MAC cannot be computed there.
func (b *Backend) MAC(ctx context.Context, req hsm.MACRequest) ([]byte, error) {
	if err := b.lock(); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	k, err := b.get(req.KeyID)
	if err != nil {
		return nil, err
	}
	if k.info.Usage != hsm.UsageMAC {
		return nil, fmt.Errorf("%w: pkcs11: key %q is a %v key", hsm.ErrKeyUsage, req.KeyID, k.info.Usage)
	}
	if req.Algorithm != hsm.MACCMAC {
		return nil, fmt.Errorf("%w: pkcs11: %v needs single-DES steps under half of the key, which a token does not offer", hsm.ErrUnsupported, req.Algorithm)
	}
	mech := uint(p11.CKM_AES_CMAC)
	if k.info.Algorithm.IsTDES() {
		mech = p11.CKM_DES3_CMAC
	}
	if err := b.ctx.SignInit(b.session, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, k.handle); err != nil {
		return nil, devErr("CMAC", err)
	}
	out, err := b.ctx.Sign(b.session, req.Data)
	if err != nil {
		return nil, devErr("CMAC", err)
	}
	return out, nil
}

func (b *Backend) dataKey(id string) (*key, error) {
	k, err := b.get(id)
	if err != nil {
		return nil, err
	}
	if k.info.Usage != hsm.UsageData || !k.info.Algorithm.IsAES() {
		return nil, fmt.Errorf("%w: pkcs11: key %q is a %v %v key", hsm.ErrKeyUsage, id, k.info.Algorithm, k.info.Usage)
	}
	return k, nil
}

// Seal implements hsm.Sealer with CKM_AES_GCM.
func (b *Backend) Seal(ctx context.Context, keyID string, nonce, plaintext, aad []byte) ([]byte, error) {
	if err := b.lock(); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	k, err := b.dataKey(keyID)
	if err != nil {
		return nil, err
	}
	params := p11.NewGCMParams(nonce, aad, 128)
	defer params.Free()
	if err := b.ctx.EncryptInit(b.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, k.handle); err != nil {
		return nil, devErr("seal", err)
	}
	out, err := b.ctx.Encrypt(b.session, plaintext)
	if err != nil {
		return nil, devErr("seal", err)
	}
	return out, nil
}

// Open implements hsm.Sealer with CKM_AES_GCM.
func (b *Backend) Open(ctx context.Context, keyID string, nonce, ciphertext, aad []byte) ([]byte, error) {
	if err := b.lock(); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	k, err := b.dataKey(keyID)
	if err != nil {
		return nil, err
	}
	params := p11.NewGCMParams(nonce, aad, 128)
	defer params.Free()
	if err := b.ctx.DecryptInit(b.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, k.handle); err != nil {
		return nil, devErr("open", err)
	}
	out, err := b.ctx.Decrypt(b.session, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w (pkcs11: %v)", hsm.ErrOpen, err)
	}
	return out, nil
}
