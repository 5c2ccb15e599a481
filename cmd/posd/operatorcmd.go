package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"github.com/posd-dev/posd/internal/tty"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/terminal/operators"
)

// operatorKeyID is the key (AES, MAC usage) under which the operators file's password
// hashes are MACed, beside the data key in the same backend.
const operatorKeyID = "operator"

// softDerivedKey derives the soft backend's key for name from its data key file: a
// separate key for a separate use.
func softDerivedKey(fileKey []byte, name string) []byte {
	h := hmac.New(sha256.New, fileKey)
	h.Write([]byte("posd soft backend: " + name + " key"))
	return h.Sum(nil)
}

// openOperators opens api.operators_file with its key in the data backend m; nil when no
// file is configured. A configured file without its key is an error: posd would otherwise
// refuse every supervisor's credential without saying why.
func openOperators(ctx context.Context, cfg *Config, m *hsm.Module) (*operators.Store, error) {
	if cfg.API.OperatorsFile == "" {
		return nil, nil
	}
	if m == nil {
		return nil, &ConfigError{"api.operators_file", "needs hsm.data: operators' passwords are checked under its \"operator\" key"}
	}
	if _, err := m.KeyInfo(ctx, operatorKeyID); err != nil {
		return nil, &ConfigError{"api.operators_file", fmt.Sprintf("hsm.data has no key %q (AES, MAC usage) to check operators' passwords under: load one (posd key import --id operator): %v", operatorKeyID, err)}
	}
	st, err := operators.Open(cfg.API.OperatorsFile, operators.Options{MAC: m, KeyID: operatorKeyID})
	if err != nil {
		return nil, &ConfigError{"api.operators_file", err.Error()}
	}
	return st, nil
}

const operatorUsage = `usage:
  posd operator add     --config FILE --id ID --role supervisor|technician
  posd operator passwd  --config FILE --id ID
  posd operator remove  --config FILE --id ID
  posd operator unlock  --config FILE --id ID
  posd operator list    --config FILE
      manage the operators of api.operators_file: people whose own id and password a till
      may send with a request its process's role does not allow (a supervisor's void at a
      cashier's till). The password is read from the terminal without echo (twice), or
      from the first line of standard input when it is not a terminal. Run it with posd
      stopped: posd reads the file at start.
`

// cmdOperator runs posd operator. It returns the exit code.
func cmdOperator(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, operatorUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("posd operator "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "posd's config file")
	id := fs.String("id", "", "the operator's id")
	role := fs.String("role", "", "supervisor or technician (add)")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || *cfgPath == "" || (verb != "list" && *id == "") {
		fmt.Fprint(stderr, operatorUsage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "posd: operator %s: %v\n", verb, err)
		return 1
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return fail(err)
	}
	if cfg.API.OperatorsFile == "" {
		return fail(errors.New("api.operators_file is not set in the config"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m, closeFn, err := openDataModule(ctx, cfg.HSM.Data, log)
	if err != nil {
		return fail(err)
	}
	defer closeFn()
	st, err := openOperators(ctx, cfg, m)
	if err != nil {
		return fail(err)
	}
	switch verb {
	case "add", "passwd":
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			return fail(err)
		}
		if verb == "add" {
			err = st.Add(ctx, *id, *role, pw)
		} else {
			err = st.SetPassword(ctx, *id, pw)
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "operator %s: password set\n", *id)
	case "remove":
		if err := st.Remove(*id); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "operator %s removed\n", *id)
	case "unlock":
		if err := st.Unlock(*id); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "operator %s unlocked\n", *id)
	case "list":
		for _, o := range st.List() {
			state := "active"
			if o.Locked {
				state = "LOCKED (posd operator unlock)"
			} else if o.Failures > 0 {
				state = fmt.Sprintf("%d failed checks", o.Failures)
			}
			fmt.Fprintf(stdout, "%-20s %-11s %s, password set %s\n", o.ID, o.Role, state, o.Changed.Format("2006-01-02"))
		}
	default:
		fmt.Fprint(stderr, operatorUsage)
		return 2
	}
	return 0
}

// readPassword reads a new password: twice without echo from a terminal, or the first line
// of stdin otherwise.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	f, isFile := stdin.(*os.File)
	if !isFile || !tty.IsTerminal(f) {
		line, err := bufio.NewReader(io.LimitReader(stdin, 256)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	restore, err := tty.EchoOff(f, "posd: interrupted; nothing was changed")
	if err != nil {
		return "", err
	}
	defer restore()
	r := bufio.NewReader(f)
	fmt.Fprint(stderr, "password: ")
	a, _ := r.ReadString('\n')
	fmt.Fprint(stderr, "\nagain: ")
	b, _ := r.ReadString('\n')
	fmt.Fprintln(stderr)
	if a != b {
		return "", errors.New("the two passwords differ")
	}
	return strings.TrimRight(a, "\r\n"), nil
}
