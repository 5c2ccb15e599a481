// Package store is posd's durable state: the write-ahead journal of every
// card transaction and the counters that must survive a restart (the STAN).
// It is a narrow domain API over a single bbolt file (go.etcd.io/bbolt);
// callers never see a bbolt transaction.
//
// # Basics
//
// Open the file once per process with [Open] and share the *Store; it is
// safe for concurrent use. Every method that writes commits before it
// returns, and a bbolt commit fsyncs the data and then the meta page, so a
// value returned by [Store.NextSTAN] or [Store.Begin] is never handed out
// again after a crash, and an outcome passed to [Store.Finish] is on disk
// once Finish returns.
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
//   - Each write is a commit with fsyncs (about a third of a millisecond on
//     posd's hardware): there is one writer at a time, and writes queue.
//   - bbolt cannot be interrupted. A context is checked before a write
//     starts; once a commit has begun it runs to the end.
//   - A file of another layout (not a posd store, or a store written by a
//     release with a different layout version) is refused with [ErrLayout]
//     and left as it was. bbolt's own check of a file is
//     `bbolt check FILE` (go.etcd.io/bbolt/cmd/bbolt).
package store
