// Command pinpad-sim is a simulated ABECS PIN pad on a serial port, driven by
// a script of cardholder actions (package terminal/padsim).
//
//	pinpad-sim --port PATH [--script FILE] [--dukpt tdes|aes128|aes192|aes256] [--bdk HEX]
//	           [--ksn HEX] [--baud N] [--state FILE] [--currency NNN] [--country NNN]
//	           [--serial TEXT]
//
// The script plays swipes, chip cards (insert, with their decisions), PINs,
// keys, cancels, timeouts and link faults (NAK storms, missing ACKs, slow
// ACKs, bad CRCs, noise, unplugging); see package terminal/padsim for its
// JSON form. An unplug fault closes the port and opens it again after its
// delay. --currency and --country are the numeric codes of the pad's EMV
// tables (tags 5F2A, 9F1A); they must match posd's currency for chip sales.
//
// It prints one line saying where it listens, then one line per command it
// handles, with PANs masked and never tracks, PINs, PIN blocks, cryptograms
// or keys. It exits 0 on SIGINT or SIGTERM, and 1 with one error line on bad
// flags, a missing port or a bad script.
//
// --dukpt chooses the pad's key: tdes (the default: TDES DUKPT, ISO 9564
// format 0, GPN method 3) or aes128, aes192, aes256 (AES DUKPT of ANSI
// X9.24-3, format 4 under a PIN key of the same type, GPN method 4: a
// 16-byte block and a 12-byte KSN). --bdk and --ksn are then a BDK of that
// type and a 24-digit KSN (8-byte initial key ID, 32-bit counter); --state
// keeps the AES counter as it keeps the TDES one, and the counter skips
// values with more than 16 one bits.
//
// The default --bdk 0123456789ABCDEFFEDCBA9876543210 and --ksn
// FFFF9876543210E00000 are the public test keys of ANSI X9.24-1 Annex A; with
// --dukpt aes128 the defaults are the public AES-128 BDK of the X9.24-3-2017
// supplement, FEDCBA9876543210F1F1F1F1F1F1F1F1, and the KSN
// FFFF9876543210E000000000. They protect nothing; use them only with test
// hosts. aes192 and aes256 have no default BDK.
//
// To pair it with posd without hardware, link two pseudo-terminals (for
// example `socat pty,raw,echo=0 pty,raw,echo=0`, or package terminal/ptypair
// in-process) and give one end to each.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
)

