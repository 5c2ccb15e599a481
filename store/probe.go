package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/posd-dev/posd/store/internal/boltpage"
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
	// The newest valid meta page, as bbolt picks it; the page size is in the meta page itself.
	ms := boltpage.ReadMetas(f, 0)
	use := ms.Newest()
	if use < 0 {
		return nil // bbolt's open says what is wrong with the meta pages
	}
	buckets, _, err := boltpage.Walk(ctx, f, fi.Size(), ms.Meta[use], salvageBuckets, false)
	if err != nil {
		return err
	}
	var bad []string
	for _, b := range salvageBuckets {
		t := buckets[string(b)]
		if t == nil {
			continue // a new or foreign file: initLayout decides
		}
		for _, r := range boltpage.Merge(t.Lost) {
			bad = append(bad, fmt.Sprintf("bucket %q: %s", b, r.Why))
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
