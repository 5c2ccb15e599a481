// Package tr31 reads and writes ASC X9 TR-31 key blocks: a key, encrypted and
// authenticated under a key block protection key (KBPK), with a clear header
// that says what the key may be used for.
//
// Versions:
//
//   - A (and C): key variant binding, TDES KBPK. The encryption and MAC keys
//     are the KBPK XORed with 45 and 4D repeated; the key data is TDES-CBC
//     encrypted with the header's first 8 bytes as IV; the MAC is the 4-byte
//     TDES CBC-MAC of the header and the encrypted data.
//   - B: key derivation binding, TDES KBPK. Encryption and MAC keys derived
//     with TDES-CMAC in counter mode (SP 800-108); an 8-byte TDES-CMAC of the
//     header and the clear key data, which is also the CBC IV.
//   - D: key derivation binding, AES KBPK (TR-31:2018), as B with AES-CMAC
//     and a 16-byte MAC.
//
// [Unwrap] checks the header strictly (length, fields, optional blocks), the
// MAC in constant time, and the key length against the algorithm, and returns
// the clear key: it is the import step of a technician's key loading, run by
// the soft hsm backend and by hsmctl. [UnwrapCMAC] (versions B and D) and
// [UnwrapVariant] (versions A and C) do the same with a KBPK that a secure
// device keeps and uses on the caller's behalf. [Wrap] is its inverse, for
// tests, simulators and tools.
//
// Headers are not secret and errors may name header fields; no error
// contains key data, encrypted or clear. The functions hold no state and are
// safe for concurrent use; a [Header] is a value.
package tr31

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	crand "crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/hsm/mac"
)

// Errors returned (wrapped) by this package.
var (
	// ErrFormat means the key block is not well formed: a header field, an
	// optional block, the length or the hex key data.
	ErrFormat = errors.New("malformed key block")
	// ErrVersion means a key block version this package does not implement.
	ErrVersion = errors.New("unsupported key block version")
	// ErrKBPK means the KBPK has the wrong length for the block's version.
	ErrKBPK = errors.New("kbpk has the wrong length for this key block version")
	// ErrMAC means the key block's MAC does not verify: the KBPK is not the
	// one the block was made with, or the block was altered.
	ErrMAC = errors.New("key block MAC does not verify (wrong KBPK or altered block)")
	// ErrKey means the decrypted key data is inconsistent: a key length that
	// does not fit, or does not suit the header's algorithm.
	ErrKey = errors.New("key data inconsistent with the header")
)

// Block is one optional header block: a two-character ID and its data. It is a value,
// safe for concurrent use.
type Block struct {
	ID   string
	Data string
}

// Header is the clear part of a key block; nothing in it is secret. It is a value, safe for
// concurrent use if its Blocks are not modified.
type Header struct {
	Version       byte    // 'A', 'B', 'C' or 'D'
	KeyUsage      string  // two characters, such as "P0" (PIN encryption)
	Algorithm     byte    // 'T' TDES, 'A' AES, 'D' DES, 'H' HMAC, ...
	ModeOfUse     byte    // 'E' encrypt only, 'D' decrypt, 'B' both, 'N' no restriction, 'G' MAC generate, 'C' MAC both, 'X' derive keys, ...
	KeyVersion    string  // two characters, "00" for none
	Exportability byte    // 'E' exportable under a KEK, 'N' non-exportable, 'S' sensitive
	Blocks        []Block // optional blocks, in order, the padding block ("PB") included
}

// Get returns the data of the optional block id.
func (h Header) Get(id string) (string, bool) {
	for _, b := range h.Blocks {
		if b.ID == id {
			return b.Data, true
		}
	}
	return "", false
}

// String returns a one-line description, such as
// "version D, usage P0 (PIN encryption), algorithm A, mode E, version 00, exportability E".
func (h Header) String() string {
	s := fmt.Sprintf("version %c, usage %s (%s), algorithm %c, mode %c, version %s, exportability %c",
		h.Version, h.KeyUsage, UsageName(h.KeyUsage), h.Algorithm, h.ModeOfUse, h.KeyVersion, h.Exportability)
	for _, b := range h.Blocks {
		if b.ID != "PB" {
			s += fmt.Sprintf(", %s=%s", b.ID, b.Data)
		}
	}
	return s
}

