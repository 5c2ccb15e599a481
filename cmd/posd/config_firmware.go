package main

// FirmwareConfig turns on signed firmware updates (posctl firmware).
type FirmwareConfig struct {
	// Model is this terminal's hardware model, which an image must list. Default "":
	// firmware updates are off.
	Model string `json:"model"`
	// StateDir holds the A/B slots, the trusted metadata and the event log. Default
	// /var/lib/posd/firmware.
	StateDir string `json:"state_dir"`
	// MaxBootAttempts is how many starts a new slot gets to pass posd's self-test before
	// the previous slot starts again. Default 3.
	MaxBootAttempts int `json:"max_boot_attempts" min:"1"`
	// Inbox is the only directory a bundle path given to the API ("source") may name: a
	// file in it (or a symlink to one in it), or a bundle directory in it; FIFOs, devices,
	// sockets and symlinks out of it are refused. Default STATE_DIR/inbox, which posd
	// creates (mode 0700); another directory must exist. Either must not be writable by
	// every user: posd refuses to start otherwise.
	Inbox string `json:"inbox"`
	// AllowedURLs are the https:// URL prefixes ("https://host[:port]/path/") a source URL
	// must start with; redirects must stay on them. Default none: URL sources are refused.
	AllowedURLs []string `json:"allowed_urls"`
	// DownloadTimeout caps a whole download. Default 10m; at most 24h.
	DownloadTimeout Duration `json:"download_timeout"`
	// MinRateBytes is the least a download must bring, in bytes per second, over every
	// 10 s window after the first one; a slower (stalled) download is aborted and the
	// firmware operation slot is free at once. Default 4096.
	MinRateBytes int64 `json:"min_rate_bytes" min:"1"`
}

// fill checks the firmware section and fills its defaults; it is off without a model.
func (f *FirmwareConfig) fill() error {
	if f.Model == "" {
		return nil
	}
	if f.StateDir == "" {
		f.StateDir = "/var/lib/posd/firmware"
	}
	if f.MaxBootAttempts == 0 {
		f.MaxBootAttempts = 3
	}
	if f.MaxBootAttempts < 1 || f.MaxBootAttempts > 100 {
		return &ConfigError{"firmware.max_boot_attempts", "must be 1 to 100"}
	}
	if err := f.checkSources(); err != nil {
		return err
	}
	return nil
}
