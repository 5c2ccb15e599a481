package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
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
	layoutFormat = "posd-store"
	// 2: the write-ahead log; 3: the keyed audit chain of every write. Files of versions 1
	// and 2 are upgraded at open.
	layoutVersion = "3"
)

var (
	bucketMeta     = []byte("meta")           // layout format and version
	bucketCounters = []byte("counters")       // stan
	bucketJournal  = []byte("journal")        // TxnID -> record JSON
	bucketOpen     = []byte("open")           // TxnID -> empty, records with no outcome
	bucketQueue    = []byte("queue")          // the sequence of QueueIDs
	bucketQueueRev = []byte("queue-reversal") // QueueID -> item JSON, reversals to send
	bucketQueueAdv = []byte("queue-advice")   // QueueID -> item JSON, advices to send
	bucketAudit    = []byte("audit")          // sequence -> link of the audit chain (audit.go)
	bucketPANIndex = []byte("pan-index")      // PAN hash, 0, TxnID -> empty: a card's records
	bucketTill     = []byte("till")           // till request key (tillKeys) -> TxnID
	bucketBatches  = []byte("batches")        // batch number (8 bytes) -> close record JSON (batch.go)
	bucketBatchIdx = []byte("batch-index")    // batch number (8 bytes), TxnID -> empty: a batch's records
	// dataBuckets are the buckets besides meta that every store has.
	dataBuckets = [][]byte{bucketCounters, bucketJournal, bucketOpen, bucketQueue, bucketQueueRev, bucketQueueAdv, bucketAudit, bucketPANIndex, bucketTill, bucketBatches, bucketBatchIdx}
	keyFormat   = []byte("format")
	keyVersion  = []byte("version")
	keySTAN     = []byte("stan")
	keyStoreID  = []byte("id")      // random; the write-ahead log carries it too
	keyLogLSN   = []byte("log-lsn") // the last log record folded into this file
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
	// fails with an error wrapping ErrFull and changes nothing. Entries that are audit only
	// (Store.Audit: a card search, a firmware install; an operator's flush) are refused with
	// ErrFull earlier, once the file is within 5% (at most 256 KiB) of the cap, so that
	// sales keep that room. Default 0: no cap.
	MaxSize int
	// Now is the clock for queue and audit times. Default time.Now.
	Now func() time.Time
	// Auditor MACs the links of the audit chain under the key AuditKeyID (see
	// Store.VerifyAudit). Default nil: links are plain SHA-256 hashes, which anyone who can
	// write the file can recompute ("unkeyed").
	Auditor Auditor
	// AuditKeyID is the key the Auditor uses. Default "audit".
	AuditKeyID string
	// FoldDelay is how long the writes to the write-ahead log must pause before its records
	// are folded into the bbolt file (see the package documentation, "Durability"); a log
	// holding 512 records or half its size is folded at once, in the background. Default
	// 20ms; negative: only when the log fills or a read or another write needs it (for
	// tests).
	FoldDelay time.Duration
	// ObserveWrite, when set, is told how long each durable write took (a log append with
	// its fdatasync, or a commit to the bbolt file for a record too large for the log),
	// for posd's fsync latency metric. It is called with the store's write lock held: it
	// must be quick and must not call the Store. Default nil.
	ObserveWrite func(time.Duration)
}

