package iso8583_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/posd-dev/posd/iso8583"
)

// Fields set in any order are present in numeric order; unsetting one keeps the values of
// the others (the message keeps its values densely, by the rank of their bit).
func TestMessageFieldsInAnyOrder(t *testing.T) {
	m := iso8583.NewMessage(nil)
	m.MTI("0200")
	want := map[int]string{}
	for _, id := range []int{49, 3, 41, 11, 128, 4, 70, 2, 12} {
		v := fmt.Sprintf("%d", 1000+id)
		if id == 128 {
			if err := m.BinaryField(id, []byte{0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 1}); err != nil {
				t.Fatal(err)
			}
			want[id] = "DEADBEEF00000001"
			continue
		}
		if err := m.Field(id, v); err != nil {
			t.Fatal(err)
		}
		want[id] = v
	}
	check := func(when string) {
		t.Helper()
		var ids []int
		for id := range m.Present() {
			ids = append(ids, id)
		}
		wantIDs := make([]int, 0, len(want))
		for id := range want {
			wantIDs = append(wantIDs, id)
		}
		slices.Sort(wantIDs)
		if !slices.Equal(ids, wantIDs) {
			t.Fatalf("%s: Present = %v, want %v", when, ids, wantIDs)
		}
		for id, v := range want {
			if got, err := m.GetString(id); err != nil || got != v {
				t.Errorf("%s: field %d = %q, %v; want %q", when, id, got, err, v)
			}
		}
		if mti, _ := m.GetMTI(); mti != "0200" {
			t.Errorf("%s: MTI %q", when, mti)
		}
	}
	check("set")
	for _, id := range []int{11, 2, 128} {
		m.UnsetField(id)
		delete(want, id)
		if m.Has(id) {
			t.Errorf("field %d present after UnsetField", id)
		}
		check(fmt.Sprintf("after unsetting %d", id))
	}
	m.UnsetField(11) // absent: nothing happens
	check("after unsetting an absent field")
	if err := m.Field(3, "999999"); err != nil { // set again
		t.Fatal(err)
	}
	want[3] = "999999"
	check("after setting 3 again")
}

// A message with more fields than it holds inline packs and reads back the same.
func TestMessageManyFields(t *testing.T) {
	m := iso8583.NewMessage(nil)
	m.MTI("0800")
	var ids []int
	for id := 2; id <= 128; id++ {
		if id == 65 || iso8583.DefaultSpec().Fields[id] == nil {
			continue
		}
		ids = append(ids, id)
	}
	// Set from the top down, so that every value goes in front of the others.
	set := 0
	for i := len(ids) - 1; i >= 0 && set < 40; i-- {
		id := ids[i]
		err := m.Field(id, "1")
		if err != nil {
			t.Fatal(err)
		}
		set++
	}
	n := 0
	for id := range m.Present() {
		if v, ok := m.Bytes(id); !ok || string(v) != "1" {
			t.Fatalf("field %d = %q, %t", id, v, ok)
		}
		n++
	}
	if n != set {
		t.Fatalf("%d fields present, %d set", n, set)
	}
}

// A value that Bytes returned stays as it was when the field is set again or unset, and a
// change to what was set does not reach the message.
func TestMessageValuesDoNotMove(t *testing.T) {
	m := iso8583.NewMessage(nil)
	m.MTI("0200")
	v := []byte("TERM0001")
	if err := m.BinaryField(41, v); err != nil {
		t.Fatal(err)
	}
	copy(v, "XXXXXXXX")
	got, ok := m.Bytes(41)
	if !ok || string(got) != "TERM0001" {
		t.Fatalf("field 41 = %q after the caller changed its slice", got)
	}
	for i := range 100 { // enough to move the buffer
		if err := m.Field(42, strings.Repeat(fmt.Sprint(i%10), 15)); err != nil {
			t.Fatal(err)
		}
	}
	m.UnsetField(41)
	if string(got) != "TERM0001" {
		t.Fatalf("a value read before changed to %q", got)
	}
	// Field 42's value is the last in the buffer; 43's goes right after it. An append to
	// the value Bytes gave must not reach 43's.
	if err := m.Field(43, "NEXT"); err != nil {
		t.Fatal(err)
	}
	v42, _ := m.Bytes(42)
	_ = append(v42, 'Z', 'Z')
	if s, _ := m.GetString(43); s != "NEXT" {
		t.Fatalf("field 43 = %q after an append to field 42's value", s)
	}
}

// Convert to the message's own spec is a copy: changing it leaves the original alone.
func TestConvertSameSpecCopies(t *testing.T) {
	m, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	before, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	spec := iso8583.DefaultSpec()
	c, err := iso8583.Convert(m, spec)
	if err != nil {
		t.Fatal(err)
	}
	c.MTI("0100")
	c.UnsetField(4)
	if err := c.Field(41, "OTHER001"); err != nil {
		t.Fatal(err)
	}
	after, err := iso8583.Pack(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("changing a converted copy changed the original")
	}
	if s, _ := c.GetString(41); s != "OTHER001" || c.Has(4) {
		t.Fatalf("the copy: 41 = %q, 4 present %t", s, c.Has(4))
	}
}

// A field the spec does not define is refused by name, and GetString of an absent field is
// empty without an error, as moov's Message did.
func TestMessageUndefinedField(t *testing.T) {
	spec := iso8583.DefaultSpec()
	delete(spec.Fields, 48)
	m := iso8583.NewMessage(spec)
	var fe *iso8583.FieldError
	if err := m.Field(48, "X"); !errors.As(err, &fe) || fe.Field != 48 || !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Fatalf("Field(48) on a spec without it: %v", err)
	}
	if err := m.BinaryField(129, []byte{1}); !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Fatalf("BinaryField(129): %v", err)
	}
	if _, err := m.GetString(48); !errors.Is(err, iso8583.ErrUnsupportedField) {
		t.Fatalf("GetString(48): %v", err)
	}
	if s, err := m.GetString(11); s != "" || err != nil {
		t.Fatalf("GetString of an absent field = %q, %v", s, err)
	}
	if b, err := m.GetBytes(11); b != nil || err != nil {
		t.Fatalf("GetBytes of an absent field = %v, %v", b, err)
	}
}

// Printing a message in any way shows its masked summary, never the PAN or track 2.
func TestMessagePrintsMasked(t *testing.T) {
	m, err := testAuth(t).Message()
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("sent", "msg", m)
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(m), fmt.Sprintf("%v %s %+v %#v", m, m, m, m), logged.String(), string(j)} {
		if strings.Contains(out, approvedPAN) || strings.Contains(out, "=3012") {
			t.Errorf("card data in %q", out)
		}
		if !strings.Contains(out, "0200") {
			t.Errorf("no MTI in %q", out)
		}
	}
}
