package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// SalvageOptions configures [Salvage]. A nil *SalvageOptions means all defaults.
//
// A plain value: safe for concurrent use when not modified.
type SalvageOptions struct {
	// Who is recorded in the new file's audit chain as having made the copy.
	// Default "posd store salvage".
	Who string
	// Timeout is how long Salvage waits for a shared lock on the damaged file (a running
	// posd holds it exclusively) before it fails with ErrLocked. Zero or negative means 1s.
	Timeout time.Duration
	// FileMode is the permission of the new file. Zero means 0600.
	FileMode os.FileMode
	// Margin is how far the STAN counter or an ID sequence is moved ahead when the damaged
	// file does not tell its value for certain (its bucket unreadable, a meta page damaged),
	// so that no STAN or ID handed out before the damage is handed out again. Zero means 1000.
	Margin uint64
	// Now is the clock for the audit entry recording the salvage and for placeholder
	// records. Default time.Now.
	Now func() time.Time
	// Auditor and AuditKeyID MAC the links the salvage adds to the new file's audit chain
	// (see Options). Default nil: those links are unkeyed, and a keyed chain then does not
	// verify past them.
	Auditor    Auditor
	AuditKeyID string
}

// SalvageReport is what [Salvage] copied and what it could not. It holds no card data:
// records and items carry masked PANs only, and sealed data is neither opened nor shown.
//
// A plain value: safe for concurrent use when not modified.
type SalvageReport struct {
	Source, Dest string
	SourceSize   int64
	SourceSHA256 string // hex SHA-256 of the damaged file as it was read
	Commit       uint64 // the bbolt transaction whose state was copied
	// Journal records copied, and how many of them have no outcome (posd records those
	// outcome-unknown at its next start and reverses them).
	Records, Open int
	// Placeholders counts journal records that were lost and rebuilt from the queue items
	// that settle them, so that those items can still be sent and acknowledged.
	Placeholders int
	// Queue items copied, by kind; Parked counts parked items of both kinds.
	Reversals, Advices, Parked int
	// AuditEntries counts the audit entries copied, not counting the one that records the
	// salvage.
	AuditEntries int
	// AuditLinks counts every link of the audit chain copied (the chain links every journal
	// and queue write); Resealed the links the copy added for records and items whose value
	// no copied link names (lost, rebuilt as placeholders or open, or written after a break
	// in the chain): the new file's chain verifies, and says from where it was re-sealed.
	AuditLinks, Resealed int
	// STAN is the new file's STAN counter: the next STAN handed out is the one after it.
	STAN uint32
	// Lost lists what could not be copied or may be missing, each with what to do.
	Lost []Problem
	// Notes lists what was copied with a change (a PAN re-masked, an ID moved ahead).
	Notes []Problem
	// Check is [Store.Check] of the new file. It lists every parked item as a problem, as
	// it does for any store.
	Check Report
}

// Complete reports whether everything was copied and the new file passed its check, the
// parked items that Check lists aside.
func (r SalvageReport) Complete() bool {
	return len(r.Lost) == 0 && len(r.Check.Problems) == r.Check.Parked
}

// Salvage copies everything readable of the store at src, which may be damaged, into a new
// store at dst. src is only read: it is opened read-only, under a shared lock (a running
// posd holds the file exclusively, and Salvage then fails with [ErrLocked] after
// opts.Timeout), and its pages are read and checked one by one, so that a damaged page is
// reported with the keys it held rather than stopping the copy; nothing in src panics
// Salvage. dst must not exist or be empty.
//
// dst gets, with the same IDs: every journal record that decodes, the open index and the pan
// index rebuilt from them, every queued reversal and advice that decodes (sealed card data
// copied byte for byte, never opened: Salvage needs no Sealer), the counters, and the audit
// chain up to its first damaged entry, followed by an entry recording the salvage (who, from
// what, what was copied and what was lost). The records of src's write-ahead log (src-wal)
// not yet folded into src are replayed into dst; the log is only read. The sequences of transaction and queue IDs and the STAN counter
// continue after the highest value src shows, moved ahead by opts.Margin where src does not
// tell it for certain, so that nothing is handed out twice. A queued item whose journal
// record is lost gets a placeholder record (kind "salvaged") so that it can still be sent and
// acknowledged.
//
// The report lists what was copied and everything lost or unreadable by its key, with what
// to do; [SalvageReport.Complete] tells whether anything was. dst is then checked with
// [Store.Check]. On error dst is not left behind: the error says why nothing was copied (src
// locked, not a bbolt file or both of its meta pages damaged, not a posd store, dst not
// empty).
func Salvage(ctx context.Context, src, dst string, opts *SalvageOptions) (SalvageReport, error) {
	var o SalvageOptions
	if opts != nil {
		o = *opts
	}
	if o.Who == "" {
		o.Who = "posd store salvage"
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.FileMode == 0 {
		o.FileMode = 0o600
	}
	if o.Margin == 0 {
		o.Margin = 1000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	rep := SalvageReport{Source: src, Dest: dst}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("store: salvage: %w", err)
	}
	if src == "" || dst == "" {
		return rep, fmt.Errorf("store: salvage: %w: both the damaged file and the new file must be named", ErrInvalid)
	}
	if err := salvageCheckDest(dst); err != nil {
		return rep, err
	}
	st, err := salvageRead(ctx, src, o.Timeout, &rep)
	if err != nil {
		return rep, err
	}
	// The write-ahead log beside the bbolt file: what it holds that was not yet folded into
	// the bbolt file is replayed into st here, before the copy is planned.
	if err := salvageWAL(ctx, src+logSuffix, st, &rep); err != nil {
		return rep, err
	}
	plan := st.plan(o, &rep)
	if err := salvageWrite(ctx, dst, plan, o, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// salvageCheckDest refuses a destination that exists and is not empty (or has a write-ahead
// log that is not empty).
func salvageCheckDest(dst string) error {
	for _, p := range []string{dst, dst + logSuffix} {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("store: salvage: %w", err)
		case fi.IsDir():
			return fmt.Errorf("store: salvage: %s is a directory: %w: name the new file", p, ErrInvalid)
		case fi.Size() > 0:
			return fmt.Errorf("store: salvage: %s exists and is not empty: %w: the copy goes to a new file; name one that does not exist", p, ErrInvalid)
		}
	}
	return nil
}

// salvageBuckets are the buckets Salvage knows: it copies their contents (the pan index is
// rebuilt from the records).
var salvageBuckets = append([][]byte{bucketMeta}, dataBuckets...) // a new bucket in dataBuckets is salvaged too
