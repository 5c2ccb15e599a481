//go:build pkcs11

package pkcs11

/*
#include <stdlib.h>
#include <string.h>

// CK_KEY_DERIVATION_STRING_DATA of PKCS#11 v2.40 (the parameter of CKM_AES_ECB_ENCRYPT_DATA
// and CKM_DES3_ECB_ENCRYPT_DATA), with CK_ULONG as unsigned long as on every Unix platform.
typedef struct {
	unsigned char *pData;
	unsigned long ulLen;
} posd_derivation_string_data;

static posd_derivation_string_data *posd_new_derivation(const void *data, unsigned long n) {
	posd_derivation_string_data *p = malloc(sizeof *p);
	if (p == NULL) return NULL;
	p->pData = malloc(n ? n : 1);
	if (p->pData == NULL) { free(p); return NULL; }
	memcpy(p->pData, data, n);
	p->ulLen = n;
	return p;
}

static void posd_free_derivation(posd_derivation_string_data *p) {
	if (p == NULL) return;
	memset(p->pData, 0, p->ulLen);
	free(p->pData);
	free(p);
}
*/
import "C"

import (
	"errors"
	"unsafe"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm/dukpt"
)

// derivationParam packs the CK_KEY_DERIVATION_STRING_DATA for data. miekg/pkcs11 has no
// helper for it, and the struct holds a pointer, so it is built in C memory; the bytes of
// the struct are what the mechanism carries. free releases (and zeroes) the C memory once
// the derivation call has returned.
func derivationParam(data []byte) (param []byte, free func(), err error) {
	if len(data) == 0 {
		return nil, nil, errors.New("pkcs11: empty derivation data")
	}
	p := C.posd_new_derivation(unsafe.Pointer(&data[0]), C.ulong(len(data)))
	if p == nil {
		return nil, nil, errors.New("pkcs11: out of memory")
	}
	param = C.GoBytes(unsafe.Pointer(p), C.int(C.sizeof_posd_derivation_string_data))
	return param, func() { C.posd_free_derivation(p) }, nil
}

// ecbDerive returns the mechanism of an ECB_ENCRYPT_DATA derivation of data.
func ecbDerive(mech uint, data []byte) (*p11.Mechanism, func(), error) {
	param, free, err := derivationParam(data)
	if err != nil {
		return nil, nil, err
	}
	return p11.NewMechanism(mech, param), free, nil
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
