package main

import (
	"time"

	"github.com/posd-dev/posd/store"
)

// StoreConfig is the bbolt file.
type StoreConfig struct {
	Path string `json:"path"` // required
	// MaxSizeMiB caps the file, as a partition would; when it is reached new sales fail
	// with a clear reason and everything queued is kept. Default 0: no cap.
	MaxSizeMiB int `json:"max_size_mib"`
	// Keep is how long a closed batch stays in the live file after its close; older
	// closed batches are archived (see ArchiveDir). Default 30 days ("720h"); the newest
	// closed batch is always kept.
	Keep Duration `json:"keep"`
	// ArchiveDir is where archived batches go, one sealed file per month. Default: the
	// store file's directory + "/archive".
	ArchiveDir string `json:"archive_dir"`
}

// OfflineConfig is the offline approval policy. Money is in integer minor units.
type OfflineConfig struct {
	Enabled         bool     `json:"enabled"`           // default false: nothing is approved offline
	FloorLimitMinor *int64   `json:"floor_limit_minor"` // per sale; default 5000
	MaxCount        *int     `json:"max_count"`         // offline approvals waiting for the host; default 100
	MaxTotalMinor   *int64   `json:"max_total_minor"`   // their sum; default 50000
	MaxAge          Duration `json:"max_age"`           // of the oldest waiting; default 48h
}

// RefundConfig decides which refunds posd takes (nexo PaymentType "Refund", posctl
// refund; the supervisor role). Money is in integer minor units.
type RefundConfig struct {
	Enabled *bool `json:"enabled"` // default true; false refuses every refund
	// AllowUnhashed takes a linked refund of a sale journaled without a PAN hash (no
	// hsm.pan_hash_key then), whose card cannot be checked. Default false.
	AllowUnhashed bool `json:"allow_unhashed"`
	// Unlinked takes refunds that name no original sale. Default false; when true,
	// max_minor and daily_max_minor are required.
	Unlinked      bool  `json:"unlinked"`
	MaxMinor      int64 `json:"max_minor"`       // one unlinked refund; default 0 (required with unlinked)
	DailyMaxMinor int64 `json:"daily_max_minor"` // unlinked refunds of one local day; default 0 (required with unlinked)
	// AfterClose takes a linked refund of a sale whose batch is closed, where the
	// acquirer's rules allow it. Default false: refused (an unlinked refund is the way).
	AfterClose bool `json:"after_close"`
}

// SAFConfig tunes the store-and-forward of reversals and advices.
type SAFConfig struct {
	Window      int      `json:"window" min:"1"`       // messages in flight while draining; default 16
	MaxAttempts int      `json:"max_attempts" min:"1"` // sends before an item is parked with an alert; default 10
	MinBackoff  Duration `json:"min_backoff"`          // default 1s
	MaxBackoff  Duration `json:"max_backoff"`          // default 5m
}

// fill checks the store section and fills its defaults.
func (s *StoreConfig) fill() error {
	if s.Path == "" {
		return &ConfigError{"store.path", "required (the bbolt journal file)"}
	}
	if s.MaxSizeMiB < 0 {
		return &ConfigError{"store.max_size_mib", "must not be negative"}
	}
	switch {
	case s.Keep < 0:
		return &ConfigError{"store.keep", "must not be negative"}
	case s.Keep == 0:
		s.Keep = Duration(30 * 24 * time.Hour)
	}
	if s.ArchiveDir == "" {
		s.ArchiveDir = store.ArchiveDir(s.Path)
	}
	return nil
}

// fill checks the offline section and fills its defaults.
func (o *OfflineConfig) fill() error {
	def := int64(5000)
	if o.FloorLimitMinor == nil {
		o.FloorLimitMinor = &def
	}
	if o.MaxCount == nil {
		n := 100
		o.MaxCount = &n
	}
	if o.MaxTotalMinor == nil {
		t := int64(50000)
		o.MaxTotalMinor = &t
	}
	if o.MaxAge == 0 {
		o.MaxAge = Duration(48 * time.Hour)
	}
	switch {
	case *o.FloorLimitMinor < 0:
		return &ConfigError{"offline.floor_limit_minor", "must not be negative"}
	case *o.MaxCount < 0:
		return &ConfigError{"offline.max_count", "must not be negative"}
	case *o.MaxTotalMinor < 0:
		return &ConfigError{"offline.max_total_minor", "must not be negative"}
	}
	return nil
}

// fill checks the refund section and fills its defaults.
func (rf *RefundConfig) fill() error {
	if rf.Enabled == nil {
		on := true
		rf.Enabled = &on
	}
	switch {
	case rf.MaxMinor < 0:
		return &ConfigError{"refund.max_minor", "must not be negative"}
	case rf.DailyMaxMinor < 0:
		return &ConfigError{"refund.daily_max_minor", "must not be negative"}
	case rf.Unlinked && rf.MaxMinor == 0:
		return &ConfigError{"refund.max_minor", "required (above 0) when refund.unlinked is on"}
	case rf.Unlinked && rf.DailyMaxMinor == 0:
		return &ConfigError{"refund.daily_max_minor", "required (above 0) when refund.unlinked is on"}
	}
	return nil
}

// fill checks the saf section and fills its defaults.
func (f *SAFConfig) fill() error {
	if f.Window == 0 {
		f.Window = 16
	}
	if f.MaxAttempts == 0 {
		f.MaxAttempts = 10
	}
	if f.MinBackoff == 0 {
		f.MinBackoff = Duration(time.Second)
	}
	if f.MaxBackoff == 0 {
		f.MaxBackoff = Duration(5 * time.Minute)
	}
	switch {
	case f.Window < 1 || f.Window > 256:
		return &ConfigError{"saf.window", "must be 1 to 256"}
	case f.MaxAttempts < 1:
		return &ConfigError{"saf.max_attempts", "must be at least 1"}
	case f.MaxBackoff < f.MinBackoff:
		return &ConfigError{"saf.max_backoff", "must not be shorter than saf.min_backoff"}
	}
	return nil
}
