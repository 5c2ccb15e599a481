package store

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// ChainHead names the last link of the audit chain: its sequence number and MAC (hex). A
// head printed earlier (posctl status, a batch report) lets VerifyAudit find a cut tail.
//
// A plain value: safe for concurrent use when not modified.
type ChainHead struct {
	Seq uint64
	MAC string // hex; a printed prefix (at least 16 digits) is enough for VerifyAudit
}

func (h ChainHead) String() string {
	mac := h.MAC
	if len(mac) > 16 {
		mac = mac[:16]
	}
	return fmt.Sprintf("%d:%s", h.Seq, mac)
}

// ParseChainHead reads a head as String writes it: "SEQ:MAC".
func ParseChainHead(s string) (ChainHead, error) {
	seq, mac, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || len(mac) < 16 {
		return ChainHead{}, fmt.Errorf("audit head %.32q: want SEQ:MAC, the sequence number and at least 16 letters of the MAC: %w", s, ErrInvalid)
	}
	return ChainHead{Seq: n, MAC: strings.ToLower(mac)}, nil
}

// BrokenLink is the first place VerifyAudit found the chain broken.
//
// A plain value: safe for concurrent use when not modified.
type BrokenLink struct {
	Seq  uint64 // the link; 0 when the problem is a record or item no link covers
	What string
}

// AuditReport is the result of VerifyAudit.
//
// A plain value: safe for concurrent use when not modified.
type AuditReport struct {
	Links   uint64 // links walked
	Legacy  int    // links of the unkeyed operator-only chain of older releases
	Keyed   int    // links MACed under the audit key
	Unkeyed int    // links hashed without a key (a Store opened without an Auditor)
	KeyID   string // the key of the keyed links; "" when there are none
	// Unchecked counts keyed links whose MAC was not checked: the Store has no Auditor
	// (posd audit verify without --config). Their order and the records' values were.
	Unchecked int
	Head      ChainHead // the last link
	// PreChain counts records and items that existed before the chain began (an upgraded
	// file) and were not changed since: no link covers them.
	PreChain int
	// Records and Items are how many journal records and queued items were checked against
	// their latest link.
	Records, Items int
	// Archived counts records and batches named by a live link that an archive link moved
	// out of the file (Store.Archive): gone legitimately. Base is the last link of the
	// chain's archived prefix (0: none); the live chain starts after it.
	Archived int
	Base     uint64
	// Broken is the first broken link (the lowest sequence number among all problems), nil
	// when the chain verifies. Problems counts every problem found.
	Broken   *BrokenLink
	Problems int
}

// OK reports whether the chain verified.
func (r AuditReport) OK() bool { return r.Broken == nil }

// Mode says in a word how far the chain can be trusted: "keyed" (every link since the
// legacy prefix MACed under the key), "unkeyed" (some links are plain hashes: anyone who can
// write the file can rewrite them) or "empty".
func (r AuditReport) Mode() string {
	switch {
	case r.Links == 0:
		return "empty"
	case r.Unkeyed > 0 || r.Legacy > 0 && r.Keyed == 0:
		return "unkeyed"
	}
	return "keyed"
}

// AuditHead returns the head of the audit chain: its last link's sequence number and MAC
// (hex), what posctl status and batch reports print. It reads memory only.
func (s *Store) AuditHead() (seq uint64, mac string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auditSeq, s.auditHead
}

// VerifyAudit walks the audit chain and checks that its sequence numbers are contiguous,
// each link follows the one before (Prev) and carries its own MAC (recomputed under the
// Store's Auditor; without one keyed links are counted in Unchecked),
// that every journal record and queued item holds the value its latest link names (so an
// edited, swapped, deleted or added record is found), and that every head in printed (heads
// printed earlier) is still in the chain (so a cut tail is found). It reports the first
// broken link. It reads only.
func (s *Store) VerifyAudit(ctx context.Context, printed ...ChainHead) (AuditReport, error) {
	var r AuditReport
	err := s.view(ctx, "verify audit", func(tx *bolt.Tx) error {
		var err error
		r, err = verifyChain(ctx, tx, s.auditor, printed)
		return err
	})
	return r, err
}

