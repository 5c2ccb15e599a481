package store

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes what the benchmarks built once per test binary (bigStore's 100 MB
// store, historyStore's stores), which no single benchmark's cleanup can own.
func TestMain(m *testing.M) {
	code := m.Run()
	if bigPath != "" {
		os.RemoveAll(filepath.Dir(bigPath))
	}
	for _, p := range historyPaths {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}
