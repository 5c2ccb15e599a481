package main

import (
	"io"
	"log/slog"
)

// MetricsConfig sets where Prometheus reads posd's metrics. GET /metrics on the API is
// always there, for the technician role; this adds a listener without authentication, for a
// scraper on the same machine.
type MetricsConfig struct {
	// Listen is IP:PORT on a loopback address (such as "127.0.0.1:9464") where /metrics is
	// served to anyone who can connect, and nothing else. Default "": no such listener.
	Listen string `json:"listen"`
}

// fill checks the metrics section.
func (m *MetricsConfig) fill() error {
	if m.Listen == "" {
		return nil
	}
	if err := loopback(m.Listen); err != nil {
		return &ConfigError{"metrics.listen", err.Error() + " (metrics are served without authentication, to this machine only)"}
	}
	return nil
}

// newLogger is posd's logger as log configures it: text or JSON lines on w.
func newLogger(w io.Writer, l LogConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level(l.Level)}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
