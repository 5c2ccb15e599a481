package iso8583

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/terminal/card"
)

// hidden replaces the value of a field that must never be shown.
const hidden = "[hidden]"

// displayValue returns what a person may see of field id: the PAN as its first 6 and last 4
// digits, tracks as that masked PAN alone, ICC data as its TLV tags with the sensitive ones
// hidden, PIN blocks and MACs not at all.
func displayValue(msg *Message, id int) string {
	switch id {
	case 52, 64, 96, 128:
		return hidden
	case 55:
		b, ok := msg.Bytes(id)
		if !ok {
			return hidden
		}
		return describeTLV(b)
	}
	s, err := msg.GetString(id)
	if err != nil {
		return "[unreadable]"
	}
	switch id {
	case 2, 34:
		return card.MaskPAN(s)
	case 35, 36:
		if pan := trackPAN(s); pan != "" {
			return card.MaskPAN(pan) + "=****"
		}
		return hidden
	case 45:
		if pan := trackPAN(s); pan != "" {
			return "B" + card.MaskPAN(pan) + "^****"
		}
		return hidden
	case 90:
		// The original data elements as their parts (MTI, STAN, field 7, the two
		// institution ids): 42 digits in one run would read as a card number to any scanner.
		if len(s) == 42 {
			return s[0:4] + " " + s[4:10] + " " + s[10:20] + " " + s[20:31] + " " + s[31:42]
		}
	}
	return s
}

// tlv is one BER-TLV data object of field 55.
type tlv struct {
	tag   string // upper-case hexadecimal
	value []byte
}

// parseTLV reads the data objects of b, a sequence of BER-TLV objects (EMV Book 3 annex B),
// without descending into constructed ones. It fails on anything that is not exactly that.
func parseTLV(b []byte) ([]tlv, bool) {
	var out []tlv
	for i := 0; i < len(b); {
		if b[i] == 0x00 || b[i] == 0xFF { // padding between objects
			i++
			continue
		}
		start := i
		if b[i]&0x1F == 0x1F {
			for i++; i < len(b) && b[i]&0x80 != 0; i++ {
				if i-start > 3 {
					return nil, false
				}
			}
		}
		i++
		if i > len(b) {
			return nil, false
		}
		tag := fmt.Sprintf("%X", b[start:i])
		if i >= len(b) {
			return nil, false
		}
		n := int(b[i])
		i++
		if n&0x80 != 0 {
			k := n & 0x7F
			if k == 0 || k > 2 || i+k > len(b) {
				return nil, false
			}
			n = 0
			for ; k > 0; k-- {
				n = n<<8 | int(b[i])
				i++
			}
		}
		if i+n > len(b) {
			return nil, false
		}
		out = append(out, tlv{tag: tag, value: b[i : i+n]})
		i += n
	}
	return out, true
}

// sensitiveTag reports whether an EMV tag's value must not be shown: cryptograms, track
// equivalents, the cardholder's name, PIN data, issuer authentication data and scripts.
// Tag 5A (the PAN) is shown masked.
func sensitiveTag(tag string) bool {
	switch tag {
	case "9F26", // application cryptogram
		"9F4B",             // signed dynamic application data
		"57", "56", "9F6B", // track 2 equivalent, track 1 and track 2 data (contactless)
		"9F1F", "9F20", // track 1 and track 2 discretionary data
		"5F20", "9F0B", // cardholder name (and its extension)
		"99",             // transaction PIN data
		"91", "71", "72", // issuer authentication data and scripts
		"9F7C", "9F60", "9F61": // customer exclusive data, CVC3 (track 1 and 2)
		return true
	}
	return false
}

// tlvValue returns what may be shown of one data object of field 55.
func tlvValue(t tlv) string {
	switch {
	case t.tag == "5A":
		return card.MaskPAN(fmt.Sprintf("%X", t.value))
	case sensitiveTag(t.tag):
		return hidden
	case len(t.tag) >= 2 && unhex(t.tag[0])&0x2 != 0: // constructed: contents not inspected
		return hidden
	}
	return fmt.Sprintf("%X", t.value)
}

// describeTLV shows field 55 as its tags; the whole field is hidden when it is not TLV.
func describeTLV(b []byte) string {
	objs, ok := parseTLV(b)
	if !ok {
		return fmt.Sprintf("[hidden: %d bytes, not TLV]", len(b))
	}
	parts := make([]string, len(objs))
	for i, o := range objs {
		parts[i] = o.tag + "=" + tlvValue(o)
	}
	return strings.Join(parts, " ")
}

