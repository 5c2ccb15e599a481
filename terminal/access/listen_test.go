package access

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestListenUnixModeWhateverUmask(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posd.sock")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	ln, err := ListenUnix(path, 0o660, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v under umask 000, want 0660", fi.Mode())
	}
	// The kernel names the caller.
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	id, err := PeerCred(c)
	if err != nil || !id.Peer || id.UID != uint32(os.Getuid()) || id.PID != int32(os.Getpid()) {
		t.Errorf("peer: %+v %v", id, err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	// A world-writable directory without the sticky bit is refused.
	syscall.Umask(old)
	open := t.TempDir()
	os.Chmod(open, 0o777)
	if _, err := ListenUnix(filepath.Join(open, "posd.sock"), 0o660, -1); !errors.Is(err, ErrUnsafeDir) {
		t.Errorf("world-writable directory: %v", err)
	}
}

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(inner, 1)
	defer ln.Close()
	for range 2 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan net.Conn)
	go func() {
		c, _ := ln.Accept()
		got <- c
	}()
	select {
	case <-got:
		t.Fatal("a second connection was accepted with the cap at 1")
	case <-time.After(50 * time.Millisecond):
	}
	first.Close()
	if c := <-got; c == nil {
		t.Error("the second connection was not accepted after the first closed")
	} else {
		c.Close()
	}
}

// pki is a CA and certificates it issued, in PEM files.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), caCert: cert, caKey: key}
	os.WriteFile(filepath.Join(p.dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return p
}

// issue writes cn.pem and cn.key and returns the pair.
func (p *pki) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	os.WriteFile(filepath.Join(p.dir, cn+".pem"), certPEM, 0o600)
	os.WriteFile(filepath.Join(p.dir, cn+".key"), keyPEM, 0o600)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func TestMutualTLS(t *testing.T) {
	good, other := newPKI(t, "posd test CA"), newPKI(t, "another CA")
	good.issue(t, "posd", true)
	tc, err := ServerTLS(filepath.Join(good.dir, "posd.pem"), filepath.Join(good.dir, "posd.key"), filepath.Join(good.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewMap(RolesConfig{"supervisor": {Subjects: []string{"CN=sup1"}}})
	g, _ := New(Options{Roles: m})
	g.HandleFunc("GET /v1/saf", OpSAFList, func(w http.ResponseWriter, r *http.Request) {
		c, _ := CallerFrom(r.Context())
		io.WriteString(w, c.Who())
	})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g, ConnContext: g.ConnContext, ErrorLog: nil}
	go srv.Serve(tls.NewListener(LimitListener(inner, 8), tc))
	defer srv.Close()
	url := "https://" + inner.Addr().String() + "/v1/saf"
	roots := x509.NewCertPool()
	roots.AddCert(good.caCert)
	get := func(certs ...tls.Certificate) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b), nil
	}
	if out, err := get(); err == nil {
		t.Errorf("no client certificate: %s, want a refused handshake", out)
	}
	if out, err := get(other.issue(t, "sup1", false)); err == nil {
		t.Errorf("a certificate from another CA: %s, want a refused handshake", out)
	}
	if out, err := get(good.issue(t, "sup1", false)); err != nil || !strings.HasPrefix(out, "200") || !strings.Contains(out, "cert CN=sup1") {
		t.Errorf("good certificate: %q %v", out, err)
	}
	if out, err := get(good.issue(t, "till9", false)); err != nil || !strings.HasPrefix(out, "403") {
		t.Errorf("good certificate without a role: %q %v", out, err)
	}
}
