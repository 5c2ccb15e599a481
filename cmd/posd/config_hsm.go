package main

import (
	"encoding/json"
	"errors"
	"fmt"
)

// HSMConfig chooses the key backends.
type HSMConfig struct {
	// Backend captures and encrypts PINs: "pinpad" (default), the PIN pad's secure module.
	Backend Backend `json:"backend"`
	// Data holds posd's data-at-rest key, which seals the card data of queued reversals
	// and offline approvals. Default none: reversals then carry no card data (field 90
	// identifies the original) and nothing is approved offline.
	Data *DataKeyConfig `json:"data"`
}

// DataKeyConfig chooses where the data-at-rest key lives.
type DataKeyConfig struct {
	// Backend is "pkcs11" (a token: the key never leaves it) or "soft" (in process memory:
	// tests and demos only, refused unless AllowSoft, and warned about at every start).
	Backend string `json:"backend"`
	// AllowSoft must be true to run the soft backend.
	AllowSoft bool `json:"allow_soft"`
	// KeyFile is where the soft backend keeps its key across restarts (created, mode 0600,
	// if absent). Required with "soft".
	KeyFile string        `json:"key_file"`
	PKCS11  *PKCS11Config `json:"pkcs11"`
}

// PKCS11Config is a PKCS#11 token (posd built with -tags pkcs11).
type PKCS11Config struct {
	Module   string `json:"module"`    // the library; default /usr/lib/softhsm/libsofthsm2.so
	Token    string `json:"token"`     // token label; required
	PINFile  string `json:"pin_file"`  // file holding the user PIN; required
	StateDir string `json:"state_dir"` // DUKPT counter state; default none
}

// Backend names an hsm backend.
type Backend string

// Backends.
const BackendPINPad Backend = "pinpad"

// UnmarshalJSON refuses backends posd does not have.
func (b *Backend) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("must be a string")
	}
	switch Backend(s) {
	case BackendPINPad:
		*b = Backend(s)
		return nil
	}
	return fmt.Errorf("unknown backend %q (known: pinpad)", s)
}

// fill checks the hsm section and fills its defaults.
func (h *HSMConfig) fill() error {
	if h.Backend == "" {
		h.Backend = BackendPINPad
	}
	if d := h.Data; d != nil {
		switch d.Backend {
		case "soft":
			if !d.AllowSoft {
				return &ConfigError{"hsm.data.backend", `"soft" keeps keys in process memory: set hsm.data.allow_soft to true to run it (tests and demos only)`}
			}
			if d.KeyFile == "" {
				return &ConfigError{"hsm.data.key_file", "required with the soft backend (where its key is kept across restarts)"}
			}
		case "pkcs11":
			if d.PKCS11 == nil || d.PKCS11.Token == "" || d.PKCS11.PINFile == "" {
				return &ConfigError{"hsm.data.pkcs11", "token and pin_file are required"}
			}
			if d.PKCS11.Module == "" {
				d.PKCS11.Module = "/usr/lib/softhsm/libsofthsm2.so"
			}
		default:
			return &ConfigError{"hsm.data.backend", fmt.Sprintf("%q is not one of pkcs11, soft", d.Backend)}
		}
	}
	return nil
}
