package abecs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Commands of the firmware loader. They are posd's own: the ABECS standard
// leaves firmware loading to each pad maker, and this package had no public
// source for one. Both ends in this repository use these layouts (field
// types as in the package documentation):
//
//	FWI  command: no blocks.
//	     response: one block of 32: S16 hardware model, S16 firmware version.
//	FWS  command: one block of 90: N10 image size, H64 image SHA-256,
//	       S16 image version. Starts a transfer, or resumes one of the same
//	       size and hash.
//	     response: one block of 10: N10 bytes the pad already holds of that
//	       image (0 for a new transfer).
//	FWB  command: a block of 18: N10 offset, H8 CRC-32 (IEEE) of the data;
//	       then the data in one or two blocks of 1 to 999 bytes, at most
//	       MaxFirmwareBlock bytes in all.
//	     response: one block of 10: N10 bytes the pad holds now. A block at
//	       an offset below that count is acknowledged again without being
//	       written (its first acknowledgement was lost); one beyond it, or
//	       with a wrong CRC-32, is refused with 011.
//	FWE  command: no blocks. Ends the transfer once the pad holds every byte.
//	     response: one block of 64: H64 SHA-256 of the bytes received. The
//	       pad applies the image only if that is the announced hash.
//
// A pad without a loader answers these with ERR010.
const (
	CmdFirmwareInfo   = "FWI" // hardware model and firmware version
	CmdFirmwareStart  = "FWS" // start or resume an image transfer
	CmdFirmwareBlock  = "FWB" // one block of the image
	CmdFirmwareFinish = "FWE" // end the transfer; the pad reports the hash
)

// MaxFirmwareBlock is the most image bytes one FWB carries: two blocks of
// 999, which with the id and the 18-byte header fit a 2049-byte packet.
const MaxFirmwareBlock = 1998

// Sizes of the firmware loader's fixed blocks.
const (
	fwInfoLen  = 32
	fwStartLen = 90
	fwHeadLen  = 18
	fwCountLen = 10
	fwHashLen  = 64
	fwMaxSize  = 9999999999
	fwTextLen  = 16
)

// ErrFirmwareChecksum is wrapped by ParseFirmwareBlock when a block's data
// does not match its CRC-32.
var ErrFirmwareChecksum = errors.New("abecs: firmware block checksum mismatch")

// AppendFirmwareInfo appends the 32-byte FWI response block.
func AppendFirmwareInfo(dst []byte, model, version string) ([]byte, error) {
	if len(model) == 0 || len(model) > fwTextLen || !printable(model) || strings.TrimSpace(model) != model {
		return dst, fmt.Errorf("%w: FWI: model must be 1-16 printable characters without outer spaces", ErrFormat)
	}
	if len(version) == 0 || len(version) > fwTextLen || !printable(version) || strings.TrimSpace(version) != version {
		return dst, fmt.Errorf("%w: FWI: version must be 1-16 printable characters without outer spaces", ErrFormat)
	}
	dst = appendText(dst, model, fwTextLen)
	return appendText(dst, version, fwTextLen), nil
}

// ParseFirmwareInfo parses the FWI response block.
func ParseFirmwareInfo(b []byte) (model, version string, err error) {
	if len(b) != fwInfoLen || !printable(string(b)) {
		return "", "", fmt.Errorf("%w: FWI: response block is not %d printable bytes", ErrFormat, fwInfoLen)
	}
	model = strings.TrimRight(string(b[:fwTextLen]), " ")
	version = strings.TrimRight(string(b[fwTextLen:]), " ")
	if model == "" || version == "" {
		return "", "", fmt.Errorf("%w: FWI: model or version is blank", ErrFormat)
	}
	return model, version, nil
}

// AppendFirmwareStart appends the 90-byte FWS command block.
func AppendFirmwareStart(dst []byte, size int64, sum [32]byte, version string) ([]byte, error) {
	if size < 1 || size > fwMaxSize {
		return dst, fmt.Errorf("%w: FWS: image size %d is not 1-%d", ErrFormat, size, int64(fwMaxSize))
	}
	if len(version) == 0 || len(version) > fwTextLen || !printable(version) || strings.TrimSpace(version) != version {
		return dst, fmt.Errorf("%w: FWS: version must be 1-16 printable characters without outer spaces", ErrFormat)
	}
	dst = fwAppendCount(dst, size)
	dst = append(dst, strings.ToUpper(hex.EncodeToString(sum[:]))...)
	return appendText(dst, version, fwTextLen), nil
}

