package firmware_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
)

const imgSize = 64 << 10

// installConfirmed installs src and then does what posd does at its next
// start, so that the new slot is confirmed.
func installConfirmed(t *testing.T, m *firmware.Manager, src string) firmware.Result {
	t.Helper()
	ctx := context.Background()
	res, err := m.Install(ctx, firmware.InstallRequest{Source: src, Who: "setup"})
	if err != nil {
		t.Fatalf("install %s: %v", src, err)
	}
	if _, err := m.BootAttempt(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Confirm(ctx, "setup"); err != nil {
		t.Fatal(err)
	}
	return res
}

func rewrite(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAttacksRejected runs each attack against a terminal and checks that
// it is refused with an error of the right kind and a clear message, and
// that nothing in the state directory changed but one refused install in
// the event log.
func TestAttacksRejected(t *testing.T) {
	cases := []struct {
		name string
		want error
		msg  string
		opts *firmware.Options
		// prepare builds the attack, may first bring the terminal into a
		// state (as a technician would have), and returns the source.
		prepare func(t *testing.T, v *vendor, m *firmware.Manager) string
	}{
		{
			name: "bad signature", want: firmware.ErrSignature,
			msg: "metadata/timestamp.json: 0 valid signature(s) from distinct trusted keys, threshold is 1; 1 signature(s) do not verify",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				d := v.copyDir()
				rewrite(t, filepath.Join(d, "metadata/timestamp.json"), func(b []byte) []byte {
					i := bytes.Index(b, []byte(`"sig": "`)) + len(`"sig": "`)
					b[i] ^= 1 // '0'..'f' stays hex: a wrong signature, not a malformed one
					if b[i] < '0' || (b[i] > '9' && b[i] < 'a') || b[i] > 'f' {
						b[i] ^= 1
						b[i+1] ^= 1
					}
					return b
				})
				return d
			},
		},
		{
			name: "signed by keys the terminal does not trust", want: firmware.ErrSignature,
			msg: "metadata/timestamp.json: 0 valid signature(s) from distinct trusted keys, threshold is 1; 1 signature(s) by keys the trusted root does not give this role (revoked or unknown)",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				evil := release.Signers{Targets: []*release.PrivateKey{key(t, "evil")}, Snapshot: []*release.PrivateKey{key(t, "evil")}, Timestamp: []*release.PrivateKey{key(t, "evil")}}
				v.publishWith(release.ReleaseSpec{Signers: evil}, firmware.KindSystem, "9.9.9", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "fewer signatures than the threshold", want: firmware.ErrSignature,
			msg: "metadata/targets.json: 1 valid signature(s) from distinct trusted keys, threshold is 2",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.sig.Targets = append(v.sig.Targets, key(t, "targets2"))
				if _, err := v.repo.WriteRoot(v.spec(map[string]int{firmware.RoleTargets: 2}), v.root...); err != nil {
					t.Fatal(err)
				}
				one := v.sig
				one.Targets = v.sig.Targets[:1]
				v.publishWith(release.ReleaseSpec{Signers: one}, firmware.KindSystem, "2.0.0", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "the same signature twice does not make two", want: firmware.ErrSignature,
			msg: "metadata/targets.json: 1 valid signature(s) from distinct trusted keys, threshold is 2",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.sig.Targets = append(v.sig.Targets, key(t, "targets2"))
				if _, err := v.repo.WriteRoot(v.spec(map[string]int{firmware.RoleTargets: 2}), v.root...); err != nil {
					t.Fatal(err)
				}
				twice := v.sig
				twice.Targets = []*release.PrivateKey{v.sig.Targets[0], v.sig.Targets[0]}
				v.publishWith(release.ReleaseSpec{Signers: twice}, firmware.KindSystem, "2.0.0", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "expired timestamp (frozen mirror)", want: firmware.ErrExpired,
			msg: "metadata/timestamp.json version 1 expired at 2026-03-01T12:30:00Z",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publishWith(release.ReleaseSpec{Signers: v.sig, Expires: release.Expiry{Timestamp: epoch.Add(30 * time.Minute)}}, firmware.KindSystem, "2.0.0", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "expired targets", want: firmware.ErrExpired,
			msg: "metadata/targets.json version 1 expired at 2026-03-01T12:30:00Z",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publishWith(release.ReleaseSpec{Signers: v.sig, Expires: release.Expiry{Targets: epoch.Add(30 * time.Minute)}}, firmware.KindSystem, "2.0.0", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "expired root", want: firmware.ErrExpired,
			msg: "root version 2 expired at 2026-03-01T12:30:00Z",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				spec := v.spec(nil)
				spec.Expires = epoch.Add(30 * time.Minute)
				if _, err := v.repo.WriteRoot(spec, v.root...); err != nil {
					t.Fatal(err)
				}
				v.publish("2.0.0", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "older metadata version", want: firmware.ErrRollback,
			msg: "metadata/timestamp.json is version 1, older than trusted version 2",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				old := v.bundleFile()
				v.publish("3.0.0", imgSize)
				installConfirmed(t, m, v.bundleFile())
				return old
			},
		},
		{
			name: "same metadata version with other contents", want: firmware.ErrRollback,
			msg: "metadata/timestamp.json is version 2, which this terminal already trusts with other contents",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				fork := v.copyDir()
				v.publish("3.0.0", imgSize)
				installConfirmed(t, m, v.bundleFile())
				// A second release signed as version 2 of everything.
				fv := &vendor{t: t, repo: &release.Repo{Dir: fork, Now: v.repo.Now}, root: v.root, sig: v.sig}
				fv.publish("4.0.0", imgSize)
				return fork
			},
		},
		{
			name: "equal firmware version", want: firmware.ErrOldVersion,
			msg: "posd-1.0.0.img is version 1.0.0 and the installed version is 1.0.0; only a higher version may be installed",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish(factory, imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "older firmware version", want: firmware.ErrOldVersion,
			msg: "posd-2.0.0.img is version 2.0.0 and the installed version is 3.0.0",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("3.0.0", imgSize)
				installConfirmed(t, m, v.bundleFile())
				// Newer metadata, older image: TUF alone would accept it.
				v.publish("2.0.0", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "wrong hardware model", want: firmware.ErrHardware,
			msg: "bundle's system images are for hardware POSD-B9, POSD-C1; this one is POSD-A7",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize, "POSD-C1", "POSD-B9")
				return v.bundleFile()
			},
		},
		{
			name: "truncated image (directory)", want: firmware.ErrLength,
			msg: "targets/posd-2.0.0.img is 1000 bytes, its signed length is 65536 (truncated)",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				d := v.copyDir()
				if err := os.Truncate(filepath.Join(d, "targets/posd-2.0.0.img"), 1000); err != nil {
					t.Fatal(err)
				}
				return d
			},
		},
		{
			name: "truncated image (bundle file cut short)", want: firmware.ErrLength,
			msg: "targets/posd-2.0.0.img ends after",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				b := v.bundle()
				path := filepath.Join(v.inbox, "cut.tar")
				if err := os.WriteFile(path, b[:len(b)-imgSize/2], 0o644); err != nil {
					t.Fatal(err)
				}
				return path
			},
		},
		{
			name: "oversized image (longer than signed)", want: firmware.ErrLength,
			msg: "targets/posd-2.0.0.img is 65537 bytes, more than its signed length 65536",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				d := v.copyDir()
				rewrite(t, filepath.Join(d, "targets/posd-2.0.0.img"), func(b []byte) []byte { return append(b, 0) })
				return d
			},
		},
		{
			name: "oversized image (over the terminal's cap)", want: firmware.ErrLength,
			msg:  "posd-2.0.0.img is 65536 bytes, more than this terminal's cap of 65535",
			opts: &firmware.Options{MaxImageSize: imgSize - 1},
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				return v.bundleFile()
			},
		},
		{
			name: "hash mismatch", want: firmware.ErrHash,
			msg: "targets/posd-2.0.0.img: SHA-256 is not the signed one",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				d := v.copyDir()
				rewrite(t, filepath.Join(d, "targets/posd-2.0.0.img"), func(b []byte) []byte { b[imgSize-1] ^= 0x80; return b })
				return d
			},
		},
		{
			name: "mix of two releases (targets from the older)", want: firmware.ErrMismatch,
			msg: "metadata/targets.json is not the file metadata/snapshot.json version 2 lists",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				older := v.file("metadata/targets.json")
				v.publish("3.0.0", imgSize)
				d := v.copyDir()
				if err := os.WriteFile(filepath.Join(d, "metadata/targets.json"), older, 0o644); err != nil {
					t.Fatal(err)
				}
				return d
			},
		},
		{
			name: "mix of two releases (snapshot from the older)", want: firmware.ErrMismatch,
			msg: "metadata/snapshot.json is not the file metadata/timestamp.json version 2 lists",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				v.publish("2.0.0", imgSize)
				older := v.file("metadata/snapshot.json")
				v.publish("3.0.0", imgSize)
				d := v.copyDir()
				if err := os.WriteFile(filepath.Join(d, "metadata/snapshot.json"), older, 0o644); err != nil {
					t.Fatal(err)
				}
				return d
			},
		},
		{
			name: "revoked signing key", want: firmware.ErrSignature,
			msg: "metadata/targets.json: 0 valid signature(s) from distinct trusted keys, threshold is 1; 1 signature(s) by keys the trusted root does not give this role (revoked or unknown)",
			prepare: func(t *testing.T, v *vendor, m *firmware.Manager) string {
				revoked := v.sig.Targets[0]
				v.sig.Targets = []*release.PrivateKey{key(t, "targets2")}
				if _, err := v.repo.WriteRoot(v.spec(nil), v.root...); err != nil {
					t.Fatal(err)
				}
				v.publish("2.0.0", imgSize)
				installConfirmed(t, m, v.bundleFile()) // the terminal learns root version 2
				// Whoever holds the revoked key signs a release, and leaves
				// root version 2 out of the bundle.
				stolen := v.sig
				stolen.Targets = []*release.PrivateKey{revoked}
				v.publishWith(release.ReleaseSpec{Signers: stolen}, firmware.KindSystem, "6.6.6", imgSize)
				d := v.copyDir()
				if err := os.Remove(filepath.Join(d, "metadata/2.root.json")); err != nil {
					t.Fatal(err)
				}
				return d
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := newVendor(t)
			dir := t.TempDir()
			m := v.open(dir, c.opts)
			src := c.prepare(t, v, m)
			before := tree(t, dir)
			stBefore := status(t, m)
			nEvents := len(events(t, m))

			_, err := m.Install(context.Background(), firmware.InstallRequest{Source: src, Who: "tech-7"})
			if !errors.Is(err, c.want) {
				t.Fatalf("Install: %v\nwant an error matching %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Install error:\n  %v\nwant it to contain:\n  %s", err, c.msg)
			}
			sameTree(t, before, tree(t, dir))
			if st := status(t, m); st.Active != stBefore.Active || st.Installed != stBefore.Installed || st.RootVersion != stBefore.RootVersion || st.TargetsVersion != stBefore.TargetsVersion {
				t.Errorf("status changed: before %+v\nafter %+v", stBefore, st)
			}
			evs := events(t, m)
			if len(evs) != nEvents+1 {
				t.Fatalf("%d events after the refused install, want %d", len(evs), nEvents+1)
			}
			last := evs[len(evs)-1]
			if last.Kind != firmware.EventInstall || last.OK || last.Who != "tech-7" || !strings.Contains(last.Detail, c.msg) {
				t.Errorf("last event = %+v; want a refused install by tech-7 saying %q", last, c.msg)
			}
			if matches, _ := filepath.Glob(filepath.Join(dir, "*.unverified")); len(matches) != 0 {
				t.Errorf("left behind: %v", matches)
			}
		})
	}
}
