package store

// The archive: closed batches older than a retention period leave the live file for sealed,
// hash-chained, append-only files, one per month, so that the live file (and so start-up
// and memory) is bounded by the batches kept, not by history.
//
// Archive files are JSON lines, ARCHIVE_DIR/posd-archive-YYYY-MM.jsonl, named for the month
// (UTC) the lines were written. Each line (archiveLine) carries a sequence number (+1 per
// line, across files), the SHA-256 of the previous line's bytes (Prev, in letters; the
// first line of a file also names the file the previous line is in), and one of:
//
//	record: a journal record, its value exactly as the live file held it, and its batch
//	batch:  a batch's close record, as the live file held it
//	link:   a link of the audit chain, as the live file held it
//
// An archive run (Store.Archive) goes in chunks (archive_write.go): one batch, then up to
// 10,000 audit links, each under one hold of the write lock. A chunk writes and fsyncs its
// lines first, then removes what they hold from the live file in one bbolt commit, with an "archive" link in the audit chain
// that names the lines (first, last, the last line's hash), the records' ids and the
// batches; the same commit records the archive's head (file, sequence, hash, size) in the
// meta bucket. A crash between the two leaves the lines written and the records still in
// the live file: the next run finds those lines past the head (by record id, batch and link
// sequence) and does not write them again.
//
// The audit chain's prefix moves too: links older than every link that still names a live
// record, item or batch are written to the archive as link lines, and the live chain then
// starts from a base (meta "audit-base": the last moved link's sequence and MAC, and the
// upgrade marks) that VerifyAudit starts from. Operator actions among the moved links are
// then in the archive only (AuditLog lists the live ones).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrArchived means a journal record was archived: it left the live file (see
// Store.Archive) and is read from the archive files only. Errors that wrap it wrap
// ErrNotFound too.
var ErrArchived = errors.New("transaction archived")

// ErrArchive means the archive files do not match the live file's record of them: a line
// was edited, removed or added, or a file is missing. ArchiveProblem says where.
var ErrArchive = errors.New("archive does not verify")

const (
	archiveVersion = 1
	archivePrefix  = "posd-archive-"
	archiveSuffix  = ".jsonl"
	linkArchive    = "archive"
	// maxArchiveLine bounds a line read back: a record or link is a few KiB at most.
	maxArchiveLine = 4 << 20
)

var (
	keyArchiveHead = []byte("archive-head") // archiveHead JSON: the last line committed
	keyAuditBase   = []byte("audit-base")   // auditBase JSON: where the live chain starts
)

// archiveLine is one line of an archive file. Field names are part of the format.
type archiveLine struct {
	V        int             `json:"v"`
	Seq      uint64          `json:"seq"`
	Prev     string          `json:"prev"`                // SHA-256 of the previous line, in letters; "" for the first line ever
	PrevFile string          `json:"prev_file,omitempty"` // first line of a file: the file of the previous line
	Kind     string          `json:"kind"`                // "record", "batch" or "link"
	Txn      TxnID           `json:"txn,omitempty"`       // record
	Batch    uint64          `json:"batch,omitempty"`     // record (its batch), batch
	Link     uint64          `json:"link,omitempty"`      // link: its sequence number
	Value    json.RawMessage `json:"value"`
}

const (
	lineRecord = "record"
	lineBatch  = "batch"
	lineLink   = "link"
)

// archiveHead is the last archive line the live file knows of.
type archiveHead struct {
	File string `json:"file"` // base name
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Size int64  `json:"size"` // of File once the line was written
	// MaxTxn is the highest record id archived: Get tells an archived record from an
	// unknown one by it.
	MaxTxn TxnID `json:"max_txn"`
}

// auditBase is where the live audit chain starts once its prefix is archived.
type auditBase struct {
	Seq   uint64 `json:"seq"` // the last link moved
	MAC   string `json:"mac"`
	Key   string `json:"key,omitempty"`
	Txn   uint64 `json:"txn,omitempty"` // upgrade marks of moved upgrade links
	Queue uint64 `json:"queue,omitempty"`
}

