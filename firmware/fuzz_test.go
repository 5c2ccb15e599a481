package firmware_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
)

// FuzzBundle feeds arbitrary bytes to the terminal as an uploaded bundle.
// Whatever they hold, Check must return (no panic, no hang), and accept
// only the bundle the vendor signed.
func FuzzBundle(f *testing.F) {
	v := newVendor(f)
	img := v.publish("2.0.0", 2048)
	good := v.bundle()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:1500])
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 1024))
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	tw.WriteHeader(&tar.Header{Name: "metadata/1.root.json", Size: 1 << 40, Mode: 0o644})
	f.Add(hdr.Bytes())
	m := v.open(f.TempDir(), &firmware.Options{MaxImageSize: 1 << 20})
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := m.Check(ctx, firmware.InstallRequest{Bundle: bytes.NewReader(b), Who: "fuzz"})
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("Check did not finish in 5s")
		}
		if err == nil && (res.Version != "2.0.0" || res.Length != int64(len(img))) {
			t.Fatalf("accepted a bundle that is not the vendor's: %+v", res)
		}
	})
}

// FuzzMetadata replaces one metadata file of a valid release at a time and
// runs the verification on it. It must never panic, and must never accept
// signed contents other than the vendor's.
func FuzzMetadata(f *testing.F) {
	v := newVendor(f)
	v.sig.Timestamp = append(v.sig.Timestamp, key(f, "timestamp2"))
	if _, err := v.repo.WriteRoot(v.spec(nil), v.root...); err != nil {
		f.Fatal(err)
	}
	v.publish("2.0.0", 100)
	root := v.rootFile()
	names := []string{"metadata/2.root.json", "metadata/timestamp.json", "metadata/snapshot.json", "metadata/targets.json"}
	files := map[string][]byte{}
	for _, n := range names {
		files[n] = v.file(n)
	}
	now := epoch.Add(time.Hour)
	if err := firmware.VerifyMetadata(root, files, now); err != nil {
		f.Fatalf("the valid release does not verify: %v", err)
	}
	for i, n := range names {
		f.Add(uint8(i), files[n])
		f.Add(uint8(i), []byte(`{"signed":{},"signatures":[]}`))
	}
	f.Add(uint8(4), []byte(`{"signed":{"_type":"root"},"signatures":[{"keyid":"00","sig":"zz"}]}`))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		mutated := map[string][]byte{}
		for k, b := range files {
			mutated[k] = b
		}
		mutated[names[int(which)%len(names)]] = data
		name := names[int(which)%len(names)]
		err := firmware.VerifyMetadata(root, mutated, now)
		if err != nil {
			return
		}
		// Accepted: the signed bytes must be the vendor's. Signatures and
		// the whitespace around them may differ (one bad signature of two
		// still meets a threshold of one); the signed content may not.
		got, perr := firmware.ParseEnvelope(data)
		want, _ := firmware.ParseEnvelope(files[name])
		if perr != nil || !bytes.Equal(got.Signed, want.Signed) {
			t.Fatalf("accepted %s with other signed contents:\n%s", name, data)
		}
	})
}

// FuzzParseEnvelope checks that the outer parser never panics and keeps
// its size limit.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"signed":{"_type":"targets"},"signatures":[{"keyid":"ab","sig":"cd"}]}`))
	f.Add([]byte(`{"signed":1}`))
	f.Add([]byte(`{"signed":{},"signatures":null} x`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := firmware.ParseEnvelope(b)
		if err == nil && (len(env.Signed) == 0 || env.Signed[0] != '{' || len(b) > firmware.MaxMetadataSize) {
			t.Fatalf("accepted %q", b)
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3", "0.0.0", "01.2.3", "1.2", "4294967295.0.0", "999999999.1.1", "+1.2.3", "1.2.3-rc1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := firmware.ParseVersion(s)
		if err == nil && v.String() != s {
			t.Fatalf("ParseVersion(%q) = %v, which prints differently", s, v)
		}
	})
}

// FuzzEventLog parses arbitrary event log bytes (a log someone edited): it
// must never panic, and whatever it accepts must be a sequence 1, 2, 3...
func FuzzEventLog(f *testing.F) {
	f.Add([]byte(`{"seq":1,"time":"2026-03-01T12:00:00Z","event":"install","who":"a","ok":true,"prev":"0000000000000000000000000000000000000000000000000000000000000000"}` + "\n"))
	f.Add([]byte("garbage\n{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := firmware.ParseEventLog(b)
		if err != nil {
			return
		}
		for i, e := range evs {
			if e.Seq != uint64(i+1) {
				t.Fatalf("accepted a log whose record %d has seq %d", i+1, e.Seq)
			}
		}
	})
}
