package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigErrorsExact: each bad input gets exactly this message, naming the full key
// path (or the line and column when the file is not JSON).
func TestConfigErrorsExact(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(goodConfig, old) {
			t.Fatalf("test config has no %q", old)
		}
		return strings.Replace(goodConfig, old, new, 1)
	}
	pad := func(extra string) string { return edit(`"/dev/ttyUSB0"`, `"/dev/ttyUSB0", `+extra) }
	section := func(s string) string { return edit(`"version": 1,`, `"version": 1, `+s+`,`) }
	for _, tc := range []struct{ name, cfg, want string }{
		{"duration in words", pad(`"ack_timeout": "2 seconds"`), `config: pinpad.ack_timeout: "2 seconds" is not a duration such as "30s"`},
		{"bare number duration", pad(`"ack_timeout": 2`), `config: pinpad.ack_timeout: 2 is a bare number: write a duration with its unit, such as "30s"`},
		{"duration of another type", pad(`"ack_timeout": true`), `config: pinpad.ack_timeout: true is not a duration such as "30s"`},
		{"negative duration", pad(`"response_timeout": "-5s"`), `config: pinpad.response_timeout: "-5s" is out of range: it must be above zero`},
		{"zero duration", section(`"saf": {"min_backoff": "0s"}`), `config: saf.min_backoff: "0s" is out of range: it must be above zero`},
		{"unknown nested key", pad(`"typo_key": 1`), `config: pinpad.typo_key: unknown key`},
		{"unknown top key", section(`"pinpda": {}`), `config: pinpda: unknown key`},
		{"unknown key in a role", section(`"api": {"roles": {"cashier": {"userz": ["0"]}}}`), `config: api.roles.cashier.userz: unknown key`},
		{"duplicate top key", section(`"version": 1`), `config: version: given twice (again at line 2, column 28): keep one`},
		{"duplicate nested key", pad(`"port": "/dev/ttyS1"`), `config: pinpad.port: given twice (again at line 4, column 46): keep one`},
		{"duplicate role", section(`"api": {"roles": {"cashier": {}, "cashier": {}}}`), `config: api.roles.cashier: given twice (again at line 2, column 61): keep one`},
		{"saf window zero", section(`"saf": {"window": 0}`), `config: saf.window: 0 is out of range: it must be at least 1 (leave the key out for its default)`},
		{"max in flight zero", edit(`"response_timeout": "20s"`, `"response_timeout": "20s", "max_in_flight": 0`), `config: acquirer.max_in_flight: 0 is out of range: it must be at least 1 (leave the key out for its default)`},
		{"saf attempts negative", section(`"saf": {"max_attempts": -3}`), `config: saf.max_attempts: -3 is out of range: it must be at least 1 (leave the key out for its default)`},
		{"baud zero", pad(`"baud": 0`), `config: pinpad.baud: 0 is out of range: it must be at least 1 (leave the key out for its default)`},
		{"pin key index zero", pad(`"pin_key_index": 0`), `config: pinpad.pin_key_index: 0 is out of range: it must be at least 1 (leave the key out for its default)`},
		{"api rate zero", section(`"api": {"rate_per_minute": 0}`), `config: api.rate_per_minute: 0 is out of range: it must be at least 1 (leave the key out for its default)`},
		{"wrong type", edit(`"version": 1`, `"version": "1"`), `config: version: "1" is not a JSON integer`},
		{"section not an object", section(`"saf": 3`), `config: saf: 3 is not a JSON object`},
		{"not an object", `[1, 2]`, `config: the file must hold a JSON object (an object of keys), not [1, 2]`},
		{"empty file", ``, `config: line 1, column 1: the file is empty: it must hold a JSON object such as {"version": 1, ...}`},
		{"blank file", "  \n\n", `config: line 3, column 1: the file is empty: it must hold a JSON object such as {"version": 1, ...}`},
		{"truncated", goodConfig[:60], `config: line 3, column 43: the file ends inside the JSON object (truncated, or a closing } or " is missing)`},
		{"truncated after a comma", "{\n  \"version\": 1,\n", `config: line 3, column 1: the file ends inside the JSON object (truncated, or a closing } or " is missing)`},
		{"syntax", "{\"version\": 1,\n  ,}", `config: line 2, column 3: not valid JSON: invalid character ',' looking for beginning of object key string`},
		{"trailing", goodConfig + "\n{}", `config: line 8, column 1: data after the JSON object (one object per file)`},
	} {
		_, err := ParseConfig([]byte(tc.cfg))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, err, tc.want)
		}
	}
}

