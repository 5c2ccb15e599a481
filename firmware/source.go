package firmware

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// source is where a bundle comes from: a directory, a tar stream (a file, an
// upload, an HTTPS download).
type source interface {
	// metadata reads every metadata file of the bundle.
	metadata(ctx context.Context) (*bundleMeta, error)
	// open returns the target named name, which targets.json lists with
	// length bytes, after checking what the source can tell about its size.
	// listed holds the lengths of every listed target (for skipping).
	open(ctx context.Context, name string, length int64, listed map[string]int64) (io.Reader, error)
	// describe names the source in messages and the event log.
	describe() string
	Close() error
}

// addMeta files one metadata entry into m.
func (m *bundleMeta) add(name string, data []byte) error {
	rel, ok := strings.CutPrefix(name, metaDir)
	if !ok {
		return fmt.Errorf("bundle entry %q is not under metadata/ or targets/: %w", clip(name), ErrFormat)
	}
	var slot *[]byte
	switch rel {
	case "timestamp.json":
		slot = &m.timestamp
	case "snapshot.json":
		slot = &m.snapshot
	case "targets.json":
		slot = &m.targets
	default:
		num, ok := strings.CutSuffix(rel, ".root.json")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v < 1 || strconv.FormatInt(v, 10) != num {
			return fmt.Errorf("bundle entry %q is not a metadata file (N.root.json, timestamp.json, snapshot.json, targets.json): %w", clip(name), ErrFormat)
		}
		if _, dup := m.roots[v]; dup {
			return fmt.Errorf("bundle holds %s twice: %w", name, ErrFormat)
		}
		if len(m.roots) >= maxRootFiles {
			return fmt.Errorf("bundle holds more than %d root files: %w", maxRootFiles, ErrFormat)
		}
		if m.roots == nil {
			m.roots = map[int64][]byte{}
		}
		m.roots[v] = data
		return nil
	}
	if *slot != nil {
		return fmt.Errorf("bundle holds %s twice: %w", name, ErrFormat)
	}
	*slot = data
	return nil
}

// readCapped reads all of r, failing if it holds more than limit bytes.
func readCapped(r io.Reader, limit int64, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", name, limit, ErrFormat)
	}
	return b, nil
}

// tarSource reads a bundle as a tar stream in one pass: all metadata entries
// come before the targets.
type tarSource struct {
	name    string
	tr      *tar.Reader
	closer  io.Closer
	pending *tar.Header // the first targets/ entry, met while reading metadata
	seen    map[string]bool
}

func newTarSource(name string, r io.Reader, c io.Closer) *tarSource {
	return &tarSource{name: name, tr: tar.NewReader(r), closer: c, seen: map[string]bool{}}
}

func (s *tarSource) describe() string { return s.name }

func (s *tarSource) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// next returns the next file entry, skipping the metadata/ and targets/
// directory entries, with its name cleaned of a leading "./".
func (s *tarSource) next() (*tar.Header, error) {
	for {
		h, err := s.tr.Next()
		if err == io.EOF {
			return nil, io.EOF
		}
		if errors.Is(err, ErrSlowDownload) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("bundle %s: %w", s.name, err) // not the bundle's fault
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s is not a readable tar file: %w: %w", s.name, ErrFormat, err)
		}
		h.Name = strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir && (h.Name == metaDir || h.Name == targetsDir || h.Name == "") {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("bundle entry %q is not a regular file: %w", clip(h.Name), ErrFormat)
		}
		if h.Size < 0 {
			return nil, fmt.Errorf("bundle entry %q has a negative size: %w", clip(h.Name), ErrFormat)
		}
		if s.seen[h.Name] {
			return nil, fmt.Errorf("bundle holds %q twice: %w", clip(h.Name), ErrFormat)
		}
		if len(s.seen) > maxRootFiles+maxTargets+3 {
			return nil, fmt.Errorf("bundle holds too many entries: %w", ErrFormat)
		}
		s.seen[h.Name] = true
		return h, nil
	}
}

