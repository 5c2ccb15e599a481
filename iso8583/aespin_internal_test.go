package iso8583

import "testing"

// The shipped AES PIN dialect is the default dialect but for field 52: every other field has
// the same length, name and codec (class, encoding, prefix, padding), so a message packs to
// the same bytes in both.
func TestAESPINDialectIsDefaultButField52(t *testing.T) {
	d, err := LoadDialect("dialects/aes-pin.json")
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultSpec()
	if len(d.Spec.Fields) != len(def.Fields) {
		t.Fatalf("%d fields, the default dialect has %d", len(d.Spec.Fields), len(def.Fields))
	}
	for id, f := range def.Fields {
		g, ok := d.Spec.Fields[id]
		if !ok {
			t.Errorf("field %d missing", id)
			continue
		}
		fs, gs := f.Spec(), g.Spec()
		if id == 1 {
			if gs.Length != 8 {
				t.Errorf("bitmap length %d", gs.Length)
			}
			continue
		}
		fc, gc := fs.Packer.(codec), gs.Packer.(codec)
		if fc != gc || (fs.Pad == nil) != (gs.Pad == nil) {
			t.Errorf("field %d: codec %+v pad %t, default %+v pad %t", id, gc, gs.Pad != nil, fc, fs.Pad != nil)
		}
		switch {
		case id == 52:
			if gs.Length != AESPINBlockLen || !gc.fixed() || gc.class != classB {
				t.Errorf("field 52: length %d fixed %t class %s, want 16 bytes fixed b", gs.Length, gc.fixed(), gc.class)
			}
		case fs.Length != gs.Length || fs.Description != gs.Description:
			t.Errorf("field %d: length %d %q, default %d %q", id, gs.Length, gs.Description, fs.Length, fs.Description)
		}
	}
	if _, ok := d.Framer.(BinaryLengthFramer); !ok {
		t.Errorf("framer %T, want the default BinaryLengthFramer", d.Framer)
	}
}
