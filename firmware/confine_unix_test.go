//go:build unix

package firmware_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
)

// within runs fn and fails the test if it takes more than d: a refused
// source must never block.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still running after %s", what, d)
	}
}

// checkWorks asserts that a Check of a good bundle in the inbox succeeds at
// once: nothing refused before jams the Manager.
func checkWorks(t *testing.T, m *firmware.Manager, good, after string) {
	t.Helper()
	within(t, 10*time.Second, "check after "+after, func() {
		if _, err := m.Check(context.Background(), firmware.InstallRequest{Source: good, Who: "tech"}); err != nil {
			t.Errorf("check of a good bundle after %s: %v", after, err)
		}
	})
}

func TestSourceConfinedToInbox(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	v.publish("2.0.0", 8192)
	good := v.bundleFile()
	dir := t.TempDir()
	m := v.open(dir, nil)
	before := tree(t, dir)

	outside := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(outside, v.bundle(), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(v.inbox, "fifo.tar")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	linkOut := filepath.Join(v.inbox, "link-out.tar")
	if err := os.Symlink(outside, linkOut); err != nil {
		t.Fatal(err)
	}
	linkZero := filepath.Join(v.inbox, "zero.tar")
	if err := os.Symlink("/dev/zero", linkZero); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(v.inbox, "sock.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A bundle directory whose image is a FIFO: the files inside a
	// directory pass the same checks.
	fifoDir := v.copyDir()
	img := filepath.Join(fifoDir, "targets", "posd-2.0.0.img")
	os.Remove(img)
	if err := syscall.Mkfifo(img, 0o600); err != nil {
		t.Fatal(err)
	}
	// ... and one whose image is a symlink out of the inbox.
	linkDir := v.copyDir()
	img = filepath.Join(linkDir, "targets", "posd-2.0.0.img")
	os.Remove(img)
	if err := os.Symlink(outside, img); err != nil {
		t.Fatal(err)
	}

	cases := []struct{ name, src, msg string }{
		{"a path outside the inbox", outside, "is not in the firmware inbox"},
		{"a device outside the inbox", "/dev/zero", "is not in the firmware inbox"},
		{"a file outside the inbox", "/etc/passwd", "is not in the firmware inbox"},
		{"a relative path out of the inbox", "../../../etc/passwd", "is not in the firmware inbox"},
		{"the inbox itself", v.inbox, "is not in the firmware inbox"},
		{"a FIFO in the inbox", fifo, "is a FIFO"},
		{"a symlink out of the inbox", linkOut, "symlink that leads out of the firmware inbox"},
		{"a symlink to a device", linkZero, "symlink that leads out of the firmware inbox"},
		{"a socket in the inbox", filepath.Join(v.inbox, "sock.tar"), "is a socket"},
		{"a bundle directory with a FIFO image", fifoDir, "is a FIFO"},
		{"a bundle directory with an image linked out", linkDir, "symlink that leads out"},
		{"an empty source", "", "no source"},
		{"an http URL", "http://127.0.0.1:1/posd.tar", "only https:// URLs"},
		{"an https URL with no allowed prefixes", "https://127.0.0.1:1/posd.tar", "downloads are off"},
	}
	if os.Geteuid() == 0 {
		dev := filepath.Join(v.inbox, "zero-dev")
		if err := syscall.Mknod(dev, syscall.S_IFCHR|0o600, 1<<8|5); err == nil {
			cases = append(cases, struct{ name, src, msg string }{"a device in the inbox", dev, "is a character device"})
		} else {
			t.Logf("no device node in the inbox: mknod: %v", err)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, op := range []string{"install", "check"} {
				var err error
				within(t, 5*time.Second, op+" of "+c.src, func() {
					req := firmware.InstallRequest{Source: c.src, Who: "tech"}
					if op == "install" {
						_, err = m.Install(ctx, req)
					} else {
						_, err = m.Check(ctx, req)
					}
				})
				if !errors.Is(err, firmware.ErrSource) || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("%s of %s: %v, want ErrSource saying %q", op, c.src, err, c.msg)
				}
			}
			if st := status(t, m); st.Active != firmware.SlotA || st.Slots[1].State != firmware.SlotEmpty || st.InProgress != nil {
				t.Errorf("after a refused source: %+v", st)
			}
			checkWorks(t, m, good, c.name)
		})
	}
	after := tree(t, dir)
	delete(after, "inbox") // the inbox is not part of the state
	delete(before, "inbox")
	sameTree(t, before, after)

	// Allowed: a symlink inside the inbox to a file inside it, a name
	// relative to the inbox, a bundle directory.
	linkIn := filepath.Join(v.inbox, "current.tar")
	if err := os.Symlink(good, linkIn); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(v.inbox, good)
	for _, src := range []string{linkIn, rel, v.repo.Dir} {
		if _, err := m.Check(ctx, firmware.InstallRequest{Source: src, Who: "tech"}); err != nil {
			t.Errorf("check of %s: %v", src, err)
		}
	}
	if res, err := m.Install(ctx, firmware.InstallRequest{Source: good, Who: "tech"}); err != nil || res.Version != "2.0.0" {
		t.Fatalf("install after the refusals: %+v, %v", res, err)
	}
	// Every refused install is in the event log, with the reason.
	refused := 0
	for _, e := range events(t, m) {
		if e.Kind == firmware.EventInstall && !e.OK && strings.Contains(e.Detail, "firmware source refused") {
			refused++
		}
	}
	if refused != len(cases) {
		t.Errorf("%d refused installs in the event log, want %d", refused, len(cases))
	}
}

