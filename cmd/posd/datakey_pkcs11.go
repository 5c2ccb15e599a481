//go:build pkcs11

package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/pkcs11"
)

// pkcs11Built says whether this posd can use a PKCS#11 token (hsm.data.backend "pkcs11").
const pkcs11Built = true

// openPKCS11 opens the token that holds posd's data key.
func openPKCS11(cfg *PKCS11Config) (hsm.Driver, func(), error) {
	pin, err := os.ReadFile(cfg.PINFile)
	if err != nil {
		return nil, nil, fmt.Errorf("pkcs11.pin_file: %w", err)
	}
	b, err := pkcs11.Open(&pkcs11.Options{Module: cfg.Module, Token: cfg.Token, PIN: strings.TrimSpace(string(pin)), StateDir: cfg.StateDir})
	if err != nil {
		return nil, nil, err
	}
	return b, func() { b.Close() }, nil
}
