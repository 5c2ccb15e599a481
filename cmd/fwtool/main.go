// Command fwtool is the vendor's tool for posd firmware releases: it makes
// keys, writes and rotates the signed root metadata, signs releases,
// re-signs or expires metadata, writes bundles and verifies them as a
// terminal would (package firmware/release; the terminal side is package
// firmware).
//
// Usage:
//
//	fwtool keygen NAME...
//	fwtool root      --repo DIR --root-keys A.pub[,B.pub] --targets-keys T.pub
//	                 --snapshot-keys S.pub --timestamp-keys TS.pub [--ROLE-threshold N]
//	                 [--expires 365d | --expires-at TIME] --sign A.key[,OLD.key]
//	fwtool sign-root --repo DIR --version N --sign C.key[,D.key]
//	fwtool release   --repo DIR --image FILE --version V --hardware M[,M]
//	                 [--name NAME] [--kind system|pinpad] [--keep]
//	                 --targets-key T.key --snapshot-key S.key --timestamp-key TS.key
//	                 [--targets-expires 90d] [--snapshot-expires 90d] [--timestamp-expires 7d]
//	fwtool resign    --repo DIR --role timestamp|snapshot|targets
//	                 [--targets-key ...] [--snapshot-key ...] --timestamp-key ...
//	                 [--expires 7d | --expires-at TIME]
//	fwtool bundle    --repo DIR --out FILE [--target NAME]...
//	fwtool verify    --root 1.root.json --bundle FILE|DIR|URL --model M
//	                 [--installed 1.0.0] [--at TIME]
//	fwtool show      --repo DIR
//
// Key lists are comma-separated files. Lifetimes are Go durations or a
// number of days ("30d"); a negative lifetime or a past --expires-at
// writes metadata that is already expired (to test terminals). TIME is
// RFC 3339. Exit status: 0 success, 1 failure (one line on stderr), 2 usage.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/firmware/release"
	"github.com/posd-dev/posd/terminal/emvparams"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage: fwtool COMMAND [flags]
commands:
  keygen NAME...     write NAME.key (private, mode 0600) and NAME.pub
  root               write the next root version: the first, or a key rotation
  sign-root          add signatures to a root version (keys held by different people)
  release            sign a release of one image (--keep to add to the previous one)
  resign             new versions of metadata with new expiry times (or already expired)
  bundle             write the bundle file a technician installs
  verify             verify a bundle as a terminal would
  show               print the repository's metadata: versions, keys, expiry
  sign-params        sign an EMV parameter file with the targets key (posctl params install)
