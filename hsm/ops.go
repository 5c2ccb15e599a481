package hsm

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/posd-dev/posd/hsm/tr31"
	"github.com/posd-dev/posd/terminal/card"
)

// sealVersion is the first byte of every sealed value: the format of what follows (a 12-byte
// nonce, then the AES-GCM ciphertext and tag). It is also authenticated, as the first byte
// of the associated data.
const sealVersion = 0x01

const (
	nonceLen = 12
	tagLen   = 16
)

// call runs f with the operations lock held and the operation timeout applied.
func (m *Module) call(ctx context.Context, f func(ctx context.Context) error) error {
	select {
	case m.opsSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-m.opsSem }()
	ctx, cancel := context.WithTimeout(ctx, m.opts.OpTimeout)
	defer cancel()
	return f(ctx)
}

func unsupported(what string) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, what)
}

// KeyInfo describes the key id: algorithm, usage, check value and, for a DUKPT initial key,
// its KSN and the transactions left.
func (m *Module) KeyInfo(ctx context.Context, id string) (KeyInfo, error) {
	d, ok := m.drv.(KeyDescriber)
	if !ok {
		return KeyInfo{}, unsupported("the backend cannot describe its keys")
	}
	if err := validID(id); err != nil {
		return KeyInfo{}, err
	}
	var info KeyInfo
	err := m.call(ctx, func(ctx context.Context) error {
		var err error
		info, err = d.KeyInfo(ctx, id)
		return err
	})
	return info, err
}

// CheckValue returns the check value of key id: legacy (3 bytes) for TDES, CMAC (5 bytes)
// for AES.
func (m *Module) CheckValue(ctx context.Context, id string) (CheckValue, error) {
	info, err := m.KeyInfo(ctx, id)
	m.audit(AuditEvent{Op: "check-value", KeyID: id, CheckValue: info.CheckValue.String()}, err)
	return info.CheckValue, err
}

// macAlgorithm is the policy: the retail MAC for double-length TDES, CMAC for AES and
// triple-length TDES.
func macAlgorithm(a Algorithm) MACAlgorithm {
	if a == TDES2 {
		return MACRetail
	}
	return MACCMAC
}

// MAC returns the MAC of data (an ISO 8583 message up to its MAC field) under key keyID
// ("" selects Options.MACKeyID), truncated to Options.MACLength bytes. The algorithm follows
// from the key: ISO 9797-1 algorithm 3 for a double-length TDES key, CMAC otherwise.
func (m *Module) MAC(ctx context.Context, keyID string, data []byte) ([]byte, error) {
	if keyID == "" {
		keyID = m.opts.MACKeyID
	}
	ev := AuditEvent{Op: "mac", KeyID: keyID}
	out, err := m.mac(ctx, keyID, data)
	return out, m.audit(ev, err)
}

