package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// batchIDs returns the ids of batch n's records.
func batchIDs(t *testing.T, s *Store, n uint64) []TxnID {
	t.Helper()
	var ids []TxnID
	err := s.BatchRecords(context.Background(), n, func(r Record) error {
		if r.Outcome == nil || r.Outcome.Batch != n {
			t.Errorf("record %d listed in batch %d has outcome %+v", r.ID, n, r.Outcome)
		}
		ids = append(ids, r.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestBatchCloseMovesTheOpenBatchAndSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if got := s.OpenBatch(); got != 1 {
		t.Fatalf("open batch of a new store = %d, want 1", got)
	}
	var first []TxnID
	for i := range 300 { // more than one read batch of BatchRecords
		id, err := s.Begin(ctx, sampleIntent(uint32(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, id, approved()); err != nil {
			t.Fatal(err)
		}
		first = append(first, id)
	}
	open, err := s.Begin(ctx, sampleIntent(900))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.BeginClose(ctx, "sup"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("BeginClose with an open record: err = %v, want ErrInvalid", err)
	}
	if err := s.Finish(ctx, open, approved()); err != nil {
		t.Fatal(err)
	}
	first = append(first, open)
	b, resumed, err := s.BeginClose(ctx, "sup")
	if err != nil || resumed || b.Number != 1 || b.State != BatchClosing || b.STAN == 0 {
		t.Fatalf("BeginClose = %+v, %t, %v; want batch 1 closing with a STAN", b, resumed, err)
	}
	// A sale finished while batch 1 closes joins batch 2.
	late, err := s.Begin(ctx, sampleIntent(901))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, late, approved()); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s) // a crash or restart mid-close
	again, resumed, err := s.BeginClose(ctx, "sup")
	if err != nil || !resumed || again.Number != 1 || again.STAN != b.STAN || again.Attempts != 2 {
		t.Fatalf("BeginClose after reopen = %+v, %t, %v; want batch 1 resumed, same STAN, attempt 2", again, resumed, err)
	}
	if got := batchIDs(t, s, 1); len(got) != len(first) || got[0] != first[0] || got[len(got)-1] != open {
		t.Fatalf("batch 1 has %d records (%v...), want %d ending with %d", len(got), got[:min(3, len(got))], len(first), open)
	}
	if got := batchIDs(t, s, 2); len(got) != 1 || got[0] != late {
		t.Fatalf("batch 2 = %v, want [%d]", got, late)
	}
	if err := s.FinishClose(ctx, Batch{Number: 2}); !errors.Is(err, ErrNoClose) {
		t.Fatalf("FinishClose of the open batch: err = %v, want ErrNoClose", err)
	}
	diff := Difference{TxnID: first[4], STAN: 5, MaskedPAN: "401234******0909", AmountMinor: 1999, Kind: "sale", ResponseCode: "25", What: "missing at the host"}
	if err := s.FinishClose(ctx, Batch{Number: 1, ResponseCode: "00", Uploaded: true, Differences: []Difference{diff}, Summary: "debits 301/601699"}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishClose(ctx, Batch{Number: 1}); !errors.Is(err, ErrNoClose) {
		t.Fatalf("FinishClose twice: err = %v, want ErrNoClose", err)
	}
	s = reopen(t, s)
	if got := s.OpenBatch(); got != 2 {
		t.Fatalf("open batch after the close and a reopen = %d, want 2", got)
	}
	bs, err := s.Batches(ctx)
	if err != nil || len(bs) != 1 || bs[0].State != BatchClosed || len(bs[0].Differences) != 1 || bs[0].Differences[0] != diff {
		t.Fatalf("Batches = %+v, %v", bs, err)
	}
	if _, ok, err := s.PendingClose(ctx); ok || err != nil {
		t.Fatalf("PendingClose after the close = %t, %v", ok, err)
	}
	log, err := s.AuditLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := log[len(log)-1]; last.Action != "close" || last.Who != "sup" || !strings.Contains(last.Detail, "missing at the host") {
		t.Fatalf("last audit entry = %+v, want the close naming the difference", last)
	}
	if r, err := s.VerifyAudit(ctx); err != nil || !r.OK() {
		t.Fatalf("VerifyAudit = %+v, %v", r, err)
	}
}

func TestBatchCloseRecordEditedIsFound(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if _, _, err := s.BeginClose(ctx, "sup"); err != nil {
		t.Fatal(err)
	}
	s = rawUpdate(t, s, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBatches).Put(batchKey(1), []byte(`{"number":1,"state":"closed"}`))
	})
	if r, err := s.VerifyAudit(ctx); err != nil || r.Broken == nil || !strings.Contains(r.Broken.What, "batch close record 1") {
		t.Fatalf("VerifyAudit of an edited close record = %+v, %v; want it named", r, err)
	}
}
