// Package store is posd's durable state: the write-ahead journal of every
// card transaction and the counters that must survive a restart (the STAN).
// It is a narrow domain API over a bbolt file (go.etcd.io/bbolt) and its
// write-ahead log; callers never see a bbolt transaction.
//
// # Basics
//
// Open the file once per process with [Open] and share the *Store; it is
// safe for concurrent use. Every method that writes has made the write
// durable before it returns, so a value returned by [Store.NextSTAN] or
// [Store.Begin] is never handed out again after a crash, and an outcome
// passed to [Store.Finish] is on disk once Finish returns.
//
// # Durability
//
// A bbolt commit syncs the disk twice (the data pages, then the meta page),
// and a sale writes twice (intent, outcome): four syncs on the till's path.
// So the writes a sale makes ([Store.Begin], [Store.BeginWithSTAN],
// [Store.Finish], [Store.FinishAndQueue], [Store.NextSTAN]) are appended to a
// write-ahead log beside the file (its path + "-wal", 1 MiB, preallocated so
// that a sync writes data only) with one fdatasync each, and folded into the
// bbolt file later, many per commit: once the writes pause for 20ms
// ([Options.FoldDelay]; sales back to back pay no commit between them), when
// the log holds 512 records or half its size (in the background), when it
// fills, and before any read or any other write, so that reads see every write made before them and the file sees
// the writes in the order they were made. A fold records the last log record
// it took in the file, in the same commit; [Open] folds whatever a crashed
// process left in the log past that mark. Log records carry a CRC-32C and a
// sequence number, so a torn last write is ignored (it was never
// acknowledged) and so are the old bytes of folded records.
//
// The log belongs to its file: it carries the file's random id, and a log
// beside a different file is refused ([ErrLayout]) rather than replayed.
// Keep the two files together: back them up, move or salvage them as a pair.
//
// A sale is journaled in two steps. [Store.Begin] records the intent before
// anything is sent to the acquirer and returns a [TxnID]; [Store.Finish]
// records the outcome. After a crash, [Store.Unfinished] lists the intents
// that have no outcome: for each, the request may or may not have reached
// the host, so the caller must treat it as outcome unknown (reverse it),
// never resend it.
//
// Records are keyed by sequence numbers, never by a PAN, and hold only a
// masked PAN: [Store.Begin] refuses an intent whose MaskedPAN looks unmasked.
// Values are versioned JSON ("v":1) so that a later release can read them.
//
// # Audit chain
//
// Every write to the journal and the queue is linked into a chain of MACs under
// the audit key ([Options.Auditor]): a link names what it wrote (a record or
// item) with the SHA-256 of its new value, the previous link's MAC, and its own
// MAC. A sale's writes, an operator action and an enqueue add one link per
// record or item. The store-and-forward drain adds one link per window commit:
// [Store.MarkSending] one naming every item it marked, [Store.Settle] one
// naming every item it settled (acknowledged ones as removed) and every journal
// record it noted the acknowledgement on. [Store.VerifyAudit] (posd audit
// verify) treats each name in such a link as it treats a link of its own, so
// an edited, deleted, swapped or revived record or item is found at the link
// that last named it.
//
// # Caveats
//
//   - One process per file. Open takes an exclusive lock on the file and
//     waits at most [Options.Timeout] for it, then fails with [ErrLocked].
//     The lock belongs to the open file, so a second Open of the same path in
//     the same process fails too.
//   - The file never shrinks. bbolt reuses freed pages but does not give
//     them back to the file system; long-running read transactions make the
//     file grow. The store holds no read transaction across calls: Records
//     reads in batches and calls fn outside any transaction.
//   - There is one writer at a time, and writes queue: a log write is one
//     fdatasync (about a tenth of a millisecond on posd's development
//     machine), any other write a bbolt commit with two.
//   - When the file is full (its size cap or the disk), a fold commits what
//     fits and leaves the rest in the log; new transactions then fail with
//     [ErrFull] until a fold succeeds, outcomes of open ones are still
//     recorded in the log while it has room, and reads see the file without
//     what is left in the log.
//   - bbolt cannot be interrupted. A context is checked before a write
//     starts; once a commit has begun it runs to the end.
//   - bbolt trusts the pages it reads and panics on some damage. [Open] checks,
//     safely, the pages start-up reads (the freelist, and the buckets of what is
//     open: the queue, the open records, the counters, the batches), so that
//     start-up costs what is open, not the size of the file: a damaged page
//     there is refused at Open with [ErrCorrupt], the file unchanged. A damaged
//     page deeper in history (a finished record, an index, an old audit link) is
//     found when it is read, as an error wrapping ErrCorrupt instead of bbolt's
//     panic, and by [Store.Check] (posd store check), which walks every page.
//     [Salvage] (posd store salvage) copies everything readable of a damaged
//     file, and its log, into a new file and lists what was lost.
//   - A file of another layout (not a posd store, or a store written by a
//     release with a different layout version) is refused with [ErrLayout]
//     and left as it was. bbolt's own check of a file is
//     `bbolt check FILE` (go.etcd.io/bbolt/cmd/bbolt).
package store
