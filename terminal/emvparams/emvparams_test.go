package emvparams_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/emvparams"
)

func key(name string) *release.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	k, _ := release.NewPrivateKey(seed[:])
	return k
}

// testRoot returns a firmware root (version 1) whose targets role is the "targets" key.
func testRoot(t *testing.T) []byte {
	t.Helper()
	repo := &release.Repo{Dir: t.TempDir(), Now: func() time.Time { return time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) }}
	_, err := repo.WriteRoot(release.RootSpec{Keys: map[string][]firmware.PublicKey{
		firmware.RoleRoot: {key("root").Public()}, firmware.RoleTargets: {key("targets").Public()},
		firmware.RoleSnapshot: {key("snapshot").Public()}, firmware.RoleTimestamp: {key("timestamp").Public()},
	}}, key("root"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo.Dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func example(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../examples/emv-params.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExampleParsesWithPublishedChecksums(t *testing.T) {
	p, err := emvparams.Parse(example(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.CAPKs) != 8 || p.TableVersion() != "0000000001" {
		t.Fatalf("%d CAPKs, version %s", len(p.CAPKs), p.TableVersion())
	}
	recs, err := p.Records()
	if err != nil {
		t.Fatal(err)
	}
	lens := map[int]int{}
	for _, r := range recs {
		lens[len(r)]++
	}
	if lens[abecs.TableAIDLen] != len(p.AIDs) || lens[abecs.TableCAPKLen] != 8 || lens[abecs.TableRevokedLen] != 1 {
		t.Errorf("record lengths %v", lens)
	}
	// The Visa test AID's record carries its contactless limits as the pad reads them.
	a, err := abecs.ParseAIDRecord(recs[0])
	if err != nil || a.AID != "A0000000031010" || a.CtlsTxnLimit != 10000 || a.CtlsCVMLimit != 5000 {
		t.Errorf("AID record %+v, %v", a, err)
	}
}

func TestWrongCAPKChecksumNamesTheEntry(t *testing.T) {
	b := bytes.Replace(example(t), []byte("429C954A3859CEF91295F663C963E582ED6EB253"), []byte("429C954A3859CEF91295F663C963E582ED6EB254"), 1)
	_, err := emvparams.Parse(b)
	if !errors.Is(err, emvparams.ErrChecksum) || !strings.Contains(err.Error(), "A000000003 92") {
		t.Fatalf("err = %v", err)
	}
}

func TestMalformedEntryNamesEntryAndField(t *testing.T) {
	b := bytes.Replace(example(t), []byte(`"kernel_id": 3`), []byte(`"kernel_id": 9`), 1)
	_, err := emvparams.Parse(b)
	if !errors.Is(err, emvparams.ErrFormat) || !strings.Contains(err.Error(), "aids[0] (A0000000031010) kernel_id") {
		t.Fatalf("err = %v", err)
	}
}

func TestSignatureAndVersion(t *testing.T) {
	root := testRoot(t)
	signed, err := release.SignRaw(example(t), key("targets"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := emvparams.Verify(root, signed)
	if err != nil {
		t.Fatal(err)
	}
	// Signed by a key the root does not give the targets role.
	bad, _ := release.SignRaw(example(t), key("snapshot"))
	if _, err := emvparams.Verify(root, bad); !errors.Is(err, emvparams.ErrSignature) {
		t.Errorf("snapshot-signed: err = %v", err)
	}
	// A signed body changed afterwards.
	var env firmware.Envelope
	json.Unmarshal(signed, &env)
	env.Signed = bytes.Replace(env.Signed, []byte(`"transaction_limit": 10000`), []byte(`"transaction_limit": 99999`), 1)
	tampered, _ := json.Marshal(env)
	if _, err := emvparams.Verify(root, tampered); !errors.Is(err, emvparams.ErrSignature) {
		t.Errorf("tampered: err = %v", err)
	}
	if err := p.Newer(p); !errors.Is(err, emvparams.ErrNotNewer) {
		t.Errorf("same version: err = %v", err)
	}
	next := *p
	next.Version++
	if err := next.Newer(p); err != nil {
		t.Errorf("newer: %v", err)
	}
}
