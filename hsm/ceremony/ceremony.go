package ceremony

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/posd-dev/posd/hsm"
)

// DataKeyID is the id of posd's data-at-rest key (the store's sealer).
const DataKeyID = "data"

// ErrZeroKey means the components combine to a key of all zeros; nothing was loaded.
var ErrZeroKey = errors.New("the components combine to a key of all zeros; nothing was loaded")

// CheckValueError means the combined key's check value is not the one the technician gave;
// nothing was loaded. It unwraps to hsm.ErrCheckValue. Its value is safe for concurrent use.
type CheckValueError struct {
	Want []byte // the check value given
}

func (e *CheckValueError) Error() string {
	return fmt.Sprintf("the combined key's check value is not %X: a component was mistyped or is not from this key; nothing was loaded", e.Want)
}

func (e *CheckValueError) Unwrap() error { return hsm.ErrCheckValue }

// Keys is the key store a ceremony works on: a Module over a token, or over the soft
// backend with the files it is saved in. It is not safe for concurrent use: a ceremony runs
// in one goroutine.
type Keys struct {
	m     *hsm.Module
	where string     // for messages: `token "posd"` or `soft key file /path`
	soft  *SoftFiles // the soft backend's files; nil for a token
}

// OnModule returns the Keys of m, a Module over a token that keeps its own keys; where names
// the token in messages, such as `token "posd"`.
func OnModule(m *hsm.Module, where string) *Keys { return &Keys{m: m, where: where} }

// OpenSoft reads the soft backend's files (keyFile and keyFile + ".keys") and returns Keys
// over a soft backend that holds their keys. Close clears them from memory.
func OpenSoft(keyFile string) (*Keys, error) {
	s := NewSoftFiles(keyFile)
	m, err := s.open()
	if err != nil {
		s.Clear()
		return nil, err
	}
	return &Keys{m: m, where: "soft key file " + keyFile, soft: s}, nil
}

// Module returns the Module the ceremony loads keys into.
func (k *Keys) Module() *hsm.Module { return k.m }

// Where names the key store in messages: `token "posd"` or `soft key file /path`.
func (k *Keys) Where() string { return k.where }

// Close clears the soft backend's keys from memory; a token is the caller's to close.
func (k *Keys) Close() {
	if k.soft != nil {
		k.soft.Clear()
	}
}

// MissingSoftDataKey reports whether the key store is the soft backend's and has no data
// key yet (posd makes a random one at its first start).
func (k *Keys) MissingSoftDataKey() bool {
	return k.soft != nil && k.soft.entries[DataKeyID] == nil
}

// Existing returns the key id describes, or ok false when there is none.
func (k *Keys) Existing(ctx context.Context, id string) (info hsm.KeyInfo, ok bool, err error) {
	info, err = k.m.KeyInfo(ctx, id)
	if errors.Is(err, hsm.ErrUnknownKey) {
		return hsm.KeyInfo{}, false, nil
	}
	return info, err == nil, err
}

// free refuses id when a key holds it and replace is false; it returns the key replace
// would overwrite.
func (k *Keys) free(ctx context.Context, id string, replace bool) (old hsm.KeyInfo, exists bool, err error) {
	old, exists, err = k.Existing(ctx, id)
	if err != nil {
		return hsm.KeyInfo{}, false, err
	}
	if exists && !replace {
		return old, exists, fmt.Errorf("%s already holds key %s; add --replace to overwrite it", k.where, old)
	}
	return old, exists, nil
}

// Import unwraps req.Block under the key block protection key req.KBPKID and stores the key
// as req.ID, after checking that the KBPK is there and is one, and that req.ID is free
// unless req.Replace. It returns the new key, and the key it replaced when exists.
func (k *Keys) Import(ctx context.Context, req hsm.ImportRequest) (info, old hsm.KeyInfo, exists bool, err error) {
	kbpk, ok, err := k.Existing(ctx, req.KBPKID)
	switch {
	case err != nil:
		return info, old, false, fmt.Errorf("KBPK: %w", err)
	case !ok:
		return info, old, false, fmt.Errorf("no key %q in %s to unwrap the block with (posd key list shows the keys; posd key load-kbpk loads one)", req.KBPKID, k.where)
	case kbpk.Usage != hsm.UsageKBPK:
		return info, old, false, fmt.Errorf("key %q in %s is a %v %v key, not a key block protection key", req.KBPKID, k.where, kbpk.Algorithm, kbpk.Usage)
	}
	if old, exists, err = k.free(ctx, req.ID, req.Replace); err != nil {
		return info, old, exists, err
	}
	if info, err = k.m.ImportKeyBlock(ctx, req); err != nil {
		return info, old, exists, err
	}
	if k.soft != nil {
		if err := k.soft.SaveImported(info, req.KBPKID, req.Block); err != nil {
			return info, old, exists, err
		}
	}
	return info, old, exists, nil
}

