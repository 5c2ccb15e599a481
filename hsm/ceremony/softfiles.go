package ceremony

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/hsm/tr31"
	"github.com/posd-dev/posd/internal/atomicfile"
)

// SoftFiles is the soft backend's key store, for tests and demos: posd's data key in
// hsm.data.key_file, in the format posd reads at start (64 hex digits), and every other key
// in key_file + ".keys", one a line: id usage algorithm value [KSN]. Both hold clear keys,
// mode 0600; the soft backend protects nothing. It is not safe for concurrent use, and two
// processes writing the same files lose each other's keys: stop posd before a ceremony.
type SoftFiles struct {
	dataFile, otherFile string
	entries             map[string]*softEntry
}

type softEntry struct {
	alg        hsm.Algorithm
	usage      hsm.Usage
	value, ksn []byte
}

// softUsages names usages in the .keys file.
var softUsages = map[hsm.Usage]string{
	hsm.UsagePIN: "pin", hsm.UsageDUKPT: "dukpt", hsm.UsageBDK: "bdk",
	hsm.UsageMAC: "mac", hsm.UsageData: "data", hsm.UsageKBPK: "kbpk",
}

// NewSoftFiles returns the soft key store of keyFile (hsm.data.key_file) and keyFile +
// ".keys", holding no keys until ReadOthers.
func NewSoftFiles(keyFile string) *SoftFiles {
	return &SoftFiles{dataFile: keyFile, otherFile: keyFile + ".keys", entries: map[string]*softEntry{}}
}

// open reads both files and returns a Module over a soft backend that holds their keys.
func (s *SoftFiles) open() (*hsm.Module, error) {
	if _, err := os.Stat(s.dataFile); err == nil {
		v, err := SoftDataKey(s.dataFile)
		if err != nil {
			return nil, err
		}
		s.entries[DataKeyID] = &softEntry{alg: hsm.AES256, usage: hsm.UsageData, value: v}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hsm.data.key_file: %w", err)
	}
	if err := s.ReadOthers(); err != nil {
		return nil, err
	}
	m, err := hsm.New(soft.New(nil), &hsm.Options{DataKeyID: DataKeyID})
	if err != nil {
		return nil, err
	}
	if err := s.loadInto(context.Background(), m); err != nil {
		return nil, err
	}
	return m, nil
}

// loadInto loads every key s holds into m.
func (s *SoftFiles) loadInto(ctx context.Context, m *hsm.Module) error {
	for id, e := range s.entries {
		if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: id, Algorithm: e.alg, Usage: e.usage, Components: [][]byte{e.value}, KSN: e.ksn}); err != nil {
			return fmt.Errorf("soft key file %s: key %q: %w", s.otherFile, id, err)
		}
	}
	return nil
}

// LoadSoftOthers loads into m the keys of the soft key store's second file, keyFile +
// ".keys", which posd key writes (none when it does not exist).
func LoadSoftOthers(ctx context.Context, m *hsm.Module, keyFile string) error {
	s := NewSoftFiles(keyFile)
	defer s.Clear()
	if err := s.ReadOthers(); err != nil {
		return err
	}
	return s.loadInto(ctx, m)
}

// SoftDataKey reads the soft backend's data key file, creating it with a random key on
// first use. The key returned is the caller's to clear.
func SoftDataKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		text := []byte(hex.EncodeToString(key) + "\n")
		defer clear(text)
		if err := atomicfile.WriteFile(path, text, 0o600); err != nil {
			clear(key)
			return nil, fmt.Errorf("hsm.data.key_file: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hsm.data.key_file: %w", err)
	}
	defer clear(b)
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		clear(key)
		return nil, fmt.Errorf("hsm.data.key_file %s: not a 64-hex-digit key; it must not be edited (queued card data is sealed under it)", path)
	}
	return key, nil
}

