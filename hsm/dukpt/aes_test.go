package dukpt

import (
	"crypto/aes"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	aesBDK  = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	aesIK   = "1273671EA26AC29AFA4D1084127652A1"
	aesKSN0 = "123456789012345600000000"
)

func TestParseAESKSN(t *testing.T) {
	k, err := ParseAESKSN("1234567890123456fffe2000")
	if err != nil {
		t.Fatal(err)
	}
	if k.String() != "1234567890123456FFFE2000" || k.Counter() != 0xFFFE2000 {
		t.Errorf("got %v counter %#x", k, k.Counter())
	}
	if id := k.InitialKeyID(); hexOf(id[:]) != "1234567890123456" {
		t.Errorf("InitialKeyID = %X", id)
	}
	if NewAESKSN(k.InitialKeyID(), 7) != k.WithCounter(7) {
		t.Error("NewAESKSN and WithCounter disagree")
	}
	for _, bad := range []string{"", "1234567890123456FFFE200", "1234567890123456FFFE20000", "1234567890123456FFFE200G", "FFFF9876543210E00001"} {
		if _, err := ParseAESKSN(bad); err == nil {
			t.Errorf("ParseAESKSN(%q) succeeded", bad)
		}
	}
}

func TestNextAESCounter(t *testing.T) {
	tests := []struct{ last, next uint32 }{
		{0, 1},
		{0x1FFFE, 0x20000}, // 0x1FFFF has 17 one bits
		{0x0000FFFF, 0x00010000},
		{0xFFFE2000, 0xFFFE4000},
		{0xFFFE8000, 0xFFFF0000},
	}
	for _, tc := range tests {
		got, ok := nextAESCounter(tc.last)
		if !ok || got != tc.next {
			t.Errorf("nextAESCounter(%#x) = %#x, %v; want %#x", tc.last, got, ok, tc.next)
		}
		for c := uint64(tc.last) + 1; c < uint64(tc.next); c++ {
			if bits.OnesCount64(c) <= 16 {
				t.Fatalf("skipped valid counter %#x", c)
			}
		}
	}
	for _, c := range []uint32{AESMaxCounter, 0xFFFF0001, 0xFFFFFFFF} {
		if n, ok := nextAESCounter(c); ok {
			t.Errorf("nextAESCounter(%#x) = %#x, want exhausted", c, n)
		}
	}
}

func TestRemaining(t *testing.T) {
	// Every counter of 1 to 10 one bits out of 21: C(21,1)+...+C(21,10) = 2^20 - 1.
	o, _ := NewOriginator(mustHex(t, vecIPEK), mustKSN(t, vecKSN))
	if got := o.Remaining(); got != 1<<20-1 {
		t.Errorf("TDES Remaining from 0 = %d, want %d", got, 1<<20-1)
	}
	// (2^32 + C(32,16))/2 - 1 counters of 1 to 16 one bits out of 32.
	a, _ := NewAESOriginator(mustHex(t, aesIK), mustAESKSN(t, aesKSN0), nil)
	if got, want := a.Remaining(), uint64((1<<32+601080390)/2-1); got != want {
		t.Errorf("AES Remaining from 0 = %d, want %d", got, want)
	}
	// Against brute force near the ends and around a skip.
	for _, c := range []uint32{0x1FF000, 0x1FF7FE, 0x1FF800, 0x0007F0} {
		n := uint64(0)
		for x := c + 1; x <= MaxCounter; x++ {
			if bits.OnesCount32(x) <= maxOneBits {
				n++
			}
		}
		o, _ := NewOriginator(mustHex(t, vecIPEK), mustKSN(t, vecKSN).WithCounter(c))
		if got := o.Remaining(); got != n {
			t.Errorf("TDES Remaining at %#x = %d, brute force %d", c, got, n)
		}
	}
	for _, c := range []uint32{0xFFFE0000, 0xFFFE8000, AESMaxCounter} {
		n := uint64(0)
		for x := uint64(c) + 1; x <= 0xFFFFFFFF; x++ {
			if bits.OnesCount64(x) <= 16 {
				n++
			}
		}
		a, _ := NewAESOriginator(mustHex(t, aesIK), mustAESKSN(t, aesKSN0).WithCounter(c), nil)
		if got := a.Remaining(); got != n {
			t.Errorf("AES Remaining at %#x = %d, brute force %d", c, got, n)
		}
	}
}

