package ceremony_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/ceremony"
	"github.com/posd-dev/posd/hsm/tr31"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openSoft opens the soft key store of keyFile, closed when the test ends.
func openSoft(t *testing.T, keyFile string) *ceremony.Keys {
	t.Helper()
	k, err := ceremony.OpenSoft(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// TestLoadRefuses: the rules every backend gets from a ceremony, checked before a key is
// stored, and nothing stored when they refuse.
func TestLoadRefuses(t *testing.T) {
	ctx := context.Background()
	keyFile := filepath.Join(t.TempDir(), "data.key")
	k := openSoft(t, keyFile)
	a := mustHex(t, "0123456789ABCDEFFEDCBA9876543210")
	b := mustHex(t, "1111111111111111AAAAAAAAAAAAAAAA")
	ab := make([]byte, len(a))
	for i := range ab {
		ab[i] = a[i] ^ b[i]
	}
	for _, c := range []struct {
		name  string
		comps [][]byte
		kcv   []byte
		want  error
		text  string
	}{
		{"all zeros", [][]byte{a, b, ab}, nil, ceremony.ErrZeroKey, "all zeros"},
		{"same twice", [][]byte{a, b, bytes.Clone(a)}, nil, nil, "component 3 is the same as component 1"},
		{"short", [][]byte{a, b[:8]}, nil, nil, "component 2 has 8 bytes, not 16"},
		{"check value", [][]byte{a, b}, []byte{0, 0, 0}, hsm.ErrCheckValue, "check value is not 000000"},
	} {
		_, err := k.Load(ctx, hsm.LoadRequest{ID: "kbpk", Algorithm: hsm.TDES2, Usage: hsm.UsageKBPK, Components: c.comps, CheckValue: c.kcv})
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v, want %q", c.name, err, c.text)
		}
		if _, ok, _ := k.Existing(ctx, "kbpk"); ok {
			t.Fatalf("%s: a key was stored", c.name)
		}
	}
	if _, err := os.Stat(keyFile + ".keys"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused load wrote the key file: %v", err)
	}
}

// TestSoftFilesKeepKeys: what a ceremony loads and imports into the soft backend is there
// when its files are opened again, with the same check values, and import checks its KBPK.
func TestSoftFilesKeepKeys(t *testing.T) {
	ctx := context.Background()
	keyFile := filepath.Join(t.TempDir(), "data.key")
	k := openSoft(t, keyFile)
	if !k.MissingSoftDataKey() {
		t.Error("a new soft store has a data key")
	}
	c1 := mustHex(t, "0123456789ABCDEFFEDCBA98765432100123456789ABCDEFFEDCBA9876543210")
	c2 := mustHex(t, "1111111111111111AAAAAAAAAAAAAAAA2222222222222222BBBBBBBBBBBBBBBB")
	if _, _, err := k.CanLoad(ctx, "kbpk", hsm.AES256, hsm.UsageKBPK, false); err != nil {
		t.Fatal(err)
	}
	kbpk, err := k.Load(ctx, hsm.LoadRequest{ID: "kbpk", Algorithm: hsm.AES256, Usage: hsm.UsageKBPK, Components: [][]byte{c1, c2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.CanLoad(ctx, "kbpk", hsm.AES256, hsm.UsageKBPK, false); err == nil || !strings.Contains(err.Error(), "add --replace") {
		t.Errorf("loading over a key without replace: %v", err)
	}
	value := make([]byte, 32)
	for i := range value {
		value[i] = c1[i] ^ c2[i]
	}
	dataKey := mustHex(t, "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF")
	block, err := tr31.Wrap(value, tr31.Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}, dataKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := k.Import(ctx, hsm.ImportRequest{ID: ceremony.DataKeyID, KBPKID: "nope", Block: block}); err == nil || !strings.Contains(err.Error(), `no key "nope"`) {
		t.Errorf("import under a missing KBPK: %v", err)
	}
	data, _, exists, err := k.Import(ctx, hsm.ImportRequest{ID: ceremony.DataKeyID, KBPKID: "kbpk", Block: block})
	if err != nil || exists {
		t.Fatalf("import: %v exists %v", err, exists)
	}
	if _, _, _, err := k.Import(ctx, hsm.ImportRequest{ID: "other", KBPKID: ceremony.DataKeyID, Block: block}); err == nil || !strings.Contains(err.Error(), "not a key block protection key") {
		t.Errorf("import under a data key: %v", err)
	}
	k.Close() // clears the keys in memory: what follows comes from the files

	file, err := ceremony.SoftDataKey(keyFile)
	if err != nil || !bytes.Equal(file, dataKey) {
		t.Fatalf("data key file: %x %v", file, err)
	}
	k2 := openSoft(t, keyFile)
	for _, want := range []hsm.KeyInfo{kbpk, data} {
		got, ok, err := k2.Existing(ctx, want.ID)
		if err != nil || !ok || got.String() != want.String() {
			t.Errorf("reopened: %v %v %v, want %v", got, ok, err, want)
		}
	}
	if k2.MissingSoftDataKey() {
		t.Error("reopened: no data key")
	}
}

// TestSoftFilesChecked: an edited .keys file is refused with its line, not loaded.
func TestSoftFilesChecked(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "data.key")
	if err := os.WriteFile(keyFile+".keys", []byte("# comment\nmac mac AES-128 00112233\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ceremony.OpenSoft(keyFile)
	if err == nil || !strings.Contains(err.Error(), "line 2: the value of key \"mac\" is not 32 hex digits") {
		t.Errorf("OpenSoft: %v", err)
	}
}

func TestParseComponent(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0123 4567 89AB CDEF FEDC BA98 7654 3210\r", ""},
		{"0123", "component 2 has 4 hex digits, not 32"},
		{"XY23456789ABCDEFFEDCBA9876543210", "component 2 is not hexadecimal"},
		{strings.Repeat("0", 32), "component 2 is all zeros"},
	} {
		got, err := ceremony.ParseComponent([]byte(c.in), 2, hsm.TDES2)
		if c.want == "" && (err != nil || len(got) != 16) {
			t.Errorf("%q: %x %v", c.in, got, err)
		}
		if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), c.in)) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
}
