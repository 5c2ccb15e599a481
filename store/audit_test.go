package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/soft"
	bolt "go.etcd.io/bbolt"
)

// auditModule returns a soft hsm Module holding an AES MAC key "audit" of key bytes k: the
// Auditor posd's soft backend gives the store.
func auditModule(t testing.TB, k byte) *hsm.Module {
	t.Helper()
	m, err := hsm.New(soft.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.LoadKey(context.Background(), hsm.LoadRequest{ID: "audit", Algorithm: hsm.AES256, Usage: hsm.UsageMAC, Components: [][]byte{bytes.Repeat([]byte{k}, 32)}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// chainFixture makes a keyed store with sales, a queued reversal, a void and operator
// actions, closes it and returns its path.
func chainFixture(t *testing.T, a Auditor) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chain.db")
	s, err := Open(path, &Options{Auditor: a, Sealer: newGCMSealer(t), FoldDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		id, _, err := s.BeginWithSTAN(ctx, sampleIntent(0))
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if _, err := s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Time: time.Now()}, item(KindReversal, 0)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := s.Finish(ctx, id, approved()); err != nil {
			t.Fatal(err)
		}
	}
	rev := item(KindReversal, 0)
	if _, err := s.Void(ctx, 2, "cashier-1", &rev); err != nil {
		t.Fatal(err)
	}
	if err := s.NoteUndelivered(ctx, 4, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Park(ctx, 1, "alice", "host refuses it"); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, "bob", "journal-find", "card 476173******0010: 1 records"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func verifyFile(t *testing.T, path string, a Auditor, printed ...ChainHead) AuditReport {
	t.Helper()
	s, err := Open(path, &Options{Auditor: a, Sealer: newGCMSealer(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.VerifyAudit(context.Background(), printed...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tamper(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func wantBroken(t *testing.T, r AuditReport, seq uint64, what string) {
	t.Helper()
	if r.Broken == nil {
		t.Fatalf("tampering not detected: %+v", r)
	}
	t.Logf("first broken link: %d: %s", r.Broken.Seq, r.Broken.What)
	if r.Broken.Seq != seq || !strings.Contains(r.Broken.What, what) {
		t.Errorf("first broken link %d %q, want %d containing %q", r.Broken.Seq, r.Broken.What, seq, what)
	}
}

// linkOf returns the seq of the latest link naming ref.
func linkOf(t *testing.T, path, ref string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq uint64
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var l jsonLink
			if json.Unmarshal(v, &l) == nil {
				l.named(func(r, _ string) {
					if r == ref {
						seq = binary.BigEndian.Uint64(k)
					}
				})
			}
			return nil
		})
	})
	if seq == 0 {
		t.Fatalf("no link names %s", ref)
	}
	return seq
}

func TestAuditChainIntact(t *testing.T) {
	a := auditModule(t, 1)
	path := chainFixture(t, a)
	r := verifyFile(t, path, a)
	if !r.OK() || r.Mode() != "keyed" || r.Keyed == 0 || r.Unkeyed != 0 || r.Records != 6 || r.Items != 2 || r.Head.Seq != r.Links {
		t.Fatalf("intact chain: %+v %+v", r, r.Broken)
	}
	// 6 begins, 6 finishes, 1 enqueue, void (record + reversal), undelivered, park, find.
	if r.Links != 6+6+1+2+1+1+1 {
		t.Errorf("%d links", r.Links)
	}
	s, err := Open(path, &Options{Auditor: a, Sealer: newGCMSealer(t)})
	if err != nil {
		t.Fatal(err)
	}
	seq, mac := s.AuditHead()
	if seq != r.Head.Seq || mac != r.Head.MAC || len(mac) != 16 {
		t.Errorf("AuditHead %d %s, report %+v", seq, mac, r.Head)
	}
	if rep, err := s.Check(context.Background()); err != nil || !rep.Audit.OK() {
		t.Errorf("check: %+v %v", rep, err)
	}
	// A head printed earlier is found.
	if r2, _ := s.VerifyAudit(context.Background(), ChainHead{Seq: 5, MAC: ""}); r2.OK() {
		t.Errorf("an empty printed MAC verified")
	}
	s.Close()
	if r2 := verifyFile(t, path, a, r.Head); !r2.OK() {
		t.Errorf("the printed head: %+v", r2.Broken)
	}
	// Without the key the keyed links cannot be checked: that is said, not passed.
	if r := verifyFile(t, path, nil); !r.OK() || r.Unchecked != int(r.Links) {
		t.Errorf("without the key: %+v", r)
	}
}

func TestAuditChainEditedRecord(t *testing.T) {
	a := auditModule(t, 1)
	path := chainFixture(t, a)
	seq := linkOf(t, path, "txn/5")
	tamper(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJournal)
		v := bytes.Clone(b.Get(TxnID(5).key()))
		v = bytes.Replace(v, []byte(`"amount_minor":1999`), []byte(`"amount_minor":1998`), 1)
		return b.Put(TxnID(5).key(), v)
	})
	wantBroken(t, verifyFile(t, path, a), seq, "journal record 5 does not hold the value")
}

func TestAuditChainDeletedRecord(t *testing.T) {
	a := auditModule(t, 1)
	path := chainFixture(t, a)
	seq := linkOf(t, path, "txn/4")
	tamper(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketJournal).Delete(TxnID(4).key()) })
	wantBroken(t, verifyFile(t, path, a), seq, "journal record 4, written by link")
}

func TestAuditChainReorderedRecords(t *testing.T) {
	a := auditModule(t, 1)
	path := chainFixture(t, a)
	seq := min(linkOf(t, path, "txn/5"), linkOf(t, path, "txn/6"))
	tamper(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJournal)
		v5, v6 := bytes.Clone(b.Get(TxnID(5).key())), bytes.Clone(b.Get(TxnID(6).key()))
		if bytes.Equal(v5, v6) {
			return errors.New("records 5 and 6 are equal: the swap shows nothing")
		}
		if err := b.Put(TxnID(5).key(), v6); err != nil {
			return err
		}
		return b.Put(TxnID(6).key(), v5)
	})
	wantBroken(t, verifyFile(t, path, a), seq, "does not hold the value")
}

// drainFixture makes a keyed store with four offline sales whose advices went in one
// window: those of sales 1-3 acknowledged, that of sale 4 reached but unanswered. It returns
// the path and the one link the window's settlement added.
func drainFixture(t *testing.T, a Auditor) (string, uint64) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "drain.db")
	s, err := Open(path, &Options{Auditor: a, Sealer: newGCMSealer(t), FoldDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint32(1); i <= 4; i++ {
		if _, err := s.FinishAndQueue(ctx, begin(t, s, i), Outcome{State: StateApprovedOffline, Time: time.Now()}, item(KindAdvice, 10+i)); err != nil {
			t.Fatal(err)
		}
	}
	marked := markDue(t, s, 4)
	var results []Result
	for _, it := range marked {
		r := it.Result(time.Now())
		r.Acked, r.ResponseCode = it.TxnID != 4, "00"
		r.Reached, r.Err = it.TxnID == 4, "timeout"
		results = append(results, r)
	}
	if err := s.Settle(ctx, results); err != nil {
		t.Fatal(err)
	}
	seq, _ := s.AuditHead()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, seq
}

// A window is marked and settled with one link each, naming every item and record: an
// edited, deleted, swapped or revived one is still found, at that link.
func TestAuditChainDrainWindow(t *testing.T) {
	a := auditModule(t, 1)
	path, settle := drainFixture(t, a)
	r := verifyFile(t, path, a)
	// 4 begins, 4 finishes with their advices (2 links each), one mark, one settle.
	if !r.OK() || r.Records != 4 || r.Items != 1 || r.Links != 4+4*2+1+1 {
		t.Fatalf("intact: %+v %+v", r, r.Broken)
	}
	for _, ref := range []string{"txn/1", "txn/2", "txn/3", "queue/1", "queue/4"} {
		if seq := linkOf(t, path, ref); seq != settle {
			t.Errorf("%s: latest link %d, want the settlement's %d", ref, seq, settle)
		}
	}
	if seq := linkOf(t, path, "txn/4"); seq == settle {
		t.Errorf("txn/4 named by the settlement: its advice was not acknowledged")
	}
	cases := []struct {
		name string
		fn   func(tx *bolt.Tx) error
		what string
	}{
		{"edited record", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketJournal)
			v := bytes.Replace(bytes.Clone(b.Get(TxnID(2).key())), []byte(`"amount_minor":1000`), []byte(`"amount_minor":100`), 1)
			return b.Put(TxnID(2).key(), v)
		}, "journal record 2 does not hold the value"},
		{"deleted item", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketQueueAdv).Delete(QueueID(4).key())
		}, "queue item 4, written by link"},
		{"swapped records", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketJournal)
			v1, v3 := bytes.Clone(b.Get(TxnID(1).key())), bytes.Clone(b.Get(TxnID(3).key()))
			if err := b.Put(TxnID(1).key(), v3); err != nil {
				return err
			}
			return b.Put(TxnID(3).key(), v1)
		}, "does not hold the value"},
		{"acknowledged item put back", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketQueueAdv)
			return b.Put(QueueID(1).key(), bytes.Clone(b.Get(QueueID(4).key())))
		}, "removed queue item 1, which is in the file again"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, seq := drainFixture(t, a)
			tamper(t, p, c.fn)
			wantBroken(t, verifyFile(t, p, a), seq, c.what)
		})
	}
}

