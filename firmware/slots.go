package firmware

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Slot names.
const (
	SlotA = "a"
	SlotB = "b"
)

// Slot states.
const (
	SlotEmpty      = "empty"      // nothing installed
	SlotInstalling = "installing" // an image is being written; never started
	SlotReady      = "ready"      // holds a verified image (or the factory firmware)
)

// Slot is the state of one slot. It is a plain value, safe for concurrent
// use.
type Slot struct {
	Name        string    `json:"name"`                   // SlotA or SlotB
	State       string    `json:"state"`                  // SlotEmpty, SlotInstalling, SlotReady
	Factory     bool      `json:"factory,omitempty"`      // the factory firmware, not an image file
	Version     string    `json:"version,omitempty"`      // firmware version
	Target      string    `json:"target,omitempty"`       // image name in the bundle
	Length      int64     `json:"length,omitempty"`       // image bytes
	SHA256      string    `json:"sha256,omitempty"`       // image hash, hex
	Confirmed   bool      `json:"confirmed"`              // passed posd's self-test
	Failed      string    `json:"failed,omitempty"`       // why it was abandoned, if it was
	InstalledAt time.Time `json:"installed_at,omitzero"`  // when
	InstalledBy string    `json:"installed_by,omitempty"` // who
}

// bootState is boot.json: which slot starts and how often it has tried.
type bootState struct {
	V        int    `json:"v"`
	Active   string `json:"active"`   // the slot that starts next
	Attempts int    `json:"attempts"` // starts of Active while unconfirmed
	A        Slot   `json:"a"`
	B        Slot   `json:"b"`
}

func (b *bootState) slot(name string) *Slot {
	if name == SlotA {
		return &b.A
	}
	return &b.B
}

func other(name string) string {
	if name == SlotA {
		return SlotB
	}
	return SlotA
}

// Files in the state directory.
const (
	bootFile  = "boot.json"
	trustFile = "trust.json"
	lockFile  = "lock"
	padTemp   = "pinpad.img.unverified"
)

func (m *Manager) slotPath(name string) string {
	return filepath.Join(m.dir, "slot-"+name+".img")
}

func (b *bootState) check() error {
	if b.V != 1 {
		return fmt.Errorf("layout version %d, this release reads 1: %w", b.V, ErrFormat)
	}
	if b.Active != SlotA && b.Active != SlotB {
		return fmt.Errorf("active slot %q is not a or b: %w", clip(b.Active), ErrFormat)
	}
	if b.A.Name != SlotA || b.B.Name != SlotB {
		return fmt.Errorf("slot names are not a and b: %w", ErrFormat)
	}
	for _, s := range []Slot{b.A, b.B} {
		switch s.State {
		case SlotEmpty, SlotInstalling:
		case SlotReady:
			if _, err := ParseVersion(s.Version); err != nil {
				return fmt.Errorf("slot %s: %w", s.Name, err)
			}
			if !s.Factory {
				if raw, err := hex.DecodeString(s.SHA256); err != nil || len(raw) != sha256.Size || s.Length < 1 {
					return fmt.Errorf("slot %s: image hash or length missing: %w", s.Name, ErrFormat)
				}
			}
		default:
			return fmt.Errorf("slot %s: state %q: %w", s.Name, clip(s.State), ErrFormat)
		}
	}
	if b.slot(b.Active).State != SlotReady {
		return fmt.Errorf("active slot %s is %s: %w", b.Active, b.slot(b.Active).State, ErrFormat)
	}
	return nil
}

func (m *Manager) saveBoot(b bootState) error {
	if err := writeJSONFile(filepath.Join(m.dir, bootFile), b, m.failpoint); err != nil {
		return fmt.Errorf("save %s: %w", bootFile, err)
	}
	return nil
}

// record appends ev to the event log (errors are kept out of the caller's

// updateBoot applies fn to a copy of the boot state, saves it and makes it
// current.
func (m *Manager) updateBoot(fn func(*bootState)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	nb := m.boot
	fn(&nb)
	if err := m.saveBoot(nb); err != nil {
		return err
	}
	m.boot = nb
	return nil
}

// abandonSlot marks slot empty after a failure that may have replaced its
// image, and returns cause.
func (m *Manager) abandonSlot(slot string, cause error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	nb := m.boot
	*nb.slot(slot) = Slot{Name: slot, State: SlotEmpty, Failed: "install failed: " + cause.Error()}
	if err := m.saveBoot(nb); err == nil {
		m.boot = nb
	}
	return cause
}

// checkSlot reports whether s can start: the factory firmware, or a ready
// slot whose image file has the recorded length (and, with full, the
// recorded hash).
func (m *Manager) checkSlot(s *Slot, full bool) error {
	if s.State != SlotReady {
		return fmt.Errorf("slot %s is %s", s.Name, s.State)
	}
	if s.Factory {
		return nil
	}
	f, err := os.Open(m.slotPath(s.Name))
	if err != nil {
		return fmt.Errorf("slot %s: %w", s.Name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("slot %s: %w", s.Name, err)
	}
	if fi.Size() != s.Length {
		return fmt.Errorf("slot %s: image is %d bytes, %d were installed", s.Name, fi.Size(), s.Length)
	}
	if !full {
		return nil
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, defaultBufferSize)); err != nil {
		return fmt.Errorf("slot %s: %w", s.Name, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != s.SHA256 {
		return fmt.Errorf("slot %s: image hash is not the installed one", s.Name)
	}
	return nil
}
