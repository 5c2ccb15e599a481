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
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal/access"
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
}

// FirmwareConfig turns on signed firmware updates (posctl firmware).
type FirmwareConfig struct {
	// Model is this terminal's hardware model, which an image must list. Default "":
	// firmware updates are off.
	Model string `json:"model"`
	// StateDir holds the A/B slots, the trusted metadata and the event log. Default
	// /var/lib/posd/firmware.
	StateDir string `json:"state_dir"`
	// MaxBootAttempts is how many starts a new slot gets to pass posd's self-test before
	// the previous slot starts again. Default 3.
	MaxBootAttempts int `json:"max_boot_attempts"`
	// Inbox is the only directory a bundle path given to the API ("source") may name: a
	// file in it (or a symlink to one in it), or a bundle directory in it; FIFOs, devices,
	// sockets and symlinks out of it are refused. Default STATE_DIR/inbox, which posd
	// creates (mode 0700); another directory must exist. Either must not be writable by
	// every user: posd refuses to start otherwise.
	Inbox string `json:"inbox"`
	// AllowedURLs are the https:// URL prefixes ("https://host[:port]/path/") a source URL
	// must start with; redirects must stay on them. Default none: URL sources are refused.
	AllowedURLs []string `json:"allowed_urls"`
	// DownloadTimeout caps a whole download. Default 10m; at most 24h.
	DownloadTimeout Duration `json:"download_timeout"`
	// MinRateBytes is the least a download must bring, in bytes per second, over every
	// 10 s window after the first one; a slower (stalled) download is aborted and the
	// firmware operation slot is free at once. Default 4096.
	MinRateBytes int64 `json:"min_rate_bytes"`
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

// APIConfig is the local till and operator API. Every caller is authenticated (the
// kernel's SO_PEERCRED on the unix socket, a verified client certificate on TCP) and
// mapped to roles; see package terminal/access.
type APIConfig struct {
	// Listen is "unix:/path/to.sock" or a loopback "127.0.0.1:PORT" / "[::1]:PORT", which
	// needs TLS (mutual TLS). Default "unix:/run/posd/posd.sock".
	Listen string `json:"listen"`
	// SocketMode is the unix socket's mode, set whatever the umask. Default "0660".
	SocketMode string `json:"socket_mode"`
	// SocketGroup is the unix socket's group, by name or id. Default: posd's own group.
	SocketGroup string `json:"socket_group"`
	// TLS is the mutual-TLS listener: required when Listen is TCP; with a unix Listen,
	// TLS.Listen adds a loopback TCP listener beside the socket. Default none.
	TLS *APITLSConfig `json:"tls"`
	// Roles maps users, groups and certificate subjects to the roles cashier, supervisor
	// and technician. Default none: every request is refused.
	Roles access.RolesConfig `json:"roles"`
	// DualControlWindow is how long the first request of saf delete or firmware rollback
	// waits for a second person. Default 5m.
	DualControlWindow Duration `json:"dual_control_window"`
	// RatePerMinute bounds each caller's write requests (all but GETs, Payment and
	// TransactionStatus) and the audit entries of its refusals. Default 30.
	RatePerMinute int `json:"rate_per_minute"`
	// SearchesPerMinute bounds each caller's card searches (posctl journal find). Default 10.
	SearchesPerMinute int `json:"searches_per_minute"`
	// MaxConnections caps the open API connections. Default 64.
	MaxConnections int `json:"max_connections"`
	// ReadTimeout bounds reading a whole request, body included. Default 10s. (Answers
	// have no time limit: a sale waits for the customer.)
	ReadTimeout Duration `json:"read_timeout"`
	// OperatorsFile is the file of operators (supervisors, technicians) whose own id and
	// password a till may send with a request its process's role does not allow (posd
	// operator add). Their passwords are checked under the "operator" key of hsm.data.
	// Default "": off.
	OperatorsFile string `json:"operators_file"`

	roles      *access.Map
	socketMode os.FileMode
	socketGID  int
}

// APITLSConfig is the API's mutual-TLS listener. All three files are required.
type APITLSConfig struct {
	// Listen is a loopback IP:PORT for the TLS listener beside a unix api.listen; with a
	// TCP api.listen it must be empty or the same. Default: api.listen.
	Listen       string `json:"listen"`
	CertFile     string `json:"cert_file"`      // posd's certificate
	KeyFile      string `json:"key_file"`       // its private key
	ClientCAFile string `json:"client_ca_file"` // CAs that issue the clients' certificates
}

// PINPadConfig is the PIN pad's serial line.
type PINPadConfig struct {
	Port        string   `json:"port"`          // serial device path, e.g. /dev/ttyUSB0; required
	Baud        int      `json:"baud"`          // default 19200 (ABECS)
	ACKTimeout  Duration `json:"ack_timeout"`   // default 2s (ABECS)
	PINKeyIndex int      `json:"pin_key_index"` // the pad's DUKPT key slot for PINs; default 1
	// DUKPT is the kind of the pad's PIN key: "tdes" (TDES DUKPT, ISO 9564 format 0, 8-byte
	// PIN blocks and 10-byte KSNs; the default) or "aes" (AES DUKPT, ANSI X9.24-3, format 4,
	// 16-byte PIN blocks and 12-byte KSNs). The acquirer's dialect must carry the blocks:
	// "aes" needs an acquirer.dialect whose field 52 takes 16 bytes, such as
	// iso8583/dialects/aes-pin.json. The pad's GPN and GOC (chip online PIN) use the kind.
	DUKPT string `json:"dukpt"`
	// ResponseTimeout bounds the pad's answer to a command that needs no customer. Default 10s.
	ResponseTimeout Duration `json:"response_timeout"`
	// ReconnectMin and ReconnectMax bound the wait between reconnection attempts after a
	// pulled cable. Defaults 500ms and 30s.
	ReconnectMin Duration `json:"reconnect_min"`
	ReconnectMax Duration `json:"reconnect_max"`
	// FailAfter is how long the pad may be away before its status turns from
	// reconnecting to failed. Default 1m.
	FailAfter Duration `json:"fail_after"`
	// Heartbeat is how long the pad's link may stay idle before posd checks that the pad
	// still answers (GIN, which changes nothing on the pad; never during a command): a pad
	// that lost power behind a cable that is still there then shows as reconnecting, with
	// "heartbeat got no answer", instead of at the next sale. "off" disables it. Default 30s.
	Heartbeat DurationOrOff `json:"heartbeat"`
}

// ReaderConfig chooses the card reader.
type ReaderConfig struct {
	// Source is "pinpad" (the pad's own reader, chip and stripe; default) or "serial"
	// (a MagTek / ID TECH magnetic stripe reader on its own port; chip cards are then not
	// read).
	Source string `json:"source"`
	Port   string `json:"port"` // with "serial": the reader's device; required
	Baud   int    `json:"baud"` // with "serial": default 9600
}

// AcquirerConfig is the link to the acquirer host.
type AcquirerConfig struct {
	Address         string   `json:"address"`          // host:port; required
	DialTimeout     Duration `json:"dial_timeout"`     // default 5s
	ResponseTimeout Duration `json:"response_timeout"` // default 30s
	// RequireAtStart makes posd refuse to start when the acquirer cannot be reached. Default
	// true: a terminal that cannot go online says so at once rather than at the first sale.
	RequireAtStart *bool `json:"require_at_start"`
	// Dialect is the acquirer's ISO 8583 dialect: a JSON spec file (moov-io's format, with
	// its framing). Default "": posd's ISO 8583:1987 ASCII dialect, 2-byte binary length.
	Dialect string `json:"dialect"`
	// Framing overrides the dialect's framing: {"length": "binary2"|"ascii4"|"bcd2",
	// "tpdu": "6000010000"}. Default: the dialect's.
	Framing *iso8583.FramingConfig `json:"framing"`
	// TLS turns on TLS to the acquirer (the server's certificate is always verified).
	// Default none: plain TCP.
	TLS *TLSConfig `json:"tls"`
	// SignOn sends an 0800 sign-on on each new connection and uses it only when the host
	// answers 00; posd signs off when it stops. Default true.
	SignOn *bool `json:"sign_on"`
	// EchoInterval sends an 0800 echo after this long without traffic; a link silent past
	// DeadLinkTimeout is closed and dialled again. Defaults 60s and EchoInterval.
	EchoInterval    Duration `json:"echo_interval"`
	DeadLinkTimeout Duration `json:"dead_link_timeout"`
	// MaxInFlight bounds the requests waiting for answers at once. Default 64.
	MaxInFlight int `json:"max_in_flight"`
	// ReversalWait bounds how long a sale spends sending reversals still pending before
	// its own authorization may go out; with one still pending after it, the sale does
	// not go online. Default 10s.
	ReversalWait Duration `json:"reversal_wait"`
}

// TLSConfig is the acquirer link's TLS.
type TLSConfig struct {
	CAFile     string `json:"ca_file"`     // CA certificates to verify the acquirer with; default: the system's
	CertFile   string `json:"cert_file"`   // client certificate, when the acquirer asks for one
	KeyFile    string `json:"key_file"`    // its private key
	ServerName string `json:"server_name"` // name to verify; default: the host of acquirer.address
}

// StoreConfig is the bbolt file.
type StoreConfig struct {
	Path string `json:"path"` // required
	// MaxSizeMiB caps the file, as a partition would; when it is reached new sales fail
	// with a clear reason and everything queued is kept. Default 0: no cap.
	MaxSizeMiB int `json:"max_size_mib"`
	// Keep is how long a closed batch stays in the live file after its close; older
	// closed batches are archived (see ArchiveDir). Default 30 days ("720h"); the newest
	// closed batch is always kept.
	Keep Duration `json:"keep"`
	// ArchiveDir is where archived batches go, one sealed file per month. Default: the
	// store file's directory + "/archive".
	ArchiveDir string `json:"archive_dir"`
}

// OfflineConfig is the offline approval policy. Money is in integer minor units.
type OfflineConfig struct {
	Enabled         bool     `json:"enabled"`           // default false: nothing is approved offline
	FloorLimitMinor *int64   `json:"floor_limit_minor"` // per sale; default 5000
	MaxCount        *int     `json:"max_count"`         // offline approvals waiting for the host; default 100
	MaxTotalMinor   *int64   `json:"max_total_minor"`   // their sum; default 50000
	MaxAge          Duration `json:"max_age"`           // of the oldest waiting; default 48h
}

// RefundConfig decides which refunds posd takes (nexo PaymentType "Refund", posctl
// refund; the supervisor role). Money is in integer minor units.
type RefundConfig struct {
	Enabled *bool `json:"enabled"` // default true; false refuses every refund
	// AllowUnhashed takes a linked refund of a sale journaled without a PAN hash (no
	// hsm.pan_hash_key then), whose card cannot be checked. Default false.
	AllowUnhashed bool `json:"allow_unhashed"`
	// Unlinked takes refunds that name no original sale. Default false; when true,
	// max_minor and daily_max_minor are required.
	Unlinked      bool  `json:"unlinked"`
	MaxMinor      int64 `json:"max_minor"`       // one unlinked refund; default 0 (required with unlinked)
	DailyMaxMinor int64 `json:"daily_max_minor"` // unlinked refunds of one local day; default 0 (required with unlinked)
}

// SAFConfig tunes the store-and-forward of reversals and advices.
type SAFConfig struct {
	Window      int      `json:"window"`       // messages in flight while draining; default 16
	MaxAttempts int      `json:"max_attempts"` // sends before an item is parked with an alert; default 10
	MinBackoff  Duration `json:"min_backoff"`  // default 1s
	MaxBackoff  Duration `json:"max_backoff"`  // default 5m
}

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
	if err := c.API.fill(); err != nil {
		return err
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
	switch p.DUKPT {
	case "":
		p.DUKPT = DUKPTTDES
	case DUKPTTDES, DUKPTAES:
	default:
		return &ConfigError{"pinpad.dukpt", fmt.Sprintf("%q is not one of tdes, aes", p.DUKPT)}
	}
	if p.ResponseTimeout == 0 {
		p.ResponseTimeout = Duration(10 * time.Second)
	}
	if p.ReconnectMin == 0 {
		p.ReconnectMin = Duration(500 * time.Millisecond)
	}
	if p.ReconnectMax == 0 {
		p.ReconnectMax = Duration(30 * time.Second)
	}
	if p.FailAfter == 0 {
		p.FailAfter = Duration(time.Minute)
	}
	if p.ReconnectMax < p.ReconnectMin {
		return &ConfigError{"pinpad.reconnect_max", "must not be shorter than pinpad.reconnect_min"}
	}
	if err := p.Heartbeat.check("pinpad.heartbeat", 30*time.Second); err != nil {
		return err
	}
	r := &c.Reader
	switch r.Source {
	case "":
		r.Source = "pinpad"
	case "pinpad":
	case "serial":
		if r.Port == "" {
			return &ConfigError{"card_reader.port", `required with source "serial"`}
		}
		if r.Baud == 0 {
			r.Baud = 9600
		}
		if !validBaud(r.Baud) {
			return &ConfigError{"card_reader.baud", fmt.Sprintf("%d is not a standard rate (1200 to 115200)", r.Baud)}
		}
	default:
		return &ConfigError{"card_reader.source", fmt.Sprintf("%q is not one of pinpad, serial", r.Source)}
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
	if a.SignOn == nil {
		yes := true
		a.SignOn = &yes
	}
	if a.EchoInterval == 0 {
		a.EchoInterval = Duration(60 * time.Second)
	}
	if a.MaxInFlight == 0 {
		a.MaxInFlight = 64
	}
	if a.ReversalWait == 0 {
		a.ReversalWait = Duration(10 * time.Second)
	}
	if a.ReversalWait < 0 {
		return &ConfigError{"acquirer.reversal_wait", "must be a positive duration"}
	}
	if c.Terminal.PartialApproval == nil {
		yes := true
		c.Terminal.PartialApproval = &yes
	}
	if a.MaxInFlight < 1 || a.MaxInFlight > 1024 {
		return &ConfigError{"acquirer.max_in_flight", "must be 1 to 1024"}
	}
	dialect := iso8583.DefaultDialect()
	if a.Dialect != "" {
		d, err := iso8583.LoadDialect(a.Dialect)
		if err != nil {
			key := "acquirer.dialect"
			var de *iso8583.DialectError
			if errors.As(err, &de) && de.Setting != "" {
				key += " (" + de.Setting + ")"
			}
			return &ConfigError{key, err.Error()}
		}
		dialect = d
	}
	if err := checkPINFields(p.DUKPT, dialect, a.Dialect); err != nil {
		return err
	}
	if a.Framing != nil {
		if _, err := a.Framing.Framer(); err != nil {
			return &ConfigError{"acquirer.framing", err.Error()}
		}
	}
	if a.TLS != nil && (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		return &ConfigError{"acquirer.tls", "cert_file and key_file go together"}
	}
	if c.Store.Path == "" {
		return &ConfigError{"store.path", "required (the bbolt journal file)"}
	}
	if c.Store.MaxSizeMiB < 0 {
		return &ConfigError{"store.max_size_mib", "must not be negative"}
	}
	switch {
	case c.Store.Keep < 0:
		return &ConfigError{"store.keep", "must not be negative"}
	case c.Store.Keep == 0:
		c.Store.Keep = Duration(30 * 24 * time.Hour)
	}
	if c.Store.ArchiveDir == "" {
		c.Store.ArchiveDir = store.ArchiveDir(c.Store.Path)
	}
	o := &c.Offline
	def := int64(5000)
	if o.FloorLimitMinor == nil {
		o.FloorLimitMinor = &def
	}
	if o.MaxCount == nil {
		n := 100
		o.MaxCount = &n
	}
	if o.MaxTotalMinor == nil {
		t := int64(50000)
		o.MaxTotalMinor = &t
	}
	if o.MaxAge == 0 {
		o.MaxAge = Duration(48 * time.Hour)
	}
	switch {
	case *o.FloorLimitMinor < 0:
		return &ConfigError{"offline.floor_limit_minor", "must not be negative"}
	case *o.MaxCount < 0:
		return &ConfigError{"offline.max_count", "must not be negative"}
	case *o.MaxTotalMinor < 0:
		return &ConfigError{"offline.max_total_minor", "must not be negative"}
	}
	rf := &c.Refund
	if rf.Enabled == nil {
		on := true
		rf.Enabled = &on
	}
	switch {
	case rf.MaxMinor < 0:
		return &ConfigError{"refund.max_minor", "must not be negative"}
	case rf.DailyMaxMinor < 0:
		return &ConfigError{"refund.daily_max_minor", "must not be negative"}
	case rf.Unlinked && rf.MaxMinor == 0:
		return &ConfigError{"refund.max_minor", "required (above 0) when refund.unlinked is on"}
	case rf.Unlinked && rf.DailyMaxMinor == 0:
		return &ConfigError{"refund.daily_max_minor", "required (above 0) when refund.unlinked is on"}
	}
	f := &c.SAF
	if f.Window == 0 {
		f.Window = 16
	}
	if f.MaxAttempts == 0 {
		f.MaxAttempts = 10
	}
	if f.MinBackoff == 0 {
		f.MinBackoff = Duration(time.Second)
	}
	if f.MaxBackoff == 0 {
		f.MaxBackoff = Duration(5 * time.Minute)
	}
	switch {
	case f.Window < 1 || f.Window > 256:
		return &ConfigError{"saf.window", "must be 1 to 256"}
	case f.MaxAttempts < 1:
		return &ConfigError{"saf.max_attempts", "must be at least 1"}
	case f.MaxBackoff < f.MinBackoff:
		return &ConfigError{"saf.max_backoff", "must not be shorter than saf.min_backoff"}
	}
	if err := c.Close.fill(); err != nil {
		return err
	}
	if c.HSM.Backend == "" {
		c.HSM.Backend = BackendPINPad
	}
	if d := c.HSM.Data; d != nil {
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
	if c.Firmware.Model != "" {
		if c.Firmware.StateDir == "" {
			c.Firmware.StateDir = "/var/lib/posd/firmware"
		}
		if c.Firmware.MaxBootAttempts == 0 {
			c.Firmware.MaxBootAttempts = 3
		}
		if c.Firmware.MaxBootAttempts < 1 || c.Firmware.MaxBootAttempts > 100 {
			return &ConfigError{"firmware.max_boot_attempts", "must be 1 to 100"}
		}
		if err := c.Firmware.checkSources(); err != nil {
			return err
		}
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

// The kinds of PIN pad key (pinpad.dukpt).
const (
	DUKPTTDES = "tdes"
	DUKPTAES  = "aes"
)

// checkPINFields checks that the acquirer's dialect carries the PIN blocks and KSNs of the
// pad's key kind, so that a mismatch stops posd at start rather than failing every PIN sale.
func checkPINFields(kind string, d *iso8583.Dialect, file string) error {
	block, ksn := iso8583.TDESPINBlockLen, iso8583.TDESKSNDigits
	if kind == DUKPTAES {
		block, ksn = iso8583.AESPINBlockLen, iso8583.AESKSNDigits
	}
	err := iso8583.CheckPINFields(d.Spec, block, ksn)
	if err == nil {
		return nil
	}
	where := "posd's default dialect"
	if file != "" {
		where = "acquirer.dialect " + file
	}
	fix := "use a dialect whose field 52 takes 16 bytes, such as iso8583/dialects/aes-pin.json"
	if kind == DUKPTTDES {
		fix = `use a dialect whose field 52 takes 8 bytes, or set pinpad.dukpt to "aes" if the pad's key is AES`
	}
	var fe *iso8583.FieldError
	if errors.As(err, &fe) && fe.Err != nil {
		err = fe.Err // its text names the field already
	}
	return &ConfigError{"pinpad.dukpt", fmt.Sprintf("%q PIN blocks do not fit %s: %v; %s", kind, where, err, fix)}
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

// fill checks the api section and resolves its role map, so that posd refuses to start
// (and config check refuses the file) with one line naming the key.
func (a *APIConfig) fill() error {
	if a.Listen == "" {
		a.Listen = "unix:/run/posd/posd.sock"
	}
	if a.TLS != nil {
		t := a.TLS
		switch {
		case t.CertFile == "":
			return &ConfigError{"api.tls.cert_file", "required (posd's certificate)"}
		case t.KeyFile == "":
			return &ConfigError{"api.tls.key_file", "required (the certificate's private key)"}
		case t.ClientCAFile == "":
			return &ConfigError{"api.tls.client_ca_file", "required (the CA that issues the clients' certificates)"}
		}
	}
	if path, ok := strings.CutPrefix(a.Listen, "unix:"); ok {
		if path == "" {
			return &ConfigError{"api.listen", "unix socket path is empty"}
		}
		if err := access.CheckSocketDir(path); err != nil {
			return &ConfigError{"api.listen", err.Error()}
		}
		if a.TLS != nil {
			if a.TLS.Listen == "" {
				return &ConfigError{"api.tls.listen", "required with a unix api.listen (the loopback IP:PORT of the TLS listener)"}
			}
			if err := loopback(a.TLS.Listen); err != nil {
				return &ConfigError{"api.tls.listen", err.Error()}
			}
		}
	} else {
		if err := loopback(a.Listen); err != nil {
			return &ConfigError{"api.listen", err.Error()}
		}
		if a.TLS == nil {
			return &ConfigError{"api.listen", "a TCP listener needs api.tls (mutual TLS)"}
		}
		if a.TLS.Listen != "" && a.TLS.Listen != a.Listen {
			return &ConfigError{"api.tls.listen", "with a TCP api.listen, leave it empty (or the same address)"}
		}
	}
	if a.SocketMode == "" {
		a.SocketMode = "0660"
	}
	m, err := strconv.ParseUint(a.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return &ConfigError{"api.socket_mode", fmt.Sprintf("%q is not an octal mode such as \"0660\"", a.SocketMode)}
	}
	if m&0o007 != 0 {
		return &ConfigError{"api.socket_mode", fmt.Sprintf("%s lets every local user connect; use 0660 and api.socket_group", a.SocketMode)}
	}
	a.socketMode = os.FileMode(m)
	a.socketGID = os.Getgid()
	if a.SocketGroup != "" {
		gid, err := strconv.Atoi(a.SocketGroup)
		if err != nil {
			g, lerr := user.LookupGroup(a.SocketGroup)
			if lerr == nil {
				gid, err = strconv.Atoi(g.Gid)
			}
			if lerr != nil || err != nil {
				return &ConfigError{"api.socket_group", fmt.Sprintf("%q is not a group on this machine", a.SocketGroup)}
			}
		}
		if gid < 0 {
			return &ConfigError{"api.socket_group", "must not be negative"}
		}
		a.socketGID = gid
	}
	a.roles, err = access.NewMap(a.Roles)
	if err != nil {
		var ke *access.KeyError
		if errors.As(err, &ke) {
			return &ConfigError{"api.roles." + ke.Key, ke.Reason}
		}
		return &ConfigError{"api.roles", err.Error()}
	}
	if a.DualControlWindow == 0 {
		a.DualControlWindow = Duration(5 * time.Minute)
	}
	if a.RatePerMinute == 0 {
		a.RatePerMinute = 30
	}
	if a.SearchesPerMinute == 0 {
		a.SearchesPerMinute = 10
	}
	if a.SearchesPerMinute < 1 || a.SearchesPerMinute > 1000 {
		return &ConfigError{"api.searches_per_minute", "must be 1 to 1000"}
	}
	if a.RatePerMinute < 1 || a.RatePerMinute > 100000 {
		return &ConfigError{"api.rate_per_minute", "must be 1 to 100000"}
	}
	if a.MaxConnections == 0 {
		a.MaxConnections = 64
	}
	if a.MaxConnections < 1 || a.MaxConnections > 4096 {
		return &ConfigError{"api.max_connections", "must be 1 to 4096"}
	}
	if a.ReadTimeout == 0 {
		a.ReadTimeout = Duration(10 * time.Second)
	}
	return nil
}

// loopback checks a TCP listen address: IP:PORT on a loopback address.
func loopback(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not IP:PORT or unix:PATH", addr)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("%s is not a loopback address; the till API is local only", ap.Addr())
	}
	return nil
}
