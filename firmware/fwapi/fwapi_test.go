package fwapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
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
	"github.com/posd-dev/posd/firmware/fwapi"
	"github.com/posd-dev/posd/firmware/release"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func key(t *testing.T, name string) *release.PrivateKey {
	seed := sha256.Sum256([]byte("fwapi test " + name))
	k, err := release.NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// repo returns a release repository with root version 1 and a publish
// function.
func repo(t *testing.T) (*release.Repo, func(kind, version string, size int, hw string)) {
	t.Helper()
	r := &release.Repo{Dir: t.TempDir(), Now: func() time.Time { return epoch }}
	root, tg, sn, ts := key(t, "root"), key(t, "targets"), key(t, "snapshot"), key(t, "timestamp")
	_, err := r.WriteRoot(release.RootSpec{Keys: map[string][]firmware.PublicKey{
		firmware.RoleRoot: {root.Public()}, firmware.RoleTargets: {tg.Public()},
		firmware.RoleSnapshot: {sn.Public()}, firmware.RoleTimestamp: {ts.Public()},
	}}, root)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(kind, version string, size int, hw string) {
		t.Helper()
		img := filepath.Join(t.TempDir(), "posd-"+version+".img")
		os.WriteFile(img, bytes.Repeat([]byte(version), size/len(version)), 0o644)
		err := r.Publish(release.ReleaseSpec{
			Images:  []release.Image{{Path: img, Kind: kind, Version: version, Hardware: []string{hw}}},
			Signers: release.Signers{Targets: []*release.PrivateKey{tg}, Snapshot: []*release.PrivateKey{sn}, Timestamp: []*release.PrivateKey{ts}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return r, publish
}

func bundleFile(t *testing.T, r *release.Repo) string {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteBundle(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bundle.tar")
	os.WriteFile(p, buf.Bytes(), 0o644)
	return p
}

type setup struct {
	m      *firmware.Manager
	c      *fwapi.Client
	dir    string
	repo   *release.Repo
	pub    func(kind, version string, size int, hw string)
	padFW  *padsim.Firmware
	padErr error
}

func newSetup(t *testing.T, withPad bool) *setup {
	t.Helper()
	s := &setup{dir: t.TempDir()}
	s.repo, s.pub = repo(t)
	root, _ := os.ReadFile(filepath.Join(s.repo.Dir, "metadata/1.root.json"))
	m, err := firmware.Open(s.dir, &firmware.Options{TrustedRoot: root, Model: "POSD-A7", FactoryVersion: "1.0.0", Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s.m = m
	opts := &fwapi.HandlerOptions{ProgressEvery: time.Nanosecond}
	if withPad {
		s.padFW, _ = padsim.NewFirmware(nil)
		opts.Pad = func(ctx context.Context) (firmware.PadLink, func(context.Context) (firmware.PadLink, error), func(), error) {
			pair, err := ptypair.Open()
			if err != nil {
				return nil, nil, nil, err
			}
			port, err := abecs.OpenSerial(pair.B, 0)
			if err != nil {
				pair.Close()
				return nil, nil, nil, err
			}
			sctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.padFW.Serve(sctx, port); close(done) }()
			c, err := abecs.Dial(pair.A, 0, nil)
			if err != nil {
				cancel()
				port.Close()
				pair.Close()
				return nil, nil, nil, err
			}
			return c, nil, func() { c.Close(); cancel(); port.Close(); <-done; pair.Close() }, nil
		}
	}
	srv := httptest.NewServer(fwapi.NewHandler(m, opts))
	t.Cleanup(srv.Close)
	s.c = &fwapi.Client{Base: srv.URL, HTTP: srv.Client()}
	return s
}

func TestInstallOverTheAPI(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, false)
	s.pub(firmware.KindSystem, "2.0.0", 3<<20, "POSD-A7")

	for _, src := range []string{s.repo.Dir, bundleFile(t, s.repo)} {
		var got []firmware.Progress
		res, err := s.c.Install(ctx, fwapi.OpCheck, src, "alice", func(p firmware.Progress) { got = append(got, p) })
		if err != nil {
			t.Fatalf("check %s: %v", src, err)
		}
		if res.Version != "2.0.0" || len(got) < 3 || got[len(got)-1].Phase != "done" {
			t.Errorf("check %s: %+v, %d progress lines", src, res, len(got))
		}
	}
	res, err := s.c.Install(ctx, fwapi.OpInstall, s.repo.Dir, "alice", nil)
	if err != nil || res.Slot != "b" {
		t.Fatalf("install: %+v, %v", res, err)
	}
	st, err := s.c.Status(ctx)
	if err != nil || st.Active != "b" || st.Slots[1].InstalledBy != "alice" {
		t.Fatalf("status: %+v, %v", st, err)
	}
	// A second install before confirmation is refused in the stream.
	_, err = s.c.Install(ctx, fwapi.OpInstall, bundleFile(t, s.repo), "alice", nil)
	var apiErr *fwapi.APIError
	if !errors.As(err, &apiErr) || apiErr.Kind != "not-confirmed" {
		t.Fatalf("install before confirm: %v", err)
	}
	res, err = s.c.Rollback(ctx, "bob")
	if err != nil || res.Slot != "a" {
		t.Fatalf("rollback: %+v, %v", res, err)
	}
	evs, chainErr, err := s.c.Events(ctx, 0)
	if err != nil || chainErr != "" || len(evs) != 4 || evs[3].Kind != firmware.EventRollback || evs[3].Who != "bob" {
		t.Fatalf("events: %+v %q %v", evs, chainErr, err)
	}
	var out bytes.Buffer
	fwapi.WriteEvents(&out, evs[2:])
	if !strings.Contains(out.String(), "install    FAILED alice") || !strings.Contains(out.String(), "rollback   ok     bob          slot a 1.0.0 (from 2.0.0)") {
		t.Errorf("WriteEvents:\n%s", out.String())
	}
}

func TestAPIErrors(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, false)
	s.pub(firmware.KindSystem, "2.0.0", 1000, "POSD-B9")
	_, err := s.c.Install(ctx, fwapi.OpInstall, bundleFile(t, s.repo), "alice", nil)
	var apiErr *fwapi.APIError
	if !errors.As(err, &apiErr) || apiErr.Kind != "hardware" || !strings.Contains(apiErr.Message, "this one is POSD-A7") {
		t.Fatalf("wrong hardware: %v", err)
	}
	if _, err := s.c.Install(ctx, fwapi.OpInstall, bundleFile(t, s.repo), " ", nil); !errors.As(err, &apiErr) || apiErr.Kind != "no-who" {
		t.Errorf("no who: %v", err)
	}
	resp, err := http.Post(s.c.Base+"/v1/firmware/install?who=", "application/x-tar", strings.NewReader("x"))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("upload without who: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, err := s.c.Rollback(ctx, "bob"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Kind != "no-previous" {
		t.Errorf("rollback with nothing to roll back to: %v", err)
	}
	if _, err := s.c.Install(ctx, fwapi.OpPINPad, bundleFile(t, s.repo), "alice", nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotImplemented {
		t.Errorf("pinpad without a pad: %v", err)
	}
	for _, body := range []string{`{"source":""}`, `{"source":"x","who":"a","extra":1}`, `[`, `{"source":"x","who":"a"} {}`} {
		resp, err := http.Post(s.c.Base+"/v1/firmware/install", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %s: HTTP %d, want 400", body, resp.StatusCode)
		}
	}
	resp, _ = http.Post(s.c.Base+"/v1/firmware/install", "text/plain", strings.NewReader("x"))
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: HTTP %d", resp.StatusCode)
	}
	resp.Body.Close()
}

func TestPINPadOverTheAPI(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, true)
	s.pub(firmware.KindPINPad, "1.2.0", 9000, "PADSIM-1")
	var phases []string
	res, err := s.c.Install(ctx, fwapi.OpPINPad, s.repo.Dir, "carol", func(p firmware.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "1.2.0" || s.padFW.Version() != "1.2.0" || strings.Join(phases, " ") != "metadata image transfer done" {
		t.Errorf("result %+v, pad %s, phases %v", res, s.padFW.Version(), phases)
	}
}

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	now := epoch
	b := &fwapi.ProgressBar{W: &out, Width: 10, Now: func() time.Time { return now }}
	p := firmware.Progress{Op: "install", Target: "posd.img", Version: "2.0.0"}
	b.Update(firmware.Progress{Op: "install", Phase: "metadata"})
	now = now.Add(time.Second)
	p.Total = 100 << 20
	for _, step := range []struct {
		phase string
		done  int64
	}{{"image", 0}, {"image", 10 << 20}, {"image", 15 << 20}, {"image", 50 << 20}, {"image", 100 << 20}, {"switch", 100 << 20}, {"done", 100 << 20}} {
		p.Phase, p.Done = step.phase, step.done
		b.Update(p)
		now = now.Add(time.Second)
	}
	b.Done()
	want := `verifying signed metadata
writing posd.img 2.0.0 to the inactive slot [..........]   0% 0 B of 105 MB            ETA --
writing posd.img 2.0.0 to the inactive slot [#.........]  10% 10 MB of 105 MB    10 MB/s ETA 0:09
writing posd.img 2.0.0 to the inactive slot [#####.....]  50% 52 MB of 105 MB    17 MB/s ETA 0:03
writing posd.img 2.0.0 to the inactive slot [##########] 100% 105 MB of 105 MB    26 MB/s ETA 0:00
switching the active slot
done
`
	if out.String() != want {
		t.Errorf("progress output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestWriteStatus(t *testing.T) {
	st := firmware.Status{Model: "POSD-A7", Active: "b", Running: "a", Installed: "2.0.0", RootVersion: 2, TargetsVersion: 5,
		Slots: []firmware.Slot{
			{Name: "a", State: firmware.SlotReady, Factory: true, Version: "1.0.0", Confirmed: true},
			{Name: "b", State: firmware.SlotReady, Version: "2.0.0", InstalledAt: epoch, InstalledBy: "alice"},
		},
		Last: &firmware.Event{Kind: firmware.EventInstall, OK: true, Who: "alice", Time: epoch, Detail: "installed 2.0.0 in slot b"},
	}
	var out bytes.Buffer
	fwapi.WriteStatus(&out, st)
	for _, want := range []string{
		"model POSD-A7, installed 2.0.0, trusted root version 2, release metadata version 5",
		"a    running 1.0.0      ready       yes       factory",
		"b    next    2.0.0      ready       no        2026-03-01 12:00:00  alice",
		"posd runs slot a; slot b starts at the next restart",
		"last: install ok by alice at 2026-03-01 12:00:00: installed 2.0.0 in slot b",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSourceRefusedOverTheAPI(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, false)
	s.pub(firmware.KindSystem, "2.0.0", 4096, "POSD-A7")
	inbox := filepath.Join(s.dir, "inbox") // the default inbox, made by Open
	fifo := filepath.Join(inbox, "fifo.tar")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(inbox, "bundle.tar")
	b, _ := os.ReadFile(bundleFile(t, s.repo))
	if err := os.WriteFile(good, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, msg string }{
		{"/etc/shadow", "not in the firmware inbox"},
		{fifo, "is a FIFO"},
		{"https://mirror.example/posd.tar", "downloads are off"},
	} {
		for _, op := range []string{"install", "check"} {
			body := `{"source":` + strconv.Quote(c.src) + `,"who":"alice"}`
			resp, err := http.Post(s.c.Base+"/v1/firmware/"+op, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var eb fwapi.ErrorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || eb.Kind != "source" || !strings.Contains(eb.Error, c.msg) {
				t.Errorf("%s %s: HTTP %d %+v, want 400 kind source saying %q", op, c.src, resp.StatusCode, eb, c.msg)
			}
		}
	}
	// The next operation works at once.
	body := `{"source":` + strconv.Quote(good) + `,"who":"alice"}`
	resp, err := http.Post(s.c.Base+"/v1/firmware/install", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"result"`) {
		t.Fatalf("install from the inbox: HTTP %d %s", resp.StatusCode, out)
	}
	if st, err := s.c.Status(ctx); err != nil || st.Active != "b" {
		t.Errorf("status: %+v %v", st, err)
	}
}