func TestAuditChainTruncatedTail(t *testing.T) {
	a := auditModule(t, 1)
	path := chainFixture(t, a)
	printed := verifyFile(t, path, a).Head
	// Cutting links that changed records or items is found by the records' checks: the
	// park's item no longer matches its latest remaining link.
	cut := func(n uint64) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			last := b.Sequence()
			for i := range n {
				if err := b.Delete(binary.BigEndian.AppendUint64(nil, last-i)); err != nil {
					return err
				}
			}
			return b.SetSequence(last - n) // the insider resets the counter too
		}
	}
	parked := linkOf(t, path, "queue/1") - 1
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	copyFile(t, path, copyPath)
	tamper(t, copyPath, cut(2))
	wantBroken(t, verifyFile(t, copyPath, a), linkOf(t, copyPath, "queue/1"), "queue item 1 does not hold")
	_ = parked
	// Cutting the last link, an audit-only one (the card search), leaves a chain that is
	// consistent in itself: only the head printed earlier shows the cut.
	tamper(t, path, cut(1))
	if r := verifyFile(t, path, a); !r.OK() {
		t.Errorf("a cut audit-only tail without a printed head: %+v", r.Broken)
	}
	wantBroken(t, verifyFile(t, path, a, printed), printed.Seq, "past the chain's end")
	// A head printed with 16 hex digits (posctl status) is enough, and one still in the
	// chain verifies.
	full := verifyFile(t, path, a).Head
	if r := verifyFile(t, path, a, ChainHead{Seq: full.Seq, MAC: full.MAC[:16]}); !r.OK() {
		t.Errorf("a head still in the chain: %+v", r.Broken)
	}
	wantBroken(t, verifyFile(t, path, a, ChainHead{Seq: full.Seq, MAC: strings.Repeat("0", 16)}), full.Seq, "not the one printed")
}

