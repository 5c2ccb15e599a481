package padsim

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/posd-dev/posd/terminal/abecs"
)

// ErrLineDropped is returned by Firmware.Serve when the pad drops the line
// on purpose (FirmwareOptions.DropAfter).
var ErrLineDropped = errors.New("padsim: line dropped mid-transfer (fault injection)")

// FirmwareOptions configures a Firmware. NewFirmware copies them; they may
// be shared.
//
// A plain value: safe for concurrent use when not modified.
type FirmwareOptions struct {
	// Model is the hardware model the pad reports (FWI). Default "PADSIM-1".
	Model string
	// Version is the firmware version the pad reports until an image is
	// applied. Default "1.0.0".
	Version string
	// MaxSize is the largest image the pad takes, in bytes. Default 16 MiB.
	MaxSize int64
	// DropAfter makes the pad drop the line once, when it has written this
	// many blocks, before it acknowledges the last of them: Serve returns
	// ErrLineDropped, and Handle calls Drop. The pad keeps what it received,
	// so that the host can resume. Default 0: never.
	DropAfter int
	// Drop is how Handle drops the line when the Firmware answers inside
	// another dispatcher (a Pad): typically closing the port. Default: none
	// (the block is then acknowledged normally).
	Drop func()
	// BadBlock makes the pad treat the n-th FWB it receives after an FWS
	// (counted over all transfers) as damaged, once: as if its CRC-32 did
	// not match, it answers 011 and writes nothing. Default 0: never.
	BadBlock int
	// CorruptImage makes the pad's stored image differ from what it received
	// (a flash error): FWE reports another hash and the image is not applied.
	CorruptImage bool
	// Logf receives one line per firmware command. Default: discard.
	Logf func(format string, args ...any)
}

// Firmware is the firmware loader of a simulated PIN pad: it answers FWI,
// FWS, FWB and FWE (see terminal/abecs). Serve runs it alone on a port, as
// a pad's bootloader; Handle answers those commands inside another
// dispatcher. It keeps an interrupted transfer across Serve calls, so a host
// can resume after a dropped line.
//
// A Firmware is safe for concurrent use; Serve must not run twice at once.
type Firmware struct {
	opts    FirmwareOptions
	serving sync.Mutex

	mu       sync.Mutex
	version  string
	size     int64 // the transfer in progress: 0 when none
	sum      [32]byte
	newVer   string
	data     []byte
	received int // blocks written in all transfers
	seen     int // FWB commands seen
	dropped  bool
	badDone  bool
	applied  int
}

// NewFirmware returns a loader with the given options (nil: defaults).
func NewFirmware(opts *FirmwareOptions) (*Firmware, error) {
	var o FirmwareOptions
	if opts != nil {
		o = *opts
	}
	if o.Model == "" {
		o.Model = "PADSIM-1"
	}
	if o.Version == "" {
		o.Version = "1.0.0"
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 16 << 20
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if _, err := abecs.AppendFirmwareInfo(nil, o.Model, o.Version); err != nil {
		return nil, fmt.Errorf("padsim: firmware model or version: %w", err)
	}
	if o.DropAfter < 0 || o.BadBlock < 0 {
		return nil, errors.New("padsim: DropAfter and BadBlock must not be negative")
	}
	return &Firmware{opts: o, version: o.Version}, nil
}

// Version returns the firmware version the pad reports: the last image
// applied, or FirmwareOptions.Version.
func (f *Firmware) Version() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

// Held returns how many bytes of the transfer in progress the pad holds.
func (f *Firmware) Held() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.data))
}

// Blocks returns how many blocks the pad has written, in all transfers.
func (f *Firmware) Blocks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received
}

// Applied returns how many images the pad has applied.
func (f *Firmware) Applied() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Handle answers cmd if it is a firmware loader command; ok is false for any
// other command. It is the hook for a Pad's command dispatch.
func (f *Firmware) Handle(cmd abecs.Command) (resp abecs.Response, ok bool) {
	resp, ok, drop := f.handle(cmd)
	if drop && f.opts.Drop != nil {
		f.opts.Drop()
	}
	return resp, ok
}

