// Package pkcs11 is an hsm backend over a PKCS#11 token, through github.com/miekg/pkcs11.
// It needs cgo and is built only with the build tag pkcs11, so that posd's default build
// stays pure Go and cross-compiles.
//
// # Basics
//
// Keys are created in the token sensitive and non-extractable (CKA_SENSITIVE true,
// CKA_EXTRACTABLE false), each with CKA_ALLOWED_MECHANISMS listing only the mechanisms its
// usage needs and with CKA_DERIVE false unless it derives keys, so no key can be read,
// wrapped out, or used to derive a child, except as below. A small data object beside each
// key (application "posd-hsm") records its usage, algorithm, check value and DUKPT KSN, so
// a Backend opened on the token again finds its keys.
//
// What runs inside the token:
//
//   - AES DUKPT: every derivation, initial key to transaction key to PIN working key, is a
//     CKM_AES_ECB_ENCRYPT_DATA derivation into a session key that is itself sensitive and
//     non-extractable; the PIN field is enciphered with CKM_AES_ECB under the working key.
//   - MACs: CKM_AES_CMAC, and CKM_DES3_CMAC for TDES keys.
//   - Sealing: CKM_AES_GCM.
//   - TR-31 import, versions B and D: the block's encryption and MAC keys are the CMAC of
//     derivation data under the KBPK (CKM_DES3_CMAC, CKM_AES_CMAC), so the KBPK stays in
//     the token.
//   - TR-31 import, versions A and C: their encryption and MAC keys are the KBPK XOR 45s
//     and XOR 4Ds, which a token cannot compute from a key it holds. So when a TDES KBPK is
//     created (its value then at hand, from components or a key block) the two variant keys
//     are created beside it, sensitive and non-extractable, labelled id + "/tr31-variant-enc"
//     (CKM_DES3_CBC decrypt only) and id + "/tr31-variant-mac" (CKM_DES3_CBC encrypt only,
//     for the CBC-MAC); replacing the KBPK replaces them.
//
// # Caveats
//
// PKCS#11 has no PIN entry, so PINBlock takes the PIN from Options.PINEntry: the clear PIN
// and the plain-text PIN field are in process memory. PIN entry belongs in a PIN pad; use
// this backend for host-side keys (MAC, sealing, key import) and the PIN pad backend for
// PINs in production.
//
// Standard mechanisms cannot do TDES DUKPT (it needs XOR and single-DES steps) or the retail
// MAC (single-DES CBC under half of the key) inside a token: those return
// hsm.ErrUnsupported. A TDES KBPK created by a posd without the variant keys above cannot
// unwrap version A and C blocks (hsm.ErrUnsupported, saying to load it again). TR-31 import
// and key loading from components have the new key's clear value in process memory for the
// length of the call, since PKCS#11 cannot unwrap a TR-31 block itself, and SoftHSM 2.6 has
// no CKM_XOR_BASE_AND_DATA to combine components (where components are typed into the
// process, combining them in the token would hide nothing anyway).
//
// SoftHSM 2.6 does not implement CKA_DERIVE_TEMPLATE: a session logged in to the token can
// derive an extractable child from a key whose usage is derivation (a DUKPT initial key),
// and so learn its transaction keys. A token that enforces derive templates closes this;
// with SoftHSM, protect the user PIN.
//
// A Backend is safe for concurrent use: it holds one session and serialises its use.
package pkcs11