// archiveRange is what an "archive" link names. Field names are part of the format.
type archiveRange struct {
	File    string     `json:"file"`  // of the last line
	First   uint64     `json:"first"` // lines First..Last were committed by this link
	Last    uint64     `json:"last"`
	Head    string     `json:"head"`           // the hash of line Last
	Txns    [][2]TxnID `json:"txns,omitempty"` // id ranges of the records removed
	Batches []uint64   `json:"batches,omitempty"`
	Links   [2]uint64  `json:"links,omitzero"` // audit links moved, first and last
}

func (r *archiveRange) hasTxn(id TxnID) bool {
	i := sort.Search(len(r.Txns), func(i int) bool { return r.Txns[i][1] >= id })
	return i < len(r.Txns) && r.Txns[i][0] <= id
}

// ArchiveOptions configures [Store.Archive].
//
// A plain value: safe for concurrent use when not modified.
type ArchiveOptions struct {
	// Dir is where the archive files are. Default: the store file's directory + "/archive".
	Dir string
	// Keep is how long a closed batch stays in the live file after its close. Default 30
	// days. The newest closed batch is never archived, whatever its age.
	Keep time.Duration
}

// ArchiveReport says what an archive run did.
//
// A plain value: safe for concurrent use when not modified.
type ArchiveReport struct {
	Batches []uint64 // archived
	Records int      // records removed from the live file
	Links   int      // audit links moved
	Lines   int      // lines written (lines a crashed run had written are not written again)
	Reused  int      // lines a crashed run had written, committed now
	// Held are closed batches old enough that were kept because a record of theirs has a
	// queued reversal or advice.
	Held []uint64
	File string // the file written last; "" when nothing was archived
}

// ArchiveDir returns the default archive directory of the store at path.
func ArchiveDir(path string) string { return filepath.Join(filepath.Dir(path), "archive") }

func archiveFileName(t time.Time) string {
	return archivePrefix + t.UTC().Format("2006-01") + archiveSuffix
}

