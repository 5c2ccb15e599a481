package firmware_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
)

func TestInstallBootConfirm(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	img := v.publish("2.0.0", 3<<20+17) // several copy buffers
	dir := t.TempDir()
	m := v.open(dir, nil)

	st := status(t, m)
	if st.Active != "a" || st.Installed != factory || !st.Slots[0].Factory || !st.Slots[0].Confirmed || st.Slots[1].State != firmware.SlotEmpty {
		t.Fatalf("new state directory: %+v", st)
	}
	if b, err := m.BootAttempt(ctx); err != nil || b.Slot != "a" || !b.Confirmed {
		t.Fatalf("BootAttempt = %+v, %v", b, err)
	}

	var progress []firmware.Progress
	res, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "alice", Progress: func(p firmware.Progress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "b" || res.Version != "2.0.0" || res.From != factory || res.Length != int64(len(img)) {
		t.Errorf("result = %+v", res)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "slot-b.img")); !bytes.Equal(got, img) {
		t.Error("slot-b.img is not the image")
	}
	last := progress[len(progress)-1]
	if last.Phase != "done" || last.Done != int64(len(img)) || last.Total != int64(len(img)) {
		t.Errorf("last progress = %+v", last)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i].Done < progress[i-1].Done && progress[i].Phase == progress[i-1].Phase {
			t.Fatalf("progress went backwards: %+v then %+v", progress[i-1], progress[i])
		}
	}
	st = status(t, m)
	if st.Active != "b" || st.Running != "a" || st.Slots[1].Confirmed || st.Slots[1].InstalledBy != "alice" || !strings.Contains(st.Note, "not confirmed") {
		t.Fatalf("after install: %+v", st)
	}
	// Another install before the new slot is confirmed would overwrite
	// slot a, the only good one.
	v.publish("3.0.0", 1000)
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "alice"}); !errors.Is(err, firmware.ErrNotConfirmed) {
		t.Fatalf("second install before confirm: %v", err)
	}
	// Confirm in this process (which runs slot a) does not confirm b.
	if err := m.Confirm(ctx, "posd"); err != nil {
		t.Fatal(err)
	}
	if status(t, m).Slots[1].Confirmed {
		t.Fatal("Confirm from a process running slot a confirmed slot b")
	}
	m.Close()

	// posd restarts into slot b and passes its self-test.
	m = v.open(dir, nil)
	b, err := m.Boot(ctx, func(context.Context) error { return nil })
	if err != nil || b.Slot != "b" || b.Attempt != 1 || b.Confirmed {
		t.Fatalf("Boot = %+v, %v", b, err)
	}
	st = status(t, m)
	if !st.Slots[1].Confirmed || st.Attempts != 0 || st.Installed != "2.0.0" || st.Note != "" {
		t.Fatalf("after confirm: %+v", st)
	}
	kinds := ""
	for _, e := range events(t, m) {
		kinds += e.Kind + ":" + e.Who + " "
	}
	if want := "initialise:posd install:alice install:alice confirm:posd self-test "; kinds != want {
		t.Errorf("events = %q, want %q", kinds, want)
	}
	// Installing the same bundle again: equal version.
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "bob"}); err != nil {
		t.Fatalf("3.0.0 after confirm: %v", err)
	}
}

func TestFallbackWhenNeverConfirmed(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	v.publish("2.0.0", 4096)
	dir := t.TempDir()
	var copied []firmware.Event
	opts := &firmware.Options{MaxBootAttempts: 3, OnEvent: func(e firmware.Event) { copied = append(copied, e) }}
	m := v.open(dir, opts)
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "alice"}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	// Three starts of slot b that never confirm (posd crashes or hangs).
	for i := 1; i <= 3; i++ {
		m = v.open(dir, opts)
		b, err := m.BootAttempt(ctx)
		if err != nil || b.Slot != "b" || b.Attempt != i || b.Fallback {
			t.Fatalf("start %d: %+v, %v", i, b, err)
		}
		m.Close()
	}
	m = v.open(dir, opts)
	b, err := m.BootAttempt(ctx)
	if err != nil || b.Slot != "a" || !b.Fallback || !b.Confirmed || !strings.Contains(b.Reason, "not confirmed within 3 starts") {
		t.Fatalf("fourth start: %+v, %v", b, err)
	}
	st := status(t, m)
	if st.Active != "a" || st.Installed != factory || !strings.Contains(st.Slots[1].Failed, "not confirmed within 3 starts") {
		t.Fatalf("after fallback: %+v", st)
	}
	if st.Last == nil || st.Last.Kind != firmware.EventFallback || st.Last.Who != "posd" || st.Last.From != "2.0.0" {
		t.Errorf("last result = %+v", st.Last)
	}
	// The copy hook saw every record, chained.
	evs := events(t, m)
	if len(copied) != len(evs) || copied[len(copied)-1] != evs[len(evs)-1] {
		t.Errorf("OnEvent saw %d events, the log has %d", len(copied), len(evs))
	}
	// Later starts stay on a.
	m.Close()
	m = v.open(dir, opts)
	if b, err := m.BootAttempt(ctx); err != nil || b.Slot != "a" || b.Fallback {
		t.Fatalf("start after fallback: %+v, %v", b, err)
	}
	// The same version may be installed again (the fix may be elsewhere).
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "alice"}); err != nil {
		t.Fatalf("reinstall after fallback: %v", err)
	}
}

