package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SalvageOptions configures [Salvage]. A nil *SalvageOptions means all defaults.
//
// A plain value: safe for concurrent use when not modified.
type SalvageOptions struct {
	// Who is recorded in the new file's audit chain as having made the copy.
	// Default "posd store salvage".
	Who string
	// Timeout is how long Salvage waits for a shared lock on the damaged file (a running
	// posd holds it exclusively) before it fails with ErrLocked. Zero or negative means 1s.
	Timeout time.Duration
	// FileMode is the permission of the new file. Zero means 0600.
	FileMode os.FileMode
	// Margin is how far the STAN counter or an ID sequence is moved ahead when the damaged
	// file does not tell its value for certain (its bucket unreadable, a meta page damaged),
	// so that no STAN or ID handed out before the damage is handed out again. Zero means 1000.
	Margin uint64
	// Now is the clock for the audit entry recording the salvage and for placeholder
	// records. Default time.Now.
	Now func() time.Time
	// Auditor and AuditKeyID MAC the links the salvage adds to the new file's audit chain
	// (see Options). Default nil: those links are unkeyed, and a keyed chain then does not
	// verify past them.
	Auditor    Auditor
	AuditKeyID string
}

// SalvageReport is what [Salvage] copied and what it could not. It holds no card data:
// records and items carry masked PANs only, and sealed data is neither opened nor shown.
//
// A plain value: safe for concurrent use when not modified.
type SalvageReport struct {
	Source, Dest string
	SourceSize   int64
	SourceSHA256 string // hex SHA-256 of the damaged file as it was read
	Commit       uint64 // the bbolt transaction whose state was copied
	// Journal records copied, and how many of them have no outcome (posd records those
	// outcome-unknown at its next start and reverses them).
	Records, Open int
	// Placeholders counts journal records that were lost and rebuilt from the queue items
	// that settle them, so that those items can still be sent and acknowledged.
	Placeholders int
	// Queue items copied, by kind; Parked counts parked items of both kinds.
	Reversals, Advices, Parked int
	// AuditEntries counts the audit entries copied, not counting the one that records the
	// salvage.
	AuditEntries int
	// AuditLinks counts every link of the audit chain copied (the chain links every journal
	// and queue write); Resealed the links the copy added for records and items whose value
	// no copied link names (lost, rebuilt as placeholders or open, or written after a break
	// in the chain): the new file's chain verifies, and says from where it was re-sealed.
	AuditLinks, Resealed int
	// STAN is the new file's STAN counter: the next STAN handed out is the one after it.
	STAN uint32
	// Lost lists what could not be copied or may be missing, each with what to do.
	Lost []Problem
	// Notes lists what was copied with a change (a PAN re-masked, an ID moved ahead).
	Notes []Problem
	// Check is [Store.Check] of the new file. It lists every parked item as a problem, as
	// it does for any store.
	Check Report
}

// Complete reports whether everything was copied and the new file passed its check, the
// parked items that Check lists aside.
func (r SalvageReport) Complete() bool {
	return len(r.Lost) == 0 && len(r.Check.Problems) == r.Check.Parked
}

// Salvage copies everything readable of the store at src, which may be damaged, into a new
// store at dst. src is only read: it is opened read-only, under a shared lock (a running
// posd holds the file exclusively, and Salvage then fails with [ErrLocked] after
// opts.Timeout), and its pages are read and checked one by one, so that a damaged page is
// reported with the keys it held rather than stopping the copy; nothing in src panics
// Salvage. dst must not exist or be empty.
//
// dst gets, with the same IDs: every journal record that decodes, the open index and the pan
// index rebuilt from them, every queued reversal and advice that decodes (sealed card data
// copied byte for byte, never opened: Salvage needs no Sealer), the counters, and the audit
// chain up to its first damaged entry, followed by an entry recording the salvage (who, from
// what, what was copied and what was lost). The records of src's write-ahead log (src-wal)
// not yet folded into src are replayed into dst; the log is only read. The sequences of transaction and queue IDs and the STAN counter
// continue after the highest value src shows, moved ahead by opts.Margin where src does not
// tell it for certain, so that nothing is handed out twice. A queued item whose journal
// record is lost gets a placeholder record (kind "salvaged") so that it can still be sent and
// acknowledged.
//
// The report lists what was copied and everything lost or unreadable by its key, with what
// to do; [SalvageReport.Complete] tells whether anything was. dst is then checked with
// [Store.Check]. On error dst is not left behind: the error says why nothing was copied (src
// locked, not a bbolt file or both of its meta pages damaged, not a posd store, dst not
// empty).
func Salvage(ctx context.Context, src, dst string, opts *SalvageOptions) (SalvageReport, error) {
	var o SalvageOptions
	if opts != nil {
		o = *opts
	}
	if o.Who == "" {
		o.Who = "posd store salvage"
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.FileMode == 0 {
		o.FileMode = 0o600
	}
	if o.Margin == 0 {
		o.Margin = 1000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	rep := SalvageReport{Source: src, Dest: dst}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("store: salvage: %w", err)
	}
	if src == "" || dst == "" {
		return rep, fmt.Errorf("store: salvage: %w: both the damaged file and the new file must be named", ErrInvalid)
	}
	if err := salvageCheckDest(dst); err != nil {
		return rep, err
	}
	st, err := salvageRead(ctx, src, o.Timeout, &rep)
	if err != nil {
		return rep, err
	}
	// The write-ahead log beside the bbolt file: what it holds that was not yet folded into
	// the bbolt file is replayed into st here, before the copy is planned.
	if err := salvageWAL(ctx, src+logSuffix, st, &rep); err != nil {
		return rep, err
	}
	plan := st.plan(o, &rep)
	if err := salvageWrite(ctx, dst, plan, o, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// salvageWAL replays into st the records of src's write-ahead log that were not yet folded
// into the bbolt file (those after the LSN the file's meta bucket records), as Open would,
// reading the log with the Store's own readLog. What it cannot replay is reported lost.
func salvageWAL(_ context.Context, walPath string, st *salvageState, rep *SalvageReport) error {
	lost := func(what string) {
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("write-ahead log %s: %s", walPath, what),
			"keep it with the damaged file: the transactions written last may be in it; find them in the till's and the acquirer's records"})
	}
	f, err := os.Open(walPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		lost(fmt.Sprintf("cannot be read (%v): not replayed", err))
		return nil
	}
	defer f.Close()
	hdr := make([]byte, logHeaderSize)
	n, _ := f.ReadAt(hdr, 0)
	switch {
	case bytes.Equal(hdr[:n], make([]byte, n)):
		return nil // never written
	case n < logHeaderSize || string(hdr[:len(logMagic)]) != logMagic:
		lost("not a posd write-ahead log (its header is damaged): not replayed")
		return nil
	case hdr[len(logMagic)] != logVersion:
		lost(fmt.Sprintf("log version %d, this posd reads %d: not replayed", hdr[len(logMagic)], logVersion))
		return nil
	}
	entries, _, err := readLog(f)
	if err != nil {
		lost(fmt.Sprintf("%v: not replayed", redactDigitRuns(err.Error())))
		return nil
	}
	if len(entries) == 0 || entries[len(entries)-1].lsn <= st.logLSN && st.logLSNKnown {
		return nil // nothing beyond what the file holds
	}
	switch {
	case len(st.storeID) != storeIDLen:
		lost(fmt.Sprintf("%d records not replayed: the store's id (in its meta bucket) is unreadable, so the log cannot be matched to it", len(entries)))
		return nil
	case !bytes.Equal(hdr[16:16+storeIDLen], st.storeID):
		lost(fmt.Sprintf("%d records not replayed: the log belongs to another store file (or the id of either is damaged)", len(entries)))
		return nil
	case !st.logLSNKnown:
		lost(fmt.Sprintf("%d records not replayed: which of them the file already holds is unreadable (its meta bucket)", len(entries)))
		return nil
	}
	next, replayed := st.logLSN+1, 0
	for _, e := range entries {
		if e.lsn <= st.logLSN {
			continue
		}
		if e.lsn != next {
			lost(fmt.Sprintf("records %d to %d are missing (they were folded by the commit that is missing, or the log is damaged)", next, e.lsn-1))
		}
		next = e.lsn + 1
		st.replay(e, rep)
		replayed++
	}
	rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("write-ahead log %s: %d records not yet folded into the file were replayed into the copy", walPath, replayed), "none"})
	return nil
}

