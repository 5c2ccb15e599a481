package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenRefusesDamagedPage: a store with a damaged page among those start-up reads (the
// queue) is refused with a clear error pointing to salvage, and left unchanged, where
// bbolt would panic on it.
func TestOpenRefusesDamagedPage(t *testing.T) {
	fx := salvBuild(t, 80)
	src := fx.copyTo(t)
	live := salvLivePage(t, src, salvPagesWith(t, src, `"kind":"advice"`))
	ps := salvPageSize(t, src)
	salvWriteAt(t, src, live*ps, bytes.Repeat([]byte{0x5A}, int(ps)))
	before := salvHash(t, src)
	_, err := Open(src, &Options{Sealer: fx.sealer})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("page %d", live)) || !strings.Contains(err.Error(), "posd store salvage --path "+src) {
		t.Fatalf("Open of a store with a damaged queue page: %v", err)
	}
	if salvHash(t, src) != before {
		t.Error("the refused file was changed")
	}
}

// TestOpenDamagedHistoryPage: a damaged page deep in history (a finished sale's journal
// page) is not read at start, so Open takes the store; reading the record there is an
// error wrapping ErrCorrupt that points to salvage (bbolt panics on the page: recovered),
// and Check, which walks every page, names the page.
func TestOpenDamagedHistoryPage(t *testing.T) {
	fx := salvBuild(t, 80)
	src := fx.copyTo(t)
	live := salvLivePage(t, src, salvPagesWith(t, src, `"sale_id":"SALE-0042"`))
	ps := salvPageSize(t, src)
	salvWriteAt(t, src, live*ps, bytes.Repeat([]byte{0x5A}, int(ps)))
	s, err := Open(src, &Options{Sealer: fx.sealer})
	if err != nil {
		t.Fatalf("Open of a store damaged in history only: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Get(ctx, 42); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "posd store salvage --path "+src) {
		t.Errorf("Get of a record on the damaged page: %v", err)
	}
	rep, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !strings.Contains(rep.Problems[0].What, fmt.Sprintf("page %d", live)) || !strings.Contains(rep.Problems[0].Do, "posd store salvage --path "+src) {
		t.Errorf("Check of the damaged store: %+v", rep.Problems)
	}
}

// TestOpenRandomDamageNeverPanics flips bytes all over a store and opens it: Open either
// refuses with an error or opens a store that reads (every record, the queue, Check);
// nothing panics.
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
		// Open checked only what start-up reads: reading the rest finds the damage as
		// errors, never a panic.
		_ = s.Records(context.Background(), func(Record) error { return nil })
		_, _ = s.List(context.Background())
		_, _ = s.Check(context.Background())
		s.Close()
	}
	t.Logf("%d of 100 damaged files opened (damage in free space or values)", opened)
}
