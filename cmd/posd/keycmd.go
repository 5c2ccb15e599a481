package main

// posd key: a technician's key loading into the token that holds posd's data key
// (hsm.data), with posd's own config file, so that nobody retypes token settings.
//
//	posd key list      --config FILE
//	posd key import    --config FILE --kbpk ID --block STRING --id ID [--replace]
//	posd key load-kbpk --config FILE --id ID --algorithm A [--components 2|3] [--kcv HEX] [--replace]
//
// Keys are named by id; nothing here prints or logs a key's value, a component or a PIN:
// only ids, algorithms, usages and check values.

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/ceremony"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/internal/tty"
)

const keyUsage = `usage:
  posd key list      --config FILE
  posd key import    --config FILE --kbpk ID --block STRING --id ID [--replace]
  posd key load-kbpk --config FILE --id ID --algorithm A [--components 2|3] [--kcv HEX] [--replace]

The keys live where hsm.data says: a PKCS#11 token (posd built with -tags pkcs11), or, with
the soft backend (tests and demos only), hsm.data.key_file and hsm.data.key_file + ".keys".
Stop posd first; it uses new keys from its next start.

import     unwraps a TR-31 key block (versions A, B, C, D) under the key block protection
           key --kbpk, already in the token, and stores the key as --id, non-extractable.
           Use --id data for posd's data key (an AES key of usage D0). Prints the key's
           algorithm, usage and check value (KCV), never the key.
load-kbpk  builds a key block protection key (TR-31 usage K1) from 2 or 3 clear
           components typed by the key custodians (not echoed on a terminal); prints each
           component's KCV for its custodian to check, then the key's. --algorithm is
           tdes2, tdes3, aes128, aes192 or aes256; --kcv is the KCV the key must have.
           The components are combined in posd's memory, which then holds the clear key
           for a moment: SoftHSM has no CKM_XOR_BASE_AND_DATA, and the components pass
           through posd's memory whichever way they are combined. posd overwrites them
           and the key as soon as the key is in the token. Run the ceremony on a
           terminal nobody else is logged in to.
list       shows the ids, algorithms, usages and KCVs of the keys.
Existing ids are replaced only with --replace; the old key's KCV is printed.
`

// keyError is bad input to posd key: one line, exit status 2.
type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

func cmdKey(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keyUsage)
		return errUsage
	}
	var err error
	switch args[0] {
	case "list":
		err = keyList(args[1:], stdout, stderr)
	case "import":
		err = keyImport(args[1:], stdout, stderr)
	case "load-kbpk":
		err = keyLoadKBPK(args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, keyUsage)
		return nil
	default:
		err = &keyError{fmt.Sprintf("key: unknown command %q (list, import, load-kbpk; posd key help)", args[0])}
	}
	var ke *keyError
	if errors.As(err, &ke) {
		fmt.Fprintf(stderr, "posd: %v\n", ke)
		return errUsage
	}
	return err
}

// keyFlags parses a posd key subcommand's flags; a bad flag is a one-line keyError.
func keyFlags(name string, args []string, define func(fs *flag.FlagSet)) (cfg string, err error) {
	fs := flag.NewFlagSet("posd key "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "/etc/posd/posd.json", "config file")
	define(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", &keyError{"key " + name + ": posd key help shows the usage"}
		}
		return "", &keyError{fmt.Sprintf("key %s: %v (posd key help shows the usage)", name, err)}
	}
	if fs.NArg() > 0 {
		return "", &keyError{fmt.Sprintf("key %s: unexpected argument %q", name, fs.Arg(0))}
	}
	return *cfgPath, nil
}

// keyTarget is where posd's keys are, opened for a technician's command.
type keyTarget struct {
	*ceremony.Keys
	close func()
}

// openKeyTarget opens what hsm.data in the config at path names.
func openKeyTarget(path string, stderr io.Writer) (*keyTarget, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	d := cfg.HSM.Data
	if d == nil {
		return nil, fmt.Errorf("config %s has no hsm.data: posd keeps no keys of its own (set hsm.data to the PKCS#11 token that is to hold them)", path)
	}
	switch d.Backend {
	case "pkcs11":
		drv, closeFn, err := openPKCS11(d.PKCS11)
		if err != nil {
			return nil, fmt.Errorf("hsm.data: %w", err)
		}
		m, err := hsm.New(drv, &hsm.Options{DataKeyID: dataKeyID})
		if err != nil {
			closeFn()
			return nil, err
		}
		return &keyTarget{Keys: ceremony.OnModule(m, fmt.Sprintf("token %q", d.PKCS11.Token)), close: closeFn}, nil
	case "soft":
		slog.New(slog.NewTextHandler(stderr, nil)).Warn(soft.Warning)
		k, err := ceremony.OpenSoft(d.KeyFile)
		if err != nil {
			return nil, err
		}
		return &keyTarget{Keys: k, close: k.Close}, nil
	}
	return nil, fmt.Errorf("hsm.data: unknown backend %q", d.Backend)
}

