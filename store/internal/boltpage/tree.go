package boltpage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Tree is what was read of one bucket: its entries in key order, and the key ranges that
// could not be read.
//
// Safe for concurrent use when not modified.
type Tree struct {
	Found   bool   // the bucket's header was read
	Seq     uint64 // the bucket's sequence, when found
	Entries []Elem
	Lost    []Range
}

// Range is a range of keys [Lo, Hi) that could not be read; nil is an open end.
//
// A plain value: safe for concurrent use when not modified.
type Range struct {
	Lo, Hi []byte
	Why    string
}

// Contains reports whether k lies in r.
func (r Range) Contains(k []byte) bool {
	return (r.Lo == nil || bytes.Compare(k, r.Lo) >= 0) && (r.Hi == nil || bytes.Compare(k, r.Hi) < 0)
}

// Overlaps reports whether two key ranges overlap.
func (r Range) Overlaps(b Range) bool {
	return (r.Hi == nil || b.Lo == nil || bytes.Compare(b.Lo, r.Hi) < 0) && (b.Hi == nil || r.Lo == nil || bytes.Compare(r.Lo, b.Hi) < 0)
}

// Merge merges adjacent unreadable ranges (consecutive pages of a tree), so that a
// truncated file is one line of a report per bucket, not one per page.
func Merge(lost []Range) []Range {
	var out []Range
	more := 0
	for _, r := range lost {
		if n := len(out); n > 0 && out[n-1].Hi != nil && bytes.Equal(out[n-1].Hi, r.Lo) {
			out[n-1].Hi = r.Hi
			more++
			continue
		}
		if more > 0 {
			out[len(out)-1].Why += fmt.Sprintf("; and %d more pages after it", more)
			more = 0
		}
		out = append(out, r)
	}
	if more > 0 {
		out[len(out)-1].Why += fmt.Sprintf("; and %d more pages after it", more)
	}
	return out
}

// ListWhy begins the reason a bucket is lost with the page that lists the buckets.
const ListWhy = "the page listing the buckets is unreadable: "

// Walk reads the buckets of the commit m of the file f, size bytes long: the ones named in
// known by name, and the names of the others. A known bucket whose entry in the page that
// lists the buckets is unreadable is returned with everything lost, for a reason beginning
// with [ListWhy]; one missing from a readable list is not returned.
//
// With keep false the buckets' entries are not kept: only what could not be read. The error
// is ctx's: what cannot be read is in the trees.
func Walk(ctx context.Context, f io.ReaderAt, size int64, m Meta, known [][]byte, keep bool) (map[string]*Tree, []string, error) {
	pages := &pages{f: f, size: size, pageSize: uint64(m.PageSize), highWater: m.HighWater, seen: map[uint64]bool{}}
	root := &Tree{Found: true}
	if err := pages.walk(ctx, m.Root, nil, nil, 0, root); err != nil {
		return nil, nil, err
	}
	pages.drop = !keep
	isKnown := map[string]bool{}
	for _, b := range known {
		isKnown[string(b)] = true
	}
	buckets := map[string]*Tree{}
	var unknown []string
	for _, e := range root.Entries {
		name := string(e.Key)
		switch {
		case !isKnown[name]:
			unknown = append(unknown, name)
		case e.Flags&BucketLeaf == 0:
			buckets[name] = &Tree{Lost: []Range{{Why: "its entry is not a bucket"}}}
		default:
			t, err := pages.bucket(ctx, e.Value)
			if err != nil {
				return nil, nil, err
			}
			buckets[name] = t
		}
	}
	for _, r := range root.Lost {
		for _, b := range known {
			if buckets[string(b)] == nil && r.Contains(b) {
				buckets[string(b)] = &Tree{Lost: []Range{{Why: ListWhy + r.Why}}}
			}
		}
	}
	return buckets, unknown, nil
}

func (p *pages) walk(ctx context.Context, id uint64, lo, hi []byte, depth int, t *Tree) error {
	if p.reads++; p.reads%256 == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if depth > maxDepth {
		t.Lost = append(t.Lost, Range{lo, hi, fmt.Sprintf("page %d is nested too deep (a loop in the tree)", id)})
		return nil
	}
	buf, err := p.read(id)
	if err != nil {
		t.Lost = append(t.Lost, Range{lo, hi, err.Error()})
		return nil
	}
	leaf, elems, err := ParsePage(buf, lo, hi)
	if err != nil {
		t.Lost = append(t.Lost, Range{lo, hi, fmt.Sprintf("page %d is damaged: %v", id, err)})
		return nil
	}
	if leaf {
		if !p.drop {
			t.Entries = append(t.Entries, elems...)
		}
		return nil
	}
	for i, e := range elems {
		chi := hi
		if i+1 < len(elems) {
			chi = elems[i+1].Key
		}
		if err := p.walk(ctx, e.Child, e.Key, chi, depth+1, t); err != nil {
			return err
		}
	}
	return nil
}

// bucket reads the bucket whose header (and inline page) is v. A panic while reading it, a
// bug here since every read is checked, loses the bucket, not the walk.
func (p *pages) bucket(ctx context.Context, v []byte) (t *Tree, err error) {
	t = &Tree{}
	defer func() {
		if r := recover(); r != nil {
			t = &Tree{Found: t.Found, Seq: t.Seq, Lost: []Range{{Why: fmt.Sprintf("reading it failed: %v", r)}}}
			err = nil
		}
	}()
	if len(v) < bucketHdr {
		t.Lost = append(t.Lost, Range{Why: fmt.Sprintf("its header is %d bytes, want %d", len(v), bucketHdr)})
		return t, nil
	}
	t.Found, t.Seq = true, binary.NativeEndian.Uint64(v[8:])
	root := binary.NativeEndian.Uint64(v)
	if root != 0 {
		return t, p.walk(ctx, root, nil, nil, 0, t)
	}
	leaf, elems, perr := ParsePage(v[bucketHdr:], nil, nil)
	if perr == nil && !leaf {
		perr = errors.New("an inline bucket holds a branch page")
	}
	if perr != nil {
		t.Lost = append(t.Lost, Range{Why: fmt.Sprintf("its inline page is damaged: %v", perr)})
		return t, nil
	}
	t.Entries = elems
	return t, nil
}