// replay applies one log record to st, as applyOp applies it to a bbolt file.
func (st *salvageState) replay(e logEntry, rep *SalvageReport) {
	lost := func(what, do string) {
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("write-ahead log record %d: %s", e.lsn, what), do})
	}
	op := e.op
	switch op.Op {
	case opBegin:
		rec, err := decodeRecord(op.Txn, op.Record)
		if err != nil {
			lost(fmt.Sprintf("the intent of transaction %d cannot be decoded (%s): not copied", op.Txn, redactDigitRuns(err.Error())),
				"this transaction's record is lost and it had no outcome yet, so the host may have approved it: ask the acquirer, and reverse it there if so")
			return
		}
		st.records[op.Txn] = &salvageRecord{rec: rec, raw: op.Record}
		delete(st.badRecord, op.Txn)
		st.wasOpen[op.Txn] = true
		t := st.tree(bucketJournal)
		t.seq = max(t.seq, uint64(op.Txn))
		if op.STAN != 0 {
			st.stan, st.stanKnown = op.STAN, true
		}
	case opSTAN:
		st.stan, st.stanKnown = op.STAN, true
	case opFinish:
		out := Outcome(*op.Outcome)
		switch r := st.records[op.Txn]; {
		case r == nil:
			lost(fmt.Sprintf("the outcome (%s) of transaction %d, whose record is lost: not copied", salvageQuote(string(out.State)), op.Txn),
				"look the transaction up in the till's and the acquirer's records")
		case r.rec.Outcome != nil:
			rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("write-ahead log record %d: transaction %d is finished already (%s): its outcome in the log was not applied", e.lsn, op.Txn, salvageQuote(string(r.rec.Outcome.State))), "none"})
		default:
			r.rec.Outcome, r.raw = &out, nil
		}
		for _, li := range op.Items {
			it, sealed, err := decodeItem(li.ID, li.Value)
			if err != nil {
				st.badItem[li.ID], st.itemKind[li.ID] = redactDigitRuns(err.Error()), li.Kind
				continue
			}
			if it.Kind != KindReversal && it.Kind != KindAdvice {
				it.Kind = li.Kind
			}
			st.items[li.ID] = &salvageItem{it: it, sealed: sealed, raw: li.Value}
			delete(st.badItem, li.ID)
			t := st.tree(bucketQueue)
			t.seq = max(t.seq, uint64(li.ID))
		}
	}
}

// salvageCheckDest refuses a destination that exists and is not empty (or has a write-ahead
// log that is not empty).
func salvageCheckDest(dst string) error {
	for _, p := range []string{dst, dst + logSuffix} {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("store: salvage: %w", err)
		case fi.IsDir():
			return fmt.Errorf("store: salvage: %s is a directory: %w: name the new file", p, ErrInvalid)
		case fi.Size() > 0:
			return fmt.Errorf("store: salvage: %s exists and is not empty: %w: the copy goes to a new file; name one that does not exist", p, ErrInvalid)
		}
	}
	return nil
}

// The bbolt file format (go.etcd.io/bbolt, data file version 2), read without bbolt so that
// a damaged page is an error naming it: bbolt's cursors trust the pages they follow, panic on
// some damage, fault on a truncated file and recurse without end on a loop of pages.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltPageHeader   = 16 // id uint64, flags uint16, count uint16, overflow uint32
	boltElement      = 16 // leaf: flags, pos, ksize, vsize uint32; branch: pos, ksize uint32, pgid uint64
	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltBucketLeaf   = 0x01 // a leaf element whose value is a bucket header
	boltBucketHeader = 16   // root pgid uint64 (0: inline page follows), sequence uint64
	boltMetaSize     = 64   // magic, version, page size, flags, root bucket (16), freelist, pgid, txid, checksum
	salvageMaxDepth  = 32
)

// boltMeta is a bbolt meta page.
type boltMeta struct {
	pageSize          uint32
	root, rootSeq     uint64
	highWater, txid   uint64
	magicOK, checksum bool
}

func parseBoltMeta(page []byte) (boltMeta, error) {
	var m boltMeta
	if len(page) < boltPageHeader+boltMetaSize {
		return m, errors.New("the file ends inside it")
	}
	ne := binary.NativeEndian
	b := page[boltPageHeader:]
	m.pageSize = ne.Uint32(b[8:])
	m.root, m.rootSeq = ne.Uint64(b[16:]), ne.Uint64(b[24:])
	m.highWater, m.txid = ne.Uint64(b[40:]), ne.Uint64(b[48:])
	h := fnv.New64a()
	h.Write(b[:56])
	switch {
	case ne.Uint32(b[0:]) != boltMagic:
		return m, errors.New("no bbolt marker")
	case ne.Uint32(b[4:]) != boltVersion:
		return m, fmt.Errorf("bbolt format version %d, want %d", ne.Uint32(b[4:]), boltVersion)
	case h.Sum64() != ne.Uint64(b[56:]):
		return m, errors.New("checksum mismatch")
	}
	return m, nil
}

// salvageBuckets are the buckets Salvage knows: it copies their contents (the pan index is
// rebuilt from the records).
var salvageBuckets = append([][]byte{bucketMeta}, dataBuckets...) // a new bucket in dataBuckets is salvaged too

// salvagePages reads the pages of a bbolt file with ReadAt, checking each.
type salvagePages struct {
	f         io.ReaderAt
	size      int64
	pageSize  uint64
	highWater uint64 // pages at or above this are not in use
	seen      map[uint64]bool
	drop      bool // keep no leaf entries: only check that the pages read (probePages)
	reads     int
}

