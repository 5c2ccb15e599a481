// Command posd is the POS terminal daemon: it takes sales from the till over a local API,
// drives the card reader and PIN pad over serial ports, has PINs encrypted in the secure
// device, journals every transaction in bbolt and sends its authorizations to the acquirer
// over ISO 8583.
//
// Usage:
//
//	posd run --config FILE       run the daemon
//	posd check-config --config FILE
//	posd demo [--acquirer HOST:PORT]
//	                             run the whole system on simulated devices (ptys) and a
//	                             simulated acquirer (loopback), with a readable trace
//	posd sim [--config FILE] [--script FILE] [--dir DIR]
//	                             posd on simulated devices until Ctrl-C, for posctl to
//	                             try (also posd demo --serve)
//	posd key list|import|load-kbpk --config FILE ...
//	                             a technician's key loading into posd's token
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/posd-dev/posd/store"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  posd run --config FILE          run the daemon
  posd check-config --config FILE [--elsewhere]
                                 check a config file and print it with defaults filled in
                                 (--elsewhere: for another machine, the file alone)
  posd demo [--acquirer HOST:PORT] run a scripted demo on simulated devices
  posd sim [--config FILE] [--script FILE]
                                  posd on simulated devices, up until Ctrl-C, for posctl
                                  to try (posd demo --serve is the same)
  posd store check --path FILE [--archive DIR]   check a journal file (and its archive) while posd is stopped
  posd store compact --path FILE  give a journal file's free pages back, with posd stopped
  posd store salvage --path FILE --out NEWFILE
                                  copy what is readable of a damaged journal file into a
                                  new one (exit 3: something was lost, listed)
  posd audit verify --path FILE [--config FILE] [--head SEQ:MAC]
                                  verify the audit chain of a journal file while posd is
                                  stopped (exit 1: broken, naming the first broken link)
  posd key list|import|load-kbpk --config FILE ...
                                  load keys into posd's token (posd key help)
  posd operator add|passwd|remove|unlock|list --config FILE [--id ID --role ROLE]
                                  supervisors and technicians whose own password a till
                                  may send (api.operators_file)
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		stop := startProfile(stderr)
		err = cmdRun(args[1:], stderr)
		stop()
	case "check-config":
		err = cmdCheckConfig(args[1:], stdout, stderr)
	case "demo":
		if rest, serve := withoutFlag(args[1:], "--serve", "-serve"); serve {
			err = cmdSim(rest, stdout, stderr) // the demo's devices, kept up
			break
		}
		err = cmdDemo(args[1:], stdout, stderr)
	case "sim":
		err = cmdSim(args[1:], stdout, stderr)
	case "store":
		if len(args) > 1 && args[1] == "salvage" {
			return cmdStoreSalvage(args[2:], stdout, stderr) // exit 3: written, something lost
		}
		err = cmdStore(args[1:], stdout, stderr)
	case "key":
		err = cmdKey(args[1:], os.Stdin, stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "operator":
		return cmdOperator(args[1:], os.Stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "posd: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0 // -h: the usage was asked for, and printed
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "posd: %v\n", err)
		return 1
	}
	return 0
}

func cmdRun(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("posd run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/posd/posd.json", "config file")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.checkRuntime(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log)
	runOneProc()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Firmware first: this start counts against an unconfirmed slot even if the
	// self-test below crashes.
	fwWake := make(chan struct{}, 1)
	fw, err := openFirmware(ctx, cfg.Firmware, log, fwWake)
	if err != nil {
		return err
	}
	if fw != nil {
		defer fw.Close()
	}
	// startDaemon is posd's self-test: devices answer, the store opens, the acquirer is
	// reachable (when required at start).
	d, err := startDaemon(ctx, cfg, log, debugTrace(log), fw, fwWake)
	if err != nil {
		if fw != nil {
			if switched, _ := fw.MarkBad(ctx, err.Error()); switched {
				log.Error("this firmware slot failed its self-test: the previous slot starts next", "reason", err)
			}
		}
		return err
	}
	if fw != nil {
		if err := fw.Confirm(ctx, "posd self-test"); err != nil {
			log.Error("confirming the firmware slot", "reason", err)
		}
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-d.done:
		log.Error("till API stopped", "reason", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return d.shutdown(sctx)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("posd check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/posd/posd.json", "config file")
	elsewhere := fs.Bool("elsewhere", false, "the config is for another machine: check the file only, not what posd run needs here (its directories, a pkcs11 build)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *elsewhere {
		return writeConfig(stdout, cfg)
	}
	if err := cfg.checkRuntime(); err != nil {
		return fmt.Errorf("%w (posd run would refuse it on this machine)", err)
	}
	return writeConfig(stdout, cfg)
}

// cmdStore checks a journal file with posd stopped: bbolt's page check, the journal's
// invariants, the queue and the audit chain, each problem with what to do. It changes
// nothing. Exit 1 when it finds a problem or cannot open the file.
func cmdStore(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "compact" {
		return cmdStoreCompact(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, storeUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("posd store check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "the journal file (store.path in the config)")
	archive := fs.String("archive", "", "also verify the archive files in this directory (store.archive_dir) against the journal file")
	if err := fs.Parse(args[1:]); err != nil || *path == "" {
		fmt.Fprint(stderr, storeUsage)
		return errUsage
	}
	if _, err := os.Stat(*path); err != nil {
		return fmt.Errorf("store check: %w", err)
	}
	st, err := store.Open(*path, nil)
	if err != nil {
		return fmt.Errorf("store check: %w", err)
	}
	defer st.Close()
	rep, err := st.Check(context.Background())
	if err != nil {
		return fmt.Errorf("store check: %w", err)
	}
	fmt.Fprintf(stdout, "journal: %d records (%d open); queue: %d (%d parked); audit chain: %d entries\n", rep.Records, rep.Open, rep.Queued, rep.Parked, rep.AuditEntries)
	if *archive != "" {
		problems, err := checkArchive(st, *archive, stdout)
		if err != nil {
			return fmt.Errorf("store check: %w", err)
		}
		rep.Problems = append(rep.Problems, problems...)
	}
	if rep.OK() {
		fmt.Fprintln(stdout, "store check: ok")
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(stdout, "PROBLEM: %s\n  what to do: %s\n", p.What, p.Do)
	}
	return fmt.Errorf("store check found %d problem(s)", len(rep.Problems))
}

func level(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// withoutFlag reports whether args hold one of the boolean flags names, and returns args
// without them.
func withoutFlag(args []string, names ...string) ([]string, bool) {
	var rest []string
	found := false
	for _, a := range args {
		if slices.Contains(names, a) {
			found = true
			continue
		}
		rest = append(rest, a)
	}
	return rest, found
}