// TestConfigAbsentKeysTakeDefaults: leaving out a key refused at 0 takes its default.
func TestConfigAbsentKeysTakeDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.SAF.Window != 16 || c.SAF.MaxAttempts != 10 || c.Acquirer.MaxInFlight != 64 || c.PINPad.Baud != 19200 || c.PINPad.PINKeyIndex != 1 {
		t.Errorf("defaults not filled: saf %+v, max_in_flight %d, pinpad %+v", c.SAF, c.Acquirer.MaxInFlight, c.PINPad)
	}
	// Values in range are kept.
	c, err = ParseConfig([]byte(strings.Replace(goodConfig, `"version": 1,`, `"version": 1, "saf": {"window": 1, "max_attempts": 2},`, 1)))
	if err != nil || c.SAF.Window != 1 || c.SAF.MaxAttempts != 2 {
		t.Errorf("in-range values: %+v %v", c, err)
	}
}

// TestConfigRelativePaths: relative paths in a config file are relative to the file's own
// directory, whatever the working directory; absolute ones stay.
func TestConfigRelativePaths(t *testing.T) {
	dir := t.TempDir()
	dialect, err := os.ReadFile("../../iso8583/dialects/aes-pin.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "dialects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dialects", "aes.json"), dialect, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `{"version": 1,
  "terminal": {"id": "T0000001", "merchant_id": "000000000000001", "currency": "EUR"},
  "api": {"listen": "unix:run/posd.sock"},
  "pinpad": {"port": "/dev/ttyUSB0", "dukpt": "aes"},
  "acquirer": {"address": "127.0.0.1:8583", "dialect": "dialects/aes.json"},
  "store": {"path": "state/posd.db"},
  "hsm": {"data": {"backend": "soft", "allow_soft": true, "key_file": "state/data.key"}},
  "firmware": {"model": "X", "state_dir": "/var/lib/posd/fw"}}`
	path := filepath.Join(dir, "posd.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // somewhere else: the dialect must still be found
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	for key, got := range map[string]string{
		"acquirer.dialect": c.Acquirer.Dialect, "store.path": c.Store.Path, "hsm.data.key_file": c.HSM.Data.KeyFile,
		"api.listen": c.API.Listen, "store.archive_dir": c.Store.ArchiveDir, "firmware.state_dir": c.Firmware.StateDir,
	} {
		want := map[string]string{
			"acquirer.dialect": filepath.Join(dir, "dialects/aes.json"), "store.path": filepath.Join(dir, "state/posd.db"),
			"hsm.data.key_file": filepath.Join(dir, "state/data.key"), "api.listen": "unix:" + filepath.Join(dir, "run/posd.sock"),
			"store.archive_dir": filepath.Join(dir, "state/archive"), "firmware.state_dir": "/var/lib/posd/fw",
		}[key]
		if got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	// The store's directory is missing: one sentence naming the key and the directory.
	err = c.checkRuntime()
	want := "config: store.path: the directory " + filepath.Join(dir, "state") + " does not exist: create it (posd creates posd.db in it, not the directory)"
	if err == nil || err.Error() != want {
		t.Errorf("missing store directory:\n got %v\nwant %s", err, want)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("not a *ConfigError: %T", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.checkRuntime(); err != nil {
		t.Errorf("with the directory: %v", err)
	}
}

// TestConfigRuntimePKCS11: a pkcs11 data key on a posd built without the tag is refused
// before posd opens anything, naming the key and the way out.
func TestConfigRuntimePKCS11(t *testing.T) {
	if pkcs11Built {
		t.Skip("this test binary was built with -tags pkcs11: the refusal it checks does not apply")
	}
	cfg := strings.Replace(goodConfig, `"version": 1,`, `"version": 1, "hsm": {"data": {"backend": "pkcs11", "pkcs11": {"token": "posd", "pin_file": "/etc/posd/pin"}}},`, 1)
	cfg = strings.Replace(cfg, "/var/lib/posd/posd.db", filepath.Join(t.TempDir(), "posd.db"), 1)
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	err = c.checkRuntime()
	if err == nil || !strings.HasPrefix(err.Error(), `config: hsm.data.backend: "pkcs11" needs a posd built with "go build -tags pkcs11"`) {
		t.Errorf("got %v", err)
	}
}