func TestFallbackOnFailedSelfTest(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	v.publish("2.0.0", 4096)
	dir := t.TempDir()
	m := v.open(dir, nil)
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "alice"}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m = v.open(dir, nil)
	b, err := m.Boot(ctx, func(context.Context) error { return errors.New("PIN pad does not answer") })
	if !errors.Is(err, firmware.ErrSelfTest) || !strings.Contains(err.Error(), "PIN pad does not answer") || !strings.Contains(err.Error(), "slot a starts next") {
		t.Fatalf("Boot error = %v", err)
	}
	if b.Slot != "b" {
		t.Errorf("Boot ran %+v", b)
	}
	if st := status(t, m); st.Active != "a" {
		t.Fatalf("active after failed self-test: %+v", st)
	}
	// A failed self-test on a confirmed slot changes nothing.
	m.Close()
	m = v.open(dir, nil)
	if _, err := m.Boot(ctx, func(context.Context) error { return errors.New("acquirer down") }); !errors.Is(err, firmware.ErrSelfTest) || strings.Contains(err.Error(), "starts next") {
		t.Fatalf("Boot on confirmed slot: %v", err)
	}
	if st := status(t, m); st.Active != "a" {
		t.Fatalf("active: %+v", st)
	}
}

func TestDamagedImageFallsBack(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	v.publish("2.0.0", 4096)
	dir := t.TempDir()
	m := v.open(dir, nil)
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "alice"}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	rewrite(t, filepath.Join(dir, "slot-b.img"), func(b []byte) []byte { b[0] ^= 1; return b })
	m = v.open(dir, nil)
	b, err := m.BootAttempt(ctx)
	if err != nil || b.Slot != "a" || !b.Fallback || !strings.Contains(b.Reason, "image hash is not the installed one") {
		t.Fatalf("BootAttempt = %+v, %v", b, err)
	}
}

func TestRollback(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	dir := t.TempDir()
	m := v.open(dir, nil)
	if _, err := m.Rollback(ctx, "alice"); !errors.Is(err, firmware.ErrNoPrevious) {
		t.Fatalf("rollback with slot b empty: %v", err)
	}
	if _, err := m.Rollback(ctx, ""); !errors.Is(err, firmware.ErrNoWho) {
		t.Fatalf("rollback without who: %v", err)
	}
	v.publish("2.0.0", 4096)
	installConfirmed(t, m, v.bundleFile())
	v.publish("3.0.0", 4096)
	installConfirmed(t, m, v.bundleFile()) // a: 3.0.0, b: 2.0.0
	res, err := m.Rollback(ctx, "bob")
	if err != nil || res.Slot != "b" || res.Version != "2.0.0" || res.From != "3.0.0" {
		t.Fatalf("Rollback = %+v, %v", res, err)
	}
	st := status(t, m)
	if st.Active != "b" || st.Installed != "2.0.0" || st.Last.Kind != firmware.EventRollback || st.Last.Who != "bob" {
		t.Fatalf("after rollback: %+v", st)
	}
	// A damaged image is not rolled back to.
	rewrite(t, filepath.Join(dir, "slot-a.img"), func(b []byte) []byte { b[10] ^= 1; return b })
	if _, err := m.Rollback(ctx, "bob"); !errors.Is(err, firmware.ErrNoPrevious) || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("rollback to damaged slot: %v", err)
	}
	evs := events(t, m)
	if last := evs[len(evs)-1]; last.Kind != firmware.EventRollback || last.OK || last.Who != "bob" {
		t.Errorf("refused rollback recorded as %+v", last)
	}
}