func (m *Module) mac(ctx context.Context, keyID string, data []byte) ([]byte, error) {
	mc, ok := m.drv.(MACer)
	if !ok {
		return nil, unsupported("the backend cannot compute MACs")
	}
	if len(data) > m.opts.MaxDataSize {
		return nil, fmt.Errorf("hsm: MAC over %d bytes: more than the %d allowed", len(data), m.opts.MaxDataSize)
	}
	info, err := m.KeyInfo(ctx, keyID)
	if err != nil {
		return nil, err
	}
	if info.Usage != UsageMAC {
		return nil, fmt.Errorf("%w: key %q is a %v key, not a MAC key", ErrKeyUsage, keyID, info.Usage)
	}
	var out []byte
	err = m.call(ctx, func(ctx context.Context) error {
		var err error
		out, err = mc.MAC(ctx, MACRequest{KeyID: keyID, Algorithm: macAlgorithm(info.Algorithm), Data: data})
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(out) < m.opts.MACLength {
		return nil, fmt.Errorf("%w: backend returned a %d-byte MAC", ErrDevice, len(out))
	}
	return out[:m.opts.MACLength], nil
}

// VerifyMAC checks mac (at least 4 bytes, at most the Module's MACLength) against the MAC of
// data under keyID, in constant time. A mismatch wraps ErrMACMismatch.
func (m *Module) VerifyMAC(ctx context.Context, keyID string, data, mac []byte) error {
	if keyID == "" {
		keyID = m.opts.MACKeyID
	}
	ev := AuditEvent{Op: "verify-mac", KeyID: keyID}
	if len(mac) < 4 || len(mac) > m.opts.MACLength {
		return m.audit(ev, fmt.Errorf("hsm: verify MAC: a %d-byte MAC; want 4 to %d", len(mac), m.opts.MACLength))
	}
	want, err := m.mac(ctx, keyID, data)
	if err == nil && subtle.ConstantTimeCompare(want[:len(mac)], mac) != 1 {
		err = ErrMACMismatch
	}
	return m.audit(ev, err)
}

// Seal encrypts plaintext for storage under the data key keyID ("" selects
// Options.DataKeyID) with AES-GCM, binding it to aad (the record id), and returns
// version || nonce || ciphertext || tag. Nonces are random; a key should seal fewer than
// 2^32 values.
func (m *Module) Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error) {
	if keyID == "" {
		keyID = m.opts.DataKeyID
	}
	ev := AuditEvent{Op: "seal", KeyID: keyID}
	out, err := m.seal(ctx, keyID, plaintext, aad)
	return out, m.audit(ev, err)
}

func (m *Module) dataKey(ctx context.Context, keyID string, n int) (Sealer, error) {
	s, ok := m.drv.(Sealer)
	if !ok {
		return nil, unsupported("the backend cannot seal data")
	}
	if n > m.opts.MaxDataSize {
		return nil, fmt.Errorf("hsm: %d bytes of data: more than the %d allowed", n, m.opts.MaxDataSize)
	}
	info, err := m.KeyInfo(ctx, keyID)
	if err != nil {
		return nil, err
	}
	if info.Usage != UsageData || !info.Algorithm.IsAES() {
		return nil, fmt.Errorf("%w: key %q is a %v %v key, not an AES data key", ErrKeyUsage, keyID, info.Algorithm, info.Usage)
	}
	return s, nil
}

func (m *Module) seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error) {
	s, err := m.dataKey(ctx, keyID, len(plaintext))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, nonceLen)
	if _, err := io.ReadFull(m.opts.Rand, nonce); err != nil {
		return nil, fmt.Errorf("hsm: seal: nonce: %w", err)
	}
	var ct []byte
	err = m.call(ctx, func(ctx context.Context) error {
		var err error
		ct, err = s.Seal(ctx, keyID, nonce, plaintext, sealAAD(aad))
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(ct) != len(plaintext)+tagLen {
		return nil, fmt.Errorf("%w: backend sealed %d bytes into %d", ErrDevice, len(plaintext), len(ct))
	}
	out := make([]byte, 0, 1+nonceLen+len(ct))
	out = append(out, sealVersion)
	out = append(out, nonce...)
	return append(out, ct...), nil
}

func sealAAD(aad []byte) []byte {
	return append([]byte{sealVersion}, aad...)
}

// Open reverses Seal: it returns the plaintext of sealed under keyID ("" selects
// Options.DataKeyID) if it was sealed for aad and not altered, and otherwise an error
// wrapping ErrOpen.
func (m *Module) Open(ctx context.Context, keyID string, sealed, aad []byte) ([]byte, error) {
	if keyID == "" {
		keyID = m.opts.DataKeyID
	}
	ev := AuditEvent{Op: "open", KeyID: keyID}
	out, err := m.open(ctx, keyID, sealed, aad)
	return out, m.audit(ev, err)
}

func (m *Module) open(ctx context.Context, keyID string, sealed, aad []byte) ([]byte, error) {
	s, err := m.dataKey(ctx, keyID, len(sealed))
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+nonceLen+tagLen {
		return nil, fmt.Errorf("%w: %d bytes is shorter than any sealed value", ErrOpen, len(sealed))
	}
	if sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrOpen, sealed[0])
	}
	var pt []byte
	err = m.call(ctx, func(ctx context.Context) error {
		var err error
		pt, err = s.Open(ctx, keyID, sealed[1:1+nonceLen], sealed[1+nonceLen:], sealAAD(aad))
		return err
	})
	if err != nil {
		return nil, err
	}
	return pt, nil
}

