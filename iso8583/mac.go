package iso8583

// Message authentication codes: which field carries the MAC, which bytes it covers, how a
// packed message gets one and how a received one is checked. The key never comes here: a
// MACer (an hsm.Module) computes and checks MACs by key id.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moov-io/iso8583/field"
)

// MACAlgorithm is how a dialect's MACs are computed. The key's own type must match it: the
// MACer is asked for "a MAC under key id" and computes the algorithm of that key. A
// value, safe for concurrent use.
type MACAlgorithm string

// MAC algorithms a dialect file may name.
const (
	// MACRetail is ISO 9797-1 MAC algorithm 3 with DES and padding method 1, under a
	// double-length TDES key: ANSI X9.19's retail MAC. A file may also write "x9.19".
	MACRetail MACAlgorithm = "retail"
	// MACAESCMAC is CMAC (NIST SP 800-38B) under an AES key.
	MACAESCMAC MACAlgorithm = "aes-cmac"
)

// DefaultMACFailureCode is the response code a host of a MAC dialect answers a request
// whose MAC is missing or wrong with, unless the dialect's "failure_code" says otherwise.
const DefaultMACFailureCode = "96"

// Errors of MAC checks, wrapped with the field and the reason.
var (
	// ErrMACMissing: a message that must carry a MAC has none.
	ErrMACMissing = errors.New("iso8583: MAC missing")
	// ErrMACInvalid: the MAC does not verify under the key, or could not be checked
	// (the MACer's error is wrapped too).
	ErrMACInvalid = errors.New("iso8583: MAC does not verify")
)

// MACer computes and checks MACs with keys it holds, named by id. *hsm.Module implements
// it; the key stays in its backend. VerifyMAC returns nil when mac is the leftmost bytes of
// the MAC of data. Implementations must be safe for concurrent use: the client calls
// them from every sending goroutine.
type MACer interface {
	MAC(ctx context.Context, keyID string, data []byte) ([]byte, error)
	VerifyMAC(ctx context.Context, keyID string, data, mac []byte) error
}

// MACSpec is a dialect's MAC: the "mac" object of its file. A MACSpec from [ParseDialect]
// has been checked against the dialect's spec; it must not be changed once in use, and is
// then safe for concurrent use.
type MACSpec struct {
	// Field is 64 or 128. With 64, a message with a secondary bitmap (a field above 64)
	// carries its MAC in field 128 instead, so that the MAC is always the last field (ISO
	// 8583:1987); the dialect must then define field 128 like 64. With 128, every MACed
	// message carries it in 128.
	Field int
	// Algorithm: MACRetail or MACAESCMAC.
	Algorithm MACAlgorithm
	// Length is the MAC's length in bytes, the MAC field's fixed length. Default 8
	// (4 for DUKPT MACs).
	Length int
	// Covers is nil for the standard: the packed message from the MTI up to, not including,
	// the MAC field, with the MAC field's bitmap bit set. Otherwise the fields whose packed
	// values (length prefix included, as on the wire), in this order, are MACed; absent
	// fields are skipped (Elavon's style).
	Covers []int
	// MTIs are the requests that carry a MAC, and whose responses must carry one. nil:
	// every request.
	MTIs []string
	// FailureCode is the response code a host answers a bad request MAC with. Default
	// DefaultMACFailureCode.
	FailureCode string
}

// macFile is the "mac" object of a dialect file.
type macFile struct {
	Field       int             `json:"field"`
	Algorithm   string          `json:"algorithm"`
	Length      int             `json:"length"`
	Covers      json.RawMessage `json:"covers"`
	MTIs        []string        `json:"mtis"`
	FailureCode string          `json:"failure_code"`
}