func (s *tarSource) metadata(ctx context.Context) (*bundleMeta, error) {
	m := &bundleMeta{}
	for {
		if err := context.Cause(ctx); err != nil {
			return nil, err
		}
		h, err := s.next()
		if err == io.EOF {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(h.Name, targetsDir) {
			s.pending = h
			return m, nil
		}
		if h.Size > MaxMetadataSize {
			return nil, fmt.Errorf("%s is %d bytes, more than %d: %w", clip(h.Name), h.Size, MaxMetadataSize, ErrFormat)
		}
		b, err := readCapped(s.tr, MaxMetadataSize, h.Name)
		if err != nil {
			return nil, err
		}
		if err := m.add(h.Name, b); err != nil {
			return nil, err
		}
	}
}

func (s *tarSource) open(ctx context.Context, name string, length int64, listed map[string]int64) (io.Reader, error) {
	want := targetsDir + name
	for {
		if err := context.Cause(ctx); err != nil {
			return nil, err
		}
		h := s.pending
		s.pending = nil
		if h == nil {
			var err error
			if h, err = s.next(); err == io.EOF {
				return nil, fmt.Errorf("bundle has no %s: %w", want, ErrFormat)
			} else if err != nil {
				return nil, err
			}
		}
		rel, ok := strings.CutPrefix(h.Name, targetsDir)
		if !ok {
			return nil, fmt.Errorf("bundle entry %q comes after the targets; metadata must come first: %w", clip(h.Name), ErrFormat)
		}
		l, listedOK := listed[rel]
		if !listedOK {
			return nil, fmt.Errorf("bundle entry %q is not listed in targets.json: %w", clip(h.Name), ErrFormat)
		}
		if h.Size > l {
			return nil, fmt.Errorf("%s is %d bytes, more than its signed length %d: %w", clip(h.Name), h.Size, l, ErrLength)
		}
		if rel != name {
			continue // another target; tar.Reader skips its data
		}
		if h.Size < length {
			return nil, fmt.Errorf("%s is %d bytes, its signed length is %d (truncated): %w", want, h.Size, length, ErrLength)
		}
		return s.tr, nil
	}
}

// dirSource reads a bundle laid out in a directory (a USB stick).
type dirSource struct {
	dir  string // with symlinks resolved, in the inbox
	name string // as given
	m    *Manager
	f    *os.File
}

func (s *dirSource) describe() string { return s.name }

func (s *dirSource) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

func (s *dirSource) metadata(ctx context.Context) (*bundleMeta, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "metadata"))
	if err != nil {
		return nil, fmt.Errorf("bundle directory %s: %w", s.name, err)
	}
	m := &bundleMeta{}
	for _, e := range ents {
		if err := context.Cause(ctx); err != nil {
			return nil, err
		}
		n := e.Name()
		if !e.Type().IsRegular() || !(n == "timestamp.json" || n == "snapshot.json" || n == "targets.json" || strings.HasSuffix(n, ".root.json")) {
			continue // other files on the stick are not part of the bundle
		}
		f, err := s.m.openInInbox(filepath.Join(s.dir, "metadata", n), metaDir+n)
		if err != nil {
			return nil, fmt.Errorf("bundle directory %s: %w", s.name, err)
		}
		b, err := readCapped(f, MaxMetadataSize, metaDir+n)
		f.Close()
		if err != nil {
			return nil, err
		}
		if err := m.add(metaDir+n, b); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (s *dirSource) open(ctx context.Context, name string, length int64, _ map[string]int64) (io.Reader, error) {
	path := filepath.Join(s.dir, "targets", name)
	f, err := s.m.openInInbox(path, targetsDir+name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle has no %s%s: %w", targetsDir, name, ErrFormat)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	switch {
	case !fi.Mode().IsRegular():
		f.Close()
		return nil, fmt.Errorf("%s%s is not a regular file: %w", targetsDir, name, ErrFormat)
	case fi.Size() > length:
		f.Close()
		return nil, fmt.Errorf("%s%s is %d bytes, more than its signed length %d: %w", targetsDir, name, fi.Size(), length, ErrLength)
	case fi.Size() < length:
		f.Close()
		return nil, fmt.Errorf("%s%s is %d bytes, its signed length is %d (truncated): %w", targetsDir, name, fi.Size(), length, ErrLength)
	}
	s.f = f
	return f, nil
}

// openSource opens a bundle after checking it against the rules (see
// checkSource, which verifyBundle calls first): an https:// URL of a bundle
// file on the allowed prefixes, or a bundle file or directory in the inbox.
func (m *Manager) openSource(ctx context.Context, src string) (source, error) {
	if strings.Contains(src, "://") {
		u, err := m.checkSourceURL(src)
		if err != nil {
			return nil, err
		}
		d, err := m.openDownload(ctx, u)
		if err != nil {
			return nil, err
		}
		return newTarSource(u.Redacted(), d, d), nil
	}
	loc, err := m.checkLocal(src)
	if err != nil {
		return nil, err
	}
	if loc.dir {
		return &dirSource{dir: loc.path, name: sourceName(src), m: m}, nil
	}
	f, err := m.openInInbox(loc.path, sourceName(src))
	if err != nil {
		return nil, err
	}
	return newTarSource(sourceName(src), f, f), nil
}

// checkSource applies the source rules without opening anything: an
// https:// URL on Options.AllowedURLs, or a path in the inbox that is a
// regular file or a directory. An upload (Bundle set) has no rules here.
func (m *Manager) checkSource(req InstallRequest) error {
	if req.Bundle != nil {
		return nil
	}
	if strings.TrimSpace(req.Source) == "" {
		return fmt.Errorf("%w: no source: give a bundle file in the firmware inbox or an https:// URL", ErrSource)
	}
	if strings.Contains(req.Source, "://") {
		_, err := m.checkSourceURL(req.Source)
		return err
	}
	_, err := m.checkLocal(req.Source)
	return err
}

func (m *Manager) checkSourceURL(src string) (*url.URL, error) {
	u, err := url.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not a URL", ErrSource, sourceName(src))
	}
	if err := checkURL(u, m.allowed); err != nil {
		return nil, err
	}
	return u, nil
}

