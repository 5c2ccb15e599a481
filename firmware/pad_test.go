package firmware_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// padLine is a simulated PIN pad (its loader) at the end of a serial line
// made of a pseudo-terminal pair. The line can be plugged in again after
// the pad drops it.
type padLine struct {
	t    *testing.T
	fw   *padsim.Firmware
	mu   sync.Mutex
	live []func()
	dial int
}

func newPadLine(t *testing.T, opts *padsim.FirmwareOptions) *padLine {
	t.Helper()
	fw, err := padsim.NewFirmware(opts)
	if err != nil {
		t.Fatal(err)
	}
	l := &padLine{t: t, fw: fw}
	t.Cleanup(l.close)
	return l
}

// connect plugs in a fresh line, starts the pad on it and returns the
// host's client. It is also the Redial function.
func (l *padLine) connect(ctx context.Context) (firmware.PadLink, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.live { // unplug the old line
		f()
	}
	l.live = nil
	l.dial++
	pair, err := ptypair.Open()
	if err != nil {
		return nil, err
	}
	port, err := abecs.OpenSerial(pair.B, 0)
	if err != nil {
		pair.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		// When the pad drops the line, the cable is pulled: the host's
		// end sees an I/O error at once.
		if err := l.fw.Serve(sctx, port); errors.Is(err, padsim.ErrLineDropped) {
			pair.Close()
		}
		port.Close()
		close(done)
	}()
	c, err := abecs.Dial(pair.A, 0, &abecs.Options{ACKTimeout: time.Second, ResponseTimeout: 2 * time.Second, AbortTimeout: 50 * time.Millisecond})
	if err != nil {
		cancel()
		port.Close()
		<-done
		pair.Close()
		return nil, err
	}
	l.live = append(l.live, func() { c.Close(); cancel(); port.Close(); <-done; pair.Close() })
	return c, nil
}

func (l *padLine) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.live {
		f()
	}
	l.live = nil
}

func (l *padLine) link() firmware.PadLink {
	l.t.Helper()
	c, err := l.connect(context.Background())
	if err != nil {
		l.t.Skipf("no pseudo-terminals: %v", err)
	}
	return c
}