// verifyChain is VerifyAudit inside tx.
func verifyChain(ctx context.Context, tx *bolt.Tx, a Auditor, printed []ChainHead) (AuditReport, error) {
	var r AuditReport
	broken := func(seq uint64, format string, args ...any) {
		r.Problems++
		if r.Broken == nil || seq != 0 && (r.Broken.Seq == 0 || seq < r.Broken.Seq) {
			r.Broken = &BrokenLink{Seq: seq, What: fmt.Sprintf(format, args...)}
		}
	}
	type latest struct {
		seq uint64
		sum string
	}
	refs := map[string]latest{}
	var txnMark, queueMark uint64
	var want uint64 = 1
	prev, keyed := "", false
	macs := map[uint64]string{}
	// A chain whose prefix was archived starts from its base (archive.go).
	_, base, err := readHead(tx)
	if err != nil {
		return r, err
	}
	if base.Seq > 0 {
		want, prev, keyed = base.Seq+1, base.MAC, base.Key != ""
		txnMark, queueMark, r.KeyID, r.Base = base.Txn, base.Queue, base.Key, base.Seq
		macs[base.Seq] = base.MAC
	}
	var archives []*archiveRange
	c := tx.Bucket(bucketAudit).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if len(k) != 8 {
			broken(want, "audit key %x is not a sequence number", k)
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		r.Links++
		if seq != want {
			broken(want, "links %d to %d are missing (removed from the chain)", want, seq-1)
		}
		want = seq + 1
		var l jsonLink
		if jsonUnmarshalStrict(v, &l) != nil || l.V != linkVersion {
			var e jsonAudit
			if err := jsonUnmarshalStrict(v, &e); err != nil {
				broken(seq, "link %d cannot be read (altered)", seq)
				prev = ""
				continue
			}
			r.Legacy++
			if keyed || r.Unkeyed > 0 {
				broken(seq, "link %d is in the format of the old unkeyed chain after links of the new one (forged)", seq)
			} else if e.Prev != prev || auditHash(seq, e) != e.Hash {
				broken(seq, "link %d (%s by %s) breaks the hash chain (altered)", seq, e.Action, e.Who)
			}
			prev = e.Hash
			macs[seq] = e.Hash
			continue
		}
		if l.Seq != seq {
			broken(seq, "link %d says it is link %d (moved)", seq, l.Seq)
		}
		if l.Prev != prev {
			broken(seq, "link %d (%s) does not follow link %d (a link before it was altered, removed or replaced)", seq, what(l), seq-1)
		}
		switch {
		case l.Key == "":
			r.Unkeyed++
			if keyed {
				broken(seq, "link %d (%s) is unkeyed after keyed links: written without the audit key (forged, or posd ran without its key)", seq, what(l))
			}
		case r.KeyID != "" && l.Key != r.KeyID:
			broken(seq, "link %d (%s) is MACed under key %q, the chain under %q", seq, what(l), l.Key, r.KeyID)
		default:
			r.Keyed++
			r.KeyID, keyed = l.Key, true
		}
		if l.Key != "" && a == nil {
			r.Unchecked++
		} else if mac, err := linkMAC(ctx, a, l.Key, l); err != nil {
			return r, err
		} else if subtle.ConstantTimeCompare([]byte(mac), []byte(l.MAC)) != 1 {
			broken(seq, "link %d (%s) has a wrong MAC: it was altered, or the chain was rewritten without the key", seq, what(l))
		}
		prev = l.MAC
		macs[seq] = l.MAC
		if l.Kind == linkUpgrade {
			txnMark, queueMark = max(txnMark, l.Txn), max(queueMark, l.Queue)
		}
		l.named(func(ref, sum string) { refs[ref] = latest{seq, sum} })
		if l.Kind == linkArchive && l.Archive != nil {
			archives = append(archives, l.Archive)
		}
	}
	// Records and batches an archive link moved out are gone legitimately.
	wasArchived := func(prefix string, id uint64) bool {
		for _, a := range archives {
			if prefix == "txn/" && a.hasTxn(TxnID(id)) || prefix == "batch/" && slices.Contains(a.Batches, id) {
				return true
			}
		}
		return false
	}
	r.Head = ChainHead{Seq: want - 1, MAC: prev}
	if r.Links == 0 {
		r.Head = ChainHead{}
	}
	if b := tx.Bucket(bucketAudit); b.Sequence() > r.Head.Seq {
		broken(r.Head.Seq+1, "the chain ends at link %d but the file had link %d: its tail was cut", r.Head.Seq, b.Sequence())
	}
	for _, h := range printed {
		mac, ok := macs[h.Seq]
		switch {
		case !ok && h.Seq < r.Base:
			// In the archived prefix: VerifyArchive checks it there.
		case !ok && h.Seq > r.Head.Seq:
			broken(r.Head.Seq+1, "the head printed earlier, %s, is past the chain's end (link %d): its tail was cut", h, r.Head.Seq)
		case !ok:
			broken(h.Seq, "link %d of the head printed earlier, %s, is not in the chain", h.Seq, h)
		case h.MAC == "" || !strings.HasPrefix(mac, strings.ToLower(h.MAC)):
			broken(h.Seq, "link %d is not the one printed earlier (%s): the chain was rewritten from there", h.Seq, h)
		}
	}
	// Every record and item holds what its latest link says.
	check := func(prefix string, mark uint64, count *int, buckets ...*bolt.Bucket) {
		seen := map[string]bool{}
		for _, b := range buckets {
			_ = b.ForEach(func(k, v []byte) error {
				if len(k) != 8 {
					return nil
				}
				id := binary.BigEndian.Uint64(k)
				ref := prefix + strconv.FormatUint(id, 10)
				seen[ref] = true
				*count++
				l, ok := refs[ref]
				switch {
				case !ok && id <= mark:
					r.PreChain++
				case !ok:
					broken(0, "%s %d is in the file and in no link of the chain (added behind posd's back)", noun(prefix), id)
				case l.sum == "":
					broken(l.seq, "link %d removed %s %d, which is in the file again", l.seq, noun(prefix), id)
				case l.sum != sum(v):
					broken(l.seq, "%s %d does not hold the value link %d names (edited, or swapped with another)", noun(prefix), id, l.seq)
				}
				return nil
			})
		}
		for ref, l := range refs {
			if strings.HasPrefix(ref, prefix) && l.sum != "" && !seen[ref] {
				if id, err := strconv.ParseUint(strings.TrimPrefix(ref, prefix), 10, 64); err == nil && wasArchived(prefix, id) {
					r.Archived++
					continue
				}
				broken(l.seq, "%s %s, written by link %d, is not in the file (deleted)", noun(prefix), strings.TrimPrefix(ref, prefix), l.seq)
			}
		}
	}
	check("txn/", txnMark, &r.Records, tx.Bucket(bucketJournal))
	check("queue/", queueMark, &r.Items, tx.Bucket(bucketQueueRev), tx.Bucket(bucketQueueAdv))
	var batches int
	check("batch/", 0, &batches, tx.Bucket(bucketBatches))
	return r, nil
}

