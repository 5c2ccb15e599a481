package terminal_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/money"
)

// noPad is a card reader and display for a benchmark that runs no sale.
type noPad struct{}

func (noPad) ReadCard(context.Context, money.Amount) (string, string, error) {
	return "", "", errors.New("no card in a benchmark")
}
func (noPad) Show(context.Context, string, string) error { return nil }
func (noPad) Finish(context.Context, string) error       { return nil }

// BenchmarkClose10k closes a batch of 10,000 approved sales with the acquirer simulator
// over loopback TCP: "balanced" (the host has them all: one 0500), and "upload" (the host
// lost every 1,000th: 0500 answered 95, 10,000 0320s, the closing 0500). Targets (issue
// 14): 2 s balanced, 15 s with the upload.
//
// How the batch is built (not timed): each sale is journaled as posd journals it
// (Store.BeginWithSTAN with a swipe sale's intent, then FinishAndQueue with the host's
// approval), and the same sale, as an 0200 with the journaled STAN and amount, goes to
// hostsim.Server.Respond in process, so the host's ledger holds exactly the journal's
// sales without 10,000 round trips.
func BenchmarkClose10k(b *testing.B) {
	for _, bc := range []struct {
		name string
		lose int
	}{{"balanced", 0}, {"upload", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 10000
			for range b.N {
				b.StopTimer()
				term, host, st, done := closeBenchRig(b, n, bc.lose)
				b.StartTimer()
				t0 := time.Now()
				rep, err := term.Close(context.Background(), "bench")
				el := time.Since(t0)
				b.StopTimer()
				if err != nil || rep.ResponseCode != iso8583.RCApproved || rep.Uploaded != (bc.lose > 0) || rep.Totals.ISO.DebitsCount != n {
					b.Fatalf("close: %+v %v", rep, err)
				}
				if bc.lose > 0 && len(rep.Differences) != n/bc.lose {
					b.Fatalf("%d differences, want %d", len(rep.Differences), n/bc.lose)
				}
				closed := host.ClosedBatches()
				if len(closed) != 1 || !closed[0].Closed || closed[0].Totals != rep.Totals.ISO {
					b.Fatalf("host closed %+v, posd sent %+v", closed, rep.Totals.ISO)
				}
				if st.OpenBatch() != 2 {
					b.Fatalf("open batch %d after the close, want 2", st.OpenBatch())
				}
				b.ReportMetric(el.Seconds(), "s/close")
				done()
			}
		})
	}
}

func closeBenchRig(b *testing.B, n, lose int) (*terminal.Terminal, *hostsim.Server, *store.Store, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	bdk, _ := hex.DecodeString(testBDK)
	host, err := hostsim.NewServer(hostsim.Options{BDK: bdk, LoseEvery: lose})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go host.Serve(ctx, ln)
	st, err := store.Open(filepath.Join(b.TempDir(), "posd.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	pan, err := card.ParsePAN("4761739001010010")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		amount := int64(100 + i%900)
		in := store.Intent{Kind: "sale", MTI: "0200", TerminalID: "TERM0001", SaleID: "BENCH", SaleTransactionID: fmt.Sprintf("B%d", i),
			AmountMinor: amount, Currency: "EUR", MaskedPAN: "476173******0010", EntryMode: "021", Time: now, ProcessingCode: "000000"}
		id, stan, err := st.BeginWithSTAN(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		req, err := iso8583.Authorization{AmountMinor: amount, CurrencyNumeric: "978", STAN: stan, TransmissionTime: now, LocalTime: now,
			PAN: pan, Expiry: "3012", EntryMode: "021", TerminalID: "TERM0001", MerchantID: "MERCHANT0001"}.Message()
		if err != nil {
			b.Fatal(err)
		}
		resp := host.Respond(req)
		rc, _ := resp.GetString(39)
		auth, _ := resp.GetString(38)
		rrn, _ := resp.GetString(37)
		if rc != iso8583.RCApproved {
			b.Fatalf("host answered %s to sale %d", rc, i)
		}
		if _, err := st.FinishAndQueue(ctx, id, store.Outcome{State: store.StateApproved, ResponseCode: rc, ApprovalCode: auth, RRN: rrn, Time: now}); err != nil {
			b.Fatal(err)
		}
	}
	acq, err := iso8583.NewClient(iso8583.ClientOptions{Addr: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	pins, err := hsm.New(soft.New(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	term, err := terminal.New(noPad{}, noPad{}, pins, acq, st, terminal.Options{TerminalID: "TERM0001", MerchantID: "MERCHANT0001",
		Currency: eur, HostTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	return term, host, st, func() { acq.Close(); st.Close(); cancel() }
}
