package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"time"

	"github.com/posd-dev/posd/store"
)

// Exit codes of posd store salvage.
const (
	salvageExitComplete = 0 // everything was copied
	salvageExitError    = 1 // nothing was copied (the error says why); no new file
	salvageExitUsage    = 2
	salvageExitLost     = 3 // the new file was written; something was lost or may be missing
)

const storeUsage = `usage:
  posd store check --path FILE [--archive DIR]  check a journal file while posd is stopped, and
                                                the archive files in DIR against it
  posd store compact --path FILE                rewrite a journal file without its free pages
                                                (posd stopped; posd also does it at start when
                                                more than half of the file is free)
  posd store salvage --path FILE --out NEWFILE  copy what is readable of a damaged journal
                                                file into a new one; FILE is only read
`

// cmdStoreSalvage copies everything readable of a damaged store into a new file (see
// store.Salvage), prints what was copied and what was lost, and tells the operator what to
// do next. It returns the exit code: 0 everything copied, 3 something lost or may be
// missing (listed), 1 nothing copied (an error), 2 usage.
func cmdStoreSalvage(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("posd store salvage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "the damaged journal file (store.path in the config); it is only read")
	out := fs.String("out", "", "the new file to write; it must not exist")
	if err := fs.Parse(args); err != nil || *path == "" || *out == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, storeUsage)
		return salvageExitUsage
	}
	who := "posd store salvage"
	if u, err := user.Current(); err == nil && u.Username != "" {
		who = u.Username + " (posd store salvage)"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := store.Salvage(ctx, *path, *out, &store.SalvageOptions{Who: who})
	if err != nil {
		fmt.Fprintf(stderr, "posd: %v\n", err)
		return salvageExitError
	}
	printSalvage(stdout, rep)
	if rep.Complete() {
		return salvageExitComplete
	}
	return salvageExitLost
}

// printSalvage writes the salvage report for an operator. It holds no card data: records
// and items carry masked PANs only.
func printSalvage(w io.Writer, rep store.SalvageReport) {
	fmt.Fprintf(w, "posd store salvage: read %s (%d bytes, sha256 %s, bbolt commit %d); it was not changed\n", rep.Source, rep.SourceSize, rep.SourceSHA256, rep.Commit)
	fmt.Fprintf(w, "wrote %s:\n", rep.Dest)
	fmt.Fprintf(w, "  journal:     %d records copied (%d open)", rep.Records, rep.Open)
	if rep.Placeholders > 0 {
		fmt.Fprintf(w, ", %d placeholder record(s) for lost ones", rep.Placeholders)
	}
	fmt.Fprintf(w, "\n  queue:       %d reversals and %d advices copied (%d parked)\n", rep.Reversals, rep.Advices, rep.Parked)
	fmt.Fprintf(w, "  audit chain: %d entries copied, and one recording this salvage\n", rep.AuditEntries)
	fmt.Fprintf(w, "  STAN:        the counter is at %d\n", rep.STAN)
	for _, p := range rep.Notes {
		fmt.Fprintf(w, "NOTE: %s\n  what to do: %s\n", p.What, p.Do)
	}
	for _, p := range rep.Lost {
		fmt.Fprintf(w, "LOST: %s\n  what to do: %s\n", p.What, p.Do)
	}
	if len(rep.Check.Problems) == 0 {
		fmt.Fprintf(w, "store check of %s: ok\n", rep.Dest)
	}
	for _, p := range rep.Check.Problems {
		fmt.Fprintf(w, "store check of %s: %s\n  what to do: %s\n", rep.Dest, p.What, p.Do)
	}
	if rep.Complete() {
		fmt.Fprintln(w, "salvage: everything was copied")
	} else {
		fmt.Fprintf(w, "salvage: %d things were lost or may be missing (LOST above); everything readable was copied\n", len(rep.Lost)+len(rep.Check.Problems)-rep.Check.Parked)
	}
	src, dst := rep.Source, rep.Dest
	fmt.Fprintf(w, `next steps, with posd stopped:
  1. keep %[1]s (and %[1]s-wal, if it exists): do not delete them; they are the evidence,
     and what the copy lacks may still be read from them.
  2. move them aside and put the copy in their place, as store.path in posd's config
     (if store.path is another path, use that one):
       mv %[1]s %[1]s.damaged
       mv %[1]s-wal %[1]s.damaged-wal    (if it exists)
       mv %[2]s %[1]s
       mv %[2]s-wal %[1]s-wal
  3. posd store check --path %[1]s, then start posd`, src, dst)
	if rep.Open > 0 {
		fmt.Fprintf(w, ": it records the %d open transactions outcome-unknown and reverses them", rep.Open)
	}
	fmt.Fprintln(w)
	if !rep.Complete() {
		fmt.Fprintln(w, "  4. settle with the acquirer what is listed as LOST above.")
	}
}

// checkArchive verifies the archive files in dir against the open store and prints a line
// of counts; it returns the problems found.
func checkArchive(st *store.Store, dir string, w io.Writer) ([]store.Problem, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("archive directory %s: not a directory (%v)", dir, err)
	}
	c, err := st.VerifyArchive(context.Background(), dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "archive %s: %d file(s), %d lines: %d records, %d batch closes, %d audit links", dir, c.Files, c.Lines, c.Records, c.Batches, c.Links)
	if c.Uncommitted > 0 {
		fmt.Fprintf(w, "; %d line(s) written by an archive run that did not finish (posd commits them at its next run)", c.Uncommitted)
	}
	fmt.Fprintln(w)
	return c.Problems, nil
}

// cmdStoreCompact rewrites a stopped posd's journal file without its free pages.
func cmdStoreCompact(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("posd store compact", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "the journal file (store.path in the config); posd must be stopped")
	if err := fs.Parse(args); err != nil || *path == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, storeUsage)
		return errUsage
	}
	rep, err := store.Compact(*path, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %s: %d bytes -> %d bytes in %v\n", *path, rep.Before, rep.After, rep.Took.Round(time.Millisecond))
	return nil
}
