package iso8583

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moov-io/iso8583/field"
)

// A dialect's message rules: the "messages" object of a dialect file (see [ParseDialect]).
// They say what an acquirer wants in each request beyond the built-in rules of
// [CheckMandatory]: fixed values the link adds, and fields that must or must not be there.

// wildcardMTI is the key of the rules that apply to every request.
const wildcardMTI = "*"

// fixedValue is one value a dialect adds to requests that lack the field.
type fixedValue struct {
	id    int
	value []byte // the text of a text field, the bytes of a b field
}

// messageRule is what a dialect asks of the requests of one MTI, the file's own entry for
// the MTI merged with "*".
type messageRule struct {
	set       []fixedValue // in field order
	mandatory []int        // sorted
	forbidden []int        // sorted
}

// messageRules is a dialect's "messages" object, parsed and checked. It is never changed
// after ParseDialect returns, so a Dialect holding it stays safe for concurrent use.
type messageRules struct {
	byMTI map[string]*messageRule // each MTI of the file, merged with "*"
	all   *messageRule            // "*" alone, for the other MTIs; nil when absent
}

// forMTI returns the rule of request MTI mti: its own entry, else the entry of the message
// it repeats (0220 for 0221, 0400 for 0401, 0420 for 0421), else "*". Nil: no rule.
func (r *messageRules) forMTI(mti string) *messageRule {
	if r == nil {
		return nil
	}
	if m, ok := r.byMTI[mti]; ok {
		return m
	}
	if len(mti) == 4 && (mti[3] == '1' || mti[3] == '3' || mti[3] == '5') {
		if m, ok := r.byMTI[mti[:3]+string(mti[3]-1)]; ok {
			return m
		}
	}
	return r.all
}

// CheckRequest checks req against the fields the dialect's "messages" object makes
// mandatory or forbidden for req's MTI (see [ParseDialect]), on top of the built-in rules
// that [CheckMandatory] checks. A dialect without "messages" accepts every request.
//
// A failure is a [*FieldError] with Op "check" naming the field, wrapping
// [ErrMissingField] or [ErrForbiddenField]; its text names the MTI and the dialect and
// never a field's value. [Client.Send] refuses such a request before anything is sent
// (after adding the dialect's fixed values, see [Dialect.PrepareRequest]); the simulated
// acquirer of package hostsim answers it with 30 (format error).
func (d *Dialect) CheckRequest(req *Message) error {
	if d == nil {
		return nil
	}
	return d.messages.check(req, d.displayName())
}

// PrepareRequest returns req as a [Client] on this dialect sends it: converted to d.Spec
// ([Convert]), with the fixed values that the dialect's "messages" object sets for req's
// MTI added where req lacks the field, then checked with [Dialect.CheckRequest]. req itself
// is never changed: the result is a copy whenever a value is added. The built-in rules
// ([CheckMandatory]) are not checked here.
func (d *Dialect) PrepareRequest(req *Message) (*Message, error) {
	if d == nil || d.Spec == nil {
		return nil, errors.New("iso8583: prepare request: nil dialect or spec")
	}
	wire, err := Convert(req, d.Spec)
	if err != nil {
		return nil, err
	}
	return d.messages.prepare(wire, d.displayName())
}

// displayName names the dialect in errors.
func (d *Dialect) displayName() string {
	if d.Name == "" {
		return "unnamed"
	}
	return d.Name
}

