package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"strings"

	"github.com/posd-dev/posd/firmware/fwapi"
)

const firmwareUsage = `usage: posctl firmware COMMAND
commands:
  status                               slots, versions, which starts, last result
  install [--note TEXT] [--check] SOURCE
                                       install a signed bundle into the inactive slot
                                       (SOURCE: a bundle file or directory here, uploaded to
                                       posd; or an https:// URL on posd's firmware.allowed_urls.
                                       A path sent in the API's JSON "source" must be a file in
                                       posd's firmware.inbox)
  pinpad [--note TEXT] SOURCE          send a bundle's PIN pad firmware to the PIN pad
  rollback [--note TEXT] [--approve ID] make the other slot start next (dual control: a
                                       second technician repeats it with --approve)
  log [--after N]                      the firmware event log
posd records who you are (your uid, or your certificate); --note adds free text after it
(--who is its old name; default: $POSCTL_WHO, or your login name)
`

// firmwareOff words posd's answer when its firmware API is not there: firmware updates
// are turned off in its config (no firmware.model), which the bare 404 did not say.
func firmwareOff(err error) error {
	var ae *fwapi.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Kind == "" {
		return errors.New("firmware updates are off in posd's config: set firmware.model (this terminal's hardware model) and restart posd to turn them on")
	}
	return err
}

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
	who := noteFlags(fs)
	*who = defaultNote()
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
		fs.String("approve", "", "the pending approval id a first technician got (dual control)")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
			return errUsage
		}
		approve := fs.Lookup("approve").Value.String()
		var res struct{ Message string }
		if err := c.doApproved("POST", "/v1/firmware/rollback", approve, map[string]string{"who": *who}, &res); err != nil {
			var p *pendingError
			if errors.As(err, &p) {
				fmt.Fprintf(stdout, "approval %s: %s\nthe second technician runs: posctl firmware rollback --approve %s\n", p.Approval, p.Message, p.Approval)
			}
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

// defaultNote is $POSCTL_WHO, or the user behind sudo, or the login name: the firmware
// API wants a non-empty note, and this one says who sat at the keyboard.
func defaultNote() string {
	if w := strings.TrimSpace(os.Getenv("POSCTL_WHO")); w != "" {
		return w
	}
	if n := os.Getenv("SUDO_USER"); n != "" {
		return n
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "posctl"
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