func (p *salvagePages) read(id uint64) ([]byte, error) {
	switch {
	case id < 2:
		return nil, fmt.Errorf("page %d is a meta page, named as part of a tree", id)
	case id >= p.highWater:
		return nil, fmt.Errorf("page %d is beyond the last page in use (%d)", id, p.highWater-1)
	case p.seen[id]:
		return nil, fmt.Errorf("page %d is reached twice (a loop in the tree)", id)
	}
	p.seen[id] = true
	off := id * p.pageSize
	if off+p.pageSize > uint64(p.size) {
		return nil, fmt.Errorf("page %d is missing: the file ends at byte %d (truncated)", id, p.size)
	}
	hdr := make([]byte, boltPageHeader)
	if _, err := p.f.ReadAt(hdr, int64(off)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d is overwritten: its header names page %d", id, got)
	}
	if fl := ne.Uint16(hdr[8:]); fl != boltBranchPage && fl != boltLeafPage {
		return nil, fmt.Errorf("page %d is damaged: type %#x is neither a branch nor a leaf page", id, fl)
	}
	n := 1 + uint64(ne.Uint32(hdr[12:]))
	if id+n > p.highWater || off+n*p.pageSize > uint64(p.size) {
		return nil, fmt.Errorf("page %d is damaged or truncated: it claims %d overflow pages, past the end of the file", id, n-1)
	}
	for i := uint64(1); i < n; i++ {
		if p.seen[id+i] {
			return nil, fmt.Errorf("page %d overlaps page %d", id, id+i)
		}
		p.seen[id+i] = true
	}
	buf := make([]byte, n*p.pageSize)
	if _, err := p.f.ReadAt(buf, int64(off)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

// boltElem is one element of a leaf page (key, value, flags) or a branch page (key, child).
type boltElem struct {
	flags      uint32
	key, value []byte
	child      uint64
}

// parseBoltPage returns the elements of a branch or leaf page (an inline bucket's page too),
// checking that each lies inside the page and that the keys increase and lie in [lo, hi),
// as bbolt's own check does.
func parseBoltPage(buf, lo, hi []byte) (leaf bool, elems []boltElem, err error) {
	if len(buf) < boltPageHeader {
		return false, nil, errors.New("shorter than a page header")
	}
	ne := binary.NativeEndian
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	leaf = flags == boltLeafPage
	switch {
	case !leaf && flags != boltBranchPage:
		return false, nil, fmt.Errorf("type %#x is neither a branch nor a leaf page", flags)
	case boltPageHeader+count*boltElement > len(buf):
		return false, nil, fmt.Errorf("it claims %d elements, more than fit", count)
	case !leaf && count == 0:
		return false, nil, errors.New("an empty branch page")
	}
	prev := lo
	for i := range count {
		eo := uint64(boltPageHeader + i*boltElement)
		var e boltElem
		var start, ksize, vsize uint64
		if leaf {
			e.flags = ne.Uint32(buf[eo:])
			start, ksize, vsize = eo+uint64(ne.Uint32(buf[eo+4:])), uint64(ne.Uint32(buf[eo+8:])), uint64(ne.Uint32(buf[eo+12:]))
			if e.flags&^boltBucketLeaf != 0 {
				return false, nil, fmt.Errorf("element %d has unknown flags %#x", i, e.flags)
			}
		} else {
			start, ksize = eo+uint64(ne.Uint32(buf[eo:])), uint64(ne.Uint32(buf[eo+4:]))
			e.child = ne.Uint64(buf[eo+8:])
		}
		if start+ksize+vsize > uint64(len(buf)) {
			return false, nil, fmt.Errorf("element %d lies outside the page", i)
		}
		e.key, e.value = buf[start:start+ksize], buf[start+ksize:start+ksize+vsize]
		switch {
		case ksize == 0:
			return false, nil, fmt.Errorf("element %d has an empty key", i)
		case prev != nil && i == 0 && bytes.Compare(e.key, prev) < 0,
			prev != nil && i > 0 && bytes.Compare(e.key, prev) <= 0,
			hi != nil && bytes.Compare(e.key, hi) >= 0:
			return false, nil, fmt.Errorf("element %d's key is out of order", i)
		}
		prev = e.key
		elems = append(elems, e)
	}
	return leaf, elems, nil
}

// salvageTree is what was read of one bucket: its entries in key order, and the key ranges
// that could not be read.
type salvageTree struct {
	found   bool   // the bucket's header was read
	seq     uint64 // the bucket's sequence, when found
	entries []boltElem
	lost    []salvageRange
}

// salvageRange is a range of keys [lo, hi) that could not be read; nil is an open end.
type salvageRange struct {
	lo, hi []byte
	why    string
}

func (p *salvagePages) walk(ctx context.Context, id uint64, lo, hi []byte, depth int, t *salvageTree) error {
	if p.reads++; p.reads%256 == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if depth > salvageMaxDepth {
		t.lost = append(t.lost, salvageRange{lo, hi, fmt.Sprintf("page %d is nested too deep (a loop in the tree)", id)})
		return nil
	}
	buf, err := p.read(id)
	if err != nil {
		t.lost = append(t.lost, salvageRange{lo, hi, err.Error()})
		return nil
	}
	leaf, elems, err := parseBoltPage(buf, lo, hi)
	if err != nil {
		t.lost = append(t.lost, salvageRange{lo, hi, fmt.Sprintf("page %d is damaged: %v", id, err)})
		return nil
	}
	if leaf {
		if !p.drop {
			t.entries = append(t.entries, elems...)
		}
		return nil
	}
	for i, e := range elems {
		chi := hi
		if i+1 < len(elems) {
			chi = elems[i+1].key
		}
		if err := p.walk(ctx, e.child, e.key, chi, depth+1, t); err != nil {
			return err
		}
	}
	return nil
}

// bucket reads the bucket whose header (and inline page) is v. A panic while reading it, a
// bug here since every read is checked, loses the bucket, not the salvage.
func (p *salvagePages) bucket(ctx context.Context, v []byte) (t *salvageTree, err error) {
	t = &salvageTree{}
	defer func() {
		if r := recover(); r != nil {
			t = &salvageTree{found: t.found, seq: t.seq, lost: []salvageRange{{why: fmt.Sprintf("reading it failed: %v", r)}}}
			err = nil
		}
	}()
	if len(v) < boltBucketHeader {
		t.lost = append(t.lost, salvageRange{why: fmt.Sprintf("its header is %d bytes, want %d", len(v), boltBucketHeader)})
		return t, nil
	}
	t.found, t.seq = true, binary.NativeEndian.Uint64(v[8:])
	root := binary.NativeEndian.Uint64(v)
	if root != 0 {
		return t, p.walk(ctx, root, nil, nil, 0, t)
	}
	leaf, elems, perr := parseBoltPage(v[boltBucketHeader:], nil, nil)
	if perr == nil && !leaf {
		perr = errors.New("an inline bucket holds a branch page")
	}
	if perr != nil {
		t.lost = append(t.lost, salvageRange{why: fmt.Sprintf("its inline page is damaged: %v", perr)})
		return t, nil
	}
	t.entries = elems
	return t, nil
}

// salvageRecord is a journal record read from src; raw is its value as stored, nil when it
// must be encoded anew.
type salvageRecord struct {
	rec         Record
	raw         []byte
	placeholder bool // rebuilt from the queue items that settle it
}

// salvageItem is a queued item read from src with its sealed data; raw as for salvageRecord.
type salvageItem struct {
	it     Item
	sealed []byte
	raw    []byte
}

// salvageState is what was read of src, before it is planned into dst.
type salvageState struct {
	meta      boltMeta
	uncertain string // why the newest state may be missing (a damaged meta page); "" if not
	buckets   map[string]*salvageTree
	// From the meta bucket: the store's id and the last log record folded into the file.
	storeID     []byte
	logLSN      uint64
	logLSNKnown bool
	// The STAN counter, and whether it is known for certain.
	stan      uint32
	stanKnown bool
	records   map[TxnID]*salvageRecord
	items     map[QueueID]*salvageItem
	wasOpen   map[TxnID]bool   // src's open index
	badRecord map[TxnID]string // records that do not decode, and why
	badItem   map[QueueID]string
	itemKind  map[QueueID]Kind // the bucket a bad item was in
}

// salvageRead reads src into a salvageState.
func salvageRead(ctx context.Context, src string, timeout time.Duration, rep *SalvageReport) (*salvageState, error) {
	fi, err := os.Stat(src)
	switch {
	case err != nil:
		return nil, fmt.Errorf("store: salvage: %w", err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("store: salvage: %s is not a regular file: %w", src, ErrInvalid)
	case fi.Size() == 0:
		return nil, fmt.Errorf("store: salvage: %s is empty: %w: there is nothing to copy", src, ErrLayout)
	}
	// bbolt opens the file read-only: it takes the shared lock (a running posd holds it
	// exclusively) and checks the meta pages; the pages are then read here, not by bbolt.
	db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: salvage: %s: %w: stop posd before salvaging its store", src, ErrLocked)
	case isSystemError(err):
		return nil, fmt.Errorf("store: salvage: %w", err)
	default:
		return nil, fmt.Errorf("store: salvage: %s: %w: bbolt cannot open it (%w): it is not a bbolt file, or both of its meta pages (the first two pages, which say where everything is) are damaged; nothing was copied and the file was not changed", src, ErrLayout, err)
	}
	defer db.Close()
	pageSize := uint64(db.Info().PageSize)
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("store: salvage: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("store: salvage: reading %s: %w", src, err)
	}
	rep.SourceSize, rep.SourceSHA256 = size, hex.EncodeToString(h.Sum(nil))

	st := &salvageState{buckets: map[string]*salvageTree{}, records: map[TxnID]*salvageRecord{}, items: map[QueueID]*salvageItem{},
		wasOpen: map[TxnID]bool{}, badRecord: map[TxnID]string{}, badItem: map[QueueID]string{}, itemKind: map[QueueID]Kind{}}
	var metas [2]boltMeta
	var merrs [2]error
	for i := range metas {
		page := make([]byte, boltPageHeader+boltMetaSize)
		if _, err := f.ReadAt(page, int64(uint64(i)*pageSize)); err != nil {
			merrs[i] = err
			continue
		}
		metas[i], merrs[i] = parseBoltMeta(page)
	}
	// As bbolt does: the valid meta page of the newest transaction.
	use := 0
	switch {
	case merrs[0] == nil && merrs[1] == nil:
		if metas[1].txid > metas[0].txid {
			use = 1
		}
	case merrs[0] == nil:
	case merrs[1] == nil:
		use = 1
	default:
		return nil, fmt.Errorf("store: salvage: %s: %w: both meta pages are damaged (%v; %v); nothing was copied", src, ErrLayout, merrs[0], merrs[1])
	}
	st.meta = metas[use]
	rep.Commit = st.meta.txid
	if bad := 1 - use; merrs[bad] != nil {
		st.uncertain = fmt.Sprintf("meta page %d is damaged (%v)", bad, merrs[bad])
		rep.Lost = append(rep.Lost, Problem{
			fmt.Sprintf("%s: the copy is of commit %d (meta page %d); the last commit before the damage may be missing", st.uncertain, st.meta.txid, use),
			"compare the copy's last transactions and queue with the till's and the acquirer's; the STAN and the transaction, queue and audit IDs were moved ahead so that none is reused"})
	}
	if uint64(st.meta.pageSize) != pageSize {
		return nil, fmt.Errorf("store: salvage: %s: %w: meta page %d says pages are %d bytes, bbolt read %d", src, ErrLayout, use, st.meta.pageSize, pageSize)
	}
	if uint64(size) < st.meta.highWater*pageSize {
		rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("the file is truncated: %d bytes, its meta page says %d pages of %d bytes", size, st.meta.highWater, pageSize),
			"what was on missing pages in use is listed as lost; look for a backup or an older copy of the file"})
	}
	var unknown []string
	if st.buckets, unknown, err = salvageTrees(ctx, f, size, pageSize, st.meta, true); err != nil {
		return nil, fmt.Errorf("store: salvage: %w", err)
	}
	for _, name := range unknown {
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("bucket %q: not part of this release's layout: not copied", salvageQuote(name)),
			"if a newer posd wrote this file, salvage it with that release"})
	}
	// Key ranges unreadable in the newest commit's tree are read from the previous commit's,
	// when the other meta page is valid: bbolt reuses the pages of that tree only from the
	// commit after the newest one, so it is intact.
	if old := 1 - use; merrs[old] == nil && metas[old].txid < st.meta.txid && st.damaged() {
		oldBuckets, _, err := salvageTrees(ctx, f, size, pageSize, metas[old], true)
		if err != nil {
			return nil, fmt.Errorf("store: salvage: %w", err)
		}
		st.fillFrom(oldBuckets, metas[old].txid, rep)
	}
	if err := st.checkLayout(src, rep); err != nil {
		return nil, err
	}
	st.decode(rep)
	return st, nil
}

