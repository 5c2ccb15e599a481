package main

import (
	"context"
	"time"

	"github.com/posd-dev/posd/store"
)

// archive moves closed batches older than store.keep out of the live file into the
// archive (store.Store.Archive) and logs what it did. A failure is logged, not fatal:
// the records stay in the live file and the next run tries again.
func (d *daemon) archive(ctx context.Context) {
	rep, err := d.st.Archive(ctx, store.ArchiveOptions{Dir: d.cfg.Store.ArchiveDir, Keep: time.Duration(d.cfg.Store.Keep)})
	if err != nil {
		d.log.Error("archiving closed batches failed; their records stay in the live file", "dir", d.cfg.Store.ArchiveDir, "reason", err)
		return
	}
	if len(rep.Held) > 0 {
		d.log.Warn("closed batches kept in the live file: a record of theirs has a queued reversal or advice", "batches", rep.Held)
	}
	if rep.Records > 0 || rep.Reused > 0 {
		d.log.Info("archived closed batches", "batches", rep.Batches, "records", rep.Records, "audit_links", rep.Links, "file", rep.File, "lines_reused", rep.Reused)
	}
}

// archiveLoop runs archive every interval until ctx ends.
func (d *daemon) archiveLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.archive(ctx)
		}
	}
}
