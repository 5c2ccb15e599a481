package store

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"
)

// TestLogOpEncoding checks that what a write puts in the log (encodeLogOp, and the links
// newLink encoded with their MAC) is byte for byte what json.Marshal gives for the same
// values, keyed and unkeyed, with strings that json.Marshal escapes: the log and the audit
// bucket hold the same bytes as before the encoding was written out by hand.
func TestLogOpEncoding(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		o := &Options{Timeout: 100 * time.Millisecond, FoldDelay: -1, Sealer: newGCMSealer(t)}
		if keyed {
			o.Auditor = auditModule(t, 3)
		}
		s, err := Open(filepath.Join(t.TempDir(), "s.db"), o)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		plain := Intent{Kind: "sale", MTI: "0200", TerminalID: "T0000001", AmountMinor: 1250, Currency: "EUR",
			MaskedPAN: "476173******0010", EntryMode: "021", Time: time.Now(), SaleID: "S1", SaleTransactionID: "T1", ServiceID: "42", PANHash: "abcdef"}
		odd := plain
		odd.SaleID, odd.SaleTransactionID, odd.ServiceID, odd.PANHash = `a"b\c`, "tab\there ünïcode\x7f", "&1>", "<hash"
		for i, in := range []Intent{plain, odd} {
			id, _, err := s.BeginWithSTAN(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			out := Outcome{State: StateApproved, ResponseCode: "00", ApprovalCode: "123456", RRN: "000000000001", Time: time.Now()}
			if i == 1 {
				out = Outcome{State: StateUnknown, Reason: `timeout <"host">`, Message: "ü", Time: time.Now()}
			}
			if _, err := s.FinishAndQueue(ctx, id, out); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.NextSTAN(ctx); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		pending := append([]logEntry(nil), s.pending...)
		s.mu.Unlock()
		if len(pending) != 5 {
			t.Fatalf("keyed %v: %d records in the log, want 5", keyed, len(pending))
		}
		links := 0
		for _, e := range pending {
			got, err := encodeLogOp(e.op)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(e.op)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("keyed %v: %s record:\n got %s\nwant %s", keyed, e.op.Op, got, want)
			}
			for _, l := range e.op.Links {
				want, _ := json.Marshal(l)
				if l.enc == nil || !bytes.Equal(l.enc, want) {
					t.Errorf("keyed %v: link %d:\n got %s\nwant %s", keyed, l.Seq, l.enc, want)
				}
				links++
			}
		}
		if links != 4 {
			t.Errorf("keyed %v: %d links in the log, want 4", keyed, links)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLinkEncoding checks appendLinkJSON against json.Marshal for links of every shape the
// store writes, and for some it writes through json.Marshal (a batch's Refs, an archive's
// range, a time that is not UTC).
func TestLinkEncoding(t *testing.T) {
	now := time.Date(2026, 12, 7, 2, 45, 3, 123456789, time.UTC)
	links := []jsonLink{
		{},
		{V: linkVersion, Seq: 1, Time: now, Kind: linkBegin, Ref: "txn/1", Sum: "abcd", Prev: ""},
		{V: linkVersion, Seq: 1 << 60, Time: now.Truncate(time.Second), Kind: linkFinish, Ref: "txn/9", Sum: "p", Key: "audit", Prev: "x", MAC: "ponm"},
		{V: linkVersion, Seq: 7, Time: now, Kind: "park", Who: `ops "bob" <b&b>`, Detail: "tab\t ünï \x00 \u2028", Prev: "y", MAC: "z"},
		{V: linkVersion, Seq: 8, Time: now, Kind: linkUpgrade, Who: "posd", Txn: 42, Queue: 7, Prev: "q"},
		{V: linkVersion, Seq: 9, Time: now.In(time.FixedZone("x", 3600)), Kind: "k", Prev: "p"},
		{V: linkVersion, Seq: 12, Time: now.In(time.FixedZone("secs", -(3600 + 7))), Kind: "k", Prev: "p"},
		{V: linkVersion, Seq: 13, Time: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), Kind: "k", Prev: "p"},
		{V: linkVersion, Seq: 10, Time: now, Kind: "window", Refs: []linkRef{{Ref: "queue/1", Sum: "s"}, {Ref: "txn/2"}}, Prev: "p"},
		{V: linkVersion, Seq: 11, Time: now, Kind: linkArchive, Archive: &archiveRange{File: "a", First: 1, Last: 2, Head: "h"}, Prev: "p"},
	}
	for i, l := range links {
		got, err := appendLinkJSON([]byte("prefix"), l)
		if err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
		want, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Errorf("link %d:\n got %s\nwant prefix%s", i, got, want)
		}
	}
	if _, err := appendLinkJSON(nil, jsonLink{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("a link in the year 10000 encoded without an error, as json.Marshal refuses it")
	}
}

// TestIntentRecordEncoding compares encodeIntentRecord with json.Marshal of the record over
// random intents: every field empty or set, strings json.Marshal escapes, times in and out
// of its range and in several zones.
func TestIntentRecordEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 3))
	pieces := []string{"", "a", "EUR", "476173******0010", `"`, `\`, "<", ">", "&", "\t", "\x00", "\x7f", "ü", "\u2028", "\xff", " x "}
	str := func() string {
		var s string
		for range rng.IntN(4) {
			s += pieces[rng.IntN(len(pieces))]
		}
		return s
	}
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("plus", 5*3600+30*60), time.FixedZone("secs", 3600+7), time.FixedZone("far", 25*3600)}
	for i := range 3000 {
		in := Intent{Kind: str(), MTI: str(), STAN: rng.Uint32(), TerminalID: str(), SaleID: str(), SaleTransactionID: str(), ServiceID: str(),
			AmountMinor: rng.Int64() - rng.Int64(), Currency: str(), MaskedPAN: str(), PANHash: str(), EntryMode: str(),
			Time: time.Unix(rng.Int64N(1<<38)-1<<37, rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))]),
			Chip: rng.IntN(2) == 0, PINEntered: rng.IntN(2) == 0, CVM: str(), Signature: rng.IntN(2) == 0, AID: str(), AppLabel: str(),
			TVR: str(), TSI: str(), Cryptogram: str(), FormFactor: str(), ProcessingCode: str(), Host: str()}
		if rng.IntN(2) == 0 {
			in.Original = TxnID(rng.Uint64())
		}
		if i == 0 {
			in = Intent{}
		}
		got, gerr := encodeIntentRecord(in)
		want, werr := json.Marshal(jsonRecord{V: recordVersion, Intent: jsonIntent(in)})
		if !bytes.Equal(got, want) || (gerr == nil) != (werr == nil) {
			t.Fatalf("intent %d:\n got %s, %v\nwant %s, %v", i, got, gerr, want, werr)
		}
	}
}

// TestOutcomeEncoding compares encodeOutcome with json.Marshal over random outcomes, as
// TestIntentRecordEncoding does for intents.
func TestOutcomeEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 4))
	pieces := []string{"", "00", "approved", `"`, `\`, "<", ">", "&", "\n", "\x00", "ü", "\u2029", "\xfe"}
	str := func() string {
		var s string
		for range rng.IntN(4) {
			s += pieces[rng.IntN(len(pieces))]
		}
		return s
	}
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("minus", -(9*3600 + 30*60)), time.FixedZone("far", -30*3600)}
	at := func() time.Time {
		return time.Unix(rng.Int64N(1<<38)-1<<37, rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))])
	}
	for i := range 3000 {
		o := jsonOutcome{State: State(str()), ResponseCode: str(), ApprovalCode: str(), RRN: str(), Reason: str(), Time: at(),
			Condition: str(), Message: str(), AuthorizedMinor: rng.Int64N(3) * (rng.Int64() - rng.Int64()), Batch: rng.Uint64N(3) * rng.Uint64()}
		switch rng.IntN(8) {
		case 0:
			o.Reversed = &Settlement{Time: at(), ResponseCode: str(), STAN: rng.Uint32()}
		case 1:
			o.Voided = &Void{Time: at(), By: str()}
		case 2:
			u := at()
			o.Undelivered = &u
		}
		if i == 0 {
			o = jsonOutcome{}
		}
		got, gerr := encodeOutcome(o)
		want, werr := json.Marshal(o)
		if !bytes.Equal(got, want) || (gerr == nil) != (werr == nil) {
			t.Fatalf("outcome %d:\n got %s, %v\nwant %s, %v", i, got, gerr, want, werr)
		}
	}
}