// A restart with the same Store continues after the last counter used,
// even when the device is set up again with its initial KSN.
func TestRestartContinuesAfterLastCounter(t *testing.T) {
	dir := t.TempDir()
	ipek := mustHex(t, vecIPEK)
	initial := mustKSN(t, vecKSN)
	path := filepath.Join(dir, "tdes.ksn")
	o, err := NewTDESOriginator(ipek, initial, &OriginatorOptions{Store: NewFileStore(path)})
	if err != nil {
		t.Fatal(err)
	}
	var used []uint32
	for range 3 {
		_, ksn, err := o.NextPINKey()
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, ksn.Counter())
	}
	// "Restart": a new originator over the same file, given the initial KSN again.
	o2, err := NewTDESOriginator(ipek, initial, &OriginatorOptions{Store: NewFileStore(path)})
	if err != nil {
		t.Fatal(err)
	}
	_, ksn, err := o2.NextPINKey()
	if err != nil {
		t.Fatal(err)
	}
	if ksn.Counter() != used[len(used)-1]+1 {
		t.Fatalf("after restart counter %d, want %d (used %v)", ksn.Counter(), used[len(used)-1]+1, used)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != ksn.String() {
		t.Errorf("state file holds %q, want %v", b, ksn)
	}

	// The same for AES.
	apath := filepath.Join(dir, "aes.ksn")
	ik := mustHex(t, aesIK)
	a, err := NewAESOriginator(ik, mustAESKSN(t, aesKSN0), &OriginatorOptions{Store: NewFileStore(apath)})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, _, err := a.NextPINKey(KeyAES128); err != nil {
			t.Fatal(err)
		}
	}
	a2, err := NewAESOriginator(ik, mustAESKSN(t, aesKSN0), &OriginatorOptions{Store: NewFileStore(apath)})
	if err != nil {
		t.Fatal(err)
	}
	if a2.KSN().Counter() != 5 {
		t.Errorf("AES originator restarted at counter %d, want 5", a2.KSN().Counter())
	}
	if k, _ := a2.Next(); k.Counter() != 6 {
		t.Errorf("AES Next after restart = %v", k)
	}

	// A state file from another device is refused.
	other := mustKSN(t, "FFFF0000000000E00000")
	if _, err := NewTDESOriginator(ipek, other, &OriginatorOptions{Store: NewFileStore(path)}); err == nil {
		t.Error("state file of another initial KSN accepted")
	}
	if _, err := NewTDESOriginator(ipek, initial, &OriginatorOptions{Store: NewFileStore(apath)}); err == nil {
		t.Error("AES state file accepted for a TDES originator")
	}
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, err := NewTDESOriginator(ipek, initial, &OriginatorOptions{Store: NewFileStore(path)}); err == nil {
		t.Error("corrupt state file accepted")
	}
}

type failStore struct{ MemStore }

func (*failStore) Save([]byte) error { return errors.New("disk full") }

// A counter is saved before its key is handed out: if saving fails, no key
// is returned and the counter does not move.
func TestSaveFailureReturnsNoKey(t *testing.T) {
	o, _ := NewTDESOriginator(mustHex(t, vecIPEK), mustKSN(t, vecKSN), &OriginatorOptions{Store: &failStore{}})
	if key, _, err := o.NextPINKey(); err == nil || key != nil {
		t.Fatalf("NextPINKey with a failing store = %v, %v", key, err)
	}
	if o.KSN().Counter() != 0 {
		t.Errorf("counter moved to %d", o.KSN().Counter())
	}
	a, _ := NewAESOriginator(mustHex(t, aesIK), mustAESKSN(t, aesKSN0), &OriginatorOptions{Store: &failStore{}})
	if key, _, err := a.NextPINKey(KeyAES128); err == nil || key != nil {
		t.Fatalf("AES NextPINKey with a failing store = %v, %v", key, err)
	}
	var m MemStore
	a, _ = NewAESOriginator(mustHex(t, aesIK), mustAESKSN(t, aesKSN0), &OriginatorOptions{Store: &m})
	a.Next()
	if b, _ := m.Load(); hexOf(b) != "123456789012345600000001" {
		t.Errorf("MemStore holds %X", b)
	}
}

func TestAESInvalidInput(t *testing.T) {
	bdk := mustHex(t, aesBDK)
	ksn := mustAESKSN(t, aesKSN0)
	if _, err := AESInitialKey(bdk[:15], ksn.InitialKeyID()); !errors.Is(err, ErrKeyLength) {
		t.Errorf("15-byte BDK: %v", err)
	}
	for _, c := range []uint32{0, 0x1FFFF, 0xFFFFFFFF} {
		if _, err := AESWorkingKey(bdk, ksn.WithCounter(c), UsagePINEncryption, KeyAES128); !errors.Is(err, ErrCounter) {
			t.Errorf("counter %#x: %v", c, err)
		}
	}
	// No working key stronger than the derivation key.
	for _, kt := range []KeyType{KeyAES192, KeyAES256, KeyType(0), KeyType(99)} {
		if _, err := AESWorkingKey(bdk, ksn.WithCounter(1), UsagePINEncryption, kt); !errors.Is(err, ErrKeyType) {
			t.Errorf("%v from AES-128: %v", kt, err)
		}
	}
	for _, kt := range []KeyType{KeyTDES2, KeyTDES3, KeyAES128} {
		k, err := AESWorkingKey(bdk, ksn.WithCounter(1), UsagePINEncryption, kt)
		if err != nil || len(k) != kt.Len() {
			t.Errorf("%v from AES-128: %d bytes, %v", kt, len(k), err)
		}
	}
	if _, err := AESWorkingKey(bdk, ksn.WithCounter(1), usageKeyDerivation, KeyAES128); !errors.Is(err, ErrKeyType) {
		t.Errorf("derivation usage as working key: %v", err)
	}
	if _, err := NewAESOriginator(make([]byte, 17), ksn, nil); !errors.Is(err, ErrKeyLength) {
		t.Errorf("17-byte IK: %v", err)
	}
	if _, err := ParseKeyType("rc4"); err == nil {
		t.Error("ParseKeyType(rc4) succeeded")
	}
	_, err := AESWorkingKey(bdk, ksn, UsagePINEncryption, KeyAES128)
	if err == nil || strings.Contains(strings.ToUpper(err.Error()), aesBDK[:8]) || strings.Contains(strings.ToUpper(err.Error()), aesIK[:8]) {
		t.Errorf("error %v", err)
	}
}