// Store is posd's journal and counters in one bbolt file. It is safe for
// concurrent use.
type Store struct {
	db         *bolt.DB
	path       string
	sealer     Sealer
	sealKeyID  string
	now        func() time.Time
	foldDelay  time.Duration
	maxSize    int
	auditor    Auditor
	auditKeyID string
	observe    func(time.Duration) // Options.ObserveWrite; nil: none

	// mu orders every write: a log append, a fold, and a direct commit (which folds the
	// log first, so that the bbolt file sees writes in the order they were made). It
	// guards the fields below.
	mu        sync.Mutex
	log       *logFile
	lsn       uint64           // the last log record written
	applied   uint64           // the last log record folded into the bbolt file
	pending   []logEntry       // written, not yet folded, in LSN order
	tillKeys  map[string]TxnID // the till keys of the begins in pending (LookupTill)
	stan      uint32           // the STAN counter, ahead of the file while records are pending
	nextTxn   TxnID
	nextQueue QueueID
	open      map[TxnID]bool // records with no outcome
	timer     *time.Timer    // a fold to come
	lastWrite time.Time      // of the last log append: the timer folds once writes pause
	foldErr   error          // why the last fold failed; new transactions wait for a fold that works
	logErr    error          // a failed log write: the log's state is unknown, no more writes
	closed    bool
	auditSeq  uint64 // the audit chain's last link
	auditHead string // its MAC
	upgrade   bool   // the file is of an older layout: openLog upgrades it
	batch     uint64 // the open batch: finished records are tagged with it (batch.go)
}

// Open opens the store at path, creating the file and its buckets if the
// file does not exist or is empty. A file of another layout is refused with
// [ErrLayout] and left unchanged; a file locked by another Store is refused
// with [ErrLocked] after opts.Timeout.
//
// A file more than half of which is free pages (after an archive run removed many records)
// is compacted first: see [Compact].
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	s, err := open(path, o)
	if err != nil || !s.wantsCompact() {
		return s, err
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	if _, err := Compact(path, &o); err != nil {
		return nil, err
	}
	return open(path, o)
}

func open(path string, o Options) (*Store, error) {
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
	if o.AuditKeyID == "" {
		o.AuditKeyID = "audit"
	}
	if o.FoldDelay == 0 {
		o.FoldDelay = 20 * time.Millisecond
	}
	// The freelist is written at every commit (bbolt's default), so that bbolt reads it at
	// open instead of walking every page to rebuild it: start-up then costs what is open,
	// not the size of the file. (Releases before used NoFreelistSync: the first open of
	// such a file walks it once, probeStart first, and writes the freelist.) Commits are
	// off a sale's path, which writes the write-ahead log; the freelist they write grows
	// with the free pages, which Compact bounds.
	//
	// bbolt trusts the pages it reads: check the ones start-up reads before it does.
	if err := probeStart(context.Background(), path); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db, err := bolt.Open(path, o.FileMode, &bolt.Options{Timeout: o.Timeout, MaxSize: o.MaxSize, FreelistType: bolt.FreelistMapType})
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: open %s: %w (waited %v): stop the other posd using this file or configure a different store path", path, ErrLocked, o.Timeout)
	case isSystemError(err):
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	default:
		// bbolt's own errors about the file's contents: ErrInvalid,
		// ErrVersionMismatch, ErrChecksum, "file size too small".
		return nil, fmt.Errorf("store: open %s: %w: not a bbolt database (%w); the file was not changed: check the configured store path, and if the file must be replaced move it aside with its -wal file (do not delete them, they may hold unfinished transactions) so that posd creates a new store", path, ErrLayout, err)
	}
	s := &Store{db: db, path: path, sealer: o.Sealer, sealKeyID: o.SealKeyID, now: o.Now, foldDelay: o.FoldDelay, open: make(map[TxnID]bool), tillKeys: map[string]TxnID{},
		maxSize: o.MaxSize, auditor: o.Auditor, auditKeyID: o.AuditKeyID, observe: o.ObserveWrite}
	id, err := s.initLayout()
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.openLog(id, o.FileMode); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// openLog opens the write-ahead log, loads the counters, and folds what the log holds
// that the file does not (the writes of a process that crashed).
func (s *Store) openLog(id []byte, mode os.FileMode) error {
	lp := s.path + logSuffix
	log, entries, err := openLog(lp, id, mode)
	if err != nil {
		if errors.Is(err, ErrLayout) {
			return fmt.Errorf("store: open %s: %w; the files were not changed: if %s was replaced on purpose, move %s aside with the store file it belongs to", s.path, err, s.path, lp)
		}
		return fmt.Errorf("store: open %s: write-ahead log: %w", s.path, err)
	}
	s.log = log
	err = s.dbView(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyLogLSN); len(v) == 8 {
			s.applied = binary.BigEndian.Uint64(v)
		}
		if v := tx.Bucket(bucketCounters).Get(keySTAN); v != nil {
			if len(v) != 4 {
				return fmt.Errorf("counter %q is %d bytes, want 4: %w", keySTAN, len(v), ErrCorrupt)
			}
			s.stan = binary.BigEndian.Uint32(v)
		}
		if err := s.loadChainHead(tx); err != nil {
			return err
		}
		s.nextTxn = TxnID(tx.Bucket(bucketJournal).Sequence() + 1)
		s.nextQueue = QueueID(tx.Bucket(bucketQueue).Sequence() + 1)
		s.batch = openBatch(tx)
		return tx.Bucket(bucketOpen).ForEach(func(k, _ []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("open index key of %d bytes: %w", len(k), ErrCorrupt)
			}
			s.open[TxnID(binary.BigEndian.Uint64(k))] = true
			return nil
		})
	})
	if err != nil {
		_ = log.close()
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	s.lsn = s.applied
	for _, e := range entries {
		if e.lsn <= s.applied {
			continue
		}
		if e.lsn != s.lsn+1 {
			_ = log.close()
			return fmt.Errorf("store: open %s: %w: the write-ahead log %s jumps from record %d to %d; the files were not changed: run posd store check --path %s", s.path, ErrCorrupt, lp, s.lsn, e.lsn, s.path)
		}
		s.lsn = e.lsn
		s.addPending(e)
		s.note(e.op)
	}
	// The records of a crashed process go into the file now. If the file is full they stay
	// in the log (and new transactions are refused until there is room).
	if err := s.fold(); err != nil && !isFullError(err) {
		_ = log.close()
		return fmt.Errorf("store: open %s: folding the write-ahead log: %w", s.path, err)
	}
	if s.upgrade {
		if err := s.upgradeChain(); err != nil {
			_ = log.close()
			return fmt.Errorf("store: open %s: upgrading the layout: %w", s.path, err)
		}
	}
	if err := s.keepTotals(); err != nil {
		_ = log.close()
		return fmt.Errorf("store: open %s: counting the queue: %w", s.path, err)
	}
	return nil
}