// UsageName names a TR-31 key usage.
func UsageName(u string) string {
	switch u {
	case "B0":
		return "BDK"
	case "B1":
		return "initial DUKPT key"
	case "B2":
		return "base key variant key"
	case "C0":
		return "CVK"
	case "D0":
		return "symmetric data encryption"
	case "D1":
		return "asymmetric data encryption"
	case "D2":
		return "data encryption for decimalization table"
	case "K0":
		return "key encryption or wrapping"
	case "K1":
		return "TR-31 key block protection key"
	case "M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8":
		return "MAC key"
	case "P0":
		return "PIN encryption"
	case "V0", "V1", "V2", "V3", "V4":
		return "PIN verification"
	}
	return "other"
}

const fixedHeader = 16

// blockSize returns the cipher block size of a version, or 0.
func blockSize(v byte) int {
	switch v {
	case 'A', 'B', 'C':
		return 8
	case 'D':
		return 16
	}
	return 0
}

// macLen returns the MAC length in bytes of a version.
func macLen(v byte) int {
	switch v {
	case 'A', 'C':
		return 4
	case 'B':
		return 8
	case 'D':
		return 16
	}
	return 0
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

func formatErr(format string, a ...any) error {
	return fmt.Errorf("tr31: %s: %w", fmt.Sprintf(format, a...), ErrFormat)
}

// ParseHeader parses the header at the start of a key block and returns it
// with its length in characters. It checks the fixed fields and the optional
// blocks, but not the block length field against the whole block (Unwrap
// does).
func ParseHeader(s string) (Header, int, error) {
	if len(s) < fixedHeader {
		return Header{}, 0, formatErr("key block of %d characters is shorter than a header", len(s))
	}
	if !printable(s[:fixedHeader]) {
		return Header{}, 0, formatErr("header is not printable ASCII")
	}
	h := Header{
		Version:       s[0],
		KeyUsage:      s[5:7],
		Algorithm:     s[7],
		ModeOfUse:     s[8],
		KeyVersion:    s[9:11],
		Exportability: s[11],
	}
	if blockSize(h.Version) == 0 {
		return Header{}, 0, fmt.Errorf("tr31: version %q: %w (A, B, C and D are)", h.Version, ErrVersion)
	}
	if !alnum(h.KeyUsage[0]) || !alnum(h.KeyUsage[1]) || !alnum(h.Algorithm) || !alnum(h.ModeOfUse) || !alnum(h.Exportability) {
		return Header{}, 0, formatErr("header fields must be letters or digits")
	}
	if !alnum(h.KeyVersion[0]) || !alnum(h.KeyVersion[1]) {
		return Header{}, 0, formatErr("key version number must be letters or digits")
	}
	nblocks, err := decimal(s[12:14])
	if err != nil {
		return Header{}, 0, formatErr("number of optional blocks %q is not two decimal digits", s[12:14])
	}
	if s[14:16] != "00" {
		return Header{}, 0, formatErr("reserved field is %q, not 00", s[14:16])
	}
	i := fixedHeader
	for n := range nblocks {
		if len(s) < i+4 {
			return Header{}, 0, formatErr("optional block %d runs past the end", n+1)
		}
		id := s[i : i+2]
		if !alnum(id[0]) || !alnum(id[1]) {
			return Header{}, 0, formatErr("optional block %d has ID %q", n+1, id)
		}
		l, err := hexLen(s[i+2 : i+4])
		if err != nil {
			return Header{}, 0, formatErr("optional block %s: length %q is not hex", id, s[i+2:i+4])
		}
		start := i + 4
		if l == 0 { // extended length: length of length, then length
			if len(s) < i+6 {
				return Header{}, 0, formatErr("optional block %s: extended length runs past the end", id)
			}
			ll, err := hexLen(s[i+4 : i+6])
			if err != nil || ll == 0 || ll > 4 || len(s) < i+6+ll {
				return Header{}, 0, formatErr("optional block %s: bad extended length", id)
			}
			if l, err = hexLen(s[i+6 : i+6+ll]); err != nil {
				return Header{}, 0, formatErr("optional block %s: bad extended length", id)
			}
			start = i + 6 + ll
		}
		if l < start-i || len(s) < i+l {
			return Header{}, 0, formatErr("optional block %s: length %d does not fit", id, l)
		}
		data := s[start : i+l]
		if !printable(data) {
			return Header{}, 0, formatErr("optional block %s is not printable ASCII", id)
		}
		h.Blocks = append(h.Blocks, Block{ID: id, Data: data})
		i += l
	}
	if i%blockSize(h.Version) != 0 {
		return Header{}, 0, formatErr("header of %d characters is not a multiple of %d", i, blockSize(h.Version))
	}
	return h, i, nil
}

func decimal(s string) (int, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.Atoi(s)
}

func hexLen(s string) (int, error) {
	if s == "" {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil || strings.ContainsAny(s, "+-xX") {
		return 0, strconv.ErrSyntax
	}
	return int(n), nil
}

// keys derives the encryption and MAC keys of a version from the KBPK.
func keys(v byte, kbpk []byte) (enc, auth cipher.Block, err error) {
	switch v {
	case 'B':
		if len(kbpk) != 16 && len(kbpk) != 24 {
			return nil, nil, fmt.Errorf("tr31: version B: %d-byte kbpk: %w (16 or 24 TDES)", len(kbpk), ErrKBPK)
		}
		p, _ := tdes(kbpk)
		return derivedKeys(v, softCMAC(p), len(kbpk))
	case 'D':
		p, err := aes.NewCipher(kbpk)
		if err != nil {
			return nil, nil, fmt.Errorf("tr31: version D: %d-byte kbpk: %w (16, 24 or 32 AES)", len(kbpk), ErrKBPK)
		}
		return derivedKeys(v, softCMAC(p), len(kbpk))
	case 'A', 'C':
		if len(kbpk) != 16 && len(kbpk) != 24 {
			return nil, nil, fmt.Errorf("tr31: version %c: %d-byte kbpk: %w (16 or 24 TDES)", v, len(kbpk), ErrKBPK)
		}
		ke, km := make([]byte, len(kbpk)), make([]byte, len(kbpk))
		defer clear(ke)
		defer clear(km)
		for i, b := range kbpk {
			ke[i], km[i] = b^0x45, b^0x4D
		}
		enc, _ = tdes(ke)
		auth, _ = tdes(km)
		return enc, auth, nil
	}
	return nil, nil, fmt.Errorf("tr31: version %q: %w", v, ErrVersion)
}

// derive runs the CMAC counter-mode KDF of TR-31 versions B and D: each
// output block is the CMAC of 8 bytes (counter, usage 0000 for encryption or
// 0001 for MAC, separator 00, algorithm, key length in bits).
func derive(cmac func([]byte) ([]byte, error), alg, bits uint16, n int) (enc, auth []byte, err error) {
	var d [8]byte
	binary.BigEndian.PutUint16(d[4:], alg)
	binary.BigEndian.PutUint16(d[6:], bits)
	for i := byte(1); len(enc) < n; i++ {
		d[0] = i
		d[1], d[2] = 0, 0
		e, err := cmac(d[:])
		if err != nil {
			return nil, nil, err
		}
		d[2] = 1
		a, err := cmac(d[:])
		if err != nil {
			return nil, nil, err
		}
		if len(e) == 0 || len(e) != len(a) {
			return nil, nil, fmt.Errorf("tr31: key derivation CMAC of %d bytes", len(e))
		}
		enc, auth = append(enc, e...), append(auth, a...)
	}
	return enc[:n], auth[:n], nil
}

func softCMAC(b cipher.Block) func([]byte) ([]byte, error) {
	return func(d []byte) ([]byte, error) { return mac.CMAC(b, d), nil }
}

// derivedKeys derives the encryption and MAC keys of version B (TDES) or D (AES) with the
// CMAC function of a KBPK of n bytes.
func derivedKeys(v byte, cmac func([]byte) ([]byte, error), n int) (enc, auth cipher.Block, err error) {
	var alg uint16
	switch {
	case v == 'B' && n == 16:
		alg = 0
	case v == 'B' && n == 24:
		alg = 1
	case v == 'D' && n == 16:
		alg = 2
	case v == 'D' && n == 24:
		alg = 3
	case v == 'D' && n == 32:
		alg = 4
	default:
		return nil, nil, fmt.Errorf("tr31: version %c: %d-byte kbpk: %w", v, n, ErrKBPK)
	}
	ke, km, err := derive(cmac, alg, uint16(8*n), n)
	if err != nil {
		return nil, nil, err
	}
	defer clear(ke)
	defer clear(km)
	if v == 'B' {
		enc, _ = tdes(ke)
		auth, _ = tdes(km)
		return enc, auth, nil
	}
	enc, _ = aes.NewCipher(ke)
	auth, _ = aes.NewCipher(km)
	return enc, auth, nil
}

func tdes(key []byte) (cipher.Block, error) {
	k := make([]byte, 24)
	defer clear(k)
	copy(k, key)
	if len(key) == 16 {
		copy(k[16:], key[:8])
	}
	return des.NewTripleDESCipher(k)
}

// Unwrap checks a key block under the KBPK and returns its header and the
// clear key.
func Unwrap(kbpk []byte, block string) (Header, []byte, error) {
	return unwrapKey(block, func(v byte) (cipher.Block, cipher.Block, error) { return keys(v, kbpk) })
}

// keyOf takes the key out of the clear key data.
func keyOf(h Header, clearData []byte) (Header, []byte, error) {
	bits := int(binary.BigEndian.Uint16(clearData))
	if bits%8 != 0 || bits/8 > len(clearData)-2 || bits == 0 {
		return Header{}, nil, fmt.Errorf("tr31: key length of %d bits in %d bytes of key data: %w", bits, len(clearData), ErrKey)
	}
	key := append([]byte(nil), clearData[2:2+bits/8]...)
	if err := checkKeyLength(h.Algorithm, len(key)); err != nil {
		clear(key)
		return Header{}, nil, err
	}
	return h, key, nil
}

// UnwrapCMAC is Unwrap for a KBPK kept inside a secure device that can compute CMACs under
// it but will not reveal it (a PKCS#11 token): versions B and D derive the block's keys by
// CMAC. cmac returns the CMAC of its input under the KBPK (TDES-CMAC for version B, AES-CMAC
// for D) and kbpkLen is the KBPK's length. The derived encryption and MAC keys, and the
// clear key, are in process memory for the length of the call. Versions A and C, whose
// keys are the KBPK XOR a constant, cannot be unwrapped this way (ErrVersion).
func UnwrapCMAC(cmac func(data []byte) ([]byte, error), kbpkLen int, block string) (Header, []byte, error) {
	return unwrapKey(block, func(v byte) (cipher.Block, cipher.Block, error) {
		if v != 'B' && v != 'D' {
			return nil, nil, fmt.Errorf("tr31: version %c needs the KBPK itself: %w", v, ErrVersion)
		}
		return derivedKeys(v, cmac, kbpkLen)
	})
}

// VariantKeys returns the two keys of TR-31 versions A and C (key variant binding) for a
// 16 or 24-byte TDES KBPK: the encryption key, the KBPK XOR 45 repeated, and the MAC key,
// the KBPK XOR 4D repeated. A secure device that keeps the KBPK from its caller stores
// these two beside it, while it has the KBPK's value (when the KBPK is loaded), so that it
// can later unwrap version A and C blocks with UnwrapVariant.
func VariantKeys(kbpk []byte) (enc, auth []byte, err error) {
	if len(kbpk) != 16 && len(kbpk) != 24 {
		return nil, nil, fmt.Errorf("tr31: version A and C: %d-byte kbpk: %w (16 or 24 TDES)", len(kbpk), ErrKBPK)
	}
	enc, auth = make([]byte, len(kbpk)), make([]byte, len(kbpk))
	for i, b := range kbpk {
		enc[i], auth[i] = b^0x45, b^0x4D
	}
	return enc, auth, nil
}

// UnwrapVariant is Unwrap for versions A and C with the KBPK's two variant keys (see
// VariantKeys) kept inside a secure device that will use them but not reveal them.
// cbcMAC returns the TDES CBC encryption, with a zero IV, of its input (a whole number of
// 8-byte blocks) under the MAC variant key; cbcDecrypt returns the TDES CBC decryption of
// data with the IV iv under the encryption variant key. The clear key data and the key are
// in process memory for the length of the call. Versions B and D are refused (ErrVersion):
// they use UnwrapCMAC.
func UnwrapVariant(cbcMAC func(data []byte) ([]byte, error), cbcDecrypt func(iv, data []byte) ([]byte, error), block string) (Header, []byte, error) {
	h, hl, encData, gotMAC, err := parseBlock(block)
	if err != nil {
		return Header{}, nil, err
	}
	if h.Version != 'A' && h.Version != 'C' {
		return Header{}, nil, fmt.Errorf("tr31: version %c derives its keys from the KBPK: %w", h.Version, ErrVersion)
	}
	header := []byte(block[:hl])
	c, err := cbcMAC(append(header, encData...))
	if err != nil {
		return Header{}, nil, err
	}
	if len(c) < 8 || len(c)%8 != 0 {
		return Header{}, nil, fmt.Errorf("tr31: CBC-MAC of %d bytes from the device", len(c))
	}
	want := c[len(c)-8:][:macLen(h.Version)]
	if subtle.ConstantTimeCompare(want, gotMAC) != 1 {
		return Header{}, nil, fmt.Errorf("tr31: %w", ErrMAC)
	}
	clearData, err := cbcDecrypt(header[:8], encData)
	if err != nil {
		return Header{}, nil, err
	}
	defer clear(clearData)
	if len(clearData) != len(encData) {
		return Header{}, nil, fmt.Errorf("tr31: the device decrypted %d bytes into %d", len(encData), len(clearData))
	}
	return keyOf(h, clearData)
}

// unwrap checks the block and its MAC and returns the header and the whole
// clear key data (length, key, padding).
func unwrap(kbpk []byte, block string) (Header, []byte, error) {
	return unwrapData(block, func(v byte) (cipher.Block, cipher.Block, error) { return keys(v, kbpk) })
}

// unwrapKey is Unwrap with the block's keys from keysOf.
func unwrapKey(block string, keysOf func(v byte) (enc, auth cipher.Block, err error)) (Header, []byte, error) {
	h, clearData, err := unwrapData(block, keysOf)
	if err != nil {
		return Header{}, nil, err
	}
	defer clear(clearData)
	return keyOf(h, clearData)
}

// parseBlock checks a block's header and framing and returns the header, the header's
// length, the encrypted key data and the MAC.
func parseBlock(block string) (h Header, hl int, encData, gotMAC []byte, err error) {
	h, hl, err = ParseHeader(block)
	if err != nil {
		return Header{}, 0, nil, nil, err
	}
	total, err := decimal(block[1:5])
	if err != nil {
		return Header{}, 0, nil, nil, formatErr("key block length %q is not four decimal digits", block[1:5])
	}
	if total != len(block) {
		return Header{}, 0, nil, nil, formatErr("key block length field says %d characters, the block has %d", total, len(block))
	}
	bs, ml := blockSize(h.Version), macLen(h.Version)
	body := block[hl:]
	if len(body) < 2*(bs+ml) || (len(body)-2*ml)%(2*bs) != 0 {
		return Header{}, 0, nil, nil, formatErr("encrypted key data of %d characters does not fill whole %d-byte blocks", len(body)-2*ml, bs)
	}
	raw, err := hex.DecodeString(body)
	if err != nil {
		return Header{}, 0, nil, nil, formatErr("key data and MAC are not hexadecimal")
	}
	return h, hl, raw[:len(raw)-ml], raw[len(raw)-ml:], nil
}

// unwrapData checks the block and its MAC with the keys keysOf gives for its version and
// returns the header and the whole clear key data.
func unwrapData(block string, keysOf func(v byte) (enc, auth cipher.Block, err error)) (Header, []byte, error) {
	h, hl, encData, gotMAC, err := parseBlock(block)
	if err != nil {
		return Header{}, nil, err
	}
	bs, ml := blockSize(h.Version), macLen(h.Version)
	enc, auth, err := keysOf(h.Version)
	if err != nil {
		return Header{}, nil, err
	}
	clearData := make([]byte, len(encData))
	header := []byte(block[:hl])
	var want []byte
	switch h.Version {
	case 'A', 'C':
		want = mac.CBCMAC(auth, append(header, encData...))[:ml]
		if subtle.ConstantTimeCompare(want, gotMAC) != 1 {
			return Header{}, nil, fmt.Errorf("tr31: %w", ErrMAC)
		}
		cipher.NewCBCDecrypter(enc, header[:8]).CryptBlocks(clearData, encData)
	default:
		cipher.NewCBCDecrypter(enc, gotMAC[:bs]).CryptBlocks(clearData, encData)
		want = mac.CMAC(auth, append(header, clearData...))
		if subtle.ConstantTimeCompare(want[:ml], gotMAC) != 1 {
			clear(clearData)
			return Header{}, nil, fmt.Errorf("tr31: %w", ErrMAC)
		}
	}
	return h, clearData, nil
}

func checkKeyLength(alg byte, n int) error {
	ok := true
	switch alg {
	case 'T':
		ok = n == 16 || n == 24 || n == 8
	case 'D':
		ok = n == 8
	case 'A':
		ok = n == 16 || n == 24 || n == 32
	}
	if !ok {
		return fmt.Errorf("tr31: a %d-byte key for algorithm %c: %w", n, alg, ErrKey)
	}
	return nil
}

// WrapOptions configures [Wrap], which reads it once.
//
// A plain value: safe for concurrent use when not modified.
type WrapOptions struct {
	// Rand supplies the key data's padding. Default crypto/rand.
	Rand io.Reader
	// MaskedKeyLength pads the key data as if the key were this many bytes
	// long, so that the block does not tell, say, a double-length TDES key
	// from a triple-length one (TR-31 key length obfuscation). Default: the
	// key's own length.
	MaskedKeyLength int
}

// Wrap makes a key block of h's version for key under the KBPK. The length
// and block-count fields are computed; a padding block ("PB") is added when
// the optional blocks do not end on a cipher block boundary.
func Wrap(kbpk []byte, h Header, key []byte, opts *WrapOptions) (string, error) {
	var o WrapOptions
	if opts != nil {
		o = *opts
	}
	rand := o.Rand
	if rand == nil {
		rand = crand.Reader
	}
	bs, ml := blockSize(h.Version), macLen(h.Version)
	if bs == 0 {
		return "", fmt.Errorf("tr31: version %q: %w", h.Version, ErrVersion)
	}
	if err := checkKeyLength(h.Algorithm, len(key)); err != nil {
		return "", err
	}
	if len(h.KeyUsage) != 2 || len(h.KeyVersion) != 2 {
		return "", formatErr("key usage and key version must be two characters")
	}
	var opt bytes.Buffer
	blocks := 0
	for _, b := range h.Blocks {
		if b.ID == "PB" {
			continue
		}
		if len(b.ID) != 2 || !printable(b.Data) {
			return "", formatErr("optional block %q", b.ID)
		}
		if l := 4 + len(b.Data); l <= 0xFF {
			fmt.Fprintf(&opt, "%s%02X%s", b.ID, l, b.Data)
		} else {
			fmt.Fprintf(&opt, "%s0004%04X%s", b.ID, 10+len(b.Data), b.Data)
		}
		blocks++
	}
	if r := (fixedHeader + opt.Len()) % bs; r != 0 {
		pad := bs - r
		if pad < 4 {
			pad += bs
		}
		fmt.Fprintf(&opt, "PB%02X%s", pad, strings.Repeat("0", pad-4))
		blocks++
	}
	if blocks > 99 {
		return "", formatErr("%d optional blocks", blocks)
	}
	n := 2 + len(key)
	// One to bs bytes of padding after the (masked) key, as TR-31 does.
	padded := ((2+max(len(key), o.MaskedKeyLength))/bs + 1) * bs
	clearData := make([]byte, padded)
	defer clear(clearData)
	binary.BigEndian.PutUint16(clearData, uint16(8*len(key)))
	copy(clearData[2:], key)
	if _, err := io.ReadFull(rand, clearData[n:]); err != nil {
		return "", fmt.Errorf("tr31: random padding: %w", err)
	}
	total := fixedHeader + opt.Len() + 2*padded + 2*ml
	if total > 9999 {
		return "", formatErr("key block of %d characters", total)
	}
	header := fmt.Sprintf("%c%04d%s%c%c%s%c%02d00%s", h.Version, total, h.KeyUsage, h.Algorithm, h.ModeOfUse, h.KeyVersion, h.Exportability, blocks, opt.String())
	if _, _, err := ParseHeader(header); err != nil {
		return "", err
	}
	enc, auth, err := keys(h.Version, kbpk)
	if err != nil {
		return "", err
	}
	encData := make([]byte, padded)
	var m []byte
	switch h.Version {
	case 'A', 'C':
		cipher.NewCBCEncrypter(enc, []byte(header[:8])).CryptBlocks(encData, clearData)
		m = mac.CBCMAC(auth, append([]byte(header), encData...))[:ml]
	default:
		m = mac.CMAC(auth, append([]byte(header), clearData...))[:ml]
		cipher.NewCBCEncrypter(enc, m[:bs]).CryptBlocks(encData, clearData)
	}
	return header + strings.ToUpper(hex.EncodeToString(encData)+hex.EncodeToString(m)), nil
}
