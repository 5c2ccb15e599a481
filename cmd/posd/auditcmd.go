package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/store"
)

// auditKeyID is the id of the key (AES, MAC usage) that MACs the links of the store's audit
// chain, beside the data key in the same backend.
const auditKeyID = "audit"

// softAuditKey derives the soft backend's audit key from its data key file.
func softAuditKey(fileKey []byte) []byte {
	h := hmac.New(sha256.New, fileKey)
	h.Write([]byte("posd soft backend: audit key"))
	return h.Sum(nil)
}

// auditorFor returns the store's Auditor: the data backend, when it holds the audit key.
// Without one it says why at warning level and returns nil: the chain is then unkeyed, and
// anyone who can write the store file can rewrite it.
func auditorFor(ctx context.Context, m *hsm.Module, log *slog.Logger) store.Auditor {
	if m == nil {
		log.Warn("no data backend (hsm.data): the audit chain is unkeyed; anyone who can write the store file can rewrite it")
		return nil
	}
	if _, err := m.KeyInfo(ctx, auditKeyID); err != nil {
		log.Warn("no audit key: the audit chain is unkeyed; anyone who can write the store file can rewrite it; load an AES key with MAC usage as \"audit\" (posd key import)", "err", err)
		return nil
	}
	return m
}

const auditUsage = `usage:
  posd audit verify --path FILE [--config FILE] [--head SEQ:MAC]
      verify the audit chain of the journal file FILE while posd is stopped. With
      --config, the MACs are checked under the audit key of posd's hsm.data backend;
      without, only the chain's order and the records' values are. --head is a chain
      head printed earlier (posctl status, a batch report): a cut tail is found against
      it. Exit 0: the chain verifies; 1: it does not (the first broken link is named),
      or keyed links could not be checked.
`

// cmdAudit runs posd audit verify. It returns the exit code.
func cmdAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	fs := flag.NewFlagSet("posd audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "the journal file (store.path in the config)")
	cfgPath := fs.String("config", "", "posd's config: the audit key is taken from its hsm.data backend")
	head := fs.String("head", "", "a chain head printed earlier, SEQ:MAC")
	if err := fs.Parse(args[1:]); err != nil || *path == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	var printed []store.ChainHead
	if *head != "" {
		h, err := store.ParseChainHead(*head)
		if err != nil {
			fmt.Fprintf(stderr, "posd: --head: %v\n", err)
			return 2
		}
		printed = append(printed, h)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := os.Stat(*path); err != nil {
		fmt.Fprintf(stderr, "posd: audit verify: %v\n", err)
		return 1
	}
	var auditor store.Auditor
	if *cfgPath != "" {
		cfg, err := LoadConfig(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "posd: %v\n", err)
			return 1
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		m, closeFn, err := openDataModule(ctx, cfg.HSM.Data, log)
		if err != nil {
			fmt.Fprintf(stderr, "posd: audit verify: %v\n", err)
			return 1
		}
		defer closeFn()
		auditor = auditorFor(ctx, m, log)
	}
	st, err := store.Open(*path, &store.Options{Auditor: auditor, AuditKeyID: auditKeyID})
	if err != nil {
		fmt.Fprintf(stderr, "posd: audit verify: %v\n", err)
		return 1
	}
	defer st.Close()
	rep, err := st.VerifyAudit(ctx, printed...)
	if err != nil {
		fmt.Fprintf(stderr, "posd: audit verify: %v\n", err)
		return 1
	}
	printAuditReport(stdout, rep)
	if !rep.OK() || rep.Unchecked > 0 {
		return 1
	}
	return 0
}

// printAuditReport writes rep for an operator.
func printAuditReport(w io.Writer, rep store.AuditReport) {
	fmt.Fprintf(w, "audit chain: %d links (%d keyed, %d unkeyed, %d of an older release's unkeyed chain); head %s; %s\n",
		rep.Links, rep.Keyed, rep.Unkeyed, rep.Legacy, rep.Head, rep.Mode())
	fmt.Fprintf(w, "checked against it: %d journal records, %d queued items", rep.Records, rep.Items)
	if rep.PreChain > 0 {
		fmt.Fprintf(w, " (%d from before the chain began, not covered)", rep.PreChain)
	}
	fmt.Fprintln(w)
	if rep.Unchecked > 0 {
		fmt.Fprintf(w, "NOT CHECKED: the MACs of %d keyed links: no audit key; run with --config posd's config\n", rep.Unchecked)
	}
	if rep.Broken != nil {
		fmt.Fprintf(w, "BROKEN at link %d: %s (%d problem(s) in all)\n", rep.Broken.Seq, rep.Broken.What, rep.Problems)
		fmt.Fprintln(w, "what to do: keep the file as evidence (stop posd, copy the file and its -wal); report it as a security incident")
		return
	}
	fmt.Fprintln(w, "audit verify: ok")
}
