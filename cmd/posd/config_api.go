package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/access"
)

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
	RatePerMinute int `json:"rate_per_minute" min:"1"`
	// SearchesPerMinute bounds each caller's card searches (posctl journal find). Default 10.
	SearchesPerMinute int `json:"searches_per_minute" min:"1"`
	// MaxConnections caps the open API connections. Default 64.
	MaxConnections int `json:"max_connections" min:"1"`
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
