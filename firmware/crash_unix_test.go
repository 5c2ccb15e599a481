//go:build unix

package firmware_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
)

// TestKillDuringInstall kills (SIGKILL) a child process that installs a
// bundle at each named step of the install, then starts the terminal again
// and checks that the slot it starts is whole, that nothing half-written is
// left, and that the terminal can go on (install again, or confirm).
func TestKillDuringInstall(t *testing.T) {
	if os.Getenv("POSD_FW_CRASH_AT") != "" {
		crashChild()
		return
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	v := newVendor(t)
	v.publish("2.0.0", 3<<20+5) // several copy buffers, so "image-writing" is mid-image
	bundle := v.bundleFile()
	rootPath := filepath.Join(t.TempDir(), "root.json")
	if err := os.WriteFile(rootPath, v.rootFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at     string // failpoint name, #n for its n-th occurrence
		active string // the slot that must start afterwards
	}{
		{"metadata-verified", "a"},
		{"unverified-created", "a"},
		{"image-writing", "a"},
		{"image-synced", "a"},
		{"trust.json-tmp-written", "a"},
		{"trust-saved", "a"},
		{"boot.json-tmp-written#1", "a"},
		{"slot-marked", "a"},
		{"image-renamed", "a"},
		{"boot.json-tmp-written#2", "a"},
		{"switched", "b"},
	}
	ctx := context.Background()
	for _, step := range steps {
		t.Run(step.at, func(t *testing.T) {
			dir := t.TempDir()
			v.open(dir, nil).Close() // a terminal with its factory firmware

			cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringInstall$")
			cmd.Env = append(os.Environ(), "POSD_FW_CRASH_AT="+step.at, "POSD_FW_CRASH_DIR="+dir,
				"POSD_FW_CRASH_SRC="+bundle, "POSD_FW_CRASH_ROOT="+rootPath, "POSD_FW_CRASH_INBOX="+v.inbox)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die of SIGKILL at %s: %v\n%s", step.at, err, out)
			}

			m := v.open(dir, nil)
			b, err := m.BootAttempt(ctx)
			if err != nil {
				t.Fatalf("BootAttempt after a crash at %s: %v", step.at, err)
			}
			if b.Slot != step.active {
				t.Fatalf("after a crash at %s slot %s starts, want %s", step.at, b.Slot, step.active)
			}
			st := status(t, m)
			startable(t, dir, st, b.Slot)
			for _, pat := range []string{"*.unverified", "*.tmp"} {
				if left, _ := filepath.Glob(filepath.Join(dir, pat)); len(left) > 0 {
					t.Errorf("left behind after reopening: %v", left)
				}
			}
			for _, s := range st.Slots {
				if s.State == firmware.SlotInstalling {
					t.Errorf("slot %s still marked installing after reopening", s.Name)
				}
			}
			// The terminal goes on: confirm the new slot, or install again.
			if b.Slot == "b" {
				if err := m.Confirm(ctx, "posd"); err != nil {
					t.Fatal(err)
				}
				if st := status(t, m); !st.Slots[1].Confirmed || st.Installed != "2.0.0" {
					t.Fatalf("after confirm: %+v", st)
				}
				return
			}
			res, err := m.Install(ctx, firmware.InstallRequest{Source: bundle, Who: "tech"})
			if err != nil {
				t.Fatalf("install again after a crash at %s: %v", step.at, err)
			}
			if res.Slot != "b" {
				t.Errorf("install again went to slot %s", res.Slot)
			}
			startable(t, dir, status(t, m), "b")
		})
	}
}

// crashChild installs the bundle and kills itself at the failpoint.
func crashChild() {
	at := os.Getenv("POSD_FW_CRASH_AT")
	name, nth := at, 1
	if i := strings.LastIndexByte(at, '#'); i >= 0 {
		name = at[:i]
		nth, _ = strconv.Atoi(at[i+1:])
	}
	root, err := os.ReadFile(os.Getenv("POSD_FW_CRASH_ROOT"))
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	m, err := firmware.Open(os.Getenv("POSD_FW_CRASH_DIR"), &firmware.Options{
		TrustedRoot: root, Model: model, FactoryVersion: factory, Inbox: os.Getenv("POSD_FW_CRASH_INBOX"),
		Now: func() time.Time { return epoch.Add(time.Hour) },
	})
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	seen := 0
	firmware.SetFailpoint(m, func(step string) {
		if step != name {
			return
		}
		if seen++; seen == nth {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
	_, err = m.Install(context.Background(), firmware.InstallRequest{Source: os.Getenv("POSD_FW_CRASH_SRC"), Who: "tech"})
	fmt.Printf("install ended without reaching failpoint %s: %v\n", at, err)
	os.Exit(3)
}
