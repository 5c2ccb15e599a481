package iso8583

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"
	"github.com/moov-io/iso8583/prefix"
)

// Dialect is one acquirer's variant of ISO 8583: the message spec, the framing on the
// stream and, from a file's "messages" object, what each request must carry beyond the
// built-in rules. [DefaultDialect] is the project's ISO 8583:1987 ASCII dialect with a
// 2-byte binary length and no message rules; [LoadDialect] reads another from a file.
// Messages are built on [DefaultSpec] whatever the dialect (except an [Authorization] given
// its link's Spec, so that its PIN block is checked against that dialect's field 52): a
// [Client] (and hostsim) convert them to the link's dialect when packing ([Convert]), and a
// Client adds the dialect's fixed values and checks its rules ([Dialect.PrepareRequest]).
//
// A Dialect must not be changed once in use; it is then safe for concurrent use. Its
// message rules cannot be changed at all: they are read only through
// [Dialect.PrepareRequest] and [Dialect.CheckRequest], and a copy of a Dialect value shares
// them.
type Dialect struct {
	// Name names the dialect in logs and errors: the file's "name", or its base name.
	Name string
	// Description is the file's "description": what network or document the dialect is
	// modelled on. Empty: none given.
	Description string
	// Spec is the message spec. It must not be changed.
	Spec *MessageSpec
	// Framer frames messages on the stream, terminal side. A host answering in this
	// dialect writes with [HostFramer](Framer).
	Framer Framer
	// EntryModes are the file's "entry_modes": field 22 of the cards whose POS entry
	// mode the acquirer writes its own way. Empty values: the file does not say (posd
	// uses its defaults).
	EntryModes EntryModes
	// MAC is the file's "mac" object: the field, algorithm and coverage of the messages'
	// MACs ([MACSpec]). nil: messages carry no MAC.
	MAC *MACSpec
	// ReversalTo is the file's "reversal_to": where a reversal goes when the terminal has
	// backup hosts ([Failover]). [ReversalToOrigin] (the default, also when the file does
	// not say): the host that got the request it undoes; [ReversalToAny]: the active host,
	// the network passing reversals between its hosts.
	ReversalTo string
	// KeyExchange is the file's "key_exchange" object: the codes and fields of working-key
	// changes ([KeyExchange]). nil: the dialect has no key exchange.
	KeyExchange *KeyExchange

	messages *messageRules // the file's "messages"; nil: none
}

// EntryModes are a dialect's POS entry modes (ISO 8583 field 22) for taps, each exactly 3
// digits when set. The zero value says nothing: the terminal uses "071" and "911".
//
// A plain value: safe for concurrent use when not modified.
type EntryModes struct {
	ContactlessEMV       string // "contactless_emv": a tap in EMV mode; "" not set
	ContactlessMagstripe string // "contactless_magstripe": a tap in magnetic stripe mode; "" not set
}

// parseEntryModes reads a dialect file's "entry_modes" object.
func parseEntryModes(raw json.RawMessage) (EntryModes, error) {
	var f struct {
		EMV       *string `json:"contactless_emv"`
		Magstripe *string `json:"contactless_magstripe"`
	}
	if err := decodeStrict(raw, &f); err != nil {
		return EntryModes{}, &DialectError{Setting: "entry_modes", Err: err}
	}
	var m EntryModes
	for _, e := range []struct {
		key string
		v   *string
		to  *string
	}{{"contactless_emv", f.EMV, &m.ContactlessEMV}, {"contactless_magstripe", f.Magstripe, &m.ContactlessMagstripe}} {
		if e.v == nil {
			continue
		}
		v := *e.v
		if len(v) != 3 || strings.Trim(v, "0123456789") != "" {
			return EntryModes{}, &DialectError{Setting: "entry_modes." + e.key, Err: fmt.Errorf("%q: must be exactly 3 digits", v)}
		}
		*e.to = v
	}
	return m, nil
}

// DefaultDialect returns the default dialect: [DefaultSpec] (one shared, read-only copy)
// framed by a [BinaryLengthFramer].
func DefaultDialect() *Dialect {
	s := defaultSpec()
	return &Dialect{Name: s.Name, Spec: s, Framer: BinaryLengthFramer{}, ReversalTo: ReversalToOrigin}
}

