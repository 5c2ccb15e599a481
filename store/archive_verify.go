package store

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// ArchiveCheck is the result of [Store.VerifyArchive].
//
// A plain value: safe for concurrent use when not modified.
type ArchiveCheck struct {
	Files, Lines, Records, Batches, Links int
	// Uncommitted counts lines past the head the live file recorded: a run that crashed
	// before its commit wrote them, and the next run commits them (not a problem).
	Uncommitted int
	Problems    []Problem
}

// OK reports whether the archive verified.
func (c ArchiveCheck) OK() bool { return len(c.Problems) == 0 }

// VerifyArchive checks the archive files in dir ("" the default directory) offline: every
// line decodes, the sequence numbers run on across files, each line carries the hash of the
// one before (and the first line of a file names the previous file); and against the live
// file: the head it recorded is in the archive with the same hash, every archive link of
// the live chain (and of the archived links) names lines that are there with the hash it
// recorded and as many records as it removed, and the archived audit links run on to the
// live chain's base. It reads only.
func (s *Store) VerifyArchive(ctx context.Context, dir string) (ArchiveCheck, error) {
	var c ArchiveCheck
	if dir == "" {
		dir = ArchiveDir(s.path)
	}
	add := func(format string, args ...any) {
		c.Problems = append(c.Problems, Problem{fmt.Sprintf(format, args...),
			"the archive was altered, truncated or mixed with another store's: keep the files and the live file as evidence and report it; restore the archive from backup"})
	}
	var head archiveHead
	var base auditBase
	var ranges []*archiveRange
	err := s.view(ctx, "verify archive", func(tx *bolt.Tx) error {
		var err error
		if head, base, err = readHead(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			var l jsonLink
			if jsonUnmarshalStrict(v, &l) == nil && l.Kind == linkArchive && l.Archive != nil {
				ranges = append(ranges, l.Archive)
			}
			return nil
		})
	})
	if err != nil {
		return c, err
	}
	files, err := archiveFiles(dir)
	if err != nil {
		return c, fmt.Errorf("store: verify archive: %w", err)
	}
	c.Files = len(files)
	if head.Seq == 0 && len(files) == 0 {
		return c, nil
	}
	// Pass 1: the chain of lines; the archive links among the archived audit links.
	var seq uint64
	hash, prevFile := "", ""
	for _, name := range files {
		first := true
		err := readLines(filepath.Join(dir, name), 0, func(raw []byte, _ int64) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			l, err := decodeLine(raw)
			if err != nil {
				add("%s: line %d cannot be read (%v)", name, seq+1, err)
				return errStopTail
			}
			switch {
			case l.Seq != seq+1:
				add("%s: line %d follows line %d: lines %d to %d are missing or moved", name, l.Seq, seq, seq+1, l.Seq-1)
			case l.Prev != hash:
				add("%s: line %d does not carry the hash of line %d: one of them was edited", name, l.Seq, seq)
			case first && l.PrevFile != prevFile && seq > 0:
				add("%s: its first line names %q as the previous file, not %q", name, l.PrevFile, prevFile)
			}
			first = false
			seq, hash = l.Seq, sum(raw)
			if l.Seq > head.Seq {
				c.Uncommitted++
				return nil
			}
			c.Lines++
			if l.Kind == lineLink {
				var jl jsonLink
				if jsonUnmarshalStrict(l.Value, &jl) == nil && jl.Kind == linkArchive && jl.Archive != nil {
					ranges = append(ranges, jl.Archive)
				}
			}
			return nil
		})
		if err != nil && err != errStopTail {
			return c, fmt.Errorf("store: verify archive: %w", err)
		}
		if err == errStopTail {
			return c, nil
		}
		prevFile = name
	}
	if seq < head.Seq {
		add("the archive ends at line %d, the live file recorded line %d (%s): its tail was cut or a file is missing", seq, head.Seq, head.File)
	}
	// Pass 2: the lines each archive link names, and the archived audit links.
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].First < ranges[j].First })
	want := map[uint64]string{head.Seq: head.Hash}
	wantFile := map[uint64]string{head.Seq: head.File}
	for _, r := range ranges {
		want[r.Last], wantFile[r.Last] = r.Head, r.File
	}
	counts := make([]int, len(ranges))
	ri := 0
	var linkSeq uint64
	linkPrev := ""
	for _, name := range files {
		err := readLines(filepath.Join(dir, name), 0, func(raw []byte, _ int64) error {
			l, err := decodeLine(raw)
			if err != nil || l.Seq > head.Seq {
				return errStopTail
			}
			if h, ok := want[l.Seq]; ok {
				if h != sum(raw) || wantFile[l.Seq] != name {
					add("%s: line %d is not the line the live file's archive link recorded (edited, or moved from %s)", name, l.Seq, wantFile[l.Seq])
				}
				delete(want, l.Seq)
			}
			for ri < len(ranges) && l.Seq > ranges[ri].Last {
				ri++
			}
			switch l.Kind {
			case lineRecord:
				c.Records++
				if ri < len(ranges) && l.Seq >= ranges[ri].First && ranges[ri].hasTxn(l.Txn) {
					counts[ri]++
				}
				if _, err := decodeRecord(l.Txn, l.Value); err != nil {
					add("%s: line %d: %v", name, l.Seq, err)
				}
			case lineBatch:
				c.Batches++
			case lineLink:
				c.Links++
				if l.Link != linkSeq+1 {
					add("%s: line %d holds audit link %d after link %d: links are missing", name, l.Seq, l.Link, linkSeq)
				}
				var jl jsonLink
				var ja jsonAudit
				switch {
				case jsonUnmarshalStrict(l.Value, &jl) == nil && jl.V == linkVersion:
					if jl.Prev != linkPrev || jl.Seq != l.Link {
						add("%s: line %d: audit link %d does not follow link %d", name, l.Seq, l.Link, linkSeq)
					}
					if jl.Key == "" || s.auditor != nil {
						if mac, err := linkMAC(ctx, s.auditor, jl.Key, jl); err != nil || mac != jl.MAC {
							add("%s: line %d: audit link %d has a wrong MAC (altered)", name, l.Seq, l.Link)
						}
					}
					linkPrev = jl.MAC
				case json.Unmarshal(l.Value, &ja) == nil:
					if ja.Prev != linkPrev || auditHash(l.Link, ja) != ja.Hash {
						add("%s: line %d: audit link %d breaks the hash chain", name, l.Seq, l.Link)
					}
					linkPrev = ja.Hash
				default:
					add("%s: line %d: audit link %d cannot be read", name, l.Seq, l.Link)
				}
				linkSeq = l.Link
			}
			return nil
		})
		if err != nil && err != errStopTail {
			return c, fmt.Errorf("store: verify archive: %w", err)
		}
	}
	for s := range want {
		if s != 0 {
			add("line %d, named by the live file's archive links, is not in the archive", s)
		}
	}
	for i, r := range ranges {
		n := 0
		for _, t := range r.Txns {
			n += int(t[1]-t[0]) + 1
		}
		if counts[i] < n {
			add("lines %d to %d hold %d of the %d records their archive link removed from the live file: records are missing", r.First, r.Last, counts[i], n)
		}
	}
	if base.Seq != linkSeq || base.MAC != linkPrev {
		add("the archived audit links end at link %d, the live chain starts after link %d: links are missing or altered", linkSeq, base.Seq)
	}
	return c, nil
}
