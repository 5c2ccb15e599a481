package iso8583_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// benchLink measures round trips per second over one loopback connection to hostsim with
// `inFlight` requests outstanding at any time: the typical 0200 (chip, PIN block checked by
// the host under DUKPT, field 55), built, sent, answered and parsed.
func benchLink(b *testing.B, inFlight int) {
	addr, _ := startHost(b, hostsim.Options{})
	c := newClient(b, iso8583.ClientOptions{Addr: addr, MaxInFlight: inFlight})
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	base := typicalSale(b)
	var stan atomic.Uint32
	var wg sync.WaitGroup
	work := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	var failures atomic.Int64
	var firstErr sync.Once
	fail := func(err error) {
		failures.Add(1)
		firstErr.Do(func() { b.Error(err) })
	}
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work { // on an error, keep taking work: the producer must never block
				a := base
				a.STAN = stan.Add(1)%999_999 + 1
				req, err := a.Message()
				if err != nil {
					fail(err)
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := c.Send(ctx, req)
				cancel()
				if err != nil {
					fail(err)
					continue
				}
				if r, err := iso8583.ParseAuthResponse(resp); err != nil || !r.Approved() {
					fail(fmt.Errorf("%+v %v", r, err))
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if n := failures.Load(); n > 0 {
		b.Errorf("%d of %d round trips failed", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "roundtrips/s")
	// CPU time of the whole process (client and host) per round trip: what the machine
	// must give, whatever else runs on it. 2 cores / this = the round trips 2 free cores carry.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/roundtrip")
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRoundTrip1(b *testing.B)  { benchLink(b, 1) }
func BenchmarkRoundTrip32(b *testing.B) { benchLink(b, 32) }
