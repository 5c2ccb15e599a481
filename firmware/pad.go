package firmware

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MaxPadBlock is the largest block of a PIN pad transfer: two ABECS blocks
// of 999 bytes, which fit one 2049-byte frame with the block header.
const MaxPadBlock = 1998

// Errors of the PIN pad transfer.
var (
	// ErrPadHash: after the transfer the pad reports another SHA-256 than
	// the image's; it does not apply the image. Transfer it again.
	ErrPadHash = errors.New("the PIN pad reports another hash than the image's")
	// ErrPadProtocol: the pad answered something impossible (it holds more
	// bytes than the image has, or fewer than it just acknowledged).
	ErrPadProtocol = errors.New("the PIN pad's answer makes no sense")
)

// PadLink is the PIN pad's firmware loader, as the transfer needs it.
// *abecs.Client implements it (terminal/abecs/firmware.go); this package
// does not import the terminal packages. PushPadImage calls one method at a
// time; an implementation need not be safe for concurrent use.
type PadLink interface {
	// FirmwareInfo returns the pad's hardware model and firmware version.
	FirmwareInfo(ctx context.Context) (model, version string, err error)
	// FirmwareStart announces an image. The pad answers how many of its
	// bytes it already holds from an interrupted transfer of the same
	// image (same size and hash), 0 for a new one.
	FirmwareStart(ctx context.Context, size int64, sum [32]byte, version string) (have int64, err error)
	// FirmwareBlock sends the bytes at offset, with a checksum. The pad
	// answers how many bytes it holds now.
	FirmwareBlock(ctx context.Context, offset int64, data []byte) (have int64, err error)
	// FirmwareFinish ends the transfer. The pad answers the SHA-256 of the
	// bytes it received; it applies the image only if that is the
	// announced hash.
	FirmwareFinish(ctx context.Context) (sum [32]byte, err error)
}

// PadImage describes an image to push. It is a plain value, safe for
// concurrent use.
type PadImage struct {
	Size    int64    // bytes
	SHA256  [32]byte // hash the pad must report at the end
	Version string   // firmware version, told to the pad
}

// PadOptions configures PushPadImage. A nil *PadOptions means the defaults.
// PushPadImage copies it, so it is safe for concurrent use.
type PadOptions struct {
	// BlockSize is the bytes sent per block, 1 to MaxPadBlock. Default
	// MaxPadBlock.
	BlockSize int
	// Redial reconnects to the pad after a failure (a dropped line, a block
	// the pad refused); the transfer then resumes from the pad's last
	// acknowledged byte. Default nil: the link in hand is asked again
	// once, and if that fails PushPadImage returns the error; calling it
	// again later resumes.
	Redial func(ctx context.Context) (PadLink, error)
	// MaxResumes is how many times one PushPadImage call recovers from a
	// failure. Default 5.
	MaxResumes int
	// Progress, when set, is called after each acknowledged block with the
	// bytes the pad holds and the image size.
	Progress func(done, total int64)
}

// PadResult says how a transfer went. It is a plain value, safe for
// concurrent use.
type PadResult struct {
	StartedAt int64 // bytes the pad already held when this call began (a resume)
	Resumes   int   // recoveries from failures within this call
	Blocks    int   // blocks sent
}

// PushPadImage sends img to the pad over link in blocks, each acknowledged
// with the pad's byte count, resuming from the pad's count after a failure,
// and checks the hash the pad reports at the end. It blocks until done, ctx
// is done or recovery gives up.
func PushPadImage(ctx context.Context, link PadLink, img io.ReaderAt, info PadImage, opts *PadOptions) (PadResult, error) {
	var o PadOptions
	if opts != nil {
		o = *opts
	}
	if o.BlockSize <= 0 || o.BlockSize > MaxPadBlock {
		o.BlockSize = MaxPadBlock
	}
	if o.MaxResumes <= 0 {
		o.MaxResumes = 5
	}
	var res PadResult
	if info.Size < 1 {
		return res, fmt.Errorf("firmware: pad image: size %d is not positive", info.Size)
	}
	have, err := link.FirmwareStart(ctx, info.Size, info.SHA256, info.Version)
	if err != nil {
		return res, fmt.Errorf("firmware: pad: start transfer: %w", err)
	}
	if have < 0 || have > info.Size {
		return res, fmt.Errorf("firmware: pad: holds %d bytes of a %d-byte image: %w", have, info.Size, ErrPadProtocol)
	}
	res.StartedAt = have
	buf := make([]byte, o.BlockSize)
	// resume gets a working link after a failure, and the pad's count.
	resume := func(cause error) error {
		for {
			if res.Resumes >= o.MaxResumes {
				return fmt.Errorf("firmware: pad: gave up after %d resumes: %w", res.Resumes, cause)
			}
			if err := context.Cause(ctx); err != nil {
				return err
			}
			res.Resumes++
			if o.Redial != nil {
				l, err := o.Redial(ctx)
				if err != nil {
					cause = fmt.Errorf("reconnect: %w", err)
					continue
				}
				link = l
			}
			h, err := link.FirmwareStart(ctx, info.Size, info.SHA256, info.Version)
			if err != nil {
				if o.Redial == nil {
					return fmt.Errorf("firmware: pad: resume after %v: %w (try again: the pad keeps what it has)", cause, err)
				}
				cause = err
				continue
			}
			if h < 0 || h > info.Size {
				return fmt.Errorf("firmware: pad: holds %d bytes of a %d-byte image: %w", h, info.Size, ErrPadProtocol)
			}
			have = h
			return nil
		}
	}
	for {
		if have < info.Size {
			n := min(int64(o.BlockSize), info.Size-have)
			if _, err := img.ReadAt(buf[:n], have); err != nil && err != io.EOF {
				return res, fmt.Errorf("firmware: pad: read image at %d: %w", have, err)
			}
			h, err := link.FirmwareBlock(ctx, have, buf[:n])
			res.Blocks++
			if err != nil {
				if ctx.Err() != nil {
					return res, context.Cause(ctx)
				}
				if err := resume(err); err != nil {
					return res, err
				}
				continue
			}
			if h < have || h > info.Size {
				return res, fmt.Errorf("firmware: pad: answered %d bytes after a block at %d: %w", h, have, ErrPadProtocol)
			}
			if h == have {
				if err := resume(fmt.Errorf("the pad did not take the block at %d: %w", have, ErrPadProtocol)); err != nil {
					return res, err
				}
				continue
			}
			have = h
			if o.Progress != nil {
				o.Progress(have, info.Size)
			}
			continue
		}
		sum, err := link.FirmwareFinish(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return res, context.Cause(ctx)
			}
			if err := resume(err); err != nil {
				return res, err
			}
			continue
		}
		if sum != info.SHA256 {
			return res, fmt.Errorf("firmware: pad: reports SHA-256 %x..., the image's is %x...: %w", sum[:4], info.SHA256[:4], ErrPadHash)
		}
		return res, nil
	}
}