func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	dir := t.TempDir()
	m := v.open(dir, nil)
	oldRoot := v.root
	// Version 2 replaces every key; it is signed by the old and the new
	// root keys.
	v.root = []*release.PrivateKey{key(t, "root2a"), key(t, "root2b")}
	v.sig = release.Signers{
		Targets:   []*release.PrivateKey{key(t, "targets2")},
		Snapshot:  []*release.PrivateKey{key(t, "snapshot2")},
		Timestamp: []*release.PrivateKey{key(t, "timestamp2")},
	}
	if _, err := v.repo.WriteRoot(v.spec(map[string]int{firmware.RoleRoot: 2}), append(oldRoot, v.root...)...); err != nil {
		t.Fatal(err)
	}
	v.publish("2.0.0", 4096)
	installConfirmed(t, m, v.bundleFile())
	if st := status(t, m); st.RootVersion != 2 {
		t.Fatalf("root version after rotation = %d", st.RootVersion)
	}
	// The terminal keeps trusting version 2 after a restart, though posd's
	// built-in root is still version 1.
	m.Close()
	m = v.open(dir, nil)
	if st := status(t, m); st.RootVersion != 2 {
		t.Fatalf("root version after restart = %d", st.RootVersion)
	}
	// Releases signed with the new keys only (the bundle without the root
	// chain) install.
	v.publish("3.0.0", 4096)
	d := v.copyDir()
	for _, f := range []string{"1.root.json", "2.root.json"} {
		os.Remove(filepath.Join(d, "metadata", f))
	}
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: d, Who: "alice"}); err != nil {
		t.Fatalf("release with new keys: %v", err)
	}

	// Version 3 signed only by the old root key (revoked by version 2) is
	// refused, and so is one signed by a single new root key (threshold 2).
	for _, signers := range [][]*release.PrivateKey{oldRoot, v.root[:1]} {
		v2 := newVendor(t)
		v2.root = v.root
		v2.sig = v.sig
		for _, name := range []string{"1.root.json", "2.root.json"} {
			b := v.file("metadata/" + name)
			os.WriteFile(filepath.Join(v2.repo.Dir, "metadata", name), b, 0o644)
		}
		root3, err := release.NewRoot(3, v.spec(nil), epoch)
		if err != nil {
			t.Fatal(err)
		}
		file, err := release.Sign(root3, signers...)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(v2.repo.Dir, "metadata/3.root.json"), file, 0o644)
		v2.publish("4.0.0", 4096)
		dir2 := t.TempDir()
		m2 := v.open(dir2, &firmware.Options{Inbox: v2.inbox})
		_, err = m2.Check(ctx, firmware.InstallRequest{Source: v2.repo.Dir, Who: "x"})
		if !errors.Is(err, firmware.ErrSignature) || !strings.Contains(err.Error(), "metadata/3.root.json: not signed by the root keys of trusted root version 2") {
			t.Errorf("root 3 signed by %v: %v", signers, err)
		}
	}

	// WriteRoot refuses to write such a root in the first place.
	if _, err := v.repo.WriteRoot(v.spec(nil), oldRoot...); err == nil || !strings.Contains(err.Error(), "must be signed by 2 root keys of version 2") {
		t.Errorf("WriteRoot with revoked key: %v", err)
	}
}

func TestHTTPS(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	img := v.publish("2.0.0", 300<<10)
	bundle := v.bundle()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/posd-2.0.0.tar" {
			http.NotFound(w, r)
			return
		}
		w.Write(bundle)
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("server at %s, want loopback", srv.URL)
	}
	dir := t.TempDir()
	m := v.open(dir, &firmware.Options{HTTPClient: srv.Client(), AllowedURLs: []string{srv.URL + "/"}})

	if _, err := m.Install(ctx, firmware.InstallRequest{Source: srv.URL + "/nope.tar", Who: "alice"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: strings.Replace(srv.URL, "https", "http", 1) + "/posd-2.0.0.tar", Who: "alice"}); err == nil || !strings.Contains(err.Error(), "only https:// URLs") {
		t.Errorf("http URL: %v", err)
	}
	res, err := m.Install(ctx, firmware.InstallRequest{Source: srv.URL + "/posd-2.0.0.tar", Who: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "slot-b.img")); !bytes.Equal(got, img) || res.Version != "2.0.0" {
		t.Errorf("install over https: %+v", res)
	}
	// Credentials in a URL stay out of errors and the event log.
	secretURL := strings.Replace(srv.URL, "https://", "https://tech:s3cret@", 1) + "/posd-2.0.0.tar"
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: secretURL, Who: "alice"}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("install with credentials in the URL: %v", err)
	}
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: strings.Replace(secretURL, "https", "http", 1), Who: "alice"}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("http URL with credentials: %v", err)
	}
	for _, e := range events(t, m) {
		if strings.Contains(e.Source+e.Detail, "s3cret") {
			t.Errorf("event shows the password: %+v", e)
		}
	}
	// A server whose certificate the terminal does not trust.
	m2 := v.open(t.TempDir(), &firmware.Options{AllowedURLs: []string{srv.URL}})
	if _, err := m2.Check(ctx, firmware.InstallRequest{Source: srv.URL + "/posd-2.0.0.tar", Who: "alice"}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
}

