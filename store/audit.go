package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Auditor computes the MACs of the audit chain under a key it keeps (posd: a key in its hsm
// token, which never leaves it). hsm.Module implements it. It is called with the Store's
// write lock held, once per link, so it should be fast (a soft or local-token CMAC is a few
// microseconds); it must be safe for concurrent use and must not call back into the Store.
type Auditor interface {
	MAC(ctx context.Context, keyID string, data []byte) ([]byte, error)
}

// The audit chain: one chain of links, in the audit bucket, keyed by sequence number. Every
// write to the journal or the queue adds one link per record or item it changes (in the same
// write: the log record on a sale's path, the bbolt commit otherwise), and every operator
// action adds one. A link names the record or item (Ref) and holds the SHA-256 of its new
// stored value (Sum, "" when it was removed), the previous link's MAC, and its own MAC under
// the Auditor's key: so an edited, deleted or swapped record, a removed or altered link, and
// a chain rewritten without the key are all found by VerifyAudit; a cut tail is found
// against a head (sequence and MAC) printed earlier.
//
// The forwarder's window is the exception: MarkSending and Settle change up to a few
// hundred items (and, on an acknowledgement, their journal records) in one commit, and add
// one link for that commit, which names each of them with its Sum (Refs). A name in Refs
// counts as a link of its own for VerifyAudit: the record or item must hold the value it
// names until a later link names it again.
//
// Files of layout 2 and before hold a chain of operator actions only, hashed with SHA-256
// and no key (jsonAudit): it is kept as the chain's prefix, and the first link of the new
// chain ("upgrade") follows its head and records which records and items existed before.

// linkVersion is the "v" of a link.
const linkVersion = 2

// macDomain is prefixed to what a link's MAC covers: MACs under the audit key are never
// taken for MACs of anything else.
const macDomain = "posd/audit-link/2\x00"

// Link kinds that are operator actions: the rest record what posd itself did.
const (
	linkBegin       = "begin"
	linkFinish      = "finish"
	linkEnqueue     = "enqueue"
	linkUpgrade     = "upgrade"
	linkUndelivered = "undelivered"
)

// jsonLink is one link of the chain. Field names are part of the file format.
type jsonLink struct {
	V      int       `json:"v"`
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Ref    string    `json:"ref,omitempty"` // "txn/ID" or "queue/ID"
	Sum    string    `json:"sum,omitempty"` // SHA-256 of Ref's new stored value, in letters; "" removed
	Who    string    `json:"who,omitempty"` // an operator action's
	Detail string    `json:"detail,omitempty"`
	// upgrade: the journal's and the queue's id high-water marks when the chain began:
	// records and items up to them may have no link.
	Txn   uint64 `json:"txn,omitempty"`
	Queue uint64 `json:"queue,omitempty"`
	Key   string `json:"key,omitempty"` // the Auditor's key id; "" an unkeyed SHA-256
	// Archive: what an archive run moved out of the live file (archive.go).
	Archive *archiveRange `json:"archive,omitempty"`
	// Refs names every record and item one commit wrote, each with the SHA-256 of its new
	// value, for a commit that writes many (a forwarder's window); Ref and Sum are then "".
	Refs []linkRef `json:"refs,omitempty"`
	Prev string    `json:"prev"`
	MAC  string    `json:"mac,omitempty"`

	// enc is the link as json.Marshal writes it, made by newLink from the bytes its MAC
	// covers, so that the log record and the fold's putLink do not encode it again; nil on
	// a link read back or not sealed by newLink. Not in the file.
	enc []byte
}

// linkRef is one record or item a link of many names (jsonLink.Refs). Field names are part
// of the file format.
type linkRef struct {
	Ref string `json:"ref"`           // "txn/ID" or "queue/ID"
	Sum string `json:"sum,omitempty"` // SHA-256 of its new stored value, in letters; "" removed
}

// named calls fn for every record or item l names with its new value's sum: its Ref, or
// each of its Refs, in order.
func (l jsonLink) named(fn func(ref, sum string)) {
	if l.Ref != "" {
		fn(l.Ref, l.Sum)
	}
	for _, r := range l.Refs {
		fn(r.Ref, r.Sum)
	}
}

// AuditEntry is one operator or system action in the audit chain (an entry with a Who:
// park, delete, flush, void, firmware, journal find, salvage).
//
// A plain value: safe for concurrent use when not modified.
type AuditEntry struct {
	Seq    uint64
	Time   time.Time
	Who    string
	Action string
	Detail string
	Prev   string // the previous link's MAC (hash); "" for the first
	Hash   string // this link's MAC (or SHA-256, unkeyed)
}

// jsonAudit is a link of the unkeyed chain of layout 2 and before.
type jsonAudit struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	Action string    `json:"action"`
	Detail string    `json:"detail"`
	Prev   string    `json:"prev"`
	Hash   string    `json:"hash,omitempty"`
}