func keyList(args []string, stdout, stderr io.Writer) error {
	path, err := keyFlags("list", args, func(*flag.FlagSet) {})
	if err != nil {
		return err
	}
	t, err := openKeyTarget(path, stderr)
	if err != nil {
		return fmt.Errorf("key list: %w", err)
	}
	defer t.close()
	keys, err := t.Module().Keys(context.Background())
	if err != nil {
		return fmt.Errorf("key list: %w", err)
	}
	if len(keys) == 0 {
		fmt.Fprintf(stdout, "no keys in %s\n", t.Where())
	} else {
		fmt.Fprintf(stdout, "%d keys in %s:\n", len(keys), t.Where())
	}
	for _, k := range keys {
		fmt.Fprintln(stdout, k)
	}
	if t.MissingSoftDataKey() {
		fmt.Fprintln(stdout, "no data key yet: posd makes a random one at its first start, or import one with --id data")
	}
	return nil
}

func keyImport(args []string, stdout, stderr io.Writer) error {
	var kbpkID, block, id *string
	var replace *bool
	path, err := keyFlags("import", args, func(fs *flag.FlagSet) {
		kbpkID = fs.String("kbpk", "", "id of the key block protection key in the token")
		block = fs.String("block", "", "the TR-31 key block")
		id = fs.String("id", "", "id of the new key (data: posd's data key)")
		replace = fs.Bool("replace", false, "overwrite a key with the same id")
	})
	if err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"kbpk", *kbpkID}, {"block", *block}, {"id", *id}} {
		if f.v == "" {
			return &keyError{fmt.Sprintf("key import: --%s is required", f.name)}
		}
	}
	blk := strings.TrimSpace(*block)
	t, err := openKeyTarget(path, stderr)
	if err != nil {
		return fmt.Errorf("key import: %w", err)
	}
	defer t.close()
	info, old, exists, err := t.Import(context.Background(), hsm.ImportRequest{ID: *id, KBPKID: *kbpkID, Block: blk, Replace: *replace})
	if err != nil {
		return fmt.Errorf("key import: %w", err)
	}
	if exists {
		fmt.Fprintf(stdout, "replaced key %s\n", old)
	}
	fmt.Fprintf(stdout, "imported key %s\n", info)
	dataKeyNotes(stderr, info.ID, exists)
	return nil
}

// dataKeyNotes tells the technician what a new data key means for posd.
func dataKeyNotes(stderr io.Writer, id string, replaced bool) {
	if id != dataKeyID {
		return
	}
	if replaced {
		fmt.Fprintln(stderr, "posd: warning: card data sealed under the old data key (queued reversals and offline approvals) can no longer be opened; posctl saf list must be empty before a data key is replaced")
	}
	fmt.Fprintln(stderr, "posd: posd seals with the new data key from its next start")
}

func keyLoadKBPK(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var id, algS, kcvS *string
	var n *int
	var replace *bool
	path, err := keyFlags("load-kbpk", args, func(fs *flag.FlagSet) {
		id = fs.String("id", "", "id of the key block protection key")
		algS = fs.String("algorithm", "", "tdes2, tdes3, aes128, aes192 or aes256")
		n = fs.Int("components", 2, "how many custodians hold a component: 2 or 3")
		kcvS = fs.String("kcv", "", "the check value the combined key must have")
		replace = fs.Bool("replace", false, "overwrite a key with the same id")
	})
	if err != nil {
		return err
	}
	if *id == "" {
		return &keyError{"key load-kbpk: --id is required"}
	}
	alg, ok := hsm.ParseAlgorithm(*algS)
	if !ok {
		return &keyError{fmt.Sprintf("key load-kbpk: --algorithm %q: want tdes2, tdes3, aes128, aes192 or aes256", *algS)}
	}
	if *n != 2 && *n != 3 {
		return &keyError{fmt.Sprintf("key load-kbpk: --components %d: want 2 or 3", *n)}
	}
	var wantKCV []byte
	if *kcvS != "" {
		maxLen := 5
		if alg.IsTDES() {
			maxLen = 3
		}
		wantKCV, err = hex.DecodeString(strings.ReplaceAll(*kcvS, " ", ""))
		if err != nil || len(wantKCV) < 2 || len(wantKCV) > maxLen {
			return &keyError{fmt.Sprintf("key load-kbpk: --kcv: want 4 to %d hex digits (a %v key's check value)", 2*maxLen, alg)}
		}
	}
	t, err := openKeyTarget(path, stderr)
	if err != nil {
		return fmt.Errorf("key load-kbpk: %w", err)
	}
	defer t.close()
	ctx := context.Background()
	// Everything that can be refused is refused before the custodians type anything.
	old, exists, err := t.CanLoad(ctx, *id, alg, hsm.UsageKBPK, *replace)
	if err != nil {
		return fmt.Errorf("key load-kbpk: %w", err)
	}

	comps, err := readComponents(stdin, stdout, stderr, alg, *n)
	defer func() {
		for _, c := range comps {
			clear(c)
		}
	}()
	if err != nil {
		return fmt.Errorf("key load-kbpk: %w; nothing was loaded", err)
	}
	info, err := t.Load(ctx, hsm.LoadRequest{ID: *id, Algorithm: alg, Usage: hsm.UsageKBPK, Components: comps, CheckValue: wantKCV, Replace: *replace})
	if err != nil {
		return fmt.Errorf("key load-kbpk: %w", err)
	}
	if exists {
		fmt.Fprintf(stdout, "replaced key %s\n", old)
	}
	fmt.Fprintf(stdout, "loaded key %s\n", info)
	return nil
}

