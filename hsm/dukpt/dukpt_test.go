package dukpt

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"errors"
	"math/bits"
	"strings"
	"testing"
)

// ANSI X9.24-1:2009 Annex A test vectors (see REFERENCE.md).
const (
	vecBDK   = "0123456789ABCDEFFEDCBA9876543210"
	vecKSN   = "FFFF9876543210E00000"
	vecIPEK  = "6AC292FAA1315B4D858AB3A3D7D5933A"
	vecClear = "041274EDCBA9876F" // PIN 1234, PAN 4012345678909, ISO 9564 format 0
)

var vecEncrypted = []struct {
	counter uint32
	block   string
}{
	{1, "1B9C1845EB993A7A"},
	{2, "10A01C8D02C69107"},
	{3, "18DC07B94797B466"},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustKSN(t testing.TB, s string) KSN {
	t.Helper()
	k, err := ParseKSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// encryptBlock encrypts one block with a 16-byte key as K1 K2 K1, written
// here independently of the package's helper.
func encryptBlock(t *testing.T, key, clear []byte) string {
	t.Helper()
	k := append(append([]byte{}, key...), key[:8]...)
	b, err := des.NewTripleDESCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 8)
	b.Encrypt(out, clear)
	return strings.ToUpper(hex.EncodeToString(out))
}

func TestParseKSN(t *testing.T) {
	k, err := ParseKSN("ffff9876543210e00001")
	if err != nil {
		t.Fatal(err)
	}
	want := KSN{0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x01}
	if k != want {
		t.Fatalf("ParseKSN = %x, want %x", k, want)
	}
	if got := k.String(); got != "FFFF9876543210E00001" {
		t.Errorf("String = %q", got)
	}
	if got := k.Counter(); got != 1 {
		t.Errorf("Counter = %d, want 1", got)
	}
	for _, bad := range []string{"", "FFFF9876543210E0000", "FFFF9876543210E000001", "FFFF9876543210E0000G", "FFFF9876543210E0000 "} {
		if _, err := ParseKSN(bad); err == nil {
			t.Errorf("ParseKSN(%q) succeeded", bad)
		}
	}
}

func TestCounter(t *testing.T) {
	k := mustKSN(t, "FFFF9876543210FFFFFF")
	if got := k.Counter(); got != MaxCounter {
		t.Errorf("Counter = %#x, want %#x", got, MaxCounter)
	}
	z := k.WithCounter(0)
	if got := z.String(); got != "FFFF9876543210E00000" {
		t.Errorf("WithCounter(0) = %s", got)
	}
	// Bits above 21 are masked off; the 59-bit serial number is untouched.
	if got := z.WithCounter(0xFFE12345).String(); got != "FFFF9876543210E12345" {
		t.Errorf("WithCounter(0xFFE12345) = %s", got)
	}
	if got := z.WithCounter(0x1ABCDE).Counter(); got != 0x1ABCDE {
		t.Errorf("round trip counter = %#x", got)
	}
}

func TestTDESInitialKey(t *testing.T) {
	for _, ksn := range []string{vecKSN, "FFFF9876543210E00003", "FFFF9876543210FFFFFF"} {
		ipek, err := TDESInitialKey(mustHex(t, vecBDK), mustKSN(t, ksn))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(ipek)); got != vecIPEK {
			t.Errorf("KSN %s: IPEK = %s, want %s", ksn, got, vecIPEK)
		}
	}
}

// The transaction key and PIN key for counter 1, as published with the
// Annex A vectors; the PIN key differs from the transaction key in bytes 7
// and 15 only.
func TestTDESTransactionKeyCounter1(t *testing.T) {
	ksn := mustKSN(t, vecKSN).WithCounter(1)
	tk, err := TDESTransactionKey(mustHex(t, vecIPEK), ksn)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ToUpper(hex.EncodeToString(tk)); got != "042666B49184CFA368DE9628D0397BC9" {
		t.Errorf("transaction key = %s", got)
	}
	pk, err := TDESPINKey(mustHex(t, vecBDK), ksn)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ToUpper(hex.EncodeToString(pk)); got != "042666B49184CF5C68DE9628D0397B36" {
		t.Errorf("pin key = %s", got)
	}
}

