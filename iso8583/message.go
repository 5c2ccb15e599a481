package iso8583

import (
	"bytes"
	"fmt"
	"iter"
	"log/slog"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/moov-io/iso8583/field"
)

// Message is an ISO 8583 message on a [MessageSpec]: its MTI and its fields' values. Build
// one with [NewMessage] and its setters, or with [Authorization.Message] and the other
// builders; turn it into bytes with [Pack] and back with [Unpack]. Set text fields with
// Field and binary ones (52, 55, 64, 96, 128) with BinaryField, as bytes; GetString returns
// a binary field as upper-case hexadecimal.
//
// Each value is kept as bytes in its value form (text as its characters, binary as its
// bytes) in one buffer that only grows: an unpacked message holds one copy of what came
// and the values decoded from it, so reading a field allocates nothing ([Message.Bytes]).
// Fields the codec of this package does not handle (composite fields of a dialect, moov's
// own field types in a spec of the caller's) are kept as moov fields.
//
// Printing a message (fmt's %v, %s, %#v, slog, json.Marshal) gives its masked [Summary] or
// [MarshalJSON]: never its card data.
//
// The zero Message is not usable: make one with NewMessage (or Unpack).
//
// A Message is not safe for concurrent use while it is being changed; once built, it is
// safe to read (get, pack, describe) from several goroutines at once.
type Message struct {
	// The pointers come first, so that the garbage collector scans them alone.
	spec  *MessageSpec
	tab   *table
	buf   []byte              // every value, appended; nothing in it is ever overwritten
	other map[int]field.Field // fields kept as moov fields (kindOther)
	many  []span              // the spans, once more than inlineSpans fields are present
	set   [3]uint64           // the fields present: bit id (0 is the MTI)
	n     int                 // the number of fields present
	few   [inlineSpans]span   // the spans of the first inlineSpans fields present
}

// span is a value's place in a message's buffer. A message keeps one span per field
// present, in the order of the field numbers, so that field id's is at the rank of bit id
// in the presence bitmap. A field kept as a moov field has an empty span.
type span struct{ off, end uint32 }

// inlineSpans is how many fields a message holds without a second allocation: a chip
// sale has 16.
const inlineSpans = 24

// spans returns the message's spans, in field order.
func (m *Message) spans() []span {
	if m.many != nil {
		return m.many[:m.n]
	}
	return m.few[:m.n]
}

// rank returns the index of field id's span: how many fields below id are present.
func (m *Message) rank(id int) int {
	w := id / 64
	r := bits.OnesCount64(m.set[w] & (1<<(id%64) - 1))
	for i := range w {
		r += bits.OnesCount64(m.set[i])
	}
	return r
}

// span returns the span of present field id.
func (m *Message) span(id int) span { return m.spans()[m.rank(id)] }

// setSpan makes s the span of field id, marking it present.
func (m *Message) setSpan(id int, s span) {
	r := m.rank(id)
	if m.Has(id) {
		m.spans()[r] = s
		return
	}
	if m.many == nil && m.n == inlineSpans {
		m.many = make([]span, inlineSpans, maxField+1)
		copy(m.many, m.few[:])
	}
	if m.many != nil {
		m.many = append(m.many, span{})
	}
	m.n++
	sp := m.spans()
	copy(sp[r+1:], sp[r:len(sp)-1])
	sp[r] = s
	m.set[id/64] |= 1 << (id % 64)
}

// NewMessage returns an empty message on spec; a nil spec means the [DefaultSpec] dialect.
// The spec must not be changed once a message uses it.
func NewMessage(spec *MessageSpec) *Message {
	if spec == nil {
		spec = defaultSpec()
	}
	return &Message{spec: spec, tab: tableFor(spec)}
}

// GetSpec returns the message's spec, which callers must treat as read-only.
func (m *Message) GetSpec() *MessageSpec { return m.spec }

// MTI sets the message type indicator (field 0), e.g. "0200". It is checked when the
// message is packed.
func (m *Message) MTI(v string) {
	if m.tab.defs[0].kind == kindOther {
		_ = m.setOther(0, []byte(v))
		return
	}
	m.putString(0, v)
}

// GetMTI returns the message type indicator, "" when it is not set.
func (m *Message) GetMTI() (string, error) { return m.GetString(0) }