// Describe writes msg for a person: the MTI, then one line per present field with its
// number, its name from the spec and its value. Card data is masked: fields 2 and 34 as
// first 6 + last 4 digits; tracks 2, 3 and 1 (35, 36, 45) as their masked PAN only; field 55
// (ICC data) as its TLV tags, with the cryptogram (9F26), track equivalents, cardholder name,
// PIN data and issuer data hidden and tag 5A masked (the whole field hidden when it is not
// TLV); fields 52 (PIN block), 64, 96 and 128 (MACs) as "[hidden]". The KSN in field 62 is
// not secret and is shown.
//
// [MarshalJSON] gives the same masked content as JSON; a message printed with fmt or slog
// shows its [Summary].
func Describe(w io.Writer, msg *Message) error {
	if msg == nil {
		_, err := io.WriteString(w, "<nil message>\n")
		return err
	}
	mti, _ := msg.GetMTI()
	var b strings.Builder
	fmt.Fprintf(&b, "MTI %s\n", mti)
	for id := range msg.Present() {
		fmt.Fprintf(&b, "%3d %-42s %s\n", id, msg.tab.defs[id].name(), displayValue(msg, id))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// MarshalJSON returns msg as JSON with card data masked as [Describe] masks it: an object
// with the MTI under "0" and each present field under its number, in numeric order, as a
// string; field 55 as an object of its TLV tags (or a string when it is hidden whole):
//
//	{"0":"0200","2":"476173******0010","3":"000000",...,"55":{"9F26":"[hidden]","9F27":"80"}}
//
// json.Marshal of a message gives the same.
func MarshalJSON(msg *Message) ([]byte, error) {
	if msg == nil {
		return []byte("null"), nil
	}
	mti, _ := msg.GetMTI()
	var b strings.Builder
	b.WriteString(`{"0":`)
	writeJSONString(&b, mti)
	for id := range msg.Present() {
		b.WriteString(`,"` + strconv.Itoa(id) + `":`)
		if id == 55 {
			if v, ok := msg.Bytes(id); ok {
				if objs, ok := parseTLV(v); ok {
					b.WriteByte('{')
					for i, o := range objs {
						if i > 0 {
							b.WriteByte(',')
						}
						writeJSONString(&b, o.tag)
						b.WriteByte(':')
						writeJSONString(&b, tlvValue(o))
					}
					b.WriteByte('}')
					continue
				}
			}
		}
		writeJSONString(&b, displayValue(msg, id))
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

func writeJSONString(b *strings.Builder, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}

// Masked wraps a message for logs: its String is [Summary], its MarshalJSON is
// [MarshalJSON] and its LogValue a string of the summary. Use it to put a message into a
// structured log (slog.Any("msg", iso8583.Masked{m})). It is safe for concurrent use if the
// message is not being changed.
type Masked struct{ Msg *Message }

// String returns Summary(m.Msg).
func (m Masked) String() string { return Summary(m.Msg) }

// MarshalJSON returns MarshalJSON(m.Msg).
func (m Masked) MarshalJSON() ([]byte, error) { return MarshalJSON(m.Msg) }

// LogValue implements slog.LogValuer.
func (m Masked) LogValue() slog.Value { return slog.StringValue(Summary(m.Msg)) }

// Summary returns a masked one-line summary of msg for logs: MTI, STAN, terminal id,
// amount and currency, masked PAN (from field 2 or track 2), response code, network
// management code and the original of a reversal, each only when present. It shows no
// track, PIN or ICC data.
func Summary(msg *Message) string {
	if msg == nil {
		return "<nil message>"
	}
	get := func(id int) string {
		s, err := msg.GetString(id)
		if err != nil {
			return ""
		}
		return s
	}
	mti, _ := msg.GetMTI()
	var b strings.Builder
	b.WriteString(mti)
	add := func(key, v string) {
		if v != "" {
			b.WriteString(" " + key + "=" + v)
		}
	}
	add("stan", get(11))
	add("tid", strings.TrimRight(get(41), " "))
	if amount := get(4); amount != "" {
		add("amount", strings.TrimLeft(amount[:len(amount)-1], "0")+amount[len(amount)-1:])
		add("cur", get(49))
	}
	pan := get(2)
	if pan == "" {
		pan = trackPAN(get(35))
	}
	if pan != "" {
		add("pan", card.MaskPAN(pan))
	}
	if rc := get(39); rc != "" {
		add("rc", rc+" ("+ResponseText(rc)+")")
	}
	if code := get(70); code != "" {
		add("nmic", code)
	}
	if o := get(90); len(o) >= 20 {
		add("orig", o[:4]+"/"+o[4:10]+"/"+o[10:20])
	}
	return b.String()
}
