package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/ceremony"
	"github.com/posd-dev/posd/hsm/soft"
)

// dataKeyID is the id of posd's data-at-rest key in its backend.
const dataKeyID = ceremony.DataKeyID

// openDataModule returns the hsm Module holding posd's data-at-rest key (the store's
// Sealer), and a func that releases it; nil when none is configured.
func openDataModule(ctx context.Context, cfg *DataKeyConfig, log *slog.Logger) (*hsm.Module, func(), error) {
	if cfg == nil {
		log.Warn("no data key configured (hsm.data): reversals carry no card data and nothing is approved offline")
		return nil, func() {}, nil
	}
	switch cfg.Backend {
	case "soft":
		log.Warn(soft.Warning)
		b := soft.New(nil)
		m, err := hsm.New(b, &hsm.Options{DataKeyID: dataKeyID})
		if err != nil {
			return nil, nil, err
		}
		key, err := softKey(cfg.KeyFile)
		if err != nil {
			return nil, nil, err
		}
		if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: dataKeyID, Algorithm: hsm.AES256, Usage: hsm.UsageData, Components: [][]byte{key}}); err != nil {
			return nil, nil, fmt.Errorf("hsm.data: loading the soft data key: %w", err)
		}
		// The PAN-hash key, derived from the same file: a separate key for a separate use.
		hashKey := softPANHashKey(key)
		_, err = m.LoadKey(ctx, hsm.LoadRequest{ID: panHashKeyID, Algorithm: hsm.AES256, Usage: hsm.UsageMAC, Components: [][]byte{hashKey}})
		clear(hashKey)
		if err != nil {
			return nil, nil, fmt.Errorf("hsm.data: loading the soft PAN-hash key: %w", err)
		}
		// The operators' password key, derived likewise.
		opKey := softDerivedKey(key, "operator")
		_, err = m.LoadKey(ctx, hsm.LoadRequest{ID: operatorKeyID, Algorithm: hsm.AES256, Usage: hsm.UsageMAC, Components: [][]byte{opKey}})
		clear(opKey)
		if err != nil {
			return nil, nil, fmt.Errorf("hsm.data: loading the soft operator key: %w", err)
		}
		// The audit chain's key, derived likewise.
		auditKey := softAuditKey(key)
		clear(key)
		_, err = m.LoadKey(ctx, hsm.LoadRequest{ID: auditKeyID, Algorithm: hsm.AES256, Usage: hsm.UsageMAC, Components: [][]byte{auditKey}})
		clear(auditKey)
		if err != nil {
			return nil, nil, fmt.Errorf("hsm.data: loading the soft audit key: %w", err)
		}
		// The keys posd key imported beside it (key_file + ".keys"), such as the MAC key.
		if err := loadSoftOthers(ctx, m, cfg.KeyFile); err != nil {
			return nil, nil, fmt.Errorf("hsm.data: %w", err)
		}
		return m, func() {}, nil
	case "pkcs11":
		drv, closeFn, err := openPKCS11(cfg.PKCS11)
		if err != nil {
			return nil, nil, fmt.Errorf("hsm.data: %w", err)
		}
		m, err := hsm.New(drv, &hsm.Options{DataKeyID: dataKeyID})
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		if _, err := m.KeyInfo(ctx, dataKeyID); err != nil {
			closeFn()
			return nil, nil, fmt.Errorf("hsm.data: token %q has no key %q (AES, data usage): load posd's data key into the token first: %w", cfg.PKCS11.Token, dataKeyID, err)
		}
		return m, closeFn, nil
	}
	return nil, nil, fmt.Errorf("hsm.data: unknown backend %q", cfg.Backend)
}

// softKey reads the soft backend's key file, creating it with a random key on first use.
func softKey(path string) ([]byte, error) { return ceremony.SoftDataKey(path) }

// loadSoftOthers loads into m the keys of the soft key store's second file, key_file +
// ".keys", which posd key writes (none when it does not exist).
func loadSoftOthers(ctx context.Context, m *hsm.Module, keyFile string) error {
	return ceremony.LoadSoftOthers(ctx, m, keyFile)
}