func TestTDESVariantKeyInput(t *testing.T) {
	if _, err := TDESVariantKey(make([]byte, 8), VariantPIN); !errors.Is(err, ErrKeyLength) {
		t.Errorf("8-byte key: %v", err)
	}
	if _, err := TDESVariantKey(make([]byte, 16), Variant(42)); err == nil {
		t.Error("unknown variant accepted")
	}
}

func FuzzParseAESKSN(f *testing.F) {
	f.Add(aesKSN0)
	f.Add("1234567890123456ffff0000")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseAESKSN(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(k.String(), s) || k.WithCounter(k.Counter()) != k {
			t.Fatalf("round trip of %q: %v", s, k)
		}
	})
}

// The full receiver-side derivation at a worst-case counter: BDK -> initial
// key -> 16 intermediate keys -> PIN working key.
func BenchmarkAESWorkingKeyWorstCase(b *testing.B) {
	for _, bdkHex := range []string{aesBDK, aesBDK + aesBDK} {
		bdk := mustHex(b, bdkHex)
		ksn := mustAESKSN(b, "1234567890123456FFFF0000") // 16 one bits
		kt, _ := AESKeyType(len(bdk))
		b.Run(kt.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := AESWorkingKey(bdk, ksn, UsagePINEncryption, kt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTDESPINKeyWorstCase(b *testing.B) {
	bdk := mustHex(b, vecBDK)
	ksn := mustKSN(b, vecKSN).WithCounter(0x1FF800) // 10 one bits
	for b.Loop() {
		if _, err := TDESPINKey(bdk, ksn); err != nil {
			b.Fatal(err)
		}
	}
}

// Running the derivation path in software gives the published working keys.
func TestAESDerivationPath(t *testing.T) {
	for _, file := range []string{"x9.24-3-2017-aes128.txt", "x9.24-3-2017-aes256.txt"} {
		a := readAESTable(t, file)
		ikType, _ := AESKeyType(len(a.ik))
		n := 0
		for _, r := range a.rows {
			usage, typ, ok := strings.Cut(r[0], "-")
			u := map[string]KeyUsage{"pin": UsagePINEncryption, "mac": UsageMACGeneration, "data": UsageDataEncrypt}[usage]
			kt, err := ParseKeyType(typ)
			if !ok || u == 0 || err != nil {
				continue
			}
			ksn := mustAESKSN(t, r[1])
			path, err := AESDerivationPath(ikType, ksn, u, kt)
			if err != nil {
				t.Fatal(err)
			}
			if len(path) != bits.OnesCount32(ksn.Counter())+1 {
				t.Errorf("%d steps for counter %#x", len(path), ksn.Counter())
			}
			key := a.ik
			for _, st := range path {
				c, err := aes.NewCipher(key)
				if err != nil {
					t.Fatal(err)
				}
				out := make([]byte, len(st.Data))
				for i := 0; i < len(out); i += 16 {
					c.Encrypt(out[i:], st.Data[i:])
				}
				key = out[:st.KeyType.Len()]
			}
			if hexOf(key) != r[2] {
				t.Errorf("%s %s %v: path gives %X", file, r[0], ksn, key)
			}
			n++
		}
		if n == 0 {
			t.Fatal("no working keys in", file)
		}
	}
	if _, err := AESDerivationPath(KeyAES128, mustAESKSN(t, aesKSN0), UsagePINEncryption, KeyAES128); !errors.Is(err, ErrCounter) {
		t.Errorf("counter 0: %v", err)
	}
	if _, err := AESDerivationPath(KeyAES128, mustAESKSN(t, aesKSN0).WithCounter(1), UsagePINEncryption, KeyAES256); !errors.Is(err, ErrKeyType) {
		t.Errorf("AES-256 from AES-128: %v", err)
	}
}
