package main

import (
	"context"
	"fmt"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/iso8583"
)

// macOptions gives the acquirer link its MAC key when the dialect declares a MAC: the key
// keyID of the data module (hsm.data), which must exist, be a MAC key and fit the dialect's
// algorithm. posd holds no clear MAC key: the Module MACs inside its backend.
func macOptions(ctx context.Context, o *iso8583.ClientOptions, data *hsm.Module, keyID string) error {
	if o.Dialect == nil || o.Dialect.MAC == nil {
		return nil
	}
	m := o.Dialect.MAC
	if data == nil {
		return &ConfigError{"hsm.data", fmt.Sprintf("acquirer.dialect declares a MAC (%v): hsm.data must name the token holding MAC key %q", m, keyID)}
	}
	if m.Length > 8 {
		return &ConfigError{"acquirer.dialect", fmt.Sprintf("a %d-byte MAC: posd's hsm module gives MACs of at most 8 bytes", m.Length)}
	}
	info, err := data.KeyInfo(ctx, keyID)
	if err != nil {
		return &ConfigError{"acquirer.mac_key", fmt.Sprintf("MAC key %q: %v (load it with posd key import --id %s)", keyID, err, keyID)}
	}
	fits := info.Algorithm == hsm.TDES2
	want := "a double-length TDES key"
	if m.Algorithm == iso8583.MACAESCMAC {
		fits, want = info.Algorithm.IsAES(), "an AES key"
	}
	if info.Usage != hsm.UsageMAC || !fits {
		return &ConfigError{"acquirer.mac_key", fmt.Sprintf("key %q is a %v %v key; the dialect's %s MAC needs %s of usage MAC", keyID, info.Algorithm, info.Usage, m.Algorithm, want)}
	}
	o.MAC, o.MACKeyID = data, keyID
	return nil
}