// DialectError reports a dialect file or setting that cannot be used. Setting names what is
// wrong as a path into the file: "fields.52.enc", "framing.length", "fields" (missing).
// It is safe for concurrent use (never changed after it is returned).
type DialectError struct {
	File    string // the file, when the dialect came from one
	Setting string
	Err     error
}

func (e *DialectError) Error() string {
	var b strings.Builder
	b.WriteString("iso8583: dialect")
	if e.File != "" {
		b.WriteString(" " + strconv.Quote(e.File))
	}
	if e.Setting != "" {
		b.WriteString(": " + e.Setting)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *DialectError) Unwrap() error { return e.Err }

// maxDialectFile bounds what LoadDialect reads: a full 128-field spec is about 30 KiB.
const maxDialectFile = 1 << 20

// LoadDialect reads a dialect file (see [ParseDialect]). Errors are [*DialectError]s naming
// the file and the setting.
func LoadDialect(path string) (*Dialect, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &DialectError{File: path, Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDialectFile+1))
	if err != nil {
		return nil, &DialectError{File: path, Err: err}
	}
	if len(data) > maxDialectFile {
		return nil, &DialectError{File: path, Err: fmt.Errorf("file larger than %d bytes", maxDialectFile)}
	}
	d, err := ParseDialect(data)
	if err != nil {
		var de *DialectError
		if errors.As(err, &de) {
			de.File = path
		}
		return nil, err
	}
	if d.Name == "" {
		d.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		d.Spec.Name = d.Name
	}
	return d, nil
}

