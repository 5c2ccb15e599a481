package padsim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// fwServeLoader runs fw.Serve on a fresh pty pair and returns a client on the
// other end and a channel with Serve's result.
func fwServeLoader(t *testing.T, fw *padsim.Firmware) (*abecs.Client, <-chan error) {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { pair.Close() })
	port, err := abecs.OpenSerial(pair.B, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := fw.Serve(ctx, port)
		if errors.Is(err, padsim.ErrLineDropped) {
			pair.Close() // the cable is pulled: the host sees an I/O error
		}
		port.Close()
		done <- err
	}()
	t.Cleanup(cancel)
	c, err := abecs.Dial(pair.A, 0, &abecs.Options{ACKTimeout: time.Second, ResponseTimeout: 2 * time.Second, AbortTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, done
}

func TestFirmwareDropAndResume(t *testing.T) {
	ctx := context.Background()
	var (
		mu    sync.Mutex
		lines []string
	)
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	fw, err := padsim.NewFirmware(&padsim.FirmwareOptions{DropAfter: 2, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte{1, 2, 3, 4, 5}, 1000)
	sum := sha256.Sum256(img)

	c, done := fwServeLoader(t, fw)
	if _, err := c.FirmwareStart(ctx, int64(len(img)), sum, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FirmwareBlock(ctx, 0, img[:1998]); err != nil {
		t.Fatal(err)
	}
	// The pad writes the second block and drops the line before answering.
	if _, err := c.FirmwareBlock(ctx, 1998, img[1998:3996]); !errors.Is(err, abecs.ErrClosed) {
		t.Fatalf("block 2 on a dropped line: %v", err)
	}
	if err := <-done; !errors.Is(err, padsim.ErrLineDropped) {
		t.Fatalf("Serve = %v, want ErrLineDropped", err)
	}
	if fw.Held() != 3996 {
		t.Fatalf("pad holds %d bytes after the drop, want 3996", fw.Held())
	}

	// The line comes back: the host asks where to go on.
	c, _ = fwServeLoader(t, fw)
	have, err := c.FirmwareStart(ctx, int64(len(img)), sum, "2.0.0")
	if err != nil || have != 3996 {
		t.Fatalf("resume at %d, %v; want 3996", have, err)
	}
	if have, err = c.FirmwareBlock(ctx, have, img[have:]); err != nil || have != int64(len(img)) {
		t.Fatalf("last block: %d, %v", have, err)
	}
	if got, err := c.FirmwareFinish(ctx); err != nil || got != sum {
		t.Fatalf("finish: %x, %v", got, err)
	}
	if fw.Version() != "2.0.0" || fw.Blocks() != 3 || fw.Applied() != 1 {
		t.Errorf("version %s, blocks %d, applied %d; want 2.0.0, 3, 1", fw.Version(), fw.Blocks(), fw.Applied())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"FWS 2.0.0, 5000 bytes: new transfer -> 000", "FWB at 1998: written; dropping the line before the answer", "FWS 2.0.0, 5000 bytes: resume at 3996 -> 000", "FWE: hash matches; version 2.0.0 applied -> 000"}
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("pad log lacks %q:\n%s", w, strings.Join(lines, "\n"))
		}
	}
}

func TestFirmwareCorruptImageNotApplied(t *testing.T) {
	ctx := context.Background()
	fw, err := padsim.NewFirmware(&padsim.FirmwareOptions{CorruptImage: true})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := fwServeLoader(t, fw)
	img := []byte("a small image")
	sum := sha256.Sum256(img)
	if _, err := c.FirmwareStart(ctx, int64(len(img)), sum, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FirmwareBlock(ctx, 0, img); err != nil {
		t.Fatal(err)
	}
	got, err := c.FirmwareFinish(ctx)
	if err != nil || got == sum {
		t.Fatalf("finish: %x, %v; want another hash", got, err)
	}
	if fw.Version() != "1.0.0" || fw.Applied() != 0 {
		t.Errorf("a damaged image was applied: version %s", fw.Version())
	}
}

// Handle is the hook for a Pad's dispatch: it answers loader commands only,
// and drops the line through Drop.
func TestFirmwareHandle(t *testing.T) {
	dropped := 0
	fw, err := padsim.NewFirmware(&padsim.FirmwareOptions{DropAfter: 1, Drop: func() { dropped++ }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fw.Handle(abecs.Command{ID: abecs.CmdOpen}); ok {
		t.Error("Handle took OPN")
	}
	resp, ok := fw.Handle(abecs.Command{ID: abecs.CmdFirmwareInfo})
	if !ok || resp.Status != abecs.StatusOK || len(resp.Blocks) != 1 {
		t.Fatalf("FWI: %+v %v", resp, ok)
	}
	start, _ := abecs.AppendFirmwareStart(nil, 3, sha256.Sum256([]byte("abc")), "9.9.9")
	fw.Handle(abecs.Command{ID: abecs.CmdFirmwareStart, Blocks: [][]byte{start}})
	blk, _ := abecs.FirmwareBlockCommand(0, []byte("abc"))
	if resp, _ := fw.Handle(blk); resp.Status != abecs.StatusOK || dropped != 1 {
		t.Errorf("block with DropAfter 1: status %d, dropped %d", resp.Status, dropped)
	}
	if _, err := padsim.NewFirmware(&padsim.FirmwareOptions{Model: "a model name that is far too long"}); err == nil {
		t.Error("a 33-character model was accepted")
	}
}
