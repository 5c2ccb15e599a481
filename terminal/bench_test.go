package terminal_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
)

// BenchmarkDrain10k drains 10,000 queued advices to the acquirer simulator over loopback
// TCP and reports advices per second (target: at least 5,000/s), checking that the host
// processed each exactly once.
func BenchmarkDrain10k(b *testing.B) {
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
		st, err := store.Open(filepath.Join(b.TempDir(), "d.db"), &store.Options{Sealer: newGCMB(b)})
		if err != nil {
			b.Fatal(err)
		}
		id, _ := st.Begin(ctx, store.Intent{Kind: "sale", MTI: "0200", STAN: 1, TerminalID: "TERM0001", Currency: "EUR", MaskedPAN: "476173******0010", Time: time.Now()})
		st.Finish(ctx, id, store.Outcome{State: store.StateApprovedOffline, Time: time.Now()})
		items := make([]store.Item, n)
		now := time.Now()
		for j := range items {
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
