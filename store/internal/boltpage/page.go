package boltpage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// pages reads the pages of a bbolt file with ReadAt, checking each.
type pages struct {
	f         io.ReaderAt
	size      int64
	pageSize  uint64
	highWater uint64 // pages at or above this are not in use
	seen      map[uint64]bool
	drop      bool // keep no leaf entries: only check that the pages read
	reads     int
}

func (p *pages) read(id uint64) ([]byte, error) {
	switch {
	case id < 2:
		return nil, fmt.Errorf("page %d is a meta page, named as part of a tree", id)
	case id >= p.highWater:
		return nil, fmt.Errorf("page %d is beyond the last page in use (%d)", id, p.highWater-1)
	case p.seen[id]:
		return nil, fmt.Errorf("page %d is reached twice (a loop in the tree)", id)
	}
	p.seen[id] = true
	off := id * p.pageSize
	if off+p.pageSize > uint64(p.size) {
		return nil, fmt.Errorf("page %d is missing: the file ends at byte %d (truncated)", id, p.size)
	}
	hdr := make([]byte, PageHeader)
	if _, err := p.f.ReadAt(hdr, int64(off)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d is overwritten: its header names page %d", id, got)
	}
	if fl := ne.Uint16(hdr[8:]); fl != branchPage && fl != leafPage {
		return nil, fmt.Errorf("page %d is damaged: type %#x is neither a branch nor a leaf page", id, fl)
	}
	n := 1 + uint64(ne.Uint32(hdr[12:]))
	if id+n > p.highWater || off+n*p.pageSize > uint64(p.size) {
		return nil, fmt.Errorf("page %d is damaged or truncated: it claims %d overflow pages, past the end of the file", id, n-1)
	}
	for i := uint64(1); i < n; i++ {
		if p.seen[id+i] {
			return nil, fmt.Errorf("page %d overlaps page %d", id, id+i)
		}
		p.seen[id+i] = true
	}
	buf := make([]byte, n*p.pageSize)
	if _, err := p.f.ReadAt(buf, int64(off)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

// Elem is one element of a leaf page (Key, Value, Flags) or a branch page (Key, Child).
//
// A plain value: safe for concurrent use when not modified.
type Elem struct {
	Flags      uint32
	Key, Value []byte
	Child      uint64
}

// ParsePage returns the elements of a branch or leaf page (an inline bucket's page too),
// checking that each lies inside the page and that the keys increase and lie in [lo, hi),
// as bbolt's own check does. The elements' keys and values are slices of buf.
func ParsePage(buf, lo, hi []byte) (leaf bool, elems []Elem, err error) {
	if len(buf) < PageHeader {
		return false, nil, errors.New("shorter than a page header")
	}
	ne := binary.NativeEndian
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	leaf = flags == leafPage
	switch {
	case !leaf && flags != branchPage:
		return false, nil, fmt.Errorf("type %#x is neither a branch nor a leaf page", flags)
	case PageHeader+count*element > len(buf):
		return false, nil, fmt.Errorf("it claims %d elements, more than fit", count)
	case !leaf && count == 0:
		return false, nil, errors.New("an empty branch page")
	}
	prev := lo
	for i := range count {
		eo := uint64(PageHeader + i*element)
		var e Elem
		var start, ksize, vsize uint64
		if leaf {
			e.Flags = ne.Uint32(buf[eo:])
			start, ksize, vsize = eo+uint64(ne.Uint32(buf[eo+4:])), uint64(ne.Uint32(buf[eo+8:])), uint64(ne.Uint32(buf[eo+12:]))
			if e.Flags&^BucketLeaf != 0 {
				return false, nil, fmt.Errorf("element %d has unknown flags %#x", i, e.Flags)
			}
		} else {
			start, ksize = eo+uint64(ne.Uint32(buf[eo:])), uint64(ne.Uint32(buf[eo+4:]))
			e.Child = ne.Uint64(buf[eo+8:])
		}
		if start+ksize+vsize > uint64(len(buf)) {
			return false, nil, fmt.Errorf("element %d lies outside the page", i)
		}
		e.Key, e.Value = buf[start:start+ksize], buf[start+ksize:start+ksize+vsize]
		switch {
		case ksize == 0:
			return false, nil, fmt.Errorf("element %d has an empty key", i)
		case prev != nil && i == 0 && bytes.Compare(e.Key, prev) < 0,
			prev != nil && i > 0 && bytes.Compare(e.Key, prev) <= 0,
			hi != nil && bytes.Compare(e.Key, hi) >= 0:
			return false, nil, fmt.Errorf("element %d's key is out of order", i)
		}
		prev = e.Key
		elems = append(elems, e)
	}
	return leaf, elems, nil
}
