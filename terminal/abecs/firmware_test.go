package abecs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

func TestFirmwareBlockLayouts(t *testing.T) {
	sum := sha256.Sum256([]byte("image"))
	b, err := abecs.AppendFirmwareStart(nil, 1234567890, sum, "2.10.3")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 90 || !bytes.HasPrefix(b, []byte("1234567890")) || !bytes.HasSuffix(b, []byte("2.10.3          ")) {
		t.Errorf("FWS block = %q", b)
	}
	size, gotSum, ver, err := abecs.ParseFirmwareStart(b)
	if err != nil || size != 1234567890 || gotSum != sum || ver != "2.10.3" {
		t.Errorf("ParseFirmwareStart = %d, %x, %q, %v", size, gotSum, ver, err)
	}
	// Sizes above 2^31 survive (int is 32 bits on ARMv7).
	b, _ = abecs.AppendFirmwareStart(nil, 9999999999, sum, "1.0.0")
	if size, _, _, err := abecs.ParseFirmwareStart(b); err != nil || size != 9999999999 {
		t.Errorf("large size: %d, %v", size, err)
	}

	data := bytes.Repeat([]byte{0x16, 0x13, 0x17, 0x00, 0xFF}, 400) // 2000 bytes: too many
	if _, err := abecs.FirmwareBlockCommand(0, data); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("2000-byte block: %v", err)
	}
	data = data[:abecs.MaxFirmwareBlock]
	cmd, err := abecs.FirmwareBlockCommand(4096, data)
	if err != nil {
		t.Fatal(err)
	}
	packet, err := cmd.Append(nil)
	if err != nil || len(packet) > abecs.MaxData {
		t.Fatalf("FWB packet is %d bytes (max %d): %v", len(packet), abecs.MaxData, err)
	}
	frame, err := abecs.AppendFrame(nil, packet)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := abecs.NewDecoder(bytes.NewReader(frame)).Next()
	if err != nil || ev.Err != nil {
		t.Fatalf("decode FWB frame: %v %v", err, ev.Err)
	}
	back, err := abecs.ParseCommand(ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	off, got, err := abecs.ParseFirmwareBlock(back)
	if err != nil || off != 4096 || !bytes.Equal(got, data) {
		t.Fatalf("ParseFirmwareBlock = %d, %d bytes, %v", off, len(got), err)
	}
	back.Blocks[2][5] ^= 0x40 // damage after the frame CRC: only the CRC-32 sees it
	if _, _, err := abecs.ParseFirmwareBlock(back); !errors.Is(err, abecs.ErrFirmwareChecksum) || !strings.Contains(err.Error(), "block at 4096") {
		t.Errorf("damaged block: %v", err)
	}

	info, _ := abecs.AppendFirmwareInfo(nil, "PAD-X", "3.2.1")
	if m, v, err := abecs.ParseFirmwareInfo(info); err != nil || m != "PAD-X" || v != "3.2.1" {
		t.Errorf("ParseFirmwareInfo = %q %q %v", m, v, err)
	}
	if _, err := abecs.AppendFirmwareInfo(nil, "", "1"); err == nil {
		t.Error("blank model accepted")
	}
	if _, err := abecs.ParseFirmwareHash(bytes.Repeat([]byte("a"), 64)); err == nil {
		t.Error("lower-case hash accepted")
	}
}

