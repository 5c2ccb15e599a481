package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// hsmctl runs in process: status, stdout, stderr.
func hsmctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestPublishedVectors(t *testing.T) {
	f, err := os.Open("testdata/published.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		args, want, ok := strings.Cut(line, " => ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		code, out, errs := hsmctl(strings.Fields(args)...)
		if code != 0 || lastLine(out) != want {
			t.Errorf("hsmctl %s\n  = %d, last line %q, stderr %q\n  want %s", args, code, lastLine(out), errs, want)
		}
		n++
	}
	if n < 30 {
		t.Fatalf("only %d vectors", n)
	}
}

// Every row of the X9.24-1 Annex A.4 table and of the X9.24-3 format 4 table, both ways.
func TestDUKPTTables(t *testing.T) {
	rows := readRows(t, "../../hsm/dukpt/testdata/x9.24-1-2009-annex-a4.txt")
	for _, r := range rows {
		code, out, errs := hsmctl("dukpt", "encrypt-pin", "--bdk", "0123456789ABCDEFFEDCBA9876543210", "--ksn", r[0], "--pin", "1234", "--pan", "4012345678909")
		if code != 0 || lastLine(out) != r[2] {
			t.Errorf("encrypt-pin KSN %s = %d %q %q, want %s", r[0], code, lastLine(out), errs, r[2])
		}
		code, out, _ = hsmctl("dukpt", "decrypt-pin", "--bdk", "0123456789ABCDEFFEDCBA9876543210", "--ksn", r[0], "--block", r[2], "--pan", "4012345678909")
		if code != 0 || lastLine(out) != "1234" {
			t.Errorf("decrypt-pin KSN %s = %d %q", r[0], code, lastLine(out))
		}
	}
	n := 0
	for _, r := range readRows(t, "../../hsm/dukpt/testdata/x9.24-3-2017-aes128.txt") {
		if r[0] != "pinblock4" {
			continue
		}
		code, out, errs := hsmctl("dukpt", "encrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", r[1], "--pin", "1234", "--pan", "4111111111111111", "--fill", "2F69ADDE2E9E7ACE")
		if code != 0 || lastLine(out) != r[2] {
			t.Errorf("AES encrypt-pin KSN %s = %d %q %q, want %s", r[1], code, lastLine(out), errs, r[2])
		}
		n++
	}
	if len(rows) != 34 || n != 8 {
		t.Fatalf("%d TDES rows, %d AES rows", len(rows), n)
	}
}

func readRows(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
			rows = append(rows, strings.Fields(l))
		}
	}
	return rows
}

// Random fill: without --fill two format 4 blocks differ, and both decrypt.
func TestRandomFill(t *testing.T) {
	args := []string{"dukpt", "encrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", "123456789012345600000003", "--pin", "987654", "--pan", "4111111111111111"}
	_, a, _ := hsmctl(args...)
	_, b, _ := hsmctl(args...)
	if lastLine(a) == lastLine(b) {
		t.Error("two format 4 blocks without --fill are equal")
	}
	for _, blk := range []string{lastLine(a), lastLine(b)} {
		code, out, _ := hsmctl("dukpt", "decrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", "123456789012345600000003", "--block", blk, "--pan", "4111111111111111")
		if code != 0 || lastLine(out) != "987654" {
			t.Errorf("decrypt %s = %d %q", blk, code, out)
		}
	}
	// A TDES working key under AES DUKPT gives format 0, which round-trips.
	code, out, errs := hsmctl("dukpt", "encrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", "123456789012345600000003", "--pin", "1234", "--pan", "4111111111111111", "--key-type", "tdes2")
	if code != 0 || len(lastLine(out)) != 16 {
		t.Fatalf("tdes2 working key: %d %q %q", code, out, errs)
	}
	code, out, _ = hsmctl("dukpt", "decrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", "123456789012345600000003", "--block", lastLine(out), "--pan", "4111111111111111", "--key-type", "tdes2")
	if code != 0 || lastLine(out) != "1234" {
		t.Errorf("tdes2 decrypt: %d %q", code, out)
	}
}

