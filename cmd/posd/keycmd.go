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
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/posd-dev/posd/internal/atomicfile"
	"github.com/posd-dev/posd/internal/tty"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/hsm/tr31"
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
	m     *hsm.Module
	where string     // for messages: `token "posd"` or `soft key file /path`
	soft  *softStore // the soft backend's files; nil for a token
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
		return &keyTarget{m: m, where: fmt.Sprintf("token %q", d.PKCS11.Token), close: closeFn}, nil
	case "soft":
		slog.New(slog.NewTextHandler(stderr, nil)).Warn(soft.Warning)
		s, m, err := openSoftStore(d.KeyFile)
		if err != nil {
			return nil, err
		}
		return &keyTarget{m: m, where: "soft key file " + d.KeyFile, soft: s, close: s.clear}, nil
	}
	return nil, fmt.Errorf("hsm.data: unknown backend %q", d.Backend)
}

// existing returns the key id describes, or ok false when there is none.
func (t *keyTarget) existing(ctx context.Context, id string) (info hsm.KeyInfo, ok bool, err error) {
	info, err = t.m.KeyInfo(ctx, id)
	if errors.Is(err, hsm.ErrUnknownKey) {
		return hsm.KeyInfo{}, false, nil
	}
	return info, err == nil, err
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
	keys, err := t.m.Keys(context.Background())
	if err != nil {
		return fmt.Errorf("key list: %w", err)
	}
	if len(keys) == 0 {
		fmt.Fprintf(stdout, "no keys in %s\n", t.where)
	} else {
		fmt.Fprintf(stdout, "%d keys in %s:\n", len(keys), t.where)
	}
	for _, k := range keys {
		fmt.Fprintln(stdout, k)
	}
	if t.soft != nil && t.soft.entries[dataKeyID] == nil {
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
	ctx := context.Background()
	kbpk, ok, err := t.existing(ctx, *kbpkID)
	switch {
	case err != nil:
		return fmt.Errorf("key import: KBPK: %w", err)
	case !ok:
		return fmt.Errorf("key import: no key %q in %s to unwrap the block with (posd key list shows the keys; posd key load-kbpk loads one)", *kbpkID, t.where)
	case kbpk.Usage != hsm.UsageKBPK:
		return fmt.Errorf("key import: key %q in %s is a %v %v key, not a key block protection key", *kbpkID, t.where, kbpk.Algorithm, kbpk.Usage)
	}
	old, exists, err := t.existing(ctx, *id)
	if err != nil {
		return fmt.Errorf("key import: %w", err)
	}
	if exists && !*replace {
		return fmt.Errorf("key import: %s already holds key %s; add --replace to overwrite it", t.where, old)
	}
	info, err := t.m.ImportKeyBlock(ctx, hsm.ImportRequest{ID: *id, KBPKID: *kbpkID, Block: blk, Replace: *replace})
	if err != nil {
		return fmt.Errorf("key import: %w", err)
	}
	if t.soft != nil {
		if err := t.soft.saveImported(info, *kbpkID, blk); err != nil {
			return fmt.Errorf("key import: %w", err)
		}
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

// parseAlgorithm reads --algorithm: tdes2, tdes3, aes128, aes192, aes256, or the names
// hsm.Algorithm prints ("AES-256", "TDES-2key").
func parseAlgorithm(s string) (hsm.Algorithm, bool) {
	n := strings.NewReplacer("-", "", "_", "", "key", "").Replace(strings.ToLower(s))
	for _, a := range []hsm.Algorithm{hsm.TDES2, hsm.TDES3, hsm.AES128, hsm.AES192, hsm.AES256} {
		if n == strings.NewReplacer("-", "", "key", "").Replace(strings.ToLower(a.String())) {
			return a, true
		}
	}
	return 0, false
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
	alg, ok := parseAlgorithm(*algS)
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
	if err := t.m.FitsRole(*id, alg, hsm.UsageKBPK); err != nil {
		return fmt.Errorf("key load-kbpk: %w", err)
	}
	old, exists, err := t.existing(ctx, *id)
	if err != nil {
		return fmt.Errorf("key load-kbpk: %w", err)
	}
	if exists && !*replace {
		return fmt.Errorf("key load-kbpk: %s already holds key %s; add --replace to overwrite it", t.where, old)
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
	// The combined key is in this process's memory for these few lines (see keyUsage).
	value := make([]byte, alg.KeyLen())
	defer clear(value)
	for _, c := range comps {
		for i := range value {
			value[i] ^= c[i]
		}
	}
	if subtle.ConstantTimeCompare(value, make([]byte, len(value))) == 1 {
		return errors.New("key load-kbpk: the components combine to a key of all zeros; nothing was loaded")
	}
	info, err := t.m.LoadKey(ctx, hsm.LoadRequest{ID: *id, Algorithm: alg, Usage: hsm.UsageKBPK, Components: comps, CheckValue: wantKCV, Replace: *replace})
	if errors.Is(err, hsm.ErrCheckValue) {
		return fmt.Errorf("key load-kbpk: the combined key's check value is not %X: a component was mistyped or is not from this key; nothing was loaded", wantKCV)
	}
	if err != nil {
		return fmt.Errorf("key load-kbpk: %w", err)
	}
	if t.soft != nil {
		if err := t.soft.save(*id, &softEntry{alg: alg, usage: hsm.UsageKBPK, value: append([]byte(nil), value...)}); err != nil {
			return fmt.Errorf("key load-kbpk: %w", err)
		}
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
		for j, p := range comps[:i-1] {
			if subtle.ConstantTimeCompare(p, c) == 1 {
				return comps, fmt.Errorf("component %d is the same as component %d: each custodian must hold a different one", i, j+1)
			}
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
	digits := make([]byte, 0, len(line))
	defer func() { clear(digits) }()
	for _, b := range line {
		if b != ' ' && b != '\t' && b != '\r' {
			digits = append(digits, b)
		}
	}
	c := make([]byte, hex.DecodedLen(len(digits)))
	if _, err := hex.Decode(c, digits); err != nil || len(digits)%2 != 0 {
		clear(c)
		return nil, fmt.Errorf("component %d is not hexadecimal", i)
	}
	if len(c) != alg.KeyLen() {
		clear(c)
		return nil, fmt.Errorf("component %d has %d hex digits, not %d (%v)", i, len(digits), 2*alg.KeyLen(), alg)
	}
	if subtle.ConstantTimeCompare(c, make([]byte, len(c))) == 1 {
		return nil, fmt.Errorf("component %d is all zeros", i)
	}
	return c, nil
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

// softStore is the soft backend's key store, for tests and demos: posd's data key in
// hsm.data.key_file, in the format posd reads at start (64 hex digits), and every other
// key in key_file + ".keys", one a line: id usage algorithm value [KSN]. Both hold clear
// keys, mode 0600; the soft backend protects nothing.
type softStore struct {
	dataFile, otherFile string
	entries             map[string]*softEntry
}

type softEntry struct {
	alg        hsm.Algorithm
	usage      hsm.Usage
	value, ksn []byte
}

// softUsages names usages in the .keys file.
var softUsages = map[hsm.Usage]string{
	hsm.UsagePIN: "pin", hsm.UsageDUKPT: "dukpt", hsm.UsageBDK: "bdk",
	hsm.UsageMAC: "mac", hsm.UsageData: "data", hsm.UsageKBPK: "kbpk",
}

// openSoftStore reads the key files and returns them with a Module over a soft backend that
// holds their keys.
func openSoftStore(keyFile string) (*softStore, *hsm.Module, error) {
	s := &softStore{dataFile: keyFile, otherFile: keyFile + ".keys", entries: map[string]*softEntry{}}
	if _, err := os.Stat(keyFile); err == nil {
		v, err := softKey(keyFile)
		if err != nil {
			return nil, nil, err
		}
		s.entries[dataKeyID] = &softEntry{alg: hsm.AES256, usage: hsm.UsageData, value: v}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("hsm.data.key_file: %w", err)
	}
	if err := s.readOthers(); err != nil {
		s.clear()
		return nil, nil, err
	}
	m, err := hsm.New(soft.New(nil), &hsm.Options{DataKeyID: dataKeyID})
	if err != nil {
		s.clear()
		return nil, nil, err
	}
	for id, e := range s.entries {
		if _, err := m.LoadKey(context.Background(), hsm.LoadRequest{ID: id, Algorithm: e.alg, Usage: e.usage, Components: [][]byte{e.value}, KSN: e.ksn}); err != nil {
			s.clear()
			return nil, nil, fmt.Errorf("soft key file %s: key %q: %w", s.otherFile, id, err)
		}
	}
	return s, m, nil
}

func (s *softStore) readOthers() error {
	b, err := os.ReadFile(s.otherFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("soft key file: %w", err)
	}
	defer clear(b)
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		bad := func(what string) error {
			return fmt.Errorf("soft key file %s line %d: %s; it must not be edited (posd key writes it)", s.otherFile, n+1, what)
		}
		if len(f) != 4 && len(f) != 5 {
			return bad("want: id usage algorithm value [KSN]")
		}
		if f[0] == dataKeyID || s.entries[f[0]] != nil {
			return bad(fmt.Sprintf("key %q again", f[0]))
		}
		e := &softEntry{}
		for u, name := range softUsages {
			if name == f[1] {
				e.usage = u
			}
		}
		a, ok := parseAlgorithm(f[2])
		if e.usage == 0 || !ok {
			return bad("unknown usage or algorithm")
		}
		e.alg = a
		if e.value, err = hex.DecodeString(f[3]); err != nil || len(e.value) != a.KeyLen() {
			return bad(fmt.Sprintf("the value of key %q is not %d hex digits (%v)", f[0], 2*a.KeyLen(), a))
		}
		if len(f) == 5 {
			if e.ksn, err = hex.DecodeString(f[4]); err != nil {
				return bad(fmt.Sprintf("the KSN of key %q is not hex", f[0]))
			}
		}
		s.entries[f[0]] = e
	}
	return nil
}

// saveImported records the key a block imported into the soft backend: the soft backend
// does not give key values back, so the block is unwrapped again here under the KBPK's
// value from the file, and the result checked against what the backend reported.
func (s *softStore) saveImported(info hsm.KeyInfo, kbpkID, block string) error {
	kbpk := s.entries[kbpkID]
	if kbpk == nil {
		return fmt.Errorf("soft key file: KBPK %q missing", kbpkID)
	}
	_, value, err := tr31.Unwrap(kbpk.value, block)
	if err != nil {
		return err
	}
	defer clear(value)
	cv, err := hsm.ComponentCheckValue(info.Algorithm, value)
	if err != nil || cv.String() != info.CheckValue.String() {
		return errors.New("soft key file: the unwrapped key does not match the soft backend's; nothing was saved")
	}
	if info.ID == dataKeyID && info.Algorithm != hsm.AES256 {
		return fmt.Errorf("the soft backend's key file holds an AES-256 data key only; this block holds an %v key; nothing was saved", info.Algorithm)
	}
	return s.save(info.ID, &softEntry{alg: info.Algorithm, usage: info.Usage, value: append([]byte(nil), value...), ksn: info.KSN})
}

// save stores e as id and writes the file it belongs in.
func (s *softStore) save(id string, e *softEntry) error {
	if old := s.entries[id]; old != nil {
		clear(old.value)
	}
	s.entries[id] = e
	if id == dataKeyID {
		text := []byte(hex.EncodeToString(e.value) + "\n")
		defer clear(text)
		return writeFileSynced(s.dataFile, text)
	}
	var b strings.Builder
	b.WriteString("# posd soft key store: clear keys, for tests and demos only. Written by posd key; do not edit.\n")
	ids := make([]string, 0, len(s.entries))
	for id := range s.entries {
		if id != dataKeyID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := s.entries[id]
		fmt.Fprintf(&b, "%s %s %v %s", id, softUsages[e.usage], e.alg, hex.EncodeToString(e.value))
		if e.ksn != nil {
			fmt.Fprintf(&b, " %s", hex.EncodeToString(e.ksn))
		}
		b.WriteByte('\n')
	}
	text := []byte(b.String())
	defer clear(text)
	return writeFileSynced(s.otherFile, text)
}

func (s *softStore) clear() {
	for _, e := range s.entries {
		clear(e.value)
	}
}

// writeFileSynced replaces path with data (mode 0600): a synced temporary file renamed over
// it, then the directory synced, so that a crash leaves the old file or the new one.
func writeFileSynced(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("soft key file: %w", err)
	}
	return nil
}