// fwLoader runs a padsim loader on one end of a pty pair and returns a client
// on the other.
func fwLoader(t *testing.T, fw *padsim.Firmware) *abecs.Client {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { pair.Close() })
	padPort, err := abecs.OpenSerial(pair.B, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fw.Serve(ctx, padPort); close(done) }()
	t.Cleanup(func() { cancel(); padPort.Close(); <-done })
	c, err := abecs.Dial(pair.A, 0, &abecs.Options{ACKTimeout: time.Second, ResponseTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFirmwareCommands(t *testing.T) {
	ctx := context.Background()
	fw, err := padsim.NewFirmware(&padsim.FirmwareOptions{Model: "PAD-X", Version: "1.0.0", BadBlock: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := fwLoader(t, fw)
	if m, v, err := c.FirmwareInfo(ctx); err != nil || m != "PAD-X" || v != "1.0.0" {
		t.Fatalf("FirmwareInfo = %q %q %v", m, v, err)
	}
	img := bytes.Repeat([]byte("\x16\x13\x17firmware"), 500) // 5500 bytes, control bytes included
	sum := sha256.Sum256(img)
	if _, err := c.FirmwareBlock(ctx, 0, img[:100]); !errors.Is(err, abecs.ErrInvalidCall) {
		t.Errorf("block before start: %v", err)
	}
	have, err := c.FirmwareStart(ctx, int64(len(img)), sum, "1.1.0")
	if err != nil || have != 0 {
		t.Fatalf("FirmwareStart = %d, %v", have, err)
	}
	if have, err = c.FirmwareBlock(ctx, 0, img[:1998]); err != nil || have != 1998 {
		t.Fatalf("block 1: %d, %v", have, err)
	}
	// The pad finds block 2 damaged (BadBlock) and refuses it once.
	if _, err := c.FirmwareBlock(ctx, 1998, img[1998:3996]); !errors.Is(err, abecs.ErrInvalidParameter) {
		t.Fatalf("damaged block 2: %v", err)
	}
	// A block the pad already holds is acknowledged again, not written.
	if have, err = c.FirmwareBlock(ctx, 0, img[:1998]); err != nil || have != 1998 {
		t.Fatalf("repeated block 1: %d, %v", have, err)
	}
	// A block beyond what the pad holds is refused.
	if _, err := c.FirmwareBlock(ctx, 3996, img[3996:]); !errors.Is(err, abecs.ErrInvalidParameter) {
		t.Fatalf("block with a gap: %v", err)
	}
	if _, err := c.FirmwareFinish(ctx); !errors.Is(err, abecs.ErrInvalidParameter) {
		t.Fatalf("finish before the last byte: %v", err)
	}
	// Starting again with the same image resumes.
	if have, err = c.FirmwareStart(ctx, int64(len(img)), sum, "1.1.0"); err != nil || have != 1998 {
		t.Fatalf("resume = %d, %v", have, err)
	}
	for have < int64(len(img)) {
		end := min(have+1998, int64(len(img)))
		if have, err = c.FirmwareBlock(ctx, have, img[have:end]); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.FirmwareFinish(ctx)
	if err != nil || got != sum {
		t.Fatalf("FirmwareFinish = %x, %v", got, err)
	}
	if _, v, _ := c.FirmwareInfo(ctx); v != "1.1.0" || fw.Applied() != 1 || fw.Blocks() != 3 {
		t.Errorf("after the transfer: version %q, applied %d, blocks %d", v, fw.Applied(), fw.Blocks())
	}
	// The loader answers other commands with ERR010.
	if _, err := c.Do(ctx, abecs.Command{ID: "DSP", Blocks: [][]byte{make([]byte, 32)}}, 0); !errors.Is(err, abecs.ErrInvalidCall) {
		t.Errorf("DSP to the loader: %v", err)
	}
}

func FuzzParseFirmwareBlock(f *testing.F) {
	cmd, _ := abecs.FirmwareBlockCommand(10, []byte("hello firmware"))
	data, _ := cmd.Append(nil)
	f.Add(data)
	f.Add([]byte("FWB0180000000000FFFFFFFF001x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := abecs.ParseCommand(b)
		if err != nil {
			return
		}
		off, data, err := abecs.ParseFirmwareBlock(cmd)
		if err != nil {
			return
		}
		again, err := abecs.FirmwareBlockCommand(off, data)
		if err != nil {
			t.Fatalf("a parsed block does not encode again: %v", err)
		}
		if o2, d2, err := abecs.ParseFirmwareBlock(again); err != nil || o2 != off || !bytes.Equal(d2, data) {
			t.Fatalf("round trip: %d %q %v", o2, d2, err)
		}
	})
}

func FuzzParseFirmwareStart(f *testing.F) {
	b, _ := abecs.AppendFirmwareStart(nil, 42, sha256.Sum256(nil), "1.2.3")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		size, sum, ver, err := abecs.ParseFirmwareStart(b)
		if err != nil {
			return
		}
		again, err := abecs.AppendFirmwareStart(nil, size, sum, ver)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip of %q: %q, %v", b, again, err)
		}
	})
}

func FuzzParseFirmwareInfo(f *testing.F) {
	b, _ := abecs.AppendFirmwareInfo(nil, "PADSIM-1", "1.0.0")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, v, err := abecs.ParseFirmwareInfo(b)
		if err != nil {
			return
		}
		if _, err := abecs.AppendFirmwareInfo(nil, m, v); err != nil && !strings.HasPrefix(m, " ") && !strings.HasPrefix(v, " ") {
			t.Fatalf("parsed %q %q does not encode again: %v", m, v, err)
		}
	})
}
