package boltpage

import (
	"encoding/binary"
	"fmt"
	"io"
)

// NoFreelist is Meta.Freelist of a file whose freelist is not written (bbolt's
// NoFreelistSync): bbolt then walks every page at open to rebuild it.
const NoFreelist = ^uint64(0)

const freelistPage = 0x10

// CheckFreelist checks the freelist page of the commit m, as bbolt reads it at open: a
// freelist page of its own id, inside the file, every free page id between the meta pages
// and the high water mark. bbolt trusts those ids when it allocates pages, so a damaged
// freelist would make it write over pages in use. A file with no written freelist
// (NoFreelist) has nothing to check here.
func CheckFreelist(f io.ReaderAt, size int64, m Meta) error {
	if m.Freelist == NoFreelist {
		return nil
	}
	id, ps := m.Freelist, uint64(m.PageSize)
	if id < 2 || id >= m.HighWater {
		return fmt.Errorf("the freelist page %d is outside the pages in use [2, %d)", id, m.HighWater)
	}
	off := id * ps
	if off+ps > uint64(size) {
		return fmt.Errorf("the freelist page %d is missing: the file ends at byte %d (truncated)", id, size)
	}
	hdr := make([]byte, PageHeader+8)
	if _, err := f.ReadAt(hdr, int64(off)); err != nil {
		return fmt.Errorf("the freelist page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(hdr); got != id {
		return fmt.Errorf("the freelist page %d is overwritten: its header names page %d", id, got)
	}
	if fl := ne.Uint16(hdr[8:]); fl != freelistPage {
		return fmt.Errorf("the freelist page %d is damaged: type %#x is not a freelist page", id, fl)
	}
	n := 1 + uint64(ne.Uint32(hdr[12:]))
	if id+n > m.HighWater || off+n*ps > uint64(size) {
		return fmt.Errorf("the freelist page %d is damaged or truncated: it claims %d overflow pages, past the end of the file", id, n-1)
	}
	count, start := uint64(ne.Uint16(hdr[10:])), uint64(PageHeader)
	if count == 0xFFFF { // the real count is the first element
		count, start = ne.Uint64(hdr[PageHeader:]), PageHeader+8
	}
	if start+count*8 > n*ps {
		return fmt.Errorf("the freelist page %d is damaged: it claims %d free pages, more than fit in its %d pages", id, count, n)
	}
	buf := make([]byte, count*8)
	if _, err := f.ReadAt(buf, int64(off+start)); err != nil {
		return fmt.Errorf("the freelist page %d: %w", id, err)
	}
	for i := range count {
		if fid := ne.Uint64(buf[i*8:]); fid < 2 || fid >= m.HighWater {
			return fmt.Errorf("the freelist page %d is damaged: it names page %d, outside the pages in use [2, %d)", id, fid, m.HighWater)
		}
	}
	return nil
}