func noun(prefix string) string {
	switch prefix {
	case "txn/":
		return "journal record"
	case "batch/":
		return "batch close record"
	}
	return "queue item"
}

func what(l jsonLink) string {
	switch {
	case l.Ref != "":
		return l.Kind + " of " + l.Ref
	case len(l.Refs) == 1:
		return l.Kind + " of " + l.Refs[0].Ref
	case len(l.Refs) > 1:
		return fmt.Sprintf("%s of %s and %d more", l.Kind, l.Refs[0].Ref, len(l.Refs)-1)
	}
	return l.Kind + " by " + l.Who
}

// roomForAudit refuses an entry that is only audit (an operator action that moves no money)
// once the file is within a margin of its cap, so that sales keep the room left: see
// Options.MaxSize.
func (s *Store) roomForAudit(tx *bolt.Tx) error {
	if s.maxSize <= 0 {
		return nil
	}
	limit := effectiveCap(s.maxSize)
	margin := min(limit/20, 256<<10)
	// The file's high-water mark: bbolt reuses freed pages, but its count of them lags a
	// commit, and the journal only grows, so the mark is the measure that does not waver.
	used := int(tx.Size())
	if used >= limit-margin {
		return fmt.Errorf("%w: the file is within %d KiB of its cap (%d of %d KiB used): audit-only entries are refused to keep room for sales", ErrFull, margin>>10, used>>10, limit>>10)
	}
	return nil
}