// archiveFiles lists the archive files in dir, oldest first.
func archiveFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, archivePrefix) && strings.HasSuffix(n, archiveSuffix) && !e.IsDir() {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// readLines calls fn for each line of the file from offset off, with the offset after it.
func readLines(path string, off int64, fn func(raw []byte, end int64) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 256<<10)
	for {
		raw, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			buf := bytes.Clone(raw)
			for errors.Is(err, bufio.ErrBufferFull) && len(buf) < maxArchiveLine {
				raw, err = r.ReadSlice('\n')
				buf = append(buf, raw...)
			}
			raw = buf
		}
		if len(raw) > 0 && err == nil {
			off += int64(len(raw))
			if ferr := fn(raw[:len(raw)-1], off); ferr != nil {
				return ferr
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(raw) > 0 {
				// A torn last line: a crash while it was written, never committed.
				return nil
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func decodeLine(raw []byte) (archiveLine, error) {
	var l archiveLine
	if err := jsonUnmarshalStrict(raw, &l); err != nil || l.V != archiveVersion {
		return l, fmt.Errorf("not an archive line of version %d", archiveVersion)
	}
	return l, nil
}

// readHead reads the archive head and the audit base from the meta bucket.
func readHead(tx *bolt.Tx) (archiveHead, auditBase, error) {
	var h archiveHead
	var b auditBase
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyArchiveHead); v != nil {
		if err := json.Unmarshal(v, &h); err != nil {
			return h, b, fmt.Errorf("archive head: %w: %w", ErrCorrupt, err)
		}
	}
	if v := meta.Get(keyAuditBase); v != nil {
		if err := json.Unmarshal(v, &b); err != nil {
			return h, b, fmt.Errorf("audit base: %w: %w", ErrCorrupt, err)
		}
	}
	return h, b, nil
}

// tailLine is a line a crashed run wrote past the head.
type tailLine struct {
	line archiveLine
	sum  string // of its value
}

// readTail returns the lines past the head h in dir (written by a run that crashed before
// its commit), checking that they chain from h, and where the chain ends.
func readTail(dir string, h archiveHead) (tail []tailLine, end archiveHead, err error) {
	files, err := archiveFiles(dir)
	if err != nil {
		return nil, h, err
	}
	end = h
	for _, name := range files {
		if h.File != "" && name < h.File {
			continue
		}
		off := int64(0)
		if name == h.File {
			off = h.Size
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				return nil, h, err
			}
			if fi.Size() < h.Size {
				return nil, h, fmt.Errorf("%s is %d bytes, shorter than the %d the live file recorded: %w", name, fi.Size(), h.Size, ErrArchive)
			}
		}
		err := readLines(filepath.Join(dir, name), off, func(raw []byte, at int64) error {
			l, err := decodeLine(raw)
			if err != nil || l.Seq != end.Seq+1 || l.Prev != end.Hash {
				// Not the continuation of the committed chain: stop here; such lines are
				// never committed (the next run writes after the head, in a new chain).
				return errStopTail
			}
			tail = append(tail, tailLine{l, sum(l.Value)})
			end.File, end.Seq, end.Hash, end.Size = name, l.Seq, sum(raw), at
			return nil
		})
		if errors.Is(err, errStopTail) {
			break
		}
		if err != nil {
			return nil, h, err
		}
	}
	return tail, end, nil
}

var errStopTail = errors.New("end of tail")

// archived reports whether id was archived, from the head in the meta bucket.
func archivedID(tx *bolt.Tx, id TxnID) bool {
	v := tx.Bucket(bucketMeta).Get(keyArchiveHead)
	if v == nil {
		return false
	}
	var h archiveHead
	return json.Unmarshal(v, &h) == nil && id <= h.MaxTxn
}

// ArchivedRecords calls fn for every record in the archive files in dir ("" the default
// directory) that the live file's archive head covers, in the order they were archived
// (batch by batch, each in id order), and stops at fn's first error. It holds no lock and
// no bbolt transaction while it reads the files. A record written twice (a crash left a
// line whose record changed before the next run) is given once, as last written.
func (s *Store) ArchivedRecords(ctx context.Context, dir string, fn func(Record) error) error {
	if dir == "" {
		dir = ArchiveDir(s.path)
	}
	var head archiveHead
	err := s.view(ctx, "archived records", func(tx *bolt.Tx) error {
		var err error
		head, _, err = readHead(tx)
		return err
	})
	if err != nil || head.Seq == 0 {
		return err
	}
	files, err := archiveFiles(dir)
	if err != nil {
		return fmt.Errorf("store: archived records: %w", err)
	}
	// Pass 1: the last line of each record, when a record has more than one.
	last := map[TxnID]uint64{}
	dup := false
	seen := map[TxnID]uint64{}
	walk := func(each func(l archiveLine) error) error {
		for _, name := range files {
			if name > head.File {
				break
			}
			err := readLines(filepath.Join(dir, name), 0, func(raw []byte, _ int64) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				l, err := decodeLine(raw)
				if err != nil {
					return fmt.Errorf("%s: %w: %w", name, ErrArchive, err)
				}
				if l.Seq > head.Seq {
					return errStopTail
				}
				if l.Kind != lineRecord {
					return nil
				}
				return each(l)
			})
			if errors.Is(err, errStopTail) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("store: archived records: %w", err)
			}
		}
		return nil
	}
	err = walk(func(l archiveLine) error {
		if _, ok := seen[l.Txn]; ok {
			dup = true
		}
		seen[l.Txn] = l.Seq
		return nil
	})
	if err != nil {
		return err
	}
	if dup {
		last = seen
	}
	seen = nil
	return walk(func(l archiveLine) error {
		if dup && last[l.Txn] != l.Seq {
			return nil
		}
		rec, err := decodeRecord(l.Txn, l.Value)
		if err != nil {
			return err
		}
		return fn(rec)
	})
}