// Bad input: status 2 and exactly one line on stderr naming the problem, and never the
// secret it was given.
func TestBadInput(t *testing.T) {
	bdk := "0123456789ABCDEFFEDCBA9876543210"
	tdes := []string{"dukpt", "encrypt-pin", "--bdk", bdk, "--ksn", "FFFF9876543210E00001", "--pin", "1234", "--pan", "4012345678909"}
	with := func(flag, value string) []string {
		a := append([]string(nil), tdes...)
		for i := range a {
			if a[i] == flag {
				a[i+1] = value
				return a
			}
		}
		return append(a, flag, value)
	}
	tests := []struct {
		args []string
		want string // in the one line
	}{
		{with("--bdk", bdk[:31]), "odd number of hex digits"},
		{with("--bdk", bdk[:30]+"ZZ"), "not hexadecimal"},
		{with("--bdk", bdk[:16]), "want 32"},
		{with("--ksn", "FFFF9876543210E0001"), "odd number"},
		{with("--ksn", "FFFF9876543210E001"), "want 20 or 24"},
		{with("--ksn", "FFFF9876543210E00000"), "counter"},
		{with("--ksn", "FFFF9876543210E007FF"), "counter"},
		{with("--pin", "12a4"), "--pin: decimal digits only"},
		{with("--pin", "123"), "--pin: 3 digits, want 4 to 12"},
		{with("--pin", "1234567890123"), "--pin: 13 digits"},
		{with("--pan", "40123456789O9"), "--pan: decimal digits only"},
		{with("--pan", "4012345"), "--pan: 7 digits"},
		{with("--pin", ""), "--pin is required"},
		{with("--fill", "00"), "format 0"},
		{with("--key-type", "aes128"), "--key-type"},
		{with("--bogus", "1"), "flag provided but not defined"},
		{[]string{"dukpt", "encrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", "123456789012345600000001", "--pin", "1234", "--pan", "4111111111111111", "--fill", "2F69"}, "--fill: 4 hex digits, want 16"},
		{[]string{"dukpt", "encrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", "123456789012345600000001", "--pin", "1234", "--pan", "4111111111111111", "--key-type", "aes256"}, "--key-type"},
		{[]string{"dukpt", "frobnicate"}, "unknown dukpt command"},
		{[]string{"nosuch"}, "unknown command"},
		{[]string{"kcv", "--key", "0123"}, "want 16 or 32 or 48 or 64"},
		{[]string{"kcv", "--key", bdk, "extra"}, "unexpected argument"},
		{[]string{"pinblock", "encode", "--format", "2", "--pin", "1234"}, "--format: want 0, 1, 3 or 4"},
		{[]string{"pinblock", "encode", "--format", "3", "--pin", "1234", "--pan", "4012345678909", "--fill", "ABCDE1"}, "--fill: 6 hex digits, want 10"},
		{[]string{"pinblock", "encode", "--format", "3", "--pin", "1234", "--pan", "4012345678909", "--fill", "ABCDE1ABCD"}, "A to F"},
		{[]string{"pinblock", "decode", "--format", "0", "--block", "041274EDCBA9876F00", "--pan", "4012345678909"}, "want 16"},
		{[]string{"tr31", "unwrap", "--kbpk", "89E88CF7931444F334BD7547FC3F380C", "--block", "A0073P0TE00E0000"}, "--block"},
		{[]string{"mac", "--alg", "retail", "--data-hex", "00"}, "--key-file is required"},
		{[]string{"mac", "--alg", "retail", "--key-file", "testdata/aes128.key"}, "exactly one of --data-hex and --file"},
		{[]string{"mac", "--alg", "aes-cmac", "--key-file", "testdata/retail.key", "--data-hex", "0"}, "odd number"},
		{[]string{"mac", "--alg", "x9.9", "--key-file", "testdata/retail.key", "--data-hex", "00"}, "--alg \"x9.9\""},
		{[]string{"mac", "--alg", "retail", "--key-file", "testdata/nosuch.key", "--data-hex", "00"}, "--key-file"},
		{[]string{"mac", "--alg", "retail", "--key-file", "testdata/now.txt", "--data-hex", "00"}, "not hexadecimal digits"},
		{[]string{"mac", "--alg", "dukpt-request", "--key-file", "testdata/bdk.key", "--data-hex", "00"}, "--ksn is required"},
		{[]string{"mac", "--alg", "retail", "--key-file", "testdata/retail.key", "--ksn", "FFFF9876543210E00001", "--data-hex", "00"}, "--ksn goes with"},
		{[]string{"mac", "--alg", "retail", "--key-file", "testdata/retail.key", "--data-hex", "00", "--length", "9"}, "--length 9"},
		{[]string{"mac", "--alg", "retail", "--key", "0123456789ABCDEFFEDCBA9876543210", "--data-hex", "00"}, "flag provided but not defined"},
		{[]string{}, "usage"},
	}
	for _, tc := range tests {
		code, out, errs := hsmctl(tc.args...)
		if code != 2 || out != "" {
			t.Errorf("hsmctl %q = %d, stdout %q; want status 2 and no output", tc.args, code, out)
		}
		if tc.want != "usage" && (strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want)) {
			t.Errorf("hsmctl %q: stderr %q, want one line with %q", tc.args, errs, tc.want)
		}
		if strings.Contains(strings.ToUpper(errs), bdk[:12]) || strings.Contains(errs, "4012345678909") {
			t.Errorf("hsmctl %q: stderr %q repeats a secret", tc.args, errs)
		}
	}
}