func TestInboxMustBeSafe(t *testing.T) {
	v := newVendor(t)
	open := func(inbox string) error {
		m, err := firmware.Open(t.TempDir(), &firmware.Options{TrustedRoot: v.rootFile(), Model: model, Inbox: inbox})
		if err == nil {
			m.Close()
		}
		return err
	}
	ww := t.TempDir()
	if err := os.Chmod(ww, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	for _, c := range []struct{ inbox, msg string }{
		{ww, "writable by every user"},
		{filepath.Join(t.TempDir(), "missing"), "no such file"},
		{file, "not a directory"},
	} {
		if err := open(c.inbox); !errors.Is(err, firmware.ErrInbox) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "Options.Inbox") {
			t.Errorf("inbox %s: %v, want ErrInbox saying %q", c.inbox, err, c.msg)
		}
	}
	// The default inbox is made under the state directory.
	dir := t.TempDir()
	m, err := firmware.Open(dir, &firmware.Options{TrustedRoot: v.rootFile(), Model: model})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if fi, err := os.Stat(filepath.Join(dir, "inbox")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("default inbox: %v %v", fi, err)
	}
	for _, bad := range []string{"http://mirror/", "https://", "https://u:p@mirror/", "https://mirror/a/../b", "mirror/fw"} {
		if _, err := firmware.Open(t.TempDir(), &firmware.Options{TrustedRoot: v.rootFile(), Model: model, AllowedURLs: []string{bad}}); err == nil || !strings.Contains(err.Error(), "AllowedURLs") {
			t.Errorf("allowed URL %q: %v", bad, err)
		}
	}
}

// mirror is an HTTPS server of one bundle whose behaviour a test picks.
type mirror struct {
	srv     *httptest.Server
	started chan struct{} // a byte of the body went out
}

func newMirror(t *testing.T, bundle []byte, serve func(w http.ResponseWriter, r *http.Request, flush func())) *mirror {
	mi := &mirror{started: make(chan struct{}, 16)}
	mi.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			http.Redirect(w, r, "https://127.0.0.1:1/other/posd.tar", http.StatusFound)
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/fw/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(bundle)))
		rc := http.NewResponseController(w)
		serve(w, r, func() {
			rc.Flush()
			select {
			case mi.started <- struct{}{}:
			default:
			}
		})
	}))
	t.Cleanup(func() { mi.srv.CloseClientConnections(); mi.srv.Close() })
	if !strings.HasPrefix(mi.srv.URL, "https://127.0.0.1:") {
		t.Fatalf("mirror at %s, want loopback", mi.srv.URL)
	}
	return mi
}

// stall sends a few bytes, then nothing until the client goes away.
func stall(bundle []byte) func(w http.ResponseWriter, r *http.Request, flush func()) {
	return func(w http.ResponseWriter, r *http.Request, flush func()) {
		w.Write(bundle[:600])
		flush()
		<-r.Context().Done()
	}
}

