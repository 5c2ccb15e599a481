package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
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
	Reader   ReaderConfig   `json:"card_reader"`
	Acquirer AcquirerConfig `json:"acquirer"`
	Store    StoreConfig    `json:"store"`
	Offline  OfflineConfig  `json:"offline"`
	Refund   RefundConfig   `json:"refund"`
	SAF      SAFConfig      `json:"saf"`
	Close    CloseConfig    `json:"close"`
	HSM      HSMConfig      `json:"hsm"`
	Firmware FirmwareConfig `json:"firmware"`
	Log      LogConfig      `json:"log"`
	Metrics  MetricsConfig  `json:"metrics"`
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
	// PartialApproval completes a sale the host approved in part (response code 10) for the
	// amount approved, telling the till the remainder; false reverses such approvals.
	// Default true.
	PartialApproval *bool `json:"partial_approval"`
}

// LogConfig sets logging.
type LogConfig struct {
	Level string `json:"level"` // "debug", "info" (default), "warn", "error"
	// Format is "text" (default: slog's key=value lines) or "json" (one JSON object a
	// line, for a log collector). Card data is masked the same in both.
	Format string `json:"format"`
}

// ConfigError names the key that is wrong.
type ConfigError struct {
	Key    string
	Reason string
}

func (e *ConfigError) Error() string { return "config: " + e.Key + ": " + e.Reason }

// LoadConfig reads and validates the file at path. Relative paths in it (acquirer.dialect,
// store.path, hsm.data.key_file, ...) are taken relative to the file's own directory.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfigIn(b, dir)
}

// ParseConfig decodes a config strictly, fills defaults and validates every value.
// Relative paths in it are left as they are (relative to the working directory).
func ParseConfig(b []byte) (*Config, error) { return parseConfigIn(b, "") }

// parseConfigIn is ParseConfig with relative paths resolved against dir (none when "").
func parseConfigIn(b []byte, dir string) (*Config, error) {
	var c Config
	if err := decodeConfig(b, &c); err != nil {
		return nil, err
	}
	if dir != "" {
		c.resolvePaths(dir)
	}
	if err := c.fill(); err != nil {
		return nil, err
	}
	return &c, nil
}

// resolvePaths makes every relative file or directory path of the config relative to dir,
// the config file's directory, so that a config works from any working directory.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if rest, ok := strings.CutPrefix(c.API.Listen, "unix:"); ok && rest != "" && !filepath.IsAbs(rest) {
		c.API.Listen = "unix:" + filepath.Join(dir, rest)
	}
	abs(&c.API.OperatorsFile)
	if t := c.API.TLS; t != nil {
		abs(&t.CertFile)
		abs(&t.KeyFile)
		abs(&t.ClientCAFile)
	}
	abs(&c.Acquirer.Dialect)
	if t := c.Acquirer.TLS; t != nil {
		abs(&t.CAFile)
		abs(&t.CertFile)
		abs(&t.KeyFile)
	}
	abs(&c.Store.Path)
	abs(&c.Store.ArchiveDir)
	if d := c.HSM.Data; d != nil {
		abs(&d.KeyFile)
		if p := d.PKCS11; p != nil {
			abs(&p.PINFile)
			abs(&p.StateDir)
			if strings.ContainsRune(p.Module, '/') { // a bare library name is for the loader to find
				abs(&p.Module)
			}
		}
	}
	abs(&c.Firmware.StateDir)
	abs(&c.Firmware.Inbox)
}

// fill checks every section, in the order of the file, and fills their defaults: the
// first error names its key.
func (c *Config) fill() error {
	if c.Version != ConfigVersion {
		return &ConfigError{"version", fmt.Sprintf("is %d, this posd reads version %d", c.Version, ConfigVersion)}
	}
	for _, fill := range []func() error{
		c.Terminal.fill, c.API.fill, c.PINPad.fill, c.Reader.fill,
		func() error { return c.Acquirer.fill(c.PINPad.DUKPT) },
		c.Store.fill, c.Offline.fill, c.Refund.fill, c.SAF.fill, c.Close.fill, c.HSM.fill, c.Firmware.fill, c.Log.fill, c.Metrics.fill,
	} {
		if err := fill(); err != nil {
			return err
		}
	}
	return nil
}