// ParseFirmwareStart parses the FWS command block.
func ParseFirmwareStart(b []byte) (size int64, sum [32]byte, version string, err error) {
	if len(b) != fwStartLen {
		return 0, sum, "", fmt.Errorf("%w: FWS: block is %d bytes, want %d", ErrFormat, len(b), fwStartLen)
	}
	n, ok := fwParseCount(b[:fwCountLen])
	if !ok || n < 1 {
		return 0, sum, "", fmt.Errorf("%w: FWS: image size is not 10 digits above zero", ErrFormat)
	}
	if err := fwParseHex(sum[:], b[fwCountLen:fwCountLen+fwHashLen]); err != nil {
		return 0, sum, "", fmt.Errorf("%w: FWS: image hash is not 64 upper-case hex digits", ErrFormat)
	}
	v := b[fwCountLen+fwHashLen:]
	version = strings.TrimRight(string(v), " ")
	if !printable(string(v)) || version == "" || version[0] == ' ' {
		return 0, sum, "", fmt.Errorf("%w: FWS: version is blank or not printable", ErrFormat)
	}
	return n, sum, version, nil
}

// fwAppendCount appends n (0 to fwMaxSize) as 10 decimal digits. It
// does not go through int, which is 32 bits on ARMv7.
func fwAppendCount(dst []byte, n int64) []byte {
	var d [fwCountLen]byte
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, d[:]...)
}

