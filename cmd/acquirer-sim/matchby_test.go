package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

// An advice resent with the same STAN and a new field 7 is booked once by the default host
// and twice by --match-by transmission; a repeat with the same field 7 is booked once by
// both.
func TestRunMatchBy(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		standing int
	}{{nil, 1}, {[]string{"--match-by", "local"}, 1}, {[]string{"--match-by", "transmission"}, 2}} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			pr, pw := io.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stderr bytes.Buffer
			code := make(chan int, 1)
			go func() {
				code <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, tc.args...), pw, &stderr)
				pw.Close()
			}()
			out := bufio.NewReader(pr)
			addr := listenAddr(t, out)

			c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pan, _ := card.ParsePAN("4761739001010010")
			sent := time.Date(2025, 3, 14, 15, 9, 27, 0, time.UTC)
			a := iso8583.Advice{AmountMinor: 500, CurrencyNumeric: "978", STAN: 7, TransmissionTime: sent, LocalTime: sent,
				PAN: pan, Expiry: "3012", EntryMode: "051", TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
				ApprovalCode: "Y10007", ResponseCode: "00"}
			for i, edit := range []func(){
				func() {},                  // the advice
				func() { a.Repeat = true }, // its repeat, same field 7
				func() { a.Repeat, a.TransmissionTime = false, sent.Add(time.Minute) }, // resent with a new field 7
			} {
				edit()
				req, err := a.Message()
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := c.Send(ctx, req)
				cancel()
				if err != nil {
					t.Fatalf("advice %d: %v", i, err)
				}
				if rc, _ := resp.GetString(39); rc != "00" {
					t.Fatalf("advice %d: rc %s", i, rc)
				}
			}
			cancel()
			rest, _ := io.ReadAll(out)
			if c := <-code; c != 0 {
				t.Fatalf("exit code %d, stderr %s", c, stderr.String())
			}
			if want := fmt.Sprintf("standing charges: %d\n", tc.standing); !strings.Contains(string(rest), want) {
				t.Errorf("output lacks %q:\n%s", want, rest)
			}
		})
	}
}

func TestRunRejectsBadMatchBy(t *testing.T) {
	for _, v := range []string{"", "field7", "Transmission"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"--listen", "127.0.0.1:0", "--match-by", v}, &stdout, &stderr); code != 1 {
			t.Errorf("--match-by %q: exit code %d, want 1", v, code)
		}
		if !strings.Contains(stderr.String(), "--match-by") || stdout.Len() != 0 {
			t.Errorf("--match-by %q: stderr %q, stdout %q", v, stderr.String(), stdout.String())
		}
	}
	var stderr bytes.Buffer
	run(context.Background(), []string{"--help"}, io.Discard, &stderr)
	if !strings.Contains(stderr.String(), "--match-by local|transmission") {
		t.Errorf("usage does not name --match-by:\n%s", stderr.String())
	}
}