func TestAuditChainRewrittenWithoutKey(t *testing.T) {
	a := auditModule(t, 1)
	path := chainFixture(t, a)
	// An insider changes record 5 and rewrites its link and every later one under a key
	// of their own.
	seq := linkOf(t, path, "txn/5")
	forger := auditModule(t, 2)
	tamper(t, path, func(tx *bolt.Tx) error {
		j := tx.Bucket(bucketJournal)
		v := bytes.Replace(bytes.Clone(j.Get(TxnID(5).key())), []byte(`"amount_minor":1999`), []byte(`"amount_minor":1`), 1)
		if err := j.Put(TxnID(5).key(), v); err != nil {
			return err
		}
		b := tx.Bucket(bucketAudit)
		prev := ""
		for k := uint64(1); ; k++ {
			raw := b.Get(binary.BigEndian.AppendUint64(nil, k))
			if raw == nil {
				return nil
			}
			var l jsonLink
			if err := json.Unmarshal(raw, &l); err != nil {
				return err
			}
			if k < seq {
				prev = l.MAC
				continue
			}
			if l.Ref == "txn/5" {
				l.Sum = sum(v)
			}
			l.Prev = prev
			mac, err := linkMAC(context.Background(), forger, l.Key, l)
			if err != nil {
				return err
			}
			l.MAC, prev = mac, mac
			nv, _ := json.Marshal(l)
			if err := b.Put(binary.BigEndian.AppendUint64(nil, k), nv); err != nil {
				return err
			}
		}
	})
	wantBroken(t, verifyFile(t, path, a), seq, "wrong MAC")
	// The forger's own key verifies the forgery: that is why the key stays in the token.
	if r := verifyFile(t, path, forger); !r.OK() && r.Broken.Seq >= seq {
		t.Errorf("forged chain under the forger's key: %+v", r.Broken)
	}
}

