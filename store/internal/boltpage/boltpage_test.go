package boltpage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// newFile writes a real bbolt file with one bucket of n keys, one commit per key.
func newFile(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put(fmt.Appendf(nil, "k%04d", i), make([]byte, 100))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNewestAndWalk: the newest meta page is found with and without a known page size,
// also when meta page 0 is damaged, and Walk reads every key of the bucket.
func TestNewestAndWalk(t *testing.T) {
	path := newFile(t, 50)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms := ReadMetas(f, 0)
	use := ms.Newest()
	if use < 0 || ms.Err[0] != nil || ms.Err[1] != nil || ms.PageSize == 0 {
		t.Fatalf("healthy file: %+v, newest %d", ms, use)
	}
	if other := ms.Meta[1-use]; other.TxID >= ms.Meta[use].TxID {
		t.Errorf("meta page %d (commit %d) is not the newest, meta page %d is (commit %d)", use, ms.Meta[use].TxID, 1-use, other.TxID)
	}
	if got := ReadMetas(f, ms.PageSize); got.Newest() != use {
		t.Errorf("with the page size given: newest %d, want %d", got.Newest(), use)
	}
	if bad := ReadMetas(f, ms.PageSize*2); bad.Err[0] == nil {
		t.Error("a meta page read with the wrong page size was accepted")
	}
	trees, unknown, err := Walk(context.Background(), f, int64(len(b)), ms.Meta[use], [][]byte{[]byte("b")}, true)
	if err != nil || len(unknown) != 0 {
		t.Fatal(err, unknown)
	}
	if tr := trees["b"]; tr == nil || !tr.Found || len(tr.Lost) != 0 || len(tr.Entries) != 50 {
		t.Fatalf("bucket b: not read whole (%v)", tr != nil)
	}

	// Meta page 0 damaged: its page size is unknown; the common sizes find meta page 1.
	damaged := append([]byte(nil), b...)
	damaged[PageHeader+20] ^= 0xFF
	dpath := filepath.Join(t.TempDir(), "d.db")
	if err := os.WriteFile(dpath, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	df, err := os.Open(dpath)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	dms := ReadMetas(df, 0)
	if dms.Err[0] == nil || dms.Newest() != 1 || dms.PageSize != ms.PageSize || dms.Meta[1] != ms.Meta[1] {
		t.Errorf("meta page 0 damaged: %+v, newest %d", dms, dms.Newest())
	}
}

// TestWalkReportsDamage: a damaged leaf page is a lost range naming the page, not a panic.
func TestWalkReportsDamage(t *testing.T) {
	path := newFile(t, 200)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ms := ReadMetas(f, 0)
	f.Close()
	m := ms.Meta[ms.Newest()]
	ps := int(ms.PageSize)
	// Overwrite every page but the meta pages and the root bucket's with garbage: whatever
	// the tree's shape, bucket b loses keys, and each loss says why.
	for id := 2; id < int(m.HighWater) && (id+1)*ps <= len(b); id++ {
		if uint64(id) == m.Root {
			continue
		}
		for i := range ps {
			b[id*ps+i] = 0x5A
		}
	}
	trees, _, err := Walk(context.Background(), readerAt(b), int64(len(b)), m, [][]byte{[]byte("b")}, true)
	if err != nil {
		t.Fatal(err)
	}
	tr := trees["b"]
	if tr == nil || len(tr.Lost) == 0 || len(tr.Entries) == 200 {
		t.Fatalf("bucket b: nothing reported lost (%v)", tr != nil)
	}
	for _, r := range Merge(tr.Lost) {
		if r.Why == "" {
			t.Errorf("a lost range without a reason: %+v", r)
		}
	}
}

type readerAt []byte

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r)) {
		return 0, fmt.Errorf("EOF")
	}
	n := copy(p, r[off:])
	if n < len(p) {
		return n, fmt.Errorf("EOF")
	}
	return n, nil
}