// parseMAC reads a dialect file's "mac" object and checks it against spec.
func parseMAC(raw json.RawMessage, spec *MessageSpec) (*MACSpec, error) {
	bad := func(setting string, format string, args ...any) error {
		return &DialectError{Setting: "mac" + setting, Err: fmt.Errorf(format, args...)}
	}
	var f macFile
	if err := decodeStrict(raw, &f); err != nil {
		return nil, &DialectError{Setting: "mac", Err: err}
	}
	m := &MACSpec{Field: f.Field, Length: f.Length, FailureCode: f.FailureCode}
	switch f.Algorithm {
	case "retail", "x9.19", "X9.19":
		m.Algorithm = MACRetail
	case "aes-cmac":
		m.Algorithm = MACAESCMAC
	case "":
		return nil, bad(".algorithm", `required: "retail" (ISO 9797-1 algorithm 3, X9.19; TDES) or "aes-cmac"`)
	default:
		return nil, bad(".algorithm", `unknown algorithm %q (want "retail", "x9.19" or "aes-cmac")`, f.Algorithm)
	}
	if m.Length == 0 {
		m.Length = 8
	}
	if m.Length < 4 || m.Length > 16 || m.Algorithm == MACRetail && m.Length > 8 {
		return nil, bad(".length", "%d bytes: want 4 to 8 (retail) or 4 to 16 (aes-cmac)", m.Length)
	}
	if m.Field != 64 && m.Field != 128 {
		return nil, bad(".field", "%d: the MAC field is 64 or 128", m.Field)
	}
	if err := checkMACField(spec, m.Field, m.Length); err != nil {
		return nil, bad(".field", "%v", err)
	}
	if m.Field == 64 {
		if _, ok := spec.Fields[128]; ok {
			if err := checkMACField(spec, 128, m.Length); err != nil {
				return nil, bad(".field", "messages with a secondary bitmap carry their MAC in field 128: %v", err)
			}
		}
	}
	switch c := bytes.TrimSpace(f.Covers); {
	case len(c) == 0 || string(c) == `"message"`:
	case c[0] == '[':
		if err := json.Unmarshal(c, &m.Covers); err != nil {
			return nil, bad(".covers", "a list of field numbers: %v", err)
		}
		if len(m.Covers) == 0 {
			return nil, bad(".covers", `an empty list MACs nothing: list fields, or write "message"`)
		}
		for i, id := range m.Covers {
			switch {
			case id < 2 || id > maxField || id == 65:
				return nil, bad(".covers", "%d is not a data field (2 to 128, not 65)", id)
			case id == 64 || id == 128:
				return nil, bad(".covers", "field %d carries a MAC and cannot be MACed", id)
			case slices.Contains(m.Covers[:i], id):
				return nil, bad(".covers", "field %d twice", id)
			}
			if _, ok := spec.Fields[id]; !ok {
				return nil, bad(".covers", "field %d is not defined in \"fields\"", id)
			}
		}
	default:
		return nil, bad(".covers", `want "message" or a list of field numbers, e.g. [2, 3, 4, 11]`)
	}
	if f.MTIs != nil && len(f.MTIs) == 0 {
		return nil, bad(".mtis", "empty: leave it out to MAC every request")
	}
	builtIn := ruleTable()
	for _, mti := range f.MTIs {
		if _, ok := builtIn[mti]; !ok {
			return nil, bad(".mtis", "%q is not a request posd sends", mti)
		}
	}
	m.MTIs = slices.Clone(f.MTIs)
	if m.FailureCode == "" {
		m.FailureCode = DefaultMACFailureCode
	}
	if err := checkMACFailureCode(spec, m.FailureCode); err != nil {
		return nil, bad(".failure_code", "%v", err)
	}
	return m, nil
}

// checkMACField checks that spec defines field id as a fixed-length binary field of n bytes.
func checkMACField(spec *MessageSpec, id, n int) error {
	f, ok := spec.Fields[id]
	if !ok {
		return fmt.Errorf("field %d is not defined in \"fields\"", id)
	}
	c, ok := f.Spec().Packer.(codec)
	if _, bin := f.(*field.Binary); !ok || !bin || c.class != classB {
		return fmt.Errorf("field %d must be binary (type Binary or Hex) to carry a MAC", id)
	}
	if !c.fixed() || f.Spec().Length != n {
		return fmt.Errorf("field %d must be fixed length %d (the MAC's length in bytes), not %s %d", id, n, lengthKind(c), f.Spec().Length)
	}
	return nil
}

func lengthKind(c codec) string {
	if c.fixed() {
		return "fixed"
	}
	return "variable up to"
}

func checkMACFailureCode(spec *MessageSpec, rc string) error {
	f, ok := spec.Fields[39]
	if !ok {
		return errors.New("field 39 is not defined")
	}
	if _, err := f.Spec().Packer.Pack([]byte(rc), f.Spec()); err != nil || len(rc) != 2 {
		return fmt.Errorf("%q is not a response code of 2 characters", rc)
	}
	return nil
}

// Carries reports whether a request of mti, or a response to one, carries a MAC.
func (m *MACSpec) Carries(mti string) bool {
	if m == nil {
		return false
	}
	if len(mti) == 4 && mti[2] >= '0' && mti[2] <= '9' && (mti[2]-'0')%2 == 1 {
		mti = mti[:2] + string(mti[2]-1) + mti[3:] // a response: its request's MTI
	}
	return m.MTIs == nil || slices.Contains(m.MTIs, mti)
}

// fieldFor returns the field that carries msg's MAC.
func (m *MACSpec) fieldFor(msg *Message) int {
	if m.Field == 128 {
		return 128
	}
	for id := range msg.Present() {
		if id > 64 {
			return 128
		}
	}
	return 64
}

// macCodec returns the codec and spec of field id of spec.
func macCodec(spec *MessageSpec, id int) (codec, *field.Spec, error) {
	f, ok := spec.Fields[id]
	if !ok {
		return codec{}, nil, &FieldError{Field: id, Op: "mac", Err: fmt.Errorf("%w: the MAC goes here (a field above 64 is present), but the dialect does not define field 128", ErrUnsupportedField)}
	}
	c, _ := f.Spec().Packer.(codec)
	return c, f.Spec(), nil
}

