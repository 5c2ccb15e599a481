package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/posd-dev/posd/store/internal/boltpage"
	bolt "go.etcd.io/bbolt"
)

// salvageNouns name the entries of the buckets keyed by IDs.
var salvageNouns = map[string]string{string(bucketJournal): "journal record", string(bucketOpen): "open index entry",
	string(bucketQueueRev): "queued reversal", string(bucketQueueAdv): "queued advice", string(bucketAudit): "audit entry"}

// salvageQuote keeps a key read from a damaged file printable.
func salvageQuote(s string) string {
	q := fmt.Sprintf("%q", s)
	return redactDigitRuns(q[1 : len(q)-1])
}

// neighbours describes when the records on either side of a lost range were made.
func (st *salvageState) neighbours(r boltpage.Range) (before, after string) {
	var b, a *Record
	for _, sr := range st.records {
		k := sr.rec.ID.key()
		switch {
		case r.Lo != nil && bytes.Compare(k, r.Lo) < 0 && (b == nil || sr.rec.ID > b.ID):
			b = &sr.rec
		case r.Hi != nil && bytes.Compare(k, r.Hi) >= 0 && (a == nil || sr.rec.ID < a.ID):
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
func salvageRangeText(noun string, r boltpage.Range, seqOf *boltpage.Tree) (what, ids string) {
	if (r.Lo != nil && len(r.Lo) != 8) || (r.Hi != nil && len(r.Hi) != 8) {
		return fmt.Sprintf("%ss with keys from %x to %x", noun, r.Lo, r.Hi), ""
	}
	from := uint64(1)
	if r.Lo != nil {
		from = max(from, binary.BigEndian.Uint64(r.Lo))
	}
	switch {
	case r.Hi != nil:
		to := binary.BigEndian.Uint64(r.Hi) - 1
		if to == from {
			return fmt.Sprintf("%s %d", noun, from), ""
		}
		return fmt.Sprintf("%ss %d to %d", noun, from, to), ""
	case seqOf.Found && seqOf.Seq >= from:
		if seqOf.Seq == from {
			return fmt.Sprintf("%s %d", noun, from), ""
		}
		return fmt.Sprintf("%ss %d to %d", noun, from, seqOf.Seq), " (the last ID handed out was " + fmt.Sprint(seqOf.Seq) + ")"
	}
	return fmt.Sprintf("%ss from %d on", noun, from), ""
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
	put := func(tx *bolt.Tx, name []byte, elems []boltpage.Elem, seq uint64) error {
		b := tx.Bucket(name)
		for _, e := range elems {
			if err := b.Put(e.Key, e.Value); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		if seq > 0 {
			return b.SetSequence(seq)
		}
		return nil
	}
	err = s.wrap("salvage", s.dbUpdate(func(tx *bolt.Tx) error {
		for _, w := range []struct {
			name  []byte
			elems []boltpage.Elem
			seq   uint64
		}{{bucketJournal, pl.journal, pl.journalSeq}, {bucketOpen, pl.open, 0}, {bucketPANIndex, pl.panIndex, 0}, {bucketTill, pl.till, 0}, {bucketQueue, nil, pl.queueSeq},
			{bucketQueueRev, pl.rev, 0}, {bucketQueueAdv, pl.adv, 0}, {bucketCounters, pl.counters, 0}, {bucketAudit, pl.audit, 0}} {
			if err := put(tx, w.name, w.elems, w.seq); err != nil {
				return err
			}
		}
		// The queue's totals, for what was copied of it.
		t, err := countQueue(tx)
		if err != nil {
			return err
		}
		if err := writeTotals(tx, t); err != nil {
			return err
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
