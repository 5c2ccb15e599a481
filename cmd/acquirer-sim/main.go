// Command acquirer-sim runs a simulated acquirer host (package iso8583/hostsim) for
// development and demos: it answers ISO 8583 0100/0200 requests in posd's default dialect
// over TCP, with a 2-byte big-endian length before each message.
//
// Usage:
//
//	acquirer-sim [--listen HOST:PORT] [--bdk HEX] [--cards FILE.json]
//
// Its first line on stdout is "acquirer-sim listening on ADDR" (the real port when port 0
// was asked for); then one masked line per request and its answer. On SIGINT or SIGTERM it
// prints the ledger of approvals (PANs masked) and exits 0. Bad flags exit 1.
//
// The default BDK is the public ANSI X9.24-1 test key: anyone can decrypt PIN blocks made
// under it. Never use it, or this program, with real cards.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/posd-dev/posd/iso8583/hostsim"
)

// testBDK is the public ANSI X9.24-1:2009 Annex A test base derivation key.
const testBDK = "0123456789ABCDEFFEDCBA9876543210"

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
	cardsPath := fs.String("cards", "", "JSON `FILE` with the test cards: [{\"pan\", \"pin\", \"balance_minor\", \"expiry\" (YYMM), \"blocked\"}]\n(default: the built-in table of iso8583/hostsim.DefaultCards)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: acquirer-sim [--listen HOST:PORT] [--bdk HEX] [--cards FILE.json]\n\n"+
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
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	bdk, err := hex.DecodeString(*bdkHex)
	if err != nil || len(bdk) != 16 {
		return fail("--bdk must be 32 hexadecimal digits (a double-length TDES key)")
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

	var mu sync.Mutex // the server logs from many goroutines
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format+"\n", args...)
	}
	srv, err := hostsim.NewServer(hostsim.Options{BDK: bdk, Cards: cards, Logf: say})
	if err != nil {
		return fail("%v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail("--listen: %v", err)
	}
	say("acquirer-sim listening on %s", ln.Addr())
	serveErr := srv.Serve(ctx, ln)

	ledger := srv.Ledger()
	say("ledger: %d approved", len(ledger))
	for _, e := range ledger {
		say("  %s", e)
	}
	if serveErr != nil {
		return fail("%v", serveErr)
	}
	return 0
}