func auditHash(seq uint64, e jsonAudit) string {
	e.Hash = ""
	b, _ := json.Marshal(e)
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, seq))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// sum is the SHA-256 of a stored value, in letters (see letters).
func sum(v []byte) string {
	h := sha256.Sum256(v)
	return letters(h[:])
}

// letters writes b with one letter a-p per hexadecimal digit: a hash or MAC written in hex
// holds runs of digits, and one in ten of those that run to 13 or more passes the Luhn
// check, so that a scanner looking for card numbers (ours in the tests, a customer's DLP
// tool) would take the file for one holding PANs. Letters hold no digit at all.
func letters(b []byte) string {
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, 'a'+c>>4, 'a'+c&0x0f)
	}
	return string(out)
}

func txnRef(id TxnID) string     { return "txn/" + strconv.FormatUint(uint64(id), 10) }
func queueRef(id QueueID) string { return "queue/" + strconv.FormatUint(uint64(id), 10) }

// linkMAC computes l's MAC: under keyID with a, or a SHA-256 when keyID is "".
func linkMAC(ctx context.Context, a Auditor, keyID string, l jsonLink) (string, error) {
	mac, _, err := sealLink(ctx, a, keyID, l)
	return mac, err
}

// sealLink is linkMAC also returning l's JSON with that MAC (as json.Marshal writes it), or
// nil when the MAC is empty (then the "mac" field is omitted, not appended).
func sealLink(ctx context.Context, a Auditor, keyID string, l jsonLink) (string, []byte, error) {
	l.MAC = ""
	data := append(make([]byte, 0, 512), macDomain...)
	data, err := appendLinkJSON(data, l)
	if err != nil {
		return "", nil, err
	}
	b := data[len(macDomain):]
	var mac string
	switch {
	case keyID == "":
		h := sha256.Sum256(data)
		mac = letters(h[:])
	case a == nil:
		return "", nil, fmt.Errorf("audit link %d is keyed (%q) and no audit key is configured", l.Seq, keyID)
	default:
		m, err := a.MAC(ctx, keyID, data)
		if err != nil {
			return "", nil, fmt.Errorf("audit mac: %w", err)
		}
		mac = letters(m)
	}
	if mac == "" {
		return mac, nil, nil
	}
	// MAC is the last field and is letters only (nothing to escape): the link with it is the
	// link without it and the field.
	return mac, withLastField(b, "mac", appendJSONString(nil, mac)), nil
}

// chainState is the chain's head in memory, saved before a write that may fail.
type chainState struct {
	seq  uint64
	head string
}

func (s *Store) saveChain() chainState     { return chainState{s.auditSeq, s.auditHead} }
func (s *Store) restoreChain(c chainState) { s.auditSeq, s.auditHead = c.seq, c.head }

// newLink seals the next link of the chain and moves the head to it. s.mu held; the caller
// restores the head (restoreChain) if the write carrying the link fails.
func (s *Store) newLink(ctx context.Context, l jsonLink) (jsonLink, error) {
	l.V, l.Seq, l.Prev = linkVersion, s.auditSeq+1, s.auditHead
	if l.Time.IsZero() {
		l.Time = s.now().UTC()
	}
	if s.auditor != nil {
		l.Key = s.auditKeyID
	}
	mac, enc, err := sealLink(ctx, s.auditor, l.Key, l)
	if err != nil {
		return l, err
	}
	l.MAC, l.enc = mac, enc
	s.auditSeq, s.auditHead = l.Seq, mac
	return l, nil
}

// refLink is the link of a record or item's new value (nil: removed).
func refLink(kind, ref string, value []byte) jsonLink {
	l := jsonLink{Kind: kind, Ref: ref}
	if value != nil {
		l.Sum = sum(value)
	}
	return l
}

// putLink writes l in tx.
func putLink(tx *bolt.Tx, l jsonLink) error {
	v := l.enc
	if v == nil {
		var err error
		if v, err = json.Marshal(l); err != nil {
			return err
		}
	}
	b := tx.Bucket(bucketAudit)
	if err := b.Put(binary.BigEndian.AppendUint64(nil, l.Seq), v); err != nil {
		return err
	}
	return raiseSequence(b, l.Seq)
}

// linkTx seals l and writes it in tx. s.mu held (s.update restores the head on failure).
func (s *Store) linkTx(ctx context.Context, tx *bolt.Tx, l jsonLink) error {
	l, err := s.newLink(ctx, l)
	if err != nil {
		return err
	}
	return putLink(tx, l)
}

