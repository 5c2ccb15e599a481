package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AuditEntry is one operator or system action on stored data (park, delete, flush), in a
// hash chain: each entry's Hash covers its content and the previous entry's Hash, so that
// removing or editing an entry breaks every later one (Check reports it).
//
// A plain value: safe for concurrent use when not modified.
type AuditEntry struct {
	Seq    uint64
	Time   time.Time
	Who    string
	Action string
	Detail string
	Prev   string // hex SHA-256 of the previous entry; "" for the first
	Hash   string // hex SHA-256 of this entry
}

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

// appendAudit adds an entry to the chain inside tx.
func appendAudit(tx *bolt.Tx, now time.Time, who, action, detail string) error {
	b := tx.Bucket(bucketAudit)
	prev := ""
	if k, v := b.Cursor().Last(); k != nil {
		var last jsonAudit
		if err := json.Unmarshal(v, &last); err != nil {
			return fmt.Errorf("audit entry %x: %w: %w", k, ErrCorrupt, err)
		}
		prev = last.Hash
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if who == "" {
		who = "unknown"
	}
	e := jsonAudit{Time: now.UTC(), Who: who, Action: action, Detail: detail, Prev: prev}
	e.Hash = auditHash(seq, e)
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
}

// Audit records an action that is not a queue operation (for example a firmware install)
// in the audit chain.
func (s *Store) Audit(ctx context.Context, who, action, detail string) error {
	return s.update(ctx, "audit", func(tx *bolt.Tx) error {
		return appendAudit(tx, s.now(), who, action, redactDigitRuns(detail))
	})
}

// AuditLog returns the audit chain in order.
func (s *Store) AuditLog(ctx context.Context) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.view(ctx, "audit log", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var e jsonAudit
			d := json.NewDecoder(bytes.NewReader(v))
			d.DisallowUnknownFields()
			if err := d.Decode(&e); err != nil || len(k) != 8 {
				return fmt.Errorf("audit entry %x: %w", k, ErrCorrupt)
			}
			out = append(out, AuditEntry{Seq: binary.BigEndian.Uint64(k), Time: e.Time, Who: e.Who, Action: e.Action, Detail: e.Detail, Prev: e.Prev, Hash: e.Hash})
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
