//go:build pkcs11

package pkcs11

import (
	"context"
	"errors"
	"fmt"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/internal/pinentry"
	"github.com/posd-dev/posd/hsm/pinblock"
)

// The operations on keys in the token: PIN blocks, MACs, sealing.

// crypt enciphers data, or deciphers it when decrypt, with mechanism m under k in one part;
// its errors name what failed as what.
func (b *Backend) crypt(m *p11.Mechanism, k p11.ObjectHandle, data []byte, decrypt bool, what string) ([]byte, error) {
	ms := []*p11.Mechanism{m}
	var err error
	if decrypt {
		err = b.ctx.DecryptInit(b.session, ms, k)
	} else {
		err = b.ctx.EncryptInit(b.session, ms, k)
	}
	if err != nil {
		return nil, devErr(what, err)
	}
	var out []byte
	if decrypt {
		out, err = b.ctx.Decrypt(b.session, data)
	} else {
		out, err = b.ctx.Encrypt(b.session, data)
	}
	if err != nil {
		return nil, devErr(what, err)
	}
	return out, nil
}

// ecb enciphers data with ECB mechanism mech under k.
func (b *Backend) ecb(mech uint, k p11.ObjectHandle, data []byte) ([]byte, error) {
	return b.crypt(p11.NewMechanism(mech, nil), k, data, false, "encrypt")
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
		block, err := b.ecb(p11.CKM_DES3_ECB, k.handle, field)
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
	x, err := b.ecb(p11.CKM_AES_ECB, pinKey, field)
	if err != nil {
		return hsm.EncryptedPIN{}, err
	}
	for i := range x {
		x[i] ^= panField[i]
	}
	block, err := b.ecb(p11.CKM_AES_ECB, pinKey, x)
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
	return b.gcm(keyID, nonce, plaintext, aad, false)
}

// Open implements hsm.Sealer with CKM_AES_GCM.
func (b *Backend) Open(ctx context.Context, keyID string, nonce, ciphertext, aad []byte) ([]byte, error) {
	return b.gcm(keyID, nonce, ciphertext, aad, true)
}

// gcm seals data under the data key keyID with CKM_AES_GCM, or opens it when open; data
// that does not open is hsm.ErrOpen.
func (b *Backend) gcm(keyID string, nonce, data, aad []byte, open bool) ([]byte, error) {
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
	m := p11.NewMechanism(p11.CKM_AES_GCM, params)
	if !open {
		return b.crypt(m, k.handle, data, false, "seal")
	}
	if err := b.ctx.DecryptInit(b.session, []*p11.Mechanism{m}, k.handle); err != nil {
		return nil, devErr("open", err)
	}
	out, err := b.ctx.Decrypt(b.session, data)
	if err != nil {
		return nil, fmt.Errorf("%w (pkcs11: %v)", hsm.ErrOpen, err)
	}
	return out, nil
}
