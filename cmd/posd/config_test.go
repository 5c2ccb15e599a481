package main

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const goodConfig = `{
  "version": 1,
  "terminal": {"id": "T0000001", "merchant_id": "000000000000001", "currency": "eur"},
  "pinpad": {"port": "/dev/ttyUSB0"},
  "acquirer": {"address": "acquirer.example:8583", "response_timeout": "20s"},
  "store": {"path": "/var/lib/posd/posd.db"}
}`

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Terminal.Currency != "EUR" || c.Terminal.POIID != "POSD-T0000001" || c.Terminal.MerchantName == "" {
		t.Errorf("terminal defaults: %+v", c.Terminal)
	}
	if c.API.Listen != "unix:/run/posd/posd.sock" || c.API.SocketMode != "0660" || c.API.socketMode != 0o660 || c.API.socketGID != os.Getgid() ||
		time.Duration(c.API.DualControlWindow) != 5*time.Minute || c.API.RatePerMinute != 30 || c.API.MaxConnections != 64 ||
		time.Duration(c.API.ReadTimeout) != 10*time.Second || c.PINPad.Baud != 19200 || time.Duration(c.PINPad.ACKTimeout) != 2*time.Second {
		t.Errorf("defaults: %+v %+v", c.API, c.PINPad)
	}
	if time.Duration(c.Acquirer.ResponseTimeout) != 20*time.Second || time.Duration(c.Acquirer.DialTimeout) != 5*time.Second || !*c.Acquirer.RequireAtStart {
		t.Errorf("acquirer: %+v", c.Acquirer)
	}
	if c.HSM.Backend != BackendPINPad || c.Log.Level != "info" {
		t.Errorf("hsm/log: %+v %+v", c.HSM, c.Log)
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(goodConfig, old) {
			t.Fatalf("test config has no %q", old)
		}
		return strings.Replace(goodConfig, old, new, 1)
	}
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"unknown key", edit(`"currency": "eur"`, `"currency": "eur", "curency": "x"`), "curency: unknown key"},
		{"version", edit(`"version": 1`, `"version": 2`), "version: is 2"},
		{"tid length", edit(`"T0000001"`, `"T01"`), "terminal.id"},
		{"currency", edit(`"eur"`, `"EURO"`), "terminal.currency"},
		{"duration as number", edit(`"20s"`, `20`), `acquirer.response_timeout: 20 is a bare number`},
		{"bad duration", edit(`"20s"`, `"soon"`), `acquirer.response_timeout: "soon" is not a duration such as "30s"`},
		{"address", edit(`"acquirer.example:8583"`, `"acquirer.example"`), "acquirer.address"},
		{"port range", edit(`"acquirer.example:8583"`, `"acquirer.example:99999"`), "acquirer.address"},
		{"missing pinpad", edit(`"pinpad": {"port": "/dev/ttyUSB0"},`, ``), "pinpad.port: required"},
		{"missing store", edit(`"store": {"path": "/var/lib/posd/posd.db"}`, `"store": {}`), "store.path: required"},
		{"non-loopback api", edit(`"version": 1,`, `"version": 1, "api": {"listen": "0.0.0.0:8765"},`), "api.listen"},
		{"baud", edit(`"/dev/ttyUSB0"`, `"/dev/ttyUSB0", "baud": 1234`), "pinpad.baud"},
		{"heartbeat word", edit(`"/dev/ttyUSB0"`, `"/dev/ttyUSB0", "heartbeat": "never"`), `pinpad.heartbeat: "never" is neither a positive duration`},
		{"heartbeat zero", edit(`"/dev/ttyUSB0"`, `"/dev/ttyUSB0", "heartbeat": "0s"`), `pinpad.heartbeat: "0s" is neither`},
		{"heartbeat negative", edit(`"/dev/ttyUSB0"`, `"/dev/ttyUSB0", "heartbeat": "-1s"`), `pinpad.heartbeat: "-1s" is neither`},
		{"heartbeat number", edit(`"/dev/ttyUSB0"`, `"/dev/ttyUSB0", "heartbeat": 30`), `pinpad.heartbeat: 30 is neither`},
		{"reader heartbeat", edit(`"version": 1,`, `"version": 1, "card_reader": {"heartbeat": "30s"},`), "heartbeat: unknown key"}, // the serial reader only listens: no heartbeat
		{"wrong type", edit(`"version": 1`, `"version": "1"`), `version: "1" is not a JSON integer`},
		{"backend", edit(`"version": 1,`, `"version": 1, "hsm": {"backend": "soft"},`), `unknown backend "soft"`},
		{"log level", edit(`"version": 1,`, `"version": 1, "log": {"level": "loud"},`), "log.level"},
		{"dialect file", edit(`"response_timeout": "20s"`, `"response_timeout": "20s", "dialect": "/nonexistent/acq.json"`), "acquirer.dialect"},
		{"framing", edit(`"response_timeout": "20s"`, `"response_timeout": "20s", "framing": {"length": "ebcdic9"}`), "acquirer.framing"},
		{"tls pair", edit(`"response_timeout": "20s"`, `"response_timeout": "20s", "tls": {"cert_file": "c.pem"}`), "acquirer.tls"},
		{"in flight", edit(`"response_timeout": "20s"`, `"response_timeout": "20s", "max_in_flight": 5000`), "acquirer.max_in_flight"},
		{"offline floor", edit(`"version": 1,`, `"version": 1, "offline": {"floor_limit_minor": -1},`), "offline.floor_limit_minor"},
		{"saf window", edit(`"version": 1,`, `"version": 1, "saf": {"window": 1000},`), "saf.window"},
		{"soft not allowed", edit(`"version": 1,`, `"version": 1, "hsm": {"data": {"backend": "soft", "key_file": "k"}},`), "allow_soft"},
		{"reader source", edit(`"version": 1,`, `"version": 1, "card_reader": {"source": "usb"},`), "card_reader.source"},
		{"serial reader port", edit(`"version": 1,`, `"version": 1, "card_reader": {"source": "serial"},`), "card_reader.port"},
		{"syntax", `{"version": 1,,}`, "line 1"},
		{"trailing", goodConfig + `{}`, "after the JSON object"},
	} {
		_, err := ParseConfig([]byte(tc.cfg))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("%s: error %q does not say it is about the config", tc.name, err)
		}
	}
	var ce *ConfigError
	if _, err := ParseConfig([]byte(edit(`"T0000001"`, `"T01"`))); !errors.As(err, &ce) || ce.Key != "terminal.id" {
		t.Errorf("not a *ConfigError for terminal.id: %v", err)
	}
}

func TestParseConfigPINPadHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		value string // "" for absent
		want  time.Duration
		json  string
	}{
		{"", 30 * time.Second, `"30s"`},
		{`"45s"`, 45 * time.Second, `"45s"`},
		{`"1m30s"`, 90 * time.Second, `"1m30s"`},
		{`"off"`, -1, `"off"`},
	} {
		cfg := goodConfig
		if tc.value != "" {
			cfg = strings.Replace(cfg, `"/dev/ttyUSB0"`, `"/dev/ttyUSB0", "heartbeat": `+tc.value, 1)
		}
		c, err := ParseConfig([]byte(cfg))
		if err != nil {
			t.Errorf("%s: %v", tc.value, err)
			continue
		}
		hb := c.PINPad.Heartbeat
		if hb.Duration() != tc.want || hb.Off() != (tc.want < 0) {
			t.Errorf("%s: heartbeat %v (off %v), want %v", tc.value, hb.Duration(), hb.Off(), tc.want)
		}
		if b, err := json.Marshal(hb); err != nil || string(b) != tc.json {
			t.Errorf("%s: marshals as %s %v, want %s", tc.value, b, err, tc.json)
		}
	}
	var ce *ConfigError
	_, err := ParseConfig([]byte(strings.Replace(goodConfig, `"/dev/ttyUSB0"`, `"/dev/ttyUSB0", "heartbeat": "-1s"`, 1)))
	if !errors.As(err, &ce) || ce.Key != "pinpad.heartbeat" || !strings.Contains(ce.Reason, `"off"`) {
		t.Errorf("not a *ConfigError for pinpad.heartbeat that suggests \"off\": %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(`{"version":1,"terminal":{"card_timeout":"-1s"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil && (c.Terminal.ID == "" || c.PINPad.Port == "" || c.Store.Path == "") {
			t.Fatal("accepted a config missing a required key")
		}
	})
}

// TestAPIConfigRefusals: posd refuses to start on an unsafe or ambiguous api section, with
// one line naming the key.
func TestAPIConfigRefusals(t *testing.T) {
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	sticky := t.TempDir()
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	api := func(v string) string {
		return strings.Replace(goodConfig, `"version": 1,`, `"version": 1, "api": `+v+`,`, 1)
	}
	for _, tc := range []struct{ name, cfg, want string }{
		{"unknown role", api(`{"roles": {"manager": {"users": ["0"]}}}`), `api.roles.manager: unknown role "manager"`},
		{"overlapping users", api(`{"roles": {"cashier": {"users": ["60001"]}, "supervisor": {"users": ["60001"]}}}`), "api.roles.supervisor.users[0]: user 60001 is already under role cashier: overlapping role maps"},
		{"overlapping groups", api(`{"roles": {"cashier": {"groups": ["0"]}, "technician": {"groups": ["root"]}}}`), "api.roles.technician.groups[0]: group root is already under role cashier"},
		{"overlapping subjects", api(`{"roles": {"cashier": {"subjects": ["till1"]}, "supervisor": {"subjects": ["CN=till1"]}}}`), "api.roles.supervisor.subjects[0]"},
		{"unknown user", api(`{"roles": {"cashier": {"users": ["no-such-user-xyz"]}}}`), "api.roles.cashier.users[0]: \"no-such-user-xyz\" is not a known name"},
		{"world-writable socket dir", api(`{"listen": "unix:` + open + `/posd.sock"}`), "api.listen: directory " + open + " is world-writable without the sticky bit"},
		{"tcp without tls", api(`{"listen": "127.0.0.1:8765"}`), "api.listen: a TCP listener needs api.tls (mutual TLS)"},
		{"non-loopback tls", api(`{"listen": "192.0.2.1:8765", "tls": {"cert_file": "c", "key_file": "k", "client_ca_file": "ca"}}`), "api.listen: 192.0.2.1 is not a loopback"},
		{"tls without ca", api(`{"listen": "127.0.0.1:8765", "tls": {"cert_file": "c", "key_file": "k"}}`), "api.tls.client_ca_file: required"},
		{"socket mode for all", api(`{"socket_mode": "0666"}`), "api.socket_mode: 0666 lets every local user connect"},
		{"socket mode", api(`{"socket_mode": "rw"}`), "api.socket_mode"},
		{"socket group", api(`{"socket_group": "no-such-group-xyz"}`), "api.socket_group"},
	} {
		_, err := ParseConfig([]byte(tc.cfg))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line with %q", tc.name, err, tc.want)
		}
	}
	// A sticky world-writable directory (such as /tmp) cannot have its socket replaced.
	if _, err := ParseConfig([]byte(api(`{"listen": "unix:` + sticky + `/posd.sock"}`))); err != nil {
		t.Errorf("sticky socket directory: %v", err)
	}
}
