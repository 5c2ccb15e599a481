package iso8583

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/moov-io/iso8583/field"

	"github.com/posd-dev/posd/terminal/card"
)

// hidden replaces the value of a field that must never be shown.
const hidden = "[hidden]"

// displayValue returns what a person may see of field id: the PAN as its first 6 and last 4
// digits, tracks as that masked PAN alone, PIN, ICC and MAC data not at all.
func displayValue(id int, f field.Field) string {
	switch id {
	case 52, 55, 64, 96, 128:
		return hidden
	}
	s, err := f.String()
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
	}
	return s
}

// Describe writes msg for a person: the MTI, then one line per present field with its
// number, its name from the spec and its value. Card data is masked as [displayValue]
// describes: field 2 as first 6 + last 4 digits, tracks 2, 3 and 1 (35, 36, 45) as their masked
// PAN only, and fields 52 (PIN block), 55 (ICC data), 64, 96 and 128 (MACs) as "[hidden]".
// The KSN in field 62 is not secret and is shown.
//
// Never use moov's Describe or json.Marshal on a message for this: they mask little or
// nothing.
func Describe(w io.Writer, msg *Message) error {
	mti, _ := msg.GetMTI()
	var b strings.Builder
	fmt.Fprintf(&b, "MTI %s\n", mti)
	fields := msg.GetFields()
	ids := make([]int, 0, len(fields))
	for id := range fields {
		if id > 1 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		f := fields[id]
		name := ""
		if spec := f.Spec(); spec != nil {
			name = spec.Description
		}
		fmt.Fprintf(&b, "%3d %-42s %s\n", id, name, displayValue(id, f))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Summary returns a masked one-line summary of msg for logs: MTI, STAN, terminal id,
// amount and currency, masked PAN (from field 2 or track 2) and response code, each only
// when present. It shows no track, PIN or ICC data.
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
	add("tid", get(41))
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
	return b.String()
}
