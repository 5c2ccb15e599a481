package firmware_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
)

// The whole path of an update: the vendor signs a release, a technician
// installs it from a USB stick, posd restarts into the new slot and
// confirms it after its self-test.
func ExampleManager() {
	ctx := context.Background()
	work, _ := os.MkdirTemp("", "firmware-example")
	defer os.RemoveAll(work)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	// Vendor: one key per role (fwtool keygen), root version 1, a release.
	k := func(name string) *release.PrivateKey {
		seed := sha256.Sum256([]byte(name))
		key, _ := release.NewPrivateKey(seed[:])
		return key
	}
	root, targets, snapshot, timestamp := k("root"), k("targets"), k("snapshot"), k("timestamp")
	repo := &release.Repo{Dir: filepath.Join(work, "usb-stick"), Now: clock}
	_, err := repo.WriteRoot(release.RootSpec{Keys: map[string][]firmware.PublicKey{
		firmware.RoleRoot: {root.Public()}, firmware.RoleTargets: {targets.Public()},
		firmware.RoleSnapshot: {snapshot.Public()}, firmware.RoleTimestamp: {timestamp.Public()},
	}}, root)
	if err != nil {
		fmt.Println(err)
		return
	}
	img := filepath.Join(work, "posd-1.1.0.img")
	os.WriteFile(img, []byte("a new posd system image"), 0o644)
	err = repo.Publish(release.ReleaseSpec{
		Images:  []release.Image{{Path: img, Version: "1.1.0", Hardware: []string{"POSD-A7"}}},
		Signers: release.Signers{Targets: []*release.PrivateKey{targets}, Snapshot: []*release.PrivateKey{snapshot}, Timestamp: []*release.PrivateKey{timestamp}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Terminal: posd is built with root version 1.
	builtin, _ := os.ReadFile(filepath.Join(repo.Dir, "metadata", "1.root.json"))
	// The technician copies the bundle (here: the stick's directory) into
	// the terminal's firmware inbox; posd reads nothing from elsewhere.
	opts := &firmware.Options{TrustedRoot: builtin, Model: "POSD-A7", FactoryVersion: "1.0.0", Now: clock, Inbox: work}
	state := filepath.Join(work, "state")
	m, err := firmware.Open(state, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := m.Install(ctx, firmware.InstallRequest{Source: repo.Dir, Who: "tech-42"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("installed %s in slot %s (was %s)\n", res.Version, res.Slot, res.From)
	m.Close()

	// posd restarts: BootAttempt, its self-test, Confirm.
	m, _ = firmware.Open(state, opts)
	defer m.Close()
	boot, err := m.Boot(ctx, func(context.Context) error { return nil /* devices, store, acquirer */ })
	fmt.Printf("started slot %s %s, attempt %d, err %v\n", boot.Slot, boot.Version, boot.Attempt, err)
	st, _ := m.Status(ctx)
	for _, s := range st.Slots {
		fmt.Printf("slot %s: %s %s confirmed=%v\n", s.Name, s.State, s.Version, s.Confirmed)
	}
	evs, _ := m.Events(ctx, 0)
	for _, e := range evs {
		fmt.Printf("event %d: %s by %s ok=%v\n", e.Seq, e.Kind, e.Who, e.OK)
	}
	// Output:
	// installed 1.1.0 in slot b (was 1.0.0)
	// started slot b 1.1.0, attempt 1, err <nil>
	// slot a: ready 1.0.0 confirmed=true
	// slot b: ready 1.1.0 confirmed=true
	// event 1: initialise by posd ok=true
	// event 2: install by tech-42 ok=true
	// event 3: confirm by posd self-test ok=true
}
