package terminal_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	sent    []string // "MTI/STAN" of each message as it goes to the host, in order
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
	mti, _ := m.GetMTI()
	stan, _ := m.GetString(11)
	h.mu.Lock()
	h.sent = append(h.sent, mti+"/"+stan)
	h.mu.Unlock()
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
	st, acq, host, _ := drainRig(ctx, t, n)
	// Held: the first advice. Answered meanwhile: the 4*window-1 others of its window and
	// the 4*window of the next.
	h, done := drainHoldingFirst(ctx, t, st, acq, window, 8*window-1, "the next window waits for the slowest send")
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

// drained is what a Drain returned.
type drained struct {
	st  terminal.DrainStats
	err error
}

// drainHoldingFirst starts a drain of st through acq with the first send held (holdFirst),
// and returns once others further sends have been answered; why says what it means when
// they are not, within 20 s. The caller closes h.release and reads the drain's end from done.
func drainHoldingFirst(ctx context.Context, t *testing.T, st *store.Store, acq terminal.Acquirer, window, others int, why string) (*holdFirst, <-chan drained) {
	t.Helper()
	h := &holdFirst{Acquirer: acq, n: others, others: make(chan struct{}), release: make(chan struct{})}
	f := terminal.NewForwarder(st, h, terminal.ForwardOptions{Window: window, SendTimeout: 30 * time.Second})
	done := make(chan drained, 1)
	go func() { s, err := f.Drain(ctx, false); done <- drained{s, err} }()
	select {
	case <-h.others:
	case d := <-done:
		t.Fatalf("drain ended with the first advice held: %+v %v", d.st, d.err)
	case <-time.After(20 * time.Second):
		h.mu.Lock()
		calls := h.calls
		h.mu.Unlock()
		t.Fatalf("with one send held, %d others went in 20s; want %d: %s", calls-1, others, why)
	}
	return h, done
}

// drainRig is a store with n advices queued, of one offline sale, and a client of the
// acquirer simulator on loopback.
func drainRig(ctx context.Context, t *testing.T, n int) (*store.Store, *iso8583.Client, *hostsim.Server, store.TxnID) {
	t.Helper()
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
	t.Cleanup(func() { st.Close() })
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
	t.Cleanup(func() { acq.Close() })
	return st, acq, host, id
}

// A reversal queued while advice windows are in flight goes before any advice window read
// after it: the windows in flight land first, then the reversal is sent, then the rest of
// the advices.
func TestDrainReversalDueMidDrainGoesFirst(t *testing.T) {
	const window, n = 2, 32 // windows of 8 advices: 4 windows
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, acq, _, id := drainRig(ctx, t, n)
	// Held: the first advice, while the 7 others of its window and the 8 of the next are
	// answered. Then a reversal is queued, and the first advice let go.
	h, done := drainHoldingFirst(ctx, t, st, acq, window, 15, "the other advices of the first two windows were not answered")
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{
		"orig_mti": "0200", "orig_stan": 899, "orig_transmission": now, "local_time": now,
		"amount_minor": 100, "currency_numeric": "978", "processing_code": "000000", "entry_mode": "021",
		"terminal_id": "TERM0001", "merchant_id": "MERCHANT0001", "reason_code": "68",
	})
	rev := store.Item{TxnID: id, Kind: store.KindReversal, STAN: 900, AmountMinor: 100, Currency: "EUR", MaskedPAN: "476173******0010", Payload: payload}
	if _, err := st.Enqueue(ctx, rev); err != nil {
		t.Fatal(err)
	}
	close(h.release)
	d := <-done
	if d.err != nil || d.st.Acked != n+1 {
		t.Fatalf("drain = %+v, %v; want %d acknowledged", d.st, d.err, n+1)
	}
	h.mu.Lock()
	sent := slices.Clone(h.sent)
	h.mu.Unlock()
	at := slices.IndexFunc(sent, func(s string) bool { return strings.HasPrefix(s, "04") })
	if at < 0 {
		t.Fatalf("no reversal sent: %v", sent)
	}
	// Before it: the first two windows (advice STANs 2-17), the held one last; after it,
	// the advices of the last two windows (STANs 18-33).
	for i, s := range sent {
		mti, stanText, _ := strings.Cut(s, "/")
		stan, _ := strconv.Atoi(stanText)
		if mti == "0220" && (i < at) != (stan <= 17) {
			t.Errorf("advice STAN %d sent %s the reversal: %v", stan, map[bool]string{true: "before", false: "after"}[i < at], sent)
		}
	}
}