func TestUploadAndCheck(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	v.publish("2.0.0", 8192)
	dir := t.TempDir()
	m := v.open(dir, nil)
	before := tree(t, dir)
	res, err := m.Check(ctx, firmware.InstallRequest{Bundle: bytes.NewReader(v.bundle()), Who: "alice"})
	if err != nil || res.Version != "2.0.0" {
		t.Fatalf("Check = %+v, %v", res, err)
	}
	sameTree(t, before, tree(t, dir))
	if n := len(events(t, m)); n != 1 {
		t.Errorf("Check wrote %d events beyond the first", n-1)
	}
	if _, err := m.Install(ctx, firmware.InstallRequest{Bundle: bytes.NewReader(v.bundle()), Source: "upload from posctl", Who: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile()}); !errors.Is(err, firmware.ErrNoWho) {
		t.Errorf("install without who: %v", err)
	}
}

func TestOneOperationAtATime(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	v.publish("2.0.0", 4096)
	dir := t.TempDir()
	m := v.open(dir, nil)
	r, w := newBlockingReader(v.bundle())
	done := make(chan error, 1)
	go func() {
		_, err := m.Install(ctx, firmware.InstallRequest{Bundle: r, Who: "alice"})
		done <- err
	}()
	<-r.started
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "bob"}); !errors.Is(err, firmware.ErrBusy) {
		t.Errorf("concurrent install: %v", err)
	}
	if _, err := m.Rollback(ctx, "bob"); !errors.Is(err, firmware.ErrBusy) {
		t.Errorf("rollback during install: %v", err)
	}
	if st := status(t, m); st.InProgress == nil || st.InProgress.Op != "install" {
		t.Errorf("status during install: %+v", st.InProgress)
	}
	close(w)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A second Manager on the same directory is refused.
	if _, err := firmware.Open(dir, &firmware.Options{TrustedRoot: v.rootFile(), Model: model}); !errors.Is(err, firmware.ErrLocked) {
		t.Errorf("second Open: %v", err)
	}
}

// blockingReader serves b but stops in the middle until release is closed.
type blockingReader struct {
	b       *bytes.Reader
	half    int
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlockingReader(b []byte) (*blockingReader, chan struct{}) {
	r := &blockingReader{b: bytes.NewReader(b), half: len(b) / 2, started: make(chan struct{}), release: make(chan struct{})}
	return r, r.release
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if int(r.b.Size())-r.b.Len() >= r.half {
		r.once.Do(func() { close(r.started) })
		select {
		case <-r.release:
		case <-time.After(10 * time.Second):
		}
	}
	return r.b.Read(p)
}

func TestUnreadableStateFiles(t *testing.T) {
	v := newVendor(t)
	for _, c := range []struct{ file, want string }{
		{"boot.json", "boot.json: malformed"},
		{"trust.json", "delete it to fall back to the built-in root"},
	} {
		dir := t.TempDir()
		m := v.open(dir, nil)
		v.publish("2.0.0", 100)
		installConfirmed(t, m, v.bundleFile())
		m.Close()
		os.WriteFile(filepath.Join(dir, c.file), []byte(`{"v":1,`), 0o600)
		_, err := firmware.Open(dir, &firmware.Options{TrustedRoot: v.rootFile(), Model: model})
		if !errors.Is(err, firmware.ErrState) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open with a damaged %s: %v", c.file, err)
		}
	}
	if _, err := firmware.Open(t.TempDir(), &firmware.Options{TrustedRoot: []byte("{}"), Model: model}); err == nil || !strings.Contains(err.Error(), "TrustedRoot") {
		t.Errorf("Open with a bad root: %v", err)
	}
	if _, err := firmware.Open(t.TempDir(), &firmware.Options{TrustedRoot: v.rootFile(), Model: "no spaces allowed"}); err == nil || !strings.Contains(err.Error(), "Model") {
		t.Errorf("Open with a bad model: %v", err)
	}
}