// prepare adds the fixed values of msg's MTI that msg lacks, on a copy, and checks the
// result. msg is returned unchanged when there is nothing to add.
func (r *messageRules) prepare(msg *Message, dialect string) (*Message, error) {
	if r == nil {
		return msg, nil
	}
	if msg == nil {
		return nil, &FieldError{Field: 0, Op: "check", Err: ErrMissingField}
	}
	mti, err := msg.GetMTI()
	if err != nil {
		return nil, &FieldError{Field: 0, Op: "check", Err: err}
	}
	rule := r.forMTI(mti)
	if rule == nil {
		return msg, nil
	}
	out := msg
	for _, fv := range rule.set {
		if msg.Has(fv.id) {
			continue // the message's own value stands
		}
		if out == msg {
			if out, err = convert(msg, msg.GetSpec()); err != nil {
				return nil, err
			}
		}
		if err := out.BinaryField(fv.id, bytes.Clone(fv.value)); err != nil {
			return nil, &FieldError{Field: fv.id, Op: "build", Err: fmt.Errorf("fixed value of dialect %q: %w", dialect, err)}
		}
	}
	if err := rule.check(out, mti, dialect); err != nil {
		return nil, err
	}
	return out, nil
}

// check checks msg against the mandatory and forbidden fields of its MTI.
func (r *messageRules) check(msg *Message, dialect string) error {
	if r == nil {
		return nil
	}
	if msg == nil {
		return &FieldError{Field: 0, Op: "check", Err: ErrMissingField}
	}
	mti, err := msg.GetMTI()
	if err != nil {
		return &FieldError{Field: 0, Op: "check", Err: err}
	}
	return r.forMTI(mti).check(msg, mti, dialect)
}

func (m *messageRule) check(msg *Message, mti, dialect string) error {
	if m == nil {
		return nil
	}
	for _, id := range m.mandatory {
		if !msg.Has(id) {
			return &FieldError{Field: id, Op: "check", Err: fmt.Errorf("%w: dialect %q requires it in every %s", ErrMissingField, dialect, mti)}
		}
	}
	for _, id := range m.forbidden {
		if msg.Has(id) {
			return &FieldError{Field: id, Op: "check", Err: fmt.Errorf("%w: dialect %q forbids it in an %s", ErrForbiddenField, dialect, mti)}
		}
	}
	return nil
}

// builderOwned reports whether the message builders own field id, so that a dialect may not
// give it a fixed value: the MTI and bitmap, card data (2, 14, 23, 34, 35, 36, 45), amounts
// and reconciliation totals (4, 5, 6, 74-77, 86-89, 97), PIN data (52, 62), ICC data (55),
// MACs (64, 96, 128) and the fields that identify a transaction or carry its decision (3,
// 7, 11, 12, 13, 22, 38, 39, 41, 42, 49, 50, 60, 70, 90).
func builderOwned(id int) bool {
	switch id {
	case 0, 1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 22, 23, 34, 35, 36, 38, 39, 41, 42, 45, 49, 50,
		52, 55, 60, 62, 64, 70, 74, 75, 76, 77, 86, 87, 88, 89, 90, 96, 97, 128:
		return true
	}
	return false
}

// messageEntry is one MTI's entry in a dialect file's "messages" object.
type messageEntry struct {
	Set       map[string]json.RawMessage `json:"set"`
	Mandatory []int                      `json:"mandatory"`
	Forbidden []int                      `json:"forbidden"`
}

// parsedEntry is a messageEntry checked against the spec.
type parsedEntry struct {
	set                  []fixedValue
	mandatory, forbidden []int
}

