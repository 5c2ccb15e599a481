package serialport

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// inUse returns the *InUseError for path, with the holder when /proc tells.
func inUse(path string) *InUseError {
	e := &InUseError{Path: path}
	e.PID = lockHolder(path)
	if e.PID == 0 {
		e.PID = openHolder(path)
	}
	if e.PID > 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", e.PID)); err == nil {
			e.Command = strings.TrimSpace(string(b))
		}
	}
	return e
}

// lockHolder returns the process that holds an flock on the device at path,
// from /proc/locks, or 0. A line reads
//
//	1: FLOCK  ADVISORY  WRITE 812 00:05:1043 0 EOF
//
// with the file's device (major:minor of its file system, in hex) and inode;
// a waiter's line has "->" after the number and is skipped.
func lockHolder(path string) int {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// openHolder returns another process that has the device at path open, by
// its /proc/PID/fd links, or 0. Processes this one may not inspect are
// skipped.
func openHolder(path string) int {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return 0
	}
	self := os.Getpid()
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == target {
				return pid
			}
		}
	}
	return 0
}
