package emv

import (
	"fmt"

	"github.com/moov-io/bertlv"
)

// de55Tags is the tag set a terminal sends with an ARQC in ISO 8583 field
// 55, in the order sent (REFERENCE.md, "Cards").
var de55Tags = [...]string{
	"9F26", "9F27", "9F10", "9F36", "82", "84", "5F34", "9F37", "95", "9A", "9C",
	"9F02", "9F03", "5F2A", "9F1A", "9F33", "9F34", "9F35", "9F09", "9F1E", "9F41",
}

// de55Required are the tags without which the issuer cannot check the ARQC.
var de55Required = map[string]bool{
	"9F26": true, "9F27": true, "9F10": true, "9F36": true, "82": true, "9F37": true,
	"95": true, "9A": true, "9C": true, "9F02": true, "5F2A": true, "9F1A": true,
}

// contactlessTags are what a tap adds to field 55 when the card gives them:
// the TTQ (9F66), the form factor indicator / third party data (9F6E) and
// the customer exclusive / merchant custom data (9F7C).
var contactlessTags = [...]string{"9F66", "9F6E", "9F7C"}

// ContactlessTags returns the tags a tap adds to field 55 where present:
// 9F66, 9F6E, 9F7C. GoOnChip asks for them for a tapped card only.
func ContactlessTags() []string { return append([]string(nil), contactlessTags[:]...) }

// DE55Tags returns the tags field 55 carries with an ARQC, in order: 9F26,
// 9F27, 9F10, 9F36, 82, 84, 5F34, 9F37, 95, 9A, 9C, 9F02, 9F03, 5F2A, 9F1A,
// 9F33, 9F34, 9F35, 9F09, 9F1E, 9F41.
func DE55Tags() []string { return append([]string(nil), de55Tags[:]...) }

// CardTags returns the tags ExtractCard reads: 5A, 57, 5F24, 5F34, 9F27.
func CardTags() []string { return []string{"5A", "57", "5F24", "5F34", "9F27"} }

// GoOnChipTags returns the tags to ask the pad for in GOC: the DE 55 set and
// the card data objects, each once.
func GoOnChipTags() []string { return append(DE55Tags(), "5A", "57", "5F24") }

// FinishChipTags returns the tags to ask the pad for in FNC: the final
// cryptogram and its information, TVR, TSI, the response code the card saw
// and the issuer script results.
func FinishChipTags() []string { return []string{"9F27", "9F26", "95", "9B", "8A", "9F5B"} }

// MaxDE55 is the most bytes of TLV field 55 carries: LLLVAR of hex
// characters, 999 characters.
const MaxDE55 = 499

// BuildDE55 returns the BER-TLV for ISO 8583 field 55 from the pad's data:
// the DE55Tags present, in that order. The issuer needs 9F26, 9F27, 9F10,
// 9F36, 82, 9F37, 95, 9A, 9C, 9F02, 5F2A and 9F1A to check the cryptogram:
// without one of them the error is a *TagError wrapping ErrMissingTag.
func BuildDE55(d Data) ([]byte, error) {
	var out []bertlv.TLV
	for _, tag := range de55Tags {
		t, ok := d.find(tag)
		if !ok {
			if de55Required[tag] {
				return nil, &TagError{Tag: tag, Err: ErrMissingTag}
			}
			continue
		}
		out = append(out, t)
	}
	for _, tag := range contactlessTags {
		if t, ok := d.find(tag); ok {
			out = append(out, t)
		}
	}
	b, err := bertlv.Encode(out)
	if err != nil {
		return nil, fmt.Errorf("%w: field 55 does not encode", ErrFormat)
	}
	if len(b) > MaxDE55 {
		return nil, fmt.Errorf("%w: field 55 is %d bytes, at most %d", ErrTooLong, len(b), MaxDE55)
	}
	return b, nil
}

// maxIssuerData is the most issuer data FNC carries (999 hex characters).
const maxIssuerData = 499

// IssuerData picks from the host's field 55 (BER-TLV) what goes back to the
// card in FNC: the issuer authentication data (91) and the issuer scripts
// (71, then 72): 91 first, then the 71 scripts, then the 72 scripts, each
// in the host's order. A script that would take the total
// past what FNC carries (499 bytes) is left out, as EMV lets a terminal do
// with scripts beyond its limit; dropped says how many. Empty or nil input
// yields nil.
func IssuerData(field55 []byte) (data []byte, dropped int, err error) {
	if len(field55) == 0 {
		return nil, 0, nil
	}
	d, err := Parse(field55)
	if err != nil {
		return nil, 0, err
	}
	var out []bertlv.TLV
	size := 0
	for _, pass := range []string{"91", "71", "72"} {
		for _, t := range d.tlvs {
			if t.Tag != pass {
				continue
			}
			b, err := bertlv.Encode([]bertlv.TLV{t})
			if err != nil {
				return nil, 0, &TagError{Tag: t.Tag, Err: ErrFormat}
			}
			switch {
			case t.Tag == "91" && (len(t.Value) < 8 || len(t.Value) > 16):
				return nil, 0, &TagError{Tag: "91", Err: fmt.Errorf("%w: issuer authentication data must be 8 to 16 bytes", ErrFormat)}
			case t.Tag == "91" && len(out) > 0:
				continue // one 91 only
			case size+len(b) > maxIssuerData:
				dropped++
				continue
			}
			size += len(b)
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, dropped, nil
	}
	data, err = bertlv.Encode(out)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: issuer data does not encode", ErrFormat)
	}
	return data, dropped, nil
}
