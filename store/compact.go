package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compaction: bbolt never gives freed pages back to the file system, so after an archive
// run removed many records the live file keeps its size. Compact copies the live data into
// a new file (bbolt's Compact: every bucket, key and bucket sequence, so the store id, the
// fold mark of the write-ahead log and the id counters are kept, and the log still belongs
// to the file) and renames it over the old one. It runs only with the file closed: at
// Open, when more than half of a file of at least compactMin bytes is free pages (the new
// file is then opened in its place), or as `posd store compact --path` with posd stopped.
// The write-ahead log is left as it is: its records past the fold mark are folded into the
// new file as they would have been into the old one.

// compactMin is the smallest file Open compacts: below it the space is not worth a copy.
const compactMin = 8 << 20

// CompactReport says what Compact did.
//
// A plain value: safe for concurrent use when not modified.
type CompactReport struct {
	Before, After int64 // file sizes in bytes
	Took          time.Duration
}

// Compact rewrites the store file at path without its free pages (see the comment at the
// top of compact.go). The file must not be open: Compact takes its lock, waiting at most
// opts.Timeout, and fails with ErrLocked if posd holds it. On any error the old file is
// left in place, unchanged.
func Compact(path string, opts *Options) (CompactReport, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.FileMode == 0 {
		o.FileMode = 0o600
	}
	start := time.Now()
	var rep CompactReport
	fi, err := os.Stat(path)
	if err != nil {
		return rep, fmt.Errorf("store: compact: %w", err)
	}
	rep.Before = fi.Size()
	// Compact reads every page: check them all first (bbolt panics on some damage).
	if err := probePages(context.Background(), path); err != nil {
		return rep, fmt.Errorf("store: compact %s: %w", path, err)
	}
	src, err := bolt.Open(path, o.FileMode, &bolt.Options{Timeout: o.Timeout, ReadOnly: false, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if isSystemError(err) {
			return rep, fmt.Errorf("store: compact %s: %w", path, err)
		}
		return rep, fmt.Errorf("store: compact %s: %w: %w", path, ErrLocked, err)
	}
	if err := compactInto(src, path, o.FileMode); err != nil {
		_ = src.Close()
		return rep, fmt.Errorf("store: compact %s: %w; the file was not changed", path, err)
	}
	if err := src.Close(); err != nil {
		return rep, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if err := os.Rename(path+".compact", path); err != nil {
		return rep, fmt.Errorf("store: compact %s: %w; the file was not changed", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if fi, err := os.Stat(path); err == nil {
		rep.After = fi.Size()
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// compactInto copies src into path + ".compact", synced.
func compactInto(src *bolt.DB, path string, mode os.FileMode) error {
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dst, err := bolt.Open(tmp, mode, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := dst.Sync(); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return err
	}
	return dst.Close()
}

// wantsCompact reports whether more than half of the open file (of at least compactMin
// bytes) is free pages.
func (s *Store) wantsCompact() bool {
	var size int64
	_ = s.dbView(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	if size < compactMin {
		return false
	}
	st := s.db.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(s.db.Info().PageSize)
	return free > size/2
}
