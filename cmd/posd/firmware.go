package main

import (
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/store"
)

// posdVersion is this posd's firmware version: installs must be higher.
const posdVersion = "0.1.0"

// embeddedRoot is the firmware root metadata built into posd: the keys that may sign
// firmware. The file in the repository is a development root whose private keys were
// discarded when it was made, so nothing can be signed for it; release builds (and the
// tests) build in their own root with
//
//	go build -ldflags "-X main.firmwareRootB64=$(base64 -w0 1.root.json)" ./cmd/posd
//
//go:embed firmware_root.json
var embeddedRoot []byte

// firmwareRootB64, set at link time, replaces embeddedRoot.
var firmwareRootB64 string

func trustedRoot() ([]byte, error) {
	if firmwareRootB64 == "" {
		return embeddedRoot, nil
	}
	b, err := base64.StdEncoding.DecodeString(firmwareRootB64)
	if err != nil {
		return nil, fmt.Errorf("firmware: the root built into this posd is not valid base64: %w", err)
	}
	return b, nil
}

// openFirmware opens the firmware manager and counts this start (BootAttempt), before
// anything else. It returns nil when updates are off (firmware.model unset). wake is
// signalled for each new event, so that the daemon copies it to the journal.
func openFirmware(ctx context.Context, cfg FirmwareConfig, log *slog.Logger, wake chan<- struct{}) (*firmware.Manager, error) {
	if cfg.Model == "" {
		return nil, nil
	}
	root, err := trustedRoot()
	if err != nil {
		return nil, err
	}
	fw, err := firmware.Open(cfg.StateDir, &firmware.Options{
		TrustedRoot: root, Model: cfg.Model, FactoryVersion: posdVersion, MaxBootAttempts: cfg.MaxBootAttempts,
		Inbox: cfg.Inbox, AllowedURLs: cfg.AllowedURLs,
		DownloadTimeout: time.Duration(cfg.DownloadTimeout), MinRate: cfg.MinRateBytes,
		OnEvent: func(firmware.Event) {
			select {
			case wake <- struct{}{}:
			default:
			}
		},
	})
	if errors.Is(err, firmware.ErrInbox) {
		return nil, &ConfigError{"firmware.inbox", err.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	// posd's shutdown (ctx: SIGTERM, SIGINT) stops a firmware operation in progress at
	// once, so that a download does not hold the shutdown.
	context.AfterFunc(ctx, fw.Stop)
	boot, err := fw.BootAttempt(ctx)
	if err != nil {
		fw.Close()
		return nil, fmt.Errorf("firmware: %w", err)
	}
	log.Info("firmware slot", "slot", boot.Slot, "version", boot.Version, "attempt", boot.Attempt, "fallback", boot.Fallback, "reason", boot.Reason)
	return fw, nil
}

// copyFirmwareEvents appends to the journal's audit chain the firmware events it does not
// hold yet (it remembers the last copied event's number in the entry's detail, "#N").
func copyFirmwareEvents(ctx context.Context, fw *firmware.Manager, st *store.Store) error {
	log, err := st.AuditLog(ctx)
	if err != nil {
		return err
	}
	var last uint64
	for _, e := range log {
		if !strings.HasPrefix(e.Action, "firmware ") {
			continue
		}
		num, _, _ := strings.Cut(strings.TrimPrefix(e.Detail, "#"), " ")
		if n, err := strconv.ParseUint(num, 10, 64); err == nil && n > last {
			last = n
		}
	}
	events, err := fw.Events(ctx, last)
	for _, e := range events {
		detail := fmt.Sprintf("#%d ok=%t slot=%s version=%s from=%s: %s", e.Seq, e.OK, e.Slot, e.Version, e.From, e.Detail)
		if aerr := st.Audit(ctx, e.Who, "firmware "+e.Kind, detail); aerr != nil {
			return aerr
		}
	}
	return err
}

// Defaults of the firmware source keys.
const (
	defaultFirmwareDownloadTimeout = 10 * time.Minute
	defaultFirmwareMinRate         = 4096
)

// checkSources fills in and checks firmware.inbox, firmware.allowed_urls,
// firmware.download_timeout and firmware.min_rate_bytes (StateDir is set).
func (f *FirmwareConfig) checkSources() error {
	def := filepath.Join(f.StateDir, "inbox")
	if f.Inbox == "" {
		f.Inbox = def // posd makes it, mode 0700, when it opens the state directory
	}
	if !filepath.IsAbs(f.Inbox) {
		return &ConfigError{"firmware.inbox", fmt.Sprintf("%q is not an absolute path", f.Inbox)}
	}
	f.Inbox = filepath.Clean(f.Inbox)
	if f.Inbox != filepath.Clean(def) {
		fi, err := os.Stat(f.Inbox)
		switch {
		case err != nil:
			return &ConfigError{"firmware.inbox", fmt.Sprintf("%s must be an existing directory: %v", f.Inbox, err)}
		case !fi.IsDir():
			return &ConfigError{"firmware.inbox", fmt.Sprintf("%s is not a directory", f.Inbox)}
		case fi.Mode().Perm()&0o002 != 0:
			return &ConfigError{"firmware.inbox", fmt.Sprintf("%s is writable by every user (mode %04o): anyone could place a bundle there; chmod o-w it", f.Inbox, fi.Mode().Perm())}
		}
	}
	for i, s := range f.AllowedURLs {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || slices.Contains(strings.Split(u.Path, "/"), "..") || slices.Contains(strings.Split(u.Path, "/"), ".") {
			return &ConfigError{fmt.Sprintf("firmware.allowed_urls[%d]", i), fmt.Sprintf("%q is not an https://host/path/ prefix (no user, query or . and .. segments)", clipConfig(s))}
		}
	}
	switch d := time.Duration(f.DownloadTimeout); {
	case d == 0:
		f.DownloadTimeout = Duration(defaultFirmwareDownloadTimeout)
	case d > 24*time.Hour:
		return &ConfigError{"firmware.download_timeout", "must be at most 24h"}
	}
	switch {
	case f.MinRateBytes == 0:
		f.MinRateBytes = defaultFirmwareMinRate
	case f.MinRateBytes < 0:
		return &ConfigError{"firmware.min_rate_bytes", "must be a positive number of bytes per second"}
	}
	return nil
}

// clipConfig shortens a configured value quoted in an error.
func clipConfig(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