// ParseDialect reads a dialect in moov-io/iso8583's JSON spec format (the format of
// specs.ImportJSON and moov's examples/specs/spec87ascii.json), decoded strictly: unknown
// keys are errors. On top of moov's format it takes a "description" (text: what the dialect
// is modelled on), a "framing" object ([FramingConfig]),
// a "messages" object (below), an "entry_modes" object ([EntryModes]: field 22 of taps,
// e.g. {"contactless_emv": "072", "contactless_magstripe": "912"}, each exactly 3 digits
// and optional; unknown keys are errors) and, in each field, an optional "class" (n, an, ans, z, x+n,
// b) and "prefix_unit"; all are ignored by moov's own loader (specs.ImportJSON of v0.26.1
// decodes only "name" and "fields", without refusing other keys), so a file stays
// readable by moov's tools.
//
//	{"name": "Acquirer X",
//	 "framing": {"length": "bcd2", "tpdu": "6000010000"},
//	 "messages": {
//	   "*":    {"set": {"24": "001", "25": "00"}},
//	   "0200": {"mandatory": [43], "set": {"43": "POSD TEST SHOP         LISBON       PT"}},
//	   "0800": {"forbidden": [25]}},
//	 "fields": {
//	   "0": {"type": "String", "length": 4, "enc": "BCD", "prefix": "BCD.Fixed"},
//	   "1": {"type": "Bitmap", "length": 8, "enc": "Binary", "prefix": "Binary.Fixed"},
//	   "2": {"type": "String", "length": 19, "enc": "BCD", "prefix": "BCD.LL"}, ...}}
//
// What each field takes:
//
//   - type: String, Numeric, Binary, Hex, Track1, Track2, Track3; Bitmap for field 1 only;
//     Composite (below).
//   - enc: ASCII; EBCDIC or EBCDIC1047 (text classes: IBM code page 1047, moov's
//     encoding.EBCDIC1047); BCD or LBCD (n and z only; '=' is nibble D); Binary or
//     ASCIIToHex (b: raw bytes); HexToASCII (b: two hexadecimal characters per byte).
//     Encoding and prefix names are matched without regard to case ("ascii", "ebcdic",
//     "bcd", "binary").
//   - prefix: ASCII, EBCDIC, BCD, Binary or Hex, then .Fixed, .L, .LL, .LLL or .LLLL
//     (None.Fixed too). A prefix counts characters of text, digits of BCD, and bytes of b
//     fields (moov's reading; the default dialect's field 55 counts hex characters
//     instead).
//   - prefix_unit: for a b field of enc HexToASCII with a length prefix, "characters" makes
//     the prefix and length count hexadecimal characters, as the default dialect's field 55
//     does; default "bytes".
//   - length: the fixed length or the maximum, in the same unit; it must fit the prefix.
//   - padding: {"type": "Left" or "Right" or "None", "pad": one character of the field's
//     class}, for fixed-length text fields. Right padding is removed when unpacking;
//     left padding (zeros of n fields) is kept, so values read back at full length.
//   - class: what the characters may be; default: b for Binary and Hex, n for Numeric, z
//     for Track2 and Track3, ans for Track1, and for String the field's class in ISO
//     8583:1987 (ans when ISO says b).
//   - description: the field's name in [Describe]; default: the ISO 8583:1987 name.
//
// A Composite field (moov's field.Composite; fields 2 to 128) takes type, length and prefix
// (both counting bytes), description, a "tag" and "subfields". Its tag is moov's: "sort"
// (StringsByInt or StringsByHex) alone for subfields by position; "enc" (ASCII, EBCDIC,
// BCD, HexToASCII or ASCIIToHex), "length" and an optional "padding" for subfields after
// a fixed-length tag; or "enc": "BerTLVTag" (sort StringsByHex) for EMV BER-TLV, whose
// subfields are Binary with prefix "BerTLV", and where "skipUnknownTLVTags" needs
// "storeUnknownTLVTags" so that unknown tags are kept, never dropped. Subfields are fields
// as above (keyed by position or tag), one level deep. A composite's value, as [Convert]
// and GetBytes see it, is its subfields packed without the field's own prefix, so a
// BER-TLV field 55 converts from and to the default dialect's binary field 55 (moov packs
// the tags in hexadecimal order).
//
// Field 0 (MTI, n 4, fixed, ASCII, EBCDIC or BCD) and field 1 (a Bitmap of length 8 bytes,
// encoded Binary or HexToASCII) are required; other fields are optional, and a message
// with a field the dialect does not define cannot be packed in it. A bitmap of length 16
// (moov's Spec87ASCII, which writes a 32-character primary bitmap) is refused.
//
// Every field's Packer and Unpacker is this package's codec, so a dialect from a file
// enforces character classes and strict lengths like the default one.
//
// The optional "messages" object says what the acquirer wants in each request, beyond the
// built-in rules of [CheckMandatory]. Its keys are request MTIs that posd sends (0100,
// 0200, 0220, 0221, 0400, 0401, 0420, 0421, 0500, 0800), or "*" for every request; each
// entry takes:
//
//   - set: fixed values, by field number, that the link adds to a request of the MTI that
//     does not carry the field already (a value the message has is never replaced). A
//     value is text for a text field, and hexadecimal digits (two per byte) for a b field;
//     it is checked when the file is read by packing it in the field (class, length,
//     padding: a short value of a padded fixed-length field is padded). Fields that
//     posd's builders own cannot be set: the MTI and bitmap; card data 2, 14, 23, 34,
//     35, 36, 45; amounts and totals 4, 5, 6, 74-77, 86-89, 97; PIN data 52 and 62; ICC
//     data 55; MACs 64, 96 and 128; and 3, 7, 11, 12, 13, 22, 38, 39, 41, 42, 49, 50, 60,
//     70 and 90.
//   - mandatory: field numbers a request of the MTI must carry once the fixed values are
//     added.
//   - forbidden: field numbers it must not carry.
//
// Field numbers are 2 to 128 (not 65) and must be defined in "fields". An MTI's own entry
// wins over "*": a field it forbids is neither added from "*"'s set nor required by "*"'s
// mandatory, and a field it sets or requires is not forbidden by "*"'s forbidden. The entry
// of 0220, 0400 or 0420 also applies to its repeat (0221, 0401, 0421) when the file has no
// entry for the repeat. An entry that contradicts itself (a field both mandatory and
// forbidden, or set and forbidden) or the built-in rules (forbidding a field the MTI always
// needs, requiring track or PIN data after authorization) is refused.
//
// The optional "mac" object declares the messages' MAC ([MACSpec]):
//
//	"mac": {"field": 64, "algorithm": "retail", "length": 8, "covers": "message",
//	        "mtis": ["0200", "0400"], "failure_code": "A0"}
//
// Its keys:
//
//   - field: 64 or 128, defined in "fields" as a fixed-length binary field of length bytes;
//     with 64, messages with a secondary bitmap carry the MAC in 128 (define it alike).
//   - algorithm: "retail" (ISO 9797-1 MAC algorithm 3, ANSI X9.19; "x9.19" is the same)
//     under a double-length TDES key, or "aes-cmac" (NIST SP 800-38B) under an AES key.
//   - length: bytes of MAC, default 8 (4 for DUKPT MACs).
//   - covers: "message" (the default: the packed message up to the MAC field), or a list of
//     field numbers whose packed values are MACed, in order.
//   - mtis: the requests that carry a MAC (their responses must carry one); default all.
//   - failure_code: what a host answers a bad MAC with; default "96".
//
// The optional "key_exchange" object declares working-key changes ([KeyExchange]):
//
//	"key_exchange": {"codes": {"pin": "161", "mac": "162", "data": "163"}, "form": "tr31",
//	                 "key_field": 120, "kcv_field": 123}
//
// Its keys:
//
//   - codes: field 70's value per key; default 161, 162 and 163; 3 digits each, distinct,
//     not 001, 002 or 301.
//   - form: "tr31" (the default and only one: a TR-31 key block under the KEK); "legacy"
//     (the key encrypted under the KEK in TDES ECB) is refused ([ErrLegacyKeyForm]).
//   - key_field: the field of the 0810 that carries the key; required; a variable-length
//     text field of at least 80 characters.
//   - kcv_field: the field that carries the key's check value in hex, in the 0810 and in
//     the terminal's confirming 0800; required; a variable-length text field, not the key
//     field.
//
// A [Client] adds the fixed values to, and checks the rules on, every request it sends, its
// own sign-on, echo and sign-off included ([Dialect.PrepareRequest]); a request that fails is
// refused before anything is sent, with a [*FieldError] naming the field, the MTI and the
// dialect. The simulated acquirer of package hostsim checks incoming requests the same
// way ([Dialect.CheckRequest]) and answers 30 (format error).
func ParseDialect(data []byte) (*Dialect, error) {
	var file struct {
		Name        string                     `json:"name"`
		Description string                     `json:"description"`
		Framing     *FramingConfig             `json:"framing"`
		Entry       json.RawMessage            `json:"entry_modes"`
		MAC         json.RawMessage            `json:"mac"`
		KeyX        json.RawMessage            `json:"key_exchange"`
		Messages    map[string]json.RawMessage `json:"messages"`
		Fields      map[string]json.RawMessage `json:"fields"`
		Reversal    string                     `json:"reversal_to"`
	}
	if err := decodeStrict(data, &file); err != nil {
		return nil, &DialectError{Err: err}
	}
	switch file.Reversal {
	case "":
		file.Reversal = ReversalToOrigin
	case ReversalToOrigin, ReversalToAny:
	default:
		return nil, &DialectError{Setting: "reversal_to", Err: fmt.Errorf("%.40q: must be %q (the host that got the original, the default) or %q (any host)", file.Reversal, ReversalToOrigin, ReversalToAny)}
	}
	if len(file.Fields) == 0 {
		return nil, &DialectError{Setting: "fields", Err: errors.New("no fields defined")}
	}
	d := &Dialect{Name: file.Name, Description: file.Description, ReversalTo: file.Reversal}
	if file.Framing != nil {
		fr, err := file.Framing.Framer()
		if err != nil {
			return nil, err
		}
		d.Framer = fr
	} else {
		d.Framer = BinaryLengthFramer{}
	}

	iso := fields87()
	spec := &MessageSpec{Name: file.Name, Fields: make(map[int]field.Field, len(file.Fields))}
	keys := make([]string, 0, len(file.Fields))
	for k := range file.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		id, err := strconv.Atoi(k)
		if err != nil || id < 0 || id > maxField || strconv.Itoa(id) != k {
			hint := ""
			if strings.HasPrefix(k, "Field") {
				hint = ` (moov's old "FieldNNN" keys are not supported: write the number alone)`
			}
			return nil, &DialectError{Setting: "fields." + k, Err: fmt.Errorf("a field key must be a number from 0 to %d%s", maxField, hint)}
		}
		f, serr := parseField(id, file.Fields[k], iso[id])
		if serr != nil {
			return nil, &DialectError{Setting: "fields." + k + serr.setting, Err: serr.err}
		}
		spec.Fields[id] = f
	}
	for _, id := range []int{0, 1} {
		if _, ok := spec.Fields[id]; !ok {
			return nil, &DialectError{Setting: "fields." + strconv.Itoa(id), Err: errors.New("required (field 0 is the MTI, field 1 the bitmap)")}
		}
	}
	d.Spec = spec
	if file.Entry != nil {
		m, err := parseEntryModes(file.Entry)
		if err != nil {
			return nil, err
		}
		d.EntryModes = m
	}
	rules, err := parseMessages(file.Messages, spec)
	if err != nil {
		return nil, err
	}
	d.messages = rules
	if file.MAC != nil {
		if d.MAC, err = parseMAC(file.MAC, spec); err != nil {
			return nil, err
		}
	}
	if file.KeyX != nil {
		if d.KeyExchange, err = parseKeyExchange(file.KeyX, spec); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown keys and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// fieldFile is one field of a dialect file.
type fieldFile struct {
	Type        string `json:"type"`
	Length      int    `json:"length"`
	Description string `json:"description"`
	Enc         string `json:"enc"`
	Prefix      string `json:"prefix"`
	Padding     *struct {
		Type string `json:"type"`
		Pad  string `json:"pad"`
	} `json:"padding"`
	Class string `json:"class"`
	// PrefixUnit is what the length prefix of a b field carried as hexadecimal characters
	// counts: "bytes" (moov's reading, the default) or "characters".
	PrefixUnit string `json:"prefix_unit"`
}

// settingError is a problem with one key of a field.
type settingError struct {
	setting string // ".enc", or "" for the field as a whole
	err     error
}

func bad(setting, format string, args ...any) *settingError {
	return &settingError{setting: setting, err: fmt.Errorf(format, args...)}
}

// dialectEncoding returns the canonical name (moov's) and encoder of a field's "enc",
// matched without regard to case: "ascii", "bcd" and "binary" are ASCII, BCD and Binary,
// and "ebcdic" is EBCDIC1047 (IBM code page 1047, moov's encoding.EBCDIC1047; moov's
// older "EBCDIC" table differs from it in a few punctuation characters and is not used).
func dialectEncoding(name string) (string, encoding.Encoder, bool) {
	switch strings.ToLower(name) {
	case "ascii":
		return "ASCII", encoding.ASCII, true
	case "bcd":
		return "BCD", encoding.BCD, true
	case "lbcd":
		return "LBCD", encoding.LBCD, true
	case "binary":
		return "Binary", encoding.Binary, true
	case "hextoascii":
		return "HexToASCII", encoding.BytesToASCIIHex, true
	case "asciitohex":
		return "ASCIIToHex", encoding.ASCIIHexToBytes, true
	case "ebcdic", "ebcdic1047":
		return "EBCDIC1047", encoding.EBCDIC1047, true
	}
	return "", nil, false
}

// dialectPrefix returns the canonical kind, moov prefixers and codec prefix of a length
// prefix's kind, matched without regard to case ("EBCDIC" and "EBCDIC1047" are the same:
// digits are 0xF0-0xF9 in every EBCDIC code page).
func dialectPrefix(kind string) (string, prefix.Prefixers, prefKind, bool) {
	switch strings.ToLower(kind) {
	case "ascii":
		return "ASCII", prefix.ASCII, prefASCII, true
	case "bcd":
		return "BCD", prefix.BCD, prefBCD, true
	case "binary":
		return "Binary", prefix.Binary, prefBinary, true
	case "hex":
		return "Hex", prefix.Hex, prefHex, true
	case "ebcdic", "ebcdic1047":
		return "EBCDIC", prefix.EBCDIC1047, prefEBCDIC, true
	}
	return "", prefix.Prefixers{}, 0, false
}

func parseField(id int, raw json.RawMessage, iso def) (field.Field, *settingError) {
	// moov's composite keys: the field is a Composite.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, bad("", "must be a JSON object")
	}
	for _, k := range []string{"subfields", "tag", "bitmap"} {
		if _, ok := keys[k]; ok {
			return parseComposite(id, raw, iso)
		}
	}
	if t, ok := keys["type"]; ok && string(t) == `"Composite"` {
		return parseComposite(id, raw, iso)
	}
	var ff fieldFile
	if err := decodeStrict(raw, &ff); err != nil {
		return nil, bad("", "%v", err)
	}

	name := ff.Description
	if name == "" {
		name = iso.name
	}
	spec := &field.Spec{Length: ff.Length, Description: name}

	// Prefix: "Kind.L..." or "Kind.Fixed".
	kind, ls, ok := strings.Cut(ff.Prefix, ".")
	if !ok {
		return nil, bad(".prefix", "%q is not KIND.LENGTH, e.g. ASCII.LL or BCD.Fixed", ff.Prefix)
	}
	c := codec{}
	switch {
	case ls == "Fixed":
	case ls != "" && strings.Trim(ls, "L") == "" && len(ls) <= 4:
		c.lenDigits = len(ls)
	default:
		return nil, bad(".prefix", "length part %q must be Fixed, L, LL, LLL or LLLL", ls)
	}
	_, prefixers, pk, known := dialectPrefix(kind)
	switch {
	case strings.EqualFold(kind, "None") && ls == "Fixed":
		spec.Pref = prefix.None.Fixed
	case !known:
		return nil, bad(".prefix", "unknown kind %q (want ASCII, BCD, Binary, Hex, EBCDIC or None)", kind)
	default:
		spec.Pref = [...]prefix.Prefixer{prefixers.Fixed, prefixers.L, prefixers.LL, prefixers.LLL, prefixers.LLLL}[c.lenDigits]
		c.pref = pk
	}

	encName, enc, known := dialectEncoding(ff.Enc)
	if !known {
		return nil, bad(".enc", "unknown encoding %q (want ASCII, EBCDIC, BCD, LBCD, Binary, HexToASCII or ASCIIToHex)", ff.Enc)
	}
	ff.Enc = encName
	spec.Enc = enc

	if ff.Length <= 0 || ff.Length > 9999 {
		return nil, bad(".length", "must be 1 to 9999, not %d", ff.Length)
	}

	if id == 1 {
		if ff.Type != "Bitmap" {
			return nil, bad(".type", "field 1 must be of type Bitmap")
		}
		if ff.Length != 8 {
			return nil, bad(".length", "a bitmap is 8 bytes (64 bits) long, each bitmap; %d would write %d-bit bitmaps", ff.Length, 8*ff.Length)
		}
		if ff.Enc != "Binary" && ff.Enc != "HexToASCII" {
			return nil, bad(".enc", "a bitmap is Binary or HexToASCII")
		}
		if c.lenDigits != 0 {
			return nil, bad(".prefix", "a bitmap has no length prefix")
		}
		return field.NewBitmap(spec), nil
	}

	// The class of the characters.
	cls := class(0)
	switch ff.Type {
	case "Binary", "Hex":
		cls = classB
	case "Numeric":
		cls = classN
	case "Track2", "Track3":
		cls = classZ
	case "Track1":
		cls = classANS
	case "String":
		cls = iso.class
		if cls == classB || cls == 0 {
			cls = classANS
		}
	case "Bitmap":
		return nil, bad(".type", "only field 1 is a Bitmap")
	default:
		return nil, bad(".type", "unknown type %q (want String, Numeric, Binary, Hex, Track1, Track2 or Track3)", ff.Type)
	}
	if ff.Class != "" {
		explicit := map[string]class{"n": classN, "an": classAN, "ans": classANS, "z": classZ, "x+n": classXN, "b": classB}[ff.Class]
		if explicit == 0 {
			return nil, bad(".class", "unknown class %q (want n, an, ans, z, x+n or b)", ff.Class)
		}
		if (explicit == classB) != (cls == classB) {
			return nil, bad(".class", "class b goes with types Binary and Hex only")
		}
		cls = explicit
	}
	c.class = cls
	if id == 0 && (cls != classN || ff.Length != 4 || c.lenDigits != 0) {
		return nil, bad("", "the MTI is n 4, fixed length")
	}

	switch {
	case cls == classB && (ff.Enc == "Binary" || ff.Enc == "ASCIIToHex"):
		c.enc = encRaw
	case cls == classB && ff.Enc == "HexToASCII":
		c.enc = encHex
	case cls == classB:
		return nil, bad(".enc", "a binary field is Binary, ASCIIToHex or HexToASCII")
	case ff.Enc == "ASCII":
		c.enc = encASCII
	case ff.Enc == "EBCDIC1047":
		c.enc = encEBCDIC
	case ff.Enc == "BCD" || ff.Enc == "LBCD":
		if cls != classN && cls != classZ {
			return nil, bad(".enc", "BCD carries classes n and z only, not %s", cls)
		}
		c.enc = encBCD
		if ff.Enc == "LBCD" {
			c.enc = encLBCD
		}
	default:
		return nil, bad(".enc", "a text field (class %s) is ASCII, EBCDIC, BCD or LBCD", cls)
	}
	switch ff.PrefixUnit {
	case "", "bytes":
	case "characters":
		if c.enc != encHex || c.lenDigits == 0 {
			return nil, bad(".prefix_unit", `"characters" goes with a b field of enc HexToASCII and a length prefix only`)
		}
		c.countChars = true
	default:
		return nil, bad(".prefix_unit", "unknown unit %q (want bytes or characters)", ff.PrefixUnit)
	}
	if c.lenDigits > 0 && ff.Length > c.maxPrefix() {
		return nil, bad(".length", "%d does not fit a %s prefix (at most %d)", ff.Length, ff.Prefix, c.maxPrefix())
	}

	if p := ff.Padding; p != nil && p.Type != "None" {
		if c.lenDigits != 0 || cls == classB {
			return nil, bad(".padding", "padding applies to fixed-length text fields only")
		}
		if len(p.Pad) != 1 || badChar(cls, p.Pad) >= 0 || c.enc != encASCII && c.enc != encEBCDIC && !isDigit(p.Pad[0]) {
			return nil, bad(".padding.pad", "must be one character of class %s", cls)
		}
		switch p.Type {
		case "Left":
			spec.Pad = padding.Left(rune(p.Pad[0]))
		case "Right":
			spec.Pad = padding.Right(rune(p.Pad[0]))
			c.unpad = true
		default:
			return nil, bad(".padding.type", "unknown padding %q (want Left, Right or None)", p.Type)
		}
	}

	spec.Packer, spec.Unpacker = c, c
	if cls == classB {
		return field.NewBinary(spec), nil
	}
	return field.NewString(spec), nil
}