// A value that a config file could not give is left out, so that the output loads back:
// a zero duration and a zero int whose key has a `min` tag (the values of a section that
// is off). Loaded back, such a key takes its default, as it did.
func writeConfig(w io.Writer, c *Config) error {
	var buf bytes.Buffer
	if err := encodeLoadable(&buf, reflect.ValueOf(c).Elem()); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

var durationType = reflect.TypeFor[Duration]()

// encodeLoadable writes v as JSON in field order, leaving out the struct fields that
// writeConfig describes.
func encodeLoadable(buf *bytes.Buffer, v reflect.Value) error {
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct && !v.Type().Implements(unmarshalerType) {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		b, err := json.Marshal(v.Interface())
		buf.Write(b)
		return err
	}
	buf.WriteByte('{')
	first := true
	for _, f := range reflect.VisibleFields(v.Type()) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || len(f.Index) > 1 {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fv := v.FieldByIndex(f.Index)
		if fv.IsZero() && (f.Type == durationType || (f.Tag.Get("min") != "" && fv.CanInt())) {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(name)
		buf.Write(k)
		buf.WriteByte(':')
		if err := encodeLoadable(buf, fv); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	buf.WriteByte('}')
	return nil
}

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s").
type Duration time.Duration

// UnmarshalJSON parses a duration string; bare numbers are refused, since their unit would
// be a guess.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		if _, nerr := strconv.ParseFloat(string(data), 64); nerr == nil {
			return fmt.Errorf(`%s is a bare number: write a duration with its unit, such as "30s"`, data)
		}
		return fmt.Errorf(`%s is not a duration such as "30s"`, data)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`%q is not a duration such as "30s"`, s)
	}
	if v <= 0 {
		return fmt.Errorf(`%q is out of range: it must be above zero`, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// DurationOrOff is a Duration that may also be turned off: a positive Go duration string
// ("30s") or "off". Absent, the key's default applies. A value that is neither is kept for
// fill to report with its key.
type DurationOrOff struct {
	d   time.Duration // > 0: the duration; < 0: off; 0: absent
	bad string        // the value as written, when it is not valid
}

// Duration returns the duration, negative when it is off (as terminal.DeviceOptions
// takes it), or 0 when absent.
func (d DurationOrOff) Duration() time.Duration { return d.d }

// Off reports whether the value is "off".
func (d DurationOrOff) Off() bool { return d.d < 0 }

// UnmarshalJSON takes "off" or a positive duration string. Anything else is noted, and
// check reports it naming the key.
func (d *DurationOrOff) UnmarshalJSON(data []byte) error {
	*d = DurationOrOff{}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		d.bad = string(data)
		return nil
	}
	if s == "off" {
		d.d = -1
		return nil
	}
	if v, err := time.ParseDuration(s); err == nil && v > 0 {
		d.d = v
		return nil
	}
	d.bad = strconv.Quote(s)
	return nil
}

// MarshalJSON writes "off" or the duration string.
func (d DurationOrOff) MarshalJSON() ([]byte, error) {
	if d.Off() {
		return json.Marshal("off")
	}
	return json.Marshal(d.d.String())
}

// check fills def when d is absent, and reports a bad value as a ConfigError for key.
func (d *DurationOrOff) check(key string, def time.Duration) error {
	if d.bad != "" {
		return &ConfigError{key, fmt.Sprintf(`%s is neither a positive duration such as "30s" nor "off"`, d.bad)}
	}
	if d.d == 0 {
		d.d = def
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

// fill checks the terminal section and fills its defaults.
func (t *TerminalConfig) fill() error {
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
	if t.PartialApproval == nil {
		yes := true
		t.PartialApproval = &yes
	}
	return nil
}

// fill checks the log section and fills its defaults.
func (l *LogConfig) fill() error {
	switch l.Level {
	case "":
		l.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return &ConfigError{"log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", l.Level)}
	}
	switch l.Format {
	case "":
		l.Format = "text"
	case "text", "json":
	default:
		return &ConfigError{"log.format", fmt.Sprintf("%q is not one of text, json", l.Format)}
	}
	return nil
}