// salvageListWhy begins the reason a bucket is lost with the page that lists the buckets.
const salvageListWhy = "the page listing the buckets is unreadable: "

// salvageTrees reads the buckets of the commit m: the known ones by name, and the names of
// unknown ones.
//
// With keep false the buckets' entries are not kept: only what could not be read.
func salvageTrees(ctx context.Context, f io.ReaderAt, size int64, pageSize uint64, m boltMeta, keep bool) (map[string]*salvageTree, []string, error) {
	pages := &salvagePages{f: f, size: size, pageSize: pageSize, highWater: m.highWater, seen: map[uint64]bool{}}
	root := &salvageTree{found: true}
	if err := pages.walk(ctx, m.root, nil, nil, 0, root); err != nil {
		return nil, nil, err
	}
	pages.drop = !keep
	known := map[string]bool{}
	for _, b := range salvageBuckets {
		known[string(b)] = true
	}
	buckets := map[string]*salvageTree{}
	var unknown []string
	for _, e := range root.entries {
		name := string(e.key)
		switch {
		case !known[name]:
			unknown = append(unknown, name)
		case e.flags&boltBucketLeaf == 0:
			buckets[name] = &salvageTree{lost: []salvageRange{{why: "its entry is not a bucket"}}}
		default:
			t, err := pages.bucket(ctx, e.value)
			if err != nil {
				return nil, nil, err
			}
			buckets[name] = t
		}
	}
	for _, r := range root.lost {
		for _, b := range salvageBuckets {
			if buckets[string(b)] == nil && salvageInRange(b, r) {
				buckets[string(b)] = &salvageTree{lost: []salvageRange{{why: salvageListWhy + r.why}}}
			}
		}
	}
	return buckets, unknown, nil
}

// damaged reports whether a known bucket has unreadable key ranges.
func (st *salvageState) damaged() bool {
	for _, b := range salvageBuckets {
		if t := st.buckets[string(b)]; t == nil || len(t.lost) > 0 {
			return true
		}
	}
	return false
}

// fillFrom fills the unreadable key ranges of st's buckets from old, the buckets of the
// previous commit, where old has the whole range. What is filled is one commit old: it is
// reported lost, as it may lack the last commit's changes, and the sequences and the STAN
// are moved ahead.
func (st *salvageState) fillFrom(old map[string]*salvageTree, txid uint64, rep *SalvageReport) {
	filled := false
	for _, b := range salvageBuckets {
		name := string(b)
		t, o := st.buckets[name], old[name]
		if o == nil || !o.found {
			continue
		}
		if t == nil {
			t = &salvageTree{lost: []salvageRange{{why: "it is missing from the file"}}}
			st.buckets[name] = t
		}
		var still []salvageRange
		for _, r := range t.lost {
			if slices.ContainsFunc(o.lost, func(or salvageRange) bool { return salvageOverlap(r, or) }) {
				still = append(still, r)
				continue
			}
			n := 0
			for _, e := range o.entries {
				if salvageInRange(e.key, r) {
					t.entries = append(t.entries, e)
					n++
				}
			}
			if n == 0 { // the keys, if any, were written by the last commit: lost
				still = append(still, r)
				continue
			}
			filled = true
			what := fmt.Sprintf("bucket %q, keys from %x to %x", name, r.lo, r.hi)
			switch {
			case r.lo == nil && r.hi == nil:
				what = fmt.Sprintf("bucket %q", name)
			case (r.lo == nil || len(r.lo) == 8) && (r.hi == nil || len(r.hi) == 8) && salvageNouns[name] != "":
				what, _ = salvageRangeText(salvageNouns[name], r, t)
			}
			rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("%s: unreadable in the newest commit (%s); %d entries were read from the previous commit (%d) instead: the changes the last commit made to them are missing", what, r.why, n, txid),
				"a record may show no outcome (posd then reverses it), or a queued message the host acknowledged in the last commit may be sent again (the host answers it as a repeat); compare with the till's and the acquirer's records"})
		}
		if !t.found {
			t.found, t.seq = true, o.seq
		}
		t.lost = still
		sort.SliceStable(t.entries, func(i, j int) bool { return bytes.Compare(t.entries[i].key, t.entries[j].key) < 0 })
	}
	if filled && st.uncertain == "" {
		st.uncertain = fmt.Sprintf("parts of the store were read from the commit before the newest (%d)", txid)
	}
}

// salvageMerge merges adjacent unreadable ranges (consecutive pages of a tree), so that a
// truncated file is one line of the report per bucket, not one per page.
func salvageMerge(lost []salvageRange) []salvageRange {
	var out []salvageRange
	more := 0
	for _, r := range lost {
		if n := len(out); n > 0 && out[n-1].hi != nil && bytes.Equal(out[n-1].hi, r.lo) {
			out[n-1].hi = r.hi
			more++
			continue
		}
		if more > 0 {
			out[len(out)-1].why += fmt.Sprintf("; and %d more pages after it", more)
			more = 0
		}
		out = append(out, r)
	}
	if more > 0 {
		out[len(out)-1].why += fmt.Sprintf("; and %d more pages after it", more)
	}
	return out
}

// salvageNouns name the entries of the buckets keyed by IDs.
var salvageNouns = map[string]string{string(bucketJournal): "journal record", string(bucketOpen): "open index entry",
	string(bucketQueueRev): "queued reversal", string(bucketQueueAdv): "queued advice", string(bucketAudit): "audit entry"}

// salvageOverlap reports whether two key ranges overlap.
func salvageOverlap(a, b salvageRange) bool {
	return (a.hi == nil || b.lo == nil || bytes.Compare(b.lo, a.hi) < 0) && (b.hi == nil || a.lo == nil || bytes.Compare(a.lo, b.hi) < 0)
}

