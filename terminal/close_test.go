package terminal_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

func chips(n int) []padsim.Event {
	ev := make([]padsim.Event, n)
	for i := range ev {
		ev[i] = insert(padsim.Chip{})
	}
	return ev
}

func TestCloseBalanced(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, chips(3), hostFaults{})
	for _, a := range []int64{1000, 2500, 700} {
		if res := r.sale(t, a); !res.Approved {
			t.Fatalf("sale = %+v", res)
		}
	}
	tot, err := r.term.Totals(ctx, r.st.OpenBatch())
	if err != nil {
		t.Fatal(err)
	}
	if tot.ISO.DebitsCount != 3 || tot.ISO.DebitsAmount != 4200 || len(tot.Brands) != 1 || tot.Brands[0].Brand != "Visa" {
		t.Fatalf("totals = %+v", tot)
	}
	rep, err := r.term.Close(ctx, "sup")
	if err != nil {
		t.Fatal(err)
	}
	if rep.ResponseCode != "00" || rep.Uploaded || rep.Batch.Number != 1 || rep.Batch.State != store.BatchClosed || rep.AuditHead == "" {
		t.Fatalf("close = %+v", rep)
	}
	if got := r.sent.count(iso8583.MTIReconciliationRequest); got != 1 {
		t.Errorf("0500s sent = %d, want 1", got)
	}
	for _, c := range r.host.Charges() {
		if !c.Settled {
			t.Errorf("host charge not settled: %v", c)
		}
	}
	if n := r.st.OpenBatch(); n != 2 {
		t.Fatalf("open batch after the close = %d, want 2", n)
	}
	if tot, err := r.term.Totals(ctx, 2); err != nil || len(tot.Types) != 0 {
		t.Fatalf("totals of the new batch = %+v, %v; want none", tot, err)
	}
	log, err := r.st.AuditLog(ctx)
	if err != nil || log[len(log)-1].Action != "close" || !strings.Contains(log[len(log)-1].Detail, "sales 3/4200") {
		t.Fatalf("audit log ends %+v, %v; want the close", log[len(log)-1], err)
	}
}

func TestCloseOutOfBalanceUploadsAndNamesTheLostTransaction(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, chips(3), hostFaults{lose: 2})
	var lost terminal.SaleResult
	for i, a := range []int64{1000, 2500, 700} {
		res := r.sale(t, a)
		if !res.Approved {
			t.Fatalf("sale = %+v", res)
		}
		if i == 1 {
			lost = res
		}
	}
	rep, err := r.term.Close(ctx, "sup")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Uploaded || rep.ResponseCode != "00" || len(rep.Differences) != 1 {
		t.Fatalf("close = %+v", rep)
	}
	d := rep.Differences[0]
	if d.STAN != lost.STAN || d.AmountMinor != 2500 || d.ResponseCode != iso8583.RCNoOriginal || !strings.Contains(d.What, "missing") {
		t.Fatalf("difference = %+v, want the sale of STAN %d", d, lost.STAN)
	}
	if got := r.sent.count(iso8583.MTIBatchUpload); got != 3 {
		t.Errorf("0320s sent = %d, want 3", got)
	}
	if got := r.sent.count(iso8583.MTIReconciliationRequest); got != 2 {
		t.Errorf("0500s sent = %d, want 2 (920000, then 960000)", got)
	}
	bs, err := r.st.Batches(ctx)
	if err != nil || len(bs) != 1 || len(bs[0].Differences) != 1 || !bs[0].Uploaded {
		t.Fatalf("journaled batches = %+v, %v", bs, err)
	}
}

func TestCloseWhileASaleRunsIsBusy(t *testing.T) {
	r := newRig(t, nil, hostFaults{})
	release, err := r.term.Reserve() // holds the terminal as a running sale does
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := r.term.Close(context.Background(), "sup"); !errors.Is(err, terminal.ErrBusy) {
		t.Fatalf("Close during a sale: err = %v, want ErrBusy", err)
	}
}

func TestCloseMalformedAnswerFailsAndRetryCloses(t *testing.T) {
	ctx := context.Background()
	bad := true
	r := newRig(t, chips(1), hostFaults{corrupt: func(req *iso8583.Message, wire []byte) []byte {
		if mti, _ := req.GetMTI(); mti == iso8583.MTIReconciliationRequest && bad {
			return wire[:len(wire)/2] // a truncated 0510
		}
		return wire
	}})
	r.sale(t, 1234)
	if _, err := r.term.Close(ctx, "sup"); !errors.Is(err, terminal.ErrClose) || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("Close with a malformed 0510: err = %v, want ErrClose, pending", err)
	}
	if _, ok, err := r.st.PendingClose(ctx); !ok || err != nil {
		t.Fatalf("PendingClose after the failure = %t, %v", ok, err)
	}
	bad = false
	rep, err := r.term.Close(ctx, "sup")
	if err != nil || !rep.Resumed || rep.Batch.Number != 1 || rep.Totals.ISO.DebitsAmount != 1234 {
		t.Fatalf("retried close = %+v, %v; want batch 1 resumed with its sale", rep, err)
	}
	if r.st.OpenBatch() != 2 {
		t.Fatalf("open batch = %d", r.st.OpenBatch())
	}
}

// count returns how many requests of MTI mti were sent.
func (r *recorder) count(mti string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if got, _ := m.GetMTI(); got == mti {
			n++
		}
	}
	return n
}