// macData returns what the MAC of msg covers: the covered fields' packed values, or
// packed[:end], the message up to its MAC field.
func (m *MACSpec) macData(msg *Message, packed []byte, end int) ([]byte, error) {
	if m.Covers == nil {
		return packed[:end], nil
	}
	var data []byte
	for _, id := range m.Covers {
		if !msg.Has(id) {
			continue
		}
		var err error
		if data, err = msg.appendField(data, id); err != nil {
			return nil, &FieldError{Field: id, Op: "mac", Err: err}
		}
	}
	return data, nil
}

// SignMessage packs msg with its MAC, computed by k under keyID, in the MAC field. msg must
// be on the dialect's spec and is not changed. A message whose MTI the spec does not MAC is
// packed as it is. Errors name the field; no key or MAC is in them.
func (m *MACSpec) SignMessage(ctx context.Context, k MACer, keyID string, msg *Message) ([]byte, error) {
	mti, err := msg.GetMTI()
	if err != nil || !m.Carries(mti) {
		return Pack(msg)
	}
	id := m.fieldFor(msg)
	c, fs, err := macCodec(msg.GetSpec(), id)
	if err != nil {
		return nil, err
	}
	// The MAC field holds zeros while the message is packed, so that its bitmap bit is set
	// and its place is known: the last wire bytes.
	out, err := convert(msg, msg.GetSpec())
	if err != nil {
		return nil, err
	}
	if err := out.BinaryField(id, make([]byte, m.Length)); err != nil {
		return nil, &FieldError{Field: id, Op: "mac", Err: err}
	}
	packed, err := Pack(out)
	if err != nil {
		return nil, err
	}
	end := len(packed) - c.wireLen(m.Length)
	data, err := m.macData(out, packed, end)
	if err != nil {
		return nil, err
	}
	mac, err := k.MAC(ctx, keyID, data)
	if err != nil {
		return nil, &FieldError{Field: id, Op: "mac", Err: err}
	}
	if len(mac) < m.Length {
		return nil, &FieldError{Field: id, Op: "mac", Err: fmt.Errorf("the key gives %d-byte MACs; the dialect wants %d", len(mac), m.Length)}
	}
	enc, err := c.Pack(mac[:m.Length], fs)
	if err != nil {
		return nil, &FieldError{Field: id, Op: "mac", Err: err}
	}
	copy(packed[end:], enc)
	return packed, nil
}

// VerifyMessage checks the MAC of msg, unpacked from raw (the message as it came, without
// framing), with k under keyID. A message whose MTI the spec does not MAC passes. The error
// wraps ErrMACMissing or ErrMACInvalid (or the MACer's error) and names the field.
func (m *MACSpec) VerifyMessage(ctx context.Context, k MACer, keyID string, msg *Message, raw []byte) error {
	mti, err := msg.GetMTI()
	if err != nil || !m.Carries(mti) {
		return nil
	}
	id := m.fieldFor(msg)
	mac, ok := msg.Bytes(id)
	if !ok {
		return &FieldError{Field: id, Op: "verify", Err: ErrMACMissing}
	}
	if len(mac) != m.Length {
		return &FieldError{Field: id, Op: "verify", Err: fmt.Errorf("%w: a %d-byte MAC, want %d", ErrMACInvalid, len(mac), m.Length)}
	}
	c, fs, err := macCodec(msg.GetSpec(), id)
	if err != nil {
		return err
	}
	end := len(raw) - c.wireLen(m.Length)
	enc, err := c.Pack(mac, fs)
	if err != nil || end < 0 || !bytes.Equal(raw[end:], enc) {
		return &FieldError{Field: id, Op: "verify", Err: fmt.Errorf("%w: the MAC field is not the message's last", ErrMACInvalid)}
	}
	data, err := m.macData(msg, raw, end)
	if err != nil {
		return err
	}
	if err := k.VerifyMAC(ctx, keyID, data, mac); err != nil {
		return &FieldError{Field: id, Op: "verify", Err: fmt.Errorf("%w: %w", ErrMACInvalid, err)}
	}
	return nil
}

// String describes the MAC for logs: field, algorithm, length and what it covers.
func (m *MACSpec) String() string {
	if m == nil {
		return "no MAC"
	}
	covers := "message"
	if m.Covers != nil {
		s := make([]string, len(m.Covers))
		for i, id := range m.Covers {
			s[i] = strconv.Itoa(id)
		}
		covers = "fields " + strings.Join(s, ",")
	}
	return fmt.Sprintf("%s MAC of %d bytes in field %d over the %s", m.Algorithm, m.Length, m.Field, covers)
}
