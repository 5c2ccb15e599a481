package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/hsm/tr31"
)

// Published TR-31 blocks (hsm/tr31/testdata/tr31.txt) with their KBPKs and keys.
const (
	kbpkA   = "89E88CF7931444F334BD7547FC3F380C"
	blockA  = "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B"
	keyA    = "F039121BEC83D26B169BDCD5B22AAF8F"
	kbpkB   = "DD7515F2BFC17F85CE48F3CA25CB21F6"
	blockB  = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"
	keyB    = "3F419E1CB7079442AA37474C2EFBF8B8"
	kbpkD   = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"
	blockD  = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34"
	keyD    = "3F419E1CB7079442AA37474C2EFBF8B8"
	kbpkC   = "B8ED59E0A279A295E9F5ED7944FD06B9"
	blockA2 = "A0112P0TE12E0200KS1400604B120F929280PB047A1BB737854CD7AF58A8A1E4506A942277EDA76EBA6BA228AF62ADDA3AD8799E8B2C8CD7"
	// An AES-256 data key (NIST SP 800-38B's), for blocks of usage D0 made here.
	testDataKey = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"
)

func unhexT(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyConfig writes posd's test config with hsm.data set to data (a JSON object) and
// returns its path.
func keyConfig(t testing.TB, data string) string {
	t.Helper()
	old := `"store": {"path": "/var/lib/posd/posd.db"}`
	if !strings.Contains(goodConfig, old) {
		t.Fatal("goodConfig changed")
	}
	cfg := strings.Replace(goodConfig, old, old+`, "hsm": {"data": `+data+`}`, 1)
	path := filepath.Join(t.TempDir(), "posd.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// softConfig is a config whose keys live in the soft backend's files in a temporary
// directory; it returns the config's path and the data key file.
func softConfig(t testing.TB) (cfg, keyFile string) {
	keyFile = filepath.Join(t.TempDir(), "data.key")
	return keyConfig(t, `{"backend": "soft", "allow_soft": true, "key_file": "`+keyFile+`"}`), keyFile
}

// stdinMu serialises the tests that replace os.Stdin.
var stdinMu sync.Mutex

// posdKey runs "posd key ARGS" as main does, with stdin holding input: exit status,
// stdout, stderr.
func posdKey(t testing.TB, input string, args ...string) (int, string, string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(input)
	f.Seek(0, io.SeekStart)
	defer f.Close()
	return posdKeyStdin(f, args...)
}

func posdKeyStdin(stdin *os.File, args ...string) (int, string, string) {
	stdinMu.Lock()
	defer stdinMu.Unlock()
	saved := os.Stdin
	os.Stdin = stdin
	defer func() { os.Stdin = saved }()
	var out, errOut bytes.Buffer
	code := run(append([]string{"key"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// problemLines are stderr's lines but for the soft backend's warning and the notes posd
// key adds on success.
func problemLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if l == "" || strings.Contains(l, soft.Warning) || strings.HasPrefix(l, "custodian ") || strings.HasPrefix(l, "posd: posd seals") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func xorHex(t testing.TB, a, b string) string {
	x, y := unhexT(t, a), unhexT(t, b)
	for i := range x {
		x[i] ^= y[i]
	}
	return strings.ToUpper(hex.EncodeToString(x))
}

// kcvOf is the legacy check value of a TDES key (hex).
func kcvOf(t testing.TB, key string) string {
	v, err := kcv.TDES(unhexT(t, key), kcv.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(v))
}

// loadKBPK runs the ceremony for kbpk (hex) split into two components (the first with
// spaces, as written on a custodian's form) and checks what it prints.
func loadKBPK(t *testing.T, cfg, id, alg, kbpk string) {
	t.Helper()
	c1 := make([]byte, len(kbpk)/2)
	rand.Read(c1)
	c1Hex := strings.ToUpper(hex.EncodeToString(c1))
	c2Hex := xorHex(t, c1Hex, kbpk)
	spaced := regexp.MustCompile(`(....)`).ReplaceAllString(c1Hex, "$1 ")
	code, out, errOut := posdKey(t, spaced+"\n"+c2Hex+"\n", "load-kbpk", "--config", cfg, "--id", id, "--algorithm", alg)
	method := "legacy"
	kv := func(k string) string {
		if strings.HasPrefix(alg, "aes") {
			v, _ := kcv.AES(unhexT(t, k))
			return strings.ToUpper(hex.EncodeToString(v))
		}
		return kcvOf(t, k)
	}
	if strings.HasPrefix(alg, "aes") {
		method = "CMAC"
	}
	want := fmt.Sprintf("component 1: KCV %s (%s)\ncomponent 2: KCV %s (%s)\nloaded key %s: ", kv(c1Hex), method, kv(c2Hex), method, id)
	if code != 0 || !strings.HasPrefix(out, want) || !strings.HasSuffix(out, fmt.Sprintf("KBPK key, KCV %s (%s)\n", kv(kbpk), method)) {
		t.Fatalf("load-kbpk %s: exit %d\n%s%s\nwant %s...KCV %s", id, code, out, errOut, want, kv(kbpk))
	}
	noSecrets(t, out+errOut, kbpk, c1Hex, c2Hex)
}

// noSecrets fails if any of the keys (hex) shows in s, in either case or in part.
func noSecrets(t testing.TB, s string, keys ...string) {
	t.Helper()
	low := strings.ToLower(strings.ReplaceAll(s, " ", ""))
	for _, k := range keys {
		k = strings.ToLower(k)
		for _, part := range []string{k, k[:12], k[len(k)-12:]} {
			if strings.Contains(low, part) {
				t.Errorf("key material %s... in the output:\n%s", part[:6], s)
			}
		}
	}
}

func readFiles(t testing.TB, paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		c, _ := os.ReadFile(p)
		b.Write(c)
		b.WriteString("\x00")
	}
	return b.String()
}

// The technician's path with the soft backend: ceremonies for three KBPKs, the published
// version A, B and D blocks imported with the check values of their keys, posd's data key
// imported and then used by posd's own start-up code, --replace required and reported,
// and every bad block refused with one line and nothing stored.
func TestKeySoftImport(t *testing.T) {
	cfg, keyFile := softConfig(t)
	others := keyFile + ".keys"
	code, out, _ := posdKey(t, "", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "no keys in soft key file") || !strings.Contains(out, "no data key yet") {
		t.Fatalf("empty list: %d %q", code, out)
	}
	loadKBPK(t, cfg, "kbpk-a", "tdes2", kbpkA)
	loadKBPK(t, cfg, "kbpk-b", "TDES-2key", kbpkB)
	loadKBPK(t, cfg, "kbpk-d", "aes256", kbpkD)
	loadKBPK(t, cfg, "kbpk-c", "tdes2", kbpkC)
	var all strings.Builder
	imp := func(id, kbpk, block string, extra ...string) (int, string, string) {
		code, out, errOut := posdKey(t, "", append([]string{"import", "--config", cfg, "--kbpk", kbpk, "--id", id, "--block", block}, extra...)...)
		all.WriteString(out + errOut)
		return code, out, errOut
	}
	for _, c := range []struct{ id, kbpk, block, want string }{
		{"zpk-a", "kbpk-a", blockA, "imported key zpk-a: TDES-2key PIN key, KCV CB9DEA (legacy)\n"}, // openssl enc -des-ede of zeros
		{"zpk-a2", "kbpk-c", blockA2, "imported key zpk-a2: TDES-2key PIN key, KCV CB9DEA (legacy)\n"},
		{"zpk-b", "kbpk-b", blockB, fmt.Sprintf("imported key zpk-b: TDES-2key PIN key, KCV %s (legacy)\n", kcvOf(t, keyB))},
		{"zpk-d", "kbpk-d", blockD, fmt.Sprintf("imported key zpk-d: AES-128 PIN key, KCV %s (CMAC)\n", aesKCV(t, keyD))},
	} {
		if code, out, errOut := imp(c.id, c.kbpk, c.block); code != 0 || out != c.want {
			t.Errorf("import %s: exit %d %q %s\nwant %q", c.id, code, out, errOut, c.want)
		}
	}

	// posd's data key, from a D0 block, used by posd's own start-up code.
	dataBlock := wrapT(t, kbpkD, 'D', "D0", 'A', testDataKey)
	code, out, errOut := imp("data", "kbpk-d", dataBlock)
	if code != 0 || out != fmt.Sprintf("imported key data: AES-256 data key, KCV %s (CMAC)\n", aesKCV(t, testDataKey)) || !strings.Contains(errOut, "from its next start") {
		t.Fatalf("import data: %d %q %s", code, out, errOut)
	}
	checkDataKey(t, cfg, testDataKey)

	// Bad blocks: one line each, exit 1, nothing stored anywhere.
	before := readFiles(t, keyFile, others)
	tampered := []byte(dataBlock) // one hex digit of the encrypted key changed to another
	if tampered[60] == '0' {
		tampered[60] = '1'
	} else {
		tampered[60] = '0'
	}
	otherKBPK := wrapT(t, strings.Repeat("11", 32), 'D', "D0", 'A', testDataKey)
	for _, c := range []struct{ name, id, kbpk, block, want string }{
		{"tampered", "new", "kbpk-d", string(tampered), "MAC does not verify"},
		{"wrong KBPK", "new", "kbpk-d", otherKBPK, "MAC does not verify"},
		{"version A under an AES KBPK", "new", "kbpk-d", blockA, "kbpk has the wrong length"},
		{"truncated", "new", "kbpk-a", blockA[:70], "malformed key block"},
		{"not hex", "new", "kbpk-a", blockA[:40] + "ZZ" + blockA[42:], "not hexadecimal"},
		{"not TR-31", "new", "kbpk-a", "hello", "malformed key block"},
		{"unknown KBPK", "new", "nope", blockA, `no key "nope"`},
		{"not a KBPK", "new", "zpk-a", blockA, `key "zpk-a"`},
		{"bad id", "a/b", "kbpk-a", blockA, "key id may hold only"},
		{"PIN key as the data key", "data", "kbpk-a", blockA, "already holds key data"},
		{"PIN key as the data key, replacing", "data", "kbpk-a", blockA, `key id "data" is the data key`},
		{"AES-128 data key in the soft file", "data", "kbpk-d", wrapT(t, kbpkD, 'D', "D0", 'A', keyD), "AES-256 data key only"},
		{"existing id", "zpk-b", "kbpk-a", blockA, "add --replace"},
	} {
		var extra []string
		if strings.Contains(c.name, "replacing") || strings.Contains(c.name, "soft file") {
			extra = []string{"--replace"}
		}
		code, out, errOut := imp(c.id, c.kbpk, c.block, extra...)
		lines := problemLines(errOut)
		if code != 1 || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "posd: key import: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr lines %q; want one line with %q", c.name, code, out, lines, c.want)
		}
		if after := readFiles(t, keyFile, others); after != before {
			t.Errorf("%s: the key files changed", c.name)
		}
	}
	if _, _, errOut := imp("new", "kbpk-a", blockA[:70]); !strings.Contains(errOut, "says 72 characters, the block has 70") {
		t.Errorf("truncated block: %s", errOut)
	}
	checkDataKey(t, cfg, testDataKey)

	// --replace: says what it replaced, with the old check value; posd then uses the new key.
	newKey := strings.Repeat("A5", 32)
	code, out, errOut = imp("data", "kbpk-d", wrapT(t, kbpkD, 'D', "D0", 'A', newKey), "--replace")
	want := fmt.Sprintf("replaced key data: AES-256 data key, KCV %s (CMAC)\nimported key data: AES-256 data key, KCV %s (CMAC)\n", aesKCV(t, testDataKey), aesKCV(t, newKey))
	if code != 0 || out != want || !strings.Contains(errOut, "can no longer be opened") {
		t.Errorf("replace: %d %q %s\nwant %q", code, out, errOut, want)
	}
	checkDataKey(t, cfg, newKey)

	code, out, _ = posdKey(t, "", "list", "--config", cfg)
	all.WriteString(out)
	wantList := []string{"9 keys in soft key file", "data: AES-256 data key", "kbpk-a: TDES-2key KBPK key", "zpk-d: AES-128 PIN key, KCV " + aesKCV(t, keyD)}
	for _, w := range wantList {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("list: %d, want %q in\n%s", code, w, out)
		}
	}
	noSecrets(t, all.String(), kbpkA, kbpkB, kbpkC, kbpkD, keyA, keyB, testDataKey, newKey)
	// The files hold what they say, and are private.
	for _, p := range []string{keyFile, others} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, st.Mode(), err)
		}
	}
}

