package main

import (
	"runtime"
	"testing"
)

func TestRunOneProc(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(2)
	t.Setenv("GOMAXPROCS", "")
	if n := runOneProc(); n != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("without GOMAXPROCS in the environment: %d, GOMAXPROCS %d; want 1", n, runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(2)
	t.Setenv("GOMAXPROCS", "2")
	if n := runOneProc(); n != 2 || runtime.GOMAXPROCS(0) != 2 {
		t.Errorf("with GOMAXPROCS=2 in the environment: %d, GOMAXPROCS %d; want 2 kept", n, runtime.GOMAXPROCS(0))
	}
}