// ReadOthers reads the keys of keyFile + ".keys" (none when it does not exist).
func (s *SoftFiles) ReadOthers() error {
	b, err := os.ReadFile(s.otherFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("soft key file: %w", err)
	}
	defer clear(b)
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		bad := func(what string) error {
			return fmt.Errorf("soft key file %s line %d: %s; it must not be edited (posd key writes it)", s.otherFile, n+1, what)
		}
		if len(f) != 4 && len(f) != 5 {
			return bad("want: id usage algorithm value [KSN]")
		}
		if f[0] == DataKeyID || s.entries[f[0]] != nil {
			return bad(fmt.Sprintf("key %q again", f[0]))
		}
		e := &softEntry{}
		for u, name := range softUsages {
			if name == f[1] {
				e.usage = u
			}
		}
		a, ok := hsm.ParseAlgorithm(f[2])
		if e.usage == 0 || !ok {
			return bad("unknown usage or algorithm")
		}
		e.alg = a
		if e.value, err = hex.DecodeString(f[3]); err != nil || len(e.value) != a.KeyLen() {
			return bad(fmt.Sprintf("the value of key %q is not %d hex digits (%v)", f[0], 2*a.KeyLen(), a))
		}
		if len(f) == 5 {
			if e.ksn, err = hex.DecodeString(f[4]); err != nil {
				return bad(fmt.Sprintf("the KSN of key %q is not hex", f[0]))
			}
		}
		s.entries[f[0]] = e
	}
	return nil
}

// SaveImported records the key a block imported into the soft backend: the soft backend
// does not give key values back, so the block is unwrapped again here under the KBPK's
// value from the file, and the result checked against what the backend reported.
func (s *SoftFiles) SaveImported(info hsm.KeyInfo, kbpkID, block string) error {
	kbpk := s.entries[kbpkID]
	if kbpk == nil {
		return fmt.Errorf("soft key file: KBPK %q missing", kbpkID)
	}
	_, value, err := tr31.Unwrap(kbpk.value, block)
	if err != nil {
		return err
	}
	defer clear(value)
	cv, err := hsm.ComponentCheckValue(info.Algorithm, value)
	if err != nil || cv.String() != info.CheckValue.String() {
		return errors.New("soft key file: the unwrapped key does not match the soft backend's; nothing was saved")
	}
	if info.ID == DataKeyID && info.Algorithm != hsm.AES256 {
		return fmt.Errorf("the soft backend's key file holds an AES-256 data key only; this block holds an %v key; nothing was saved", info.Algorithm)
	}
	return s.save(info.ID, &softEntry{alg: info.Algorithm, usage: info.Usage, value: append([]byte(nil), value...), ksn: info.KSN})
}

// save stores e as id and writes the file it belongs in.
func (s *SoftFiles) save(id string, e *softEntry) error {
	if old := s.entries[id]; old != nil {
		clear(old.value)
	}
	s.entries[id] = e
	if id == DataKeyID {
		text := []byte(hex.EncodeToString(e.value) + "\n")
		defer clear(text)
		return writeFile(s.dataFile, text)
	}
	var b strings.Builder
	b.WriteString("# posd soft key store: clear keys, for tests and demos only. Written by posd key; do not edit.\n")
	ids := make([]string, 0, len(s.entries))
	for id := range s.entries {
		if id != DataKeyID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := s.entries[id]
		fmt.Fprintf(&b, "%s %s %v %s", id, softUsages[e.usage], e.alg, hex.EncodeToString(e.value))
		if e.ksn != nil {
			fmt.Fprintf(&b, " %s", hex.EncodeToString(e.ksn))
		}
		b.WriteByte('\n')
	}
	text := []byte(b.String())
	defer clear(text)
	return writeFile(s.otherFile, text)
}

// Clear overwrites the keys s holds in memory.
func (s *SoftFiles) Clear() {
	for _, e := range s.entries {
		clear(e.value)
	}
}

// writeFile replaces path with data (mode 0600), so that a crash leaves the old file or the
// new one.
func writeFile(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("soft key file: %w", err)
	}
	return nil
}