// fwParseCount parses exactly 10 decimal digits.
func fwParseCount(b []byte) (int64, bool) {
	if len(b) != fwCountLen {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// fwParseHex decodes upper-case hex b into dst (len(b) == 2*len(dst)).
func fwParseHex(dst, b []byte) error {
	if len(b) != 2*len(dst) || strings.ToUpper(string(b)) != string(b) {
		return ErrFormat
	}
	_, err := hex.Decode(dst, b)
	return err
}

// FirmwareBlockCommand returns the FWB command carrying data (1 to
// MaxFirmwareBlock bytes) for offset.
func FirmwareBlockCommand(offset int64, data []byte) (Command, error) {
	if len(data) == 0 || len(data) > MaxFirmwareBlock {
		return Command{}, fmt.Errorf("%w: FWB: %d data bytes, want 1-%d", ErrFormat, len(data), MaxFirmwareBlock)
	}
	if offset < 0 || offset > fwMaxSize {
		return Command{}, fmt.Errorf("%w: FWB: offset %d out of range", ErrFormat, offset)
	}
	head := fwAppendCount(nil, offset)
	head = fmt.Appendf(head, "%08X", crc32.ChecksumIEEE(data))
	blocks := [][]byte{head}
	for len(data) > 0 {
		n := min(len(data), 999)
		blocks = append(blocks, data[:n])
		data = data[n:]
	}
	return Command{ID: CmdFirmwareBlock, Blocks: blocks}, nil
}

// ParseFirmwareBlock parses an FWB command: the offset and the data, whose
// CRC-32 it checks (a mismatch wraps ErrFirmwareChecksum).
func ParseFirmwareBlock(cmd Command) (offset int64, data []byte, err error) {
	if cmd.ID != CmdFirmwareBlock || len(cmd.Blocks) < 2 || len(cmd.Blocks) > 3 {
		return 0, nil, fmt.Errorf("%w: FWB: want a header and 1 or 2 data blocks", ErrFormat)
	}
	h := cmd.Blocks[0]
	if len(h) != fwHeadLen {
		return 0, nil, fmt.Errorf("%w: FWB: header is %d bytes, want %d", ErrFormat, len(h), fwHeadLen)
	}
	off, ok := fwParseCount(h[:fwCountLen])
	if !ok {
		return 0, nil, fmt.Errorf("%w: FWB: offset is not 10 digits", ErrFormat)
	}
	var crc [4]byte
	if err := fwParseHex(crc[:], h[fwCountLen:]); err != nil {
		return 0, nil, fmt.Errorf("%w: FWB: CRC-32 is not 8 upper-case hex digits", ErrFormat)
	}
	for _, b := range cmd.Blocks[1:] {
		if len(b) == 0 {
			return 0, nil, fmt.Errorf("%w: FWB: empty data block", ErrFormat)
		}
		data = append(data, b...)
	}
	if len(data) > MaxFirmwareBlock {
		return 0, nil, fmt.Errorf("%w: FWB: %d data bytes, at most %d", ErrFormat, len(data), MaxFirmwareBlock)
	}
	if got := crc32.ChecksumIEEE(data); got != uint32(crc[0])<<24|uint32(crc[1])<<16|uint32(crc[2])<<8|uint32(crc[3]) {
		return 0, nil, fmt.Errorf("FWB: block at %d: %w", off, ErrFirmwareChecksum)
	}
	return off, data, nil
}

// AppendFirmwareCount appends the 10-digit byte count of an FWS or FWB
// response.
func AppendFirmwareCount(dst []byte, n int64) ([]byte, error) {
	if n < 0 || n > fwMaxSize {
		return dst, fmt.Errorf("%w: byte count %d out of range", ErrFormat, n)
	}
	return fwAppendCount(dst, n), nil
}

// ParseFirmwareCount parses the 10-digit byte count of an FWS or FWB
// response.
func ParseFirmwareCount(b []byte) (int64, error) {
	n, ok := fwParseCount(b)
	if len(b) != fwCountLen || !ok {
		return 0, fmt.Errorf("%w: byte count is not 10 digits", ErrFormat)
	}
	return n, nil
}

// AppendFirmwareHash appends the 64-digit FWE response block.
func AppendFirmwareHash(dst []byte, sum [32]byte) []byte {
	return append(dst, strings.ToUpper(hex.EncodeToString(sum[:]))...)
}

// ParseFirmwareHash parses the FWE response block.
func ParseFirmwareHash(b []byte) (sum [32]byte, err error) {
	if err := fwParseHex(sum[:], b); err != nil {
		return sum, fmt.Errorf("%w: FWE: hash is not 64 upper-case hex digits", ErrFormat)
	}
	return sum, nil
}

// fwOneBlock returns the only block of a response to id.
func fwOneBlock(id string, resp Response) ([]byte, error) {
	if len(resp.Blocks) != 1 {
		return nil, cmdErrorf(id, "response has %d blocks, want 1: %w", len(resp.Blocks), ErrBadResponse)
	}
	return resp.Blocks[0], nil
}

// FirmwareInfo asks the pad for its hardware model and firmware version
// (FWI).
func (c *Client) FirmwareInfo(ctx context.Context) (model, version string, err error) {
	resp, err := c.Do(ctx, Command{ID: CmdFirmwareInfo}, 0)
	if err != nil {
		return "", "", err
	}
	b, err := fwOneBlock(CmdFirmwareInfo, resp)
	if err != nil {
		return "", "", err
	}
	model, version, err = ParseFirmwareInfo(b)
	if err != nil {
		return "", "", cmdErrorf(CmdFirmwareInfo, "%w: %w", ErrBadResponse, err)
	}
	return model, version, nil
}

// FirmwareStart starts (or resumes) the transfer of an image of size bytes
// with SHA-256 sum (FWS) and returns how many of its bytes the pad already
// holds.
func (c *Client) FirmwareStart(ctx context.Context, size int64, sum [32]byte, version string) (have int64, err error) {
	block, err := AppendFirmwareStart(nil, size, sum, version)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(ctx, Command{ID: CmdFirmwareStart, Blocks: [][]byte{block}}, 0)
	if err != nil {
		return 0, err
	}
	return c.count(CmdFirmwareStart, resp)
}

// FirmwareBlock sends the image bytes data at offset (FWB) and returns how
// many bytes the pad holds now.
func (c *Client) FirmwareBlock(ctx context.Context, offset int64, data []byte) (have int64, err error) {
	cmd, err := FirmwareBlockCommand(offset, data)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(ctx, cmd, 0)
	if err != nil {
		return 0, err
	}
	return c.count(CmdFirmwareBlock, resp)
}

func (c *Client) count(id string, resp Response) (int64, error) {
	b, err := fwOneBlock(id, resp)
	if err != nil {
		return 0, err
	}
	n, err := ParseFirmwareCount(b)
	if err != nil {
		return 0, cmdErrorf(id, "%w: %w", ErrBadResponse, err)
	}
	return n, nil
}

// FirmwareFinish ends the transfer (FWE) and returns the SHA-256 of the
// bytes the pad received.
func (c *Client) FirmwareFinish(ctx context.Context) (sum [32]byte, err error) {
	resp, err := c.Do(ctx, Command{ID: CmdFirmwareFinish}, 0)
	if err != nil {
		return sum, err
	}
	b, err := fwOneBlock(CmdFirmwareFinish, resp)
	if err != nil {
		return sum, err
	}
	sum, err = ParseFirmwareHash(b)
	if err != nil {
		return sum, cmdErrorf(CmdFirmwareFinish, "%w: %w", ErrBadResponse, err)
	}
	return sum, nil
}
