package iso8583_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/terminal/card"
)

// Test data. The BDK is the public ANSI X9.24-1 test key; the PANs are public test numbers.
const (
	testBDKHex  = "0123456789ABCDEFFEDCBA9876543210"
	testKSN0    = "FFFF9876543210E00000" // initial KSN (counter 0) of the X9.24-1 Annex A example
	approvedPAN = "4761739001010010"     // hostsim.DefaultCards: PIN 1234, large balance, expiry 3012
	lowFundsPAN = "5413330089020011"     // hostsim.DefaultCards: PIN 1234, balance 5.00
	blockedPAN  = "4000000000000002"     // hostsim.DefaultCards: blocked
	unknownPAN  = "4111111111111111"     // Luhn-valid, not in the table
	testTrack2  = approvedPAN + "=30121010000000000"
)

func testBDK(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(testBDKHex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustPAN(t testing.TB, s string) card.PAN {
	t.Helper()
	p, err := card.ParsePAN(s)
	if err != nil {
		t.Fatalf("ParsePAN: %v", err)
	}
	return p
}

// pinPad is the originating side of DUKPT, as a PIN pad holds it: an initial key (derived
// here from the test BDK, as key injection does) and a counter.
type pinPad struct {
	orig *dukpt.Originator
}

func newPINPad(t testing.TB) *pinPad {
	t.Helper()
	ksn, err := dukpt.ParseKSN(testKSN0)
	if err != nil {
		t.Fatal(err)
	}
	ipek, err := dukpt.TDESInitialKey(testBDK(t), ksn)
	if err != nil {
		t.Fatal(err)
	}
	o, err := dukpt.NewOriginator(ipek, ksn)
	if err != nil {
		t.Fatal(err)
	}
	return &pinPad{orig: o}
}

// block returns an encrypted format 0 PIN block and its KSN in upper-case hex.
func (p *pinPad) block(t testing.TB, pin, pan string) ([]byte, string) {
	t.Helper()
	key, ksn, err := p.orig.NextPINKey()
	if err != nil {
		t.Fatal(err)
	}
	clear, err := pinblock.EncodeFormat0(pin, pan)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := pinblock.EncryptTDES(key, clear)
	if err != nil {
		t.Fatal(err)
	}
	return enc[:], ksn.String()
}

var (
	fixedUTC   = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	fixedLocal = fixedUTC.In(time.FixedZone("CET", 3600)) // 16:09:26 local
)

// testAuth returns a valid 0200 for approvedPAN with a keyed PAN and no PIN.
func testAuth(t testing.TB) iso8583.Authorization {
	return iso8583.Authorization{
		AmountMinor:      1234,
		CurrencyNumeric:  "978",
		STAN:             42,
		TransmissionTime: fixedUTC,
		LocalTime:        fixedLocal,
		PAN:              mustPAN(t, approvedPAN),
		Expiry:           "3012",
		EntryMode:        "012",
		TerminalID:       "TERM0001",
		MerchantID:       "MERCHANT0000001",
	}
}

// tlvBytes builds BER-TLV data from tag and value pairs given in hexadecimal (short
// lengths only).
func tlvBytes(t testing.TB, pairs ...string) []byte {
	t.Helper()
	var out []byte
	for i := 0; i+1 < len(pairs); i += 2 {
		tag, err1 := hex.DecodeString(pairs[i])
		val, err2 := hex.DecodeString(pairs[i+1])
		if err1 != nil || err2 != nil || len(val) > 127 {
			t.Fatalf("bad TLV pair %s %s", pairs[i], pairs[i+1])
		}
		out = append(out, tag...)
		out = append(out, byte(len(val)))
		out = append(out, val...)
	}
	return out
}

// testICC is field 55 of a chip sale with an ARQC: the tags a terminal sends (REFERENCE.md).
func testICC(t testing.TB) []byte {
	return tlvBytes(t,
		"9F26", "8E2B54B1C6A7D3F0", // application cryptogram (ARQC)
		"9F27", "80",
		"9F10", "06010A03A0B800",
		"9F37", "1A2B3C4D",
		"9F36", "0042",
		"95", "0000008000",
		"9A", "250314",
		"9C", "00",
		"9F02", "000000001234",
		"5F2A", "0978",
		"82", "1980",
		"9F1A", "0620",
		"9F03", "000000000000",
		"9F33", "E0F8C8",
		"9F34", "420300",
		"9F35", "22",
		"9F1E", "3132333435363738",
		"84", "A0000000031010",
		"9F09", "0096",
		"9F41", "00000042",
		"5F34", "01",
	)
}

// typicalSale is the typical 0200 of the benchmarks: a chip card (track 2 equivalent in
// field 35), online PIN (a fixed DUKPT block under the test BDK) and field 55.
func typicalSale(t testing.TB) iso8583.Authorization {
	a := testAuth(t)
	a.PAN = card.PAN{}
	a.Expiry = ""
	a.Track2 = testTrack2
	a.EntryMode = "051"
	a.PINBlock, a.KSN = newPINPad(t).block(t, "1234", approvedPAN)
	a.Field55 = testICC(t)
	return a
}

// wireRecorder records what a client writes: its dial method is a ClientOptions.Dial.
type wireRecorder struct {
	mu  sync.Mutex
	out []byte
}

func (w *wireRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: nc, w: w}, nil
}

func (w *wireRecorder) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.out)
}

type recordingConn struct {
	net.Conn
	w *wireRecorder
}

func (c *recordingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.w.mu.Lock()
	c.w.out = append(c.w.out, b[:n]...)
	c.w.mu.Unlock()
	return n, err
}

// reversalOf returns the reversal of sale a, with its own STAN.
func reversalOf(t testing.TB, a iso8583.Authorization, stan uint32) iso8583.Reversal {
	t.Helper()
	mti := a.MTI
	if mti == "" {
		mti = "0200"
	}
	pan := a.PAN
	if pan.IsZero() && a.Track2 != "" {
		pan = mustPAN(t, strings.SplitN(a.Track2, "=", 2)[0])
	}
	return iso8583.Reversal{
		STAN: stan, TransmissionTime: a.TransmissionTime.Add(time.Minute), LocalTime: a.LocalTime,
		OriginalMTI: mti, OriginalSTAN: a.STAN, OriginalTransmissionTime: a.TransmissionTime,
		PAN: pan, AmountMinor: a.AmountMinor, CurrencyNumeric: a.CurrencyNumeric, ProcessingCode: a.ProcessingCode,
		EntryMode: a.EntryMode, TerminalID: a.TerminalID, MerchantID: a.MerchantID, ReasonCode: iso8583.ReasonLateResponse,
	}
}

// serveOn serves srv on 127.0.0.1 (TLS when conf is set) until the test ends.
func serveOn(t testing.TB, srv *hostsim.Server, conf *tls.Config) (string, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return addr, ln
}

// newMsgOn returns a message on spec with only its MTI.
func newMsgOn(t testing.TB, spec *iso8583.MessageSpec, mti string) *iso8583.Message {
	t.Helper()
	m, err := iso8583.Convert(newMsg(t, mti, nil), spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// countFields returns the number of fields of m from 2 up.
func countFields(m *iso8583.Message) int {
	n := 0
	for range m.Present() {
		n++
	}
	return n
}
