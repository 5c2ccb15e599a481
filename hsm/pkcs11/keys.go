//go:build pkcs11

package pkcs11

import (
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
)

// Key lookup: the keys posd created in the token, found by their metadata objects, and the
// templates a new key is created with.

// get returns the key id, or an error wrapping hsm.ErrUnknownKey.
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
