package firmware_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/posd-dev/posd/firmware"
)

const benchImage = 64 << 20

// BenchmarkVerifyImage measures how fast a bundle's image is verified
// (read, length checked, SHA-256 compared with the signed hash, metadata
// verified), against sha256sum on the same file in the same run: compare
// the MB/s of the two sub-benchmarks.
func BenchmarkVerifyImage(b *testing.B) {
	v := newVendor(b)
	v.publish("2.0.0", benchImage)
	m := v.open(b.TempDir(), nil)
	img := filepath.Join(v.repo.Dir, "targets", "posd-2.0.0.img")
	ctx := context.Background()

	b.Run("firmware.Check", func(b *testing.B) {
		b.SetBytes(benchImage)
		for b.Loop() {
			if _, err := m.Check(ctx, firmware.InstallRequest{Source: v.repo.Dir, Who: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256sum", func(b *testing.B) {
		path, err := exec.LookPath("sha256sum")
		if err != nil {
			b.Skip("no sha256sum")
		}
		b.SetBytes(benchImage)
		for b.Loop() {
			if out, err := exec.Command(path, img).CombinedOutput(); err != nil {
				b.Fatalf("sha256sum: %v %s", err, out)
			}
		}
	})
}

// BenchmarkInstall measures a whole install of a 64 MiB image: verify,
// write, fsync, rename, switch (the disk's speed dominates).
func BenchmarkInstall(b *testing.B) {
	v := newVendor(b)
	v.publish("2.0.0", benchImage)
	bundle := v.repo.Dir
	ctx := context.Background()
	b.SetBytes(benchImage)
	for b.Loop() {
		b.StopTimer()
		dir, err := os.MkdirTemp(b.TempDir(), "state")
		if err != nil {
			b.Fatal(err)
		}
		m := v.open(dir, nil)
		b.StartTimer()
		if _, err := m.Install(ctx, firmware.InstallRequest{Source: bundle, Who: "bench"}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		m.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
