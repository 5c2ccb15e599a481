package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/posd-dev/posd/store/internal/boltpage"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

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
	meta      boltpage.Meta
	uncertain string // why the newest state may be missing (a damaged meta page); "" if not
	buckets   map[string]*boltpage.Tree
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
	var pageSize uint64
	var bboltRefused error // bbolt would not open it, but its meta pages are readable
	switch {
	case err == nil:
		defer db.Close()
		pageSize = uint64(db.Info().PageSize)
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: salvage: %s: %w: stop posd before salvaging its store", src, ErrLocked)
	case isSystemError(err):
		return nil, fmt.Errorf("store: salvage: %w", err)
	default:
		// bbolt reads more than the meta pages at open (the freelist page, which a
		// truncated file may have lost): the pages are read here anyway, so a file whose
		// meta pages are sound is salvaged without it, under the same shared lock.
		ps, unlock, lerr := lockAndPageSize(src, timeout)
		if errors.Is(lerr, ErrLocked) {
			return nil, fmt.Errorf("store: salvage: %s: %w: stop posd before salvaging its store", src, ErrLocked)
		}
		if lerr != nil {
			return nil, fmt.Errorf("store: salvage: %s: %w: bbolt cannot open it (%w): it is not a bbolt file, or both of its meta pages (the first two pages, which say where everything is) are damaged; nothing was copied and the file was not changed", src, ErrLayout, err)
		}
		defer unlock()
		pageSize, bboltRefused = ps, err
	}
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

	st := &salvageState{buckets: map[string]*boltpage.Tree{}, records: map[TxnID]*salvageRecord{}, items: map[QueueID]*salvageItem{},
		wasOpen: map[TxnID]bool{}, badRecord: map[TxnID]string{}, badItem: map[QueueID]string{}, itemKind: map[QueueID]Kind{}}
	// As bbolt does: the valid meta page of the newest transaction. A meta page that says
	// its pages are of another size than bbolt read is not valid.
	ms := boltpage.ReadMetas(f, pageSize)
	use := ms.Newest()
	if use < 0 {
		return nil, fmt.Errorf("store: salvage: %s: %w: both meta pages are damaged (%v; %v); nothing was copied", src, ErrLayout, ms.Err[0], ms.Err[1])
	}
	st.meta = ms.Meta[use]
	rep.Commit = st.meta.TxID
	if bad := 1 - use; ms.Err[bad] != nil {
		st.uncertain = fmt.Sprintf("meta page %d is damaged (%v)", bad, ms.Err[bad])
		rep.Lost = append(rep.Lost, Problem{
			fmt.Sprintf("%s: the copy is of commit %d (meta page %d); the last commit before the damage may be missing", st.uncertain, st.meta.TxID, use),
			"compare the copy's last transactions and queue with the till's and the acquirer's; the STAN and the transaction, queue and audit IDs were moved ahead so that none is reused"})
	}
	if uint64(size) < st.meta.HighWater*pageSize {
		rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("the file is truncated: %d bytes, its meta page says %d pages of %d bytes", size, st.meta.HighWater, pageSize),
			"what was on missing pages in use is listed as lost; look for a backup or an older copy of the file"})
	}
	if bboltRefused != nil {
		rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("bbolt would not open the file (%v): its pages were read without it", bboltRefused),
			"nothing to do: the copy is a new file that bbolt opens"})
	}
	var unknown []string
	if st.buckets, unknown, err = boltpage.Walk(ctx, f, size, st.meta, salvageBuckets, true); err != nil {
		return nil, fmt.Errorf("store: salvage: %w", err)
	}
	for _, name := range unknown {
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("bucket %q: not part of this release's layout: not copied", salvageQuote(name)),
			"if a newer posd wrote this file, salvage it with that release"})
	}
	// Key ranges unreadable in the newest commit's tree are read from the previous commit's,
	// when the other meta page is valid: bbolt reuses the pages of that tree only from the
	// commit after the newest one, so it is intact.
	if old := 1 - use; ms.Err[old] == nil && ms.Meta[old].TxID < st.meta.TxID && st.damaged() {
		oldBuckets, _, err := boltpage.Walk(ctx, f, size, ms.Meta[old], salvageBuckets, true)
		if err != nil {
			return nil, fmt.Errorf("store: salvage: %w", err)
		}
		st.fillFrom(oldBuckets, ms.Meta[old].TxID, rep)
	}
	if err := st.checkLayout(src, rep); err != nil {
		return nil, err
	}
	st.decode(rep)
	return st, nil
}

