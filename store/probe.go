package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// probePages walks the page tree of the file at path, as bbolt would when it rebuilds its
// freelist at open, but without panicking: bbolt does that walk in a goroutine of its own,
// where a damaged page is a panic no caller can recover, so a store with one bad page would
// bring posd (and posd store check) down instead of being refused. A damaged page is
// reported as an error wrapping ErrCorrupt that points to posd store salvage. A missing or
// empty file, or one whose meta pages bbolt itself rejects, is left to bbolt's open.
func probePages(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	// The newest valid meta page, as bbolt picks it. Each meta page sits at the start of
	// one of the first two pages; the page size is in the meta page itself.
	var m boltMeta
	found := false
	page := make([]byte, boltPageHeader+boltMetaSize)
	for _, off := range []int64{0, -1} {
		if off < 0 {
			if !found {
				// The second meta page is a page size further; without the first one's page
				// size, try the common ones.
				for _, ps := range []int64{4096, 8192, 16384, 65536} {
					if _, err := f.ReadAt(page, ps); err == nil {
						if mm, err := parseBoltMeta(page); err == nil && int64(mm.pageSize) == ps {
							m, found = mm, true
							break
						}
					}
				}
				continue
			}
			off = int64(m.pageSize)
		}
		if _, err := f.ReadAt(page, off); err != nil {
			continue
		}
		mm, err := parseBoltMeta(page)
		if err != nil || (found && mm.txid <= m.txid) || (found && mm.pageSize != m.pageSize) {
			continue
		}
		m, found = mm, true
	}
	if !found {
		return nil // bbolt's open says what is wrong with the meta pages
	}
	buckets, _, err := salvageTrees(ctx, f, fi.Size(), uint64(m.pageSize), m, false)
	if err != nil {
		return err
	}
	var bad []string
	for _, b := range salvageBuckets {
		t := buckets[string(b)]
		if t == nil {
			continue // a new or foreign file: initLayout decides
		}
		for _, r := range salvageMerge(t.lost) {
			bad = append(bad, fmt.Sprintf("bucket %q: %s", b, r.why))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	more := ""
	if len(bad) > 3 {
		more = fmt.Sprintf(" (and %d more)", len(bad)-3)
		bad = bad[:3]
	}
	return fmt.Errorf("%w: damaged pages: %s%s; the file was not changed: stop posd and run `posd store salvage --path %s --out NEWFILE`, which copies everything readable into a new file", ErrCorrupt, strings.Join(bad, "; "), more, path)
}
