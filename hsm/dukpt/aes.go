package dukpt

import (
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// AES DUKPT, ANSI X9.24-3-2017.
//
// Every key is derived by encrypting 16 bytes of derivation data under the
// parent key with AES-ECB, once per 128 bits of the new key. The derivation
// data names the new key's usage, type and length, the initial key ID and the
// transaction counter, so a derived key cannot stand in for another.

// AESMaxCounter is the largest counter an AES DUKPT originator uses: the
// largest 32-bit value with at most 16 one bits.
const AESMaxCounter = 0xFFFF0000

// aesMaxOneBits is the largest number of one bits in a counter an originator
// uses (X9.24-3-2017 6.1); counters with more are skipped.
const aesMaxOneBits = 16

// ErrKeyType is returned (wrapped) when a key type cannot be used where it was
// asked for: a working key stronger than the derivation key, or a base
// derivation key that is not AES.
var ErrKeyType = errors.New("key type not allowed here")

// KeyType is the type of an AES DUKPT key. Base derivation keys and the
// initial and intermediate keys derived from them are AES; working keys may
// also be TDES. A KeyType is a value; it is safe for concurrent use.
type KeyType int

// Key types, with the algorithm indicators of X9.24-3-2017 table 2.
const (
	KeyTDES2  KeyType = iota + 1 // double-length TDES (2TDEA), 16 bytes
	KeyTDES3                     // triple-length TDES (3TDEA), 24 bytes
	KeyAES128                    // AES-128, 16 bytes
	KeyAES192                    // AES-192, 24 bytes
	KeyAES256                    // AES-256, 32 bytes
)

// String returns the type's name, such as "AES-128".
func (t KeyType) String() string {
	switch t {
	case KeyTDES2:
		return "2TDEA"
	case KeyTDES3:
		return "3TDEA"
	case KeyAES128:
		return "AES-128"
	case KeyAES192:
		return "AES-192"
	case KeyAES256:
		return "AES-256"
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

// ParseKeyType reads a key type as the key tool takes it: "aes128", "aes-128",
// "tdes2", "2tdea" and so on, in any case.
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ReplaceAll(strings.ToLower(s), "-", "") {
	case "tdes2", "2tdea", "tdes", "3des2":
		return KeyTDES2, nil
	case "tdes3", "3tdea", "3des3":
		return KeyTDES3, nil
	case "aes128":
		return KeyAES128, nil
	case "aes192":
		return KeyAES192, nil
	case "aes256":
		return KeyAES256, nil
	}
	return 0, fmt.Errorf("dukpt: unknown key type %q (want aes128, aes192, aes256, tdes2 or tdes3)", s)
}

// Len returns the key's length in bytes, or 0 for an unknown type.
func (t KeyType) Len() int {
	switch t {
	case KeyTDES2, KeyAES128:
		return 16
	case KeyTDES3, KeyAES192:
		return 24
	case KeyAES256:
		return 32
	}
	return 0
}

// strength is the key's security strength in bits (SP 800-57), by which
// X9.24-3 forbids deriving a working key stronger than its derivation key.
func (t KeyType) strength() int {
	switch t {
	case KeyTDES2:
		return 80
	case KeyTDES3:
		return 112
	case KeyAES128:
		return 128
	case KeyAES192:
		return 192
	case KeyAES256:
		return 256
	}
	return 0
}

func (t KeyType) algorithm() uint16 {
	switch t {
	case KeyTDES2:
		return 0
	case KeyTDES3:
		return 1
	case KeyAES128:
		return 2
	case KeyAES192:
		return 3
	case KeyAES256:
		return 4
	}
	return 0xFFFF
}

// IsAES reports whether t is an AES type.
func (t KeyType) IsAES() bool { return t == KeyAES128 || t == KeyAES192 || t == KeyAES256 }

// AESKeyType returns the AES type of a key n bytes long.
func AESKeyType(n int) (KeyType, error) {
	switch n {
	case 16:
		return KeyAES128, nil
	case 24:
		return KeyAES192, nil
	case 32:
		return KeyAES256, nil
	}
	return 0, fmt.Errorf("dukpt: aes key is %d bytes, want 16, 24 or 32: %w", n, ErrKeyLength)
}

// KeyUsage is the key usage indicator of X9.24-3-2017 table 3: what a working
// key is for. A KeyUsage is a value; it is safe for concurrent use.
type KeyUsage uint16

// Working key usages.
const (
	UsageKeyEncryption   KeyUsage = 0x0002
	UsagePINEncryption   KeyUsage = 0x1000
	UsageMACGeneration   KeyUsage = 0x2000
	UsageMACVerification KeyUsage = 0x2001
	UsageMACBoth         KeyUsage = 0x2002
	UsageDataEncrypt     KeyUsage = 0x3000
	UsageDataDecrypt     KeyUsage = 0x3001
	UsageDataBoth        KeyUsage = 0x3002
	usageKeyDerivation   KeyUsage = 0x8000
	usageKeyDerivationIK KeyUsage = 0x8001
)

// String names the usage.
func (u KeyUsage) String() string {
	switch u {
	case UsageKeyEncryption:
		return "key encryption"
	case UsagePINEncryption:
		return "PIN encryption"
	case UsageMACGeneration:
		return "MAC generation"
	case UsageMACVerification:
		return "MAC verification"
	case UsageMACBoth:
		return "MAC generation and verification"
	case UsageDataEncrypt:
		return "data encryption"
	case UsageDataDecrypt:
		return "data decryption"
	case UsageDataBoth:
		return "data encryption and decryption"
	}
	return fmt.Sprintf("KeyUsage(%#04x)", uint16(u))
}

func (u KeyUsage) working() bool {
	switch u {
	case UsageKeyEncryption, UsagePINEncryption, UsageMACGeneration, UsageMACVerification,
		UsageMACBoth, UsageDataEncrypt, UsageDataDecrypt, UsageDataBoth:
		return true
	}
	return false
}

// AESKSN is an AES DUKPT key serial number: the 64-bit initial key ID (a
// 32-bit BDK ID and a 32-bit derivation ID) followed by the 32-bit transaction
// counter. A KSN is not secret. It is a value; it is safe for concurrent use.
type AESKSN [12]byte

// ParseAESKSN parses 24 hexadecimal digits, in any case, into a KSN.
func ParseAESKSN(hexstr string) (AESKSN, error) {
	var k AESKSN
	if len(hexstr) != 2*len(k) {
		return AESKSN{}, fmt.Errorf("dukpt: parse aes ksn: want 24 hex digits, got %d characters", len(hexstr))
	}
	if _, err := hex.Decode(k[:], []byte(hexstr)); err != nil {
		return AESKSN{}, fmt.Errorf("dukpt: parse aes ksn: not hexadecimal: %w", err)
	}
	return k, nil
}

// NewAESKSN returns the KSN of initial key ID ikid and counter c.
func NewAESKSN(ikid [8]byte, c uint32) AESKSN {
	var k AESKSN
	copy(k[:8], ikid[:])
	binary.BigEndian.PutUint32(k[8:], c)
	return k
}

// String returns the KSN as 24 upper-case hexadecimal digits.
func (k AESKSN) String() string { return fmt.Sprintf("%X", k[:]) }

// InitialKeyID returns the 8-byte initial key ID.
func (k AESKSN) InitialKeyID() [8]byte {
	var id [8]byte
	copy(id[:], k[:8])
	return id
}

// Counter returns the 32-bit transaction counter.
func (k AESKSN) Counter() uint32 { return binary.BigEndian.Uint32(k[8:]) }

// WithCounter returns the same KSN with its counter replaced by c.
func (k AESKSN) WithCounter(c uint32) AESKSN {
	binary.BigEndian.PutUint32(k[8:], c)
	return k
}

// validAESCounter reports whether c names a transaction key an originator uses.
func validAESCounter(c uint32) bool {
	return c != 0 && bits.OnesCount32(c) <= aesMaxOneBits
}

// nextAESCounter returns the smallest valid counter greater than c, or false.
// As for TDES, a counter with too many one bits is skipped by adding its
// lowest one bit.
func nextAESCounter(c uint32) (uint32, bool) {
	n := uint64(c) + 1
	for n <= AESMaxCounter && bits.OnesCount64(n) > aesMaxOneBits {
		n += n & -n
	}
	return uint32(n), n <= AESMaxCounter
}

// derivationData builds the 16 bytes of X9.24-3-2017 6.3.2 for a key of type
// t and usage u. The initial key takes the whole initial key ID; every other
// key takes the derivation ID (its right half) and the counter c.
func derivationData(u KeyUsage, t KeyType, ikid [8]byte, c uint32) [16]byte {
	var d [16]byte
	d[0] = 0x01 // version
	d[1] = 0x01 // key block counter, set per block by deriveKey
	binary.BigEndian.PutUint16(d[2:], uint16(u))
	binary.BigEndian.PutUint16(d[4:], t.algorithm())
	binary.BigEndian.PutUint16(d[6:], uint16(8*t.Len()))
	if u == usageKeyDerivationIK {
		copy(d[8:], ikid[:])
	} else {
		copy(d[8:12], ikid[4:])
		binary.BigEndian.PutUint32(d[12:], c)
	}
	return d
}

// deriveKey encrypts the derivation data under the AES key dk once per 128
// bits of a key of type t, with the block counter 1, 2, ..., and returns the
// leftmost t.Len() bytes.
func deriveKey(dk []byte, t KeyType, data [16]byte) ([]byte, error) {
	c, err := aes.NewCipher(dk)
	if err != nil {
		return nil, fmt.Errorf("dukpt: aes derivation key is %d bytes: %w", len(dk), ErrKeyLength)
	}
	n := t.Len()
	out := make([]byte, (n+15)/16*16)
	for i := 0; i*16 < n; i++ {
		data[1] = byte(i + 1)
		c.Encrypt(out[16*i:], data[:])
	}
	clear(out[n:])
	return out[:n], nil
}

// AESInitialKey derives the initial key for initial key ID ikid from an AES
// base derivation key (16, 24 or 32 bytes). The initial key has the BDK's type.
func AESInitialKey(bdk []byte, ikid [8]byte) ([]byte, error) {
	t, err := AESKeyType(len(bdk))
	if err != nil {
		return nil, fmt.Errorf("dukpt: aes initial key: base derivation key: %w", err)
	}
	return deriveKey(bdk, t, derivationData(usageKeyDerivationIK, t, ikid, 0))
}

// AESTransactionKey derives, from the initial key, the derivation key of
// ksn's counter: one derivation per one bit of the counter, most significant
// first, each under the previous key. The counter must be one an originator
// uses (not 0, at most 16 one bits); see [ErrCounter].
func AESTransactionKey(ik []byte, ksn AESKSN) ([]byte, error) {
	c := ksn.Counter()
	if !validAESCounter(c) {
		return nil, fmt.Errorf("dukpt: aes transaction key: ksn %v: counter %#x: %w", ksn, c, ErrCounter)
	}
	return aesTransactionKey(ik, ksn)
}

// aesTransactionKey derives the key for any counter, valid or not.
func aesTransactionKey(ik []byte, ksn AESKSN) ([]byte, error) {
	t, err := AESKeyType(len(ik))
	if err != nil {
		return nil, fmt.Errorf("dukpt: aes transaction key: initial key: %w", err)
	}
	ikid := ksn.InitialKeyID()
	c := ksn.Counter()
	key := append([]byte(nil), ik...)
	var reg uint32
	for mask := uint32(1) << 31; mask != 0; mask >>= 1 {
		if c&mask == 0 {
			continue
		}
		reg |= mask
		next, err := deriveKey(key, t, derivationData(usageKeyDerivation, t, ikid, reg))
		clear(key)
		if err != nil {
			return nil, err
		}
		key = next
	}
	return key, nil
}

// AESWorkingKeyFromTransactionKey derives a working key of usage u and type t
// from the transaction (derivation) key of ksn. X9.24-3 forbids a working key
// stronger than the derivation key: an AES-128 derivation key gives 2TDEA,
// 3TDEA or AES-128 working keys, not AES-192 or AES-256 (see [ErrKeyType]).
func AESWorkingKeyFromTransactionKey(txnKey []byte, ksn AESKSN, u KeyUsage, t KeyType) ([]byte, error) {
	dt, err := AESKeyType(len(txnKey))
	if err != nil {
		return nil, fmt.Errorf("dukpt: aes working key: transaction key: %w", err)
	}
	if !u.working() {
		return nil, fmt.Errorf("dukpt: aes working key: usage %v is not a working key usage: %w", u, ErrKeyType)
	}
	if t.Len() == 0 || t.strength() > dt.strength() {
		return nil, fmt.Errorf("dukpt: aes working key: %v from a %v derivation key: %w", t, dt, ErrKeyType)
	}
	return deriveKey(txnKey, t, derivationData(u, t, ksn.InitialKeyID(), ksn.Counter()))
}

// AESWorkingKey derives, on the receiving side, the working key of usage u and
// type t for ksn from the base derivation key: BDK -> initial key ->
// transaction key -> working key.
func AESWorkingKey(bdk []byte, ksn AESKSN, u KeyUsage, t KeyType) ([]byte, error) {
	ik, err := AESInitialKey(bdk, ksn.InitialKeyID())
	if err != nil {
		return nil, err
	}
	defer clear(ik)
	tk, err := AESTransactionKey(ik, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(tk)
	return AESWorkingKeyFromTransactionKey(tk, ksn, u, t)
}

// AESCounter is the counter of an AES DUKPT originator without its key, for a device that
// holds the initial key itself and derives inside (a PKCS#11 token): it skips counters with
// more than 16 one bits, never repeats one, and with a [Store] records each before it is
// used.
//
// An AESCounter is not safe for concurrent use.
type AESCounter struct {
	ksn   AESKSN
	store Store
}

// NewAESCounter returns a counter whose last used value is ksn's (0: none yet). With
// opts.Store, a KSN saved there for the same initial key ID and a later counter takes
// precedence.
func NewAESCounter(ksn AESKSN, opts *OriginatorOptions) (*AESCounter, error) {
	c := &AESCounter{ksn: ksn}
	if opts != nil && opts.Store != nil {
		c.store = opts.Store
		saved, err := loadKSN(opts.Store, ksn[:], 8)
		if err != nil {
			return nil, err
		}
		if saved != nil {
			if s := AESKSN(saved); s.Counter() > ksn.Counter() {
				c.ksn = s
			}
		}
	}
	return c, nil
}

// KSN returns the KSN of the current transaction: the last one Next returned, or the one
// the counter was made with.
func (c *AESCounter) KSN() AESKSN { return c.ksn }

// Remaining returns how many transactions are left before the counter is exhausted.
func (c *AESCounter) Remaining() uint64 {
	return countValid(AESMaxCounter, aesMaxOneBits) - countValid(uint64(c.ksn.Counter()), aesMaxOneBits)
}

// Next advances to the next valid counter, saves the new KSN in the Store, and returns
// it. When no counter is left it returns an error wrapping [ErrExhausted] and leaves the
// counter unchanged; if the Store fails, the counter is unchanged too.
func (c *AESCounter) Next() (AESKSN, error) {
	n, ok := nextAESCounter(c.ksn.Counter())
	if !ok {
		return AESKSN{}, fmt.Errorf("dukpt: next aes transaction after ksn %v: %w", c.ksn, ErrExhausted)
	}
	next := c.ksn.WithCounter(n)
	if c.store != nil {
		if err := c.store.Save(next[:]); err != nil {
			return AESKSN{}, fmt.Errorf("dukpt: saving ksn %v before use: %w", next, err)
		}
	}
	c.ksn = next
	return next, nil
}

// DerivationStep is one AES DUKPT key derivation: the new key is the AES-ECB encryption
// of Data under the previous key, truncated to KeyType.Len() bytes. Data is 16 bytes, or 32
// for a key longer than 128 bits (the derivation data with key block counter 1, then 2).
// Data is not secret. A DerivationStep is a value, safe for concurrent use if not modified.
type DerivationStep struct {
	Data    []byte
	KeyType KeyType
}

// AESDerivationPath returns the derivations from an initial key of type ikType to the
// working key of usage u and type t for ksn: one for each one bit of the counter, most
// significant first, then the working key's. A device that holds the initial key runs
// them itself, as a PKCS#11 token does with CKM_AES_ECB_ENCRYPT_DATA. The counter must be
// valid and the working key no stronger than the initial key.
func AESDerivationPath(ikType KeyType, ksn AESKSN, u KeyUsage, t KeyType) ([]DerivationStep, error) {
	c := ksn.Counter()
	if !validAESCounter(c) {
		return nil, fmt.Errorf("dukpt: aes derivation path: ksn %v: counter %#x: %w", ksn, c, ErrCounter)
	}
	if !ikType.IsAES() {
		return nil, fmt.Errorf("dukpt: aes derivation path: a %v initial key: %w", ikType, ErrKeyType)
	}
	if !u.working() || t.Len() == 0 || t.strength() > ikType.strength() {
		return nil, fmt.Errorf("dukpt: aes derivation path: %v %v working key from a %v key: %w", t, u, ikType, ErrKeyType)
	}
	ikid := ksn.InitialKeyID()
	step := func(u KeyUsage, t KeyType, reg uint32) DerivationStep {
		d := derivationData(u, t, ikid, reg)
		var data []byte
		for i := 0; i*16 < t.Len(); i++ {
			d[1] = byte(i + 1)
			data = append(data, d[:]...)
		}
		return DerivationStep{Data: data, KeyType: t}
	}
	var path []DerivationStep
	var reg uint32
	for mask := uint32(1) << 31; mask != 0; mask >>= 1 {
		if c&mask != 0 {
			reg |= mask
			path = append(path, step(usageKeyDerivation, ikType, reg))
		}
	}
	return append(path, step(u, t, c)), nil
}

// AESOriginator is the originating side of AES DUKPT, as in a PIN pad: it
// holds an initial key and advances the transaction counter, skipping
// counters with more than 16 one bits and never reusing one. With a [Store]
// it records each counter before it hands out a key for it, so a restart
// continues after the last counter used.
//
// Like [Originator], it keeps the initial key and derives each transaction
// key from it; it is for simulators, tests and the soft hsm backend.
//
// An AESOriginator is not safe for concurrent use.
type AESOriginator struct {
	ik  []byte
	t   KeyType
	ctr *AESCounter
}

// NewAESOriginator returns an originator for the AES initial key ik. The
// counter in ksn is the last counter used; 0 means none has been used yet.
// With opts.Store, a KSN saved there for the same initial key ID and a later
// counter takes precedence. The originator keeps its own copy of ik.
func NewAESOriginator(ik []byte, ksn AESKSN, opts *OriginatorOptions) (*AESOriginator, error) {
	t, err := AESKeyType(len(ik))
	if err != nil {
		return nil, fmt.Errorf("dukpt: new aes originator: initial key: %w", err)
	}
	ctr, err := NewAESCounter(ksn, opts)
	if err != nil {
		return nil, err
	}
	return &AESOriginator{ik: append([]byte(nil), ik...), t: t, ctr: ctr}, nil
}

// KeyType returns the type of the initial key and so of the transaction keys.
func (o *AESOriginator) KeyType() KeyType { return o.t }

// KSN returns the KSN of the current transaction: the last counter Next
// returned, or the KSN given to [NewAESOriginator] if Next has not been called.
func (o *AESOriginator) KSN() AESKSN { return o.ctr.KSN() }

// Remaining returns how many transactions are left before the originator is
// exhausted, so that a device can warn and be re-keyed in time.
func (o *AESOriginator) Remaining() uint64 { return o.ctr.Remaining() }

// Next starts a transaction: it advances to the next valid counter, saves
// the new KSN in the Store, and returns it. When no counter is left it
// returns an error wrapping [ErrExhausted] and leaves the counter unchanged;
// if the Store fails, the counter is unchanged too and no key is derived.
func (o *AESOriginator) Next() (AESKSN, error) { return o.ctr.Next() }

// WorkingKey derives the working key of usage u and type t for the current
// transaction (the KSN Next returned last).
func (o *AESOriginator) WorkingKey(u KeyUsage, t KeyType) ([]byte, error) {
	ksn := o.ctr.KSN()
	tk, err := AESTransactionKey(o.ik, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(tk)
	return AESWorkingKeyFromTransactionKey(tk, ksn, u, t)
}

// NextPINKey starts a transaction and returns its PIN encryption key of type
// t and its KSN.
func (o *AESOriginator) NextPINKey(t KeyType) ([]byte, AESKSN, error) {
	ksn, err := o.Next()
	if err != nil {
		return nil, AESKSN{}, err
	}
	key, err := o.WorkingKey(UsagePINEncryption, t)
	if err != nil {
		return nil, AESKSN{}, err
	}
	return key, ksn, nil
}

// countValid returns how many x in [1, n] have at most k one bits.
func countValid(n uint64, k int) uint64 {
	var total uint64
	ones := 0
	for i := 63; i >= 0; i-- {
		if n&(1<<uint(i)) == 0 {
			continue
		}
		// x has the same bits as n above i and a zero at i: the i lower
		// bits are free, with at most k-ones of them set.
		for j := 0; j <= k-ones && j <= i; j++ {
			total += binomial(i, j)
		}
		ones++
		if ones > k {
			return total - 1 // every x < n counted so far but x = 0
		}
	}
	// total counts x = 0 and every x < n; add n itself and take away 0.
	return total
}

func binomial(n, k int) uint64 {
	if k < 0 || k > n {
		return 0
	}
	r := uint64(1)
	for i := 1; i <= k; i++ {
		r = r * uint64(n-k+i) / uint64(i)
	}
	return r
}