// keepTotals counts the queue once into the kept totals (queue_totals.go) when the file has
// none: a file of an older release. On a full file they are counted at every QueueTotals
// until there is room.
func (s *Store) keepTotals() error {
	kept := false
	if err := s.dbView(func(tx *bolt.Tx) error { _, kept = readTotals(tx); return nil }); err != nil || kept {
		return err
	}
	err := s.dbUpdate(func(tx *bolt.Tx) error {
		t, err := countQueue(tx)
		if err != nil {
			return err
		}
		return writeTotals(tx, t)
	})
	if isFullError(err) {
		return nil
	}
	return err
}

// upgradeChain finishes the upgrade of a file of layout 1 or 2 (once its log is folded): it
// starts the chain of every write with a link that follows the old chain's head and records
// the journal's and queue's ids so far (records and items up to them may have no link), and
// sets the layout version, in one commit.
func (s *Store) upgradeChain() error {
	saved := s.saveChain()
	err := s.dbUpdate(func(tx *bolt.Tx) error {
		l := jsonLink{Kind: linkUpgrade, Who: "posd", Txn: tx.Bucket(bucketJournal).Sequence(), Queue: tx.Bucket(bucketQueue).Sequence(),
			Detail: fmt.Sprintf("layout %s: every journal and queue write is linked from here; the chain before is the unkeyed one of older releases (head %d:%.16s)", layoutVersion, s.auditSeq, s.auditHead)}
		if err := s.linkTx(context.Background(), tx, l); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte(layoutVersion))
	})
	if err != nil {
		s.restoreChain(saved)
		return err
	}
	s.upgrade = false
	return nil
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
func (s *Store) initLayout() ([]byte, error) {
	var id []byte
	// A file that needs nothing is only read: a refused log must find it unchanged.
	ready := false
	_ = s.dbView(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || string(meta.Get(keyFormat)) != layoutFormat || string(meta.Get(keyVersion)) != layoutVersion || len(meta.Get(keyStoreID)) != storeIDLen {
			return nil
		}
		for _, b := range dataBuckets {
			if tx.Bucket(b) == nil {
				return nil
			}
		}
		id, ready = bytes.Clone(meta.Get(keyStoreID)), true
		return nil
	})
	if ready {
		return id, nil
	}
	err := s.dbUpdate(func(tx *bolt.Tx) error {
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
		if v := string(meta.Get(keyVersion)); v == "1" || v == "2" {
			// Version 1 had no write-ahead log: give the file its id (below). Versions 1 and 2
			// had no chain of every write: openLog starts it once the log is folded, and sets
			// the version then (older releases then refuse the file rather than miss what
			// the log holds).
			s.upgrade = true
		} else if v != layoutVersion {
			return fmt.Errorf("store: open %s: %w: layout version %q, this posd reads version %s; the file was not changed: run the posd release that wrote it, or a newer one", s.path, ErrLayout, v, layoutVersion)
		}
		for _, b := range dataBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if id = meta.Get(keyStoreID); id == nil {
			id = make([]byte, storeIDLen)
			if _, err := rand.Read(id); err != nil {
				return err
			}
			return meta.Put(keyStoreID, id)
		}
		if len(id) != storeIDLen {
			return fmt.Errorf("store: open %s: %w: store id of %d bytes", s.path, ErrCorrupt, len(id))
		}
		id = append([]byte(nil), id...)
		return nil
	})
	if err != nil && !errors.Is(err, ErrLayout) && !errors.Is(err, ErrCorrupt) {
		return nil, fmt.Errorf("store: open %s: set up buckets: %w", s.path, err)
	}
	return id, err
}