'fwtool COMMAND -h' shows a command's flags.
`

var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"keygen": keygen, "root": root, "sign-root": signRoot, "release": publish,
		"resign": resign, "bundle": bundle, "verify": verify, "show": show,
		"sign-params": signParams,
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "fwtool: unknown command %q\n%s", args[0], usage)
		return 2
	}
	err := cmd(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	}
	fmt.Fprintf(stderr, "fwtool %s: %v\n", args[0], err)
	return 1
}

// flags returns a flag set that prints its errors to stderr.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fwtool "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string, required ...string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 && fs.Name() != "fwtool keygen" {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	for _, r := range required {
		if f := fs.Lookup(r); f != nil && f.Value.String() == "" {
			fmt.Fprintf(fs.Output(), "%s: --%s is required\n", fs.Name(), r)
			return errUsage
		}
	}
	return nil
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func privateKeys(s string) ([]*release.PrivateKey, error) {
	var keys []*release.PrivateKey
	for _, p := range list(s) {
		k, err := release.LoadPrivateKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func publicKeys(s string) ([]firmware.PublicKey, error) {
	var keys []firmware.PublicKey
	for _, p := range list(s) {
		k, err := release.LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// lifetime parses a Go duration or a number of days ("30d").
func lifetime(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return 0, fmt.Errorf("lifetime %q: not a duration or a number of days", s)
		}
		return time.Duration(n * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("lifetime %q: not a duration or a number of days", s)
	}
	return d, nil
}

// expiry returns the time a lifetime or an absolute time gives, or zero
// when neither is set.
func expiry(now time.Time, life, at string) (time.Time, error) {
	switch {
	case life != "" && at != "":
		return time.Time{}, errors.New("give --expires or --expires-at, not both")
	case at != "":
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return time.Time{}, fmt.Errorf("--expires-at: %w", err)
		}
		return t.UTC(), nil
	case life != "":
		d, err := lifetime(life)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d).UTC().Truncate(time.Second), nil
	}
	return time.Time{}, nil
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flags("keygen", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "fwtool keygen: name the keys to make, e.g. fwtool keygen root1 targets1")
		return errUsage
	}
	for _, name := range fs.Args() {
		k, err := release.GenerateKey(nil)
		if err != nil {
			return err
		}
		if err := release.SaveKeyPair(name, k); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s.key %s.pub  key id %s\n", name, name, k.ID())
	}
	return nil
}

func root(args []string, stdout, stderr io.Writer) error {
	fs := flags("root", stderr)
	repo := fs.String("repo", "", "release repository directory (required)")
	roles := []string{firmware.RoleRoot, firmware.RoleTargets, firmware.RoleSnapshot, firmware.RoleTimestamp}
	keyFlags, thFlags := map[string]*string{}, map[string]*int{}
	for _, r := range roles {
		keyFlags[r] = fs.String(r+"-keys", "", "public keys of the "+r+" role, comma-separated (required)")
		thFlags[r] = fs.Int(r+"-threshold", 1, "how many "+r+" keys must sign")
	}
	life := fs.String("expires", "", "lifetime of the root (default 365d)")
	at := fs.String("expires-at", "", "expiry time of the root, RFC 3339")
	sign := fs.String("sign", "", "private keys that sign: a threshold of the new root keys and, for a rotation, of the previous version's (required)")
	if err := parse(fs, args, "repo", "root-keys", "targets-keys", "snapshot-keys", "timestamp-keys", "sign"); err != nil {
		return err
	}
	spec := release.RootSpec{Keys: map[string][]firmware.PublicKey{}, Thresholds: map[string]int{}}
	for _, r := range roles {
		keys, err := publicKeys(*keyFlags[r])
		if err != nil {
			return err
		}
		spec.Keys[r], spec.Thresholds[r] = keys, *thFlags[r]
	}
	var err error
	if spec.Expires, err = expiry(time.Now(), *life, *at); err != nil {
		return err
	}
	signers, err := privateKeys(*sign)
	if err != nil {
		return err
	}
	v, err := (&release.Repo{Dir: *repo}).WriteRoot(spec, signers...)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*repo, "metadata", fmt.Sprintf("%d.root.json", v)))
	return nil
}

func signRoot(args []string, stdout, stderr io.Writer) error {
	fs := flags("sign-root", stderr)
	repo := fs.String("repo", "", "release repository directory (required)")
	version := fs.Int64("version", 0, "root version to sign (required)")
	sign := fs.String("sign", "", "private keys to add signatures with (required)")
	if err := parse(fs, args, "repo", "sign"); err != nil {
		return err
	}
	if *version < 1 {
		fmt.Fprintln(stderr, "fwtool sign-root: --version is required")
		return errUsage
	}
	path := filepath.Join(*repo, "metadata", fmt.Sprintf("%d.root.json", *version))
	file, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	keys, err := privateKeys(*sign)
	if err != nil {
		return err
	}
	out, err := release.AddSignatures(file, keys...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s\n", path)
	return nil
}

// signParams wraps an EMV parameter file (JSON, checked first) in a metadata envelope
// signed by the keys given: the targets role keys of the firmware root posd trusts.
func signParams(args []string, stdout, stderr io.Writer) error {
	fs := flags("sign-params", stderr)
	in := fs.String("in", "", "parameter file, JSON (required)")
	out := fs.String("out", "", "signed file to write (required)")
	sign := fs.String("sign", "", "private keys of the targets role (required)")
	if err := parse(fs, args, "in", "out", "sign"); err != nil {
		return err
	}
	body, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	p, err := emvparams.Parse(body)
	if err != nil {
		return err
	}
	keys, err := privateKeys(*sign)
	if err != nil {
		return err
	}
	signed, err := release.SignRaw(body, keys...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, signed, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s: %s version %d, %d AIDs, %d CA keys, %d revoked\n", *out, p.Acquirer, p.Version, len(p.AIDs), len(p.CAPKs), len(p.Revoked))
	return nil
}

func publish(args []string, stdout, stderr io.Writer) error {
	fs := flags("release", stderr)
	repo := fs.String("repo", "", "release repository directory (required)")
	img := fs.String("image", "", "image file (required)")
	name := fs.String("name", "", "target name in the bundle (default: the image's file name)")
	version := fs.String("version", "", "firmware version, MAJOR.MINOR.PATCH (required)")
	hardware := fs.String("hardware", "", "hardware models the image is for, comma-separated (required)")
	kind := fs.String("kind", firmware.KindSystem, "system (terminal A/B slots) or pinpad")
	keep := fs.Bool("keep", false, "keep the images of the previous release in this one")
	tk := fs.String("targets-key", "", "targets signing keys (required)")
	sk := fs.String("snapshot-key", "", "snapshot signing keys (required)")
	tsk := fs.String("timestamp-key", "", "timestamp signing keys (required)")
	te := fs.String("targets-expires", "", "lifetime of targets.json (default 90d)")
	se := fs.String("snapshot-expires", "", "lifetime of snapshot.json (default 90d)")
	tse := fs.String("timestamp-expires", "", "lifetime of timestamp.json (default 7d)")
	if err := parse(fs, args, "repo", "image", "version", "hardware", "targets-key", "snapshot-key", "timestamp-key"); err != nil {
		return err
	}
	s, err := signers(*tk, *sk, *tsk)
	if err != nil {
		return err
	}
	exp, err := expiries(*te, *se, *tse)
	if err != nil {
		return err
	}
	err = (&release.Repo{Dir: *repo}).Publish(release.ReleaseSpec{
		Images: []release.Image{{Path: *img, Name: *name, Kind: *kind, Version: *version, Hardware: list(*hardware)}},
		Keep:   *keep, Signers: s, Expires: exp,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "released %s %s for %s\n", *version, filepath.Base(*img), *hardware)
	return nil
}

func signers(tk, sk, tsk string) (release.Signers, error) {
	var s release.Signers
	var err error
	if s.Targets, err = privateKeys(tk); err != nil {
		return s, err
	}
	if s.Snapshot, err = privateKeys(sk); err != nil {
		return s, err
	}
	s.Timestamp, err = privateKeys(tsk)
	return s, err
}

func expiries(te, se, tse string) (release.Expiry, error) {
	var e release.Expiry
	var err error
	now := time.Now()
	if e.Targets, err = expiry(now, te, ""); err != nil {
		return e, err
	}
	if e.Snapshot, err = expiry(now, se, ""); err != nil {
		return e, err
	}
	e.Timestamp, err = expiry(now, tse, "")
	return e, err
}

func resign(args []string, stdout, stderr io.Writer) error {
	fs := flags("resign", stderr)
	repo := fs.String("repo", "", "release repository directory (required)")
	role := fs.String("role", "", "timestamp, snapshot or targets (required); the roles above it are re-signed too")
	tk := fs.String("targets-key", "", "targets signing keys (for --role targets)")
	sk := fs.String("snapshot-key", "", "snapshot signing keys (for --role targets or snapshot)")
	tsk := fs.String("timestamp-key", "", "timestamp signing keys (required)")
	life := fs.String("expires", "", "new lifetime of ROLE's metadata (default: the role's default)")
	at := fs.String("expires-at", "", "new expiry time of ROLE's metadata, RFC 3339")
	if err := parse(fs, args, "repo", "role", "timestamp-key"); err != nil {
		return err
	}
	s, err := signers(*tk, *sk, *tsk)
	if err != nil {
		return err
	}
	t, err := expiry(time.Now(), *life, *at)
	if err != nil {
		return err
	}
	var e release.Expiry
	switch *role {
	case firmware.RoleTargets:
		e.Targets = t
	case firmware.RoleSnapshot:
		e.Snapshot = t
	case firmware.RoleTimestamp:
		e.Timestamp = t
	}
	if err := (&release.Repo{Dir: *repo}).Resign(*role, s, e); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-signed %s\n", *role)
	return nil
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func bundle(args []string, stdout, stderr io.Writer) error {
	fs := flags("bundle", stderr)
	repo := fs.String("repo", "", "release repository directory (required)")
	out := fs.String("out", "", "bundle file to write (required)")
	var targets multi
	fs.Var(&targets, "target", "an image to include (repeatable; default: all listed)")
	if err := parse(fs, args, "repo", "out"); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := (&release.Repo{Dir: *repo}).WriteBundle(&buf, targets...); err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes)\n", *out, buf.Len())
	return nil
}

func verify(args []string, stdout, stderr io.Writer) error {
	fs := flags("verify", stderr)
	rootPath := fs.String("root", "", "the root file built into posd, e.g. metadata/1.root.json (required)")
	src := fs.String("bundle", "", "bundle file, bundle directory or https:// URL (required)")
	model := fs.String("model", "", "the terminal's hardware model (required)")
	installed := fs.String("installed", "0.0.0", "the terminal's installed version")
	at := fs.String("at", "", "verify as of this time, RFC 3339 (default: now)")
	if err := parse(fs, args, "root", "bundle", "model"); err != nil {
		return err
	}
	rootFile, err := os.ReadFile(*rootPath)
	if err != nil {
		return err
	}
	now := time.Now()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	state, err := os.MkdirTemp("", "fwtool-verify")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	fopts := &firmware.Options{TrustedRoot: rootFile, Model: *model, FactoryVersion: *installed, Now: func() time.Time { return now }}
	if strings.HasPrefix(*src, "https://") {
		fopts.AllowedURLs = []string{*src} // the one URL asked for
	}
	m, err := firmware.Open(state, fopts)
	if err != nil {
		return err
	}
	defer m.Close()
	source := *src
	if !strings.HasPrefix(source, "https://") {
		// A terminal takes bundles from its inbox only: verify a copy there, as it would.
		if source, err = copyIntoInbox(*src, filepath.Join(state, "inbox")); err != nil {
			return err
		}
	}
	res, err := m.Check(context.Background(), firmware.InstallRequest{Source: source, Who: "fwtool"})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: %s\n%s %d bytes sha256 %s\n", res.Message, res.Target, res.Length, res.SHA256)
	return nil
}

// copyIntoInbox copies the bundle file or directory src into inbox and returns the copy's
// path.
func copyIntoInbox(src, inbox string) (string, error) {
	dst := filepath.Join(inbox, filepath.Base(filepath.Clean(src)))
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		return "", fmt.Errorf("--bundle: %w", err)
	}
	return dst, nil
}

func show(args []string, stdout, stderr io.Writer) error {
	fs := flags("show", stderr)
	repo := fs.String("repo", "", "release repository directory (required)")
	if err := parse(fs, args, "repo"); err != nil {
		return err
	}
	r := &release.Repo{Dir: *repo}
	vs, err := r.RootVersions()
	if err != nil {
		return err
	}
	rt, _, err := r.Root()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "root versions %v; version %d expires %s\n", vs, rt.Version, rt.Expires.Format(time.RFC3339))
	names := make([]string, 0, len(rt.Roles))
	for n := range rt.Roles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		role := rt.Roles[n]
		var ids []string
		for _, id := range role.KeyIDs {
			ids = append(ids, id[:16])
		}
		fmt.Fprintf(stdout, "  %-9s threshold %d of %s\n", n, role.Threshold, strings.Join(ids, ", "))
	}
	for _, name := range []string{"timestamp.json", "snapshot.json", "targets.json"} {
		b, err := os.ReadFile(filepath.Join(*repo, "metadata", name))
		if err != nil {
			fmt.Fprintf(stdout, "%s: none\n", name)
			continue
		}
		env, err := firmware.ParseEnvelope(b)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		var h struct {
			Version int64                      `json:"version"`
			Expires time.Time                  `json:"expires"`
			Targets map[string]firmware.Target `json:"targets"`
		}
		if err := json.Unmarshal(env.Signed, &h); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(stdout, "%s: version %d, expires %s, %d signature(s)\n", name, h.Version, h.Expires.Format(time.RFC3339), len(env.Signatures))
		tn := make([]string, 0, len(h.Targets))
		for n := range h.Targets {
			tn = append(tn, n)
		}
		sort.Strings(tn)
		for _, n := range tn {
			t := h.Targets[n]
			fmt.Fprintf(stdout, "  %s: %s %s for %s, %d bytes\n", n, t.Custom.Kind, t.Custom.Version, strings.Join(t.Custom.Hardware, ","), t.Length)
		}
	}
	return nil
}
