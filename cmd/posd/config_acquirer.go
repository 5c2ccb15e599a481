package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/posd-dev/posd/iso8583"
)

// AcquirerConfig is the link to the acquirer host.
type AcquirerConfig struct {
	// Address is the acquirer host's host:port. Required unless Addresses is given; both
	// together are an error.
	Address string `json:"address"`
	// Addresses are the acquirer's hosts, the primary first, then its backups in the order
	// posd tries them. A transaction moves to the next host only between transactions:
	// one written to a host is never sent to another. Default: [Address].
	Addresses []string `json:"addresses"`
	// PrimaryRetry: after moving away from the primary, posd tries it again this long after,
	// between transactions, and returns to it when it answers. Default 5m.
	PrimaryRetry    Duration `json:"primary_retry"`
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
	MaxInFlight int `json:"max_in_flight" min:"1"`
	// MACKey is the id of the MAC key, in the token (or soft key store) of hsm.data, that
	// MACs requests and verifies responses when the dialect declares a "mac". Its type must
	// fit the dialect's algorithm: double-length TDES for "retail", AES for "aes-cmac".
	// Load it with posd key import --id mac. Default "mac".
	MACKey string `json:"mac_key"`
	// KeyChange turns on working-key changes (the dialect must declare a "key_exchange"):
	// posd asks the acquirer for new working keys at start, on a schedule, after a number
	// of sales and on posctl keys rotate. Default none: keys change only by posd key.
	KeyChange *KeyChangeConfig `json:"key_change"`
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
	ServerName string `json:"server_name"` // name to verify; default: the host of each acquirer address
}

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

// fill checks the acquirer section and fills its defaults. dukpt is pinpad.dukpt: the
// dialect must carry PIN blocks of that kind.
func (a *AcquirerConfig) fill(dukpt string) error {
	if err := a.fillAddresses(); err != nil {
		return err
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
	if a.MACKey == "" {
		a.MACKey = "mac"
	}
	if a.KeyChange != nil {
		if err := a.KeyChange.fill(); err != nil {
			return err
		}
	}
	if a.ReversalWait == 0 {
		a.ReversalWait = Duration(10 * time.Second)
	}
	if a.ReversalWait < 0 {
		return &ConfigError{"acquirer.reversal_wait", "must be a positive duration"}
	}
	if a.MaxInFlight < 1 || a.MaxInFlight > 1024 {
		return &ConfigError{"acquirer.max_in_flight", "must be 1 to 1024"}
	}
	dialect, err := a.loadDialect()
	if err != nil {
		return err
	}
	if dialect == nil {
		dialect = iso8583.DefaultDialect()
	}
	if err := checkPINFields(dukpt, dialect, a.Dialect); err != nil {
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
	return nil
}

// fillAddresses checks acquirer.address and acquirer.addresses (one or the other) and
// fills PrimaryRetry's default. Hosts returns the list either gives.
func (a *AcquirerConfig) fillAddresses() error {
	switch {
	case a.Address != "" && a.Addresses != nil:
		return &ConfigError{"acquirer.addresses", "given together with acquirer.address: use one of them (addresses lists the primary first, then the backups)"}
	case a.Address == "" && a.Addresses == nil:
		return &ConfigError{"acquirer.address", "required (host:port of the acquirer), or acquirer.addresses for a primary and its backups"}
	case a.Addresses == nil:
		if err := checkHostPort("acquirer.address", a.Address); err != nil {
			return err
		}
	default:
		if len(a.Addresses) == 0 {
			return &ConfigError{"acquirer.addresses", "empty: list at least one host:port, the primary first"}
		}
		seen := make(map[string]bool, len(a.Addresses))
		for i, addr := range a.Addresses {
			key := fmt.Sprintf("acquirer.addresses[%d]", i)
			if err := checkHostPort(key, addr); err != nil {
				return err
			}
			if seen[addr] {
				return &ConfigError{key, fmt.Sprintf("%q is listed twice", addr)}
			}
			seen[addr] = true
		}
	}
	if a.PrimaryRetry < 0 {
		return &ConfigError{"acquirer.primary_retry", "must be a positive duration"}
	}
	if a.PrimaryRetry == 0 {
		a.PrimaryRetry = Duration(iso8583.DefaultPrimaryRetry)
	}
	return nil
}

// checkHostPort checks that addr, the value of key, is host:port.
func checkHostPort(key, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return &ConfigError{key, fmt.Sprintf("%q is not host:port", addr)}
	}
	return nil
}

// Hosts returns the acquirer's hosts, the primary first: Addresses, or Address alone.
func (a *AcquirerConfig) Hosts() []string {
	if a.Addresses != nil {
		return a.Addresses
	}
	return []string{a.Address}
}

// loadDialect loads acquirer.dialect: nil when it is "" (posd's default dialect).
func (a *AcquirerConfig) loadDialect() (*iso8583.Dialect, error) {
	if a.Dialect == "" {
		return nil, nil
	}
	d, err := iso8583.LoadDialect(a.Dialect)
	if err != nil {
		key := "acquirer.dialect"
		var de *iso8583.DialectError
		if errors.As(err, &de) && de.Setting != "" {
			key += " (" + de.Setting + ")"
		}
		return nil, &ConfigError{key, err.Error()}
	}
	return d, nil
}