// parseMessages checks a dialect file's "messages" object against the dialect's spec.
// Errors are [*DialectError]s naming the setting ("messages.0200.set.43").
func parseMessages(raw map[string]json.RawMessage, spec *MessageSpec) (*messageRules, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	builtIn := ruleTable()
	requests := make([]string, 0, len(builtIn))
	for mti := range builtIn {
		requests = append(requests, mti)
	}
	slices.Sort(requests)

	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys) // "*" sorts before the digits
	entries := make(map[string]parsedEntry, len(keys))
	for _, k := range keys {
		setting := "messages." + k
		if k != wildcardMTI {
			if len(k) != 4 || classN.badChar([]byte(k)) >= 0 {
				return nil, &DialectError{Setting: setting, Err: errors.New(`a key of "messages" is an MTI of 4 digits, or "*" for every request`)}
			}
			if _, ok := builtIn[k]; !ok {
				return nil, &DialectError{Setting: setting, Err: fmt.Errorf("posd sends no %s (the requests it sends: %s)", k, strings.Join(requests, ", "))}
			}
		}
		var e messageEntry
		if err := decodeStrict(raw[k], &e); err != nil {
			return nil, &DialectError{Setting: setting, Err: err}
		}
		pe, err := parseEntry(k, e, spec, builtIn, requests)
		if err != nil {
			return nil, err
		}
		entries[k] = pe
	}

	r := &messageRules{byMTI: make(map[string]*messageRule, len(entries))}
	all, hasAll := entries[wildcardMTI]
	if hasAll {
		r.all = &messageRule{set: all.set, mandatory: all.mandatory, forbidden: all.forbidden}
	}
	for k, e := range entries {
		if k == wildcardMTI {
			continue
		}
		r.byMTI[k] = merge(all, e)
	}
	return r, nil
}

// merge returns the rule of an MTI whose own entry is own, given the "*" entry all: the
// MTI's entry wins, so a field it forbids is neither added from all's set nor required by
// all's mandatory, and a field it sets or requires is not forbidden by all's forbidden.
func merge(all, own parsedEntry) *messageRule {
	m := &messageRule{}
	ownSet := make(map[int]bool, len(own.set))
	for _, fv := range own.set {
		ownSet[fv.id] = true
	}
	for _, fv := range all.set {
		if !ownSet[fv.id] && !slices.Contains(own.forbidden, fv.id) {
			m.set = append(m.set, fv)
		}
	}
	m.set = append(m.set, own.set...)
	slices.SortFunc(m.set, func(a, b fixedValue) int { return a.id - b.id })
	for _, id := range all.mandatory {
		if !slices.Contains(own.forbidden, id) {
			m.mandatory = append(m.mandatory, id)
		}
	}
	m.mandatory = sortedUnique(append(m.mandatory, own.mandatory...))
	for _, id := range all.forbidden {
		if !ownSet[id] && !slices.Contains(own.mandatory, id) {
			m.forbidden = append(m.forbidden, id)
		}
	}
	m.forbidden = sortedUnique(append(m.forbidden, own.forbidden...))
	return m
}

func sortedUnique(ids []int) []int {
	slices.Sort(ids)
	return slices.Compact(ids)
}

// parseEntry checks the entry of MTI k ("*" for every request).
func parseEntry(k string, e messageEntry, spec *MessageSpec, builtIn map[string]rule, requests []string) (parsedEntry, error) {
	setting := "messages." + k
	var pe parsedEntry
	// The MTIs the entry applies to, for the checks against the built-in rules.
	mtis := []string{k}
	if k == wildcardMTI {
		mtis = requests
	}
	var err error
	if pe.mandatory, err = parseIDs(e.Mandatory, spec, setting+".mandatory"); err != nil {
		return pe, err
	}
	if pe.forbidden, err = parseIDs(e.Forbidden, spec, setting+".forbidden"); err != nil {
		return pe, err
	}
	for _, id := range pe.forbidden {
		if slices.Contains(pe.mandatory, id) {
			return pe, &DialectError{Setting: setting + ".forbidden", Err: fmt.Errorf("field %d is also mandatory", id)}
		}
		for _, mti := range mtis {
			if slices.Contains(builtIn[mti].mandatory, id) {
				return pe, &DialectError{Setting: setting + ".forbidden", Err: fmt.Errorf("field %d is mandatory in every %s (built-in rule): forbidding it would refuse them all", id, mti)}
			}
		}
	}
	for _, id := range pe.mandatory {
		for _, mti := range mtis {
			if slices.Contains(builtIn[mti].forbidden, id) {
				return pe, &DialectError{Setting: setting + ".mandatory", Err: fmt.Errorf("field %d must never be in an %s (built-in rule: no track or PIN data after authorization)", id, mti)}
			}
		}
	}

	ids := make([]int, 0, len(e.Set))
	byID := make(map[int]json.RawMessage, len(e.Set))
	for key, v := range e.Set {
		id, err := fieldKey(key)
		if err != nil {
			return pe, &DialectError{Setting: setting + ".set." + key, Err: err}
		}
		ids = append(ids, id)
		byID[id] = v
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := setting + ".set." + strconv.Itoa(id)
		v, err := parseFixedValue(id, byID[id], spec)
		if err != nil {
			return pe, &DialectError{Setting: s, Err: err}
		}
		if slices.Contains(pe.forbidden, id) {
			return pe, &DialectError{Setting: s, Err: fmt.Errorf("field %d is also forbidden", id)}
		}
		pe.set = append(pe.set, fixedValue{id: id, value: v})
	}
	return pe, nil
}