// TranslatePIN re-encrypts pin, received for pan, from key fromKeyID (a DUKPT BDK, with the
// KSN the PIN carries, or a static PIN key) to the static PIN key toKeyID, inside the
// backend: the acquirer's step between the terminal's key and the next zone's. The new
// format follows from the destination key (4 for AES, 0 for TDES). PCI PIN rules hold: only
// formats 0, 3 and 4 are translated, and the PAN cannot change.
func (m *Module) TranslatePIN(ctx context.Context, pin EncryptedPIN, pan card.PAN, fromKeyID, toKeyID string) (EncryptedPIN, error) {
	ev := AuditEvent{Op: "translate-pin", KeyID: toKeyID, MaskedPAN: pan.Masked(), KSN: pin.KSNHex()}
	tr, ok := m.drv.(PINTranslator)
	if !ok {
		return EncryptedPIN{}, m.audit(ev, unsupported("the backend cannot translate PIN blocks"))
	}
	if pan.IsZero() || pin.IsZero() {
		return EncryptedPIN{}, m.audit(ev, errors.New("hsm: translate PIN: a PIN block and a PAN are needed"))
	}
	if f := pin.Format(); f != FormatISO0 && f != FormatISO3 && f != FormatISO4 {
		return EncryptedPIN{}, m.audit(ev, fmt.Errorf("%w: %v blocks are not translated (PCI PIN: formats 0, 3 and 4 only)", ErrKeyUsage, f))
	}
	from, err := m.KeyInfo(ctx, fromKeyID)
	if err != nil {
		return EncryptedPIN{}, m.audit(ev, err)
	}
	to, err := m.KeyInfo(ctx, toKeyID)
	if err != nil {
		return EncryptedPIN{}, m.audit(ev, err)
	}
	if from.Usage != UsageBDK && from.Usage != UsagePIN {
		return EncryptedPIN{}, m.audit(ev, fmt.Errorf("%w: key %q is a %v key, not a BDK or PIN key", ErrKeyUsage, fromKeyID, from.Usage))
	}
	if to.Usage != UsagePIN {
		return EncryptedPIN{}, m.audit(ev, fmt.Errorf("%w: key %q is a %v key, not a PIN key", ErrKeyUsage, toKeyID, to.Usage))
	}
	format := FormatISO0
	if to.Algorithm.IsAES() {
		format = FormatISO4
	}
	var out EncryptedPIN
	err = m.call(ctx, func(ctx context.Context) error {
		var err error
		out, err = tr.TranslatePIN(ctx, TranslateRequest{PIN: pin, PAN: pan, FromKeyID: fromKeyID, ToKeyID: toKeyID, ToFormat: format})
		return err
	})
	if err == nil && out.Format() != format {
		err = fmt.Errorf("%w: backend returned %v, asked for %v", ErrDevice, out.Format(), format)
	}
	if err != nil {
		return EncryptedPIN{}, m.audit(ev, err)
	}
	m.audit(ev, nil)
	return out, nil
}

// LoadKey loads a key from clear components (a key ceremony), checking it against the
// expected check value if one is given. The components never leave the backend's control
// again; the returned KeyInfo carries the check value to show the technician.
//
// The ids the Module uses itself take only keys that can do that job: Options.DataKeyID an
// AES data key, MACKeyID a MAC key, PINKeyID a PIN key or DUKPT initial key. Another key
// for one of them is refused with ErrKeyUsage, naming the id's use, and nothing is stored.
func (m *Module) LoadKey(ctx context.Context, req LoadRequest) (KeyInfo, error) {
	ev := AuditEvent{Op: "load-key", KeyID: req.ID}
	l, ok := m.drv.(KeyLoader)
	if !ok {
		return KeyInfo{}, m.audit(ev, unsupported("the backend cannot load keys"))
	}
	if err := validID(req.ID); err != nil {
		return KeyInfo{}, m.audit(ev, err)
	}
	if len(req.Components) == 0 {
		return KeyInfo{}, m.audit(ev, errors.New("hsm: load key: no components"))
	}
	if err := m.FitsRole(req.ID, req.Algorithm, req.Usage); err != nil {
		return KeyInfo{}, m.audit(ev, err)
	}
	var info KeyInfo
	err := m.call(ctx, func(ctx context.Context) error {
		var err error
		info, err = l.LoadKey(ctx, req)
		return err
	})
	ev.CheckValue = info.CheckValue.String()
	return info, m.audit(ev, err)
}

