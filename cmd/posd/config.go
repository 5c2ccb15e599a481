package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/money"
)

// ConfigVersion is the only config file version this posd reads.
const ConfigVersion = 1

// Config is posd's configuration file (JSON). It is decoded strictly: an unknown key is an
// error, so a misspelt setting never silently falls back to a default.
type Config struct {
	Version  int            `json:"version"`
	Terminal TerminalConfig `json:"terminal"`
	API      APIConfig      `json:"api"`
	PINPad   PINPadConfig   `json:"pinpad"`
	Acquirer AcquirerConfig `json:"acquirer"`
	Store    StoreConfig    `json:"store"`
	HSM      HSMConfig      `json:"hsm"`
	Log      LogConfig      `json:"log"`
}

// TerminalConfig identifies the terminal to the acquirer and the till.
type TerminalConfig struct {
	ID           string   `json:"id"`            // ISO 8583 field 41: exactly 8 characters; required
	MerchantID   string   `json:"merchant_id"`   // ISO 8583 field 42: 1 to 15 characters; required
	MerchantName string   `json:"merchant_name"` // receipt header; default "POSD MERCHANT"
	POIID        string   `json:"poiid"`         // nexo POIID the till addresses; default "POSD-" + id
	Currency     string   `json:"currency"`      // ISO 4217 alphabetic code; required
	DualMessage  bool     `json:"dual_message"`  // send 0100 instead of 0200; default false
	CardTimeout  Duration `json:"card_timeout"`  // time for the customer to present a card; default 60s
}

// APIConfig is the local till API.
type APIConfig struct {
	// Listen is "127.0.0.1:PORT", "[::1]:PORT" or "unix:/path/to.sock". Default
	// "127.0.0.1:8765". A TCP address must be a loopback address: the till API is local.
	Listen string `json:"listen"`
}

// PINPadConfig is the PIN pad's serial line.
type PINPadConfig struct {
	Port        string   `json:"port"`          // serial device path, e.g. /dev/ttyUSB0; required
	Baud        int      `json:"baud"`          // default 19200 (ABECS)
	ACKTimeout  Duration `json:"ack_timeout"`   // default 2s (ABECS)
	PINKeyIndex int      `json:"pin_key_index"` // the pad's DUKPT key slot for PINs; default 1
}

// AcquirerConfig is the link to the acquirer host.
type AcquirerConfig struct {
	Address         string   `json:"address"`          // host:port; required
	DialTimeout     Duration `json:"dial_timeout"`     // default 5s
	ResponseTimeout Duration `json:"response_timeout"` // default 30s
	// RequireAtStart makes posd refuse to start when the acquirer cannot be reached. Default
	// true: a terminal that cannot go online says so at once rather than at the first sale.
	RequireAtStart *bool `json:"require_at_start"`
}

// StoreConfig is the bbolt file.
type StoreConfig struct {
	Path string `json:"path"` // required
}

// HSMConfig chooses the PIN backend.
type HSMConfig struct {
	Backend Backend `json:"backend"` // "pinpad" (default)
}

// LogConfig sets logging.
type LogConfig struct {
	Level string `json:"level"` // "debug", "info" (default), "warn", "error"
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

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s").
type Duration time.Duration

// UnmarshalJSON parses a duration string; bare numbers are refused, since their unit would
// be a guess.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New(`must be a duration string such as "30s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf(`%q is not a positive duration such as "30s"`, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ConfigError names the key that is wrong.
type ConfigError struct {
	Key    string
	Reason string
}

func (e *ConfigError) Error() string { return "config: " + e.Key + ": " + e.Reason }

// LoadConfig reads and validates the file at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig decodes a config strictly, fills defaults and validates every value.
func ParseConfig(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, configDecodeError(b, err)
	}
	if dec.More() {
		return nil, errors.New("config: data after the JSON object")
	}
	if err := c.fill(); err != nil {
		return nil, err
	}
	return &c, nil
}

