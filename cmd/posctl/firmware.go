package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strings"

	"github.com/posd-dev/posd/firmware/fwapi"
)

const firmwareUsage = `usage: posctl firmware COMMAND
commands:
  status                               slots, versions, which starts, last result
  install [--who NAME] [--check] SOURCE
                                       install a signed bundle into the inactive slot
                                       (SOURCE: a bundle file or directory here, uploaded to
                                       posd; or an https:// URL on posd's firmware.allowed_urls.
                                       A path sent in the API's JSON "source" must be a file in
                                       posd's firmware.inbox)
  pinpad [--who NAME] SOURCE           send a bundle's PIN pad firmware to the PIN pad
  rollback [--who NAME]                make the other slot start next
  log [--after N]                      the firmware event log
--who: the technician, recorded in the event log (default: $POSCTL_WHO, or your user@host)
`

// cmdFirmware runs `posctl firmware ...` against posd's /v1/firmware API.
func cmdFirmware(c *client, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, firmwareUsage)
		return errUsage
	}
	// Installs and PIN pad transfers take minutes: no overall timeout, but
	// Ctrl-C cancels (posd then leaves everything as it was).
	hc := *c.http
	hc.Timeout = 0
	api := &fwapi.Client{Base: c.base, HTTP: &hc}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	fs := flag.NewFlagSet("posctl firmware "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	who := fs.String("who", defaultWho(), "the technician, recorded with the operation")
	switch args[0] {
	case "status":
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
			return errUsage
		}
		st, err := api.Status(ctx)
		if err != nil {
			return err
		}
		fwapi.WriteStatus(stdout, st)
		return nil

	case "install", "pinpad":
		check := false
		if args[0] == "install" {
			fs.BoolVar(&check, "check", false, "verify the bundle only; install nothing")
		}
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "posctl firmware %s: give one SOURCE (bundle file or directory to upload, or an https:// URL on posd's firmware.allowed_urls)\n", args[0])
			return errUsage
		}
		op := fwapi.OpInstall
		switch {
		case args[0] == "pinpad":
			op = fwapi.OpPINPad
		case check:
			op = fwapi.OpCheck
		}
		bar := &fwapi.ProgressBar{W: stdout, Redraw: isTerminal(stdout)}
		res, err := api.Install(ctx, op, fs.Arg(0), *who, bar.Update)
		bar.Done()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, res.Message)
		return nil

	case "rollback":
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
			return errUsage
		}
		res, err := api.Rollback(ctx, *who)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, res.Message)
		return nil

	case "log":
		after := fs.Uint64("after", 0, "show only records after this sequence number")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
			return errUsage
		}
		evs, chainErr, err := api.Events(ctx, *after)
		if err != nil {
			return err
		}
		fwapi.WriteEvents(stdout, evs)
		if chainErr != "" {
			return fmt.Errorf("the firmware event log has been tampered with: %s", chainErr)
		}
		return nil
	}
	fmt.Fprintf(stderr, "posctl firmware: unknown command %q\n%s", args[0], firmwareUsage)
	return errUsage
}

// defaultWho is $POSCTL_WHO, or the user (the one behind sudo) at this
// host.
func defaultWho() string {
	if w := strings.TrimSpace(os.Getenv("POSCTL_WHO")); w != "" {
		return w
	}
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if host, err := os.Hostname(); err == nil && name != "" {
		return name + "@" + host
	}
	return name
}

// isTerminal reports whether w is a character device (a terminal), where
// the progress bar is redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