// Field sets field id to v. For a text field v is its characters; for a binary field its
// bytes (use BinaryField). A field the spec does not define is a [*FieldError] wrapping
// [ErrUnsupportedField]; the value itself is checked when the message is packed.
func (m *Message) Field(id int, v string) error {
	switch d, err := m.def(id, "set"); {
	case err != nil:
		return err
	case d.kind == kindOther:
		return m.setOther(id, []byte(v))
	}
	m.putString(id, v)
	return nil
}

// BinaryField sets field id to v, which the message copies. For a binary field v is its
// bytes; for a text field its characters. A field the spec does not define is a
// [*FieldError] wrapping [ErrUnsupportedField].
func (m *Message) BinaryField(id int, v []byte) error {
	switch d, err := m.def(id, "set"); {
	case err != nil:
		return err
	case d.kind == kindOther:
		return m.setOther(id, bytes.Clone(v))
	}
	m.put(id, v)
	return nil
}

// GetString returns field id as a string: a text field's characters, a binary field as
// upper-case hexadecimal; "" when the field is absent. A field the spec does not define is
// a [*FieldError].
func (m *Message) GetString(id int) (string, error) {
	d, err := m.def(id, "get")
	if err != nil || !m.Has(id) {
		return "", err
	}
	switch d.kind {
	case kindOther:
		s, err := m.other[id].String()
		if err != nil {
			return "", &FieldError{Field: id, Op: "get", Err: err}
		}
		return s, nil
	case kindBinary:
		v, _ := m.Bytes(id)
		const hexdigits = "0123456789ABCDEF"
		out := make([]byte, 2*len(v))
		for i, b := range v {
			out[2*i], out[2*i+1] = hexdigits[b>>4], hexdigits[b&0x0f]
		}
		return string(out), nil
	}
	v, _ := m.Bytes(id)
	if id == 0 {
		return mtiString(v), nil
	}
	return string(v), nil
}

// mtiString returns v as a string, without allocating for the MTIs of the terminal's
// message set.
func mtiString(v []byte) string {
	for _, mti := range messageSetMTIs {
		if string(v) == mti {
			return mti
		}
	}
	return string(v)
}

// messageSetMTIs are the MTIs of the terminal's message set, requests and responses.
var messageSetMTIs = [...]string{"0100", "0110", "0200", "0210", "0220", "0221", "0230", "0320", "0330",
	"0400", "0401", "0410", "0420", "0421", "0430", "0500", "0510", "0800", "0810"}

// text is GetString for this package's own reading: a text field's string shares the
// message's buffer instead of copying it. That is sound because nothing ever writes into
// the buffer below its length (values are appended; [Message.Bytes] tells callers not to
// change what it returns), so the string's bytes never change.
func (m *Message) text(id int) (string, error) {
	if id >= 0 && id <= maxField && m.tab.defs[id].kind == kindText {
		v, ok := m.Bytes(id)
		if !ok || len(v) == 0 {
			return "", nil
		}
		if id == 0 {
			return mtiString(v), nil
		}
		return unsafe.String(&v[0], len(v)), nil
	}
	return m.GetString(id)
}

// GetBytes returns a copy of field id's value (see [Message.Bytes]); nil when the field is
// absent. A field the spec does not define is a [*FieldError].
func (m *Message) GetBytes(id int) ([]byte, error) {
	if _, err := m.def(id, "get"); err != nil {
		return nil, err
	}
	v, ok := m.Bytes(id)
	if !ok {
		return nil, nil
	}
	return bytes.Clone(v), nil
}

// Bytes returns field id's value and whether the field is present: a text field's
// characters, a binary field's bytes, a composite field's subfields packed (without its
// own length prefix). The slice is the message's own memory: do not change it. It stays
// valid, unchanged, when the field is set again or unset.
func (m *Message) Bytes(id int) ([]byte, bool) {
	if !m.Has(id) {
		return nil, false
	}
	if m.tab.defs[id].kind == kindOther {
		v, err := m.other[id].Bytes()
		return v, err == nil
	}
	s := m.span(id)
	return m.buf[s.off:s.end:s.end], true
}

// Composite returns composite field id as moov's field.Composite, to read or set its
// subfields (Unmarshal, Marshal); nil when the field is absent or not a composite. It is the
// message's own: changing it changes the message.
func (m *Message) Composite(id int) *field.Composite {
	if !m.Has(id) {
		return nil
	}
	c, _ := m.other[id].(*field.Composite)
	return c
}