// damaged reports whether a known bucket has unreadable key ranges.
func (st *salvageState) damaged() bool {
	for _, b := range salvageBuckets {
		if t := st.buckets[string(b)]; t == nil || len(t.Lost) > 0 {
			return true
		}
	}
	return false
}

// fillFrom fills the unreadable key ranges of st's buckets from old, the buckets of the
// previous commit, where old has the whole range. What is filled is one commit old: it is
// reported lost, as it may lack the last commit's changes, and the sequences and the STAN
// are moved ahead.
func (st *salvageState) fillFrom(old map[string]*boltpage.Tree, txid uint64, rep *SalvageReport) {
	filled := false
	for _, b := range salvageBuckets {
		name := string(b)
		t, o := st.buckets[name], old[name]
		if o == nil || !o.Found {
			continue
		}
		if t == nil {
			t = &boltpage.Tree{Lost: []boltpage.Range{{Why: "it is missing from the file"}}}
			st.buckets[name] = t
		}
		var still []boltpage.Range
		for _, r := range t.Lost {
			if slices.ContainsFunc(o.Lost, func(or boltpage.Range) bool { return r.Overlaps(or) }) {
				still = append(still, r)
				continue
			}
			n := 0
			for _, e := range o.Entries {
				if r.Contains(e.Key) {
					t.Entries = append(t.Entries, e)
					n++
				}
			}
			if n == 0 { // the keys, if any, were written by the last commit: lost
				still = append(still, r)
				continue
			}
			filled = true
			what := fmt.Sprintf("bucket %q, keys from %x to %x", name, r.Lo, r.Hi)
			switch {
			case r.Lo == nil && r.Hi == nil:
				what = fmt.Sprintf("bucket %q", name)
			case (r.Lo == nil || len(r.Lo) == 8) && (r.Hi == nil || len(r.Hi) == 8) && salvageNouns[name] != "":
				what, _ = salvageRangeText(salvageNouns[name], r, t)
			}
			rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("%s: unreadable in the newest commit (%s); %d entries were read from the previous commit (%d) instead: the changes the last commit made to them are missing", what, r.Why, n, txid),
				"a record may show no outcome (posd then reverses it), or a queued message the host acknowledged in the last commit may be sent again (the host answers it as a repeat); compare with the till's and the acquirer's records"})
		}
		if !t.Found {
			t.Found, t.Seq = true, o.Seq
		}
		t.Lost = still
		sort.SliceStable(t.Entries, func(i, j int) bool { return bytes.Compare(t.Entries[i].Key, t.Entries[j].Key) < 0 })
	}
	if filled && st.uncertain == "" {
		st.uncertain = fmt.Sprintf("parts of the store were read from the commit before the newest (%d)", txid)
	}
}

