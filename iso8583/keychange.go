package iso8583

// Working-key exchange: the 0800/0810 key change of a dialect's "key_exchange" object.
//
// No public processor spec lays out an 0800 key change (REFERENCE-turn2.md §3), so the
// field that carries the key and the field of its check value are the dialect's choice.
// posd's exchange is two round trips:
//
//  1. 0800 with field 70 = the key's code (161 PIN, 162 MAC, 163 data by default) and no
//     check value: "send me a new key". The 0810 answers 00 with the new key in the key
//     field (a TR-31 block under the KEK) and its check value in the check value field.
//  2. 0800 with the same code and the new key's check value in the check value field:
//     "I hold the key whose check value this is: switch". The host answers 00 and uses the
//     new key from the next message; so does the terminal. Until then both keep the old one.
//
// Both 0800s and their 0810s are MACed (when the dialect MACs 0800s) under the old key.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// KeyKind names a working key. It is a value, safe for concurrent use.
type KeyKind string

// Working keys.
const (
	KeyPIN  KeyKind = "pin"
	KeyMAC  KeyKind = "mac"
	KeyData KeyKind = "data"
)

// KeyForm is how the key travels in the 0810. It is a value, safe for concurrent use.
type KeyForm string

// Key forms.
const (
	// KeyFormTR31 is a TR-31 key block under the KEK, in the key field as text.
	KeyFormTR31 KeyForm = "tr31"
	// KeyFormLegacy is the key encrypted under the KEK (TDES ECB), as hex digits, its
	// check value in its own field. posd refuses it at dialect load ([ErrLegacyKeyForm]):
	// it is named only so that the refusal can say why.
	KeyFormLegacy KeyForm = "legacy"
)

// Default network management codes of key changes.
const (
	NMNewPINKey  = "161"
	NMNewMACKey  = "162"
	NMNewDataKey = "163"
)

// KeyExchange is a dialect's "key_exchange" object: the codes of key changes and the
// fields that carry the key and its check value. One from [ParseDialect] has been checked
// against the dialect's spec; it must not be changed once in use, and is then safe for
// concurrent use.
type KeyExchange struct {
	// Codes are field 70's value per key. Default 161 PIN, 162 MAC, 163 data.
	Codes map[KeyKind]string
	// Form is how the 0810 carries the key. Default KeyFormTR31.
	Form KeyForm
	// KeyField carries the key in the 0810 (a text field of the dialect). Required.
	KeyField int
	// KCVField carries the key's check value, in hex: the host's in the 0810, the
	// terminal's in the confirming 0800. Required.
	KCVField int
}

// Code returns field 70's value for a change of key k, or "" when the dialect has none.
func (x *KeyExchange) Code(k KeyKind) string { return x.Codes[k] }

// Kind returns the key a field 70 code changes.
func (x *KeyExchange) Kind(code string) (KeyKind, bool) {
	for k, c := range x.Codes {
		if c == code {
			return k, true
		}
	}
	return "", false
}

// String describes the exchange in one line.
func (x *KeyExchange) String() string {
	return fmt.Sprintf("key change %s/%s/%s, %s key in field %d, check value in field %d",
		x.Codes[KeyPIN], x.Codes[KeyMAC], x.Codes[KeyData], x.Form, x.KeyField, x.KCVField)
}

// keyExchangeFile is the "key_exchange" object of a dialect file.
type keyExchangeFile struct {
	Codes    map[string]string `json:"codes"`
	Form     string            `json:"form"`
	KeyField int               `json:"key_field"`
	KCVField int               `json:"kcv_field"`
}

