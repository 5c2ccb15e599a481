package dukpt

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/mac"
)

// readTable returns the non-comment lines of a testdata file split into fields.
func readTable(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		rows = append(rows, strings.Fields(line))
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no vectors", name)
	}
	return rows
}

func hexOf(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// X9.24-1:2009 A.4.2 and A.4.3: every published row, from both sides, with
// every working key variant the tables exercise.
func TestTDESAnnexA4(t *testing.T) {
	bdk := mustHex(t, vecBDK)
	ipek := mustHex(t, vecIPEK)
	clearBlock := mustHex(t, vecClear)
	request := make([]byte, 24)
	copy(request, "4012345678909D987")
	rows := readTable(t, "x9.24-1-2009-annex-a4.txt")
	if len(rows) != 21+13 {
		t.Fatalf("%d rows, want 34", len(rows))
	}
	for _, r := range rows {
		ksn := mustKSN(t, r[0])
		tk, err := TDESTransactionKey(ipek, ksn)
		if err != nil {
			t.Fatalf("%v: %v", ksn, err)
		}
		if hexOf(tk) != r[1] {
			t.Errorf("%v: transaction key %X, want %s", ksn, tk, r[1])
		}
		pk, err := TDESWorkingKey(bdk, ksn, VariantPIN)
		if err != nil {
			t.Fatal(err)
		}
		if got := encryptBlock(t, pk, clearBlock); got != r[2] {
			t.Errorf("%v: PIN block %s, want %s", ksn, got, r[2])
		}
		for i, v := range []Variant{VariantMACRequest, VariantMACResponse} {
			k, err := TDESWorkingKey(bdk, ksn, v)
			if err != nil {
				t.Fatal(err)
			}
			m, err := mac.RetailMAC(k, []byte("4012345678909D987"))
			if err != nil {
				t.Fatal(err)
			}
			if hexOf(m[:4]) != r[3+i] {
				t.Errorf("%v: %v MAC %X, want %s", ksn, v, m[:4], r[3+i])
			}
		}
		dk, err := TDESWorkingKey(bdk, ksn, VariantDataRequest)
		if err != nil {
			t.Fatal(err)
		}
		c, err := des.NewTripleDESCipher(append(append([]byte{}, dk...), dk[:8]...))
		if err != nil {
			t.Fatal(err)
		}
		enc := make([]byte, len(request))
		cipher.NewCBCEncrypter(c, make([]byte, 8)).CryptBlocks(enc, request)
		if hexOf(enc) != r[5] {
			t.Errorf("%v: encrypted request %X, want %s", ksn, enc, r[5])
		}
	}
}

// The originator walks the rollover sequence of A.4.3: from the first row
// it must produce exactly the published KSNs, skipping the counters with more
// than 10 one bits in between.
func TestTDESOriginatorRollover(t *testing.T) {
	rows := readTable(t, "x9.24-1-2009-annex-a4.txt")[21:]
	first := mustKSN(t, rows[0][0])
	o, err := NewOriginator(mustHex(t, vecIPEK), first.WithCounter(first.Counter()-1))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		key, ksn, err := o.NextPINKey()
		if err != nil {
			t.Fatal(err)
		}
		if ksn.String() != r[0] {
			t.Fatalf("originator KSN %v, want %s", ksn, r[0])
		}
		if got := encryptBlock(t, key, mustHex(t, vecClear)); got != r[2] {
			t.Errorf("%v: PIN block %s, want %s", ksn, got, r[2])
		}
	}
}

type aesTable struct {
	bdk, ik []byte
	ikid    [8]byte
	rows    [][]string // name ksn value
}

func readAESTable(t *testing.T, name string) aesTable {
	var a aesTable
	for _, r := range readTable(t, name) {
		if len(r) != 3 {
			t.Fatalf("%s: row %q", name, r)
		}
		switch r[0] {
		case "bdk":
			a.bdk = mustHex(t, r[2])
		case "ik":
			a.ik = mustHex(t, r[2])
		case "ikid":
			copy(a.ikid[:], mustHex(t, r[2]))
		default:
			a.rows = append(a.rows, r)
		}
	}
	return a
}

