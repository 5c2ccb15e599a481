package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/posd-dev/posd/store/internal/boltpage"
	bolt "go.etcd.io/bbolt"
)

// startBuckets are the buckets Open and posd's start read whole: they hold what is open
// (unfinished records, the queue, the counters, the batches), not history, so checking
// them costs what is open, not the size of the file. The buckets that grow with history
// (the journal, its indexes, the audit chain) are read at start only along the path to
// their last key; a damaged page there, or anywhere deeper in history, is reported when
// it is read (an error wrapping ErrCorrupt, see dbView) and by posd store check.
var startBuckets = [][]byte{bucketMeta, bucketCounters, bucketOpen, bucketQueue, bucketQueueRev, bucketQueueAdv, bucketBatches}

// probeStart checks the pages Open touches before bbolt reads them: the meta pages (left to
// bbolt's open), the freelist (bbolt allocates from it: a damaged one would make it write
// over pages in use) and the trees of startBuckets. A file whose freelist was never
// written (older releases used bbolt's NoFreelistSync) is walked whole once, by probePages,
// since bbolt then walks every page to rebuild its freelist, in a goroutine where a damaged
// page panics beyond recovery; Open writes the freelist after that, so later opens are
// bounded.
func probeStart(ctx context.Context, path string) error {
	return probe(ctx, path, startBuckets, true)
}

// probePages walks the whole page tree of the file at path, as bbolt's own page check
// would, but without panicking, and checks its freelist: what posd store check does before
// bbolt's check. A damaged page is reported as an error wrapping ErrCorrupt that points to
// posd store salvage. A missing or empty file, or one whose meta pages bbolt itself
// rejects, is left to bbolt's open.
func probePages(ctx context.Context, path string) error {
	return probe(ctx, path, salvageBuckets, false)
}

func probe(ctx context.Context, path string, buckets [][]byte, bounded bool) error {
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
	m := ms.Meta[use]
	if bounded && m.Freelist == boltpage.NoFreelist {
		buckets = salvageBuckets // bbolt walks every page at this open: so does the probe
	}
	var bad []string
	if err := boltpage.CheckFreelist(f, fi.Size(), m); err != nil {
		bad = append(bad, err.Error())
	}
	trees, _, err := boltpage.Walk(ctx, f, fi.Size(), m, buckets, false)
	if err != nil {
		return err
	}
	for _, b := range buckets {
		t := trees[string(b)]
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
	return damaged(path, bad)
}

// damaged is the error for a file with damaged pages, what of them is known in bad.
func damaged(path string, bad []string) error {
	more := ""
	if len(bad) > 3 {
		more = fmt.Sprintf(" (and %d more)", len(bad)-3)
		bad = bad[:3]
	}
	return fmt.Errorf("%w: damaged pages: %s%s; the file was not changed: stop posd and run `posd store salvage --path %s --out NEWFILE`, which copies everything readable into a new file", ErrCorrupt, strings.Join(bad, "; "), more, path)
}

// dbView runs fn in a bbolt read transaction. Open checks only the pages start-up reads
// (probeStart); bbolt trusts the pages it follows and panics on some damage (a page whose
// header names another page, a type it does not expect) or faults on a page past the end
// of a truncated file. Both are turned into an error wrapping ErrCorrupt that points to
// posd store salvage; bbolt rolls the transaction back first.
func (s *Store) dbView(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer s.recoverDamage(&err)
	return s.db.View(fn)
}

// dbUpdate is dbView for a write transaction: a damaged page read while writing rolls the
// write back and is an error wrapping ErrCorrupt.
func (s *Store) dbUpdate(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer s.recoverDamage(&err)
	return s.db.Update(fn)
}

func (s *Store) recoverDamage(err *error) {
	if r := recover(); r != nil {
		*err = damaged(s.path, []string{fmt.Sprintf("bbolt failed reading a page: %v", r)})
	}
}
