package terminal_test

import (
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/padsim"
)

// observed is what a test Observer saw.
type observed struct {
	mu        sync.Mutex
	sales     []terminal.SaleResult
	took      []time.Duration
	reversals int
}

func (o *observed) observer() terminal.Observer {
	return terminal.Observer{
		SaleEnded: func(res terminal.SaleResult, err error, took time.Duration) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.sales = append(o.sales, res)
			o.took = append(o.took, took)
		},
		Reversals: func(n int) { o.mu.Lock(); o.reversals += n; o.mu.Unlock() },
	}
}

// TestObserverSales: an approved sale and one whose outcome is unknown are each reported
// once, with a duration; the second's reversal is reported when it is queued.
func TestObserverSales(t *testing.T) {
	var o observed
	drop := false
	var mu sync.Mutex
	r := newRig(t, []padsim.Event{swipe(goodT1, goodT2), pin("1234"), swipe(goodT1, goodT2), pin("1234")}, hostFaults{
		sealer: newGCM(t),
		opts:   func(opts *terminal.Options) { opts.Observe = o.observer() },
		dropFn: func(*iso8583.Message) bool { mu.Lock(); defer mu.Unlock(); return drop },
	})
	if res := r.sale(t, 1250); !res.Approved {
		t.Fatalf("first sale = %+v", res)
	}
	mu.Lock()
	drop = true
	mu.Unlock()
	if res := r.sale(t, 1300); res.Condition != terminal.CondInProgress {
		t.Fatalf("second sale = %+v", res)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.sales) != 2 || !o.sales[0].Approved || o.sales[1].Condition != terminal.CondInProgress {
		t.Fatalf("observed sales = %+v", o.sales)
	}
	for i, d := range o.took {
		if d <= 0 {
			t.Errorf("sale %d took %v", i, d)
		}
	}
	if o.reversals != 1 {
		t.Errorf("observed %d reversals queued, want 1", o.reversals)
	}
}