func TestPadTransferResumesAfterDroppedLine(t *testing.T) {
	ctx := context.Background()
	line := newPadLine(t, &padsim.FirmwareOptions{DropAfter: 7})
	img := image("pad-2.0.0", 20*firmware.MaxPadBlock+123) // 21 blocks
	sum := sha256.Sum256(img)
	var progress []int64
	res, err := firmware.PushPadImage(ctx, line.link(), bytes.NewReader(img), firmware.PadImage{Size: int64(len(img)), SHA256: sum, Version: "2.0.0"},
		&firmware.PadOptions{Redial: line.connect, Progress: func(done, total int64) { progress = append(progress, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumes < 1 || line.dial != res.Resumes+1 {
		t.Errorf("resumes %d, dials %d; want at least 1, and one dial more", res.Resumes, line.dial)
	}
	// The pad wrote each block once, and the seventh, written but never
	// acknowledged, was not sent again: the host sent 21 blocks (unless a
	// slow machine timed out on more acknowledgements).
	if line.fw.Blocks() != 21 || res.Blocks != 20+res.Resumes {
		t.Errorf("pad wrote %d blocks, host sent %d with %d resumes; want 21 and %d", line.fw.Blocks(), res.Blocks, res.Resumes, 20+res.Resumes)
	}
	if line.fw.Version() != "2.0.0" || line.fw.Applied() != 1 {
		t.Errorf("pad version %s, applied %d", line.fw.Version(), line.fw.Applied())
	}
	if progress[len(progress)-1] != int64(len(img)) || slices.Contains(progress, 7*firmware.MaxPadBlock) || !slices.Contains(progress, 8*firmware.MaxPadBlock) {
		t.Errorf("progress does not jump over the dropped block (the pad holds it): %v", progress)
	}

	// Without Redial, the call ends with the error; the next call resumes.
	line2 := newPadLine(t, &padsim.FirmwareOptions{DropAfter: 3})
	info := firmware.PadImage{Size: int64(len(img)), SHA256: sum, Version: "2.0.0"}
	if _, err := firmware.PushPadImage(ctx, line2.link(), bytes.NewReader(img), info, nil); err == nil || !strings.Contains(err.Error(), "the pad keeps what it has") {
		t.Fatalf("transfer on a dropped line without Redial: %v", err)
	}
	res, err = firmware.PushPadImage(ctx, line2.link(), bytes.NewReader(img), info, nil)
	if err != nil || res.StartedAt != 3*firmware.MaxPadBlock || line2.fw.Blocks() != 21 {
		t.Fatalf("second call: %+v, %v; pad wrote %d blocks", res, err, line2.fw.Blocks())
	}
}

func TestPadTransferChecksHashAndDamage(t *testing.T) {
	ctx := context.Background()
	img := image("pad-3", 5000)
	info := firmware.PadImage{Size: int64(len(img)), SHA256: sha256.Sum256(img), Version: "3.0.0"}

	// A block the pad finds damaged is sent again.
	line := newPadLine(t, &padsim.FirmwareOptions{BadBlock: 2})
	res, err := firmware.PushPadImage(ctx, line.link(), bytes.NewReader(img), info, nil)
	if err != nil || res.Resumes != 1 || res.Blocks != 4 || line.fw.Blocks() != 3 {
		t.Fatalf("damaged block: %+v, %v; pad wrote %d", res, err, line.fw.Blocks())
	}

	// A pad whose stored image differs reports another hash.
	line = newPadLine(t, &padsim.FirmwareOptions{CorruptImage: true})
	if _, err := firmware.PushPadImage(ctx, line.link(), bytes.NewReader(img), info, nil); !errors.Is(err, firmware.ErrPadHash) {
		t.Fatalf("corrupt image: %v", err)
	}
	if line.fw.Version() != "1.0.0" {
		t.Errorf("pad applied a damaged image")
	}
}

func TestInstallPad(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t)
	padImg := v.publishWith(release.ReleaseSpec{Signers: v.sig}, firmware.KindPINPad, "1.1.0", 7000, "PADSIM-1")
	dir := t.TempDir()
	m := v.open(dir, nil)
	line := newPadLine(t, &padsim.FirmwareOptions{DropAfter: 2})

	var phases []string
	res, err := m.InstallPad(ctx, firmware.PadInstallRequest{
		InstallRequest: firmware.InstallRequest{Source: v.bundleFile(), Who: "tech-9", Progress: func(p firmware.Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		}},
		Link: line.link(), Redial: line.connect,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "1.1.0" || res.From != "1.0.0" || line.fw.Version() != "1.1.0" || res.Length != int64(len(padImg)) {
		t.Errorf("result %+v, pad version %s", res, line.fw.Version())
	}
	if strings.Join(phases, ",") != "metadata,image,transfer,done" {
		t.Errorf("phases %v", phases)
	}
	st := status(t, m)
	if st.PadVersion != "1.1.0" || st.PadModel != "PADSIM-1" || st.Last.Kind != firmware.EventPINPad || st.Last.Who != "tech-9" || !st.Last.OK {
		t.Errorf("status after pad install: %+v %+v", st, st.Last)
	}
	if st.Active != "a" || st.Slots[1].State != firmware.SlotEmpty {
		t.Errorf("a PIN pad install touched the slots: %+v", st)
	}
	// The pad now has 1.1.0: the same bundle is refused (anti-rollback on
	// the pad's version); a pad of another model is refused.
	if _, err := m.InstallPad(ctx, firmware.PadInstallRequest{InstallRequest: firmware.InstallRequest{Source: v.bundleFile(), Who: "tech-9"}, Link: line.link()}); !errors.Is(err, firmware.ErrOldVersion) {
		t.Errorf("same version again: %v", err)
	}
	other := newPadLine(t, &padsim.FirmwareOptions{Model: "OTHERPAD"})
	if _, err := m.InstallPad(ctx, firmware.PadInstallRequest{InstallRequest: firmware.InstallRequest{Source: v.bundleFile(), Who: "tech-9"}, Link: other.link()}); !errors.Is(err, firmware.ErrHardware) {
		t.Errorf("other pad model: %v", err)
	}
	// A system install does not take the pad image.
	if _, err := m.Install(ctx, firmware.InstallRequest{Source: v.bundleFile(), Who: "tech-9"}); !errors.Is(err, firmware.ErrNoTarget) {
		t.Errorf("system install from a pad-only bundle: %v", err)
	}
}