func configDecodeError(b []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
		return fmt.Errorf("config: line %d: %v", line, se)
	case errors.As(err, &te):
		return &ConfigError{Key: te.Field, Reason: "must be a JSON " + te.Type.Kind().String()}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &ConfigError{Key: strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), Reason: "unknown key"}
	}
	// Errors from our UnmarshalJSON methods come wrapped with the field path.
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return fmt.Errorf("config: %s", msg)
}

func (c *Config) fill() error {
	if c.Version != ConfigVersion {
		return &ConfigError{"version", fmt.Sprintf("is %d, this posd reads version %d", c.Version, ConfigVersion)}
	}
	t := &c.Terminal
	if len(t.ID) != 8 || !printable(t.ID) {
		return &ConfigError{"terminal.id", "must be exactly 8 printable characters (ISO 8583 field 41)"}
	}
	if t.MerchantID == "" || len(t.MerchantID) > 15 || !printable(t.MerchantID) {
		return &ConfigError{"terminal.merchant_id", "must be 1 to 15 printable characters (ISO 8583 field 42)"}
	}
	if _, err := money.LookupCurrency(t.Currency); err != nil || len(t.Currency) != 3 {
		return &ConfigError{"terminal.currency", fmt.Sprintf("%q is not a supported ISO 4217 code", t.Currency)}
	}
	t.Currency = strings.ToUpper(t.Currency)
	if t.MerchantName == "" {
		t.MerchantName = "POSD MERCHANT"
	}
	if t.POIID == "" {
		t.POIID = "POSD-" + t.ID
	}
	if t.CardTimeout == 0 {
		t.CardTimeout = Duration(60 * time.Second)
	}
	if c.API.Listen == "" {
		c.API.Listen = "127.0.0.1:8765"
	}
	if path, ok := strings.CutPrefix(c.API.Listen, "unix:"); ok {
		if path == "" {
			return &ConfigError{"api.listen", "unix socket path is empty"}
		}
	} else {
		ap, err := netip.ParseAddrPort(c.API.Listen)
		if err != nil {
			return &ConfigError{"api.listen", fmt.Sprintf("%q is not IP:PORT or unix:PATH", c.API.Listen)}
		}
		if !ap.Addr().IsLoopback() {
			return &ConfigError{"api.listen", fmt.Sprintf("%s is not a loopback address; the till API is local only", ap.Addr())}
		}
	}
	p := &c.PINPad
	if p.Port == "" {
		return &ConfigError{"pinpad.port", "required (the PIN pad's serial device, e.g. /dev/ttyUSB0)"}
	}
	if p.Baud == 0 {
		p.Baud = 19200
	}
	if !validBaud(p.Baud) {
		return &ConfigError{"pinpad.baud", fmt.Sprintf("%d is not a standard rate (1200 to 115200)", p.Baud)}
	}
	if p.ACKTimeout == 0 {
		p.ACKTimeout = Duration(2 * time.Second)
	}
	if p.PINKeyIndex == 0 {
		p.PINKeyIndex = 1
	}
	if p.PINKeyIndex < 0 || p.PINKeyIndex > 99 {
		return &ConfigError{"pinpad.pin_key_index", "must be 1 to 99"}
	}
	a := &c.Acquirer
	if a.Address == "" {
		return &ConfigError{"acquirer.address", "required (host:port of the acquirer)"}
	}
	host, port, err := net.SplitHostPort(a.Address)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return &ConfigError{"acquirer.address", fmt.Sprintf("%q is not host:port", a.Address)}
	}
	if a.DialTimeout == 0 {
		a.DialTimeout = Duration(5 * time.Second)
	}
	if a.ResponseTimeout == 0 {
		a.ResponseTimeout = Duration(30 * time.Second)
	}
	if a.RequireAtStart == nil {
		yes := true
		a.RequireAtStart = &yes
	}
	if c.Store.Path == "" {
		return &ConfigError{"store.path", "required (the bbolt journal file)"}
	}
	if c.HSM.Backend == "" {
		c.HSM.Backend = BackendPINPad
	}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return &ConfigError{"log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level)}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

func validBaud(b int) bool {
	switch b {
	case 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200:
		return true
	}
	return false
}

func writeConfig(w io.Writer, c *Config) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}
