package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors returned (wrapped) by this package.
var (
	// ErrLocked means another Store, in this process or another, has the
	// file open. Stop it, or point this one at a different file.
	ErrLocked = errors.New("file is locked by another process or Store")
	// ErrLayout means the file is not a posd store this release can read:
	// not a bbolt file, a bbolt file of something else, or a store of
	// another layout version. The file is left unchanged.
	ErrLayout = errors.New("unknown file layout")
	// ErrCorrupt means a value inside a posd store cannot be decoded.
	ErrCorrupt = errors.New("corrupt record")
	// ErrClosed means the Store has been closed.
	ErrClosed = errors.New("closed")
	// ErrNotFound means no journal record has the given ID.
	ErrNotFound = errors.New("no such transaction")
	// ErrFinished means the journal record already has an outcome.
	ErrFinished = errors.New("transaction already finished")
	// ErrUnmaskedPAN means an intent's MaskedPAN holds 7 or more digits in
	// a row: it looks like a full PAN and is not stored.
	ErrUnmaskedPAN = errors.New("masked pan is not masked")
	// ErrInvalid means an argument is not acceptable, for example an
	// outcome whose State is not a final state.
	ErrInvalid = errors.New("invalid argument")
	// ErrFull means the file reached its size cap (Options.MaxSize) or the disk is full:
	// the write was not made, and everything already stored is kept.
	ErrFull = errors.New("store is full")
)

// The file layout. Bump layoutVersion for any change an older release
// cannot read.
const (
	layoutFormat  = "posd-store"
	layoutVersion = "1"
)

var (
	bucketMeta     = []byte("meta")           // layout format and version
	bucketCounters = []byte("counters")       // stan
	bucketJournal  = []byte("journal")        // TxnID -> record JSON
	bucketOpen     = []byte("open")           // TxnID -> empty, records with no outcome
	bucketQueue    = []byte("queue")          // the sequence of QueueIDs
	bucketQueueRev = []byte("queue-reversal") // QueueID -> item JSON, reversals to send
	bucketQueueAdv = []byte("queue-advice")   // QueueID -> item JSON, advices to send
	bucketAudit    = []byte("audit")          // sequence -> hash-chained entry of who did what
	keyFormat      = []byte("format")
	keyVersion     = []byte("version")
	keySTAN        = []byte("stan")
)

// Options configures [Open]. A nil *Options means all defaults.
//
// A plain value: safe for concurrent use when not modified.
type Options struct {
	// Timeout is how long Open waits for the file lock before it fails
	// with ErrLocked. Zero or negative means 1s. (bbolt's own zero, wait
	// forever, is never used.)
	Timeout time.Duration
	// FileMode is the permission of a newly created file. Zero means 0600.
	FileMode os.FileMode
	// Sealer seals the sensitive data of queued messages (PAN, expiry, chip data) before
	// it is written. Default nil: items with sensitive data are refused with ErrNoSealer.
	Sealer Sealer
	// SealKeyID is the key the Sealer uses. Default "data".
	SealKeyID string
	// MaxSize caps the file's size in bytes, as a partition would; a write that needs more
	// fails with an error wrapping ErrFull and changes nothing. Default 0: no cap.
	MaxSize int
	// Now is the clock for queue and audit times. Default time.Now.
	Now func() time.Time
}

// Store is posd's journal and counters in one bbolt file. It is safe for
// concurrent use.
type Store struct {
	db        *bolt.DB
	path      string
	sealer    Sealer
	sealKeyID string
	now       func() time.Time
}

