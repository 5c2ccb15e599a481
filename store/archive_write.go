package store

// Writing the archive: the archive writer that chains lines, and the run (Store.Archive)
// that moves closed batches out of the live file one batch per commit (a chunk), releasing
// the write lock between chunks so that sales wait for one chunk at most.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

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

// Archive moves closed batches older than opts.Keep out of the live file into the archive
// files (see the comment at the top of archive.go), keeping the newest closed batch and any
// batch a record of which has a queued reversal or advice. It works in chunks of one batch
// (its records, its close record and the audit links that no live record needs any more):
// each chunk is written, synced and committed under the Store's write lock, which is
// released between chunks, so a sale waits for one chunk at most and memory holds one
// batch's records at most. A crash or an error between chunks leaves the chunks before it
// archived and the rest live; the next run goes on from there. The report adds up the
// chunks'.
func (s *Store) Archive(ctx context.Context, opts ArchiveOptions) (ArchiveReport, error) {
	var rep ArchiveReport
	if opts.Dir == "" {
		opts.Dir = ArchiveDir(s.path)
	}
	if opts.Keep <= 0 {
		opts.Keep = 30 * 24 * time.Hour
	}
	held := map[uint64]bool{}
	links := false // batches first; then the audit links, maxChunkLinks at a time
	for {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("store: archive: %w", err)
		}
		c, err := s.archiveChunk(ctx, opts, links)
		rep.Batches = append(rep.Batches, c.Batches...)
		rep.Records += c.Records
		rep.Links += c.Links
		rep.Lines += c.Lines
		rep.Reused += c.Reused
		if c.File != "" {
			rep.File = c.File
		}
		for _, b := range c.Held {
			if !held[b] {
				held[b] = true
				rep.Held = append(rep.Held, b)
			}
		}
		switch {
		case err != nil:
			return rep, err
		case !links && len(c.Batches) == 0:
			if len(rep.Batches) == 0 && c.Lines+c.Reused == 0 {
				return rep, nil // nothing archived: no link needs to move
			}
			links = true
		case links && c.Links < maxChunkLinks:
			return rep, nil
		}
	}
}

// maxChunkLinks bounds the audit links one chunk moves.
const maxChunkLinks = 10000

// archiveChunk archives, in one hold of the write lock and one commit, the oldest closed
// batch Archive may archive or (links true) up to maxChunkLinks of the audit links no live
// record needs, with the lines a crashed run left past the head. Its report's Batches is
// empty when there was no such batch (lines a crashed run wrote may still have been
// committed).
func (s *Store) archiveChunk(ctx context.Context, opts ArchiveOptions, links bool) (ArchiveReport, error) {
	var rep ArchiveReport
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
	err := s.dbView(func(tx *bolt.Tx) error {
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
		if err != nil || len(closed) < 2 || links {
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
			break // one batch per chunk
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
	if len(batch) == 0 && len(tail) == 0 && !links {
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
			links = true // a crashed chunk was moving links: move them again, reusing its lines
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
	err = s.dbView(func(tx *bolt.Tx) error {
		if !links {
			return nil // a batch's chunk: its links move once the batches are done
		}
		latest := map[string]uint64{}
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var l jsonLink
			if len(k) == 8 && jsonUnmarshalStrict(v, &l) == nil {
				seq := binary.BigEndian.Uint64(k)
				l.named(func(ref, _ string) { latest[ref] = seq })
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
			if seq >= cut || len(moved) == maxChunkLinks {
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
	err = s.dbUpdate(func(tx *bolt.Tx) error {
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