func mustAESKSN(t testing.TB, s string) AESKSN {
	t.Helper()
	k, err := ParseAESKSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// X9.24-3-2017 supplement: initial key, transaction keys (first eight, around
// 0x1FFFF, last four), PIN, MAC and data working keys, and format 4 PIN blocks.
func TestAESSupplementVectors(t *testing.T) {
	for _, file := range []string{"x9.24-3-2017-aes128.txt", "x9.24-3-2017-aes256.txt"} {
		a := readAESTable(t, file)
		ik, err := AESInitialKey(a.bdk, a.ikid)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ik, a.ik) {
			t.Errorf("%s: initial key %X, want %X", file, ik, a.ik)
		}
		counts := map[string]int{}
		for _, r := range a.rows {
			ksn := mustAESKSN(t, r[1])
			want := r[2]
			var got []byte
			switch kind := r[0]; kind {
			case "txn":
				got, err = AESTransactionKey(ik, ksn)
			case "txn-unused":
				if _, err := AESTransactionKey(ik, ksn); err == nil {
					t.Errorf("%s: counter %#x with 17 one bits accepted", file, ksn.Counter())
				}
				got, err = aesTransactionKey(ik, ksn)
			case "pinblock4":
				var pk []byte
				pk, err = AESWorkingKey(a.bdk, ksn, UsagePINEncryption, KeyAES128)
				if err == nil {
					got = format4(t, pk, "441234AAAAAAAAAA2F69ADDE2E9E7ACE", "44111111111111111000000000000000")
				}
			default:
				usage, typ, ok := strings.Cut(kind, "-")
				if !ok {
					t.Fatalf("%s: unknown row %q", file, kind)
				}
				u := map[string]KeyUsage{"pin": UsagePINEncryption, "mac": UsageMACGeneration, "data": UsageDataEncrypt}[usage]
				kt, perr := ParseKeyType(typ)
				if u == 0 || perr != nil {
					t.Fatalf("%s: unknown row %q", file, kind)
				}
				got, err = AESWorkingKey(a.bdk, ksn, u, kt)
			}
			if err != nil {
				t.Fatalf("%s: %s %v: %v", file, r[0], ksn, err)
			}
			if hexOf(got) != want {
				t.Errorf("%s: %s %v = %X, want %s", file, r[0], ksn, got, want)
			}
			counts[r[0]]++
		}
		t.Logf("%s: %v", file, counts)
	}
}

// format4 enciphers a PIN field with the PAN field under an AES key, as
// ISO 9564-1 format 4 does: AES(AES(PIN field) XOR PAN field). It is written
// here apart from package pinblock.
func format4(t *testing.T, key []byte, pinField, panField string) []byte {
	c, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	b := mustHex(t, pinField)
	c.Encrypt(b, b)
	for i, p := range mustHex(t, panField) {
		b[i] ^= p
	}
	c.Encrypt(b, b)
	return b
}

// The originator reaches the published KSNs: the first eight from counter
// 0, 0x20000 after 0x1FFFE (skipping 0x1FFFF), and the last four, after which
// it is exhausted.
func TestAESOriginatorSequence(t *testing.T) {
	for _, file := range []string{"x9.24-3-2017-aes128.txt", "x9.24-3-2017-aes256.txt"} {
		a := readAESTable(t, file)
		want := map[uint32]string{}
		var order []uint32
		for _, r := range a.rows {
			if r[0] == "txn" {
				k := mustAESKSN(t, r[1])
				want[k.Counter()] = r[2]
				order = append(order, k.Counter())
			}
		}
		check := func(o *AESOriginator, n int) {
			for range n {
				ksn, err := o.Next()
				if err != nil {
					t.Fatalf("%s: Next: %v", file, err)
				}
				w, ok := want[ksn.Counter()]
				if !ok {
					t.Fatalf("%s: originator went to counter %#x, not in the table", file, ksn.Counter())
				}
				tk, err := AESTransactionKey(a.ik, ksn)
				if err != nil || hexOf(tk) != w {
					t.Errorf("%s: counter %#x: key %X, %v; want %s", file, ksn.Counter(), tk, err, w)
				}
			}
		}
		o, err := NewAESOriginator(a.ik, NewAESKSN(a.ikid, 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		check(o, 8)
		o, _ = NewAESOriginator(a.ik, NewAESKSN(a.ikid, 0x1FFFE-1), nil)
		check(o, 3) // 0x1FFFE, 0x20000, 0x20001
		o, _ = NewAESOriginator(a.ik, NewAESKSN(a.ikid, order[len(order)-4]-1), nil)
		check(o, 4)
		if o.Remaining() != 0 {
			t.Errorf("%s: Remaining after the last counter = %d", file, o.Remaining())
		}
		if _, err := o.Next(); err == nil {
			t.Errorf("%s: Next after counter %#x succeeded", file, o.KSN().Counter())
		}
	}
}
