package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
	"github.com/posd-dev/posd/terminal/emvparams"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// TestParamsEndToEnd: a technician installs a signed EMV parameter file with the built
// posctl into the built posd (built with the test's firmware root, whose targets key
// signs the file) and the contactless pinpad-sim over a pty: posctl params status shows
// the version and the pad (GTS) holds its table version. Then each refusal leaves
// everything as it was (posd's file, posctl params status, the pad's table version, no
// table load started on the pad): a CAPK with a wrong checksum (named in the refusal), a
// bad signature, an older and an equal version, and a cashier's and a supervisor's
// posctl (403: technician only).
func TestParamsEndToEnd(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	key := func(name string) *release.PrivateKey {
		seed := sha256.Sum256([]byte("posd params e2e " + name))
		k, err := release.NewPrivateKey(seed[:])
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, targets, snapshot, timestamp := key("root"), key("targets"), key("snapshot"), key("timestamp")
	repo := &release.Repo{Dir: filepath.Join(dir, "release")}
	if _, err := repo.WriteRoot(release.RootSpec{Keys: map[string][]firmware.PublicKey{
		firmware.RoleRoot: {root.Public()}, firmware.RoleTargets: {targets.Public()},
		firmware.RoleSnapshot: {snapshot.Public()}, firmware.RoleTimestamp: {timestamp.Public()},
	}}, root); err != nil {
		t.Fatal(err)
	}
	rootJSON, err := os.ReadFile(filepath.Join(repo.Dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	posdBin := filepath.Join(dir, "posd-with-root")
	build := exec.Command("go", "build", "-o", posdBin, "-ldflags", "-X main.firmwareRootB64="+base64.StdEncoding.EncodeToString(rootJSON), "github.com/posd-dev/posd/cmd/posd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building posd with the test root: %v\n%s", err, out)
	}

	// Parameter files: the shipped example at a chosen version, signed by signer; edit
	// may spoil it first (the signing happens after, so only posd's checks can refuse it).
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "emv-params.json"))
	if err != nil {
		t.Fatal(err)
	}
	paramsFile := func(name string, version int64, signer *release.PrivateKey, edit func(*emvparams.Params)) string {
		t.Helper()
		var p emvparams.Params
		if err := json.Unmarshal(example, &p); err != nil {
			t.Fatal(err)
		}
		p.Version = version
		if edit != nil {
			edit(&p)
		}
		body, err := json.MarshalIndent(&p, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		signed, err := release.SignRaw(body, signer)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, signed, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	c := &captured{}
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	pad := c.start(t, "pinpad-sim", "--port", pair.B, "--script", writeScript(t, dir, nil), "--contactless")
	pad.waitFor(t, pair.B)
	_, addr := startAcquirer(t, c)
	cfgPath, sock := writeTestConfig(t, dir, pair.A, addr)
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// The test's user is the technician; a cashier and a supervisor are throwaway uids.
	roles := fmt.Sprintf(`"roles": {"technician": {"users": ["%d"]}, "cashier": {"users": ["%d"]}, "supervisor": {"users": ["%d"]}}`,
		os.Getuid(), cashierUID, supervisorUID)
	was := fmt.Sprintf(`"roles": {"supervisor": {"users": ["%d", "%d"]}}`, os.Getuid(), secondSupervisor)
	if !bytes.Contains(cfg, []byte(was)) {
		t.Fatalf("the test config no longer holds %s:\n%s", was, cfg)
	}
	cfg = bytes.Replace(cfg, []byte(was), []byte(roles), 1)
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	posd := c.startBinary(t, "posd", posdBin, "run", "--config", cfgPath)
	posd.waitFor(t, "posd ready")
	api := "--api=unix:" + sock

	status := func() string {
		t.Helper()
		code, out := c.run(t, "posctl", api, "params", "status")
		if code != 0 {
			t.Fatalf("posctl params status: exit %d\n%s", code, out)
		}
		return out
	}
	if out := status(); !strings.Contains(out, "none installed") {
		t.Fatalf("status before any install:\n%s", out)
	}

	good := paramsFile("v5", 5, targets, nil)
	code, out := c.run(t, "posctl", api, "params", "install", good)
	if code != 0 || !strings.Contains(out, "version 5") {
		t.Fatalf("install of version 5: exit %d\n%s\npinpad-sim:\n%s", code, out, pad.out.String())
	}
	installed := status()
	if !strings.Contains(installed, "demo-acquirer version 5 (table version 0000000005)") ||
		!strings.Contains(installed, "PIN pad: table version 0000000005") {
		t.Fatalf("status after the install:\n%s", installed)
	}
	if !strings.Contains(pad.out.String(), "TLE -> 000: version 0000000005") {
		t.Fatalf("the pad did not commit table version 0000000005:\n%s", pad.out.String())
	}
	keptPath := filepath.Join(dir, "emv-params.json")
	kept, err := os.ReadFile(keptPath)
	if err != nil {
		t.Fatalf("posd did not keep the installed file: %v", err)
	}
	loads := strings.Count(pad.out.String(), "TLI ")

	// unchanged checks that a refusal changed nothing anywhere.
	unchanged := func(what string) {
		t.Helper()
		if now := status(); now != installed {
			t.Errorf("%s: posctl params status changed:\n%s\nwas:\n%s", what, now, installed)
		}
		if now, err := os.ReadFile(keptPath); err != nil || !bytes.Equal(now, kept) {
			t.Errorf("%s: posd's parameter file changed (err %v)", what, err)
		}
		if n := strings.Count(pad.out.String(), "TLI "); n != loads {
			t.Errorf("%s: a table load started on the pad:\n%s", what, pad.out.String())
		}
	}
	refused := func(what, path string, want ...string) {
		t.Helper()
		code, out := c.run(t, "posctl", api, "params", "install", path)
		if code == 0 {
			t.Errorf("%s: installed (exit 0)\n%s", what, out)
		}
		for _, w := range want {
			if !strings.Contains(strings.ToLower(out), strings.ToLower(w)) {
				t.Errorf("%s: the refusal does not say %q:\n%s", what, w, out)
			}
		}
		unchanged(what)
	}

	refused("a CAPK with a wrong checksum", paramsFile("badsum", 6, targets, func(p *emvparams.Params) {
		k := &p.CAPKs[1]
		k.SHA1 = strings.Repeat("0", 39) + "1"
	}), "checksum", "capks[1]")
	refused("a bad signature", paramsFile("badsig", 7, key("intruder"), nil), "signature")
	refused("an older version", paramsFile("v4", 4, targets, nil), "not newer", "version 4, in use 5")
	refused("the same version again", good, "not newer", "version 5, in use 5")

	// Technician only: a cashier and a supervisor are refused with 403 (the guard's
	// "needs role technician; ... has cashier", which posctl prints) before anything
	// is read (runAs skips, saying why, where the suite cannot change uid).
	shareDir(t, dir)
	newer := paramsFile("v8", 8, targets, nil)
	if err := os.Chmod(newer, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, who := range []struct {
		name string
		uid  uint32
	}{{"cashier", cashierUID}, {"supervisor", supervisorUID}} {
		code, out := c.runAs(t, who.uid, 0, "", "posctl", api, "params", "install", newer)
		if code == 0 || !strings.Contains(out, "needs role technician") || !strings.Contains(out, "has "+who.name) {
			t.Errorf("params install as the %s: exit %d\n%s", who.name, code, out)
		}
		unchanged("params install as the " + who.name)
		code, out = c.runAs(t, who.uid, 0, "", "posctl", api, "params", "status")
		if code == 0 || !strings.Contains(out, "needs role technician") {
			t.Errorf("params status as the %s: exit %d\n%s", who.name, code, out)
		}
	}
}
