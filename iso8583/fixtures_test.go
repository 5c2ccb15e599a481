package iso8583_test

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
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
