package hsm

// Working keys from the host: a PIN, MAC or data key sent in a TR-31 block under the key
// encryption key (KEK) the terminal and the host share, imported only when it is the key
// the host says (its check value) and of the use asked for (the block's key usage), under
// a new generation id so that the key in use stays until the host confirms the new one.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/hsm/tr31"
)

// WorkingKeyRequest imports a working key the host sent. It holds nothing secret (the block
// is encrypted); String shows the block's header only. It is a value, safe for concurrent
// use.
type WorkingKeyRequest struct {
	// ID is the new key's id: a generation of the key in use ([GenerationID]), never the
	// id in use itself, so that the old key stays until the host confirms the new one.
	// An older key of the same id is replaced.
	ID string
	// KBPKID is the key encryption key the block is wrapped under (usage K1). Required.
	KBPKID string
	// Block is the TR-31 key block.
	Block string
	// Usage is what the key must be: UsagePIN (TR-31 P0), UsageMAC (M1, M3 or M6) or
	// UsageData (D0). A block of another usage is refused with ErrKeyUsage.
	Usage Usage
	// CheckValue is the check value the host sent beside the block (at least 2 bytes);
	// a key with another is refused with ErrCheckValue. Required.
	CheckValue []byte
}

// String describes the request with the block's header only.
func (r WorkingKeyRequest) String() string {
	return fmt.Sprintf("WorkingKeyRequest{%s (%v) under %s, KCV %X, %s}", r.ID, r.Usage, r.KBPKID, r.CheckValue,
		ImportRequest{ID: r.ID, KBPKID: r.KBPKID, Block: r.Block})
}

// workingUsages are the TR-31 key usages a working key of each usage may have.
var workingUsages = map[Usage][]string{
	UsagePIN:  {"P0"},
	UsageMAC:  {"M1", "M3", "M6"},
	UsageData: {"D0"},
}

// ImportWorkingKey imports a working key the host sent under the KEK req.KBPKID, after
// checking the block's header (its key usage must be one of req.Usage's) and, in the
// backend, the block's MAC and the key's check value. On any failure nothing is stored
// (the key in use stays) and the error says why: ErrKeyUsage for a wrong usage,
// ErrCheckValue for a wrong check value, a tr31 error for a block that does not verify.
// Every attempt is audited as "import-working-key".
func (m *Module) ImportWorkingKey(ctx context.Context, req WorkingKeyRequest) (KeyInfo, error) {
	ev := AuditEvent{Op: "import-working-key", KeyID: req.ID}
	im, ok := m.drv.(KeyBlockImporter)
	if !ok {
		return KeyInfo{}, m.audit(ev, unsupported("the backend cannot import key blocks"))
	}
	if err := validID(req.ID); err != nil {
		return KeyInfo{}, m.audit(ev, err)
	}
	if m.hasRole(req.ID) {
		return KeyInfo{}, m.audit(ev, fmt.Errorf("hsm: working key %q is an id the module uses: import a new generation (GenerationID) and switch to it once the host confirms", req.ID))
	}
	if err := validID(req.KBPKID); err != nil {
		return KeyInfo{}, m.audit(ev, fmt.Errorf("hsm: KEK: %w", err))
	}
	codes, ok := workingUsages[req.Usage]
	if !ok {
		return KeyInfo{}, m.audit(ev, fmt.Errorf("%w: a working key is a PIN, MAC or data key, not %v", ErrKeyUsage, req.Usage))
	}
	if len(req.CheckValue) < 2 {
		return KeyInfo{}, m.audit(ev, fmt.Errorf("%w: the host's check value is missing or shorter than 2 bytes", ErrCheckValue))
	}
	h, _, err := tr31.ParseHeader(req.Block)
	if err != nil {
		return KeyInfo{}, m.audit(ev, fmt.Errorf("hsm: working key block: %w", err))
	}
	if !contains(codes, h.KeyUsage) {
		return KeyInfo{}, m.audit(ev, fmt.Errorf("%w: the block's key usage is %s (%s); a %v working key must be %s",
			ErrKeyUsage, h.KeyUsage, tr31.UsageName(h.KeyUsage), req.Usage, strings.Join(codes, " or ")))
	}
	var info KeyInfo
	err = m.call(ctx, func(ctx context.Context) error {
		var err error
		info, err = im.ImportKeyBlock(ctx, ImportRequest{ID: req.ID, KBPKID: req.KBPKID, Block: req.Block, Replace: true, CheckValue: req.CheckValue})
		return err
	})
	if err == nil && info.Usage != req.Usage {
		// The backend read the header as the Module did; a disagreement is a device fault.
		err = fmt.Errorf("%w: imported a %v key for a %v working key", ErrDevice, info.Usage, req.Usage)
	}
	ev.CheckValue = info.CheckValue.String()
	return info, m.audit(ev, err)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// GenerationID is the id of generation gen of key base: base itself for generation 0 (the
// key a technician loaded), base + ".g" + gen after it ("mac.g3"). Working keys from the
// host are imported as the next generation, so the key in use stays until the switch.
func GenerationID(base string, gen uint64) string {
	if gen == 0 {
		return base
	}
	return base + ".g" + strconv.FormatUint(gen, 10)
}

// ErrGeneration means a key id is not a generation of the base asked for.
var ErrGeneration = errors.New("hsm: not a key generation id")

// ParseGeneration returns the generation of id as a generation of base ([GenerationID]):
// 0 for base itself; an error wrapping ErrGeneration for any other id.
func ParseGeneration(base, id string) (uint64, error) {
	if id == base {
		return 0, nil
	}
	rest, ok := strings.CutPrefix(id, base+".g")
	if ok {
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil && n > 0 && strconv.FormatUint(n, 10) == rest {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not %q or %q.gN", ErrGeneration, id, base, base)
}
