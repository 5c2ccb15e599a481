package dukpt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/posd-dev/posd/internal/atomicfile"
	"io/fs"
	"os"
	"strings"
	"sync"
)

// Store keeps an originator's KSN across restarts. An originator saves the KSN of a
// transaction before it derives any key for it, so that after a crash or restart it never
// uses a counter twice. A KSN is not secret; a Store holds no key. An originator calls its
// Store from the goroutine that uses the originator; a Store shared by several must be safe
// for concurrent use.
type Store interface {
	// Load returns the KSN saved last, or nil and no error if none was.
	Load() ([]byte, error)
	// Save durably records ksn as the last KSN used; it returns only once
	// the record would survive a crash.
	Save(ksn []byte) error
}

// OriginatorOptions configures an originator; the constructor copies what it needs.
//
// A plain value: safe for concurrent use when not modified.
type OriginatorOptions struct {
	// Store persists the KSN of each transaction before its keys are
	// derived. Default: none; the counter lives in memory only and a new
	// originator starts again from the KSN given to its constructor.
	Store Store
}

// loadKSN loads a saved KSN and checks it belongs to initial: same length and
// the same bytes in the first prefix bytes, which name the initial key.
func loadKSN(s Store, initial []byte, prefix int) ([]byte, error) {
	saved, err := s.Load()
	if err != nil {
		return nil, fmt.Errorf("dukpt: loading saved ksn: %w", err)
	}
	if saved == nil {
		return nil, nil
	}
	if len(saved) != len(initial) {
		return nil, fmt.Errorf("dukpt: saved ksn is %d bytes, want %d: it is not for this key", len(saved), len(initial))
	}
	a, b := append([]byte(nil), saved...), append([]byte(nil), initial...)
	if len(a) == 10 { // TDES: the counter's 21 bits start inside byte 7
		a[7] &^= 0x1F
		b[7] &^= 0x1F
	}
	if !bytes.Equal(a[:prefix], b[:prefix]) {
		return nil, fmt.Errorf("dukpt: saved ksn %X is not from the initial ksn %X: use another state file or remove it", saved, initial)
	}
	return saved, nil
}

// FileStore is a [Store] in a file holding one line, the KSN in hexadecimal.
// Save writes a temporary file beside it, syncs it, renames it over the file
// and syncs the directory. The format is that of the PIN pad simulator's
// state file.
//
// A FileStore is safe for concurrent use, though one file should belong to
// one originator.
type FileStore struct {
	path string
	mu   sync.Mutex
}

// NewFileStore returns a store in the file at path. The file need not exist.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Load implements [Store].
func (f *FileStore) Load() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	ksn, err := hex.DecodeString(s)
	if err != nil || (len(ksn) != 10 && len(ksn) != 12) {
		return nil, fmt.Errorf("state file %s does not hold a KSN of 20 or 24 hex digits; restore it from a backup, or re-key the device", f.path)
	}
	return ksn, nil
}

// Save implements [Store].
func (f *FileStore) Save(ksn []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return atomicfile.WriteFile(f.path, fmt.Appendf(nil, "%X\n", ksn), 0o600)
}

// MemStore is a [Store] in memory, for tests and simulators that restart
// within one process. The zero value is empty and ready. It is safe for
// concurrent use.
type MemStore struct {
	mu  sync.Mutex
	ksn []byte
}

// Load implements [Store].
func (m *MemStore) Load() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.ksn...), nil
}

// Save implements [Store].
func (m *MemStore) Save(ksn []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ksn = append(m.ksn[:0], ksn...)
	return nil
}