// putLinked puts value under key in b and links it to the chain.
func (s *Store) putLinked(ctx context.Context, tx *bolt.Tx, b *bolt.Bucket, key, value []byte, l jsonLink) error {
	if err := b.Put(key, value); err != nil {
		return err
	}
	l.Sum = sum(value)
	return s.linkTx(ctx, tx, l)
}

// deleteLinked removes key from b and links the removal to the chain.
func (s *Store) deleteLinked(ctx context.Context, tx *bolt.Tx, b *bolt.Bucket, key []byte, l jsonLink) error {
	if err := b.Delete(key); err != nil {
		return err
	}
	l.Sum = ""
	return s.linkTx(ctx, tx, l)
}

// linkedBatch collects the writes of one commit that changes many records and items, for
// one link naming them all (jsonLink.Refs) instead of one link each. It is not safe for
// concurrent use; it lives for one transaction.
type linkedBatch struct {
	refs []linkRef
}

// put puts value under key in b, to be named by the batch's link as ref.
func (lb *linkedBatch) put(b *bolt.Bucket, key, value []byte, ref string) error {
	if err := b.Put(key, value); err != nil {
		return err
	}
	lb.refs = append(lb.refs, linkRef{Ref: ref, Sum: sum(value)})
	return nil
}

// delete removes key from b, the removal to be named by the batch's link as ref.
func (lb *linkedBatch) delete(b *bolt.Bucket, key []byte, ref string) error {
	if err := b.Delete(key); err != nil {
		return err
	}
	lb.refs = append(lb.refs, linkRef{Ref: ref})
	return nil
}

// linkBatch adds the batch's one link, of kind, to the chain in tx: nothing when the batch wrote
// nothing. s.mu held (s.update restores the head on failure).
func (s *Store) linkBatch(ctx context.Context, tx *bolt.Tx, kind string, lb *linkedBatch) error {
	if len(lb.refs) == 0 {
		return nil
	}
	return s.linkTx(ctx, tx, jsonLink{Kind: kind, Refs: lb.refs})
}

// loadChainHead reads the head of the chain from the file. Inside a read transaction.
func (s *Store) loadChainHead(tx *bolt.Tx) error {
	k, v := tx.Bucket(bucketAudit).Cursor().Last()
	if k == nil {
		return nil
	}
	if len(k) != 8 {
		return fmt.Errorf("audit key of %d bytes: %w", len(k), ErrCorrupt)
	}
	s.auditSeq = binary.BigEndian.Uint64(k)
	var l jsonLink
	if jsonUnmarshalStrict(v, &l) == nil {
		s.auditHead = l.MAC
		return nil
	}
	var a jsonAudit
	if err := json.Unmarshal(v, &a); err != nil {
		return fmt.Errorf("audit entry %d: %w: %w", s.auditSeq, ErrCorrupt, err)
	}
	s.auditHead = a.Hash
	return nil
}

// Audit records an action that is not a journal or queue write (for example a firmware
// install or a card search) in the audit chain. Such entries are refused with ErrFull
// once the file is near its cap (see Options.MaxSize), before sales are.
func (s *Store) Audit(ctx context.Context, who, action, detail string) error {
	return s.update(ctx, "audit", func(tx *bolt.Tx) error {
		if err := s.roomForAudit(tx); err != nil {
			return err
		}
		return s.linkTx(ctx, tx, operatorLink(who, action, redactDigitRuns(detail)))
	})
}

// operatorLink is the link of an operator action by who.
func operatorLink(who, action, detail string) jsonLink {
	if who == "" {
		who = "unknown"
	}
	return jsonLink{Kind: action, Who: who, Detail: detail}
}

// AuditLog returns the operator and system actions of the audit chain in order: the links
// with a Who (not those of every journal and queue write; VerifyAudit checks those).
func (s *Store) AuditLog(ctx context.Context) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.view(ctx, "audit log", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("audit entry %x: %w", k, ErrCorrupt)
			}
			seq := binary.BigEndian.Uint64(k)
			var l jsonLink
			if jsonUnmarshalStrict(v, &l) == nil {
				if l.Who != "" {
					out = append(out, AuditEntry{Seq: seq, Time: l.Time, Who: l.Who, Action: l.Kind, Detail: l.Detail, Prev: l.Prev, Hash: l.MAC})
				}
				return nil
			}
			var e jsonAudit
			if err := jsonUnmarshalStrict(v, &e); err != nil {
				return fmt.Errorf("audit entry %x: %w", k, ErrCorrupt)
			}
			out = append(out, AuditEntry{Seq: seq, Time: e.Time, Who: e.Who, Action: e.Action, Detail: e.Detail, Prev: e.Prev, Hash: e.Hash})
			return nil
		})
	})
	return out, err
}

func jsonUnmarshalStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
