package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The till index: every transaction begun for a till request is found again by the
// request's keys, so that a till that repeats a request (it timed out, it restarted) gets
// the first request's answer instead of a second sale. The keys are written in the same
// write as the intent (Begin), so a transaction that may have reached the host is always
// found.

// TillKey is one of the keys a till request is known by.
//
// A plain value: safe for concurrent use when not modified.
type TillKey string

// ServiceKey is the key of the till request with nexo SaleID saleID and ServiceID
// serviceID.
func ServiceKey(saleID, serviceID string) TillKey {
	return TillKey("s\x00" + saleID + "\x00" + serviceID)
}

// SaleTxnKey is the key of the till's transaction saleTxnID (nexo
// SaleTransactionID.TransactionID) from the till saleID.
func SaleTxnKey(saleID, saleTxnID string) TillKey {
	return TillKey("t\x00" + saleID + "\x00" + saleTxnID)
}

// maxTillKey bounds an indexed key: a till's ids are short (nexo: SaleID and
// SaleTransactionID up to 64 characters, ServiceID up to 10). A longer key is not indexed.
const maxTillKey = 256

// tillKeys returns the keys of the till request an intent was begun for: none when it
// names no till.
func tillKeys(in Intent) []string {
	var keys []string
	if in.SaleID == "" {
		return nil
	}
	if in.ServiceID != "" {
		keys = append(keys, string(ServiceKey(in.SaleID, in.ServiceID)))
	}
	if in.SaleTransactionID != "" {
		keys = append(keys, string(SaleTxnKey(in.SaleID, in.SaleTransactionID)))
	}
	return slices.DeleteFunc(keys, func(k string) bool { return len(k) > maxTillKey })
}

// putTillKeys indexes keys to id in tx. A key already indexed keeps its first
// transaction: the terminal never begins a second one for a key it finds, so a second can
// only come from an older release's records.
func putTillKeys(tx *bolt.Tx, keys []string, id TxnID) error {
	b := tx.Bucket(bucketTill)
	for _, k := range keys {
		if b.Get([]byte(k)) != nil {
			continue
		}
		if err := b.Put([]byte(k), id.key()); err != nil {
			return err
		}
	}
	return nil
}

// LookupTill returns the transaction begun for the till request key, and false when
// there is none. It reads what the write-ahead log holds and the file, without folding
// the log, so that a till's request costs no write.
func (s *Store) LookupTill(ctx context.Context, key TillKey) (TxnID, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, fmt.Errorf("store: lookup till request: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false, fmt.Errorf("store: lookup till request: %w", ErrClosed)
	}
	if id, ok := s.tillKeys[string(key)]; ok { // written, not folded yet
		return id, true, nil
	}
	var id TxnID
	err := s.dbView(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTill).Get([]byte(key))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("till index value of %d bytes: %w", len(v), ErrCorrupt)
		}
		id = TxnID(binary.BigEndian.Uint64(v))
		return nil
	})
	if err != nil {
		return 0, false, s.wrap("lookup till request", err)
	}
	return id, id != 0, nil
}

// NoteUndelivered records on the finished transaction id that the till did not hear its
// answer (the till's connection closed first), at time at. A till that asks later gets
// the answer from the journal.
func (s *Store) NoteUndelivered(ctx context.Context, id TxnID, at time.Time) error {
	return s.update(ctx, fmt.Sprintf("note undelivered %d", id), func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		if rec.Outcome == nil {
			return fmt.Errorf("transaction %d has no outcome yet: %w", id, ErrInvalid)
		}
		at := at.UTC()
		rec.Outcome.Undelivered = &at
		return s.putRecord(ctx, tx, rec, jsonLink{Kind: linkUndelivered})
	})
}