func salvageInRange(k []byte, r salvageRange) bool {
	return (r.lo == nil || bytes.Compare(k, r.lo) >= 0) && (r.hi == nil || bytes.Compare(k, r.hi) < 0)
}

// salvageQuote keeps a key read from a damaged file printable.
func salvageQuote(s string) string {
	q := fmt.Sprintf("%q", s)
	return redactDigitRuns(q[1 : len(q)-1])
}

// checkLayout refuses a file that is not a posd store, or is a store of another layout
// version. A damaged marker in a file that has posd's buckets is noted, not refused.
func (st *salvageState) checkLayout(src string, rep *SalvageReport) error {
	ours := false
	for _, b := range [][]byte{bucketJournal, bucketQueueRev, bucketQueueAdv} {
		if t := st.buckets[string(b)]; t != nil && t.found {
			ours = true
		}
	}
	var format, version []byte
	if t := st.buckets[string(bucketMeta)]; t != nil {
		for _, e := range t.entries {
			switch string(e.key) {
			case string(keyFormat):
				format = e.value
			case string(keyVersion):
				version = e.value
			}
		}
	}
	if v := string(version); v != "" && v != layoutVersion && v != "1" && salvageAllDigits(v) {
		return fmt.Errorf("store: salvage: %s: %w: layout version %q, this posd reads version %s: salvage it with the release that wrote it, or a newer one", src, ErrLayout, v, layoutVersion)
	}
	if !ours {
		for _, b := range [][]byte{bucketJournal, bucketQueueRev, bucketQueueAdv} {
			if t := st.buckets[string(b)]; t != nil && len(t.lost) > 0 && strings.HasPrefix(t.lost[0].why, salvageListWhy) {
				return fmt.Errorf("store: salvage: %s: %s; nothing was copied: keep the file, a backup or a specialist may still recover it (%w)", src, t.lost[0].why, ErrCorrupt)
			}
		}
		if string(format) == layoutFormat {
			return fmt.Errorf("store: salvage: %s: none of the journal and queue buckets can be read; nothing was copied: %w", src, ErrCorrupt)
		}
		return fmt.Errorf("store: salvage: %s: %w: a bbolt database of something other than posd, or one whose list of buckets is damaged; nothing was copied", src, ErrLayout)
	}
	if string(format) != layoutFormat || (string(version) != layoutVersion && string(version) != "1") {
		rep.Notes = append(rep.Notes, Problem{"the layout marker (bucket \"meta\") is missing or damaged; the file has posd's buckets and was read as layout version " + layoutVersion,
			"none: the copy has a new marker"})
	}
	return nil
}

func salvageAllDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// tree returns the bucket name as read, or, when it was not found, an empty one whose
// contents are all lost.
func (st *salvageState) tree(name []byte) *salvageTree {
	t := st.buckets[string(name)]
	if t == nil {
		t = &salvageTree{lost: []salvageRange{{why: "it is missing from the file"}}}
		st.buckets[string(name)] = t
	}
	return t
}

// decode turns the buckets into records, items and counters.
func (st *salvageState) decode(rep *SalvageReport) {
	if t := st.buckets[string(bucketMeta)]; t != nil && t.found && len(t.lost) == 0 {
		st.logLSNKnown = true // a file no log record was ever folded into has no LSN
		for _, e := range t.entries {
			switch string(e.key) {
			case string(keyStoreID):
				st.storeID = e.value
			case string(keyLogLSN):
				if len(e.value) == 8 {
					st.logLSN = binary.BigEndian.Uint64(e.value)
				} else {
					st.logLSNKnown = false
				}
			}
		}
	}
	if t := st.buckets[string(bucketCounters)]; t != nil && t.found && len(t.lost) == 0 {
		st.stanKnown = true // a file that never handed out a STAN has no counter
		for _, e := range t.entries {
			if string(e.key) == string(keySTAN) {
				if len(e.value) == 4 && binary.BigEndian.Uint32(e.value) <= maxSTAN {
					st.stan = binary.BigEndian.Uint32(e.value)
				} else {
					st.stanKnown = false
				}
			}
		}
	}
	if t := st.buckets[string(bucketJournal)]; t != nil {
		for _, e := range t.entries {
			if len(e.key) != 8 || e.flags != 0 {
				rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("journal entry with key %x: not a record: not copied", e.key), "none: a damaged key; any record it was is listed as missing"})
				continue
			}
			id := TxnID(binary.BigEndian.Uint64(e.key))
			rec, err := decodeRecord(id, e.value)
			if err != nil {
				st.badRecord[id] = redactDigitRuns(err.Error())
				continue
			}
			st.records[id] = &salvageRecord{rec: rec, raw: e.value}
		}
	}
	if t := st.buckets[string(bucketOpen)]; t != nil {
		for _, e := range t.entries {
			if len(e.key) == 8 {
				st.wasOpen[TxnID(binary.BigEndian.Uint64(e.key))] = true
			}
		}
	}
	for _, b := range []struct {
		name []byte
		kind Kind
	}{{bucketQueueRev, KindReversal}, {bucketQueueAdv, KindAdvice}} {
		t := st.buckets[string(b.name)]
		if t == nil {
			continue
		}
		for _, e := range t.entries {
			if len(e.key) != 8 || e.flags != 0 {
				rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("%s queue entry with key %x: not an item: not copied", b.kind, e.key), "none: a damaged key; any item it was is listed as missing"})
				continue
			}
			id := QueueID(binary.BigEndian.Uint64(e.key))
			it, sealed, err := decodeItem(id, e.value)
			if err != nil {
				st.badItem[id], st.itemKind[id] = redactDigitRuns(err.Error()), b.kind
				continue
			}
			if st.items[id] != nil {
				rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("queue item %d: a second item with this ID, queued as a %s: not copied", id, b.kind), salvageItemAdvice(b.kind)})
				continue
			}
			si := &salvageItem{it: it, sealed: sealed, raw: e.value}
			if it.Kind != b.kind {
				rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("queue item %d: its kind reads %q but it was queued as a %s", id, salvageQuote(string(it.Kind)), b.kind), "none: copied as a " + string(b.kind)})
				si.it.Kind, si.raw = b.kind, nil
			}
			st.items[id] = si
		}
	}
}

// salvagePlan is what is written to dst.
type salvagePlan struct {
	journal, open, rev, adv, counters, audit, panIndex, till []boltElem // key, value
	journalSeq, queueSeq, auditSeq                           uint64
	detail                                                   string // of the audit entry recording the salvage
}

