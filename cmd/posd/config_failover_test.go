package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAcquirerAddresses: acquirer.addresses lists the primary and its backups;
// acquirer.address stays a one-host list; both, or a bad entry, is an error naming the key.
func TestAcquirerAddresses(t *testing.T) {
	const one = `"address": "acquirer.example:8583"`
	with := func(keys string) string { return strings.Replace(goodConfig, one, keys, 1) }

	c, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Acquirer.Hosts(); !slices.Equal(got, []string{"acquirer.example:8583"}) || time.Duration(c.Acquirer.PrimaryRetry) != 5*time.Minute {
		t.Errorf("address alone: hosts %v, primary_retry %v; want the one host and 5m", got, c.Acquirer.PrimaryRetry)
	}
	c, err = ParseConfig([]byte(with(`"addresses": ["a.example:8583", "b.example:8583"], "primary_retry": "90s"`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Acquirer.Hosts(); !slices.Equal(got, []string{"a.example:8583", "b.example:8583"}) || time.Duration(c.Acquirer.PrimaryRetry) != 90*time.Second {
		t.Errorf("addresses: hosts %v, primary_retry %v", got, c.Acquirer.PrimaryRetry)
	}

	for _, tc := range []struct {
		name, keys, key, says string
	}{
		{"both", one + `, "addresses": ["b.example:8583"]`, "acquirer.addresses", "acquirer.address"},
		{"neither", `"dial_timeout": "5s"`, "acquirer.address", "acquirer.addresses"},
		{"empty", `"addresses": []`, "acquirer.addresses", "at least one"},
		{"no port", `"addresses": ["a.example:8583", "b.example"]`, "acquirer.addresses[1]", `"b.example" is not host:port`},
		{"twice", `"addresses": ["a.example:8583", "a.example:8583"]`, "acquirer.addresses[1]", "twice"},
	} {
		_, err := ParseConfig([]byte(with(tc.keys)))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want a ConfigError on %s saying %q", tc.name, err, tc.key, tc.says)
		}
	}
}
