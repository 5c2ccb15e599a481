// Package atomicfile replaces files so that a crash or a power cut leaves either the old
// content or the new, never a mix: write a temporary file beside the target, fsync it,
// rename it over the target, fsync the directory (tailscale's atomicfile does all but the
// last step; a terminal that loses power needs it).
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, mode perm for a new file. Two writers of the same
// path never share a temporary file. On error the target is unchanged and the temporary
// file removed.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, so that renames and creations in it are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
