package store

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenRefusesDamagedPage: a store with a damaged page is refused with a clear error
// pointing to salvage, and left unchanged, where bbolt's own open would panic in a
// goroutine of its own and take posd down.
func TestOpenRefusesDamagedPage(t *testing.T) {
	fx := salvBuild(t, 80)
	src := fx.copyTo(t)
	live := salvLivePage(t, src, salvPagesWith(t, src, `"sale_id":"SALE-0042"`))
	ps := salvPageSize(t, src)
	salvWriteAt(t, src, live*ps, bytes.Repeat([]byte{0x5A}, int(ps)))
	before := salvHash(t, src)
	_, err := Open(src, &Options{Sealer: fx.sealer})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("page %d", live)) || !strings.Contains(err.Error(), "posd store salvage --path "+src) {
		t.Fatalf("Open of a damaged store: %v", err)
	}
	if salvHash(t, src) != before {
		t.Error("the refused file was changed")
	}
}

// TestOpenRandomDamageNeverPanics flips bytes all over a store and opens it: Open either
// refuses with an error or opens a store that reads; it never panics.
func TestOpenRandomDamageNeverPanics(t *testing.T) {
	fx := salvBuild(t, 60)
	whole, _ := os.ReadFile(fx.path)
	wal, _ := os.ReadFile(fx.path + logSuffix)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 11))
	dir := t.TempDir()
	opened := 0
	for i := range 100 {
		b := bytes.Clone(whole)
		ps := int(salvPageSize(t, fx.path))
		// Damage past the meta pages (a bad meta page is bbolt's to report, safely).
		for range 1 + rng.IntN(8) {
			b[2*ps+rng.IntN(len(b)-2*ps)] = byte(rng.IntN(256))
		}
		path := filepath.Join(dir, fmt.Sprintf("flip%d.db", i))
		os.WriteFile(path, b, 0o600)
		os.WriteFile(path+logSuffix, wal, 0o600)
		s, err := Open(path, &Options{Sealer: fx.sealer, Timeout: 100 * time.Millisecond})
		if err != nil {
			continue
		}
		opened++
		s.Close()
	}
	t.Logf("%d of 100 damaged files opened (damage in free space or values)", opened)
}
