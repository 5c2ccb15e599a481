package access

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// Identity is an authenticated caller: a local process (Peer) or a TLS client certificate.
//
// A plain value: safe for concurrent use when not modified.
type Identity struct {
	Peer   bool     // true: a process on a unix socket, identified by the kernel
	UID    uint32   // with Peer
	GID    uint32   // with Peer: the process's effective group
	Groups []uint32 // with Peer: the user's supplementary groups, where the user is known
	PID    int32    // with Peer
	User   string   // with Peer: the user's name, "" when the uid has none
	// Subject is the verified client certificate's subject CN (not Peer).
	Subject string
}

// String names the identity for logs and the audit: "uid 1001 (alice) pid 4242" or
// "cert CN=till1".
func (id Identity) String() string {
	if !id.Peer {
		return "cert CN=" + id.Subject
	}
	s := "uid " + strconv.FormatUint(uint64(id.UID), 10)
	if id.User != "" {
		s += " (" + id.User + ")"
	}
	return s + " pid " + strconv.FormatInt(int64(id.PID), 10)
}

// Person is the key that tells two people apart for dual control and rate limits: the
// uid, or the certificate subject. Two processes of one user are one person.
func (id Identity) Person() string {
	if !id.Peer {
		return "cn:" + id.Subject
	}
	return "uid:" + strconv.FormatUint(uint64(id.UID), 10)
}

// ErrNoPeerCred: the connection is not a unix socket whose peer the kernel can name.
var ErrNoPeerCred = errors.New("access: no peer credentials on this connection")

// PeerCred returns the identity of the process at the other end of a unix socket
// connection (SO_PEERCRED), looking up its user's name and groups. c may be wrapped (by a
// TLS conn or a listener wrapper) if the wrapper has a NetConn method.
func PeerCred(c net.Conn) (Identity, error) {
	for {
		if uc, ok := c.(*net.UnixConn); ok {
			return unixPeer(uc)
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return Identity{}, ErrNoPeerCred
		}
		c = w.NetConn()
	}
}

func unixPeer(uc *net.UnixConn) (Identity, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrNoPeerCred, err)
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrNoPeerCred, err)
	}
	if serr != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrNoPeerCred, serr)
	}
	id := Identity{Peer: true, UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
		id.User = u.Username
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					id.Groups = append(id.Groups, uint32(n))
				}
			}
		}
	}
	return id, nil
}

type ctxKey int

const (
	peerKey ctxKey = iota
	callerKey
)

// peerResult is what ConnContext found on a connection.
type peerResult struct {
	id  Identity
	err error
}

// ConnContext is for http.Server.ConnContext: it reads the peer credentials of a unix
// socket connection once, when it is accepted. TLS connections are identified per request
// from their verified client certificate.
func (g *Guard) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.(*tls.Conn); ok {
		return ctx
	}
	id, err := PeerCred(c)
	if errors.Is(err, ErrNoPeerCred) && !isUnix(c) {
		return ctx
	}
	return context.WithValue(ctx, peerKey, peerResult{id, err})
}

func isUnix(c net.Conn) bool {
	for {
		if _, ok := c.(*net.UnixConn); ok {
			return true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = w.NetConn()
	}
}

// identify returns the request's authenticated identity.
func identify(r *http.Request) (Identity, error) {
	if p, ok := r.Context().Value(peerKey).(peerResult); ok {
		return p.id, p.err
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if cn == "" {
			return Identity{}, errors.New("access: the client certificate has no subject CN")
		}
		return Identity{Subject: cn}, nil
	}
	return Identity{}, errors.New("access: unauthenticated: posd takes requests over its unix socket or with a verified client certificate only")
}

// Caller is the authenticated caller of a request that the guard let through.
//
// A plain value: safe for concurrent use when not modified.
type Caller struct {
	Identity Identity
	Roles    []Role
	Op       Op
	// Approval, for a dual-control operation, is the approval id and FirstBy the identity
	// that requested it; both "" otherwise.
	Approval string
	FirstBy  string
	// Person, when the Credentials hook vouched for the call, names the person whose
	// credential it carried; "" otherwise.
	Person string
}

// Who is the text an audit entry records: the identity, and for a dual-control operation
// whose request it approved, e.g. "uid 60002 pid 77, approving uid 60001 pid 66 (approval
// 3f2a…)".
func (c Caller) Who() string {
	s := c.Identity.String()
	if c.Person != "" {
		s += " for " + c.Person
	}
	if c.Approval != "" {
		s += ", approving " + c.FirstBy + " (approval " + c.Approval + ")"
	}
	return s
}

// Has reports whether the caller holds role.
func (c Caller) Has(role Role) bool {
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// CallerFrom returns the caller the guard authenticated for this request's context.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey).(Caller)
	return c, ok
}

// WithCaller returns ctx carrying c, as the guard passes it to handlers (for tests of
// handlers without a guard).
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey, c)
}
