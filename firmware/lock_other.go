//go:build !unix

package firmware

import "os"

// lockDir opens dir/lock. Without flock, only the in-process checks apply.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
