package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/terminal/access"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// simEvents caps the simulated cardholder's repeated script: enough for a long session.
const simEvents = 10000

const simUsage = `usage: posd sim [--config FILE] [--script FILE] [--dir DIR]
  posd on simulated devices, up until Ctrl-C: a PIN pad simulator on a pseudo-terminal
  pair, an acquirer simulator on loopback, and posd's till API on a unix socket that posctl
  talks to. It prints the posctl commands to try.
  --config FILE  start from this config (such as examples/posd.json); the simulator's pty,
                 the simulated acquirer and your uid as supervisor replace its pinpad.port,
                 acquirer.address and api.roles. Default: a built-in config in --dir.
  --script FILE  what the simulated cardholder does at each card read, repeated (a
                 pinpad-sim script such as examples/tap.json). Default: a contactless tap
                 of the test card 4761 7390 0101 0010, no PIN below 50.00 EUR.
  --dir DIR      where the built-in config keeps its journal, key and socket. Default: a
                 new temporary directory, removed at exit.
`

// cmdSim runs posd on the simulators until SIGINT or SIGTERM (posd sim, posd demo --serve).
func cmdSim(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("posd sim", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, simUsage) }
	cfgPath := flags.String("config", "", "start from this config file")
	scriptPath := flags.String("script", "", "the simulated cardholder's script, repeated")
	dir := flags.String("dir", "", "state directory of the built-in config")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() != 0 {
		fmt.Fprintf(stderr, "posd sim: unexpected argument %q\n%s", flags.Arg(0), simUsage)
		return errUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mu := new(sync.Mutex)
	out := func(pfx string) lineWriter { return lineWriter{mu: mu, w: stdout, pfx: pfx} }
	say := out("sim")

	// The cardholder: the script's events over and over.
	script := &padsim.Script{Events: []padsim.Event{tap(padsim.Tap{})}}
	if *scriptPath != "" {
		s, err := padsim.LoadScript(*scriptPath)
		if err != nil {
			return fmt.Errorf("sim: --script: %w", err)
		}
		if len(s.Events) == 0 {
			return fmt.Errorf("sim: --script %s has no events", *scriptPath)
		}
		script = s
	}
	var events []padsim.Event
	for len(events) < simEvents {
		events = append(events, script.Events...)
	}

	var cfg *Config
	if *cfgPath != "" {
		c, err := LoadConfig(*cfgPath)
		if err != nil {
			return err
		}
		cfg = c
	} else {
		if *dir == "" {
			d, err := os.MkdirTemp("", "posd-sim-")
			if err != nil {
				return fmt.Errorf("sim: %w", err)
			}
			defer os.RemoveAll(d)
			*dir = d
		}
		abs, err := filepath.Abs(*dir)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		if err := os.MkdirAll(abs, 0o700); err != nil { // --dir is the sim's own: made if new
			return fmt.Errorf("sim: --dir: %w", err)
		}
		cfg = simConfig(abs)
	}

	// The PIN pad: a pty pair, posd on one end, the simulator on the other.
	pair, err := ptypair.Open()
	if err != nil {
		return fmt.Errorf("sim: creating the PIN pad's pseudo-terminals: %w", err)
	}
	defer pair.Close()
	bdk, _ := hex.DecodeString(demoBDK)
	padOpts := &padsim.Options{BDK: bdk, Logf: out("pinpad-sim").printf, Contactless: true, CtlsLimits: demoCtlsLimits}
	if padOpts.KSN, err = dukpt.ParseKSN(demoKSN); err != nil {
		return err
	}
	if cfg.PINPad.DUKPT == DUKPTAES {
		aesKSN, err := dukpt.ParseAESKSN(demoAESKSN)
		if err != nil {
			return err
		}
		padOpts.BDK, _ = hex.DecodeString(demoAESBDK)
		padOpts.KeyType, padOpts.AESKSN = dukpt.KeyAES128, aesKSN
	}
	pad, err := padsim.New(&padsim.Script{Events: events}, padOpts)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	padPort, err := serial.Open(pair.B, &serial.Mode{BaudRate: 19200})
	if err != nil {
		return fmt.Errorf("sim: opening the simulator's end %s: %w", pair.B, err)
	}
	defer padPort.Close()
	padCtx, stopPad := context.WithCancel(context.Background())
	defer stopPad()
	go func() { _ = pad.Serve(padCtx, padPort) }()

	// The acquirer, with the dialect posd's config names.
	dialect, err := cfg.Acquirer.loadDialect()
	if err != nil {
		return err
	}
	aesBDK, _ := hex.DecodeString(demoAESBDK)
	host, err := hostsim.NewServer(hostsim.Options{BDK: bdk, AESBDK: aesBDK, Dialect: dialect, Logf: out("acquirer-sim").printf})
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	hostCtx, stopHost := context.WithCancel(context.Background())
	defer stopHost()
	go func() { _ = host.Serve(hostCtx, ln) }()

	cfg.PINPad.Port = pair.A
	cfg.Acquirer.Address = ln.Addr().String()
	cfg.API.Roles = access.RolesConfig{string(access.Supervisor): {Users: []string{strconv.Itoa(os.Getuid())}}}
	if err := cfg.fill(); err != nil { // resolves the role map again
		return fmt.Errorf("sim: %w", err)
	}
	if err := cfg.checkRuntime(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(out("posd"), &slog.HandlerOptions{Level: level(cfg.Log.Level)}))
	d, err := startDaemon(ctx, cfg, log, nil, nil, nil)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	api := d.addr()
	say.printf("PIN pad simulator on %s (posd's end %s): %s", pair.B, pair.A, scriptName(*scriptPath))
	say.printf("acquirer simulator on %s; journal %s", cfg.Acquirer.Address, cfg.Store.Path)
	say.printf("posd is up: its API is %s, and uid %d (you) is supervisor. Try, in another terminal:", api, os.Getuid())
	for _, c := range []string{
		"status",
		"sale --amount 12.50 --currency EUR",
		"journal",
		"refund --amount 5.00 --original POI-TRANSACTION-ID   # the id the sale printed",
		"totals",
		"close",
	} {
		say.printf("  posctl --api %s %s", api, c)
	}
	say.printf("(go run ./cmd/posctl --api ... if posctl is not built.) Ctrl-C stops posd and the simulators.")

	select {
	case <-ctx.Done():
		say.printf("stopping")
	case err := <-d.done:
		log.Error("till API stopped", "reason", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return d.shutdown(sctx)
}

func scriptName(path string) string {
	if path == "" {
		return "each card read is a tap of the test card 476173******0010"
	}
	return "each card read plays " + path + " again"
}

// simConfig is the built-in config of posd sim, its files in dir. Like examples/posd.json.
func simConfig(dir string) *Config {
	return &Config{
		Version:  ConfigVersion,
		Terminal: TerminalConfig{ID: "SIM00001", MerchantID: "000000000000001", MerchantName: "POSD SIM SHOP", Currency: "EUR"},
		API:      APIConfig{Listen: "unix:" + filepath.Join(dir, "posd.sock")},
		Store:    StoreConfig{Path: filepath.Join(dir, "posd.db")},
		// The soft data key (tests and demos only): it keys the journal's card hashes, which a
		// linked refund checks the card by, and the audit chain.
		HSM: HSMConfig{Data: &DataKeyConfig{Backend: "soft", AllowSoft: true, KeyFile: filepath.Join(dir, "data.key")}},
	}
}
