package main

import (
	"context"
	"fmt"
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

// debugTrace is the trace function of posd run (the acquirer link's lines and each message
// described field by field): one debug record per line. It is nil when log's level leaves
// debug out, so that a sale formats nothing for lines no one would see. The level is fixed
// for the run.
func debugTrace(log *slog.Logger) func(string, ...any) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	return func(format string, a ...any) { log.Debug(fmt.Sprintf(format, a...)) }
}
