package iso8583_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "posd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, tmpl *x509.Certificate) tls.Certificate {
		k := key()
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	p := testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = leaf(2, &x509.Certificate{Subject: pkix.Name{CommonName: "acquirer"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	p.client = leaf(3, &x509.Certificate{Subject: pkix.Name{CommonName: "TERM0001"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return p
}

func tlsHost(t *testing.T, conf *tls.Config) (string, *hostsim.Server) {
	t.Helper()
	srv, err := hostsim.NewServer(hostsim.Options{BDK: testBDK(t), Now: func() time.Time { return hostNow }})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serveOn(t, srv, conf)
	return addr, srv
}

func TestClientTLS(t *testing.T) {
	pki := newTestPKI(t)
	addr, srv := tlsHost(t, &tls.Config{Certificates: []tls.Certificate{pki.server}})

	// The server's certificate is verified against the given roots and the address's host.
	c := newClient(t, iso8583.ClientOptions{Addr: addr, TLS: &tls.Config{RootCAs: pki.pool}})
	resp, err := c.Send(ctxTimeout(t, 5*time.Second), build(t)(testAuth(t).Message()))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := iso8583.ParseAuthResponse(resp); !r.Approved() || len(srv.Ledger()) != 1 {
		t.Fatalf("response %+v", r)
	}

	// Unknown authority (the system roots) or another name: refused, nothing sent.
	for _, conf := range []*tls.Config{{}, {RootCAs: pki.pool, ServerName: "other.example"}} {
		c := newClient(t, iso8583.ClientOptions{Addr: addr, TLS: conf})
		a := testAuth(t)
		a.STAN = 2
		_, err := c.Send(ctxTimeout(t, 5*time.Second), build(t)(a.Message()))
		var verr *tls.CertificateVerificationError
		if !errors.Is(err, iso8583.ErrNotSent) || !errors.As(err, &verr) {
			t.Errorf("ServerName %q: err = %v, want ErrNotSent and a certificate verification error", conf.ServerName, err)
		}
	}
	if _, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr, TLS: &tls.Config{InsecureSkipVerify: true}}); err == nil {
		t.Error("InsecureSkipVerify accepted")
	}
	if len(srv.Ledger()) != 1 {
		t.Error("a refused connection reached the host")
	}
}

// A host that requires a client certificate: with one the terminal signs on and sells;
// without, the sign-on fails and the sale is not sent.
func TestClientTLSClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	addr, srv := tlsHost(t, &tls.Config{Certificates: []tls.Certificate{pki.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool})
	opts := iso8583.ClientOptions{Addr: addr, SignOn: true, TerminalID: "TERM0001", NextSTAN: stanCounter(1),
		TLS: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}}
	c := newClient(t, opts)
	if _, err := c.Send(ctxTimeout(t, 5*time.Second), build(t)(testAuth(t).Message())); err != nil {
		t.Fatal(err)
	}
	if !srv.SignedOn("TERM0001") {
		t.Error("not signed on")
	}

	opts.TLS = &tls.Config{RootCAs: pki.pool}
	opts.NextSTAN = stanCounter(100)
	c = newClient(t, opts)
	a := testAuth(t)
	a.STAN = 2
	if _, err := c.Send(ctxTimeout(t, 5*time.Second), build(t)(a.Message())); !errors.Is(err, iso8583.ErrNotSent) {
		t.Fatalf("without a client certificate: err = %v, want ErrNotSent", err)
	}
	if len(srv.Ledger()) != 1 {
		t.Errorf("ledger %v", srv.Ledger())
	}
}