// CanLoad refuses what Load would refuse of a key id of algorithm alg and usage u before
// its custodians type anything: a role the key does not fit, an id in use without replace.
// It returns the key replace would overwrite.
func (k *Keys) CanLoad(ctx context.Context, id string, alg hsm.Algorithm, u hsm.Usage, replace bool) (old hsm.KeyInfo, exists bool, err error) {
	if err := k.m.FitsRole(id, alg, u); err != nil {
		return old, false, err
	}
	return k.free(ctx, id, replace)
}

// Load combines req.Components (XOR), refuses repeated components and a key of all zeros
// (ErrZeroKey), and loads the key; a check value other than req.CheckValue is a
// *CheckValueError. The components remain the caller's to clear.
func (k *Keys) Load(ctx context.Context, req hsm.LoadRequest) (hsm.KeyInfo, error) {
	n := req.Algorithm.KeyLen()
	for i, c := range req.Components {
		if len(c) != n {
			return hsm.KeyInfo{}, fmt.Errorf("component %d has %d bytes, not %d (%v)", i+1, len(c), n, req.Algorithm)
		}
		if err := Distinct(req.Components[:i+1]); err != nil {
			return hsm.KeyInfo{}, err
		}
	}
	// The combined key is in this process's memory until the backend holds it.
	value := make([]byte, n)
	defer clear(value)
	for _, c := range req.Components {
		for i := range value {
			value[i] ^= c[i]
		}
	}
	if subtle.ConstantTimeCompare(value, make([]byte, len(value))) == 1 {
		return hsm.KeyInfo{}, ErrZeroKey
	}
	info, err := k.m.LoadKey(ctx, req)
	if errors.Is(err, hsm.ErrCheckValue) {
		return info, &CheckValueError{Want: req.CheckValue}
	}
	if err != nil {
		return info, err
	}
	if k.soft != nil {
		if err := k.soft.save(req.ID, &softEntry{alg: req.Algorithm, usage: req.Usage, value: append([]byte(nil), value...), ksn: req.KSN}); err != nil {
			return info, err
		}
	}
	return info, nil
}

// ParseComponent decodes component i (counted from 1) of a key of algorithm alg from what a
// custodian typed: hex digits, spaces, tabs and a carriage return allowed. It refuses a
// component of the wrong length or of all zeros. Errors never hold what was typed; line
// remains the caller's to clear, the component returned is the caller's to clear.
func ParseComponent(line []byte, i int, alg hsm.Algorithm) ([]byte, error) {
	digits := make([]byte, 0, len(line))
	defer func() { clear(digits) }()
	for _, b := range line {
		if b != ' ' && b != '\t' && b != '\r' {
			digits = append(digits, b)
		}
	}
	c := make([]byte, hex.DecodedLen(len(digits)))
	if _, err := hex.Decode(c, digits); err != nil || len(digits)%2 != 0 {
		clear(c)
		return nil, fmt.Errorf("component %d is not hexadecimal", i)
	}
	if len(c) != alg.KeyLen() {
		clear(c)
		return nil, fmt.Errorf("component %d has %d hex digits, not %d (%v)", i, len(digits), 2*alg.KeyLen(), alg)
	}
	if subtle.ConstantTimeCompare(c, make([]byte, len(c))) == 1 {
		return nil, fmt.Errorf("component %d is all zeros", i)
	}
	return c, nil
}

// Distinct refuses the last of comps when it equals an earlier one: each custodian must hold
// a different component.
func Distinct(comps [][]byte) error {
	if len(comps) == 0 {
		return nil
	}
	i, c := len(comps), comps[len(comps)-1]
	for j, p := range comps[:i-1] {
		if subtle.ConstantTimeCompare(p, c) == 1 {
			return fmt.Errorf("component %d is the same as component %d: each custodian must hold a different one", i, j+1)
		}
	}
	return nil
}
