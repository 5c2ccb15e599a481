// Package boltpage reads the pages of a bbolt file (go.etcd.io/bbolt, data file version 2)
// without bbolt, so that a damaged page is an error naming it: bbolt's cursors trust the
// pages they follow, panic on some damage, fault on a truncated file and recurse without end
// on a loop of pages. Every read is checked; nothing in a file panics it.
//
// The store runs it at every Open over the pages Open reads (to refuse a damaged file before
// bbolt reads it), over every page in posd store check, and to salvage a damaged file. Like bbolt's internal/common, it is low level access to the pages
// and data structures of the file: what a bucket means is the store's business.
package boltpage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// The layout of the file.
const (
	magic       = 0xED0CDAED
	version     = 2
	PageHeader  = 16 // id uint64, flags uint16, count uint16, overflow uint32
	element     = 16 // leaf: flags, pos, ksize, vsize uint32; branch: pos, ksize uint32, pgid uint64
	branchPage  = 0x01
	leafPage    = 0x02
	BucketLeaf  = 0x01 // Elem.Flags of a leaf element whose value is a bucket header
	bucketHdr   = 16   // root pgid uint64 (0: inline page follows), sequence uint64
	metaSize    = 64   // magic, version, page size, flags, root bucket (16), freelist, pgid, txid, checksum
	maxDepth    = 32
	metaPageLen = PageHeader + metaSize
)

// commonPageSizes are tried, in order, for the second meta page when the first one, which
// gives the page size, is damaged.
var commonPageSizes = []uint64{4096, 8192, 16384, 65536}

// Meta is a bbolt meta page: where the tree of one commit starts.
//
// A plain value: safe for concurrent use when not modified.
type Meta struct {
	PageSize      uint32
	Root, RootSeq uint64 // the root bucket's page and sequence
	Freelist      uint64 // the freelist's page; NoFreelist when the freelist is not written
	HighWater     uint64 // pages at or above this are not in use
	TxID          uint64 // the commit
}

// ParseMeta parses the meta page at the start of page, checking its marker, version and
// checksum.
func ParseMeta(page []byte) (Meta, error) {
	var m Meta
	if len(page) < metaPageLen {
		return m, errors.New("the file ends inside it")
	}
	ne := binary.NativeEndian
	b := page[PageHeader:]
	m.PageSize = ne.Uint32(b[8:])
	m.Root, m.RootSeq = ne.Uint64(b[16:]), ne.Uint64(b[24:])
	m.Freelist, m.HighWater, m.TxID = ne.Uint64(b[32:]), ne.Uint64(b[40:]), ne.Uint64(b[48:])
	h := fnv.New64a()
	h.Write(b[:56])
	switch {
	case ne.Uint32(b[0:]) != magic:
		return m, errors.New("no bbolt marker")
	case ne.Uint32(b[4:]) != version:
		return m, fmt.Errorf("bbolt format version %d, want %d", ne.Uint32(b[4:]), version)
	case h.Sum64() != ne.Uint64(b[56:]):
		return m, errors.New("checksum mismatch")
	}
	return m, nil
}

// Metas are the two meta pages of a file, each with why it is not valid (nil if it is).
//
// A plain value: safe for concurrent use when not modified.
type Metas struct {
	// PageSize is the page size they were read with; 0 when it is not known (meta page 0
	// is damaged and no common page size fits meta page 1).
	PageSize uint64
	Meta     [2]Meta
	Err      [2]error
}

// ReadMetas reads the two meta pages of f, whose pages are pageSize bytes. With pageSize 0
// the page size is meta page 0's, or, when that one is damaged, the first common page size
// at which a meta page says it is that size. A meta page that says its pages are of another
// size than the one it was read with is not valid.
func ReadMetas(f io.ReaderAt, pageSize uint64) Metas {
	ms := Metas{PageSize: pageSize}
	ms.Meta[0], ms.Err[0] = readMeta(f, 0, pageSize)
	switch {
	case pageSize != 0:
	case ms.Err[0] == nil:
		ms.PageSize = uint64(ms.Meta[0].PageSize)
	default:
		// The second meta page is a page size further; without the first one's page size,
		// try the common ones.
		ms.Err[1] = errors.New("no meta page at any common page size")
		for _, ps := range commonPageSizes {
			if m, err := readMeta(f, ps, ps); err == nil {
				ms.PageSize, ms.Meta[1], ms.Err[1] = ps, m, nil
				break
			}
		}
		return ms
	}
	ms.Meta[1], ms.Err[1] = readMeta(f, ms.PageSize, ms.PageSize)
	return ms
}

// readMeta reads the meta page at off of a file whose pages are pageSize bytes (0: any).
func readMeta(f io.ReaderAt, off, pageSize uint64) (Meta, error) {
	page := make([]byte, metaPageLen)
	if _, err := f.ReadAt(page, int64(off)); err != nil {
		return Meta{}, err
	}
	m, err := ParseMeta(page)
	if err == nil && pageSize != 0 && uint64(m.PageSize) != pageSize {
		return m, fmt.Errorf("it says pages are %d bytes, the file's are %d", m.PageSize, pageSize)
	}
	return m, err
}

// Newest returns which meta page bbolt uses: the valid one of the newest commit (0 when
// both are of the same commit); -1 when neither is valid.
func (ms Metas) Newest() int {
	switch {
	case ms.Err[0] == nil && ms.Err[1] == nil:
		if ms.Meta[1].TxID > ms.Meta[0].TxID {
			return 1
		}
		return 0
	case ms.Err[0] == nil:
		return 0
	case ms.Err[1] == nil:
		return 1
	}
	return -1
}
