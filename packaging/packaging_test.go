// Tests of what the Debian package ships: the systemd unit passes systemd-analyze, the
// default config passes posd check-config, and the amd64 package installs into and leaves
// a throwaway root (dpkg --root with --force-script-chrootless, so the maintainer scripts
// run too, under DPKG_ROOT). Each skips, saying why, where its tool is missing.
package packaging_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitFile returns packaging/posd.service with /usr/bin/posd replaced by an executable
// that exists here (systemd-analyze verify checks ExecStart=), in a directory of its own.
func unitFile(t *testing.T, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile("posd.service")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/bin/posd", exe)
	if edit != nil {
		unit = edit(unit)
	}
	path := filepath.Join(t.TempDir(), "posd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// verify runs systemd-analyze verify; it exits 0 on unknown keys and bad values (it
// only logs them), so any output is a failure too.
func verify(path string) (string, error) {
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestUnitVerifies(t *testing.T) {
	need(t, "systemd-analyze")
	if out, err := verify(unitFile(t, nil)); err != nil || out != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check sees a mistake: a misspelt directive.
	bad := unitFile(t, func(u string) string { return strings.Replace(u, "NoNewPrivileges=", "NoNewPrivilege=", 1) })
	if out, err := verify(bad); err == nil && out == "" {
		t.Fatal("systemd-analyze verify passed a unit with a misspelt directive")
	}
}

// TestUnitHardening: the directives issue 18 and REFERENCE-turn2 §6 ask for, and the
// offline exposure score.
func TestUnitHardening(t *testing.T) {
	b, err := os.ReadFile("posd.service")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(line, "#") {
			have[k] = append(have[k], v)
		}
	}
	want := [][2]string{
		{"User", "posd"}, {"SupplementaryGroups", "dialout"},
		{"StateDirectory", "posd"}, {"RuntimeDirectory", "posd"}, {"RuntimeDirectoryMode", "0750"},
		{"ProtectSystem", "strict"}, {"NoNewPrivileges", "yes"}, {"DevicePolicy", "closed"},
		{"DeviceAllow", "char-ttyS rw"}, {"DeviceAllow", "char-ttyUSB rw"}, {"DeviceAllow", "char-ttyACM rw"},
		{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"}, {"SystemCallFilter", "@system-service"},
		{"CapabilityBoundingSet", ""}, {"UMask", "0077"}, {"Restart", "on-failure"},
	}
	for _, kv := range want {
		found := false
		for _, v := range have[kv[0]] {
			found = found || v == kv[1]
		}
		if !found {
			t.Errorf("posd.service: no %s=%s (has %q)", kv[0], kv[1], have[kv[0]])
		}
	}
	// PrivateDevices= would hide the serial ports.
	if v := have["PrivateDevices"]; len(v) > 0 {
		t.Errorf("posd.service: PrivateDevices=%s hides the serial ports; use DevicePolicy= and DeviceAllow=", v)
	}

	need(t, "systemd-analyze")
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", unitFile(t, nil)).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for posd.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil && m == nil {
		t.Skipf("systemd-analyze security --offline=yes does not run here (%v): %s", err, bytes.TrimSpace(out))
	}
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.5 {
		t.Errorf("systemd-analyze security: exposure %.1f, want at most 2.5 (it was 1.9)\n%s", score, out)
	}
}

// buildPosd builds cmd/posd for this machine.
func buildPosd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "posd")
	run(t, "go", "build", "-o", bin, "../cmd/posd")
	return bin
}

func TestDefaultConfigChecks(t *testing.T) {
	posd := buildPosd(t)
	run(t, posd, "check-config", "--elsewhere", "--config", "posd.json") // /var/lib/posd is the unit's, not this machine's
}

