// Package dukpt implements DUKPT (Derived Unique Key Per Transaction): TDES
// DUKPT as specified in ANSI X9.24-1:2009 and AES DUKPT as specified in ANSI
// X9.24-3-2017 (AES-128, AES-192 and AES-256 base derivation keys; PIN, MAC,
// data and key encryption working keys of AES or TDES type), for both the
// originating side (a PIN pad that holds an initial key and advances its key
// serial number) and the receiving side (a host that holds the base
// derivation key).
//
// Originators skip the counters the standards forbid (more than 10 one bits
// for TDES, more than 16 for AES), report how many transactions remain, fail
// with [ErrExhausted] before a counter could repeat, and, given a [Store],
// record each counter before using it so a restart never reuses one.
//
// This is the software DUKPT used by the simulators (the PIN pad simulator is
// an [Originator]) and by the receiver side in tests and the acquirer
// simulator. posd itself never holds a clear key: in production the PIN pad
// and the host security module do this work, and posd only carries the
// encrypted PIN block and its KSN.
//
// TDES keys are 16-byte (double-length) keys, used as K1 K2 K1. AES keys are
// 16, 24 or 32 bytes. This package returns clear keys, as a reference
// implementation must; posd's own code reaches keys only through package hsm,
// whose backends never return them. Functions that return keys return fresh slices that the caller owns; the caller should
// overwrite them when done. Nothing in this package puts key bytes into an
// error.
package dukpt

import (
	"crypto/des"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
)

// MaxCounter is the largest value of the 21-bit transaction counter.
const MaxCounter = 0x1FFFFF

// maxOneBits is the largest number of one bits a valid counter may have
// (X9.24-1:2009 A.2): counters with more are skipped by the originator.
const maxOneBits = 10

// ErrExhausted is returned (wrapped) by [Originator.NextPINKey] when no valid
// counter is left. It is returned before any key is reused: the originator's
// counter is left at the last counter used and every later call fails too.
// The device needs a new initial key.
var ErrExhausted = errors.New("transaction counter exhausted")

// ErrCounter is returned (wrapped) when a KSN's counter cannot name a
// transaction key: it is 0 (no key has been used yet) or it has more than 10
// one bits (an originator never uses such a counter).
var ErrCounter = errors.New("invalid transaction counter")

// ErrKeyLength is returned (wrapped) when a key has the wrong length: not 16
// bytes for TDES DUKPT, not 16, 24 or 32 for AES DUKPT.
var ErrKeyLength = errors.New("wrong key length")

// KSN is a key serial number: the 59-bit initial key serial number followed
// by the 21-bit transaction counter. A KSN is not secret.
//
// A KSN is a value; it is safe for concurrent use.
type KSN [10]byte

// ParseKSN parses 20 hexadecimal digits, in any case, into a KSN.
func ParseKSN(hexstr string) (KSN, error) {
	var k KSN
	if len(hexstr) != 2*len(k) {
		return KSN{}, fmt.Errorf("dukpt: parse ksn: want 20 hex digits, got %d characters", len(hexstr))
	}
	if _, err := hex.Decode(k[:], []byte(hexstr)); err != nil {
		return KSN{}, fmt.Errorf("dukpt: parse ksn: not hexadecimal: %w", err)
	}
	return k, nil
}

// String returns the KSN as 20 upper-case hexadecimal digits.
func (k KSN) String() string {
	return fmt.Sprintf("%X", k[:])
}

// Counter returns the 21-bit transaction counter.
func (k KSN) Counter() uint32 {
	return uint32(k[7]&0x1F)<<16 | uint32(k[8])<<8 | uint32(k[9])
}

// WithCounter returns the same KSN with its counter replaced by c masked to
// 21 bits.
func (k KSN) WithCounter(c uint32) KSN {
	c &= MaxCounter
	k[7] = k[7]&^0x1F | byte(c>>16)
	k[8] = byte(c >> 8)
	k[9] = byte(c)
	return k
}

