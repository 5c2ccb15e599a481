package terminal_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
)

// BenchmarkDrain10k drains 10,000 queued advices to the acquirer simulator over loopback
// TCP and reports advices per second (target: at least 5,000/s), checking that the host
// processed each exactly once. The advices all settle one journal record, and the store
// has no audit key: make bench-compare's figure.
func BenchmarkDrain10k(b *testing.B) { benchDrain(b, false) }

// BenchmarkDrain10kAsRun is BenchmarkDrain10k as posd runs: each advice settles a journal
// record of its own (10,000 offline sales), and the audit chain is keyed (a soft hsm MAC
// key), so that every audit link costs a MAC.
func BenchmarkDrain10kAsRun(b *testing.B) { benchDrain(b, true) }

func benchDrain(b *testing.B, asRun bool) {
	const n = 10000
	bdk, _ := hex.DecodeString(testBDK)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ctx, cancel := context.WithCancel(context.Background())
		host, err := hostsim.NewServer(hostsim.Options{BDK: bdk})
		if err != nil {
			b.Fatal(err)
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go host.Serve(ctx, ln)
		opts := &store.Options{Sealer: newGCMB(b)}
		if asRun {
			opts.Auditor = benchAuditor(b)
		}
		st, err := store.Open(filepath.Join(b.TempDir(), "d.db"), opts)
		if err != nil {
			b.Fatal(err)
		}
		sale := func(stan uint32) store.TxnID {
			id, err := st.Begin(ctx, store.Intent{Kind: "sale", MTI: "0200", STAN: stan, TerminalID: "TERM0001", Currency: "EUR", MaskedPAN: "476173******0010", Time: time.Now()})
			if err == nil {
				err = st.Finish(ctx, id, store.Outcome{State: store.StateApprovedOffline, Time: time.Now()})
			}
			if err != nil {
				b.Fatal(err)
			}
			return id
		}
		id := sale(1)
		items := make([]store.Item, n)
		now := time.Now()
		for j := range items {
			if asRun && j > 0 {
				id = sale(uint32(j + 1))
			}
			items[j] = benchAdvice(id, uint32(j+2), now)
		}
		if _, err := st.Enqueue(ctx, items...); err != nil {
			b.Fatal(err)
		}
		acq, _ := iso8583.NewClient(iso8583.ClientOptions{Addr: ln.Addr().String(), MaxInFlight: 64})
		f := terminal.NewForwarder(st, acq, terminal.ForwardOptions{Window: 32})
		b.StartTimer()
		t0, cpu0 := time.Now(), processCPU()
		stats, err := f.Drain(ctx, false)
		el, cpu := time.Since(t0), processCPU()-cpu0
		b.StopTimer()
		if err != nil || stats.Acked != n {
			b.Fatalf("drain: %+v %v", stats, err)
		}
		charges := host.Charges()
		for _, c := range charges {
			if c.Times != 1 {
				b.Fatalf("advice STAN %d processed %d times", c.STAN, c.Times)
			}
		}
		if len(charges) != n {
			b.Fatalf("%d charges at the host, want %d", len(charges), n)
		}
		b.ReportMetric(float64(n)/el.Seconds(), "advices/s")
		// The CPU the whole process spent per advice: posd's side (store, forwarder,
		// client) and the acquirer simulator's, which runs in the same process.
		b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/advice")
		acq.Close()
		st.Close()
		cancel()
	}
}

// benchAuditor is a soft hsm module with an AES MAC key "audit": the Auditor posd's soft
// backend gives the store.
func benchAuditor(b *testing.B) store.Auditor {
	m, err := hsm.New(soft.New(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	if _, err := m.LoadKey(context.Background(), hsm.LoadRequest{ID: "audit", Algorithm: hsm.AES256, Usage: hsm.UsageMAC, Components: [][]byte{key}}); err != nil {
		b.Fatal(err)
	}
	return m
}

// processCPU is the user and system CPU time the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchAdvice(id store.TxnID, stan uint32, now time.Time) store.Item {
	payload, _ := json.Marshal(map[string]any{
		"orig_mti": "0200", "orig_stan": stan, "orig_transmission": now, "local_time": now.Add(time.Duration(stan) * time.Second),
		"amount_minor": 100, "currency_numeric": "978", "processing_code": "000000", "entry_mode": "021",
		"terminal_id": "TERM0001", "merchant_id": "MERCHANT0001", "approval_code": "Y10001",
	})
	return store.Item{TxnID: id, Kind: store.KindAdvice, STAN: stan, AmountMinor: 100, Currency: "EUR", MaskedPAN: "476173******0010",
		Payload: payload, Sensitive: []byte(`{"pan":"4761739001010010","expiry":"3012"}`)}
}
