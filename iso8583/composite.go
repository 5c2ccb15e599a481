package iso8583

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"
	"github.com/moov-io/iso8583/prefix"
	moovsort "github.com/moov-io/iso8583/sort"
)

// compositeFile is a field of type Composite in a dialect file: moov's JSON form of a
// field.Composite with a Tag spec (subfields by position, or by tag).
type compositeFile struct {
	Type        string                     `json:"type"`
	Length      int                        `json:"length"`
	Description string                     `json:"description"`
	Prefix      string                     `json:"prefix"`
	Tag         *tagFile                   `json:"tag"`
	Subfields   map[string]json.RawMessage `json:"subfields"`
}

// tagFile is a composite's "tag" object, in moov's JSON form.
type tagFile struct {
	Length  int    `json:"length"`
	Enc     string `json:"enc"`
	Sort    string `json:"sort"`
	Padding *struct {
		Type string `json:"type"`
		Pad  string `json:"pad"`
	} `json:"padding"`
	SkipUnknown  bool `json:"skipUnknownTLVTags"`
	StoreUnknown bool `json:"storeUnknownTLVTags"`
}

// berTLVFile is a subfield of a BER-TLV composite: a b value with a BER-TLV length.
type berTLVFile struct {
	Type        string `json:"type"`
	Length      int    `json:"length"`
	Description string `json:"description"`
	Enc         string `json:"enc"`
	Prefix      string `json:"prefix"`
}

// parseComposite reads a field of type Composite (see [ParseDialect]). Subfields are
// parsed as fields of their own, so they get this package's codec (character classes,
// strict lengths), except BER-TLV subfields, which are moov's Binary fields with its
// BerTLV length prefix. A composite's own length and prefix count bytes, as moov's do.
func parseComposite(id int, raw json.RawMessage, iso def) (field.Field, *settingError) {
	var probe struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &probe)
	switch {
	case id < 0:
		return nil, bad(".type", "a subfield cannot be a Composite (one level of subfields only)")
	case id < 2:
		return nil, bad(".type", "field %d cannot be a Composite", id)
	case probe.Type != "Composite":
		return nil, bad(".type", "a field with subfields or a tag must be of type Composite, not %q", probe.Type)
	}
	var cf compositeFile
	if err := decodeStrict(raw, &cf); err != nil {
		if strings.Contains(err.Error(), `"bitmap"`) {
			return nil, bad(".bitmap", "composite fields with a bitmap are not supported: use a tag with sort StringsByInt")
		}
		return nil, bad("", "%v", err)
	}
	if cf.Tag == nil {
		return nil, bad(".tag", `required for a Composite: {"sort": "StringsByInt"} for subfields by position, or an "enc" for tagged ones`)
	}
	if len(cf.Subfields) == 0 {
		return nil, bad(".subfields", "a Composite needs at least one subfield")
	}
	name := cf.Description
	if name == "" {
		name = iso.name
	}
	spec := &field.Spec{Length: cf.Length, Description: name}

	kind, ls, ok := strings.Cut(cf.Prefix, ".")
	digits := 0
	switch {
	case !ok:
		return nil, bad(".prefix", "%q is not KIND.LENGTH, e.g. BCD.LLL or ASCII.Fixed", cf.Prefix)
	case ls == "Fixed":
	case ls != "" && strings.Trim(ls, "L") == "" && len(ls) <= 4:
		digits = len(ls)
	default:
		return nil, bad(".prefix", "length part %q must be Fixed, L, LL, LLL or LLLL", ls)
	}
	_, prefixers, pk, known := dialectPrefix(kind)
	if !known {
		return nil, bad(".prefix", "unknown kind %q (want ASCII, BCD, Binary, Hex or EBCDIC)", kind)
	}
	spec.Pref = [...]prefix.Prefixer{prefixers.Fixed, prefixers.L, prefixers.LL, prefixers.LLL, prefixers.LLLL}[digits]
	if cf.Length <= 0 || cf.Length > 9999 {
		return nil, bad(".length", "must be 1 to 9999 bytes, not %d", cf.Length)
	}
	if max := (codec{pref: pk, lenDigits: digits}).maxPrefix(); digits > 0 && cf.Length > max {
		return nil, bad(".length", "%d does not fit a %s prefix (at most %d)", cf.Length, cf.Prefix, max)
	}

	tag, serr := parseTag(cf.Tag)
	if serr != nil {
		return nil, serr
	}
	spec.Tag = tag
	berTLV := tag.Enc == encoding.BerTLVTag

	keys := make([]string, 0, len(cf.Subfields))
	for k := range cf.Subfields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	spec.Subfields = make(map[string]field.Field, len(keys))
	for _, k := range keys {
		at := ".subfields." + k
		if err := checkSubfieldKey(k, tag); err != nil {
			return nil, &settingError{setting: at, err: err}
		}
		var probe struct {
			Type   string `json:"type"`
			Prefix string `json:"prefix"`
		}
		_ = json.Unmarshal(cf.Subfields[k], &probe)
		if probe.Type == "Composite" {
			return nil, bad(at+".type", "a subfield cannot be a Composite (one level of subfields only)")
		}
		if berTLV != (probe.Prefix == "BerTLV") {
			if berTLV {
				return nil, bad(at+".prefix", `a subfield of a BER-TLV composite (tag enc BerTLVTag) has prefix "BerTLV"`)
			}
			return nil, bad(at+".prefix", `prefix "BerTLV" goes with a composite whose tag enc is BerTLVTag`)
		}
		var sf field.Field
		if berTLV {
			sf, serr = parseBerTLVSubfield(k, cf.Subfields[k])
		} else {
			sf, serr = parseField(-1, cf.Subfields[k], def{name: "subfield " + k})
		}
		if serr != nil {
			return nil, &settingError{setting: at + serr.setting, err: serr.err}
		}
		spec.Subfields[k] = sf
	}
	if err := spec.Validate(); err != nil { // NewComposite panics on what Validate refuses
		return nil, bad(".tag", "%v", err)
	}
	return field.NewComposite(spec), nil
}