// plan turns st into the contents of dst, reporting as it goes.
func (st *salvageState) plan(o SalvageOptions, rep *SalvageReport) *salvagePlan {
	pl := &salvagePlan{}
	lost := func(what, do string) { rep.Lost = append(rep.Lost, Problem{what, do}) }
	note := func(what, do string) { rep.Notes = append(rep.Notes, Problem{what, do}) }
	jt, qt, rt, at, ct := st.tree(bucketJournal), st.tree(bucketQueue), st.tree(bucketQueueRev), st.tree(bucketQueueAdv), st.tree(bucketCounters)

	// Records: checked, and re-encoded where something had to change.
	for _, id := range salvageSorted(st.records) {
		r := st.records[id]
		if salvageTrailing(r.raw) {
			note(fmt.Sprintf("record %d: bytes after its end", id), "none: copied without them")
			r.raw = nil
		}
		if longestDigitRun(r.rec.Intent.MaskedPAN) > maxDigitRun {
			r.rec.Intent.MaskedPAN, r.raw = salvageRemask(r.rec.Intent.MaskedPAN), nil
			note(fmt.Sprintf("record %d: its masked PAN reads with more than %d digits in a row (damaged)", id, maxDigitRun), "none: copied masked to its last 4 digits")
		}
		if longestDigitRun(r.rec.Intent.PANHash) > maxDigitRun {
			r.rec.Intent.PANHash, r.raw = "", nil
			note(fmt.Sprintf("record %d: its PAN hash reads with more than %d digits in a row (damaged)", id, maxDigitRun), "none: copied without it; the card's other transactions are still found by theirs")
		}
		if out := r.rec.Outcome; out != nil && !out.State.final() {
			lost(fmt.Sprintf("record %d (%s): its outcome is unreadable (state %q): copied without it, as open", id, salvageDescribe(r.rec), salvageQuote(string(out.State))),
				"posd records it outcome-unknown at its next start and queues its reversal; ask the acquirer how it ended")
			r.rec.Outcome, r.raw = nil, nil
		}
	}
	for _, id := range salvageSorted(st.badRecord) {
		do := "this transaction's record is lost: find it in the till's and the acquirer's records"
		if st.wasOpen[id] {
			do = "it had no outcome yet, so the host may have approved it: ask the acquirer, and reverse it there if so"
		}
		lost(fmt.Sprintf("record %d: cannot be decoded (%s): not copied", id, st.badRecord[id]), do)
	}
	for _, r := range salvageMerge(jt.lost) {
		what, ids := salvageRangeText("journal record", r, jt)
		var open []string
		for id := range st.wasOpen {
			if salvageInRange(id.key(), r) {
				open = append(open, fmt.Sprint(uint64(id)))
			}
		}
		sort.Strings(open)
		do := "these transactions' records are lost: find them in the till's and the acquirer's records"
		if before, after := st.neighbours(r); before != "" || after != "" {
			do += fmt.Sprintf(" (they were made %s)", strings.TrimSpace(before+" "+after))
		}
		if len(open) > 0 {
			do += fmt.Sprintf("; %s of them had no outcome yet, so the host may have approved them: ask the acquirer, and reverse them there if so", strings.Join(open, ", "))
		}
		lost(fmt.Sprintf("%s: unreadable (%s): not copied%s", what, r.why, ids), do)
	}

	// Items: checked, and re-encoded (their sealed data unchanged) where something had to change.
	for _, id := range salvageSorted(st.items) {
		si := st.items[id]
		if salvageTrailing(si.raw) {
			note(fmt.Sprintf("queue item %d: bytes after its end", id), "none: copied without them")
			si.raw = nil
		}
		if longestDigitRun(si.it.MaskedPAN) > maxDigitRun {
			si.it.MaskedPAN, si.raw = salvageRemask(si.it.MaskedPAN), nil
			note(fmt.Sprintf("queue item %d: its masked PAN reads with more than %d digits in a row (damaged)", id, maxDigitRun), "none: copied masked to its last 4 digits")
		}
		if si.it.State != QueuePending && si.it.State != QueueParked {
			note(fmt.Sprintf("queue item %d (%s): its state is unreadable (%q)", id, salvageDescribeItem(si.it), salvageQuote(string(si.it.State))),
				"it was copied parked: check it with the acquirer, then `posctl saf unpark` it or settle it and `posctl saf delete` it")
			si.it.State, si.it.ParkedBy, si.it.ParkReason, si.raw = QueueParked, "posd store salvage", "its state was unreadable after a salvage", nil
		}
	}
	itemLost := false
	for _, id := range salvageSorted(st.badItem) {
		itemLost = true
		kind := st.itemKind[id]
		lost(fmt.Sprintf("queue item %d (%s): cannot be decoded (%s): not copied", id, salvageArticle(kind), st.badItem[id]), salvageItemAdvice(kind))
	}
	for _, b := range []struct {
		t    *salvageTree
		kind Kind
	}{{rt, KindReversal}, {at, KindAdvice}} {
		for _, r := range salvageMerge(b.t.lost) {
			itemLost = true
			what, ids := salvageRangeText("queue item", r, qt)
			lost(fmt.Sprintf("%s still queued as %ss: unreadable (%s): not copied%s", what, b.kind, r.why, ids), salvageItemAdvice(b.kind))
		}
	}

	// Placeholders for the records of items whose record is lost.
	settles := map[TxnID][]*salvageItem{}
	for _, id := range salvageSorted(st.items) {
		si := st.items[id]
		settles[si.it.TxnID] = append(settles[si.it.TxnID], si)
	}
	for _, txn := range salvageSorted(settles) {
		if st.records[txn] != nil {
			continue
		}
		its := settles[txn]
		rec := Record{ID: txn, Intent: Intent{Kind: "salvaged", AmountMinor: its[0].it.AmountMinor, Currency: its[0].it.Currency,
			MaskedPAN: its[0].it.MaskedPAN, Time: its[0].it.Created}}
		state, names := StateUnknown, []string{}
		for _, si := range its {
			if si.it.Kind == KindAdvice {
				state = StateApprovedOffline
			}
			names = append(names, fmt.Sprintf("%s %d", si.it.Kind, si.it.ID))
		}
		rec.Outcome = &Outcome{State: state, Time: o.Now(),
			Reason: fmt.Sprintf("journal record lost in a damaged store; rebuilt by posd store salvage from queue %s", strings.Join(names, ", "))}
		st.records[txn] = &salvageRecord{rec: rec, placeholder: true}
		rep.Placeholders++
		lost(fmt.Sprintf("record %d: lost; a placeholder (kind \"salvaged\", %s) was written for queue %s", txn, state, strings.Join(names, ", ")),
			"the queued message is kept and will be sent; look the transaction up in the till's and the acquirer's records")
	}

	// Queued messages the journal expects and the copy lacks, when some of the queue was lost.
	if itemLost {
		has := map[TxnID]map[Kind]bool{}
		for _, si := range st.items {
			if has[si.it.TxnID] == nil {
				has[si.it.TxnID] = map[Kind]bool{}
			}
			has[si.it.TxnID][si.it.Kind] = true
		}
		for _, id := range salvageSorted(st.records) {
			for _, kind := range salvageExpects(st.records[id].rec) {
				if !has[id][kind] {
					lost(fmt.Sprintf("transaction %d (%s): its %s is not in the copy and the journal has no acknowledgement of it: it may be one of the lost queue items", id, salvageDescribe(st.records[id].rec), kind),
						salvageItemAdvice(kind))
				}
			}
		}
	}

	// The journal and the open index, from the records.
	tillSeen := map[string]bool{}
	for _, id := range salvageSorted(st.records) {
		r := st.records[id]
		v := r.raw
		if v == nil {
			var err error
			if v, err = encodeRecord(r.rec.Intent, r.rec.Outcome); err != nil {
				lost(fmt.Sprintf("record %d: cannot be encoded again (%v): not copied", id, err), "report this to support")
				continue
			}
		}
		pl.journal = append(pl.journal, boltElem{key: id.key(), value: v})
		if h := r.rec.Intent.PANHash; h != "" {
			pl.panIndex = append(pl.panIndex, boltElem{key: panIndexKey(h, id)})
		}
		for _, k := range append(tillKeys(r.rec.Intent), refundKeys(r.rec.Intent, id)...) {
			if !tillSeen[k] { // the first transaction keeps a key, as putTillKeys does
				tillSeen[k] = true
				pl.till = append(pl.till, boltElem{key: []byte(k), value: id.key()})
			}
		}
		if r.rec.Outcome == nil {
			pl.open = append(pl.open, boltElem{key: id.key()})
		}
		if !r.placeholder {
			rep.Records++
		}
		if ot := st.buckets[string(bucketOpen)]; ot != nil && ot.found && len(ot.lost) == 0 && st.badRecord[id] == "" && st.wasOpen[id] != (r.rec.Outcome == nil) && r.raw != nil {
			note(fmt.Sprintf("record %d: the open index said %v, the record says %v", id, salvageOpenWord(st.wasOpen[id]), salvageOpenWord(r.rec.Outcome == nil)), "none: the copy's open index follows the record")
		}
	}
	rep.Open = len(pl.open)
	for _, id := range salvageSorted(st.items) {
		si := st.items[id]
		v := si.raw
		if v == nil {
			var err error
			if v, err = encodeItem(si.it, si.sealed); err != nil {
				lost(fmt.Sprintf("queue item %d: cannot be encoded again (%v): not copied", id, err), "report this to support")
				continue
			}
		}
		e := boltElem{key: id.key(), value: v}
		if si.it.Kind == KindReversal {
			pl.rev = append(pl.rev, e)
			rep.Reversals++
		} else {
			pl.adv = append(pl.adv, e)
			rep.Advices++
		}
		if si.it.State == QueueParked {
			rep.Parked++
		}
	}

	// Sequences: past every ID seen or lost, and moved ahead where src does not tell them for certain.
	var maxJournal, maxQueue uint64
	if len(pl.journal) > 0 {
		maxJournal = binary.BigEndian.Uint64(pl.journal[len(pl.journal)-1].key)
	}
	for id := range st.badRecord {
		maxJournal = max(maxJournal, uint64(id))
	}
	for id := range st.items {
		maxQueue = max(maxQueue, uint64(id))
	}
	for id := range st.badItem {
		maxQueue = max(maxQueue, uint64(id))
	}
	pl.journalSeq = st.sequence("journal", jt, maxJournal, jt.lost, o.Margin, rep)
	pl.queueSeq = st.sequence("queue", qt, maxQueue, append(append([]salvageRange(nil), rt.lost...), at.lost...), o.Margin, rep)

	// Counters: copied; the STAN counter moved ahead when it is not known for certain.
	for _, e := range ct.entries {
		if string(e.key) != string(keySTAN) && e.flags == 0 {
			pl.counters = append(pl.counters, boltElem{key: e.key, value: e.value})
		}
	}
	if !ct.found || len(ct.lost) > 0 {
		why := "unreadable"
		if len(ct.lost) > 0 {
			why += " (" + ct.lost[0].why + ")"
		}
		note("the counters bucket is "+why, "none: the STAN counter was moved ahead (below)")
	}
	stan := st.stan
	if !st.stanKnown || st.uncertain != "" {
		base, why := stan, "the STAN counter may be behind ("+st.uncertain+")"
		if !st.stanKnown {
			base, why = st.newestSTAN(), "the STAN counter is unreadable"
		}
		next := uint64(base) + o.Margin
		if next > maxSTAN {
			next = (next-1)%maxSTAN + 1
		}
		note(fmt.Sprintf("%s: it was set to %d, %d past the newest STAN seen (%d)", why, next, o.Margin, base), "none: STANs continue from there, so that none is reused")
		stan = uint32(next)
	}
	rep.STAN = stan
	pl.counters = append(pl.counters, boltElem{key: keySTAN, value: binary.BigEndian.AppendUint32(nil, stan)})
	sort.Slice(pl.counters, func(i, j int) bool { return bytes.Compare(pl.counters[i].key, pl.counters[j].key) < 0 })

	// The audit chain up to its first damaged entry.
	pl.audit, pl.auditSeq = st.auditChain(o.Margin, rep)
	rep.AuditLinks = len(pl.audit)

	pl.detail = salvageDetail(rep)
	return pl
}

