package firmware

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Errors of source confinement.
var (
	// ErrSource: InstallRequest.Source is not one this Manager may read: a
	// path outside the inbox (or a symlink that leads out of it), anything
	// but a regular file or a bundle directory (a FIFO, a device, a
	// socket), or a URL that is not https:// on Options.AllowedURLs. It is
	// refused before anything is opened or downloaded.
	ErrSource = errors.New("firmware source refused")
	// ErrInbox: Options.Inbox is not a usable inbox: missing, not a
	// directory, or writable by every user.
	ErrInbox = errors.New("firmware inbox is not usable")
)

// inboxDirName is the inbox's name under the state directory, its default.
const inboxDirName = "inbox"

// setupInbox checks (creating it when it is the default one under the state
// directory) the inbox directory and returns its path with symlinks
// resolved.
func setupInbox(dir, inbox string) (string, error) {
	def := filepath.Join(dir, inboxDirName)
	if inbox == "" {
		inbox = def
	}
	if !filepath.IsAbs(inbox) {
		abs, err := filepath.Abs(inbox)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrInbox, inbox, err)
		}
		inbox = abs
	}
	inbox = filepath.Clean(inbox)
	if inbox == filepath.Clean(def) {
		if err := os.Mkdir(inbox, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%w: %w", ErrInbox, err)
		}
	}
	resolved, err := filepath.EvalSymlinks(inbox)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInbox, err)
	}
	fi, err := os.Stat(resolved)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrInbox, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%w: %s is not a directory", ErrInbox, inbox)
	case fi.Mode().Perm()&0o002 != 0:
		return "", fmt.Errorf("%w: %s is writable by every user (mode %04o): anyone could place a bundle there; chmod o-w it", ErrInbox, inbox, fi.Mode().Perm())
	}
	return resolved, nil
}

// within reports whether p lies strictly inside the directory root (both
// clean and absolute).
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// checkURL checks that u is an https:// URL under one of the allowed
// prefixes: the same host (and port), and a path under the prefix's path
// at a "/" boundary, without "." or ".." segments.
func checkURL(u *url.URL, allowed []*url.URL) error {
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: only https:// URLs are accepted", ErrSource)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w: %s: the URL's path has . or .. segments", ErrSource, u.Redacted())
		}
	}
	for _, a := range allowed {
		if !strings.EqualFold(a.Host, u.Host) {
			continue
		}
		p := a.Path
		if p == "" || p == "/" || u.Path == p || strings.HasPrefix(u.Path, strings.TrimSuffix(p, "/")+"/") {
			return nil
		}
	}
	if len(allowed) == 0 {
		return fmt.Errorf("%w: %s: downloads are off: no URL prefix is allowed (Options.AllowedURLs, posd's firmware.allowed_urls)", ErrSource, u.Redacted())
	}
	return fmt.Errorf("%w: %s is not under an allowed URL prefix (Options.AllowedURLs, posd's firmware.allowed_urls)", ErrSource, u.Redacted())
}

// parseAllowedURLs checks the allowed URL prefixes.
func parseAllowedURLs(list []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(list))
	for _, s := range list {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("firmware: Options.AllowedURLs: %q is not an https://host/path prefix", clip(s))
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if seg == "." || seg == ".." {
				return nil, fmt.Errorf("firmware: Options.AllowedURLs: %q has . or .. segments", clip(s))
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// localSource is a source path that passed the rules: under the inbox, a
// regular file or a directory.
type localSource struct {
	path string // with symlinks resolved
	dir  bool
}

// checkLocal applies the inbox rules to a source path without opening it:
// a relative path is taken in the inbox; the path, with symlinks resolved,
// must lie inside the inbox and be a regular file or a directory.
func (m *Manager) checkLocal(src string) (localSource, error) {
	p := src
	if !filepath.IsAbs(p) {
		p = filepath.Join(m.inbox, p)
	}
	p = filepath.Clean(p)
	// Lexically first: nothing outside the inbox is even looked at, so
	// that errors tell nothing about files elsewhere.
	if !within(m.inbox, p) && !within(m.inboxAsGiven, p) {
		return localSource{}, fmt.Errorf("%w: %s is not in the firmware inbox %s: copy the bundle there (or upload it)", ErrSource, sourceName(src), m.inboxAsGiven)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return localSource{}, fmt.Errorf("%w: %s: %w", ErrSource, sourceName(src), err)
	}
	if !within(m.inbox, resolved) {
		return localSource{}, fmt.Errorf("%w: %s is a symlink that leads out of the firmware inbox %s", ErrSource, sourceName(src), m.inboxAsGiven)
	}
	fi, err := os.Lstat(resolved)
	if err != nil {
		return localSource{}, fmt.Errorf("%w: %s: %w", ErrSource, sourceName(src), err)
	}
	if err := regularOrDir(fi, sourceName(src)); err != nil {
		return localSource{}, err
	}
	return localSource{path: resolved, dir: fi.IsDir()}, nil
}

// regularOrDir refuses anything but a regular file or a directory, naming
// what it is.
func regularOrDir(fi fs.FileInfo, name string) error {
	mode := fi.Mode()
	if mode.IsRegular() || mode.IsDir() {
		return nil
	}
	what := "not a regular file"
	switch {
	case mode&fs.ModeNamedPipe != 0:
		what = "a FIFO (named pipe)"
	case mode&fs.ModeCharDevice != 0:
		what = "a character device"
	case mode&fs.ModeDevice != 0:
		what = "a device"
	case mode&fs.ModeSocket != 0:
		what = "a socket"
	case mode&fs.ModeSymlink != 0:
		what = "a symlink"
	}
	return fmt.Errorf("%w: %s is %s; only regular files (or a bundle directory) are read", ErrSource, name, what)
}

// openInInbox opens the regular file p for reading, refusing (ErrSource)
// anything outside the inbox or other than a regular file. It never
// blocks: the file is opened non-blocking and without following a last
// symlink, and the opened file must be the one checked (no swap between
// the check and the open).
func (m *Manager) openInInbox(p, name string) (*os.File, error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	if !within(m.inbox, resolved) {
		return nil, fmt.Errorf("%w: %s is a symlink that leads out of the firmware inbox %s", ErrSource, name, m.inboxAsGiven)
	}
	before, err := os.Lstat(resolved)
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		if err := regularOrDir(before, name); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s is a directory, not a file", ErrSource, name)
	}
	f, err := os.OpenFile(resolved, os.O_RDONLY|openNoBlockFlags, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSource, name, err)
	}
	after, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !after.Mode().IsRegular() || !os.SameFile(before, after) {
		f.Close()
		return nil, fmt.Errorf("%w: %s changed while it was opened (replaced by something else)", ErrSource, name)
	}
	return f, nil
}
