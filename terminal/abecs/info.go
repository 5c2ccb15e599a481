package abecs

import (
	"context"
	"fmt"
	"strings"
)

const (
	infoRequestLen = 2
	infoLen        = 100
)

// Info is what a pad says about itself (GIN with acquirer index 00). It is a
// plain value, safe for concurrent use. None of it is sensitive.
type Info struct {
	Manufacturer string // at most 20 characters
	Model        string // at most 19 characters
	Contactless  bool   // the pad has a contactless reader
	Firmware     string // operating system / firmware version, at most 20 characters
	SpecVersion  string // ABECS specification version, at most 4 characters, e.g. "1.08"
	AppVersion   string // the pad's application (manager) version, at most 16 characters
	Serial       string // serial number, at most 20 characters
}

// String returns a one-line description: manufacturer, model, firmware and
// serial number.
func (i Info) String() string {
	return fmt.Sprintf("%s %s firmware %s serial %s (ABECS %s)", i.Manufacturer, i.Model, i.Firmware, i.Serial, i.SpecVersion)
}

// AppendInfoRequest appends the GIN command block asking for the pad's own
// information (acquirer index 00).
func AppendInfoRequest(dst []byte) []byte { return append(dst, "00"...) }

// ParseInfoRequest parses a GIN command block and returns its acquirer index.
func ParseInfoRequest(block []byte) (int, error) {
	if len(block) != infoRequestLen {
		return 0, fmt.Errorf("%w: GIN block is %d bytes, want %d", ErrFormat, len(block), infoRequestLen)
	}
	idx, ok := parseNum(block)
	if !ok {
		return 0, fmt.Errorf("%w: GIN acquirer index is not 2 digits", ErrFormat)
	}
	return idx, nil
}

// AppendInfo appends the GIN response block for i. It fails when a field is
// too long or not printable ASCII.
func AppendInfo(dst []byte, i Info) ([]byte, error) {
	ctls := " "
	if i.Contactless {
		ctls = "C"
	}
	for _, f := range []struct {
		name, value string
		width       int
	}{
		{"manufacturer", i.Manufacturer, 20}, {"model", i.Model, 19}, {"contactless", ctls, 1},
		{"firmware", i.Firmware, 20}, {"spec version", i.SpecVersion, 4}, {"application version", i.AppVersion, 16},
		{"serial", i.Serial, 20},
	} {
		if len(f.value) > f.width || !printable(f.value) {
			return dst, fmt.Errorf("abecs: GIN: %s must be at most %d printable characters", f.name, f.width)
		}
		dst = appendText(dst, f.value, f.width)
	}
	return dst, nil
}

// ParseInfo parses a GIN response block.
func ParseInfo(block []byte) (Info, error) {
	if len(block) < infoLen || !printable(string(block[:infoLen])) {
		return Info{}, fmt.Errorf("%w: GIN response must be %d printable characters", ErrFormat, infoLen)
	}
	f := func(from, to int) string { return strings.TrimRight(string(block[from:to]), " ") }
	return Info{
		Manufacturer: f(0, 20), Model: f(20, 39), Contactless: block[39] == 'C',
		Firmware: f(40, 60), SpecVersion: f(60, 64), AppVersion: f(64, 80), Serial: f(80, 100),
	}, nil
}

// Info asks the pad who it is (GIN, acquirer index 00).
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.do(ctx, Command{ID: CmdInfo, Blocks: [][]byte{AppendInfoRequest(nil)}}, c.opts.ResponseTimeout, ErrNoResponse)
	if err != nil {
		return Info{}, err
	}
	if len(resp.Blocks) != 1 {
		return Info{}, cmdErrorf(CmdInfo, "response has %d blocks, want 1: %w", len(resp.Blocks), ErrBadResponse)
	}
	info, err := ParseInfo(resp.Blocks[0])
	if err != nil {
		return Info{}, cmdErrorf(CmdInfo, "%w: %w", ErrBadResponse, err)
	}
	return info, nil
}