func aesKCV(t testing.TB, key string) string {
	v, err := kcv.AES(unhexT(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(v))
}

// wrapT makes a TR-31 block of version v for key under kbpk.
func wrapT(t testing.TB, kbpk string, v byte, usage string, alg byte, key string) string {
	t.Helper()
	s, err := tr31.Wrap(unhexT(t, kbpk), tr31.Header{Version: v, KeyUsage: usage, Algorithm: alg, ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}, unhexT(t, key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkDataKey opens posd's data key the way posd does at start and checks that it seals
// and opens as a soft Module holding key (hex) does.
func checkDataKey(t testing.TB, cfgPath, key string) {
	t.Helper()
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, closeFn, err := openDataModule(ctx, cfg.HSM.Data, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("posd's data module: %v", err)
	}
	defer closeFn()
	ref, _ := hsm.New(soft.New(nil), nil)
	if _, err := ref.LoadKey(ctx, hsm.LoadRequest{ID: "data", Algorithm: algOf(len(key) / 2), Usage: hsm.UsageData, Components: [][]byte{unhexT(t, key)}}); err != nil {
		t.Fatal(err)
	}
	sealed, err := m.Seal(ctx, "", []byte("4761739001010010=2512"), []byte("rec 1"))
	if err != nil {
		t.Fatalf("posd seals: %v", err)
	}
	if pt, err := ref.Open(ctx, "", sealed, []byte("rec 1")); err != nil || string(pt) != "4761739001010010=2512" {
		t.Errorf("sealed by posd, opened with the key imported: %q %v", pt, err)
	}
	sealed, _ = ref.Seal(ctx, "", []byte("chip data"), []byte("rec 2"))
	if pt, err := m.Open(ctx, "", sealed, []byte("rec 2")); err != nil || string(pt) != "chip data" {
		t.Errorf("posd opens what the key imported sealed: %q %v", pt, err)
	}
}

func algOf(n int) hsm.Algorithm {
	switch n {
	case 16:
		return hsm.AES128
	case 24:
		return hsm.AES192
	}
	return hsm.AES256
}

// Bad input to every subcommand: a non-zero exit and one line naming the problem, never
// the component typed, and nothing stored.
func TestKeyBadInput(t *testing.T) {
	cfg, keyFile := softConfig(t)
	loadKBPK(t, cfg, "kbpk", "tdes2", kbpkA)
	good := "0123456789ABCDEFFEDCBA9876543210"
	other := "F0E1D2C3B4A5968778695A4B3C2D1E0F"
	noData := filepath.Join(t.TempDir(), "nodata.json")
	os.WriteFile(noData, []byte(goodConfig), 0o600)
	p11 := keyConfig(t, `{"backend": "pkcs11", "pkcs11": {"token": "posd", "pin_file": "/nonexistent/pin"}}`)
	before := readFiles(t, keyFile, keyFile+".keys")
	for _, c := range []struct {
		name, stdin string
		args        []string
		code        int
		want        string
	}{
		{"no subcommand", "", []string{"frob"}, 2, `unknown command "frob"`},
		{"missing --block", "", []string{"import", "--config", cfg, "--kbpk", "kbpk", "--id", "x"}, 2, "--block is required"},
		{"unknown flag", "", []string{"import", "--config", cfg, "--key", "00"}, 2, "flag provided but not defined: -key"},
		{"stray argument", "", []string{"list", "--config", cfg, "extra"}, 2, `unexpected argument "extra"`},
		{"missing --id", "", []string{"load-kbpk", "--config", cfg, "--algorithm", "tdes2"}, 2, "--id is required"},
		{"algorithm", "", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "des"}, 2, `--algorithm "des"`},
		{"components", "", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2", "--components", "4"}, 2, "--components 4"},
		{"kcv not hex", "", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2", "--kcv", "XYZ"}, 2, "--kcv"},
		{"kcv too long for TDES", "", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2", "--kcv", "0102030405"}, 2, "--kcv"},
		{"component not hex", "0123456789ABCDEFFEDCBA98765432ZZ\n" + other + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2"}, 1, "component 1 is not hexadecimal"},
		{"odd digits", good + "0\n" + other + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2"}, 1, "component 1 is not hexadecimal"},
		{"component length", good + "\n" + other[:30] + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2"}, 1, "component 2 has 30 hex digits, not 32 (TDES-2key)"},
		{"AES length", good + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "aes256"}, 1, "component 1 has 32 hex digits, not 64 (AES-256)"},
		{"identical components", good + "\n" + good + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2"}, 1, "component 2 is the same as component 1"},
		{"zero component", good + "\n" + strings.Repeat("0", 32) + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2"}, 1, "component 2 is all zeros"},
		{"combine to zero", good + "\n" + other + "\n" + xorHex(t, good, other) + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2", "--components", "3"}, 1, "all zeros"},
		{"input ends", good + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2"}, 1, "component 2: input ended before it"},
		{"wrong kcv", good + "\n" + other + "\n", []string{"load-kbpk", "--config", cfg, "--id", "k", "--algorithm", "tdes2", "--kcv", "ABCDEF"}, 1, "check value is not ABCDEF"},
		{"existing id", good + "\n" + other + "\n", []string{"load-kbpk", "--config", cfg, "--id", "kbpk", "--algorithm", "tdes2"}, 1, "already holds key kbpk: TDES-2key KBPK key"},
		{"KBPK as the data key", good + "\n" + other + "\n", []string{"load-kbpk", "--config", cfg, "--id", "data", "--algorithm", "aes256"}, 1, `key id "data" is the data key`},
		{"no hsm.data", "", []string{"list", "--config", noData}, 1, "has no hsm.data"},
		{"no config", "", []string{"list", "--config", "/nonexistent/posd.json"}, 1, "config: open /nonexistent/posd.json"},
		{"token unavailable", "", []string{"list", "--config", p11}, 1, "hsm.data: "},
	} {
		code, out, errOut := posdKey(t, c.stdin, c.args...)
		lines := problemLines(errOut)
		if code != c.code || len(lines) != 1 || !strings.HasPrefix(lines[0], "posd: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: exit %d (want %d), stderr lines %q; want one line with %q", c.name, code, c.code, lines, c.want)
		}
		if c.code == 1 && strings.HasPrefix(c.args[0], "load") && !strings.Contains(out+errOut, "nothing was loaded") && !strings.Contains(c.name, "existing") && !strings.Contains(c.name, "data key") {
			t.Errorf("%s: does not say nothing was loaded: %s", c.name, errOut)
		}
		noSecrets(t, out+errOut, good, other)
	}
	if after := readFiles(t, keyFile, keyFile+".keys"); after != before {
		t.Error("a refused command changed the key files")
	}
	// A right --kcv loads; --replace is needed and reports the old key.
	code, out, errOut := posdKey(t, good+"\n"+other+"\n", "load-kbpk", "--config", cfg, "--id", "kbpk", "--algorithm", "tdes2", "--kcv", kcvOf(t, xorHex(t, good, other)), "--replace")
	if code != 0 || !strings.Contains(out, "replaced key kbpk: TDES-2key KBPK key, KCV "+kcvOf(t, kbpkA)) || !strings.HasSuffix(out, "KCV "+kcvOf(t, xorHex(t, good, other))+" (legacy)\n") {
		t.Errorf("replace with --kcv: %d\n%s%s", code, out, errOut)
	}
}

// The key files are checked when read: an edited one is refused with the line named.
func TestKeySoftFilesChecked(t *testing.T) {
	cfg, keyFile := softConfig(t)
	for _, c := range []struct{ name, text, want string }{
		{"fields", "k kbpk TDES-2key\n", "line 1: want: id usage algorithm value"},
		{"usage", "# comment\nk frob TDES-2key " + kbpkA + "\n", "line 2: unknown usage"},
		{"value", "k kbpk AES-256 " + kbpkA + "\n", `line 1: the value of key "k" is not 64 hex digits (AES-256)`},
		{"twice", "k kbpk TDES-2key " + kbpkA + "\nk kbpk TDES-2key " + kbpkA + "\n", `line 2: key "k" again`},
	} {
		os.WriteFile(keyFile+".keys", []byte(c.text), 0o600)
		code, _, errOut := posdKey(t, "", "list", "--config", cfg)
		lines := problemLines(errOut)
		if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: %d %q", c.name, code, lines)
		}
		noSecrets(t, errOut, kbpkA)
	}
	os.Remove(keyFile + ".keys")
	os.WriteFile(keyFile, []byte("not a key\n"), 0o600)
	if code, _, errOut := posdKey(t, "", "list", "--config", cfg); code != 1 || !strings.Contains(errOut, "not a 64-hex-digit key") {
		t.Errorf("bad data key file: %d %s", code, errOut)
	}
}

// On a terminal the components are not echoed, a mistyped one may be typed again, each
// custodian confirms the check value (echo back on for that), and the terminal is left
// as it was.
func TestKeyComponentsFromTerminal(t *testing.T) {
	cfg, _ := softConfig(t)
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer master.Close()
	defer slave.Close()
	var seen syncBuffer
	go io.Copy(&seen, master)
	c1 := "0123456789ABCDEFFEDCBA9876543210"
	c2 := xorHex(t, c1, kbpkA)
	prompts := make(chan string, 16)
	stderr := &promptWriter{prompts: prompts}
	go func() {
		for p := range prompts {
			switch {
			case strings.Contains(p, "component 1 (") && !stderr.saw("type it again"):
				master.Write([]byte("0123 4567 89AB CDEF FEDC BA98 7654 32\n")) // too short
			case strings.Contains(p, "component 1 ("):
				master.Write([]byte(c1 + "\n"))
			case strings.Contains(p, "component 2 ("):
				master.Write([]byte(c2 + "\n"))
			case strings.Contains(p, "[y/N]"):
				master.Write([]byte("y\n"))
			}
		}
	}()
	stdinMu.Lock()
	saved := os.Stdin
	os.Stdin = slave
	var out bytes.Buffer
	code := run([]string{"key", "load-kbpk", "--config", cfg, "--id", "kbpk", "--algorithm", "tdes2"}, &out, stderr)
	os.Stdin = saved
	stdinMu.Unlock()
	close(prompts)
	if code != 0 || !strings.Contains(out.String(), "loaded key kbpk: TDES-2key KBPK key, KCV "+kcvOf(t, kbpkA)) {
		t.Fatalf("exit %d\n%s%s", code, out.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "not shown") || !strings.Contains(stderr.String(), "component 1 has 30 hex digits, not 32 (TDES-2key); type it again") {
		t.Errorf("prompts: %s", stderr.String())
	}
	// Everything the terminal showed, up to a marker written after the command ended.
	slave.Write([]byte("END-OF-TEST\n"))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(seen.String(), "END-OF-TEST") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	shown := seen.String()
	if !strings.Contains(shown, "END-OF-TEST") {
		t.Fatalf("the terminal showed %q", shown)
	}
	noSecrets(t, shown, c1, c2)
	if strings.Contains(shown, "0123 4567") {
		t.Error("the mistyped component was echoed")
	}
	if !strings.Contains(shown, "y\r\n") {
		t.Errorf("the confirmations were not echoed (echo not restored between components?): %q", shown)
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("echo left off: %v", err)
	}
	noSecrets(t, out.String()+stderr.String(), c1, c2, kbpkA)

	// A custodian who does not confirm stops the ceremony, and nothing is loaded.
	prompts = make(chan string, 16)
	stderr = &promptWriter{prompts: prompts}
	go func() {
		for p := range prompts {
			switch {
			case strings.Contains(p, "component 1 ("):
				master.Write([]byte(c1 + "\n"))
			case strings.Contains(p, "[y/N]"):
				master.Write([]byte("n\n"))
			}
		}
	}()
	stdinMu.Lock()
	os.Stdin = slave
	out.Reset()
	code = run([]string{"key", "load-kbpk", "--config", cfg, "--id", "kbpk2", "--algorithm", "tdes2"}, &out, stderr)
	os.Stdin = saved
	stdinMu.Unlock()
	close(prompts)
	if code != 1 || !strings.Contains(stderr.String(), "custodian 1 did not confirm the check value of component 1; nothing was loaded") {
		t.Errorf("not confirmed: exit %d\n%s", code, stderr.String())
	}
	if _, list, _ := posdKey(t, "", "list", "--config", cfg); strings.Contains(list, "kbpk2") {
		t.Errorf("loaded without confirmation:\n%s", list)
	}
}

// promptWriter is stderr for a test that answers prompts: each write that ends a prompt
// is sent on prompts.
type promptWriter struct {
	mu      sync.Mutex
	b       bytes.Buffer
	sent    int // how much of b went out on prompts
	prompts chan string
}

func (w *promptWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	s := w.b.String()
	prompt := ""
	if strings.HasSuffix(s, "Enter: ") || strings.HasSuffix(s, "[y/N] ") {
		prompt, w.sent = s[w.sent:], len(s)
	}
	w.mu.Unlock()
	if prompt != "" {
		w.prompts <- prompt
	}
	return len(p), nil
}

func (w *promptWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *promptWriter) saw(s string) bool { return strings.Contains(w.String(), s) }

// hsmctl tr31 unwrap and posd key import agree on the check value of the same block, for
// every version.
func TestKeyImportKCVMatchesHsmctl(t *testing.T) {
	bin := binaries(t)
	cfg, _ := softConfig(t)
	loadKBPK(t, cfg, "kbpk-a", "tdes2", kbpkA)
	loadKBPK(t, cfg, "kbpk-b", "tdes2", kbpkB)
	loadKBPK(t, cfg, "kbpk-d", "aes256", kbpkD)
	loadKBPK(t, cfg, "kbpk-c", "tdes2", kbpkC)
	blockC := wrapT(t, kbpkC, 'C', "M3", 'T', keyA)
	blockD0 := wrapT(t, kbpkD, 'D', "D0", 'A', testDataKey)
	kcvLine := regexp.MustCompile(`KCV ([0-9A-F]+) \((legacy|CMAC)\)`)
	for i, c := range []struct{ kbpkID, kbpk, block string }{
		{"kbpk-a", kbpkA, blockA}, {"kbpk-c", kbpkC, blockA2}, {"kbpk-b", kbpkB, blockB},
		{"kbpk-d", kbpkD, blockD}, {"kbpk-c", kbpkC, blockC}, {"kbpk-d", kbpkD, blockD0},
	} {
		out, err := exec.Command(filepath.Join(bin, "hsmctl"), "tr31", "unwrap", "--kbpk", c.kbpk, "--block", c.block).Output()
		h := kcvLine.FindStringSubmatch(string(out))
		if err != nil || h == nil {
			t.Fatalf("hsmctl on %s...: %v\n%s", c.block[:16], err, out)
		}
		code, pout, errOut := posdKey(t, "", "import", "--config", cfg, "--kbpk", c.kbpkID, "--id", fmt.Sprintf("k%d", i), "--block", c.block)
		p := kcvLine.FindStringSubmatch(pout)
		if code != 0 || p == nil || p[0] != h[0] {
			t.Errorf("block %s...: hsmctl %v, posd key import %q (exit %d) %s", c.block[:16], h, pout, code, errOut)
		}
	}
}
