package main

// The daily automatic batch close (config close.auto_at).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/posd-dev/posd/terminal"
)

// CloseConfig configures the batch close.
type CloseConfig struct {
	// AutoAt is the local time ("HH:MM", 24-hour) at which posd closes the batch every
	// day. Default "": no automatic close (posctl close or the till's Reconciliation).
	AutoAt string `json:"auto_at"`
	// DrainWait is how long a close waits for queued reversals and advices to go out
	// before it fails, the batch staying open. Default 30s.
	DrainWait Duration `json:"drain_wait"`
	at        *clockTime
}

// clockTime is a time of day.
type clockTime struct{ hour, min int }

func (c *CloseConfig) fill() error {
	if c.AutoAt != "" {
		at, err := parseClock(c.AutoAt)
		if err != nil {
			return &ConfigError{"close.auto_at", err.Error()}
		}
		c.at = &at
	}
	if c.DrainWait == 0 {
		c.DrainWait = Duration(30 * time.Second)
	}
	return nil
}

// parseClock reads "HH:MM".
func parseClock(s string) (clockTime, error) {
	bad := fmt.Errorf("%q is not a time of day as HH:MM (00:00 to 23:59)", s)
	if len(s) != 5 || s[2] != ':' {
		return clockTime{}, bad
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 || s[0] == '+' || s[3] == '+' {
		return clockTime{}, bad
	}
	return clockTime{h, m}, nil
}

// next is the first time at or after now (local) that is at.
func (at clockTime) next(now time.Time) time.Time {
	t := time.Date(now.Year(), now.Month(), now.Day(), at.hour, at.min, 0, 0, now.Location())
	if t.Before(now) {
		t = time.Date(now.Year(), now.Month(), now.Day()+1, at.hour, at.min, 0, 0, now.Location())
	}
	return t
}

// Retry delays of the automatic close.
const (
	autoCloseBusyRetry = time.Minute     // a sale was running
	autoCloseRetry     = 5 * time.Minute // the close failed
)

// closer is what the automatic close runs: terminal.(*Terminal).Close.
type closer func(ctx context.Context, by string) (terminal.CloseReport, error)

// autoClose closes the batch once a day at at, until ctx ends: while a sale runs it tries
// again a minute later, and after a failure every five minutes, logging why, until the
// close succeeds.
func autoClose(ctx context.Context, at clockTime, close closer, now func() time.Time, log *slog.Logger) {
	for {
		wait := at.next(now()).Sub(now())
		log.Info("automatic batch close scheduled", "at", now().Add(wait).Format(time.RFC3339))
		if !sleepCtx(ctx, wait) {
			return
		}
		for {
			rep, err := close(ctx, "posd automatic close")
			if err == nil {
				log.Info("automatic batch close done", "batch", rep.Batch.Number, "response", rep.ResponseCode,
					"uploaded", rep.Uploaded, "differences", len(rep.Differences), "totals", rep.Totals.Summary(), "audit_seq", rep.AuditSeq)
				break
			}
			retry := autoCloseRetry
			if errors.Is(err, terminal.ErrBusy) {
				retry = autoCloseBusyRetry
			}
			log.Warn("automatic batch close failed; trying again", "reason", err, "retry_in", retry.String())
			if !sleepCtx(ctx, retry) {
				return
			}
		}
		// Past the close time of today: the next is tomorrow's.
		if !sleepCtx(ctx, time.Minute) {
			return
		}
	}
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