// Open opens the store at path, creating the file and its buckets if the
// file does not exist or is empty. A file of another layout is refused with
// [ErrLayout] and left unchanged; a file locked by another Store is refused
// with [ErrLocked] after opts.Timeout.
func Open(path string, opts *Options) (*Store, error) {
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
	if o.SealKeyID == "" {
		o.SealKeyID = "data"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// NoFreelistSync: bbolt would rewrite its whole freelist at every commit, which made a
	// sale's journal cost grow with the file (1.7 ms to 9.5 ms in one benchmark run); the
	// freelist is rebuilt at open instead (BenchmarkStartup: about 0.1 s for 100,000 records).
	db, err := bolt.Open(path, o.FileMode, &bolt.Options{Timeout: o.Timeout, MaxSize: o.MaxSize, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: open %s: %w (waited %v): stop the other posd using this file or configure a different store path", path, ErrLocked, o.Timeout)
	case isSystemError(err):
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	default:
		// bbolt's own errors about the file's contents: ErrInvalid,
		// ErrVersionMismatch, ErrChecksum, "file size too small".
		return nil, fmt.Errorf("store: open %s: %w: not a bbolt database (%w); the file was not changed: check the configured store path, and if the file must be replaced move it aside (do not delete it, it may hold unfinished transactions) so that posd creates a new store", path, ErrLayout, err)
	}
	s := &Store{db: db, path: path, sealer: o.Sealer, sealKeyID: o.SealKeyID, now: o.Now}
	if err := s.initLayout(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// isSystemError reports whether err comes from the operating system (open,
// stat, lock, map) rather than from bbolt's reading of the file.
func isSystemError(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}

// initLayout checks the layout of an existing file, or sets up an empty one.
// A refused file is left unchanged: the transaction rolls back.
func (s *Store) initLayout() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("store: open %s: %w: a bbolt database of something other than posd; the file was not changed: check the configured store path", s.path, ErrLayout)
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keyFormat, []byte(layoutFormat)); err != nil {
				return err
			}
			if err := meta.Put(keyVersion, []byte(layoutVersion)); err != nil {
				return err
			}
		}
		if f := string(meta.Get(keyFormat)); f != layoutFormat {
			return fmt.Errorf("store: open %s: %w: a bbolt database of something other than posd; the file was not changed: check the configured store path", s.path, ErrLayout)
		}
		if v := string(meta.Get(keyVersion)); v != layoutVersion {
			return fmt.Errorf("store: open %s: %w: layout version %q, this posd reads version %s; the file was not changed: run the posd release that wrote it, or a newer one", s.path, ErrLayout, v, layoutVersion)
		}
		for _, b := range [][]byte{bucketCounters, bucketJournal, bucketOpen, bucketQueue, bucketQueueRev, bucketQueueAdv, bucketAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrLayout) {
		return fmt.Errorf("store: open %s: set up buckets: %w", s.path, err)
	}
	return err
}

// Close closes the file and releases its lock. Calls after the first return
// nil.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the path given to [Open].
func (s *Store) Path() string { return s.path }

// update runs fn in a write transaction after checking ctx.
func (s *Store) update(ctx context.Context, op string, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return s.wrap(op, s.db.Update(fn))
}

// view runs fn in a read transaction after checking ctx.
func (s *Store) view(ctx context.Context, op string, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return s.wrap(op, s.db.View(fn))
}

func (s *Store) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	case errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("store: %s: %w (%w): free space on the device holding %s; queued messages are kept", op, ErrFull, err, s.path)
	default:
		return fmt.Errorf("store: %s: %w", op, err)
	}
}

// maxSTAN is the largest system trace audit number (ISO 8583 field 11, six
// digits).
const maxSTAN = 999999

// NextSTAN returns the next system trace audit number: 1, 2, ... 999999,
// then 1 again; never 0. The new value is committed before it is returned,
// so no STAN is handed out twice in a row across a crash.
func (s *Store) NextSTAN(ctx context.Context) (uint32, error) {
	var stan uint32
	err := s.update(ctx, "next stan", func(tx *bolt.Tx) error {
		var err error
		stan, err = nextSTAN(tx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return stan, nil
}

// nextSTAN advances the STAN counter inside tx.
func nextSTAN(tx *bolt.Tx) (uint32, error) {
	b := tx.Bucket(bucketCounters)
	var cur uint32
	if v := b.Get(keySTAN); v != nil {
		if len(v) != 4 {
			return 0, fmt.Errorf("counter %q is %d bytes, want 4: %w", keySTAN, len(v), ErrCorrupt)
		}
		cur = binary.BigEndian.Uint32(v)
	}
	stan := cur + 1
	if stan > maxSTAN {
		stan = 1
	}
	return stan, b.Put(keySTAN, binary.BigEndian.AppendUint32(nil, stan))
}
