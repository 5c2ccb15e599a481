package abecs

import (
	"context"
	"fmt"
	"time"
)

// MaxTableBlock is the most bytes of records one TLR carries (its block,
// with the 2-digit record count, must fit 999 bytes).
const MaxTableBlock = 999 - 2

// TableRecordLen is the length of each kind of EMV table record (ABECS
// §4.1): an AID record of spec v2.12 (340), a CA public key (611) and a
// revoked certificate (26).
const (
	TableAIDLen     = 340
	TableCAPKLen    = 611
	TableRevokedLen = 26
)

// AppendTableVersionRequest appends the GTS block for acquirer index acq
// (0: all acquirers, "unified" version management).
func AppendTableVersionRequest(dst []byte, acq int) []byte { return appendNum(dst, acq, 2) }

// ParseTableVersionRequest parses a GTS block.
func ParseTableVersionRequest(block []byte) (int, error) {
	n, ok := parseNum(block)
	if len(block) != 2 || !ok {
		return 0, fmt.Errorf("%w: GTS acquirer index is not 2 digits", ErrFormat)
	}
	return n, nil
}

// AppendTableInit appends the TLI block: acquirer index and version.
func AppendTableInit(dst []byte, acq int, version string) ([]byte, error) {
	if acq < 0 || acq > 99 {
		return dst, fmt.Errorf("abecs: TLI: acquirer index %d is not 0-99", acq)
	}
	if len(version) != 10 || !printable(version) {
		return dst, fmt.Errorf("abecs: TLI: table version must be 10 printable characters")
	}
	dst = appendNum(dst, acq, 2)
	return append(dst, version...), nil
}

// ParseTableInit parses a TLI block.
func ParseTableInit(block []byte) (acq int, version string, err error) {
	if len(block) != 12 || !printable(string(block)) {
		return 0, "", fmt.Errorf("%w: TLI block is %d bytes, want 12", ErrFormat, len(block))
	}
	acq, ok := parseNum(block[:2])
	if !ok {
		return 0, "", fmt.Errorf("%w: TLI acquirer index is not 2 digits", ErrFormat)
	}
	return acq, string(block[2:]), nil
}

// ParseTableRecords splits a TLR block into its records: a 2-digit count,
// then records that each start with their own 3-digit length.
func ParseTableRecords(block []byte) ([][]byte, error) {
	if len(block) < 2 {
		return nil, fmt.Errorf("%w: TLR block has no record count", ErrFormat)
	}
	n, ok := parseNum(block[:2])
	if !ok {
		return nil, fmt.Errorf("%w: TLR record count is not 2 digits", ErrFormat)
	}
	rest := block[2:]
	var recs [][]byte
	for i := 0; i < n; i++ {
		if len(rest) < 3 {
			return nil, fmt.Errorf("%w: TLR record %d is cut short", ErrFormat, i+1)
		}
		l, ok := parseNum(rest[:3])
		if !ok || l < 8 || l > len(rest) {
			return nil, fmt.Errorf("%w: TLR record %d length is not valid", ErrFormat, i+1)
		}
		recs = append(recs, rest[:l])
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: TLR block has bytes after its %d records", ErrFormat, n)
	}
	return recs, nil
}

// TableVersion asks the pad for the version of the EMV tables loaded for
// acquirer acq (GTS); "0000000000" means none.
func (c *Client) TableVersion(ctx context.Context, acq int) (string, error) {
	resp, err := c.do(ctx, Command{ID: CmdTabVer, Blocks: [][]byte{AppendTableVersionRequest(nil, acq)}}, c.opts.ResponseTimeout, ErrNoResponse)
	if err != nil {
		return "", err
	}
	if len(resp.Blocks) != 1 || len(resp.Blocks[0]) != 10 || !printable(string(resp.Blocks[0])) {
		return "", cmdErrorf(CmdTabVer, "response is not one 10-character version: %w", ErrBadResponse)
	}
	return string(resp.Blocks[0]), nil
}

// LoadTables loads records (each a complete ABECS table record, starting
// with its length) into the pad under version for acquirer acq: TLI, as
// many TLR as the records need (as many whole records per TLR as fit 999
// bytes), then TLE, which makes them current. The pad holds nothing of a
// load that fails before TLE. A record the pad refuses is named in the
// error by its position, table id and index.
func (c *Client) LoadTables(ctx context.Context, acq int, version string, records [][]byte) error {
	init, err := AppendTableInit(nil, acq, version)
	if err != nil {
		return err
	}
	for i, r := range records {
		if len(r) < 8 || len(r) > MaxTableBlock {
			return fmt.Errorf("abecs: TLR: record %d is %d bytes, want 8 to %d", i+1, len(r), MaxTableBlock)
		}
		if l, ok := parseNum(r[:3]); !ok || l != len(r) {
			return fmt.Errorf("abecs: TLR: record %d does not start with its own length", i+1)
		}
	}
	if _, err := c.do(ctx, Command{ID: CmdTabInit, Blocks: [][]byte{init}}, c.opts.ResponseTimeout, ErrNoResponse); err != nil && !isStatus(err, StatusTableVersion) {
		return err
	}
	for start := 0; start < len(records); {
		end, size := start, 0
		for end < len(records) && end-start < 99 && size+len(records[end]) <= MaxTableBlock {
			size += len(records[end])
			end++
		}
		block := appendNum(make([]byte, 0, 2+size), end-start, 2)
		for _, r := range records[start:end] {
			block = append(block, r...)
		}
		if _, err := c.do(ctx, Command{ID: CmdTabRec, Blocks: [][]byte{block}}, c.opts.ResponseTimeout, ErrNoResponse); err != nil {
			r := records[start]
			return fmt.Errorf("abecs: TLR: records %d-%d (first: table %c acquirer %s index %s) refused: %w", start+1, end, r[3], r[4:6], r[6:8], err)
		}
		start = end
	}
	_, err = c.do(ctx, Command{ID: CmdTabEnd}, c.opts.ResponseTimeout, ErrNoResponse)
	return err
}

// ResumeCard sends the bare GCR (no blocks) that resumes a GCR answered with
// 020 after the tables were loaded.
func (c *Client) ResumeCard(ctx context.Context, timeout time.Duration) (CardData, error) {
	if timeout <= 0 {
		timeout = DefaultCardTimeout
	}
	resp, err := c.do(ctx, Command{ID: CmdGetCard}, timeout, ErrPadTimeout)
	if err != nil {
		return CardData{}, err
	}
	return parseCardResponse(resp)
}

func parseCardResponse(resp Response) (CardData, error) {
	if len(resp.Blocks) != 1 {
		return CardData{}, cmdErrorf(CmdGetCard, "response has %d blocks, want 1: %w", len(resp.Blocks), ErrBadResponse)
	}
	cd, err := ParseCardData(resp.Blocks[0])
	if err != nil {
		return CardData{}, cmdErrorf(CmdGetCard, "%w: %w", ErrBadResponse, err)
	}
	return cd, nil
}

func isStatus(err error, code int) bool {
	se, ok := err.(*StatusError)
	return ok && se.Code == code
}