// effectiveCap is how large the used part of the file can grow under bbolt's MaxSize: bbolt
// grows its file to the next power of two up to 16 MiB, then by 16 MiB at a time, and
// refuses a growth past MaxSize.
func effectiveCap(maxSize int) int {
	const alloc = 16 << 20
	p := 32 << 10
	for p*2 <= min(maxSize, alloc) {
		p *= 2
	}
	return max(p, maxSize-alloc)
}

// salvageLink checks, for salvage, that the link v at seq follows prev and (unless it is
// keyed: salvage may have no key) carries its own hash; it returns the link's MAC.
func salvageLink(seq uint64, v []byte, prev string) (string, bool) {
	var l jsonLink
	if jsonUnmarshalStrict(v, &l) == nil && l.V == linkVersion {
		if l.Seq != seq || l.Prev != prev {
			return "", false
		}
		if l.Key == "" {
			if mac, err := linkMAC(context.Background(), nil, "", l); err != nil || mac != l.MAC {
				return "", false
			}
		}
		return l.MAC, true
	}
	var e jsonAudit
	if jsonUnmarshalStrict(v, &e) != nil || e.Prev != prev || auditHash(seq, e) != e.Hash {
		return "", false
	}
	return e.Hash, true
}

// operatorEntry reports whether the link v is one AuditLog lists.
func operatorEntry(v []byte) bool {
	var l jsonLink
	if jsonUnmarshalStrict(v, &l) == nil && l.V == linkVersion {
		return l.Who != ""
	}
	return true
}

// resealTx adds a "reseal" link for every record and item in tx whose value the chain does
// not name (and one for every record or item the chain names that is gone), so that the
// chain of a salvaged file verifies. It returns how many it added. s.mu held or the Store
// not shared yet.
func (s *Store) resealTx(ctx context.Context, tx *bolt.Tx) (int, error) {
	refs := map[string]string{}
	err := tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
		var l jsonLink
		if jsonUnmarshalStrict(v, &l) == nil {
			l.named(func(ref, sum string) { refs[ref] = sum })
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	seen := map[string]bool{}
	for _, w := range []struct {
		prefix string
		b      *bolt.Bucket
	}{{"txn/", tx.Bucket(bucketJournal)}, {"queue/", tx.Bucket(bucketQueueRev)}, {"queue/", tx.Bucket(bucketQueueAdv)}} {
		var links []jsonLink
		err := w.b.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			ref := w.prefix + strconv.FormatUint(binary.BigEndian.Uint64(k), 10)
			seen[ref] = true
			if refs[ref] != sum(v) {
				links = append(links, refLink("reseal", ref, v))
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		for _, l := range links {
			if err := s.linkTx(ctx, tx, l); err != nil {
				return n, err
			}
			n++
		}
	}
	var gone []string
	for ref, sm := range refs {
		if sm != "" && !seen[ref] {
			gone = append(gone, ref)
		}
	}
	slices.Sort(gone)
	for _, ref := range gone {
		if err := s.linkTx(ctx, tx, jsonLink{Kind: "reseal", Ref: ref}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