// parseKeyExchange reads a dialect file's "key_exchange" object and checks it against spec.
func parseKeyExchange(raw json.RawMessage, spec *MessageSpec) (*KeyExchange, error) {
	bad := func(setting, format string, args ...any) error {
		return &DialectError{Setting: "key_exchange" + setting, Err: fmt.Errorf(format, args...)}
	}
	var f keyExchangeFile
	if err := decodeStrict(raw, &f); err != nil {
		return nil, &DialectError{Setting: "key_exchange", Err: err}
	}
	x := &KeyExchange{Codes: map[KeyKind]string{KeyPIN: NMNewPINKey, KeyMAC: NMNewMACKey, KeyData: NMNewDataKey}, KeyField: f.KeyField, KCVField: f.KCVField}
	for k, c := range f.Codes {
		kind := KeyKind(k)
		if kind != KeyPIN && kind != KeyMAC && kind != KeyData {
			return nil, bad(".codes."+k, `unknown key (want "pin", "mac" or "data")`)
		}
		if len(c) != 3 || strings.Trim(c, "0123456789") != "" {
			return nil, bad(".codes."+k, "%q: a network management code is 3 digits", c)
		}
		if c == NMSignOn || c == NMSignOff || c == NMEcho {
			return nil, bad(".codes."+k, "%q is the code of sign-on, sign-off or echo", c)
		}
		x.Codes[kind] = c
	}
	seen := map[string]KeyKind{}
	for _, k := range []KeyKind{KeyPIN, KeyMAC, KeyData} {
		if other, ok := seen[x.Codes[k]]; ok {
			return nil, bad(".codes."+string(k), "%q is also the code of the %s key", x.Codes[k], other)
		}
		seen[x.Codes[k]] = k
	}
	switch KeyForm(f.Form) {
	case "", KeyFormTR31:
		x.Form = KeyFormTR31
	case KeyFormLegacy:
		return nil, &DialectError{Setting: "key_exchange.form", Err: ErrLegacyKeyForm}
	default:
		return nil, bad(".form", `unknown form %q (want "tr31" or "legacy")`, f.Form)
	}
	if _, ok := spec.Fields[70]; !ok {
		return nil, bad("", "field 70 (network management code) is not defined in \"fields\"")
	}
	// The shortest key field: a TDES TR-31 version B block of a double-length key is 80
	// characters. A check value is at least 4.
	minKey := 80
	for _, c := range []struct {
		setting string
		id, min int
	}{{".key_field", x.KeyField, minKey}, {".kcv_field", x.KCVField, 4}} {
		if err := checkKeyExchangeField(spec, c.id, c.min); err != nil {
			return nil, bad(c.setting, "%v", err)
		}
	}
	if x.KeyField == x.KCVField {
		return nil, bad(".kcv_field", "field %d is the key field too", x.KCVField)
	}
	return x, nil
}

// reservedKeyFields are fields a key change cannot put a key or check value in: the
// MTI, bitmaps, fields of matching and network management, and MACs.
var reservedKeyFields = map[int]bool{0: true, 1: true, 7: true, 11: true, 39: true, 41: true, 64: true, 65: true, 70: true, 128: true}

func checkKeyExchangeField(spec *MessageSpec, id, minLen int) error {
	if id == 0 {
		return errors.New("required: the field number")
	}
	if id < 2 || id > maxField || reservedKeyFields[id] {
		return fmt.Errorf("field %d cannot carry it (fields 2 to 128 but 7, 11, 39, 41, 64, 65, 70 and 128)", id)
	}
	f, ok := spec.Fields[id]
	if !ok {
		return fmt.Errorf("field %d is not defined in \"fields\"", id)
	}
	c, ok := f.Spec().Packer.(codec)
	if !ok || c.class == classB {
		return fmt.Errorf("field %d must be a text field (it carries hex digits or a TR-31 block)", id)
	}
	if c.class == classN {
		return fmt.Errorf("field %d is numeric; a key or check value holds letters A-F", id)
	}
	if f.Spec().Length < minLen || c.fixed() {
		return fmt.Errorf("field %d must be variable length, at least %d characters (it is %s %d)", id, minLen, lengthKind(c), f.Spec().Length)
	}
	return nil
}

// ErrLegacyKeyForm refuses a dialect whose key_exchange form is "legacy". A key that
// travels as its bare encryption under the KEK (TDES ECB) carries no usage and no
// integrity of its own: the terminal cannot tell a MAC key from a PIN or data key (so a
// key sent as a MAC key could later be used to decrypt PIN blocks, the classic key-usage
// attack), nor detect a block altered or swapped on the way (ECB halves can be swapped
// between keys), and the check value only says which key, after the import. TR-31 binds
// usage, algorithm and mode of use to the key under a MAC.
var ErrLegacyKeyForm = errors.New(`the "legacy" key form (a key under the KEK in TDES ECB) is refused: it carries no key usage and no integrity, so a key could be imported for another use or altered unseen; ask the acquirer for TR-31 key blocks ("tr31")`)

// KeyChange is a key-change 0800: a request for a new key, or with Confirm the terminal's
// confirmation that it holds it. It holds no secret. It is a value, safe for concurrent use.
type KeyChange struct {
	Key              KeyKind   // which key; required
	STAN             uint32    // field 11; required
	TransmissionTime time.Time // field 7; required
	TerminalID       string    // field 41; optional
	// Confirm is the new key's check value, as the terminal computed it after importing
	// the key: it goes in the check value field and asks the host to switch. Default nil:
	// the 0800 asks for a new key.
	Confirm []byte
}

