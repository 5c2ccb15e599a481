package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

// When the test binary is started with this variable set, it is acquirer-sim itself: the
// signal test runs the real main in a child process.
const childEnv = "ACQUIRER_SIM_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// sale sends one keyed 0200 and returns the response code.
func sale(t *testing.T, addr, pan string, stan uint32, amount int64) string {
	t.Helper()
	p, err := card.ParsePAN(pan)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := iso8583.Authorization{
		AmountMinor: amount, CurrencyNumeric: "978", STAN: stan,
		TransmissionTime: time.Now(), LocalTime: time.Now(),
		PAN: p, Expiry: "3012", EntryMode: "012", TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
	}.Message()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := resp.GetString(39)
	return rc
}

// listenAddr reads the first line and returns the address in it.
func listenAddr(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("first line: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "acquirer-sim listening on ")
	if !ok || strings.HasSuffix(addr, ":0") {
		t.Fatalf("first line %q", line)
	}
	return addr
}

func TestRunServesAndPrintsLedger(t *testing.T) {
	dir := t.TempDir()
	cards := filepath.Join(dir, "cards.json")
	os.WriteFile(cards, []byte(`[{"pan":"4012345678909","pin":"1234","balance_minor":1000,"expiry":"3012"}]`), 0o600)

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--listen", "127.0.0.1:0", "--cards", cards}, pw, &stderr)
		pw.Close()
	}()
	out := bufio.NewReader(pr)
	addr := listenAddr(t, out)

	if rc := sale(t, addr, "4012345678909", 1, 600); rc != "00" {
		t.Errorf("first sale: rc %s", rc)
	}
	if rc := sale(t, addr, "4012345678909", 2, 600); rc != "51" {
		t.Errorf("second sale: rc %s", rc)
	}
	if rc := sale(t, addr, "4761739001010010", 3, 100); rc != "14" {
		t.Errorf("card not in the file: rc %s", rc)
	}
	cancel()
	rest, _ := io.ReadAll(out)
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d, stderr %s", c, stderr.String())
	}
	text := string(rest)
	for _, want := range []string{"rc=00", "rc=51", "rc=14", "ledger: 1 approved", "pan=401234***8909 amount=600"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "hostsim: 0200"); n != 3 {
		t.Errorf("%d request lines, want 3:\n%s", n, text)
	}
	if strings.Contains(text, "4012345678909") || strings.Contains(text, "4761739001010010") {
		t.Errorf("output shows a full PAN:\n%s", text)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--bdk", "0123"},
		{"--bdk", strings.Repeat("zz", 16)},
		{"--listen", "not an address"},
		{"--cards", "/nonexistent/cards.json"},
		{"--no-such-flag"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
			t.Errorf("%q: exit code %d, want 1", args, code)
		}
		if stderr.Len() == 0 {
			t.Errorf("%q: nothing on stderr", args)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q", args, stdout.String())
		}
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, io.Discard, &stderr); code != 0 {
		t.Errorf("--help: exit code %d", code)
	}
	if !strings.Contains(stderr.String(), "PUBLIC ANSI X9.24-1 test key") {
		t.Errorf("--help does not warn about the test key:\n%s", stderr.String())
	}
}

// The real binary (this test binary as a child) exits 0 on SIGTERM after the ledger.
func TestSignalExitsZero(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	addr := listenAddr(t, out)
	if rc := sale(t, addr, "4761739001010010", 7, 100); rc != "00" {
		t.Errorf("rc %s", rc)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr %s", err, stderr.String())
	}
	if !strings.Contains(string(rest), "ledger: 1 approved") || !strings.Contains(string(rest), "476173******0010") {
		t.Errorf("output after SIGTERM:\n%s", rest)
	}
}

// writeTestPKI writes a CA and a host certificate for 127.0.0.1 as PEM files and returns
// their paths and the CA pool.
func writeTestPKI(t *testing.T, dir string) (caPath, certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caPath, certPath, keyPath = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "host.pem"), filepath.Join(dir, "host.key")
	for path, block := range map[string]*pem.Block{caPath: {Type: "CERTIFICATE", Bytes: caDER},
		certPath: {Type: "CERTIFICATE", Bytes: der}, keyPath: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return caPath, certPath, keyPath, pool
}

// The simulator speaks a dialect from a file, over TLS; a terminal loading the same file
// sells and reverses through it.
func TestRunDialectOverTLS(t *testing.T) {
	const dialectFile = "../../iso8583/testdata/dialects/bcd87.json"
	_, certPath, keyPath, pool := writeTestPKI(t, t.TempDir())
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--listen", "127.0.0.1:0", "--dialect", dialectFile, "--tls-cert", certPath, "--tls-key", keyPath}, pw, &stderr)
		pw.Close()
	}()
	out := bufio.NewReader(pr)
	addr := listenAddr(t, out)

	d, err := iso8583.LoadDialect(dialectFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr, Dialect: d, TLS: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pan, _ := card.ParsePAN("4761739001010010")
	now := time.Now()
	sale := iso8583.Authorization{AmountMinor: 100, CurrencyNumeric: "978", STAN: 1, TransmissionTime: now, LocalTime: now,
		PAN: pan, Expiry: "3012", EntryMode: "012", TerminalID: "TERM0001", MerchantID: "MERCHANT0000001"}
	rev := iso8583.Reversal{Advice: true, STAN: 2, TransmissionTime: now, OriginalMTI: "0200", OriginalSTAN: 1,
		OriginalTransmissionTime: now, PAN: pan, AmountMinor: 100, CurrencyNumeric: "978", TerminalID: "TERM0001",
		MerchantID: "MERCHANT0000001", ReasonCode: iso8583.ReasonCustomerCancel}
	for i, build := range []func() (*iso8583.Message, error){sale.Message, rev.Message} {
		req, err := build()
		if err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.Send(sctx, req)
		scancel()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if rc, _ := resp.GetString(39); rc != "00" {
			t.Fatalf("request %d: rc %s", i, rc)
		}
	}
	cancel()
	rest, _ := io.ReadAll(out)
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d, stderr %s", c, stderr.String())
	}
	text := string(rest)
	for _, want := range []string{"ledger: 1 approved", "reversed", "transactions: 1, standing charges: 0", "reversals=1"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

func TestRunRejectsBadDialectAndTLSFlags(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"fields": {"0": {"type": "String", "length": 4, "enc": "Zebra", "prefix": "ASCII.Fixed"}}}`), 0o600)
	caPath, certPath, _, _ := writeTestPKI(t, dir)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--dialect", bad}, "fields.0.enc"},
		{[]string{"--dialect", filepath.Join(dir, "none.json")}, "--dialect"},
		{[]string{"--tls-cert", certPath}, "--tls-cert/--tls-key"},
		{[]string{"--client-ca", caPath}, "--client-ca needs --tls-cert"},
		{[]string{"--tls-cert", certPath, "--tls-key", caPath}, "--tls-cert/--tls-key"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tt.args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q (want it to name %s)", tt.args, code, stderr.String(), tt.want)
		}
	}
}
