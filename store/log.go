package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// The write-ahead log: a preallocated file beside the bbolt file (path + "-wal") to which
// the writes on a sale's path (Begin, Finish, NextSTAN) are appended, one record and one
// fdatasync each. The records are folded into the bbolt file later, many per commit; see
// the package documentation, "Durability".
//
// File layout: a 64-byte header (magic, version, the id of the store the log belongs to),
// then records from offset logHeaderSize:
//
//	length  uint32 big endian: of the payload
//	crc     uint32 big endian: CRC-32C of lsn and payload
//	lsn     uint64 big endian: log sequence number, +1 per record, never reused
//	payload length bytes: a logOp in JSON
//
// After a fold the log is rewound: the next record goes to offset logHeaderSize again and
// the bytes of folded records are zeroed. Reading stops at the first record that is short,
// fails its CRC or does not continue the LSN sequence, so a torn last write and any older
// bytes after it are never taken for records.
const (
	logSuffix     = "-wal"
	logMagic      = "posd-wal"
	logVersion    = 1
	logHeaderSize = 64
	logRecHeader  = 16
	// logSize is the preallocated size. Writing inside an already allocated file lets
	// fdatasync skip the file's metadata.
	logSize = 1 << 20
	// storeIDLen is the length of the random id that ties a log to its bbolt file.
	storeIDLen = 16
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errLogFull means a record does not fit in what is left of the log: fold, then retry.
var errLogFull = errors.New("log full")

// logFile is the open log. The Store's mu guards it.
type logFile struct {
	f    *os.File
	path string
	off  int64 // where the next record goes
}

// logEntry is one record read back or written.
type logEntry struct {
	lsn uint64
	op  logOp
}

// openLog opens the log at path, creating and preallocating it if it does not exist (or
// is still all zeros: a crash while it was being created), and returns the records it
// holds in LSN order. A log that belongs to another store (id) is refused: replaying it
// into this store would be wrong.
func openLog(path string, id []byte, mode os.FileMode) (*logFile, []logEntry, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, mode)
	if err != nil {
		return nil, nil, err
	}
	l := &logFile{f: f, path: path, off: logHeaderSize}
	hdr := make([]byte, logHeaderSize)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, nil, err
	}
	switch {
	case n == 0 || bytes.Equal(hdr[:n], make([]byte, n)):
		if err := l.create(id); err != nil {
			f.Close()
			return nil, nil, err
		}
		return l, nil, nil
	case n < logHeaderSize || string(hdr[:len(logMagic)]) != logMagic:
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a posd write-ahead log: %w", path, ErrLayout)
	case hdr[len(logMagic)] != logVersion:
		f.Close()
		return nil, nil, fmt.Errorf("%s: log version %d, this posd reads %d: %w", path, hdr[len(logMagic)], logVersion, ErrLayout)
	case !bytes.Equal(hdr[16:16+storeIDLen], id):
		f.Close()
		return nil, nil, fmt.Errorf("%s belongs to another store file (the store file was replaced?): %w", path, ErrLayout)
	}
	if fi, err := f.Stat(); err != nil {
		f.Close()
		return nil, nil, err
	} else if fi.Size() < logSize {
		// A crash during preallocation: write the rest (records already there are kept).
		if _, err := f.WriteAt(make([]byte, logSize-fi.Size()), fi.Size()); err != nil {
			f.Close()
			return nil, nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	entries, end, err := readLog(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	l.off = end
	return l, entries, nil
}

// create writes the header and preallocates the file with zeros, then syncs the file and
// its directory so that the log is there after a power cut.
func (l *logFile) create(id []byte) error {
	buf := make([]byte, logSize)
	copy(buf, logMagic)
	buf[len(logMagic)] = logVersion
	copy(buf[16:], id)
	if _, err := l.f.WriteAt(buf, 0); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(l.path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readLog reads the records from the start of the log and returns the longest run with
// consecutive LSNs, and the offset after it. Records that do not decode as a logOp are an
// error: their CRC matched, so something wrote them that this release does not read.
func readLog(r io.ReaderAt) ([]logEntry, int64, error) {
	var entries []logEntry
	off := int64(logHeaderSize)
	hdr := make([]byte, logRecHeader)
	for {
		if _, err := r.ReadAt(hdr, off); err != nil {
			return entries, off, nil
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		sum := binary.BigEndian.Uint32(hdr[4:8])
		lsn := binary.BigEndian.Uint64(hdr[8:16])
		if n == 0 || off+logRecHeader+n > logSize {
			return entries, off, nil
		}
		if len(entries) > 0 && lsn != entries[len(entries)-1].lsn+1 {
			return entries, off, nil
		}
		payload := make([]byte, n)
		if _, err := r.ReadAt(payload, off+logRecHeader); err != nil {
			return entries, off, nil
		}
		if crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, payload) != sum {
			return entries, off, nil
		}
		op, err := decodeLogOp(payload)
		if err != nil {
			return nil, 0, fmt.Errorf("log record %d: %w", lsn, err)
		}
		entries = append(entries, logEntry{lsn, op})
		off += logRecHeader + n
	}
}

// encodeLogRecord frames payload as record lsn.
func encodeLogRecord(lsn uint64, payload []byte) []byte {
	rec := make([]byte, logRecHeader+len(payload))
	binary.BigEndian.PutUint32(rec[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint64(rec[8:16], lsn)
	copy(rec[logRecHeader:], payload)
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(rec[8:], crcTable))
	return rec
}

// fits reports whether a record of n payload bytes fits in an empty log.
func logFits(n int) bool { return logHeaderSize+logRecHeader+int64(n) <= logSize }

// append writes record lsn and waits for it to reach the disk (fdatasync). It returns
// errLogFull, writing nothing, when the record does not fit in what is left.
func (l *logFile) append(lsn uint64, payload []byte) error {
	rec := encodeLogRecord(lsn, payload)
	if l.off+int64(len(rec)) > logSize {
		return errLogFull
	}
	if _, err := l.f.WriteAt(rec, l.off); err != nil {
		return err
	}
	if err := fdatasync(l.f); err != nil {
		return err
	}
	l.off += int64(len(rec))
	return nil
}

// used is how many bytes of records the log holds.
func (l *logFile) used() int64 { return l.off - logHeaderSize }

// rewind makes the log empty once its records are folded: it zeroes them (without
// waiting for the disk: a record left behind by a crash is recognised as folded by its
// LSN) and moves the write offset back to the start.
func (l *logFile) rewind() error {
	if l.off > logHeaderSize {
		if _, err := l.f.WriteAt(make([]byte, l.off-logHeaderSize), logHeaderSize); err != nil {
			return err
		}
	}
	l.off = logHeaderSize
	return nil
}

func (l *logFile) close() error { return l.f.Close() }
