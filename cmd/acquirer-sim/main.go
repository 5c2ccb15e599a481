// Command acquirer-sim runs a simulated acquirer host (package iso8583/hostsim) for
// development and demos: it answers the terminal message set of package iso8583 (0100,
// 0200, 0220/0221, 0400/0401, 0420/0421, 0500, 0800) over TCP or TLS, in posd's default
// dialect (a 2-byte big-endian length before each message) or in a dialect file's.
//
// Usage:
//
//	acquirer-sim [--listen HOST:PORT] [--bdk HEX] [--aes-bdk HEX] [--aes-pin-key TYPE]
//	             [--cards FILE.json] [--dialect FILE.json] [--match-by local|transmission]
//	             [--tls-cert FILE --tls-key FILE [--client-ca FILE]]
//
// Its first line on stdout is "acquirer-sim listening on ADDR" (the real port when port 0
// was asked for); then one masked line per request and its answer. On SIGINT or SIGTERM it
// prints the ledger of approvals and every transaction with its state (PANs masked) and
// exits 0. Bad flags exit 1.
//
// PIN blocks are checked by their length (package iso8583/hostsim): 8 bytes with a
// 20-digit KSN under TDES DUKPT from --bdk, 16 bytes with a 24-digit KSN (ISO 9564
// format 4) under AES DUKPT from --aes-bdk, whose PIN keys are of type --aes-pin-key (aes128,
// aes192 or aes256; default: the BDK's). A 16-byte field 52 needs a dialect that carries it,
// such as iso8583/dialects/aes-pin.json.
//
// --match-by says how the host knows a copy of a message it has processed (a duplicate or
// a repeat such as 0221, answered as the first and not booked again): "local" (the default)
// by terminal id, STAN and local date and time (fields 41, 11, 13 and 12), so a resend with
// a new field 7 is the same transaction; "transmission" by terminal id, STAN and field 7
// only, the key field 90 uses, as a strict host does: a resend with a new field 7 is a new
// transaction and is charged again (the final list of transactions shows it).
//
// The default BDKs are the public test keys of ANSI X9.24-1 (TDES) and of the X9.24-3-2017
// supplement (AES-128): anyone can decrypt PIN blocks made under them. Never use them, or
// this program, with real cards. --aes-bdk "" turns AES PIN blocks off (they get 30).
//
// A --dialect with a "mac" object (such as iso8583/dialects/mac-retail.json) needs
// --mac-key-file, the MAC key as hexadecimal digits: requests whose MAC is missing or does
// not verify are answered with the dialect's failure code (default 96) and logged, answers
// are MACed, and the final report counts the MACs verified and failed. --tamper-mac corrupts
// the MACs of the answers to 0100 and 0200, so that a terminal's refusal can be seen.
//
// A --dialect with a "key_exchange" object (such as iso8583/dialects/mac-retail-keyx.json)
// takes --kek-file, the key encryption key shared with the terminal: a key-change 0800 gets
// a fresh key in a TR-31 block under it, with its check value; the terminal's confirming
// 0800 (the new key's check value) switches the host to the new key once answered. The
// final report counts the request MACs verified under each key. The host asks the
// terminals to change their MAC key (an 0800 with the dialect's key-change code, which a
// terminal follows with its own key change) on SIGUSR1 and every --rotate-every. --bad-key
// kcv|block|usage sends faulty keys, to see a terminal refuse them.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// The public test base derivation keys: ANSI X9.24-1:2009 Annex A (TDES) and the ANSI
// X9.24-3-2017 supplement (AES-128).
const (
	testBDK    = "0123456789ABCDEFFEDCBA9876543210"
	testAESBDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("acquirer-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8583", "`HOST:PORT` to listen on (port 0: any free port)")
	bdkHex := fs.String("bdk", testBDK, "TDES DUKPT base derivation key, 32 `HEX` digits.\nThe default is the PUBLIC ANSI X9.24-1 test key: for tests and demos only")
	aesBDKHex := fs.String("aes-bdk", testAESBDK, "AES DUKPT base derivation key of format 4 PIN blocks, 32, 48 or 64 `HEX` digits; \"\" for none.\nThe default is the PUBLIC ANSI X9.24-3 test key: for tests and demos only")
	aesPINKey := fs.String("aes-pin-key", "", "`TYPE` of the AES PIN encryption keys the PIN pads derive: aes128, aes192 or aes256\n(default: the type of --aes-bdk)")
	cardsPath := fs.String("cards", "", "JSON `FILE` with the test cards: [{\"pan\", \"pin\", \"balance_minor\", \"expiry\" (YYMM), \"blocked\", \"partial_approval\"}]\n(default: the built-in table of iso8583/hostsim.DefaultCards)")
	matchBy := fs.String("match-by", string(hostsim.MatchLocalTime), "how the host knows a copy of a message it has processed (`local|transmission`):\n"+
		"local: terminal id, STAN and local date and time (fields 41, 11, 13, 12);\n"+
		"transmission: terminal id, STAN and field 7 only (a resend with a new field 7 is charged again)")
	dialectPath := fs.String("dialect", "", "dialect `FILE` (moov-io JSON spec format, see iso8583.ParseDialect)\n(default: posd's ISO 8583:1987 ASCII dialect, 2-byte binary length)")
	loseEvery := fs.Int("lose-every", 0, "drop every `N`th approved transaction from the host's batch totals (0: none), so that\na batch close answers 95 and the batch upload and reconciliation report can be seen")
	certPath := fs.String("tls-cert", "", "PEM certificate `FILE` of the host: serve TLS (with --tls-key)")
	keyPath := fs.String("tls-key", "", "PEM private key `FILE` of --tls-cert")
	clientCA := fs.String("client-ca", "", "PEM `FILE` of the CAs that sign terminals' client certificates: require one (with --tls-cert)")
	macKeyFile := fs.String("mac-key-file", "", "`FILE` holding the MAC key of a --dialect that declares a \"mac\", as hexadecimal digits:\n32 for \"retail\" (double-length TDES), 32, 48 or 64 for \"aes-cmac\". Every request's MAC is checked\n(a bad one is answered with the dialect's failure code and logged) and every answer MACed")
	kekFile := fs.String("kek-file", "", "`FILE` holding the key encryption key shared with the terminal, as hexadecimal digits (32 or 48: TDES,\nTR-31 version B blocks; 64: AES, version D): with a --dialect that declares a \"key_exchange\", key-change\n0800s get a fresh key under it, used once the terminal confirms it")
	loseConfirm := fs.Bool("lose-key-confirm", false, "with --kek-file, switch to the new key on the terminal's first confirming 0800 but leave it\nunanswered (its 0810 lost), to see a terminal recover on the next MAC failure")
	badKey := fs.String("bad-key", "", "with --kek-file, send faulty keys, to see a terminal refuse them and keep its old key:\n\"kcv\" (a wrong check value), \"block\" (a TR-31 block whose MAC fails) or \"usage\" (a MAC key marked P0)")
	rotateEvery := fs.Duration("rotate-every", 0, "with --kek-file, ask the terminals for a new MAC key this often (an 0800 with the key-change code;\nSIGUSR1 asks at once). Default 0: only on SIGUSR1")
	tamperMAC := fs.Bool("tamper-mac", false, "corrupt the MAC of every answer to an 0100 or 0200 (with --mac-key-file), to see a terminal refuse it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: acquirer-sim [--listen HOST:PORT] [--bdk HEX] [--aes-bdk HEX] [--aes-pin-key TYPE]\n"+
			"                    [--cards FILE.json] [--dialect FILE.json] [--match-by local|transmission] [--lose-every N]\n"+
			"                    [--tls-cert FILE --tls-key FILE [--client-ca FILE]] [--mac-key-file FILE [--tamper-mac]]\n\n"+
			"A simulated ISO 8583 acquirer host for posd tests and demos. Never use it with real cards.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1 // the flag package has printed the problem and the usage
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "acquirer-sim: "+format+"\n", args...)
		return 1
	}
	if *loseEvery < 0 {
		return fail("--lose-every: %d is negative (0 loses nothing)", *loseEvery)
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	bdk, err := hex.DecodeString(*bdkHex)
	if err != nil || len(bdk) != 16 {
		return fail("--bdk must be 32 hexadecimal digits (a double-length TDES key)")
	}
	var aesBDK []byte
	if *aesBDKHex != "" {
		aesBDK, err = hex.DecodeString(*aesBDKHex)
		if err != nil || (len(aesBDK) != 16 && len(aesBDK) != 24 && len(aesBDK) != 32) {
			return fail("--aes-bdk must be 32, 48 or 64 hexadecimal digits (an AES-128, AES-192 or AES-256 key)")
		}
	}
	var aesPINType dukpt.KeyType
	if *aesPINKey != "" {
		if aesBDK == nil {
			return fail("--aes-pin-key needs --aes-bdk")
		}
		aesPINType, err = dukpt.ParseKeyType(*aesPINKey)
		if err != nil || !aesPINType.IsAES() {
			return fail("--aes-pin-key %q is not aes128, aes192 or aes256", *aesPINKey)
		}
	}
	match, err := hostsim.ParseMatchBy(*matchBy)
	if err != nil || *matchBy == "" {
		return fail("--match-by %q is not local or transmission", *matchBy)
	}
	var cards []hostsim.Card // nil: the built-in table
	if *cardsPath != "" {
		f, err := os.Open(*cardsPath)
		if err != nil {
			return fail("--cards: %v", err)
		}
		cards, err = hostsim.ReadCards(f)
		f.Close()
		if err != nil {
			return fail("--cards %s: %v", *cardsPath, err)
		}
	}

	dialect := iso8583.DefaultDialect()
	if *dialectPath != "" {
		if dialect, err = iso8583.LoadDialect(*dialectPath); err != nil {
			return fail("--dialect: %v", err)
		}
	}
	hopts := hostsim.Options{BDK: bdk, AESBDK: aesBDK, AESPINKeyType: aesPINType, Cards: cards, Dialect: dialect, MatchBy: match, LoseEvery: *loseEvery}
	switch {
	case dialect.MAC != nil && *macKeyFile == "":
		return fail("--dialect %s declares a MAC (%v): --mac-key-file is required", *dialectPath, dialect.MAC)
	case dialect.MAC == nil && *macKeyFile != "":
		return fail("--mac-key-file: the dialect declares no MAC (a \"mac\" object in --dialect)")
	case *tamperMAC && *macKeyFile == "":
		return fail("--tamper-mac needs --mac-key-file")
	case *macKeyFile != "":
		m, err := macModule(ctx, *macKeyFile, dialect.MAC)
		if err != nil {
			return fail("--mac-key-file: %v", err)
		}
		hopts.MAC, hopts.MACKeyID = m, "mac"
		if *tamperMAC {
			hopts.TamperMAC = func(req *iso8583.Message) bool {
				mti, _ := req.GetMTI()
				return mti == iso8583.MTIAuthorizationRequest || mti == iso8583.MTIFinancialRequest
			}
		}
	}
	switch {
	case *kekFile != "" && dialect.KeyExchange == nil:
		return fail("--kek-file: the dialect declares no key exchange (a \"key_exchange\" object in --dialect)")
	case *kekFile != "":
		b, err := os.ReadFile(*kekFile)
		if err != nil {
			return fail("--kek-file: %v", err)
		}
		kek, err := hex.DecodeString(strings.TrimSpace(string(b)))
		clear(b)
		if err != nil || len(kek) != 16 && len(kek) != 24 && len(kek) != 32 {
			return fail("--kek-file %s: want 32, 48 or 64 hexadecimal digits", *kekFile)
		}
		hopts.KEK, hopts.BadKey, hopts.LoseKeyConfirm = kek, *badKey, *loseConfirm
		defer clear(kek)
	case *badKey != "" || *rotateEvery != 0 || *loseConfirm:
		return fail("--bad-key, --rotate-every and --lose-key-confirm need --kek-file")
	}
	var tlsConf *tls.Config
	switch {
	case *certPath != "" || *keyPath != "":
		cert, err := tls.LoadX509KeyPair(*certPath, *keyPath)
		if err != nil {
			return fail("--tls-cert/--tls-key: %v", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if *clientCA != "" {
			pem, err := os.ReadFile(*clientCA)
			if err != nil {
				return fail("--client-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fail("--client-ca %s: no PEM certificate in it", *clientCA)
			}
			tlsConf.ClientAuth, tlsConf.ClientCAs = tls.RequireAndVerifyClientCert, pool
		}
	case *clientCA != "":
		return fail("--client-ca needs --tls-cert and --tls-key")
	}

	var mu sync.Mutex // the server logs from many goroutines
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format+"\n", args...)
	}
	hopts.Logf = say
	srv, err := hostsim.NewServer(hopts)
	clear(aesBDK)
	if err != nil {
		return fail("%v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail("--listen: %v", err)
	}
	if hopts.KEK != nil && dialect.MAC != nil {
		// Before saying it listens: a SIGUSR1 from then on asks for a key change.
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
		go rotateMAC(ctx, srv, usr1, *rotateEvery, say)
	}
	say("acquirer-sim listening on %s", ln.Addr())
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	serveErr := srv.Serve(ctx, ln)

	ledger := srv.Ledger()
	say("ledger: %d approved", len(ledger))
	for _, e := range ledger {
		say("  %s", e)
	}
	charges := srv.Charges()
	standing := 0
	for _, c := range charges {
		if c.Charged() {
			standing++
		}
	}
	if dialect.MAC != nil {
		good, bad := srv.MACStats()
		say("request MACs: %d verified, %d failed", good, bad)
		if dialect.KeyExchange != nil {
			byKey := srv.MACVerifiedByKey()
			ids := slices.Sorted(maps.Keys(byKey))
			parts := make([]string, 0, len(ids))
			for _, id := range ids {
				parts = append(parts, fmt.Sprintf("%s=%d", id, byKey[id]))
			}
			say("request MACs by key: %s", strings.Join(parts, " "))
			say("key changes confirmed: %d", srv.KeyChanges()[iso8583.KeyMAC])
		}
	}
	say("transactions: %d, standing charges: %d", len(charges), standing)
	for _, c := range charges {
		say("  %s", c)
	}
	if serveErr != nil {
		return fail("%v", serveErr)
	}
	return 0
}

// rotateMAC asks the connected terminals for a new MAC key on SIGUSR1 and every every (0:
// never on a schedule), until ctx ends.
func rotateMAC(ctx context.Context, srv *hostsim.Server, usr1 <-chan os.Signal, every time.Duration, say func(string, ...any)) {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-usr1:
		case <-tick:
		}
		if _, err := srv.RequestKeyChange(iso8583.KeyMAC); err != nil {
			say("acquirer-sim: asking for a key change: %v", err)
		}
	}
}