// checkLayout refuses a file that is not a posd store, or is a store of another layout
// version. A damaged marker in a file that has posd's buckets is noted, not refused.
func (st *salvageState) checkLayout(src string, rep *SalvageReport) error {
	ours := false
	for _, b := range [][]byte{bucketJournal, bucketQueueRev, bucketQueueAdv} {
		if t := st.buckets[string(b)]; t != nil && t.Found {
			ours = true
		}
	}
	var format, version []byte
	if t := st.buckets[string(bucketMeta)]; t != nil {
		for _, e := range t.Entries {
			switch string(e.Key) {
			case string(keyFormat):
				format = e.Value
			case string(keyVersion):
				version = e.Value
			}
		}
	}
	if v := string(version); v != "" && v != layoutVersion && v != "1" && salvageAllDigits(v) {
		return fmt.Errorf("store: salvage: %s: %w: layout version %q, this posd reads version %s: salvage it with the release that wrote it, or a newer one", src, ErrLayout, v, layoutVersion)
	}
	if !ours {
		for _, b := range [][]byte{bucketJournal, bucketQueueRev, bucketQueueAdv} {
			if t := st.buckets[string(b)]; t != nil && len(t.Lost) > 0 && strings.HasPrefix(t.Lost[0].Why, boltpage.ListWhy) {
				return fmt.Errorf("store: salvage: %s: %s; nothing was copied: keep the file, a backup or a specialist may still recover it (%w)", src, t.Lost[0].Why, ErrCorrupt)
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
func (st *salvageState) tree(name []byte) *boltpage.Tree {
	t := st.buckets[string(name)]
	if t == nil {
		t = &boltpage.Tree{Lost: []boltpage.Range{{Why: "it is missing from the file"}}}
		st.buckets[string(name)] = t
	}
	return t
}

// decode turns the buckets into records, items and counters.
func (st *salvageState) decode(rep *SalvageReport) {
	if t := st.buckets[string(bucketMeta)]; t != nil && t.Found && len(t.Lost) == 0 {
		st.logLSNKnown = true // a file no log record was ever folded into has no LSN
		for _, e := range t.Entries {
			switch string(e.Key) {
			case string(keyStoreID):
				st.storeID = e.Value
			case string(keyLogLSN):
				if len(e.Value) == 8 {
					st.logLSN = binary.BigEndian.Uint64(e.Value)
				} else {
					st.logLSNKnown = false
				}
			}
		}
	}
	if t := st.buckets[string(bucketCounters)]; t != nil && t.Found && len(t.Lost) == 0 {
		st.stanKnown = true // a file that never handed out a STAN has no counter
		for _, e := range t.Entries {
			if string(e.Key) == string(keySTAN) {
				if len(e.Value) == 4 && binary.BigEndian.Uint32(e.Value) <= maxSTAN {
					st.stan = binary.BigEndian.Uint32(e.Value)
				} else {
					st.stanKnown = false
				}
			}
		}
	}
	if t := st.buckets[string(bucketJournal)]; t != nil {
		for _, e := range t.Entries {
			if len(e.Key) != 8 || e.Flags != 0 {
				rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("journal entry with key %x: not a record: not copied", e.Key), "none: a damaged key; any record it was is listed as missing"})
				continue
			}
			id := TxnID(binary.BigEndian.Uint64(e.Key))
			rec, err := decodeRecord(id, e.Value)
			if err != nil {
				st.badRecord[id] = redactDigitRuns(err.Error())
				continue
			}
			st.records[id] = &salvageRecord{rec: rec, raw: e.Value}
		}
	}
	if t := st.buckets[string(bucketOpen)]; t != nil {
		for _, e := range t.Entries {
			if len(e.Key) == 8 {
				st.wasOpen[TxnID(binary.BigEndian.Uint64(e.Key))] = true
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
		for _, e := range t.Entries {
			if len(e.Key) != 8 || e.Flags != 0 {
				rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("%s queue entry with key %x: not an item: not copied", b.kind, e.Key), "none: a damaged key; any item it was is listed as missing"})
				continue
			}
			id := QueueID(binary.BigEndian.Uint64(e.Key))
			it, sealed, err := decodeItem(id, e.Value)
			if err != nil {
				st.badItem[id], st.itemKind[id] = redactDigitRuns(err.Error()), b.kind
				continue
			}
			if st.items[id] != nil {
				rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("queue item %d: a second item with this ID, queued as a %s: not copied", id, b.kind), salvageItemAdvice(b.kind)})
				continue
			}
			si := &salvageItem{it: it, sealed: sealed, raw: e.Value}
			if it.Kind != b.kind {
				rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("queue item %d: its kind reads %q but it was queued as a %s", id, salvageQuote(string(it.Kind)), b.kind), "none: copied as a " + string(b.kind)})
				si.it.Kind, si.raw = b.kind, nil
			}
			st.items[id] = si
		}
	}
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
		t.Seq = max(t.Seq, uint64(op.Txn))
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
			t.Seq = max(t.Seq, uint64(li.ID))
		}
	}
}

// lockAndPageSize takes the shared lock bbolt takes on a file it opens read-only (a running
// posd holds it exclusively: ErrLocked after timeout) and reads the page size from a valid
// meta page: the first page's, else the second's at the system's page size.
func lockAndPageSize(src string, timeout time.Duration) (uint64, func(), error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, nil, err
	}
	for deadline := time.Now().Add(timeout); ; {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return 0, nil, ErrLocked
			}
			return 0, nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	unlock := func() { f.Close() } // closing the file releases the lock
	for _, off := range []int64{0, int64(os.Getpagesize())} {
		page := make([]byte, 4096)
		n, _ := f.ReadAt(page, off)
		if m, err := boltpage.ParseMeta(page[:n]); err == nil && m.PageSize >= 512 {
			return uint64(m.PageSize), unlock, nil
		}
	}
	unlock()
	return 0, nil, errors.New("no valid meta page")
}
