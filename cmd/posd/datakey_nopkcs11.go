//go:build !pkcs11

package main

import (
	"errors"

	"github.com/posd-dev/posd/hsm"
)

// pkcs11Built says whether this posd can use a PKCS#11 token (hsm.data.backend "pkcs11").
const pkcs11Built = false

// openPKCS11 is the stand-in of a posd built without the pkcs11 tag (the default, pure
// Go build).
func openPKCS11(*PKCS11Config) (hsm.Driver, func(), error) {
	return nil, nil, errors.New(`this posd was built without PKCS#11 support: build it with "go build -tags pkcs11" (needs cgo)`)
}
