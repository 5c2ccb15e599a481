//go:build !unix

package firmware

// openNoBlockFlags: no such flags here; the Lstat check before the open and
// the Stat check after it still refuse anything but a regular file.
const openNoBlockFlags = 0
