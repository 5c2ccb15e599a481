package release_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
)

func key(t *testing.T, name string) *release.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	k, err := release.NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPrivateKeyNeverPrinted(t *testing.T) {
	k := key(t, "secret")
	seedHex := hex.EncodeToString(func() []byte { s := sha256.Sum256([]byte("secret")); return s[:] }())
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("key", "k", k)
	for _, s := range []string{k.String(), k.GoString(), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), logged.String()} {
		if strings.Contains(s, seedHex) || strings.Contains(s, seedHex[:16]) {
			t.Errorf("the seed is printed: %s", s)
		}
		if !strings.Contains(s, k.ID()[:16]) {
			t.Errorf("the key id is not printed: %s", s)
		}
	}
	back, err := release.ParsePrivateKey(release.MarshalPrivateKey(k))
	if err != nil || back.ID() != k.ID() {
		t.Fatalf("round trip: %v", err)
	}
	other := key(t, "other")
	tampered := strings.Replace(string(release.MarshalPrivateKey(k)), hex.EncodeToString(k.Public().Ed25519()), hex.EncodeToString(other.Public().Ed25519()), 1)
	if _, err := release.ParsePrivateKey([]byte(tampered)); err == nil {
		t.Error("a key file whose public key is not the seed's was accepted")
	}
}

func TestNewRootChecks(t *testing.T) {
	a, b := key(t, "a"), key(t, "b")
	keys := map[string][]firmware.PublicKey{
		firmware.RoleRoot: {a.Public()}, firmware.RoleTargets: {a.Public()},
		firmware.RoleSnapshot: {a.Public()}, firmware.RoleTimestamp: {b.Public()},
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r, err := release.NewRoot(1, release.RootSpec{Keys: keys}, now)
	if err != nil || len(r.Keys) != 2 || r.Expires != now.Add(release.DefaultRootLifetime) {
		t.Fatalf("NewRoot = %+v, %v", r, err)
	}
	if _, err := release.NewRoot(1, release.RootSpec{Keys: keys, Thresholds: map[string]int{firmware.RoleRoot: 2}}, now); err == nil || !strings.Contains(err.Error(), "threshold 2 with 1 keys") {
		t.Errorf("threshold above the keys: %v", err)
	}
	keys[firmware.RoleTargets] = []firmware.PublicKey{a.Public(), a.Public()}
	if _, err := release.NewRoot(1, release.RootSpec{Keys: keys}, now); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a key listed twice: %v", err)
	}
	delete(keys, firmware.RoleSnapshot)
	if _, err := release.NewRoot(1, release.RootSpec{Keys: keys}, now); err == nil || !strings.Contains(err.Error(), "snapshot has no keys") {
		t.Errorf("a role without keys: %v", err)
	}
}

func TestAddSignaturesKeepsSignedBytes(t *testing.T) {
	a, b := key(t, "a"), key(t, "b")
	signed := []byte(`{"_type":"x",  "pretty": [1, 2]}`)
	file, err := release.SignRaw(signed, a)
	if err != nil {
		t.Fatal(err)
	}
	file, err = release.AddSignatures(file, a, b)
	if err != nil {
		t.Fatal(err)
	}
	env, err := firmware.ParseEnvelope(file)
	if err != nil || !bytes.Equal(env.Signed, signed) || len(env.Signatures) != 2 {
		t.Fatalf("envelope: %s, %v", file, err)
	}
}

func TestBundleOrder(t *testing.T) {
	r := &release.Repo{Dir: t.TempDir()}
	k := key(t, "k")
	if err := r.Publish(release.ReleaseSpec{}); err == nil {
		t.Error("Publish without a root succeeded")
	}
	_, err := r.WriteRoot(release.RootSpec{Keys: map[string][]firmware.PublicKey{
		firmware.RoleRoot: {k.Public()}, firmware.RoleTargets: {k.Public()}, firmware.RoleSnapshot: {k.Public()}, firmware.RoleTimestamp: {k.Public()},
	}}, k)
	if err != nil {
		t.Fatal(err)
	}
	s := release.Signers{Targets: []*release.PrivateKey{k}, Snapshot: []*release.PrivateKey{k}, Timestamp: []*release.PrivateKey{k}}
	for _, img := range []struct{ name, kind string }{{"a.img", firmware.KindSystem}, {"pad.bin", firmware.KindPINPad}} {
		p := filepath.Join(t.TempDir(), img.name)
		os.WriteFile(p, []byte("image "+img.name), 0o644)
		if err := r.Publish(release.ReleaseSpec{Keep: true, Signers: s, Images: []release.Image{{Path: p, Kind: img.kind, Version: "1.0.0", Hardware: []string{"M"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := r.WriteBundle(&buf); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := "metadata/1.root.json metadata/timestamp.json metadata/snapshot.json metadata/targets.json targets/a.img targets/pad.bin"
	if strings.Join(names, " ") != want {
		t.Errorf("bundle entries %v, want %s", names, want)
	}
}