// parseTag reads a composite's "tag" object.
func parseTag(tf *tagFile) (*field.TagSpec, *settingError) {
	tag := &field.TagSpec{Length: tf.Length}
	switch tf.Sort {
	case "StringsByInt":
		tag.Sort = moovsort.StringsByInt
	case "StringsByHex":
		tag.Sort = moovsort.StringsByHex
	default:
		return nil, bad(".tag.sort", "unknown sort %q (want StringsByInt or StringsByHex)", tf.Sort)
	}
	switch strings.ToLower(tf.Enc) {
	case "":
		if tf.Length != 0 {
			return nil, bad(".tag.length", "subfields by position have no tag on the wire: give an enc, or no length")
		}
	case "bertlvtag":
		tag.Enc = encoding.BerTLVTag
		if tf.Length != 0 {
			return nil, bad(".tag.length", "a BER-TLV tag's length is read from the tag itself: leave it out")
		}
		if tf.Sort != "StringsByHex" {
			return nil, bad(".tag.sort", "BER-TLV tags are hexadecimal: sort StringsByHex")
		}
	default:
		_, enc, known := dialectEncoding(tf.Enc)
		if !known || enc == encoding.Binary || enc == encoding.LBCD {
			return nil, bad(".tag.enc", "unknown tag encoding %q (want BerTLVTag, ASCII, EBCDIC, BCD, HexToASCII or ASCIIToHex)", tf.Enc)
		}
		tag.Enc = enc
		if tf.Length <= 0 || tf.Length > 8 {
			return nil, bad(".tag.length", "a tag of enc %s needs its length, 1 to 8, not %d", tf.Enc, tf.Length)
		}
	}
	if tf.StoreUnknown && !tf.SkipUnknown {
		return nil, bad(".tag.storeUnknownTLVTags", "needs skipUnknownTLVTags")
	}
	if tf.SkipUnknown && tag.Enc != encoding.BerTLVTag {
		return nil, bad(".tag.skipUnknownTLVTags", "goes with tag enc BerTLVTag only (the length of an unknown tag is read as BER-TLV)")
	}
	if tf.SkipUnknown && !tf.StoreUnknown {
		return nil, bad(".tag.skipUnknownTLVTags", "would drop the unknown tags' data: set storeUnknownTLVTags too, so that nothing received is lost")
	}
	tag.SkipUnknownTLVTags, tag.StoreUnknownTLVTags = tf.SkipUnknown, tf.StoreUnknown
	if p := tf.Padding; p != nil && p.Type != "None" {
		if tag.Enc == nil || tag.Enc == encoding.BerTLVTag {
			return nil, bad(".tag.padding", "padding goes with fixed-length tags only")
		}
		if len(p.Pad) != 1 {
			return nil, bad(".tag.padding.pad", "must be one character")
		}
		switch p.Type {
		case "Left":
			tag.Pad = padding.Left(rune(p.Pad[0]))
		case "Right":
			tag.Pad = padding.Right(rune(p.Pad[0]))
		default:
			return nil, bad(".tag.padding.type", "unknown padding %q (want Left, Right or None)", p.Type)
		}
	}
	return tag, nil
}