// copyVerified copies exactly length bytes from r to w (w may be nil),
// hashing them, and checks their SHA-256 against sum. It never reads more
// than length+1 bytes. done is called with the bytes copied so far.
func copyVerified(ctx context.Context, w io.Writer, r io.Reader, name string, length int64, sum [32]byte, buf []byte, done func(int64)) error {
	h := sha256.New()
	var n int64
	for {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		want := int64(len(buf))
		if rest := length + 1 - n; rest < want {
			want = rest
		}
		k, err := io.ReadFull(r, buf[:want])
		if k > 0 {
			n += int64(k)
			if n > length {
				return fmt.Errorf("%s has more than its signed length %d bytes: %w", name, length, ErrLength)
			}
			h.Write(buf[:k])
			if w != nil {
				if _, werr := w.Write(buf[:k]); werr != nil {
					return fmt.Errorf("write %s: %w", name, werr)
				}
			}
			if done != nil {
				done(n)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
	}
	if n < length {
		return fmt.Errorf("%s ends after %d of its %d bytes (truncated): %w", name, n, length, ErrLength)
	}
	if [32]byte(h.Sum(nil)) != sum {
		return fmt.Errorf("%s: SHA-256 is not the signed one: %w", name, ErrHash)
	}
	return nil
}

// sourceName is how a source appears in errors and the event log: a URL
// without its password, and nothing longer than 200 bytes.
func sourceName(s string) string {
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			s = u.Redacted()
		} else {
			s = "(unparsable URL)"
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
