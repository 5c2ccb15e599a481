//go:build pkcs11

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/pkcs11"
	"github.com/posd-dev/posd/hsm/soft"
)

const tokenPIN = "7531"

// tokenConfig makes a SoftHSM2 token in a temporary directory (SOFTHSM2_CONF pointing at
// it, as hsm/pkcs11's tests do) and a posd config whose hsm.data is that token. It skips,
// saying why, where SoftHSM2 is missing.
func tokenConfig(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(pkcs11.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 unavailable: %s is absent (apt-get install softhsm2): %v", pkcs11.DefaultModule, err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Skip("SoftHSM2 unavailable: softhsm2-util is not on PATH (apt-get install softhsm2)")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	conf := filepath.Join(dir, "softhsm2.conf")
	os.Mkdir(tokens, 0o700)
	os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "posd", "--pin", tokenPIN, "--so-pin", "86420").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile := filepath.Join(dir, "token.pin")
	os.WriteFile(pinFile, []byte(tokenPIN+"\n"), 0o600)
	return keyConfig(t, `{"backend": "pkcs11", "pkcs11": {"token": "posd", "pin_file": "`+pinFile+`"}}`)
}

// rawToken opens the token with miekg/pkcs11 directly, as an attacker with the user PIN
// would, and passes a session to f. No posd backend may be open meanwhile.
func rawToken(t *testing.T, f func(c *p11.Ctx, s p11.SessionHandle)) {
	t.Helper()
	c := p11.New(pkcs11.DefaultModule)
	if c == nil {
		t.Fatal("cannot load SoftHSM2")
	}
	defer c.Destroy()
	if err := c.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer c.Finalize()
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, sl := range slots {
		ti, err := c.GetTokenInfo(sl)
		if err != nil || strings.TrimRight(ti.Label, " \x00") != "posd" {
			continue
		}
		s, err := c.OpenSession(sl, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseSession(s)
		if err := c.Login(s, p11.CKU_USER, tokenPIN); err != nil {
			t.Fatal(err)
		}
		defer c.Logout(s)
		f(c, s)
		return
	}
	t.Fatal("token posd not found")
}

func findObjects(t *testing.T, c *p11.Ctx, s p11.SessionHandle, tmpl []*p11.Attribute) []p11.ObjectHandle {
	t.Helper()
	if err := c.FindObjectsInit(s, tmpl); err != nil {
		t.Fatal(err)
	}
	defer c.FindObjectsFinal(s)
	hs, _, err := c.FindObjects(s, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// tokenLabels lists the labels of every object in the token, sorted, as a fingerprint of
// what it holds.
func tokenLabels(t *testing.T) string {
	var labels []string
	rawToken(t, func(c *p11.Ctx, s p11.SessionHandle) {
		for _, h := range findObjects(t, c, s, nil) {
			a, err := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, nil), p11.NewAttribute(p11.CKA_CLASS, nil)})
			if err != nil {
				t.Fatal(err)
			}
			labels = append(labels, fmt.Sprintf("%s/%x", a[0].Value, a[1].Value))
		}
	})
	return fmt.Sprint(sortStrings(labels))
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// The technician's path against a SoftHSM2 token: KBPK ceremonies, published blocks of
// versions A, B and D, posd's data key imported and then sealing and opening through posd's
// own start-up code exactly as the soft backend does with the same key, a MAC key that
// MACs as the soft backend's does, every key non-extractable, a tampered block refused with
// nothing stored, and --replace required to overwrite.
func TestKeyPKCS11Import(t *testing.T) {
	cfg := tokenConfig(t)
	ctx := context.Background()
	loadKBPK(t, cfg, "kbpk-a", "tdes2", kbpkA)
	loadKBPK(t, cfg, "kbpk-b", "tdes2", kbpkB)
	loadKBPK(t, cfg, "kbpk-d", "aes256", kbpkD)
	imp := func(id, kbpk, block string, extra ...string) (int, string, string) {
		return posdKey(t, "", append([]string{"import", "--config", cfg, "--kbpk", kbpk, "--id", id, "--block", block}, extra...)...)
	}
	for _, c := range []struct{ id, kbpk, block, want string }{
		{"zpk-a", "kbpk-a", blockA, "imported key zpk-a: TDES-2key PIN key, KCV CB9DEA (legacy)\n"},
		{"zpk-b", "kbpk-b", blockB, fmt.Sprintf("imported key zpk-b: TDES-2key PIN key, KCV %s (legacy)\n", kcvOf(t, keyB))},
		{"zpk-d", "kbpk-d", blockD, fmt.Sprintf("imported key zpk-d: AES-128 PIN key, KCV %s (CMAC)\n", aesKCV(t, keyD))},
	} {
		if code, out, errOut := imp(c.id, c.kbpk, c.block); code != 0 || out != c.want {
			t.Errorf("import %s: exit %d %q %s\nwant %q", c.id, code, out, errOut, c.want)
		}
	}

	// posd's data key: imported, then used by posd's start-up code (openDataModule).
	code, out, errOut := imp("data", "kbpk-d", wrapT(t, kbpkD, 'D', "D0", 'A', testDataKey))
	if code != 0 || out != fmt.Sprintf("imported key data: AES-256 data key, KCV %s (CMAC)\n", aesKCV(t, testDataKey)) {
		t.Fatalf("import data: %d %q %s", code, out, errOut)
	}
	checkDataKey(t, cfg, testDataKey)

	// A MAC key MACs in the token as the soft backend does with the same key.
	macKey := "2B7E151628AED2A6ABF7158809CF4F3C"
	if code, out, errOut := imp("mac-host", "kbpk-d", wrapT(t, kbpkD, 'D', "M6", 'A', macKey)); code != 0 {
		t.Fatalf("import MAC key: %d %q %s", code, out, errOut)
	}
	c, _ := LoadConfig(cfg)
	drv, closeFn, err := openPKCS11(c.HSM.Data.PKCS11)
	if err != nil {
		t.Fatal(err)
	}
	tm, _ := hsm.New(drv, nil)
	sm, _ := hsm.New(soft.New(nil), nil)
	sm.LoadKey(ctx, hsm.LoadRequest{ID: "mac-host", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: [][]byte{unhexT(t, macKey)}})
	msg := []byte("0200 message with its fields")
	a, err1 := tm.MAC(ctx, "mac-host", msg)
	b, err2 := sm.MAC(ctx, "mac-host", msg)
	if err1 != nil || err2 != nil || fmt.Sprintf("%X", a) != fmt.Sprintf("%X", b) {
		t.Errorf("MAC: token %X %v, soft %X %v", a, err1, b, err2)
	}
	closeFn()

	// Nothing can be read out of the token, the variant keys of the TDES KBPKs included.
	rawToken(t, func(c *p11.Ctx, s p11.SessionHandle) {
		keys := findObjects(t, c, s, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY)})
		if len(keys) != 12 { // 3 KBPKs, 2 of them TDES with 2 variants each, 5 keys imported
			t.Errorf("%d secret keys in the token, want 12", len(keys))
		}
		for _, h := range keys {
			l, _ := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, nil)})
			label := string(l[0].Value)
			if v, err := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)}); err == nil {
				t.Errorf("%s: CKA_VALUE read (%d bytes)", label, len(v[0].Value))
			}
			// CKA_NEVER_EXTRACTABLE is false, rightly: PKCS#11 keeps it for keys generated
			// in the token, and these were in posd's memory while they were imported.
			a, err := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_EXTRACTABLE, nil), p11.NewAttribute(p11.CKA_SENSITIVE, nil)})
			if err != nil || a[0].Value[0] != 0 || a[1].Value[0] != 1 {
				t.Errorf("%s: extractable %v sensitive %v (%v)", label, a[0].Value, a[1].Value, err)
			}
			// Nor wrapped out under a key the attacker makes.
			kek, err := c.CreateObject(s, []*p11.Attribute{
				p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY), p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
				p11.NewAttribute(p11.CKA_VALUE, make([]byte, 16)), p11.NewAttribute(p11.CKA_TOKEN, false), p11.NewAttribute(p11.CKA_WRAP, true)})
			if err != nil {
				t.Fatal(err)
			}
			if w, err := c.WrapKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_WRAP, nil)}, kek, h); err == nil {
				t.Errorf("%s: wrapped out (%d bytes)", label, len(w))
			}
			c.DestroyObject(s, kek)
		}
	})

	// A tampered block, a block under another KBPK and a misfit for the data key are
	// refused with one line, and the token holds exactly what it held.
	before := tokenLabels(t)
	dataBlock := wrapT(t, kbpkD, 'D', "D0", 'A', strings.Repeat("C3", 32))
	tampered := []byte(dataBlock)
	if tampered[60] == '0' {
		tampered[60] = '1'
	} else {
		tampered[60] = '0'
	}
	tamperedA := []byte(blockA)
	tamperedA[40] = '0' // it is 'F'
	for _, c := range []struct{ name, id, kbpk, block, want string }{
		{"tampered D", "new", "kbpk-d", string(tampered), "MAC does not verify"},
		{"tampered A", "new", "kbpk-a", string(tamperedA), "MAC does not verify"},
		{"wrong KBPK", "new", "kbpk-b", blockA, "MAC does not verify"},
		{"TDES block under the AES KBPK", "new", "kbpk-d", blockB, "kbpk has the wrong length"},
		{"unknown KBPK", "new", "kbpk-x", blockA, `no key "kbpk-x" in token "posd"`},
		{"PIN key as the data key", "data", "kbpk-a", blockA, `key id "data" is the data key`},
		{"existing id", "data", "kbpk-d", dataBlock, "add --replace"},
	} {
		var extra []string
		if c.name == "PIN key as the data key" {
			extra = []string{"--replace"}
		}
		code, out, errOut := imp(c.id, c.kbpk, c.block, extra...)
		lines := problemLines(errOut)
		if code != 1 || out != "" || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: exit %d %q, stderr lines %q; want one with %q", c.name, code, out, lines, c.want)
		}
		if after := tokenLabels(t); after != before {
			t.Errorf("%s: the token changed:\n%s\n%s", c.name, before, after)
		}
	}
	checkDataKey(t, cfg, testDataKey)

	// --replace overwrites, says what it replaced, and leaves one data key in the token.
	code, out, errOut = imp("data", "kbpk-d", dataBlock, "--replace")
	want := fmt.Sprintf("replaced key data: AES-256 data key, KCV %s (CMAC)\nimported key data: AES-256 data key, KCV %s (CMAC)\n", aesKCV(t, testDataKey), aesKCV(t, strings.Repeat("C3", 32)))
	if code != 0 || out != want {
		t.Errorf("replace: %d %q %s\nwant %q", code, out, errOut, want)
	}
	checkDataKey(t, cfg, strings.Repeat("C3", 32))
	rawToken(t, func(c *p11.Ctx, s p11.SessionHandle) {
		if n := len(findObjects(t, c, s, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, "data")})); n != 2 { // the key and its description
			t.Errorf("%d objects labelled data after --replace, want 2", n)
		}
	})

	code, out, _ = posdKey(t, "", "list", "--config", cfg)
	for _, w := range []string{`8 keys in token "posd"`, "data: AES-256 data key, KCV " + aesKCV(t, strings.Repeat("C3", 32)), "kbpk-a: TDES-2key KBPK key, KCV " + kcvOf(t, kbpkA), "mac-host: AES-128 MAC key"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("list: want %q in\n%s", w, out)
		}
	}
	if strings.Contains(out, "variant") {
		t.Errorf("list shows the variant keys:\n%s", out)
	}
}
