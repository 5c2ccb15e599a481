package hostsim_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// posConditions requires fields 24 and 25 in every request but an 0800 (24 only), and 43
// in every 0200; a client on it adds them.
const posConditions = "../dialects/pos-conditions.json"

// lines collects log lines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, fmt.Sprintf(format, args...))
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

// A host on a dialect with message rules answers 30 to a request that lacks a field the
// dialect requires (or carries one it forbids), logs the field, and decides nothing; the
// same request with the fields is approved.
func TestDialectRulesAnswer30(t *testing.T) {
	d, err := iso8583.LoadDialect(posConditions)
	if err != nil {
		t.Fatal(err)
	}
	var log lines
	s := newServer(t, hostsim.Options{Dialect: d, Logf: log.logf})
	const pan = "4761739001010010"
	before, _ := s.Balance(pan)

	sale := msg(t)(auth(t, 1, pan, 10_00).Message())
	if r := answer(t, s, sale); r.ResponseCode != iso8583.RCFormatError || r.MTI != "0210" || r.STAN != 1 {
		t.Fatalf("sale without 24, 25, 43: %+v", r)
	}
	if l := log.text(); !strings.Contains(l, "field 24") || !strings.Contains(l, "0200") || !strings.Contains(l, "format error") {
		t.Errorf("log does not name the field and the MTI:\n%s", l)
	}
	if strings.Contains(log.text(), pan) {
		t.Error("the log shows the PAN")
	}
	if len(s.Charges()) != 0 {
		t.Errorf("a refused request was recorded: %v", s.Charges())
	}

	// With the dialect's fixed values the same sale goes through.
	p, err := d.PrepareRequest(sale)
	if err != nil {
		t.Fatal(err)
	}
	if r := answer(t, s, p); r.ResponseCode != iso8583.RCApproved {
		t.Fatalf("prepared sale: %+v\n%s", r, log.text())
	}
	if after, _ := s.Balance(pan); after != before-10_00 {
		t.Errorf("balance %d, want %d", after, before-10_00)
	}

	// An 0800 with field 25, which the dialect forbids in it.
	echo := msg(t)(iso8583.NetworkManagement{Code: iso8583.NMSignOn, STAN: 2, TransmissionTime: sentAt, TerminalID: "TERM0001"}.Message())
	echo.Field(24, "001")
	echo.Field(25, "00")
	if r := answer(t, s, echo); r.ResponseCode != iso8583.RCFormatError || r.MTI != "0810" || s.SignedOn("TERM0001") {
		t.Errorf("0800 with 25: %+v, signed on %t", r, s.SignedOn("TERM0001"))
	}
	if !strings.Contains(log.text(), "field 25") {
		t.Errorf("log does not name field 25:\n%s", log.text())
	}
}

// Over TCP: a terminal that does not know the acquirer's dialect rules (a client on the
// plain default dialect) gets 30 for its sale from a host that enforces them.
func TestDialectRulesOverTCP(t *testing.T) {
	d, err := iso8583.LoadDialect(posConditions)
	if err != nil {
		t.Fatal(err)
	}
	var log lines
	s := newServer(t, hostsim.Options{Dialect: d, Logf: log.logf})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	for _, tt := range []struct {
		name    string
		dialect *iso8583.Dialect
		want    string
	}{{"default dialect", nil, iso8583.RCFormatError}, {"the acquirer's dialect", d, iso8583.RCApproved}} {
		c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: ln.Addr().String(), Dialect: tt.dialect})
		if err != nil {
			t.Fatal(err)
		}
		stan := uint32(10)
		if tt.dialect != nil {
			stan = 11
		}
		resp, err := c.Send(ctx, msg(t)(auth(t, stan, "4761739001010010", 5_00).Message()))
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if r, err := iso8583.ParseAuthResponse(resp); err != nil || r.ResponseCode != tt.want {
			t.Errorf("%s: %+v, %v; want %s\n%s", tt.name, r, err, tt.want, log.text())
		}
	}
	if !strings.Contains(log.text(), "field 24") {
		t.Errorf("log does not name field 24:\n%s", log.text())
	}
}