// Request builds the 0800 on the [DefaultSpec] dialect (a [Client] converts it).
func (x *KeyExchange) Request(k KeyChange) (*Message, error) {
	b := newBuilder(MTINetworkManagementRequest)
	b.transmission(k.TransmissionTime)
	b.stan(k.STAN)
	b.opt(41, k.TerminalID)
	code := x.Code(k.Key)
	if code == "" {
		b.fail(70, fmt.Errorf("%w: no key change code for key %q", ErrInvalidValue, k.Key))
	}
	b.set(70, code)
	if k.Confirm != nil {
		b.set(x.KCVField, strings.ToUpper(hex.EncodeToString(k.Confirm)))
	}
	return b.finish()
}

// ParseRequest reads a key-change 0800 at the host: ok false when msg is another 0800.
func (x *KeyExchange) ParseRequest(msg *Message) (k KeyChange, ok bool, err error) {
	code, _ := msg.GetString(70)
	kind, ok := x.Kind(code)
	if !ok {
		return KeyChange{}, false, nil
	}
	k.Key = kind
	if tid, err := msg.GetString(41); err == nil {
		k.TerminalID = strings.TrimRight(tid, " ")
	}
	if s, _ := msg.GetString(11); s != "" {
		n, _ := strconv.ParseUint(s, 10, 32)
		k.STAN = uint32(n)
	}
	if v, _ := msg.GetString(x.KCVField); v != "" {
		if k.Confirm, err = decodeKCV(v); err != nil {
			return k, true, &FieldError{Field: x.KCVField, Op: "key change", Err: err}
		}
	}
	return k, true, nil
}

// KeyChangeResponse is what an 0810 to a key change says. It holds no clear key: Key is
// the key under the KEK. It is a value, safe for concurrent use.
type KeyChangeResponse struct {
	ResponseCode string  // field 39
	Key          KeyKind // from field 70
	// Block is the key field: a TR-31 block; "" in the answer to a confirmation.
	Block string
	// CheckValue is the host's check value of the new key; nil in the answer to a
	// confirmation.
	CheckValue []byte
}

// ParseResponse reads an 0810 to a key change. An answer 00 to a request for a key must
// carry the key and its check value; an error names the missing field.
func (x *KeyExchange) ParseResponse(msg *Message, confirm bool) (KeyChangeResponse, error) {
	var r KeyChangeResponse
	mti, _ := msg.GetMTI()
	if mti != MTINetworkManagementResponse {
		return r, &FieldError{Field: 0, Op: "key change", Err: fmt.Errorf("%w: %s is not an 0810", ErrInvalidValue, mti)}
	}
	code, _ := msg.GetString(70)
	kind, ok := x.Kind(code)
	if !ok {
		return r, &FieldError{Field: 70, Op: "key change", Err: fmt.Errorf("%w: %q is no key change code", ErrInvalidValue, code)}
	}
	r.Key = kind
	r.ResponseCode, _ = msg.GetString(39)
	if r.ResponseCode == "" {
		return r, &FieldError{Field: 39, Op: "key change", Err: ErrMissingField}
	}
	if r.ResponseCode != RCApproved || confirm {
		return r, nil
	}
	r.Block, _ = msg.GetString(x.KeyField)
	if r.Block == "" {
		return r, &FieldError{Field: x.KeyField, Op: "key change", Err: fmt.Errorf("%w: the 0810 carries no key", ErrMissingField)}
	}
	v, _ := msg.GetString(x.KCVField)
	if v == "" {
		return r, &FieldError{Field: x.KCVField, Op: "key change", Err: fmt.Errorf("%w: the 0810 carries no check value", ErrMissingField)}
	}
	var err error
	if r.CheckValue, err = decodeKCV(v); err != nil {
		return r, &FieldError{Field: x.KCVField, Op: "key change", Err: err}
	}
	return r, nil
}

// Answer puts the new key and its check value in resp, the host's 0810.
func (x *KeyExchange) Answer(resp *Message, block string, checkValue []byte) error {
	if err := resp.Field(x.KeyField, block); err != nil {
		return &FieldError{Field: x.KeyField, Op: "key change", Err: err}
	}
	if err := resp.Field(x.KCVField, strings.ToUpper(hex.EncodeToString(checkValue))); err != nil {
		return &FieldError{Field: x.KCVField, Op: "key change", Err: err}
	}
	return nil
}

func decodeKCV(v string) ([]byte, error) {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) < 2 || len(b) > 16 {
		return nil, fmt.Errorf("%w: a check value is 4 to 32 hex digits", ErrInvalidValue)
	}
	return b, nil
}
