package main

// GET /v1/status: what a technician needs to know of a running posd, and an overall state
// (ok, degraded, down) with the reasons in words.

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
)

// Overall states of GET /v1/status.
const (
	stateOK       = "ok"       // everything works
	stateDegraded = "degraded" // sales work, but something needs a look
	stateDown     = "down"     // sales cannot work as they should
)

// Thresholds of the overall state.
const (
	// linkDownAfter: an acquirer link down this long makes posd down; shorter, degraded
	// (a reconnect after a dropped connection takes seconds).
	linkDownAfter = 2 * time.Minute
	// queueOldAfter: a queued message older than this makes posd degraded: the acquirer
	// is not taking the reversals and advices it owes.
	queueOldAfter = 10 * time.Minute
	// storeFullRatio: a store file this close to its cap makes posd degraded.
	storeFullRatio = 0.9
)

// statusReport is the answer of GET /v1/status (and what posctl status prints). It holds
// no card data beyond masked PANs (none, today). A plain value.
type statusReport struct {
	Status     string    `json:"status"`  // ok, degraded, down
	Reasons    []string  `json:"reasons"` // why not ok, most serious first; empty when ok
	Time       time.Time `json:"time"`
	POIID      string    `json:"poiid"`
	TerminalID string    `json:"terminal_id"`
	// Acquirer is the link to the active acquirer host (the one the next transaction
	// goes to); AcquirerHosts every configured host's, primary first, when there are
	// backups.
	Acquirer      iso8583.LinkStatus   `json:"acquirer"`
	AcquirerHosts []iso8583.HostStatus `json:"acquirer_hosts,omitempty"`
	// Devices are the PIN pad and, when configured, the serial card reader.
	Devices   []terminal.DeviceStatus `json:"devices"`
	Store     storeStatus             `json:"store"`
	Queue     queueStatus             `json:"queue"`
	OpenBatch uint64                  `json:"open_batch"`
	// LastClose is the last batch close the host accepted; nil when none.
	LastClose *store.Batch `json:"last_close"`
	// Closing is a batch close begun and not ended (posd repeats it); nil when none.
	Closing *store.Batch `json:"closing,omitempty"`
	// Firmware is the firmware slots' state; nil when firmware updates are off.
	Firmware  *firmware.Status `json:"firmware,omitempty"`
	AuditHead *auditHead       `json:"audit_head,omitempty"`
	// WorkingKeys is each working key's state (posctl keys status); nil when
	// acquirer.key_change is not set.
	WorkingKeys map[iso8583.KeyKind]keyState `json:"working_keys,omitempty"`
}

type auditHead struct {
	Seq uint64 `json:"seq"`
	MAC string `json:"mac"`
}

// storeStatus is the journal file.
type storeStatus struct {
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"` // the bbolt file, without its write-ahead log
	// CapBytes is store.max_size_mib in bytes; 0: no cap.
	CapBytes int64  `json:"cap_bytes"`
	Error    string `json:"error,omitempty"`
}