func TestReceiverPINKey(t *testing.T) {
	bdk := mustHex(t, vecBDK)
	base := mustKSN(t, vecKSN)
	for _, v := range vecEncrypted {
		key, err := TDESPINKey(bdk, base.WithCounter(v.counter))
		if err != nil {
			t.Fatal(err)
		}
		if got := encryptBlock(t, key, mustHex(t, vecClear)); got != v.block {
			t.Errorf("counter %d: encrypted block %s, want %s", v.counter, got, v.block)
		}
	}
}

func TestOriginatorMatchesVectors(t *testing.T) {
	o, err := NewOriginator(mustHex(t, vecIPEK), mustKSN(t, vecKSN))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vecEncrypted {
		key, ksn, err := o.NextPINKey()
		if err != nil {
			t.Fatal(err)
		}
		if ksn.Counter() != v.counter || o.KSN() != ksn {
			t.Fatalf("NextPINKey ksn %v (originator %v), want counter %d", ksn, o.KSN(), v.counter)
		}
		if got := encryptBlock(t, key, mustHex(t, vecClear)); got != v.block {
			t.Errorf("counter %d: encrypted block %s, want %s", v.counter, got, v.block)
		}
	}
}

func TestOriginatorAgreesWithReceiver(t *testing.T) {
	bdk := mustHex(t, vecBDK)
	ipek := mustHex(t, vecIPEK)
	// Start just before a counter whose successor has 11 one bits.
	start := uint32(0x0007FE) // 10 one bits; 0x0007FF has 11
	o, err := NewOriginator(ipek, mustKSN(t, vecKSN).WithCounter(start))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		key, ksn, err := o.NextPINKey()
		if err != nil {
			t.Fatal(err)
		}
		want, err := TDESPINKey(bdk, ksn)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(key, want) {
			t.Fatalf("ksn %v: originator and receiver keys differ", ksn)
		}
	}
}

func TestOriginatorSkipsCounters(t *testing.T) {
	ipek := mustHex(t, vecIPEK)
	tests := []struct{ last, next uint32 }{
		{0, 1},
		{0x0007FE, 0x000800}, // 0x7FF has 11 one bits
		{0x003FF0, 0x004000}, // 0x3FF1..0x3FFF all have 11 or more one bits
		{0x0FFBFE, 0x0FFC00}, // 0xFFBFF has 19 one bits; 0xFFC00 has 10
		{0x1FF7FE, 0x1FF800}, // 0x1FF800 is the last valid counter
	}
	for _, tc := range tests {
		if want := bruteNext(tc.last); want != tc.next {
			t.Fatalf("test table: after %#x expected %#x, brute force says %#x", tc.last, tc.next, want)
		}
		o, err := NewOriginator(ipek, mustKSN(t, vecKSN).WithCounter(tc.last))
		if err != nil {
			t.Fatal(err)
		}
		_, ksn, err := o.NextPINKey()
		if err != nil {
			t.Fatalf("after %#x: %v", tc.last, err)
		}
		if got := ksn.Counter(); got != tc.next {
			t.Errorf("after %#x: next counter %#x, want %#x", tc.last, got, tc.next)
		}
		if n := bits.OnesCount32(ksn.Counter()); n > 10 {
			t.Errorf("after %#x: counter %#x has %d one bits", tc.last, ksn.Counter(), n)
		}
	}
}

// bruteNext is the smallest counter above c with 1..10 one bits, or
// MaxCounter+1 if there is none.
func bruteNext(c uint32) uint32 {
	for n := c + 1; n <= MaxCounter; n++ {
		if bits.OnesCount32(n) <= 10 {
			return n
		}
	}
	return MaxCounter + 1
}