// validCounter reports whether c names a transaction key an originator uses.
func validCounter(c uint32) bool {
	return c != 0 && c <= MaxCounter && bits.OnesCount32(c) <= maxOneBits
}

var (
	// keyVariant is XORed into a key for the initial key's right half and in
	// the non-reversible key generation process.
	keyVariant = [16]byte{0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0, 0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0}
	// pinVariant is XORed into a transaction key to make the PIN encryption key.
	pinVariant = [16]byte{7: 0xFF, 15: 0xFF}
)

// TDESInitialKey derives the 16-byte initial PIN encryption key (IPEK) from a
// 16-byte base derivation key and a KSN. The KSN's counter is ignored.
func TDESInitialKey(bdk []byte, ksn KSN) ([]byte, error) {
	if len(bdk) != 16 {
		return nil, fmt.Errorf("dukpt: initial key: base derivation key is %d bytes: %w", len(bdk), ErrKeyLength)
	}
	base := ksn.WithCounter(0)
	var in [8]byte
	copy(in[:], base[:8])

	ipek := make([]byte, 16)
	if err := tdesEncrypt(ipek[:8], bdk, in[:]); err != nil {
		return nil, err
	}
	var k [16]byte
	defer clear(k[:])
	for i := range k {
		k[i] = bdk[i] ^ keyVariant[i]
	}
	if err := tdesEncrypt(ipek[8:], k[:], in[:]); err != nil {
		return nil, err
	}
	return ipek, nil
}

// TDESTransactionKey derives the transaction key for ksn's counter from the
// initial key: one non-reversible key generation per set bit of the counter,
// most significant bit first. The counter must be valid (see [ErrCounter]).
func TDESTransactionKey(ipek []byte, ksn KSN) ([]byte, error) {
	if len(ipek) != 16 {
		return nil, fmt.Errorf("dukpt: transaction key: initial key is %d bytes: %w", len(ipek), ErrKeyLength)
	}
	c := ksn.Counter()
	if !validCounter(c) {
		return nil, fmt.Errorf("dukpt: transaction key: ksn %v: counter %#x: %w", ksn, c, ErrCounter)
	}
	key := make([]byte, 16)
	copy(key, ipek)
	reg := ksn.WithCounter(0)
	for bit := uint32(1 << 20); bit != 0; bit >>= 1 {
		if c&bit == 0 {
			continue
		}
		reg = reg.WithCounter(reg.Counter() | bit)
		var r8 [8]byte
		copy(r8[:], reg[2:])
		if err := nonReversible(key, r8); err != nil {
			clear(key)
			return nil, err
		}
	}
	return key, nil
}