// queueStatus is the store-and-forward queue.
type queueStatus struct {
	Depth     int `json:"depth"` // every queued message, pending and parked
	Pending   int `json:"pending"`
	Parked    int `json:"parked"`
	Reversals int `json:"reversals"`
	Advices   int `json:"advices"`
	// Oldest is when the oldest queued message was queued; zero when the queue is empty.
	Oldest           time.Time `json:"oldest,omitzero"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	Error            string    `json:"error,omitempty"`
}

// statusSource gathers a statusReport from the running parts. It is safe for concurrent
// use: each part it reads is.
type statusSource struct {
	cfg     *Config
	st      *store.Store
	acq     *iso8583.Failover
	devices func() []terminal.DeviceStatus
	fw      *firmware.Manager                   // nil: firmware updates off
	keys    func() map[iso8583.KeyKind]keyState // nil: no working-key changes
	now     func() time.Time                    // tests move the clock to see a link down for long
}

// report reads every part now. It takes the store's read transactions, never its write
// lock for longer than a fold of its log.
func (s *statusSource) report(ctx context.Context) statusReport {
	now := s.now()
	r := statusReport{Time: now, POIID: s.cfg.Terminal.POIID, TerminalID: s.cfg.Terminal.ID,
		Acquirer: s.acq.LinkStatus(), Devices: s.devices(), OpenBatch: s.st.OpenBatch()}
	if len(s.acq.Addrs()) > 1 {
		r.AcquirerHosts = s.acq.HostStatuses()
	}
	r.Store = storeStatus{Path: s.st.Path(), CapBytes: int64(s.cfg.Store.MaxSizeMiB) << 20}
	if fi, err := os.Stat(s.st.Path()); err != nil {
		r.Store.Error = err.Error()
	} else {
		r.Store.SizeBytes = fi.Size()
	}
	r.Queue = readQueue(ctx, s.st, now)
	if bs, err := s.st.Batches(ctx); err == nil {
		for i := len(bs) - 1; i >= 0; i-- {
			b := bs[i]
			if b.State == store.BatchClosed && r.LastClose == nil {
				r.LastClose = &b
			}
			if b.State == store.BatchClosing && r.Closing == nil {
				r.Closing = &b
			}
		}
	}
	if s.fw != nil {
		if fs, err := s.fw.Status(ctx); err == nil {
			r.Firmware = &fs
		}
	}
	seq, mac := s.st.AuditHead()
	r.AuditHead = &auditHead{seq, mac}
	if s.keys != nil {
		r.WorkingKeys = s.keys()
	}
	r.Status, r.Reasons = assess(r, now)
	return r
}

func readQueue(ctx context.Context, st *store.Store, now time.Time) queueStatus {
	var q queueStatus
	items, err := st.List(ctx)
	if err != nil {
		q.Error = err.Error()
		return q
	}
	for _, it := range items {
		q.Depth++
		if it.State == store.QueueParked {
			q.Parked++
		} else {
			q.Pending++
		}
		switch it.Kind {
		case store.KindReversal:
			q.Reversals++
		case store.KindAdvice:
			q.Advices++
		}
		if q.Oldest.IsZero() || it.Created.Before(q.Oldest) {
			q.Oldest = it.Created
		}
	}
	if !q.Oldest.IsZero() {
		q.OldestAgeSeconds = max(0, now.Sub(q.Oldest).Seconds())
	}
	return q
}

// assess turns a report into the overall state and its reasons, most serious first.
func assess(r statusReport, now time.Time) (string, []string) {
	type reason struct {
		down bool
		text string
	}
	var rs []reason
	add := func(down bool, format string, a ...any) { rs = append(rs, reason{down, fmt.Sprintf(format, a...)}) }

	a := r.Acquirer
	if !a.Connected && !a.Since.IsZero() {
		downFor := now.Sub(a.Since).Round(time.Second)
		why := ""
		if a.LastError != "" {
			why = " (" + a.LastError + ")"
		}
		add(downFor >= linkDownAfter, "acquirer %s unreachable for %s%s", a.Addr, downFor, why)
	} else if a.Connected && a.LastEchoError != "" {
		add(false, "acquirer %s did not answer the last echo at %s (%s)", a.Addr, a.LastEcho.Format(time.RFC3339), a.LastEchoError)
	}
	for _, d := range r.Devices {
		name := d.Name
		if name == "pinpad" {
			name = "pad"
		}
		why := ""
		if d.LastError != "" {
			why = " (" + d.LastError + ")"
		}
		switch d.State {
		case terminal.DeviceFailed:
			add(true, "%s not responding for %s%s", name, now.Sub(d.Since).Round(time.Second), why)
		case terminal.DeviceReconnecting:
			add(false, "%s reconnecting for %s%s", name, now.Sub(d.Since).Round(time.Second), why)
		case terminal.DeviceClosed:
			add(true, "%s closed", name)
		}
	}
	q := r.Queue
	if q.Error != "" {
		add(true, "store-and-forward queue unreadable: %s", q.Error)
	}
	if q.Parked > 0 {
		add(false, "%d parked %s (posctl saf list)", q.Parked, plural(q.Parked, "message", "messages"))
	}
	if !q.Oldest.IsZero() && now.Sub(q.Oldest) >= queueOldAfter {
		add(false, "oldest queued message waiting for %s", now.Sub(q.Oldest).Round(time.Second))
	}
	s := r.Store
	if s.Error != "" {
		add(true, "store file: %s", s.Error)
	} else if s.CapBytes > 0 && float64(s.SizeBytes) >= storeFullRatio*float64(s.CapBytes) {
		add(false, "store %d%% of its cap (%d of %d MiB)", s.SizeBytes*100/s.CapBytes, s.SizeBytes>>20, s.CapBytes>>20)
	}
	for _, k := range slices.Sorted(maps.Keys(r.WorkingKeys)) {
		st := r.WorkingKeys[k]
		if st.Alert == "" {
			continue
		}
		if why, ok := strings.CutPrefix(st.Alert, unsavedAlert); ok {
			add(false, "%s working key %s in use since %s but not saved (%s): a restart would go back to the old key", k, st.ID, st.AlertAt.Format(time.RFC3339), why)
			continue
		}
		add(false, "%s working-key change failed at %s: %s; the old key (%s) is in use", k, st.AlertAt.Format(time.RFC3339), st.Alert, st.ID)
	}
	if r.Closing != nil {
		add(false, "batch %d close begun at %s and not ended", r.Closing.Number, r.Closing.Began.Format(time.RFC3339))
	}

	slices.SortStableFunc(rs, func(x, y reason) int {
		switch {
		case x.down && !y.down:
			return -1
		case !x.down && y.down:
			return 1
		}
		return 0
	})
	state, texts := stateOK, []string{}
	for _, r := range rs {
		if r.down {
			state = stateDown
		} else if state == stateOK {
			state = stateDegraded
		}
		texts = append(texts, r.text)
	}
	return state, texts
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