func TestAuditChainEditedLink(t *testing.T) {
	a := auditModule(t, 1)
	path := chainFixture(t, a)
	tamper(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.Contains(v, []byte("alice")) {
				return b.Put(bytes.Clone(k), bytes.Replace(v, []byte("alice"), []byte("bob"), 1))
			}
		}
		return errors.New("no link by alice")
	})
	r := verifyFile(t, path, a)
	if r.Broken == nil || !strings.Contains(r.Broken.What, "wrong MAC") {
		t.Errorf("edited link: %+v", r.Broken)
	}
}

// Without an Auditor the chain is a plain hash chain: it still verifies, and says so.
func TestAuditChainUnkeyed(t *testing.T) {
	path := chainFixture(t, nil)
	r := verifyFile(t, path, nil)
	if !r.OK() || r.Mode() != "unkeyed" || r.Keyed != 0 {
		t.Fatalf("unkeyed chain: %+v %+v", r, r.Broken)
	}
	// Once keyed links follow, a later unkeyed one is a downgrade.
	a := auditModule(t, 1)
	s, err := Open(path, &Options{Auditor: a})
	if err != nil {
		t.Fatal(err)
	}
	begin(t, s, 0)
	s.Close()
	s, _ = Open(path, nil)
	begin(t, s, 0)
	s.Close()
	wantBroken(t, verifyFile(t, path, a), r.Links+2, "unkeyed after keyed links")
}

// A file of layout 2 (no chain of writes) is upgraded: its old chain is the prefix, the
// records before it are counted, not broken.
func TestAuditChainUpgradeFromLayout2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := Open(path, &Options{Sealer: newGCMSealer(t)})
	if err != nil {
		t.Fatal(err)
	}
	id := begin(t, s, 1)
	s.Finish(ctx, id, approved())
	s.Close()
	// Make it a layout 2 file: no links, one legacy entry.
	tamper(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketAudit); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketAudit)
		if err != nil {
			return err
		}
		seq, _ := b.NextSequence()
		e := jsonAudit{Time: time.Now().UTC(), Who: "alice", Action: "park", Detail: "queue item 1", Prev: ""}
		e.Hash = auditHash(seq, e)
		v, _ := json.Marshal(e)
		if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte("2"))
	})
	a := auditModule(t, 1)
	s, err = Open(path, &Options{Auditor: a})
	if err != nil {
		t.Fatal(err)
	}
	id = begin(t, s, 2)
	s.Finish(ctx, id, approved())
	r, err := s.VerifyAudit(ctx)
	s.Close()
	if err != nil || !r.OK() || r.Legacy != 1 || r.PreChain != 1 || r.Records != 2 || r.Keyed != 3 {
		t.Fatalf("upgraded: %+v %+v %v", r, r.Broken, err)
	}
}

// Near its cap a store refuses audit-only entries (a card search) before sales.
func TestNearCapRefusesAuditBeforeSales(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "cap.db"), &Options{MaxSize: 1 << 20, FoldDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	who := strings.Repeat("w", 64)
	var refusedAt int
	for i := 0; i < 20000; i++ {
		if err := s.Audit(ctx, who, "journal-find", fmt.Sprintf("card 476173******0010: %d records %s", i, strings.Repeat("x", 200))); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			refusedAt = i
			t.Logf("refused: %v", err)
			break
		}
	}
	if refusedAt == 0 {
		t.Fatal("audit entries were never refused")
	}
	sales := 0
	for ; sales < 5000; sales++ {
		if sales == 3 {
			// Still refused as sales fill the margin.
			if err := s.Audit(ctx, who, "journal-find", "again"); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "audit-only") {
				t.Errorf("audit near the cap: %v", err)
			}
			if _, err := s.Reschedule(ctx, "ops"); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "audit-only") {
				t.Errorf("flush near the cap: %v", err)
			}
		}
		id, _, err := s.BeginWithSTAN(ctx, sampleIntent(0))
		if err == nil {
			err = s.Finish(ctx, id, approved())
		}
		if err == nil {
			s.mu.Lock()
			err = s.fold()
			s.mu.Unlock()
			if err == nil {
				continue
			}
			err = s.wrap("fold", err)
		}
		if !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
		break
	}
	t.Logf("audit refused after %d entries; then %d sales went through", refusedAt, sales)
	if sales < 10 {
		t.Errorf("only %d sales after audit entries were refused", sales)
	}
	if sales == 5000 {
		t.Errorf("sales never reached the cap")
	}
}