func (f *Firmware) handle(cmd abecs.Command) (resp abecs.Response, ok, drop bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	logf := f.opts.Logf
	st := func(code int) abecs.Response { return abecs.Response{ID: cmd.ID, Status: code} }
	count := func(n int64) abecs.Response {
		b, _ := abecs.AppendFirmwareCount(nil, n)
		return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{b}}
	}
	switch cmd.ID {
	case abecs.CmdFirmwareInfo:
		if len(cmd.Blocks) != 0 {
			return st(abecs.StatusInvalidParameter), true, false
		}
		b, _ := abecs.AppendFirmwareInfo(nil, f.opts.Model, f.version)
		logf("FWI -> %s %s", f.opts.Model, f.version)
		return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{b}}, true, false

	case abecs.CmdFirmwareStart:
		if len(cmd.Blocks) != 1 {
			return st(abecs.StatusInvalidParameter), true, false
		}
		size, sum, ver, err := abecs.ParseFirmwareStart(cmd.Blocks[0])
		if err != nil {
			logf("FWS: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
			return st(abecs.StatusInvalidParameter), true, false
		}
		if size > f.opts.MaxSize {
			logf("FWS: %d bytes, more than %d -> 011", size, f.opts.MaxSize)
			return st(abecs.StatusInvalidParameter), true, false
		}
		if f.size == size && f.sum == sum {
			logf("FWS %s, %d bytes: resume at %d -> 000", ver, size, len(f.data))
		} else {
			f.size, f.sum, f.data = size, sum, make([]byte, 0, size)
			logf("FWS %s, %d bytes: new transfer -> 000", ver, size)
		}
		f.newVer = ver
		return count(int64(len(f.data))), true, false

	case abecs.CmdFirmwareBlock:
		if f.size == 0 {
			logf("FWB without FWS -> 010")
			return st(abecs.StatusInvalidCall), true, false
		}
		f.seen++
		off, data, err := abecs.ParseFirmwareBlock(cmd)
		if err == nil && f.opts.BadBlock == f.seen && !f.badDone {
			f.badDone = true
			err = fmt.Errorf("simulated damage: %w", abecs.ErrFirmwareChecksum)
		}
		have := int64(len(f.data))
		switch {
		case err != nil:
			logf("FWB: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
			return st(abecs.StatusInvalidParameter), true, false
		case off < have:
			logf("FWB at %d: already held (%d) -> 000", off, have)
			return count(have), true, false
		case off > have || have+int64(len(data)) > f.size:
			logf("FWB at %d, %d bytes: pad holds %d of %d -> 011", off, len(data), have, f.size)
			return st(abecs.StatusInvalidParameter), true, false
		}
		f.data = append(f.data, data...)
		f.received++
		if f.opts.DropAfter > 0 && f.received == f.opts.DropAfter && !f.dropped {
			f.dropped = true
			logf("FWB at %d: written; dropping the line before the answer", off)
			return count(int64(len(f.data))), true, true
		}
		return count(int64(len(f.data))), true, false

	case abecs.CmdFirmwareFinish:
		switch {
		case len(cmd.Blocks) != 0:
			return st(abecs.StatusInvalidParameter), true, false
		case f.size == 0:
			logf("FWE without FWS -> 010")
			return st(abecs.StatusInvalidCall), true, false
		case int64(len(f.data)) < f.size:
			logf("FWE with %d of %d bytes -> 011", len(f.data), f.size)
			return st(abecs.StatusInvalidParameter), true, false
		}
		if f.opts.CorruptImage {
			f.data[len(f.data)/2] ^= 0x01
		}
		sum := sha256.Sum256(f.data)
		if sum == f.sum {
			f.version = f.newVer
			f.applied++
			logf("FWE: hash matches; version %s applied -> 000", f.version)
		} else {
			logf("FWE: hash differs from the announced one; image not applied -> 000")
		}
		f.size, f.data = 0, nil
		return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{abecs.AppendFirmwareHash(nil, sum)}}, true, false
	}
	return abecs.Response{}, false, false
}

// Serve runs the loader alone on port, as a pad's bootloader: it answers
// the firmware commands, OPN and CLO (000), and any other command with
// ERR010, with the link layer of a Pad (ACK/NAK, resend on NAK, EOT on
// CAN). It returns ctx.Err() when ctx is done, ErrLineDropped when
// DropAfter strikes, or the port's error. Close the port after it returns.
func (f *Firmware) Serve(ctx context.Context, port io.ReadWriter) error {
	if !f.serving.TryLock() {
		return ErrServing
	}
	defer f.serving.Unlock()
	events := make(chan abecs.Event)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		d := abecs.NewDecoder(port)
		for {
			ev, err := d.Next()
			if errors.Is(err, abecs.ErrTimeout) {
				continue
			}
			if err != nil {
				readErr <- err
				return
			}
			select {
			case events <- ev:
			case <-stop:
				return
			}
		}
	}()
	write := func(b []byte) error {
		for len(b) > 0 {
			n, err := port.Write(b)
			if err != nil {
				return fmt.Errorf("padsim: write: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("padsim: write: %w", io.ErrShortWrite)
			}
			b = b[n:]
		}
		return nil
	}
	var last []byte
	sends := 0
	for {
		var ev abecs.Event
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			return fmt.Errorf("padsim: read: %w", err)
		case ev = <-events:
		}
		switch ev.Kind {
		case abecs.KindCAN:
			last = nil
			if err := write([]byte{abecs.EOT}); err != nil {
				return err
			}
			continue
		case abecs.KindNAK:
			if last != nil && sends < maxSends {
				sends++
				if err := write(last); err != nil {
					return err
				}
			}
			continue
		case abecs.KindPacket:
		default:
			continue
		}
		var cmd abecs.Command
		err := ev.Err
		if err == nil {
			cmd, err = abecs.ParseCommand(ev.Data)
		}
		if err != nil {
			if err := write([]byte{abecs.NAK}); err != nil {
				return err
			}
			continue
		}
		if err := write([]byte{abecs.ACK}); err != nil {
			return err
		}
		resp, ok, drop := f.handle(cmd)
		switch {
		case drop:
			return ErrLineDropped
		case !ok && (cmd.ID == abecs.CmdOpen || cmd.ID == abecs.CmdClose):
			resp = abecs.Response{ID: cmd.ID, Status: abecs.StatusOK}
		case !ok:
			f.opts.Logf("%q: not a loader command -> ERR010", cmd.ID)
			resp = abecs.Response{ID: abecs.CmdError, Status: abecs.StatusInvalidCall}
		}
		data, err := resp.Append(nil)
		if err == nil {
			last, err = abecs.AppendFrame(nil, data)
		}
		if err != nil {
			return fmt.Errorf("padsim: %s: encode response: %w", cmd.ID, err)
		}
		sends = 1
		if err := write(last); err != nil {
			return err
		}
	}
}