// TestPackageInstallRemove builds the amd64 package with scripts/package and installs,
// removes and purges it in a throwaway root with dpkg --root --force-script-chrootless:
// the maintainer scripts run on this machine with DPKG_ROOT set and create the posd user
// in the root's /etc/passwd (useradd --prefix), never in this machine's. The binaries are
// built with the go command the test runs under (make package uses the release toolchain).
func TestPackageInstallRemove(t *testing.T) {
	need(t, "dpkg-deb", "dpkg", "useradd", "groupadd")
	dpkg := []string{"dpkg"}
	if os.Geteuid() != 0 {
		need(t, "fakeroot")
		dpkg = []string{"fakeroot", "dpkg"}
	}
	dist := t.TempDir()
	run(t, "../scripts/package", dist, "0.0.0~test", "amd64")
	deb := filepath.Join(dist, "posd_0.0.0~test_amd64.deb")

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"var/lib/dpkg/status": "", "var/lib/dpkg/available": "",
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/shadow": "root:*:19000:0:99999:7:::\n",
		"etc/group": "root:x:0:\ndialout:x:20:\n", "etc/gshadow": "root:*::\ndialout:*::\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	dpkgRoot := func(args ...string) string {
		t.Helper()
		a := append(dpkg[1:], "--root="+root, "--force-not-root", "--force-script-chrootless",
			"--force-depends", "--force-architecture")
		return run(t, dpkg[0], append(a, args...)...)
	}

	out := dpkgRoot("-i", deb)
	if !strings.Contains(out, "installed, not started") {
		t.Errorf("postinst did not run:\n%s", out)
	}
	shipped := []string{"usr/bin/posd", "usr/bin/posctl", "usr/bin/hsmctl", "lib/systemd/system/posd.service"}
	for _, f := range shipped {
		if fi, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("after install: %v", err)
		} else if strings.HasPrefix(f, "usr/bin/") && fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", f, fi.Mode().Perm())
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	u := regexp.MustCompile(`(?m)^posd:x:(\d+):(\d+)::/var/lib/posd:/usr/sbin/nologin$`).FindSubmatch(passwd)
	g := regexp.MustCompile(`(?m)^posd:x:(\d+):`).FindSubmatch(group)
	if u == nil || g == nil || string(u[2]) != string(g[1]) {
		t.Fatalf("postinst made no posd user and group:\n%s\n%s", passwd, group)
	}
	if uid, _ := strconv.Atoi(string(u[1])); uid >= 1000 || uid == 0 {
		t.Errorf("posd's uid %d is not a system uid", uid)
	}
	if b, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(b, hostPasswd) {
		t.Error("installing into the throwaway root changed this machine's /etc/passwd")
	}
	conf := filepath.Join(root, "etc/posd/posd.json")
	fi, err := os.Stat(conf)
	if err != nil {
		t.Fatal(err)
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; strconv.Itoa(int(gid)) != string(g[1]) || fi.Mode().Perm() != 0o640 {
		t.Errorf("%s: gid %d mode %v, want gid %s (posd) mode 0640", conf, gid, fi.Mode().Perm(), g[1])
	}
	if runtime.GOARCH == "amd64" && runtime.GOOS == "linux" {
		run(t, filepath.Join(root, "usr/bin/posd"), "check-config", "--elsewhere", "--config", conf)
	}

	// A journal posd wrote survives remove and purge.
	journal := filepath.Join(root, "var/lib/posd/posd.db")
	if err := os.MkdirAll(filepath.Dir(journal), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journal, []byte("sales"), 0o600); err != nil {
		t.Fatal(err)
	}

	dpkgRoot("-r", "posd")
	for _, f := range shipped {
		if _, err := os.Stat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Errorf("after remove, %s: %v, want it gone", f, err)
		}
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("after remove (not purge) the config must stay: %v", err)
	}
	dpkgRoot("--purge", "posd")
	if _, err := os.Stat(filepath.Join(root, "etc/posd")); !os.IsNotExist(err) {
		t.Errorf("after purge, /etc/posd: %v, want it gone", err)
	}
	if b, err := os.ReadFile(journal); err != nil || string(b) != "sales" {
		t.Errorf("after purge the journal must stay: %q, %v", b, err)
	}
}
