package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// TestFirmwareEndToEnd: a vendor signs a release with the root built into this posd (the
// test builds posd with its own root, as a release build would), a technician installs it
// with posctl while posd runs, posd restarts into the new slot and confirms it; an older
// image is refused; the journal's audit chain holds the firmware events.
func TestFirmwareEndToEnd(t *testing.T) {
	binaries(t) // posctl and the simulators
	dir := t.TempDir()
	key := func(name string) *release.PrivateKey {
		seed := sha256.Sum256([]byte("posd e2e " + name))
		k, err := release.NewPrivateKey(seed[:])
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, targets, snapshot, timestamp := key("root"), key("targets"), key("snapshot"), key("timestamp")
	signers := release.Signers{Targets: []*release.PrivateKey{targets}, Snapshot: []*release.PrivateKey{snapshot}, Timestamp: []*release.PrivateKey{timestamp}}
	publish := func(name, version string) string {
		repo := &release.Repo{Dir: filepath.Join(dir, name)}
		if _, err := repo.WriteRoot(release.RootSpec{Keys: map[string][]firmware.PublicKey{
			firmware.RoleRoot: {root.Public()}, firmware.RoleTargets: {targets.Public()},
			firmware.RoleSnapshot: {snapshot.Public()}, firmware.RoleTimestamp: {timestamp.Public()},
		}}, root); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(dir, name+".img")
		os.WriteFile(img, []byte("posd system image "+version), 0o644)
		if err := repo.Publish(release.ReleaseSpec{Images: []release.Image{{Path: img, Version: version, Hardware: []string{"POSD-E2E"}}}, Signers: signers}); err != nil {
			t.Fatal(err)
		}
		return repo.Dir
	}
	newer := publish("release-0.2.0", "0.2.0")
	rootJSON, err := os.ReadFile(filepath.Join(newer, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}

	// posd with this root built in.
	posd := filepath.Join(dir, "posd-with-root")
	build := exec.Command("go", "build", "-o", posd, "-ldflags", "-X main.firmwareRootB64="+base64.StdEncoding.EncodeToString(rootJSON), "github.com/posd-dev/posd/cmd/posd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building posd with the test root: %v\n%s", err, out)
	}

	c := &captured{}
	// A pad with a firmware loader that drops the line once, mid-transfer.
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	padProc := c.start(t, "pinpad-sim", "--port", pair.B, "--script", writeScript(t, dir, nil),
		"--fw-model", "PADSIM-E2E", "--fw-version", "1.0.0", "--fw-drop-after", "3")
	padProc.waitFor(t, pair.B)
	_, addr := startAcquirer(t, c)
	cfgPath, sock := writeTestConfig(t, dir, pair.A, addr)
	cfg, _ := os.ReadFile(cfgPath)
	cfg = []byte(strings.Replace(string(cfg), `"version": 1,`, fmt.Sprintf(`"version": 1, "firmware": {"model": "POSD-E2E", "state_dir": %q},`, filepath.Join(dir, "fw")), 1))
	// Firmware is the technician's: the test's group holds it, beside its user's supervisor.
	cfg = []byte(strings.Replace(string(cfg), `"roles": {`, fmt.Sprintf(`"roles": {"technician": {"groups": ["%d"]}, `, os.Getgid()), 1))
	os.WriteFile(cfgPath, cfg, 0o600)
	api := "--api=unix:" + sock

	start := func() *exec.Cmd {
		pair.ClearExclusive()
		cmd := exec.Command(posd, "run", "--config", cfgPath)
		out := new(syncBuffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		client := unixClient(sock)
		for deadline := time.Now().Add(10 * time.Second); ; {
			if resp, err := client.Get("http://posd/v1/status"); err == nil {
				resp.Body.Close()
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatalf("posd did not start:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}

	p := start()
	if code, out := c.run(t, "posctl", api, "firmware", "status"); code != 0 || !strings.Contains(out, "0.1.0") {
		t.Fatalf("status before: exit %d\n%s", code, out)
	}
	// A source path must be a regular file (or bundle directory) in the inbox: a FIFO
	// there, a file elsewhere and a URL off the allow-list are refused with 400 before
	// anything is opened, and do not jam the next operation.
	inbox := filepath.Join(dir, "fw", "inbox") // the default: STATE_DIR/inbox, made by posd
	if err := syscall.Mkfifo(filepath.Join(inbox, "stuck.tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(inbox, "release-0.2.0"), os.DirFS(newer)); err != nil {
		t.Fatal(err)
	}
	post := func(op, source string) (int, string) {
		t.Helper()
		body := fmt.Sprintf(`{"source":%q,"who":"tech-7"}`, source)
		resp, err := unixClient(sock).Post("http://posd/v1/firmware/"+op, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s %s: %v", op, source, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, src := range []string{filepath.Join(inbox, "stuck.tar"), "/etc/shadow", newer, "https://fw.example/posd.tar"} {
		if code, body := post("check", src); code != http.StatusBadRequest || !strings.Contains(body, `"kind":"source"`) {
			t.Errorf("check of %s: HTTP %d %s, want 400 kind source", src, code, body)
		}
	}
	if code, body := post("check", filepath.Join(inbox, "release-0.2.0")); code != http.StatusOK || !strings.Contains(body, `"result"`) {
		t.Errorf("check of a bundle in the inbox: HTTP %d %s", code, body)
	}
	code, out := c.run(t, "posctl", api, "firmware", "install", "--who", "tech-7", newer)
	if code != 0 || !strings.Contains(out, "0.2.0") {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	stop(p)

	// The restart runs the new slot and confirms it after the self-test.
	p = start()
	code, out = c.run(t, "posctl", api, "firmware", "status")
	// The slot line: "b    active  0.2.0      ready       yes ..." (CONFIRMED column).
	confirmed := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[0] == "b" && f[1] == "active" && f[2] == "0.2.0" && f[4] == "yes" {
			confirmed = true
		}
	}
	if code != 0 || !confirmed {
		t.Errorf("status after the restart: exit %d\n%s", code, out)
	}
	// An older release is refused, and nothing changes.
	older := publish("release-0.1.5", "0.1.5")
	if code, out := c.run(t, "posctl", api, "firmware", "install", older); code == 0 || !strings.Contains(strings.ToLower(out), "older") {
		t.Errorf("install of an older version: exit %d\n%s", code, out)
	}
	// The journal's audit chain holds the firmware events, with who did them.
	resp, err := unixClient(sock).Get("http://posd/v1/audit")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "firmware install") || !strings.Contains(string(b), "tech-7") {
		t.Errorf("audit chain:\n%s", b)
	}

	// PIN pad firmware: a signed pad image goes to the pad over the ABECS link; the pad
	// drops the line after 3 blocks and the transfer resumes from the last acknowledged one.
	padImg := filepath.Join(dir, "pad-2.0.0.bin")
	os.WriteFile(padImg, bytes.Repeat([]byte("posd pad image "), 1500), 0o644) // 22.5 kB: a dozen blocks
	// The vendor's next release, in the same repository (metadata versions rise).
	padRepo := &release.Repo{Dir: newer}
	if err := padRepo.Publish(release.ReleaseSpec{Keep: true, Images: []release.Image{{Path: padImg, Kind: firmware.KindPINPad, Version: "2.0.0", Hardware: []string{"PADSIM-E2E"}}}, Signers: signers}); err != nil {
		t.Fatal(err)
	}
	code, out = c.run(t, "posctl", api, "firmware", "pinpad", "--who", "tech-7", padRepo.Dir)
	if code != 0 || !strings.Contains(out, "2.0.0") {
		t.Errorf("PIN pad firmware: exit %d\n%s\npinpad-sim:\n%s", code, out, padProc.out.String())
	}
	if !strings.Contains(strings.ToLower(padProc.out.String()), "drop") {
		t.Errorf("the pad never dropped the line:\n%s", padProc.out.String())
	}
	stop(p)
}