// checkSubfieldKey checks a subfield's key against the composite's tag.
func checkSubfieldKey(k string, tag *field.TagSpec) error {
	switch {
	case tag.Enc == encoding.BerTLVTag:
		if len(k) < 2 || len(k)%2 != 0 || strings.ToUpper(k) != k || classB.badChar([]byte(k)) >= 0 {
			return errors.New("a BER-TLV tag is an even number of upper-case hexadecimal digits, e.g. 9F26")
		}
	case tag.Enc == nil:
		if n, err := strconv.Atoi(k); err != nil || n <= 0 || strconv.Itoa(n) != k {
			return errors.New("a positional subfield's key is its position, a number from 1")
		}
	case tag.Pad == nil && len(k) != tag.Length:
		return fmt.Errorf("the tag must be %d characters long", tag.Length)
	case len(k) > tag.Length:
		return fmt.Errorf("the tag is longer than %d characters", tag.Length)
	}
	return nil
}

// parseBerTLVSubfield reads a subfield of a BER-TLV composite: its value is bytes.
func parseBerTLVSubfield(k string, raw json.RawMessage) (field.Field, *settingError) {
	var bf berTLVFile
	if err := decodeStrict(raw, &bf); err != nil {
		return nil, bad("", "%v", err)
	}
	if bf.Type != "Binary" {
		return nil, bad(".type", "a BER-TLV subfield is of type Binary (its value is bytes), not %q", bf.Type)
	}
	if _, enc, _ := dialectEncoding(bf.Enc); enc != encoding.Binary {
		return nil, bad(".enc", "a BER-TLV subfield's value is Binary, not %q", bf.Enc)
	}
	if bf.Length <= 0 || bf.Length > 9999 {
		return nil, bad(".length", "must be 1 to 9999 bytes, not %d", bf.Length)
	}
	name := bf.Description
	if name == "" {
		name = "tag " + k
	}
	return field.NewBinary(&field.Spec{Length: bf.Length, Description: name, Enc: encoding.Binary, Pref: prefix.BerTLV}), nil
}

// isComposite reports whether a field of a spec is a composite; its value, as this
// package reads and sets it (Convert, GetBytes, BinaryField), is its subfields packed
// without the field's own length prefix (moov's Composite.Bytes).
func isComposite(f field.Field) bool {
	_, ok := f.(*field.Composite)
	return ok
}

// unpackComposite unpacks composite field id of msg from the start of b, returning the
// number of bytes it took.
func unpackComposite(msg *Message, id int, sf field.Field, b []byte) (int, error) {
	inst := field.NewInstanceOf(sf)
	n, err := inst.Unpack(b)
	if err != nil {
		return 0, &FieldError{Field: id, Op: "unpack", Err: err}
	}
	v, err := inst.Bytes()
	if err != nil {
		return 0, &FieldError{Field: id, Op: "unpack", Err: err}
	}
	if err := msg.BinaryField(id, v); err != nil {
		return 0, &FieldError{Field: id, Op: "unpack", Err: err}
	}
	return n, nil
}
