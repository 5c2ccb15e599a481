package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/posd-dev/posd/internal/atomicfile"
	"io/fs"
	"os"
	"path/filepath"
)

// writeFileAtomic replaces path with data: it writes path.tmp, fsyncs it,
// renames it over path and fsyncs the directory. A crash leaves either the
// old file or the new one, never a mix. hook is called between the steps
// with the step's name (failpoints in tests).
func writeFileAtomic(path string, data []byte, hook func(string)) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	hook(filepath.Base(path) + "-tmp-written")
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// readJSONFile decodes path strictly into v. It reports whether the file
// exists.
func readJSONFile(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := strictUnmarshal(b, v); err != nil {
		return true, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func writeJSONFile(path string, v any, hook func(string)) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), hook)
}