// FramingConfig is a dialect's framing as configuration: the "framing" object of a dialect
// file, or settings of their own in a program's config. The zero value is the default
// framing, a 2-byte binary length and no TPDU. It is a plain value, safe for concurrent use
// if not modified.
type FramingConfig struct {
	// Length is the length header: "binary2" (2-byte big-endian binary, the default when
	// empty), "ascii4" (4 ASCII digits) or "bcd2" (2 bytes BCD, 4 digits).
	Length string `json:"length"`
	// TPDU is a 5-byte transport protocol data unit written after the length header and
	// before each message, as 10 hexadecimal digits, e.g. "6000010000" (ID 60, destination
	// 0001, source 0000). Empty: none.
	TPDU string `json:"tpdu"`
	// MaxFrame is the largest message accepted, in bytes. Default (0): DefaultMaxFrame.
	MaxFrame int `json:"max_frame"`
}

// Framer checks the configuration and returns its framer: a [BinaryLengthFramer] for the
// default, else a [LengthFramer]. Errors are [*DialectError]s naming the setting
// ("framing.length", "framing.tpdu", "framing.max_frame").
func (fc FramingConfig) Framer() (Framer, error) {
	h, err := ParseLengthHeader(fc.Length)
	if err != nil {
		return nil, &DialectError{Setting: "framing.length", Err: err}
	}
	if fc.MaxFrame < 0 || fc.MaxFrame > h.max() {
		return nil, &DialectError{Setting: "framing.max_frame", Err: fmt.Errorf("must be 0 (default %d) to %d for a %s header", DefaultMaxFrame, h.max(), h)}
	}
	var tpdu []byte
	if fc.TPDU != "" {
		if len(fc.TPDU) != 10 || classB.badChar([]byte(fc.TPDU)) >= 0 {
			return nil, &DialectError{Setting: "framing.tpdu", Err: errors.New("must be 10 hexadecimal digits (5 bytes)")}
		}
		tpdu = make([]byte, 5)
		for i := range tpdu {
			tpdu[i] = unhex(fc.TPDU[2*i])<<4 | unhex(fc.TPDU[2*i+1])
		}
	}
	if h == HeaderBinary2 && tpdu == nil {
		return BinaryLengthFramer{MaxFrame: fc.MaxFrame}, nil
	}
	return LengthFramer{Header: h, TPDU: tpdu, MaxFrame: fc.MaxFrame}, nil
}
