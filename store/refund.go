package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The refund index: a refund's intent (Kind "refund") is indexed, in the same write as the
// intent (Begin), under its original sale (Intent.Original) or, for an unlinked refund,
// under the local day it began. The terminal sums the refunds of a sale, or the unlinked
// refunds of a day, from it before it begins another, so that a crash between a refund's
// intent and its outcome can never let a second refund past the limit: the first is found
// whatever its outcome. The keys live in the till index's bucket (they cannot collide
// with a till request's keys, which start "s" or "t").

// KindRefund is the Intent.Kind of a refund.
const KindRefund = "refund"

// refundKeys returns the refund index keys of the intent of transaction id: none when it
// is not a refund.
func refundKeys(in Intent, id TxnID) []string {
	if in.Kind != KindRefund {
		return nil
	}
	if in.Original != 0 {
		return []string{fmt.Sprintf("%s%020d\x00%020d", refundPrefix, uint64(in.Original), uint64(id))}
	}
	return []string{fmt.Sprintf("%s%s\x00%020d", unlinkedPrefix, in.Time.In(time.Local).Format("20060102"), uint64(id))}
}

const (
	refundPrefix   = "r\x00" // + original (20 digits) + "\x00" + refund (20 digits)
	unlinkedPrefix = "u\x00" // + local day YYYYMMDD + "\x00" + refund (20 digits)
)

// RefundsOf returns the refunds begun for the sale orig (Intent.Original), whatever their
// outcome, in ID order.
func (s *Store) RefundsOf(ctx context.Context, orig TxnID) ([]Record, error) {
	return s.refunds(ctx, fmt.Sprintf("refunds of %d", orig), fmt.Sprintf("%s%020d\x00", refundPrefix, uint64(orig)))
}

// UnlinkedRefundsOn returns the unlinked refunds begun on the local day (time.Local) of
// day, whatever their outcome, in ID order.
func (s *Store) UnlinkedRefundsOn(ctx context.Context, day time.Time) ([]Record, error) {
	d := day.In(time.Local).Format("20060102")
	return s.refunds(ctx, "unlinked refunds of "+d, unlinkedPrefix+d+"\x00")
}

func (s *Store) refunds(ctx context.Context, op, prefix string) ([]Record, error) {
	var recs []Record
	err := s.view(ctx, op, func(tx *bolt.Tx) error {
		recs = nil
		j := tx.Bucket(bucketJournal)
		c := tx.Bucket(bucketTill).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			if len(v) != 8 {
				return fmt.Errorf("refund index value of %d bytes: %w", len(v), ErrCorrupt)
			}
			id := TxnID(binary.BigEndian.Uint64(v))
			rv := j.Get(id.key())
			if rv == nil {
				return fmt.Errorf("refund index names transaction %d, which is not in the journal: %w", id, ErrCorrupt)
			}
			rec, err := decodeRecord(id, rv)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		return nil
	})
	return recs, err
}
