package iso8583_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/posd-dev/posd/iso8583"
)

// Every shipped dialect is the file in iso8583/dialects, byte for byte, and parses.
func TestShippedDialects(t *testing.T) {
	onDisk, err := filepath.Glob("dialects/*.json")
	if err != nil || len(onDisk) == 0 {
		t.Fatalf("no dialect files found: %v", err)
	}
	names, err := fs.Glob(iso8583.ShippedDialects(), "dialects/*.json")
	if err != nil || len(names) != len(onDisk) {
		t.Fatalf("shipped %v, on disk %v (%v)", names, onDisk, err)
	}
	for _, path := range onDisk {
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fs.ReadFile(iso8583.ShippedDialects(), path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: shipped copy differs or is missing (%v)", path, err)
			continue
		}
		if _, err := iso8583.ParseDialect(got); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}