// TDESPINKey derives, on the receiving side, the PIN encryption key for ksn
// from the base derivation key: BDK -> initial key -> transaction key -> PIN
// variant.
func TDESPINKey(bdk []byte, ksn KSN) ([]byte, error) {
	ipek, err := TDESInitialKey(bdk, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(ipek)
	key, err := TDESTransactionKey(ipek, ksn)
	if err != nil {
		return nil, err
	}
	pinKey(key)
	return key, nil
}

// pinKey turns a transaction key into its PIN variant in place.
func pinKey(key []byte) {
	for i := range key {
		key[i] ^= pinVariant[i]
	}
}

// nonReversible replaces the 16-byte key with the output of the
// non-reversible key generation process (X9.24-1:2009 A.2) over r8, the
// rightmost 64 bits of the KSN register.
func nonReversible(key []byte, r8 [8]byte) error {
	var right, left [8]byte
	if err := halfKey(right[:], key, r8); err != nil {
		return err
	}
	for i := range key {
		key[i] ^= keyVariant[i]
	}
	if err := halfKey(left[:], key, r8); err != nil {
		return err
	}
	copy(key[:8], left[:])
	copy(key[8:], right[:])
	clear(left[:])
	clear(right[:])
	return nil
}

// halfKey computes DES_{key left}(r8 XOR key right) XOR key right into dst.
func halfKey(dst, key []byte, r8 [8]byte) error {
	b, err := des.NewCipher(key[:8])
	if err != nil {
		return fmt.Errorf("dukpt: des key: %w", err)
	}
	var x [8]byte
	for i := range x {
		x[i] = r8[i] ^ key[8+i]
	}
	b.Encrypt(dst, x[:])
	for i := range x {
		dst[i] ^= key[8+i]
	}
	return nil
}

// tdesEncrypt encrypts one block with a 16-byte key used as K1 K2 K1.
func tdesEncrypt(dst, key16, src []byte) error {
	var k [24]byte
	defer clear(k[:])
	copy(k[:], key16)
	copy(k[16:], key16[:8])
	b, err := des.NewTripleDESCipher(k[:])
	if err != nil {
		return fmt.Errorf("dukpt: tdes key: %w", err)
	}
	b.Encrypt(dst, src)
	return nil
}

// Variant names a TDES DUKPT working key: the transaction key XORed with a
// variant constant (X9.24-1:2009 A.4.1 table A-1), and for data keys then
// passed through a one-way function (figure A-2). A Variant is a value; it is
// safe for concurrent use.
type Variant int

// TDES DUKPT working key variants.
const (
	VariantPIN          Variant = iota + 1 // PIN encryption
	VariantMACRequest                      // MAC, request (terminal to host) or both ways
	VariantMACResponse                     // MAC, response
	VariantDataRequest                     // data encryption, request or both ways
	VariantDataResponse                    // data encryption, response
)

// String names the variant.
func (v Variant) String() string {
	switch v {
	case VariantPIN:
		return "PIN"
	case VariantMACRequest:
		return "MAC request"
	case VariantMACResponse:
		return "MAC response"
	case VariantDataRequest:
		return "data request"
	case VariantDataResponse:
		return "data response"
	}
	return fmt.Sprintf("Variant(%d)", int(v))
}

// offset returns the offset of the byte XORed with FF in each half.
func (v Variant) offset() int {
	switch v {
	case VariantPIN:
		return 7
	case VariantMACRequest:
		return 6
	case VariantMACResponse:
		return 4
	case VariantDataRequest:
		return 5
	case VariantDataResponse:
		return 3
	}
	return -1
}

// TDESVariantKey derives the working key of variant v from a 16-byte
// transaction key.
func TDESVariantKey(txnKey []byte, v Variant) ([]byte, error) {
	if len(txnKey) != 16 {
		return nil, fmt.Errorf("dukpt: variant key: transaction key is %d bytes: %w", len(txnKey), ErrKeyLength)
	}
	off := v.offset()
	if off < 0 {
		return nil, fmt.Errorf("dukpt: unknown variant %v", v)
	}
	key := append([]byte(nil), txnKey...)
	key[off] ^= 0xFF
	key[8+off] ^= 0xFF
	if v == VariantDataRequest || v == VariantDataResponse {
		// One-way function: each half encrypted under the variant key.
		var k [16]byte
		defer clear(k[:])
		copy(k[:], key)
		if err := tdesEncrypt(key[:8], k[:], k[:8]); err != nil {
			return nil, err
		}
		if err := tdesEncrypt(key[8:], k[:], k[8:]); err != nil {
			return nil, err
		}
	}
	return key, nil
}

// TDESWorkingKey derives, on the receiving side, the working key of variant
// v for ksn from the base derivation key.
func TDESWorkingKey(bdk []byte, ksn KSN, v Variant) ([]byte, error) {
	ipek, err := TDESInitialKey(bdk, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(ipek)
	tk, err := TDESTransactionKey(ipek, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(tk)
	return TDESVariantKey(tk, v)
}

// Originator is the originating side of DUKPT, as in a PIN pad: it holds an
// initial key and advances the transaction counter, never reusing a counter.
// With a [Store] it records each counter before it hands out a key for it, so
// a restart continues after the last counter used.
//
// Unlike a certified PIN pad, which keeps only future keys and erases the
// initial key, Originator keeps the initial key and derives each transaction
// key from it. It is for simulators and tests.
//
// An Originator is not safe for concurrent use.
type Originator struct {
	ipek  []byte
	ksn   KSN
	store Store
}

// NewOriginator returns an originator for the 16-byte initial key ipek. The
// counter in ksn is the last counter used; 0 means none has been used yet.
// The originator keeps its own copy of ipek. It is NewTDESOriginator without
// options.
func NewOriginator(ipek []byte, ksn KSN) (*Originator, error) {
	return NewTDESOriginator(ipek, ksn, nil)
}

// NewTDESOriginator returns an originator for the 16-byte initial key ipek,
// as [NewOriginator]. With opts.Store, a KSN saved there for the same initial
// KSN and a later counter takes precedence over ksn.
func NewTDESOriginator(ipek []byte, ksn KSN, opts *OriginatorOptions) (*Originator, error) {
	if len(ipek) != 16 {
		return nil, fmt.Errorf("dukpt: new originator: initial key is %d bytes: %w", len(ipek), ErrKeyLength)
	}
	o := &Originator{ipek: append([]byte(nil), ipek...), ksn: ksn}
	if opts != nil && opts.Store != nil {
		o.store = opts.Store
		saved, err := loadKSN(opts.Store, ksn[:], 8)
		if err != nil {
			return nil, err
		}
		if saved != nil {
			if s := KSN(saved); s.Counter() > ksn.Counter() {
				o.ksn = s
			}
		}
	}
	return o, nil
}

// nextCounter returns the smallest valid counter greater than c, or false if
// there is none. A counter with more than 10 one bits is skipped by adding
// its lowest one bit, as X9.24-1:2009 A.2 does: every counter in between has
// the same high bits and so at least as many one bits.
func nextCounter(c uint32) (uint32, bool) {
	n := c + 1
	for n <= MaxCounter && bits.OnesCount32(n) > maxOneBits {
		n += n & -n
	}
	return n, n <= MaxCounter
}

// Next starts a transaction: it advances the counter to the next valid value,
// saves the new KSN in the Store, and returns it. When no valid counter is
// left it returns an error wrapping [ErrExhausted] and leaves the counter
// unchanged; if the Store fails, the counter is unchanged too.
func (o *Originator) Next() (KSN, error) {
	c, ok := nextCounter(o.ksn.Counter())
	if !ok {
		return KSN{}, fmt.Errorf("dukpt: next pin key after ksn %v: %w", o.ksn, ErrExhausted)
	}
	next := o.ksn.WithCounter(c)
	if o.store != nil {
		if err := o.store.Save(next[:]); err != nil {
			return KSN{}, fmt.Errorf("dukpt: saving ksn %v before use: %w", next, err)
		}
	}
	o.ksn = next
	return next, nil
}

// Key derives the working key of variant v for the current transaction (the
// KSN Next returned last).
func (o *Originator) Key(v Variant) ([]byte, error) {
	tk, err := TDESTransactionKey(o.ipek, o.ksn)
	if err != nil {
		return nil, err
	}
	defer clear(tk)
	return TDESVariantKey(tk, v)
}

// NextPINKey advances the counter to the next valid value and returns that
// counter's PIN encryption key and KSN. When no valid counter is left it
// returns an error wrapping [ErrExhausted] and leaves the counter unchanged.
func (o *Originator) NextPINKey() (key []byte, ksn KSN, err error) {
	next, err := o.Next()
	if err != nil {
		return nil, KSN{}, err
	}
	key, err = o.Key(VariantPIN)
	if err != nil {
		return nil, KSN{}, err
	}
	return key, next, nil
}

// KSN returns the KSN of the last key returned, or the KSN given to
// [NewOriginator] if none has been returned yet.
func (o *Originator) KSN() KSN {
	return o.ksn
}

// Remaining returns how many transactions are left before the originator is
// exhausted, so that a device can warn and be re-keyed in time.
func (o *Originator) Remaining() uint64 {
	return countValid(MaxCounter, maxOneBits) - countValid(uint64(o.ksn.Counter()), maxOneBits)
}