// PadInstallRequest asks for a PIN pad firmware install from a bundle. It
// is plain data, used by one call at a time (not for concurrent use).
type PadInstallRequest struct {
	InstallRequest
	// Link is the pad. Required.
	Link PadLink
	// Redial, when set, reconnects to the pad after a dropped line (see
	// PadOptions.Redial).
	Redial func(ctx context.Context) (PadLink, error)
}

// InstallPad verifies a bundle as Install does, picks the newest PIN pad
// image for the model the pad reports, checks that it is newer than the
// pad's version, and pushes it to the pad with PushPadImage. The image is
// verified in full (into a temporary file in the state directory) before
// the first block leaves.
func (m *Manager) InstallPad(ctx context.Context, req PadInstallRequest) (Result, error) {
	if strings.TrimSpace(req.Who) == "" {
		return Result{}, fmt.Errorf("firmware: pinpad install: %w", ErrNoWho)
	}
	if req.Link == nil {
		return Result{}, errors.New("firmware: pinpad install: no PIN pad link")
	}
	ctx, err := m.begin(ctx, "pinpad")
	if err != nil {
		return Result{}, fmt.Errorf("firmware: pinpad install: %w", err)
	}
	defer m.end()
	res, err := m.installPad(ctx, req)
	ev := Event{Kind: EventPINPad, Who: req.Who, Source: sourceName(req.Source), Version: res.Version, From: res.From}
	return res, m.recordEnd(ev, res, err, "pinpad install "+sourceName(req.Source))
}

func (m *Manager) installPad(ctx context.Context, req PadInstallRequest) (Result, error) {
	res := Result{Op: "pinpad"}
	model, version, err := req.Link.FirmwareInfo(ctx)
	if err != nil {
		return res, fmt.Errorf("ask the PIN pad for its model and version: %w", err)
	}
	res.From = version
	installed, err := ParseVersion(version)
	if err != nil {
		return res, fmt.Errorf("the PIN pad reports version %q: %w", clip(version), err)
	}
	if !ValidModel(model) {
		return res, fmt.Errorf("the PIN pad reports model %q: %w", clip(model), ErrFormat)
	}
	m.mu.Lock()
	m.padModel, m.padVersion = model, version
	m.mu.Unlock()
	v, err := m.verifyBundle(ctx, req.InstallRequest, KindPINPad, model, installed, m.opts.MaxPadImageSize)
	if err != nil {
		return res, err
	}
	defer v.src.Close()
	ch := v.target
	res.Target, res.Version = ch.Name, ch.Version.String()
	res.SHA256, res.Length = hex.EncodeToString(ch.SHA256[:]), ch.Target.Length

	tmp := filepath.Join(m.dir, padTemp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp)
	defer f.Close()
	p := Progress{Op: "pinpad", Phase: "image", Target: ch.Name, Version: res.Version, Total: ch.Target.Length}
	m.report(req.Progress, p)
	buf := make([]byte, 256<<10)
	if err := copyVerified(ctx, f, v.image, targetsDir+ch.Name, ch.Target.Length, ch.SHA256, buf, func(n int64) {
		p.Done = n
		m.report(req.Progress, p)
	}); err != nil {
		return res, err
	}
	if err := writeJSONFile(filepath.Join(m.dir, trustFile), v.trust, m.failpoint); err != nil {
		return res, fmt.Errorf("save %s: %w", trustFile, err)
	}
	m.mu.Lock()
	m.trust = v.trust
	m.mu.Unlock()

	p.Phase, p.Done = "transfer", 0
	m.report(req.Progress, p)
	pr, err := PushPadImage(ctx, req.Link, f, PadImage{Size: ch.Target.Length, SHA256: ch.SHA256, Version: res.Version}, &PadOptions{
		Redial: req.Redial,
		Progress: func(done, total int64) {
			p.Done = done
			m.report(req.Progress, p)
		},
	})
	if err != nil {
		return res, err
	}
	m.mu.Lock()
	m.padVersion = res.Version
	m.mu.Unlock()
	p.Phase = "done"
	m.report(req.Progress, p)
	res.Message = fmt.Sprintf("PIN pad %s: %s transferred and verified by its hash (%d blocks", model, res.Version, pr.Blocks)
	if pr.StartedAt > 0 || pr.Resumes > 0 {
		res.Message += fmt.Sprintf(", resumed at byte %d, %d reconnects", pr.StartedAt, pr.Resumes)
	}
	res.Message += ")"
	return res, nil
}