func TestDownloadLimits(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	v.publish("2.0.0", 48<<10)
	bundle := v.bundle()
	good := v.bundleFile()

	t.Run("stalled mirror", func(t *testing.T) {
		mi := newMirror(t, bundle, stall(bundle))
		m := v.open(t.TempDir(), &firmware.Options{HTTPClient: mi.srv.Client(), AllowedURLs: []string{mi.srv.URL + "/fw/"},
			MinRate: 4096, MinRateWindow: 300 * time.Millisecond})
		start := time.Now()
		var err error
		within(t, 10*time.Second, "install from a stalled mirror", func() {
			_, err = m.Install(ctx, firmware.InstallRequest{Source: mi.srv.URL + "/fw/posd.tar", Who: "tech"})
		})
		if !errors.Is(err, firmware.ErrSlowDownload) || !strings.Contains(err.Error(), "under the minimum of 4096 bytes/s") {
			t.Fatalf("stalled download: %v", err)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("aborted after %s, before the grace period", d)
		}
		if st := status(t, m); st.InProgress != nil || st.Slots[1].State != firmware.SlotEmpty {
			t.Errorf("after the stalled download: %+v", st)
		}
		checkWorks(t, m, good, "a stalled download")
	})

	t.Run("total time limit", func(t *testing.T) {
		// Fast enough for the rate, but never finishing within the limit.
		mi := newMirror(t, bundle, func(w http.ResponseWriter, r *http.Request, flush func()) {
			for i := 0; i < len(bundle)-1; i += 64 {
				w.Write(bundle[i : i+1])
				flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
		m := v.open(t.TempDir(), &firmware.Options{HTTPClient: mi.srv.Client(), AllowedURLs: []string{mi.srv.URL + "/fw"},
			MinRate: 1, DownloadTimeout: 400 * time.Millisecond})
		var err error
		within(t, 10*time.Second, "check from a slow mirror", func() {
			_, err = m.Check(ctx, firmware.InstallRequest{Source: mi.srv.URL + "/fw/posd.tar", Who: "tech"})
		})
		if !errors.Is(err, firmware.ErrSlowDownload) || !strings.Contains(err.Error(), "time limit of 400ms") {
			t.Fatalf("download over the time limit: %v", err)
		}
		checkWorks(t, m, good, "a download over the time limit")
	})

	t.Run("slow but above the rate", func(t *testing.T) {
		// About 64 KiB/s against a minimum of 4 KiB/s, for several windows (a wide margin:
		// a loaded machine under the race detector delays the sender's sleeps).
		mi := newMirror(t, bundle, func(w http.ResponseWriter, r *http.Request, flush func()) {
			for i := 0; i < len(bundle); i += 2048 {
				w.Write(bundle[i:min(i+2048, len(bundle))])
				flush()
				time.Sleep(30 * time.Millisecond)
			}
		})
		m := v.open(t.TempDir(), &firmware.Options{HTTPClient: mi.srv.Client(), AllowedURLs: []string{mi.srv.URL + "/fw/"},
			MinRate: 4 << 10, MinRateWindow: 200 * time.Millisecond})
		start := time.Now()
		res, err := m.Install(ctx, firmware.InstallRequest{Source: mi.srv.URL + "/fw/posd.tar", Who: "tech"})
		if err != nil || res.Version != "2.0.0" {
			t.Fatalf("slow download above the rate: %+v, %v", res, err)
		}
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Errorf("the download took %s: not longer than the window, the rate was never checked", d)
		}
	})

	t.Run("shutdown cancels a download", func(t *testing.T) {
		mi := newMirror(t, bundle, stall(bundle))
		m := v.open(t.TempDir(), &firmware.Options{HTTPClient: mi.srv.Client(), AllowedURLs: []string{mi.srv.URL + "/fw/"}})
		cctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			_, err := m.Install(cctx, firmware.InstallRequest{Source: mi.srv.URL + "/fw/posd.tar", Who: "tech"})
			errc <- err
		}()
		<-mi.started
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled download: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a cancelled download still runs after 5s")
		}
		checkWorks(t, m, good, "a cancelled download")
	})

	t.Run("Stop ends a download", func(t *testing.T) {
		mi := newMirror(t, bundle, stall(bundle))
		m := v.open(t.TempDir(), &firmware.Options{HTTPClient: mi.srv.Client(), AllowedURLs: []string{mi.srv.URL + "/fw/"}})
		errc := make(chan error, 1)
		go func() {
			_, err := m.Install(ctx, firmware.InstallRequest{Source: mi.srv.URL + "/fw/posd.tar", Who: "tech"})
			errc <- err
		}()
		<-mi.started
		m.Stop() // posd's shutdown
		select {
		case err := <-errc:
			if !errors.Is(err, firmware.ErrStopped) {
				t.Errorf("stopped download: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a stopped download still runs after 5s")
		}
		if _, err := m.Check(ctx, firmware.InstallRequest{Source: good, Who: "tech"}); !errors.Is(err, firmware.ErrStopped) {
			t.Errorf("check after Stop: %v", err)
		}
		if st := status(t, m); st.InProgress != nil || st.Slots[1].State != firmware.SlotEmpty {
			t.Errorf("status after Stop: %+v", st)
		}
	})

	t.Run("URL rules", func(t *testing.T) {
		mi := newMirror(t, bundle, func(w http.ResponseWriter, r *http.Request, flush func()) { w.Write(bundle) })
		m := v.open(t.TempDir(), &firmware.Options{HTTPClient: mi.srv.Client(), AllowedURLs: []string{mi.srv.URL + "/fw", mi.srv.URL + "/elsewhere"}})
		for _, c := range []struct{ src, msg string }{
			{mi.srv.URL + "/fwevil/posd.tar", "not under an allowed URL prefix"},
			{mi.srv.URL + "/fw/../secret", ". or .. segments"},
			{strings.Replace(mi.srv.URL, "127.0.0.1", "localhost", 1) + "/fw/posd.tar", "not under an allowed URL prefix"},
			{mi.srv.URL + "/elsewhere", "redirect"},
		} {
			_, err := m.Check(ctx, firmware.InstallRequest{Source: c.src, Who: "tech"})
			if !errors.Is(err, firmware.ErrSource) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s: %v, want ErrSource saying %q", c.src, err, c.msg)
			}
		}
		if res, err := m.Check(ctx, firmware.InstallRequest{Source: mi.srv.URL + "/fw/posd.tar", Who: "tech"}); err != nil || !bytes.Contains([]byte(res.Message), []byte("2.0.0")) {
			t.Errorf("allowed URL: %+v, %v", res, err)
		}
	})
}