// readComponents reads n components of a key of algorithm alg from in, one a line, in hex
// (spaces allowed). On a terminal each is read without echo, may be typed again after a
// mistake, and its custodian confirms its check value; otherwise a bad line ends the
// ceremony. The components returned are the caller's to clear, on error too.
func readComponents(in io.Reader, stdout, stderr io.Writer, alg hsm.Algorithm, n int) ([][]byte, error) {
	f, _ := in.(*os.File)
	term := f != nil && tty.IsTerminal(f)
	var comps [][]byte
	for i := 1; i <= n; i++ {
		var c []byte
		for try := 1; ; try++ {
			restore := func() {}
			if term {
				// Echo goes off before the prompt, so nothing typed after it shows.
				var err error
				if restore, err = tty.EchoOff(f, "posd: interrupted; nothing was loaded"); err != nil {
					return comps, fmt.Errorf("cannot turn off echo on the terminal to read component %d: %v", i, err)
				}
			}
			fmt.Fprintf(stderr, "custodian %d of %d: type component %d (%d hex digits", i, n, i, 2*alg.KeyLen())
			if term {
				fmt.Fprint(stderr, ", not shown")
			}
			fmt.Fprint(stderr, "), then Enter: ")
			var err error
			c, err = readComponent(in, i, alg)
			restore()
			fmt.Fprintln(stderr) // the Enter typed was not echoed, or there was no terminal
			if err == nil {
				break
			}
			if !term || try == 3 {
				return comps, err
			}
			fmt.Fprintf(stderr, "posd: %v; type it again\n", err)
		}
		comps = append(comps, c)
		if err := ceremony.Distinct(comps); err != nil {
			return comps, err
		}
		cv, err := hsm.ComponentCheckValue(alg, c)
		if err != nil {
			return comps, fmt.Errorf("component %d: %w", i, err)
		}
		fmt.Fprintf(stdout, "component %d: KCV %s (%s)\n", i, cv, cv.Method)
		if term {
			fmt.Fprintf(stderr, "custodian %d: is %s the check value written with your component? [y/N] ", i, cv)
			ans, err := readLine(in, 16)
			yes := strings.EqualFold(strings.TrimSpace(string(ans)), "y") || strings.EqualFold(strings.TrimSpace(string(ans)), "yes")
			if err != nil || !yes {
				return comps, fmt.Errorf("custodian %d did not confirm the check value of component %d", i, i)
			}
		}
	}
	return comps, nil
}

// readComponent reads and decodes component i. Errors never hold what was typed.
func readComponent(in io.Reader, i int, alg hsm.Algorithm) ([]byte, error) {
	line, err := readLine(in, 4*alg.KeyLen()+16)
	defer clear(line)
	if err != nil {
		return nil, fmt.Errorf("component %d: %w", i, err)
	}
	return ceremony.ParseComponent(line, i, alg)
}

// readLine reads up to a newline, one byte at a time so that nothing beyond the line is
// read (and left in a buffer nobody clears), into a buffer of at most max bytes.
func readLine(in io.Reader, maxLen int) ([]byte, error) {
	line := make([]byte, 0, maxLen)
	var b [1]byte
	for {
		n, err := in.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return line, nil
			}
			if len(line) == maxLen {
				clear(line)
				return nil, errors.New("line too long")
			}
			line = append(line, b[0])
			continue
		}
		if err == io.EOF && len(line) > 0 {
			return line, nil
		}
		if err == io.EOF {
			return nil, errors.New("input ended before it")
		}
		if err != nil {
			clear(line)
			return nil, err
		}
	}
}
