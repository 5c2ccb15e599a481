package padsim

import (
	"errors"
	"fmt"
	"github.com/posd-dev/posd/internal/atomicfile"
	"io/fs"
	"os"
	"strings"

	"github.com/posd-dev/posd/hsm/dukpt"
)

// The state file holds one line: the KSN of the last PIN key used, as 20
// hexadecimal digits. A KSN is not secret.

// loadState returns the KSN saved at path, or initial if the file does not
// exist. The saved KSN must belong to the same initial key as initial (equal
// but for the counter).
func loadState(path string, initial dukpt.KSN) (dukpt.KSN, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return initial, nil
	}
	if err != nil {
		return dukpt.KSN{}, fmt.Errorf("padsim: state file: %w", err)
	}
	saved, err := dukpt.ParseKSN(strings.TrimSpace(string(b)))
	if err != nil {
		return dukpt.KSN{}, fmt.Errorf("padsim: state file %s: %w; delete it to start again from the initial KSN", path, err)
	}
	if saved.WithCounter(0) != initial.WithCounter(0) {
		return dukpt.KSN{}, fmt.Errorf("padsim: state file %s holds KSN %v, which is not from the initial KSN %v; delete it or use another file", path, saved, initial)
	}
	if saved.Counter() < initial.Counter() {
		return initial, nil
	}
	return saved, nil
}

// saveState replaces the file at path with ksn: it writes a temporary file
// in the same directory, syncs it and renames it over path.
func saveState(path string, ksn dukpt.KSN) error {
	if err := atomicfile.WriteFile(path, []byte(ksn.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("padsim: state file: %w", err)
	}
	return nil
}