// ImportKeyBlock imports a TR-31 key block under the key block protection key req.KBPKID.
// The key's usage and algorithm come from the block's header. A block for one of the ids
// the Module uses (Options.DataKeyID, MACKeyID, PINKeyID) whose header does not fit that
// use is refused, before the backend sees it, with ErrKeyUsage (see LoadKey).
func (m *Module) ImportKeyBlock(ctx context.Context, req ImportRequest) (KeyInfo, error) {
	ev := AuditEvent{Op: "import-key-block", KeyID: req.ID}
	im, ok := m.drv.(KeyBlockImporter)
	if !ok {
		return KeyInfo{}, m.audit(ev, unsupported("the backend cannot import key blocks"))
	}
	if err := validID(req.ID); err != nil {
		return KeyInfo{}, m.audit(ev, err)
	}
	if err := validID(req.KBPKID); err != nil {
		return KeyInfo{}, m.audit(ev, fmt.Errorf("hsm: KBPK: %w", err))
	}
	if m.hasRole(req.ID) {
		h, _, err := tr31.ParseHeader(req.Block)
		if err != nil {
			return KeyInfo{}, m.audit(ev, fmt.Errorf("hsm: key block: %w", err))
		}
		u, err := tr31Usage(h)
		if err != nil {
			return KeyInfo{}, m.audit(ev, err)
		}
		what := fmt.Sprintf("the block's key of usage %s (%s), algorithm %c", h.KeyUsage, tr31.UsageName(h.KeyUsage), h.Algorithm)
		if err := m.fitsRole(req.ID, h.Algorithm == 'A', u, what); err != nil {
			return KeyInfo{}, m.audit(ev, err)
		}
	}
	var info KeyInfo
	err := m.call(ctx, func(ctx context.Context) error {
		var err error
		info, err = im.ImportKeyBlock(ctx, req)
		return err
	})
	ev.CheckValue = info.CheckValue.String()
	return info, m.audit(ev, err)
}

// Keys describes every key the backend holds, sorted by id: algorithm, usage and check
// value (and a DUKPT key's KSN), never a key's value.
func (m *Module) Keys(ctx context.Context) ([]KeyInfo, error) {
	l, ok := m.drv.(KeyLister)
	if !ok {
		return nil, unsupported("the backend cannot list its keys")
	}
	var out []KeyInfo
	err := m.call(ctx, func(ctx context.Context) error {
		var err error
		out, err = l.Keys(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b KeyInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// FitsRole reports whether a key of algorithm a and usage u may be stored under id, as
// LoadKey and ImportKeyBlock will decide: nil, or an error wrapping ErrKeyUsage that names
// what the Module uses id for. A key ceremony asks it before custodians type components.
func (m *Module) FitsRole(id string, a Algorithm, u Usage) error {
	return m.fitsRole(id, a.IsAES(), u, fmt.Sprintf("a key of usage %v, algorithm %v", u, a))
}

// hasRole reports whether the Module uses key id for an operation of its own.
func (m *Module) hasRole(id string) bool {
	return id == m.opts.DataKeyID || id == m.opts.MACKeyID || id == m.opts.PINKeyID
}

// fitsRole checks a key about to be stored under id against what the Module uses that id
// for: the data key (Options.DataKeyID) must be an AES data key, the MAC key (MACKeyID) a
// MAC key, the PIN key (PINKeyID) a PIN key or DUKPT initial key. A key that could never
// do its id's job is refused before anything is stored. isAES says whether the key is an
// AES key; what describes it for the error. Other ids take any key.
func (m *Module) fitsRole(id string, isAES bool, u Usage, what string) error {
	var role, want string
	switch id {
	case m.opts.DataKeyID:
		if isAES && u == UsageData {
			return nil
		}
		role, want = "the data key, which Seal and Open use", "an AES data encryption key (TR-31 usage D0, algorithm A)"
	case m.opts.MACKeyID:
		if u == UsageMAC {
			return nil
		}
		role, want = "the MAC key, which MAC and VerifyMAC use", "a MAC key (TR-31 usage "+tr31UsageCode(UsageMAC)+")"
	case m.opts.PINKeyID:
		if u == UsagePIN || u == UsageDUKPT {
			return nil
		}
		role, want = "the PIN key, which PINBlock uses", "a PIN key or a DUKPT initial key (TR-31 usage P0 or B1)"
	default:
		return nil
	}
	return fmt.Errorf("%w: key id %q is %s: it must be %s, not %s", ErrKeyUsage, id, role, want, what)
}

// validID checks a key id: 1 to 64 letters, digits, '.', '_' or '-', so that ids are safe in
// logs, file names and token labels.
func validID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("hsm: a key id must be 1 to 64 characters, got %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errors.New("hsm: a key id may hold only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}
