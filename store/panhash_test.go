package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestFindByPANHash(t *testing.T) {
	ctx := context.Background()
	s := openNoFold(t, filepath.Join(t.TempDir(), "posd.db"))
	var want []TxnID
	for i := range 6 {
		in := sampleIntent(uint32(i + 1))
		in.PANHash = "card-A_hash"
		if i%2 == 1 {
			in.PANHash = "card-B_hash"
		}
		if i == 5 {
			in.PANHash = "" // a sale with no hash (no key configured)
		}
		id, err := s.Begin(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if in.PANHash == "card-A_hash" {
			want = append(want, id)
		}
	}
	check := func(s *Store, when string) {
		t.Helper()
		recs, err := s.FindByPANHash(ctx, "card-A_hash")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		var got []TxnID
		for _, r := range recs {
			got = append(got, r.ID)
			if r.Intent.PANHash != "card-A_hash" {
				t.Errorf("%s: record %d has hash %q", when, r.ID, r.Intent.PANHash)
			}
		}
		if len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
			t.Errorf("%s: found %v, want %v", when, got, want)
		}
		// A hash that is a prefix of another finds nothing of the other's.
		if recs, err := s.FindByPANHash(ctx, "card-A"); err != nil || len(recs) != 0 {
			t.Errorf("%s: prefix found %d records, %v", when, len(recs), err)
		}
	}
	check(s, "live")
	check(openNoFold(t, crashCopy(t, s)), "after a crash") // the index built from the log
	if _, err := s.FindByPANHash(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty hash: %v", err)
	}
}

func TestPANHashThatLooksLikeAPANRefused(t *testing.T) {
	s := openTemp(t)
	in := sampleIntent(1)
	in.PANHash = "4012345678901234" // a caller passing the PAN itself
	if _, err := s.Begin(context.Background(), in); !errors.Is(err, ErrUnmaskedPAN) {
		t.Fatalf("Begin with a PAN as its hash: %v, want ErrUnmaskedPAN", err)
	}
}