// TestNextCounterExhaustive compares the skipping rule with brute force over
// the whole counter space.
func TestNextCounterExhaustive(t *testing.T) {
	want := uint32(MaxCounter + 1) // brute-force successor, computed downwards
	for c := uint32(MaxCounter); ; c-- {
		got, ok := nextCounter(c)
		if ok != (want <= MaxCounter) || (ok && got != want) {
			t.Fatalf("nextCounter(%#x) = %#x, %v; want %#x", c, got, ok, want)
		}
		if bits.OnesCount32(c) <= 10 && c != 0 {
			want = c
		}
		if c == 0 {
			break
		}
	}
}

func TestOriginatorExhausted(t *testing.T) {
	const last = 0x1FF800 // the largest counter with at most 10 one bits
	o, err := NewOriginator(mustHex(t, vecIPEK), mustKSN(t, vecKSN).WithCounter(last-1))
	if err != nil {
		t.Fatal(err)
	}
	key, ksn, err := o.NextPINKey()
	if err != nil || ksn.Counter() != last || key == nil {
		t.Fatalf("NextPINKey = %v, %v; want counter %#x", ksn, err, last)
	}
	for range 2 {
		key, ksn, err = o.NextPINKey()
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("NextPINKey after last counter: err = %v, want ErrExhausted", err)
		}
		if key != nil || ksn != (KSN{}) {
			t.Errorf("NextPINKey returned a key or KSN with ErrExhausted")
		}
		if got := o.KSN().Counter(); got != last {
			t.Errorf("counter moved to %#x after exhaustion", got)
		}
	}
	// An originator created past the last valid counter is exhausted at once.
	o, err = NewOriginator(mustHex(t, vecIPEK), mustKSN(t, vecKSN).WithCounter(MaxCounter))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.NextPINKey(); !errors.Is(err, ErrExhausted) {
		t.Errorf("from MaxCounter: err = %v, want ErrExhausted", err)
	}
}

func TestInvalidInput(t *testing.T) {
	bdk := mustHex(t, vecBDK)
	ipek := mustHex(t, vecIPEK)
	ksn := mustKSN(t, vecKSN)
	if _, err := TDESInitialKey(bdk[:8], ksn); !errors.Is(err, ErrKeyLength) {
		t.Errorf("TDESInitialKey short key: %v", err)
	}
	if _, err := TDESTransactionKey(append(ipek, 0), ksn.WithCounter(1)); !errors.Is(err, ErrKeyLength) {
		t.Errorf("TDESTransactionKey long key: %v", err)
	}
	if _, err := NewOriginator(nil, ksn); !errors.Is(err, ErrKeyLength) {
		t.Errorf("NewOriginator nil key: %v", err)
	}
	for _, c := range []uint32{0, 0x0007FF, MaxCounter} {
		if _, err := TDESPINKey(bdk, ksn.WithCounter(c)); !errors.Is(err, ErrCounter) {
			t.Errorf("TDESPINKey counter %#x: err = %v, want ErrCounter", c, err)
		}
	}
}

func TestErrorsCarryNoKey(t *testing.T) {
	bdk := mustHex(t, vecBDK)
	_, err := TDESPINKey(bdk, mustKSN(t, vecKSN))
	if err == nil {
		t.Fatal("no error for counter 0")
	}
	msg := strings.ToUpper(err.Error())
	for _, secret := range []string{vecBDK, vecIPEK, vecBDK[:8], vecIPEK[:8]} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q contains key material", err)
		}
	}
}

func FuzzParseKSN(f *testing.F) {
	f.Add(vecKSN)
	f.Add("ffff9876543210e00001")
	f.Add("")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKSN(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(k.String(), s) {
			t.Fatalf("ParseKSN(%q).String() = %q", s, k.String())
		}
		if k.WithCounter(k.Counter()) != k {
			t.Fatalf("WithCounter(Counter()) changed %v", k)
		}
	})
}
