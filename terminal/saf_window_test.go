package terminal_test

import (
	"context"
	"encoding/hex"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
)

// holdFirst holds the first message sent through it until release is closed, and counts
// the others, telling others once n of them have been answered.
type holdFirst struct {
	terminal.Acquirer
	mu      sync.Mutex
	calls   int
	n       int
	others  chan struct{}
	release chan struct{}
}

func (h *holdFirst) Send(ctx context.Context, m *iso8583.Message) (*iso8583.Message, error) {
	h.mu.Lock()
	h.calls++
	first := h.calls == 1
	h.mu.Unlock()
	if first {
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp, err := h.Acquirer.Send(ctx, m)
	if !first {
		h.mu.Lock()
		if h.calls-1 == h.n {
			close(h.others)
		}
		h.mu.Unlock()
	}
	return resp, err
}

// A slow send does not stop the drain: while one advice waits for its answer, the rest of
// its window and the whole next window are marked, sent and answered (the next window
// does not wait for the slowest send of the one before). Then every advice is
// acknowledged once.
func TestDrainWindowDoesNotWaitForSlowestSend(t *testing.T) {
	const window, n = 2, 20 // windows of 4*window items
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bdk, _ := hex.DecodeString(testBDK)
	host, err := hostsim.NewServer(hostsim.Options{BDK: bdk})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go host.Serve(ctx, ln)
	st, err := store.Open(filepath.Join(t.TempDir(), "d.db"), &store.Options{Sealer: newGCMB(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	id, err := st.Begin(ctx, store.Intent{Kind: "sale", MTI: "0200", STAN: 1, TerminalID: "TERM0001", Currency: "EUR", MaskedPAN: "476173******0010", Time: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(ctx, id, store.Outcome{State: store.StateApprovedOffline, Time: now}); err != nil {
		t.Fatal(err)
	}
	items := make([]store.Item, n)
	for j := range items {
		items[j] = benchAdvice(id, uint32(j+2), now)
	}
	if _, err := st.Enqueue(ctx, items...); err != nil {
		t.Fatal(err)
	}
	acq, err := iso8583.NewClient(iso8583.ClientOptions{Addr: ln.Addr().String(), MaxInFlight: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer acq.Close()
	// Held: the first advice. Answered meanwhile: the 4*window-1 others of its window and
	// the 4*window of the next.
	h := &holdFirst{Acquirer: acq, n: 8*window - 1, others: make(chan struct{}), release: make(chan struct{})}
	f := terminal.NewForwarder(st, h, terminal.ForwardOptions{Window: window, SendTimeout: 30 * time.Second})
	type drained struct {
		st  terminal.DrainStats
		err error
	}
	done := make(chan drained, 1)
	go func() { s, err := f.Drain(ctx, false); done <- drained{s, err} }()
	select {
	case <-h.others:
	case d := <-done:
		t.Fatalf("drain ended with the first advice held: %+v %v", d.st, d.err)
	case <-time.After(20 * time.Second):
		h.mu.Lock()
		t.Fatalf("with one send held, %d others went in 20s; want %d: the next window waits for the slowest send", h.calls-1, h.n)
	}
	close(h.release)
	d := <-done
	if d.err != nil || d.st.Acked != n || d.st.Sent != n {
		t.Fatalf("drain = %+v, %v; want %d acknowledged", d.st, d.err, n)
	}
	charges := host.Charges()
	if len(charges) != n {
		t.Fatalf("%d charges at the host, want %d", len(charges), n)
	}
	for _, c := range charges {
		if c.Times != 1 {
			t.Errorf("advice STAN %d processed %d times", c.STAN, c.Times)
		}
	}
	if left, err := st.List(ctx); err != nil || len(left) != 0 {
		t.Errorf("queue after the drain: %d items, %v", len(left), err)
	}
	if rep, err := st.VerifyAudit(ctx); err != nil || !rep.OK() {
		t.Errorf("audit: %+v %v", rep.Broken, err)
	}
}