// Close closes the file and releases its lock. Calls after the first return
// nil.
//
// Close folds the write-ahead log into the file first; a fold that fails (a full disk)
// leaves the records in the log, and the next Open folds them.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	var ferr error
	if s.logErr == nil {
		ferr = s.fold()
		if isFullError(ferr) {
			ferr = nil
		}
	}
	lerr := s.log.close()
	if err := errors.Join(ferr, lerr, s.db.Close()); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the path given to [Open].
func (s *Store) Path() string { return s.path }

// update runs fn in a write transaction after checking ctx, once the write-ahead log is
// folded: the file then holds every earlier write.
func (s *Store) update(ctx context.Context, op string, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	}
	if err := s.fold(); err != nil {
		return s.wrap(op, err)
	}
	saved := s.saveChain()
	err := s.dbUpdate(fn)
	if err != nil {
		s.restoreChain(saved) // the links fn made were rolled back with it
	}
	return s.wrap(op, err)
}

// view runs fn in a read transaction after checking ctx and folding the write-ahead log,
// so that it sees every write made before it. When the file is full the fold may leave
// records in the log: the read then sees the file as it is (what is left in the log is
// kept, and folded once there is room).
func (s *Store) view(ctx context.Context, op string, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	}
	err := s.fold()
	s.mu.Unlock()
	if err != nil && !isFullError(err) {
		return s.wrap(op, err)
	}
	return s.wrap(op, s.dbView(fn))
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
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: next stan: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.roomForNew("next stan"); err != nil {
		return 0, err
	}
	stan := s.peekSTAN()
	if err := s.write("next stan", logOp{Op: opSTAN, STAN: stan}); err != nil {
		return 0, err
	}
	return stan, nil
}

// peekSTAN returns the STAN after the counter's. s.mu held.
func (s *Store) peekSTAN() uint32 {
	if s.stan >= maxSTAN {
		return 1
	}
	return s.stan + 1
}

// roomForNew refuses a new transaction while the last fold failed for want of space (it
// tries the fold again first). s.mu held.
func (s *Store) roomForNew(op string) error {
	if s.closed {
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	}
	if s.foldErr == nil {
		return nil
	}
	if err := s.fold(); err != nil {
		return s.wrap(op, err)
	}
	return nil
}