// sequence returns the sequence for a bucket: its own, past the highest ID seen or lost, and
// moved ahead by margin when it is not known for certain.
func (st *salvageState) sequence(name string, t *salvageTree, maxSeen uint64, lost []salvageRange, margin uint64, rep *SalvageReport) uint64 {
	seq := max(t.seq, maxSeen)
	for _, r := range lost {
		if len(r.hi) == 8 {
			seq = max(seq, binary.BigEndian.Uint64(r.hi)-1)
		}
	}
	switch {
	case !t.found:
		rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("the %s ID sequence is unreadable: it was set to %d, %d past the highest ID seen", name, seq+margin, margin), "none: IDs continue from there, so that none is reused"})
		return seq + margin
	case st.uncertain != "":
		rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("the %s ID sequence may be behind (%s): it was set to %d, %d past %d", name, st.uncertain, seq+margin, margin, seq), "none: IDs continue from there, so that none is reused"})
		return seq + margin
	}
	return seq
}

// newestSTAN returns the STAN of the newest record or item (by time): the STAN counter's
// value when it was written, or close to it.
func (st *salvageState) newestSTAN() uint32 {
	var stan uint32
	var at time.Time
	for _, r := range st.records {
		if !r.placeholder && !r.rec.Intent.Time.Before(at) {
			stan, at = r.rec.Intent.STAN, r.rec.Intent.Time
		}
	}
	for _, si := range st.items {
		if !si.it.Created.Before(at) {
			stan, at = si.it.STAN, si.it.Created
		}
	}
	return min(stan, maxSTAN)
}

// auditChain returns the audit entries that verify, in order, up to the first that does not
// (or the first gap), and the audit sequence.
func (st *salvageState) auditChain(margin uint64, rep *SalvageReport) ([]boltElem, uint64) {
	t := st.buckets[string(bucketAudit)]
	if t == nil {
		t = &salvageTree{lost: []salvageRange{{why: "it is missing from the file"}}}
	}
	// Entries at or after the lowest key of an unreadable range follow a gap in the chain.
	var firstLost []byte
	gap, gapWhy := len(t.lost) > 0, ""
	for i, r := range t.lost {
		if r.lo == nil {
			firstLost, gapWhy = nil, r.why
			break
		}
		if i == 0 || bytes.Compare(r.lo, firstLost) < 0 {
			firstLost, gapWhy = r.lo, r.why
		}
	}
	var out []boltElem
	var maxSeq uint64
	prev, broken, notCopied := "", "", 0
	for _, e := range t.entries {
		if len(e.key) == 8 {
			maxSeq = max(maxSeq, binary.BigEndian.Uint64(e.key))
		}
		switch {
		case broken != "":
		case gap && (firstLost == nil || bytes.Compare(e.key, firstLost) >= 0):
			broken = "the entries before it are unreadable: " + gapWhy
		default:
			if len(e.key) != 8 || e.flags != 0 {
				broken = fmt.Sprintf("entry %x cannot be read", e.key)
				break
			}
			seq := binary.BigEndian.Uint64(e.key)
			if len(out) > 0 && seq != binary.BigEndian.Uint64(out[len(out)-1].key)+1 {
				broken = fmt.Sprintf("entries before %d are missing", seq)
				break
			}
			mac, ok := salvageLink(seq, e.value, prev)
			if !ok {
				broken = fmt.Sprintf("entry %d does not verify", seq)
				break
			}
			prev = mac
			out = append(out, boltElem{key: e.key, value: e.value})
			if operatorEntry(e.value) {
				rep.AuditEntries++
			}
			continue
		}
		notCopied++
	}
	last := "the start"
	if len(out) > 0 {
		last = fmt.Sprintf("entry %d", binary.BigEndian.Uint64(out[len(out)-1].key))
	}
	switch {
	case broken != "":
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("audit chain: %d readable entries after %s were not copied: the chain breaks there (%s)", notCopied, last, broken),
			"the damaged file still holds them: keep it as evidence; if the damage was not a disk fault, report it as a security incident"})
	case gap:
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("audit chain: the entries after %s are unreadable (%s): not copied", last, gapWhy),
			"the damaged file still holds them: keep it as evidence; if the damage was not a disk fault, report it as a security incident"})
	}
	if len(out) > 0 {
		maxSeq = max(maxSeq, binary.BigEndian.Uint64(out[len(out)-1].key))
	}
	return out, st.sequence("audit", t, maxSeq, t.lost, margin, rep)
}

// neighbours describes when the records on either side of a lost range were made.
func (st *salvageState) neighbours(r salvageRange) (before, after string) {
	var b, a *Record
	for _, sr := range st.records {
		k := sr.rec.ID.key()
		switch {
		case r.lo != nil && bytes.Compare(k, r.lo) < 0 && (b == nil || sr.rec.ID > b.ID):
			b = &sr.rec
		case r.hi != nil && bytes.Compare(k, r.hi) >= 0 && (a == nil || sr.rec.ID < a.ID):
			a = &sr.rec
		}
	}
	if b != nil {
		before = fmt.Sprintf("after %s (record %d)", b.Intent.Time.UTC().Format(time.RFC3339), b.ID)
	}
	if a != nil {
		after = fmt.Sprintf("before %s (record %d)", a.Intent.Time.UTC().Format(time.RFC3339), a.ID)
	}
	return before, after
}

