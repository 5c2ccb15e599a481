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
// An archive run (Store.Archive) writes and fsyncs its lines first, then removes what they
// hold from the live file in one bbolt commit, with an "archive" link in the audit chain
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
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
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

// archiveWriter appends lines to the archive files, chaining them.
type archiveWriter struct {
	dir   string
	file  string // base name being appended to
	f     *os.File
	w     *bufio.Writer
	seq   uint64
	hash  string
	size  int64
	fresh bool // f was created by this writer: sync the directory too
	lines int
}

func (a *archiveWriter) add(now time.Time, l archiveLine) error {
	name := archiveFileName(now)
	if a.f == nil || name != a.file {
		if err := a.flush(); err != nil {
			return err
		}
		if a.f != nil {
			_ = a.f.Close()
			a.f = nil
		}
		if a.file != name && a.file != "" {
			l.PrevFile = a.file
		}
		_, statErr := os.Stat(filepath.Join(a.dir, name))
		f, err := os.OpenFile(filepath.Join(a.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		if name != a.file {
			a.size = fi.Size()
		}
		a.f, a.w, a.file = f, bufio.NewWriterSize(f, 256<<10), name
		a.fresh = a.fresh || errors.Is(statErr, os.ErrNotExist)
	}
	a.seq++
	l.V, l.Seq, l.Prev = archiveVersion, a.seq, a.hash
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	a.hash = sum(b)
	a.size += int64(len(b)) + 1
	a.lines++
	if _, err := a.w.Write(b); err != nil {
		return err
	}
	return a.w.WriteByte('\n')
}

func (a *archiveWriter) flush() error {
	if a.f == nil {
		return nil
	}
	if err := a.w.Flush(); err != nil {
		return err
	}
	return a.f.Sync()
}

// close flushes, syncs and closes; it syncs the directory when a file was created.
func (a *archiveWriter) close() error {
	err := a.flush()
	if a.f != nil {
		err = errors.Join(err, a.f.Close())
		a.f = nil
	}
	if err == nil && a.fresh {
		if d, derr := os.Open(a.dir); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	return err
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

// Archive moves closed batches older than opts.Keep out of the live file into the archive
// files (see the comment at the top of archive.go), keeping the newest closed batch and any
// batch a record of which has a queued reversal or advice. It holds the Store's write lock
// for its whole run: sales wait (posd runs it after a batch close and at start).
func (s *Store) Archive(ctx context.Context, opts ArchiveOptions) (ArchiveReport, error) {
	var rep ArchiveReport
	if opts.Dir == "" {
		opts.Dir = ArchiveDir(s.path)
	}
	if opts.Keep <= 0 {
		opts.Keep = 30 * 24 * time.Hour
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("store: archive: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return rep, fmt.Errorf("store: archive: %w", ErrClosed)
	}
	if err := s.fold(); err != nil {
		return rep, s.wrap("archive", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return rep, fmt.Errorf("store: archive: %w", err)
	}
	now := s.now()
	var (
		head  archiveHead
		base  auditBase
		batch []Batch
		recs  = map[uint64][]TxnID{}
		vals  = map[TxnID][]byte{}
		bvals = map[uint64][]byte{}
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if head, base, err = readHead(tx); err != nil {
			return err
		}
		var closed []Batch
		err = tx.Bucket(bucketBatches).ForEach(func(k, v []byte) error {
			b, err := decodeBatch(k, v)
			if err != nil {
				return err
			}
			if b.State == BatchClosed {
				closed = append(closed, b)
			}
			bvals[b.Number] = bytes.Clone(v)
			return nil
		})
		if err != nil || len(closed) < 2 {
			return err
		}
		queued := map[TxnID]bool{}
		err = forEachQueued(tx, func(k, v []byte) error {
			it, _, err := decodeItem(QueueID(binary.BigEndian.Uint64(k)), v)
			if err != nil {
				return err
			}
			queued[it.TxnID] = true
			return nil
		})
		if err != nil {
			return err
		}
		cutoff := now.Add(-opts.Keep)
		j, idx := tx.Bucket(bucketJournal), tx.Bucket(bucketBatchIdx)
		for _, b := range closed[:len(closed)-1] { // the newest closed batch stays
			if !b.Ended.Before(cutoff) {
				continue
			}
			var ids []TxnID
			held := false
			prefix := batchKey(b.Number)
			c := idx.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				if len(k) != 16 {
					return fmt.Errorf("batch index key of %d bytes: %w", len(k), ErrCorrupt)
				}
				id := TxnID(binary.BigEndian.Uint64(k[8:]))
				if queued[id] {
					held = true
					break
				}
				v := j.Get(id.key())
				if v == nil {
					return fmt.Errorf("record %d is in the index of batch %d but not in the journal: %w", id, b.Number, ErrCorrupt)
				}
				ids = append(ids, id)
				vals[id] = bytes.Clone(v)
			}
			if held {
				rep.Held = append(rep.Held, b.Number)
				for _, id := range ids {
					delete(vals, id)
				}
				continue
			}
			batch = append(batch, b)
			recs[b.Number] = ids
		}
		return nil
	})
	if err != nil {
		return rep, s.wrap("archive", err)
	}
	tail, end, err := readTail(opts.Dir, head)
	if err != nil {
		return rep, fmt.Errorf("store: archive: %w", err)
	}
	if len(batch) == 0 && len(tail) == 0 {
		return rep, nil
	}
	written := map[string]string{} // "txn/ID", "batch/N", "link/N" -> sum of the value
	for _, t := range tail {
		switch t.line.Kind {
		case lineRecord:
			written[txnRef(t.line.Txn)] = t.sum
		case lineBatch:
			written[batchRef(t.line.Batch)] = t.sum
		case lineLink:
			written["link/"+strconv.FormatUint(t.line.Link, 10)] = t.sum
		}
	}
	aw := &archiveWriter{dir: opts.Dir, file: end.File, seq: end.Seq, hash: end.Hash, size: end.Size}
	defer aw.close()
	put := func(ref string, l archiveLine) error {
		if w, ok := written[ref]; ok && w == sum(l.Value) {
			rep.Reused++
			return nil
		}
		return aw.add(now, l)
	}
	var removed []TxnID
	for _, b := range batch {
		for _, id := range recs[b.Number] {
			if err := put(txnRef(id), archiveLine{Kind: lineRecord, Txn: id, Batch: b.Number, Value: vals[id]}); err != nil {
				return rep, fmt.Errorf("store: archive: %w", err)
			}
			removed = append(removed, id)
		}
		if err := put(batchRef(b.Number), archiveLine{Kind: lineBatch, Batch: b.Number, Value: bvals[b.Number]}); err != nil {
			return rep, fmt.Errorf("store: archive: %w", err)
		}
		rep.Batches = append(rep.Batches, b.Number)
	}
	// The audit links no live record, item or batch needs: those before the oldest link
	// that is still the latest of something live.
	gone := map[string]bool{}
	for _, id := range removed {
		gone[txnRef(id)] = true
	}
	for _, b := range rep.Batches {
		gone[batchRef(b)] = true
	}
	var moved []archiveLine
	newBase := base
	err = s.db.View(func(tx *bolt.Tx) error {
		latest := map[string]uint64{}
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var l jsonLink
			if len(k) == 8 && jsonUnmarshalStrict(v, &l) == nil && l.Ref != "" {
				latest[l.Ref] = binary.BigEndian.Uint64(k)
			}
		}
		cut := uint64(0) // links below cut move; 0: the chain's end + 1
		need := func(ref string) {
			if seq, ok := latest[ref]; ok && !gone[ref] && (cut == 0 || seq < cut) {
				cut = seq
			}
		}
		for _, w := range []struct {
			prefix string
			b      []byte
		}{{"txn/", bucketJournal}, {"queue/", bucketQueueRev}, {"queue/", bucketQueueAdv}, {"batch/", bucketBatches}} {
			_ = tx.Bucket(w.b).ForEach(func(k, _ []byte) error {
				if len(k) == 8 {
					need(w.prefix + strconv.FormatUint(binary.BigEndian.Uint64(k), 10))
				}
				return nil
			})
		}
		if cut == 0 {
			cut = s.auditSeq + 1
		}
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if seq >= cut {
				break
			}
			var l jsonLink
			if jsonUnmarshalStrict(v, &l) == nil {
				newBase.Seq, newBase.MAC, newBase.Key = seq, l.MAC, l.Key
				if l.Kind == linkUpgrade {
					newBase.Txn, newBase.Queue = max(newBase.Txn, l.Txn), max(newBase.Queue, l.Queue)
				}
			} else {
				var a jsonAudit
				if err := json.Unmarshal(v, &a); err != nil {
					return fmt.Errorf("audit link %d: %w", seq, ErrCorrupt)
				}
				newBase.Seq, newBase.MAC, newBase.Key = seq, a.Hash, ""
			}
			moved = append(moved, archiveLine{Kind: lineLink, Link: seq, Value: bytes.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return rep, s.wrap("archive", err)
	}
	for _, l := range moved {
		if err := put("link/"+strconv.FormatUint(l.Link, 10), l); err != nil {
			return rep, fmt.Errorf("store: archive: %w", err)
		}
	}
	rep.Lines = aw.lines
	if err := aw.close(); err != nil {
		return rep, fmt.Errorf("store: archive: writing %s: %w", aw.file, err)
	}
	if aw.seq == head.Seq {
		return rep, nil
	}
	if failArchive != nil {
		if err := failArchive(); err != nil {
			return rep, err
		}
	}
	rng := archiveRange{File: aw.file, First: head.Seq + 1, Last: aw.seq, Head: aw.hash, Txns: txnRanges(removed), Batches: rep.Batches}
	if len(moved) > 0 {
		rng.Links = [2]uint64{moved[0].Link, moved[len(moved)-1].Link}
	}
	newHead := archiveHead{File: aw.file, Seq: aw.seq, Hash: aw.hash, Size: aw.size, MaxTxn: head.MaxTxn}
	if len(removed) > 0 {
		newHead.MaxTxn = max(newHead.MaxTxn, slices.Max(removed))
	}
	saved := s.saveChain()
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := s.removeArchived(tx, removed, rep.Batches); err != nil {
			return err
		}
		a := tx.Bucket(bucketAudit)
		for _, l := range moved {
			if err := a.Delete(binary.BigEndian.AppendUint64(nil, l.Link)); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		hv, _ := json.Marshal(newHead)
		if err := meta.Put(keyArchiveHead, hv); err != nil {
			return err
		}
		if len(moved) > 0 {
			bv, _ := json.Marshal(newBase)
			if err := meta.Put(keyAuditBase, bv); err != nil {
				return err
			}
		}
		return s.linkTx(ctx, tx, jsonLink{Kind: linkArchive, Who: "posd", Archive: &rng,
			Detail: fmt.Sprintf("archived %d record(s) of batch(es) %v and %d audit link(s) to %s, lines %d to %d", len(removed), rep.Batches, len(moved), aw.file, rng.First, rng.Last)})
	})
	if err != nil {
		s.restoreChain(saved)
		return rep, s.wrap("archive", err)
	}
	rep.Records, rep.Links, rep.File = len(removed), len(moved), aw.file
	return rep, nil
}

// failArchive, when set (tests), is called between the archive write and the live commit:
// an error returned stops the run there, as a crash would.
var failArchive func() error

// removeArchived deletes the archived records and batches from the live file, with their
// index entries: the batch index, the pan index, the till keys and refund keys that name
// them. Inside the archive commit.
func (s *Store) removeArchived(tx *bolt.Tx, ids []TxnID, batches []uint64) error {
	j, till := tx.Bucket(bucketJournal), tx.Bucket(bucketTill)
	for _, id := range ids {
		v := j.Get(id.key())
		if v == nil {
			continue
		}
		rec, err := decodeRecord(id, v)
		if err != nil {
			return err
		}
		if err := j.Delete(id.key()); err != nil {
			return err
		}
		if rec.Intent.PANHash != "" {
			if err := tx.Bucket(bucketPANIndex).Delete(panIndexKey(rec.Intent.PANHash, id)); err != nil {
				return err
			}
		}
		if rec.Outcome != nil && rec.Outcome.Batch != 0 {
			if err := tx.Bucket(bucketBatchIdx).Delete(batchIndexKey(rec.Outcome.Batch, id)); err != nil {
				return err
			}
		}
		for _, k := range tillKeys(rec.Intent) {
			if bytes.Equal(till.Get([]byte(k)), id.key()) {
				if err := till.Delete([]byte(k)); err != nil {
					return err
				}
			}
		}
		for _, k := range refundKeys(rec.Intent, id) {
			if err := till.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	for _, n := range batches {
		if err := tx.Bucket(bucketBatches).Delete(batchKey(n)); err != nil {
			return err
		}
	}
	return nil
}

// txnRanges writes ids (ascending within each batch) as sorted, merged ranges.
func txnRanges(ids []TxnID) [][2]TxnID {
	s := slices.Clone(ids)
	slices.Sort(s)
	var out [][2]TxnID
	for _, id := range s {
		if n := len(out); n > 0 && out[n-1][1]+1 >= id {
			out[n-1][1] = max(out[n-1][1], id)
			continue
		}
		out = append(out, [2]TxnID{id, id})
	}
	return out
}

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
