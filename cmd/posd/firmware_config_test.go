package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// firmwareConfig is goodConfig with a firmware section.
func firmwareConfig(t *testing.T, section string) string {
	t.Helper()
	if !strings.Contains(goodConfig, `"version": 1,`) {
		t.Fatal("goodConfig has no version line")
	}
	return strings.Replace(goodConfig, `"version": 1,`, `"version": 1, "firmware": {`+section+`},`, 1)
}

func TestFirmwareConfigSources(t *testing.T) {
	state := t.TempDir()
	c, err := ParseConfig([]byte(firmwareConfig(t, fmt.Sprintf(`"model": "POSD-A7", "state_dir": %q`, state))))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Firmware
	if f.Inbox != filepath.Join(state, "inbox") || len(f.AllowedURLs) != 0 || time.Duration(f.DownloadTimeout) != 10*time.Minute || f.MinRateBytes != 4096 {
		t.Errorf("defaults: %+v", f)
	}

	inbox := t.TempDir()
	c, err = ParseConfig([]byte(firmwareConfig(t, fmt.Sprintf(`"model": "POSD-A7", "inbox": %q, "allowed_urls": ["https://fw.example/posd/"], "download_timeout": "2m", "min_rate_bytes": 100`, inbox))))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Firmware; f.Inbox != inbox || f.AllowedURLs[0] != "https://fw.example/posd/" || time.Duration(f.DownloadTimeout) != 2*time.Minute || f.MinRateBytes != 100 {
		t.Errorf("set: %+v", f)
	}

	worldWritable := t.TempDir()
	if err := os.Chmod(worldWritable, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct{ section, key, want string }{
		{fmt.Sprintf(`"model": "M", "inbox": %q`, worldWritable), "firmware.inbox", "writable by every user"},
		{fmt.Sprintf(`"model": "M", "inbox": %q`, filepath.Join(inbox, "missing")), "firmware.inbox", "must be an existing directory"},
		{fmt.Sprintf(`"model": "M", "inbox": %q`, file), "firmware.inbox", "not a directory"},
		{`"model": "M", "inbox": "relative/inbox"`, "firmware.inbox", "not an absolute path"},
		{`"model": "M", "allowed_urls": ["http://fw.example/"]`, "firmware.allowed_urls[0]", "not an https://host/path/ prefix"},
		{`"model": "M", "allowed_urls": ["https://fw.example/", "https://u:p@fw.example/"]`, "firmware.allowed_urls[1]", "not an https://host/path/ prefix"},
		{`"model": "M", "allowed_urls": ["https://fw.example/a/../b"]`, "firmware.allowed_urls[0]", "not an https://host/path/ prefix"},
		{`"model": "M", "download_timeout": "25h"`, "firmware.download_timeout", "at most 24h"},
		{`"model": "M", "min_rate_bytes": -1`, "firmware.min_rate_bytes", "-1 is out of range"},
	} {
		_, err := ParseConfig([]byte(firmwareConfig(t, tc.section)))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s: %s", tc.section, err, tc.key, tc.want)
		}
	}
}