// fieldKey reads a field number written as a key of "set".
func fieldKey(key string) (int, error) {
	id, err := strconv.Atoi(key)
	if err != nil || strconv.Itoa(id) != key {
		return 0, errors.New("a key of \"set\" is a field number")
	}
	return id, nil
}

// checkFieldID checks that id may appear in a rule: 2 to 128, not 65, defined in spec.
func checkFieldID(id int, spec *MessageSpec) error {
	switch {
	case id < 2 || id > maxField:
		return fmt.Errorf("field %d: fields are numbered 2 to %d here (0 is the MTI, 1 the bitmap)", id, maxField)
	case id == 65:
		return errors.New("field 65: the tertiary bitmap indicator is not supported")
	}
	if _, ok := spec.Fields[id]; !ok {
		return fmt.Errorf("field %d is not defined in the dialect's \"fields\"", id)
	}
	return nil
}

// parseIDs checks a "mandatory" or "forbidden" list and returns it sorted.
func parseIDs(ids []int, spec *MessageSpec, setting string) ([]int, error) {
	out := slices.Clone(ids)
	slices.Sort(out)
	for i, id := range out {
		if err := checkFieldID(id, spec); err != nil {
			return nil, &DialectError{Setting: setting, Err: err}
		}
		if i > 0 && out[i-1] == id {
			return nil, &DialectError{Setting: setting, Err: fmt.Errorf("field %d listed twice", id)}
		}
	}
	return out, nil
}

// parseFixedValue checks the value of field id in a "set" object: text for a text field,
// hexadecimal digits for a b field, which must pack in the field as spec defines it.
func parseFixedValue(id int, raw json.RawMessage, spec *MessageSpec) ([]byte, error) {
	if err := checkFieldID(id, spec); err != nil {
		return nil, err
	}
	if builderOwned(id) {
		return nil, fmt.Errorf("field %d is set by posd's message builders (card, amount, PIN, MAC or transaction data): a dialect may not give it a fixed value", id)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("field %d: the value must be a JSON string", id)
	}
	if s == "" {
		return nil, fmt.Errorf("field %d: empty value", id)
	}
	f := spec.Fields[id]
	v := []byte(s)
	if _, bin := f.(*field.Binary); bin {
		if len(s)%2 != 0 || classB.badChar(v) >= 0 {
			return nil, fmt.Errorf("field %d is binary (b): write its value as hexadecimal digits, two per byte", id)
		}
		v = make([]byte, len(s)/2)
		for i := range v {
			v[i] = unhex(s[2*i])<<4 | unhex(s[2*i+1])
		}
	}
	m := NewMessage(spec)
	if err := m.BinaryField(id, v); err != nil {
		return nil, fmt.Errorf("field %d: %w", id, err)
	}
	if _, err := m.appendField(nil, id); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			err = fe.Err
		}
		name := ""
		if fs := f.Spec(); fs != nil && fs.Description != "" {
			name = " (" + fs.Description + ")"
		}
		return nil, fmt.Errorf("does not fit field %d%s: %w", id, name, err)
	}
	return v, nil
}