// Has reports whether field id is present (0 is the MTI).
func (m *Message) Has(id int) bool {
	return id >= 0 && id <= maxField && m.set[id/64]&(1<<(id%64)) != 0
}

// Present returns the numbers of the fields present, MTI and bitmap left out (2 to 128),
// in ascending order. The message may be changed during the iteration; a field set then
// may or may not be seen.
func (m *Message) Present() iter.Seq[int] {
	return func(yield func(int) bool) {
		for w := range m.set {
			word := m.set[w]
			if w == 0 {
				word &^= 3
			}
			for word != 0 {
				i := bits.TrailingZeros64(word)
				word &^= 1 << i
				if !yield(64*w + i) {
					return
				}
			}
		}
	}
}

// UnsetField removes field id, if present.
func (m *Message) UnsetField(id int) {
	if !m.Has(id) {
		return
	}
	sp := m.spans()
	r := m.rank(id)
	copy(sp[r:], sp[r+1:])
	m.n--
	if m.many != nil {
		m.many = m.many[:m.n]
	}
	m.set[id/64] &^= 1 << (id % 64)
	delete(m.other, id)
}

// UnsetFields removes each of the fields ids.
func (m *Message) UnsetFields(ids ...int) {
	for _, id := range ids {
		m.UnsetField(id)
	}
}

// String returns [Summary] of the message: masked.
func (m *Message) String() string { return Summary(m) }

// GoString returns [Summary] of the message, so that %#v shows no card data either.
func (m *Message) GoString() string { return Summary(m) }

// LogValue implements slog.LogValuer: the message's [Summary].
func (m *Message) LogValue() slog.Value { return slog.StringValue(Summary(m)) }

// MarshalJSON returns the masked JSON form of the message ([MarshalJSON]).
func (m *Message) MarshalJSON() ([]byte, error) { return MarshalJSON(m) }

// put sets codec field id to a copy of v.
func (m *Message) put(id int, v []byte) {
	m.grow(len(v))
	off := len(m.buf)
	m.buf = append(m.buf, v...)
	m.setSpan(id, span{uint32(off), uint32(len(m.buf))})
}

// putString is put for a string.
func (m *Message) putString(id int, v string) {
	m.grow(len(v))
	off := len(m.buf)
	m.buf = append(m.buf, v...)
	m.setSpan(id, span{uint32(off), uint32(len(m.buf))})
}

// grow makes room for n more bytes in the buffer; the first value gets room for a whole
// request's (a chip sale's values take about 400 bytes).
func (m *Message) grow(n int) {
	if m.buf == nil {
		m.buf = make([]byte, 0, max(512, n))
	}
}

// setOther sets field id, one the codec does not handle, through a moov field of its own,
// which keeps v.
func (m *Message) setOther(id int, v []byte) error {
	f := field.NewInstanceOf(m.tab.defs[id].proto)
	if err := f.SetBytes(v); err != nil {
		return &FieldError{Field: id, Op: "set", Err: err}
	}
	m.keepOther(id, f)
	return nil
}

// keepOther makes f field id's value.
func (m *Message) keepOther(id int, f field.Field) {
	if m.other == nil {
		m.other = make(map[int]field.Field)
	}
	m.other[id] = f
	m.setSpan(id, span{})
}

// def returns the definition of field id, or a [*FieldError] for op when the spec does
// not define it.
func (m *Message) def(id int, op string) (*fieldDef, error) {
	if id < 0 || id > maxField || m.tab.defs[id].kind == kindNone {
		return nil, &FieldError{Field: id, Op: op, Err: fmt.Errorf("%w: not defined in the spec", ErrUnsupportedField)}
	}
	if id == 1 {
		return nil, &FieldError{Field: id, Op: op, Err: fmt.Errorf("%w: the bitmap follows from the fields present", ErrUnsupportedField)}
	}
	return &m.tab.defs[id], nil
}

