package padsim_test

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/emv"
)

// countingPort counts the bytes the host writes and reads.
type countingPort struct {
	io.ReadWriteCloser
	in, out atomic.Int64
}

func (c *countingPort) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingPort) Write(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// appBytes returns the application data of the exchange a sale makes and
// the bytes the link layer needs for it at the least: per command, its frame
// (SYN, data, ETB, 2-byte CRC, no stuffing) and the ACK, and the frame of
// its response.
func minimumWire(cmds []abecs.Command, resps []abecs.Response) (app, min int) {
	for _, c := range cmds {
		d, _ := c.Append(nil)
		app += len(d)
		min += len(d) + 4 + 1
	}
	for _, r := range resps {
		d, _ := r.Append(nil)
		app += len(d)
		min += len(d) + 4
	}
	return app, min
}

// Bytes on the wire per sale for the pad exchange: magnetic stripe (DSP,
// GCR, GPN, CLO) and chip with online PIN (DSP, GCR, GOC, FNC, CLO),
// measured at the host's port, against the least the link layer needs for
// the same application data. EMV data travels as hex (2 characters a byte):
// hex-extra-B/sale is what that costs over binary TLV.
func BenchmarkSaleWireBytes(b *testing.B) {
	for _, kind := range []string{"magstripe", "chip"} {
		b.Run(kind, func(b *testing.B) {
			var events []string
			for range b.N {
				if kind == "chip" {
					events = append(events, `{"insert":{"pan":"`+pan+`","online_pin":true}}`, `{"pin":"1234"}`)
				} else {
					events = append(events, `{"swipe":{"track1":"`+track1+`","track2":"`+track2+`"}}`, `{"pin":"1234"}`)
				}
			}
			var port *countingPort
			r := newRig(b, `{"events":[`+strings.Join(events, ",")+`]}`, rigOpts{
				clientWrap: func(p *abecs.SerialPort) io.ReadWriteCloser { port = &countingPort{ReadWriteCloser: p}; return port },
			})
			defer r.client.Close()
			ctx := context.Background()
			var cmds []abecs.Command
			var resps []abecs.Response
			record := func(c abecs.Command, err error) {
				if err != nil {
					b.Fatal(err)
				}
				cmds = append(cmds, c)
			}
			hexExtra := 0
			b.ResetTimer()
			for i := range b.N {
				rec := i == 0
				if err := r.client.Display(ctx, "SALE 12.34 EUR", "INSERT OR SWIPE"); err != nil {
					b.Fatal(err)
				}
				cd, err := r.client.GetCard(ctx, abecs.CardRequest{AmountMinor: 1234, Timeout: 2 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				if kind == "chip" {
					res, err := r.client.GoOnChip(ctx, abecs.GoChipRequest{AmountMinor: 1234, KeyIndex: 1, Tags: emv.GoOnChipTags(), Timeout: 2 * time.Second})
					if err != nil {
						b.Fatal(err)
					}
					fin, err := r.client.FinishChip(ctx, abecs.FinishChipRequest{HostResponded: true, ResponseCode: "00", IssuerData: make91(), Tags: emv.FinishChipTags()})
					if err != nil || !fin.Approved {
						b.Fatal(err)
					}
					if rec {
						goc, _ := abecs.AppendGoChip(abecs.GoChipRequest{AmountMinor: 1234, KeyIndex: 1, Tags: emv.GoOnChipTags()})
						fnc, _ := abecs.AppendFinishChip(abecs.FinishChipRequest{HostResponded: true, ResponseCode: "00", IssuerData: make91(), Tags: emv.FinishChipTags()})
						gr, _ := abecs.AppendGoChipResult(nil, res)
						fr, _ := abecs.AppendFinishChipResult(nil, fin)
						record(abecs.Command{ID: "GOC", Blocks: goc}, nil)
						record(abecs.Command{ID: "FNC", Blocks: fnc}, nil)
						resps = append(resps, abecs.Response{ID: "GOC", Blocks: [][]byte{gr}}, abecs.Response{ID: "FNC", Blocks: [][]byte{fr}})
						hexExtra = len(res.EMVData) + len(fin.EMVData) + len(make91()) + len(strings.Join(emv.GoOnChipTags(), ""))/2 + len(strings.Join(emv.FinishChipTags(), ""))/2
					}
				} else {
					block, ksn, err := r.client.GetPIN(ctx, abecs.PINRequest{KeyIndex: 1, PAN: cd.PAN(), Line1: "12.34 EUR", Timeout: 2 * time.Second})
					if err != nil {
						b.Fatal(err)
					}
					if rec {
						gpn, _ := abecs.AppendPINRequest(nil, abecs.PINRequest{KeyIndex: 1, PAN: cd.PAN(), Line1: "12.34 EUR"})
						record(abecs.Command{ID: "GPN", Blocks: [][]byte{gpn}}, nil)
						resps = append(resps, abecs.Response{ID: "GPN", Blocks: [][]byte{abecs.AppendPINResponse(nil, block, ksn)}})
					}
				}
				if err := r.client.Finish(ctx, "APPROVED"); err != nil {
					b.Fatal(err)
				}
				if rec {
					dsp, _ := abecs.AppendDisplay(nil, "SALE 12.34 EUR", "INSERT OR SWIPE")
					gcr, _ := abecs.AppendCardRequest(nil, abecs.CardRequest{AmountMinor: 1234}, time.Now())
					gcrResp, _ := abecs.AppendCardData(nil, cd)
					clo, _ := abecs.AppendDisplay(nil, "APPROVED", "")
					record(abecs.Command{ID: "DSP", Blocks: [][]byte{dsp}}, nil)
					record(abecs.Command{ID: "GCR", Blocks: [][]byte{gcr}}, nil)
					record(abecs.Command{ID: "CLO", Blocks: [][]byte{clo}}, nil)
					resps = append(resps, abecs.Response{ID: "DSP"}, abecs.Response{ID: "GCR", Blocks: [][]byte{gcrResp}}, abecs.Response{ID: "CLO"})
				}
			}
			b.StopTimer()
			app, least := minimumWire(cmds, resps)
			n := float64(b.N)
			b.ReportMetric(float64(port.out.Load())/n, "host-to-pad-B/sale")
			b.ReportMetric(float64(port.in.Load())/n, "pad-to-host-B/sale")
			b.ReportMetric(float64(port.out.Load()+port.in.Load())/n, "wire-B/sale")
			b.ReportMetric(float64(least), "least-B/sale")
			b.ReportMetric(float64(app), "app-data-B/sale")
			b.ReportMetric(float64(hexExtra), "hex-extra-B/sale")
		})
	}
}

func make91() []byte {
	return []byte{0x91, 0x0A, 1, 2, 3, 4, 5, 6, 7, 8, 0x30, 0x30}
}
