package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/posd-dev/posd/store"
)

// A sale is journaled before it is sent and finished when the answer comes.
func Example() {
	dir, err := os.MkdirTemp("", "posd-store-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := store.Open(filepath.Join(dir, "posd.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	stan, _ := s.NextSTAN(ctx)
	id, err := s.Begin(ctx, store.Intent{
		Kind: "sale", MTI: "0200", STAN: stan, TerminalID: "TERM0001",
		AmountMinor: 1250, Currency: "EUR", MaskedPAN: "401234******0909", EntryMode: "051",
		Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	open, _ := s.Unfinished(ctx)
	fmt.Println("open before the answer:", len(open))

	// ... request sent, response received ...
	err = s.Finish(ctx, id, store.Outcome{
		State: store.StateApproved, ResponseCode: "00", ApprovalCode: "123456", RRN: "506012345678",
		Time: time.Date(2025, 3, 1, 12, 0, 2, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	rec, _ := s.Get(ctx, id)
	fmt.Println(rec.ID, rec.Intent.STAN, rec.Intent.MaskedPAN, rec.Outcome.State, rec.Outcome.ApprovalCode)
	open, _ = s.Unfinished(ctx)
	fmt.Println("open after:", len(open))
	// Output:
	// open before the answer: 1
	// 1 1 401234******0909 approved 123456
	// open after: 0
}