// Public test keys: ANSI X9.24-1:2009 Annex A (TDES) and the AES-128 BDK of the ANSI
// X9.24-3-2017 supplement, with an initial AES KSN of this program's choosing (letters in
// it keep it from looking like a card number to a log scanner).
const (
	testBDK    = "0123456789ABCDEFFEDCBA9876543210"
	testKSN    = "FFFF9876543210E00000"
	testAESBDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	testAESKSN = "FFFF9876543210E000000000"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type config struct {
	port      string
	script    string
	bdk       []byte
	ksn       dukpt.KSN
	keyType   dukpt.KeyType // 0: TDES
	aesKSN    dukpt.AESKSN
	testKeys  bool
	baud      int
	statePath string
	currency  string
	country   string
	serial    string
	fwModel   string
	fwVersion string
	fwDrop    int
	ctls      bool
	ctlsLim   padsim.CtlsLimits
	rate      int
}

func parseFlags(args []string, stdout io.Writer) (*config, error) {
	fs := flag.NewFlagSet("pinpad-sim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	port := fs.String("port", "", "serial device to listen on (required), e.g. /dev/pts/7")
	script := fs.String("script", "", "JSON script of cardholder actions (default: none; GCR answers 012)")
	kind := fs.String("dukpt", "tdes", "the pad's DUKPT key: tdes, aes128, aes192 or aes256")
	bdkHex := fs.String("bdk", "", "DUKPT base derivation key: 32 hex digits for tdes and aes128, 48 for aes192, 64 for aes256\n(default: the public test key of tdes or aes128)")
	ksnHex := fs.String("ksn", "", "initial key serial number: 20 hex digits for tdes, 24 for AES (default: "+testKSN+" or "+testAESKSN+")")
	baud := fs.Int("baud", abecs.DefaultBaud, "line speed in bit/s")
	state := fs.String("state", "", "file keeping the DUKPT counter across runs (default: none)")
	currency := fs.String("currency", "978", "ISO 4217 numeric currency of the pad's EMV tables (tag 5F2A)")
	country := fs.String("country", "250", "ISO 3166 numeric country of the pad's EMV tables (tag 9F1A)")
	serial := fs.String("serial", "PADSIM0001", "the pad's serial number (GIN), at most 20 characters")
	fwModel := fs.String("fw-model", "", "answer the firmware loading commands (FWI/FWS/FWB/FWE) as a pad of this model (default: no loader, ERR010)")
	fwVersion := fs.String("fw-version", "1.0.0", "with --fw-model: the pad's firmware version before an image is applied")
	ctls := fs.Bool("contactless", false, "the pad has a contactless reader: GIN says so and GCR takes tap events")
	ctlsTxn := fs.Int64("ctls-limit", 0, "contactless transaction limit in minor units for AIDs without a loaded table record (default 0: none)")
	ctlsCVM := fs.Int64("ctls-cvm-limit", 0, "contactless CVM limit in minor units for AIDs without a loaded table record (default 0: none)")
	ctlsFloor := fs.Int64("ctls-floor-limit", 0, "contactless floor limit in minor units for AIDs without a loaded table record (default 0)")
	rate := fs.Int("throttle", 0, "bytes per second each way, as a real line (1920: 19200 baud); default 0: as fast as the pty goes")
	fwDropAfter := fs.Int("fw-drop-after", 0, "with --fw-model: drop the line once after this many firmware blocks (the host must resume)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: pinpad-sim --port PATH [--script FILE] [--dukpt tdes|aes128|aes192|aes256] [--bdk HEX] [--ksn HEX] [--baud N] [--state FILE] [--currency NNN] [--country NNN] [--serial TEXT]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *port == "" {
		return nil, errors.New("--port is required")
	}
	if *baud <= 0 {
		return nil, fmt.Errorf("--baud %d is not a positive number", *baud)
	}
	cfg := &config{
		port: *port, script: *script, baud: *baud, statePath: *state,
		currency: *currency, country: *country, serial: *serial,
		fwModel: *fwModel, fwVersion: *fwVersion, fwDrop: *fwDropAfter,
		ctls: *ctls, ctlsLim: padsim.CtlsLimits{Transaction: *ctlsTxn, CVM: *ctlsCVM, Floor: *ctlsFloor}, rate: *rate,
	}
	if *kind != "tdes" {
		kt, err := dukpt.ParseKeyType(*kind)
		if err != nil || !kt.IsAES() {
			return nil, fmt.Errorf("--dukpt %q is not tdes, aes128, aes192 or aes256", *kind)
		}
		cfg.keyType = kt
	}
	if !cfg.keyType.IsAES() {
		if *bdkHex == "" {
			*bdkHex = testBDK
		}
		if *ksnHex == "" {
			*ksnHex = testKSN
		}
		bdk, err := hex.DecodeString(*bdkHex)
		if err != nil || len(bdk) != 16 {
			return nil, errors.New("--bdk must be 32 hexadecimal digits")
		}
		ksn, err := dukpt.ParseKSN(*ksnHex)
		if err != nil {
			return nil, errors.New("--ksn must be 20 hexadecimal digits")
		}
		cfg.bdk, cfg.ksn, cfg.testKeys = bdk, ksn, *bdkHex == testBDK
		return cfg, nil
	}
	if *bdkHex == "" {
		if cfg.keyType != dukpt.KeyAES128 {
			return nil, fmt.Errorf("--dukpt %s needs --bdk: %d hexadecimal digits (the public test BDK is AES-128)", *kind, 2*cfg.keyType.Len())
		}
		*bdkHex = testAESBDK
	}
	if *ksnHex == "" {
		*ksnHex = testAESKSN
	}
	bdk, err := hex.DecodeString(*bdkHex)
	if err != nil || len(bdk) != cfg.keyType.Len() {
		return nil, fmt.Errorf("--bdk must be %d hexadecimal digits for --dukpt %s", 2*cfg.keyType.Len(), *kind)
	}
	ksn, err := dukpt.ParseAESKSN(*ksnHex)
	if err != nil {
		return nil, fmt.Errorf("--ksn must be 24 hexadecimal digits for --dukpt %s", *kind)
	}
	cfg.bdk, cfg.aesKSN, cfg.testKeys = bdk, ksn, strings.EqualFold(*bdkHex, testAESBDK)
	return cfg, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "pinpad-sim: %v\n", err)
		return 1
	}
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return fail(fmt.Errorf("%w (see pinpad-sim -h)", err))
	}
	script := &padsim.Script{}
	if cfg.script != "" {
		if script, err = padsim.LoadScript(cfg.script); err != nil {
			return fail(err)
		}
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(stdout, "pinpad-sim: "+format+"\n", args...)
	}
	// The port in use, so that a firmware line drop can close it (the pad then opens
	// the path again and the host resumes the transfer).
	var mu sync.Mutex
	var cur io.ReadWriteCloser
	dropped := false // the firmware loader dropped the line on purpose: serve again
	var fw *padsim.Firmware
	if cfg.fwModel != "" {
		if cfg.fwDrop < 0 {
			return fail(errors.New("--fw-drop-after must not be negative"))
		}
		fw, err = padsim.NewFirmware(&padsim.FirmwareOptions{Model: cfg.fwModel, Version: cfg.fwVersion, DropAfter: cfg.fwDrop, Logf: logf,
			Drop: func() {
				mu.Lock()
				defer mu.Unlock()
				dropped = true
				if cur != nil {
					cur.Close()
				}
			}})
		if err != nil {
			return fail(err)
		}
	}
	pad, err := padsim.New(script, &padsim.Options{
		BDK: cfg.bdk, KSN: cfg.ksn, KeyType: cfg.keyType, AESKSN: cfg.aesKSN, Logf: logf, StatePath: cfg.statePath,
		Currency: cfg.currency, Country: cfg.country, Serial: cfg.serial, Firmware: fw,
		Contactless: cfg.ctls, CtlsLimits: cfg.ctlsLim, BytesPerSecond: cfg.rate,
	})
	clear(cfg.bdk)
	if err != nil {
		return fail(err)
	}
	first, err := abecs.OpenSerial(cfg.port, cfg.baud)
	if err != nil {
		return fail(err)
	}
	// The first port is opened here so that a missing device fails at once;
	// an unplug fault closes it and the pad opens the path again.
	open := func() (io.ReadWriteCloser, error) {
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			cur, first = first, nil
			return cur, nil
		}
		p, err := abecs.OpenSerial(cfg.port, cfg.baud)
		if err == nil {
			cur = p
		}
		return p, err
	}

	keys := "the public ANSI X9.24 test BDK"
	if !cfg.testKeys {
		keys = "the BDK given"
	}
	logf("listening on %s at %d bit/s; %d script events; %s from %s",
		cfg.port, cfg.baud, len(script.Events), pad.KeySerial(), keys)
	for {
		err = pad.ServeDevice(ctx, open)
		if ctx.Err() != nil {
			logf("stopped")
			return 0
		}
		mu.Lock()
		again := dropped
		dropped = false
		mu.Unlock()
		if !again {
			return fail(err)
		}
		logf("line dropped on purpose (--fw-drop-after); serving again")
	}
}