// salvageRangeText names a lost key range of a bucket keyed by IDs: "journal records 5 to
// 9". The sequence bounds an open upper end. ids is "" or a remark on the keys.
func salvageRangeText(noun string, r salvageRange, seqOf *salvageTree) (what, ids string) {
	if (r.lo != nil && len(r.lo) != 8) || (r.hi != nil && len(r.hi) != 8) {
		return fmt.Sprintf("%ss with keys from %x to %x", noun, r.lo, r.hi), ""
	}
	from := uint64(1)
	if r.lo != nil {
		from = max(from, binary.BigEndian.Uint64(r.lo))
	}
	switch {
	case r.hi != nil:
		to := binary.BigEndian.Uint64(r.hi) - 1
		if to == from {
			return fmt.Sprintf("%s %d", noun, from), ""
		}
		return fmt.Sprintf("%ss %d to %d", noun, from, to), ""
	case seqOf.found && seqOf.seq >= from:
		if seqOf.seq == from {
			return fmt.Sprintf("%s %d", noun, from), ""
		}
		return fmt.Sprintf("%ss %d to %d", noun, from, seqOf.seq), " (the last ID handed out was " + fmt.Sprint(seqOf.seq) + ")"
	}
	return fmt.Sprintf("%ss from %d on", noun, from), ""
}

// salvageExpects returns the kinds of queued message a record's outcome says are still to be
// acknowledged by the host.
func salvageExpects(rec Record) []Kind {
	out := rec.Outcome
	if out == nil {
		return nil
	}
	var kinds []Kind
	if out.State == StateApprovedOffline && out.Advised == nil && (out.Voided == nil || !out.Voided.Withdrawn) {
		kinds = append(kinds, KindAdvice)
	}
	if out.Reversed == nil && (out.State == StateUnknown || (out.Voided != nil && !out.Voided.Withdrawn)) {
		kinds = append(kinds, KindReversal)
	}
	return kinds
}

func salvageArticle(kind Kind) string {
	if kind == KindAdvice {
		return "an advice"
	}
	return "a " + string(kind)
}

func salvageItemAdvice(kind Kind) string {
	switch kind {
	case KindReversal:
		return "a reversal may be lost, and the customer may have been charged: settle it with the acquirer (reverse it there)"
	case KindAdvice:
		return "an advice may be lost, and the merchant may not be paid for an offline approval: settle it with the acquirer (submit it there)"
	}
	return "an advice or reversal may be lost: settle it with the acquirer"
}

// salvageDescribe describes a record for an operator, masked.
func salvageDescribe(rec Record) string {
	state := string(StateIntent)
	if rec.Outcome != nil {
		state = salvageQuote(string(rec.Outcome.State))
	}
	in := rec.Intent
	return fmt.Sprintf("%s, %d %s, %s, STAN %06d, %s", state, in.AmountMinor, salvageQuote(in.Currency), salvageRemask(in.MaskedPAN), in.STAN, in.Time.UTC().Format(time.RFC3339))
}

func salvageDescribeItem(it Item) string {
	return fmt.Sprintf("%s of transaction %d, %d %s, %s", it.Kind, it.TxnID, it.AmountMinor, salvageQuote(it.Currency), salvageRemask(it.MaskedPAN))
}

func salvageOpenWord(open bool) string {
	if open {
		return "open"
	}
	return "finished"
}

// salvageRemask returns s with every digit but the last four replaced by '*', unless it is
// masked already.
func salvageRemask(s string) string {
	if longestDigitRun(s) <= maxDigitRun {
		return s
	}
	b := []byte(s)
	keep := 4
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] >= '0' && b[i] <= '9' {
			if keep > 0 {
				keep--
			} else {
				b[i] = '*'
			}
		}
	}
	return string(b)
}

// salvageTrailing reports whether v holds bytes after its JSON value.
func salvageTrailing(v []byte) bool {
	if v == nil {
		return false
	}
	d := json.NewDecoder(bytes.NewReader(v))
	var raw json.RawMessage
	if d.Decode(&raw) != nil {
		return false
	}
	return len(bytes.TrimSpace(v[d.InputOffset():])) > 0
}

func salvageSorted[K ~uint64, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// salvageDetail is the detail of the audit entry recording the salvage.
func salvageDetail(rep *SalvageReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "salvaged from %s (%d bytes, sha256 %s, commit %d): copied %d records (%d open), %d reversals and %d advices (%d parked), %d audit entries",
		rep.Source, rep.SourceSize, rep.SourceSHA256, rep.Commit, rep.Records, rep.Open, rep.Reversals, rep.Advices, rep.Parked, rep.AuditEntries)
	if len(rep.Lost) == 0 {
		b.WriteString("; nothing lost")
		return b.String()
	}
	fmt.Fprintf(&b, "; %d lost:", len(rep.Lost))
	for i, p := range rep.Lost {
		if i == 20 {
			fmt.Fprintf(&b, " ... and %d more", len(rep.Lost)-i)
			break
		}
		b.WriteString(" [" + p.What + "]")
	}
	return b.String()
}

// salvageWrite creates dst and writes pl in one commit, then checks the new file. On error
// dst is removed.
func salvageWrite(ctx context.Context, dst string, pl *salvagePlan, o SalvageOptions, rep *SalvageReport) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: salvage: %w", err)
	}
	s, err := Open(dst, &Options{Timeout: o.Timeout, FileMode: o.FileMode, Now: o.Now, Auditor: o.Auditor, AuditKeyID: o.AuditKeyID})
	if err != nil {
		return fmt.Errorf("store: salvage: creating the new file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(dst)
			_ = os.Remove(dst + logSuffix)
		}
	}()
	put := func(tx *bolt.Tx, name []byte, elems []boltElem, seq uint64) error {
		b := tx.Bucket(name)
		for _, e := range elems {
			if err := b.Put(e.key, e.value); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		if seq > 0 {
			return b.SetSequence(seq)
		}
		return nil
	}
	err = s.wrap("salvage", s.db.Update(func(tx *bolt.Tx) error {
		for _, w := range []struct {
			name  []byte
			elems []boltElem
			seq   uint64
		}{{bucketJournal, pl.journal, pl.journalSeq}, {bucketOpen, pl.open, 0}, {bucketPANIndex, pl.panIndex, 0}, {bucketTill, pl.till, 0}, {bucketQueue, nil, pl.queueSeq},
			{bucketQueueRev, pl.rev, 0}, {bucketQueueAdv, pl.adv, 0}, {bucketCounters, pl.counters, 0}, {bucketAudit, pl.audit, 0}} {
			if err := put(tx, w.name, w.elems, w.seq); err != nil {
				return err
			}
		}
		// The chain goes on from the last link copied: the salvage's own link, then a link
		// for each record and item whose value no copied link names.
		if err := s.loadChainHead(tx); err != nil {
			return err
		}
		if err := s.linkTx(ctx, tx, operatorLink(o.Who, "salvage", pl.detail)); err != nil {
			return err
		}
		rep.Resealed, err = s.resealTx(ctx, tx)
		return err
	}))
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: salvage: writing %s: %w", dst, err)
	}
	s, err = Open(dst, &Options{Timeout: o.Timeout, Now: o.Now, Auditor: o.Auditor, AuditKeyID: o.AuditKeyID})
	if err != nil {
		return fmt.Errorf("store: salvage: the new file does not open: %w", err)
	}
	rep.Check, err = s.Check(ctx)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: salvage: checking the new file: %w", err)
	}
	return nil
}

// salvageProbe reads the store at path page by page as Salvage does, writing nothing, and
// returns what is unreadable in it, each with what to do. It cannot panic on a damaged
// file, so Open and Check may run it before bbolt walks the file: bbolt's rebuild of its
// freelist (NoFreelistSync) walks every page in a goroutine of its own and panics there on a
// damaged page, which no caller can recover. It takes the file's shared lock, waiting at
// most timeout. Nil when every page of every bucket reads.
func salvageProbe(ctx context.Context, path string, timeout time.Duration) ([]Problem, error) {
	var rep SalvageReport
	st, err := salvageRead(ctx, path, timeout, &rep)
	if err != nil {
		return nil, err
	}
	do := fmt.Sprintf("stop posd and run `posd store salvage --path %s --out NEWFILE`: it copies everything readable into a new file", path)
	var problems []Problem
	for _, p := range rep.Lost {
		problems = append(problems, Problem{p.What, do})
	}
	for _, b := range salvageBuckets {
		for _, r := range salvageMerge(st.tree(b).lost) {
			problems = append(problems, Problem{fmt.Sprintf("bucket %q, keys from %x to %x: unreadable (%s)", b, r.lo, r.hi, r.why), do})
		}
	}
	return problems, nil
}
