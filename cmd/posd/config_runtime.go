package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// checkRuntime checks what a config needs of this binary and this machine before posd
// opens anything: a backend this build has, and the directories its files go in. It
// answers with a *ConfigError naming the key, in one sentence. posd run and posd
// check-config both run it.
func (c *Config) checkRuntime() error {
	if err := parentDir("store.path", c.Store.Path); err != nil {
		return err
	}
	if d := c.HSM.Data; d != nil {
		switch d.Backend {
		case "pkcs11":
			if !pkcs11Built {
				return &ConfigError{"hsm.data.backend", `"pkcs11" needs a posd built with "go build -tags pkcs11" (cgo), and this one was built without it; for a test or demo use "soft" (see examples/posd.json)`}
			}
		case "soft":
			if err := parentDir("hsm.data.key_file", d.KeyFile); err != nil {
				return err
			}
		}
	}
	return nil
}

// parentDir checks that the directory of file (the value of key) is there: posd creates
// files, not the directories they go in.
func parentDir(key, file string) error {
	dir := filepath.Dir(file)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &ConfigError{key, fmt.Sprintf("the directory %s does not exist: create it (posd creates %s in it, not the directory)", dir, filepath.Base(file))}
	case err != nil:
		return &ConfigError{key, fmt.Sprintf("cannot use the directory %s: %v", dir, err)}
	case !fi.IsDir():
		return &ConfigError{key, fmt.Sprintf("%s is not a directory", dir)}
	}
	return nil
}
