package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile of the whole run to the file POSD_CPUPROFILE names, for
// the speed work (docs/BENCHMARKS.md); nothing happens when it is unset. The profile holds
// function names and counts, never data. stop ends it.
func startProfile(stderr io.Writer) (stop func()) {
	path := os.Getenv("POSD_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "posd: POSD_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "posd: POSD_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