// Valid input on which the operation fails: status 1, one line.
func TestOperationFails(t *testing.T) {
	for _, args := range [][]string{
		{"dukpt", "decrypt-pin", "--bdk", "0123456789ABCDEFFEDCBA9876543210", "--ksn", "FFFF9876543210E00001", "--block", "10A01C8D02C69107", "--pan", "4012345678909"},
		{"tr31", "unwrap", "--kbpk", "89E88CF7931444F334BD7547FC3F381C", "--block", "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B"},
		{"pinblock", "decode", "--format", "4", "--block", "A912150391AB65A67E52883D81CE2D15", "--pan", "4111111111111112", "--key", "AF8CB133A78F8DC2D1359F18527593FB"},
	} {
		code, out, errs := hsmctl(args...)
		if code != 1 || out != "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("hsmctl %q = %d %q %q; want status 1 and one line", args, code, out, errs)
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	kbpk := "88E1AB2A2E3DD38C1FA039A536500CC8"
	code, out, errs := hsmctl("tr31", "wrap", "--kbpk", kbpk, "--key", "1273671EA26AC29AFA4D1084127652A1", "--header", "D0000B1AX00N0000", "--ik", "1234567890123456")
	if code != 0 {
		t.Fatalf("wrap: %d %q", code, errs)
	}
	block := lastLine(out)
	code, out, _ = hsmctl("tr31", "unwrap", "--kbpk", kbpk, "--block", block)
	if code != 0 || lastLine(out) != "1273671EA26AC29AFA4D1084127652A1" || !strings.Contains(out, "IK=1234567890123456") || !strings.Contains(out, "KCV 05EF4531EC (CMAC)") {
		t.Errorf("unwrap of the wrapped block:\n%s", out)
	}
}

func TestHelp(t *testing.T) {
	code, _, errs := hsmctl("help")
	if code != 0 || !strings.Contains(errs, "dukpt encrypt-pin") || !strings.Contains(errs, "mac ") {
		t.Errorf("help = %d %q", code, errs)
	}
	code, out, _ := hsmctl("mac", "-h")
	if code != 0 || !strings.Contains(out, "dukpt-response") || !strings.Contains(out, "--key-file") {
		t.Errorf("mac -h = %d %q", code, out)
	}
}

func Example() {
	_, out, _ := hsmctl("dukpt", "encrypt-pin", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "--ksn", "123456789012345600000001",
		"--pin", "1234", "--pan", "4111111111111111", "--fill", "2F69ADDE2E9E7ACE")
	fmt.Print(out)
	// Output:
	// ISO 9564 format 4 PIN block under the AES-128 PIN key of KSN 123456789012345600000001
	// A912150391AB65A67E52883D81CE2D15
}
