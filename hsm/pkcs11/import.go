//go:build pkcs11

package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/tr31"
)

// Key creation: from components, from TR-31 key blocks, and a TDES KBPK's variant keys.

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
		what := "TDES CBC-MAC under the KBPK's MAC variant"
		if decrypt {
			what = "TDES CBC under the KBPK's encryption variant"
		}
		return b.crypt(p11.NewMechanism(p11.CKM_DES3_CBC, iv), k, data, decrypt, what)
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
	cv, err := hsm.KeyCheckValue(a, value)
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("pkcs11: key %q: %w", id, err)
	}
	if wantKCV != nil && !cv.Matches(wantKCV) {
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