// appendField appends the wire form of present field id to dst.
func (m *Message) appendField(dst []byte, id int) ([]byte, error) {
	d := &m.tab.defs[id]
	if d.kind == kindOther {
		return packField(dst, id, m.other[id])
	}
	if d.kind != kindText && d.kind != kindBinary {
		return nil, &FieldError{Field: id, Op: "pack", Err: fmt.Errorf("%w: not defined in the spec", ErrUnsupportedField)}
	}
	s := m.span(id)
	out, err := appendPacked(d.c, dst, m.buf[s.off:s.end:s.end], d.fs) // a padder may append to the value
	if err != nil {
		return nil, &FieldError{Field: id, Op: "pack", Err: err}
	}
	return out, nil
}

// checkField returns the error appendField would return for present field id, without
// packing a field of this package's codec.
func (m *Message) checkField(id int) error {
	d := &m.tab.defs[id]
	if d.kind != kindText && d.kind != kindBinary {
		var scratch [512]byte
		_, err := m.appendField(scratch[:0], id)
		return err
	}
	s := m.span(id)
	if err := checkPacked(d.c, m.buf[s.off:s.end:s.end], d.fs); err != nil {
		return &FieldError{Field: id, Op: "pack", Err: err}
	}
	return nil
}

// fieldKind is how a message keeps a field of its spec.
type fieldKind uint8

const (
	kindNone   fieldKind = iota // not defined in the spec
	kindText                    // a moov String whose packer and unpacker are this package's codec
	kindBinary                  // a moov Binary whose packer and unpacker are this package's codec
	kindBitmap                  // field 1
	kindOther                   // any other moov field (a composite): kept as a moov field
)

// fieldDef is one field of a compiled spec.
type fieldDef struct {
	kind   fieldKind
	binary bool // a moov Binary (whatever its packer)
	c      codec
	fs     *field.Spec
	proto  field.Field
}

// name returns the field's description in the spec.
func (d *fieldDef) name() string {
	if d.fs != nil {
		return d.fs.Description
	}
	return ""
}

// table is a spec compiled for messages: each field's kind and codec by number, no map
// lookups. It is built once per spec and never changed.
type table struct {
	defs      [maxField + 1]fieldDef
	validErr  error // spec.Validate's
	hexBitmap bool
	bitmapOK  bool
}

// tables caches each spec's table, for as long as the spec lives. With recentTables it is
// the package's only shared state, a cache: a spec must not change once a message uses it.
var tables sync.Map // weak.Pointer[MessageSpec] -> *table

// recentTables are the specs and tables tableFor found last, found again without a map
// lookup: a program uses one spec or a few (the daemon's, a simulator's). They keep those
// few specs alive (a table must not: the cache would keep every spec).
var (
	recentTables [4]atomic.Pointer[specTable]
	nextRecent   atomic.Uint32
)

type specTable struct {
	spec *MessageSpec
	tab  *table
}

// tableFor returns spec's table, compiling it on first use.
func tableFor(spec *MessageSpec) *table {
	for i := range recentTables {
		if st := recentTables[i].Load(); st != nil && st.spec == spec {
			return st.tab
		}
	}
	key := weak.Make(spec)
	v, ok := tables.Load(key)
	if !ok {
		var loaded bool
		if v, loaded = tables.LoadOrStore(key, compile(spec)); !loaded {
			runtime.AddCleanup(spec, func(k weak.Pointer[MessageSpec]) { tables.Delete(k) }, key)
		}
	}
	t := v.(*table)
	recentTables[nextRecent.Add(1)%uint32(len(recentTables))].Store(&specTable{spec, t})
	return t
}

// compile builds spec's table.
func compile(spec *MessageSpec) *table {
	t := &table{validErr: spec.Validate()}
	hexBitmap, err := bitmapForm(spec, "pack")
	t.hexBitmap, t.bitmapOK = hexBitmap, err == nil
	for id, f := range spec.Fields {
		if id < 0 || id > maxField || f == nil {
			continue
		}
		d := &t.defs[id]
		d.proto, d.fs = f, f.Spec()
		_, d.binary = f.(*field.Binary)
		d.kind = kindOther
		if id == 1 {
			d.kind = kindBitmap
			continue
		}
		if d.fs == nil {
			continue
		}
		pc, pok := d.fs.Packer.(codec)
		uc, uok := d.fs.Unpacker.(codec)
		if !pok || !uok || pc != uc {
			continue
		}
		switch f.(type) {
		case *field.String:
			d.kind, d.c = kindText, pc
		case *field.Binary:
			d.kind, d.c = kindBinary, pc
		}
	}
	return t
}