// macModule returns an hsm Module over the soft backend holding the MAC key of file as
// "mac", of the type alg needs.
func macModule(ctx context.Context, file string, spec *iso8583.MACSpec) (*hsm.Module, error) {
	alg := spec.Algorithm
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	defer clear(key)
	if err != nil {
		return nil, fmt.Errorf("%s: not hexadecimal digits", file)
	}
	var a hsm.Algorithm
	switch {
	case alg == iso8583.MACRetail && len(key) == 16:
		a = hsm.TDES2
	case alg == iso8583.MACAESCMAC && len(key) == 16:
		a = hsm.AES128
	case alg == iso8583.MACAESCMAC && len(key) == 24:
		a = hsm.AES192
	case alg == iso8583.MACAESCMAC && len(key) == 32:
		a = hsm.AES256
	default:
		return nil, fmt.Errorf("%s: a %d-byte key does not fit the dialect's %s MAC (retail: 16 bytes; aes-cmac: 16, 24 or 32)", file, len(key), alg)
	}
	m, err := hsm.New(soft.New(nil), &hsm.Options{MACLength: max(8, spec.Length)})
	if err != nil {
		return nil, err
	}
	if _, err := m.LoadKey(ctx, hsm.LoadRequest{ID: "mac", Algorithm: a, Usage: hsm.UsageMAC, Components: [][]byte{key}}); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}
