//go:build unix

package firmware

import "syscall"

// openNoBlockFlags make opening a source file return at once whatever it
// is (a FIFO would otherwise wait for a writer) and refuse a symlink as the
// last component.
const openNoBlockFlags = syscall.O_NONBLOCK | syscall.O_NOFOLLOW
