package firmware

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// ErrSlowDownload: a download did not finish within Options.DownloadTimeout,
// or fell below Options.MinRate over a window of Options.MinRateWindow (a
// stalled or throttled mirror: TUF's slow-retrieval attack). It is aborted
// at once and the operation slot is free again.
var ErrSlowDownload = errors.New("download too slow")

// Defaults of the download limits in Options.
const (
	DefaultDownloadTimeout = 10 * time.Minute
	DefaultMinRate         = 4096 // bytes per second
	DefaultMinRateWindow   = 10 * time.Second
)

// download is the body of an https:// source: reads fail with the rule
// that stopped it (ErrSlowDownload) once the watchdog or the time limit
// cancels it.
type download struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	body   io.ReadCloser
	n      *atomic.Int64
}

func (d *download) Read(p []byte) (int, error) {
	if d.body == nil {
		return 0, io.EOF
	}
	k, err := d.body.Read(p)
	d.n.Add(int64(k))
	if err != nil && err != io.EOF {
		if cause := context.Cause(d.ctx); cause != nil {
			err = cause
		}
	}
	return k, err
}

// Close ends the download and its watchdog.
func (d *download) Close() error {
	d.cancel(context.Canceled)
	if d.body != nil {
		return d.body.Close()
	}
	return nil
}

// openDownload starts a GET of u under the download limits: the whole
// download (headers and body) must end within DownloadTimeout, and from
// the end of the first MinRateWindow on, every window must bring at least
// MinRate bytes per second. Redirects must stay on the allowed prefixes.
func (m *Manager) openDownload(ctx context.Context, u *url.URL) (*download, error) {
	name := u.Redacted()
	dctx, cancel := context.WithCancelCause(ctx)
	tctx, tcancel := context.WithTimeoutCause(dctx, m.opts.DownloadTimeout,
		fmt.Errorf("%s: %w: not finished within the download time limit of %s", name, ErrSlowDownload, m.opts.DownloadTimeout))
	stopAll := func(cause error) {
		cancel(cause)
		tcancel()
	}
	n := &atomic.Int64{}
	go watchRate(tctx, n, m.opts.MinRate, m.opts.MinRateWindow, func(got int64) {
		cancel(fmt.Errorf("%s: %w: %d bytes in the last %s, under the minimum of %d bytes/s", name, ErrSlowDownload, got, m.opts.MinRateWindow, m.opts.MinRate))
	})

	client := *m.opts.HTTPClient
	orig := client.CheckRedirect
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkURL(req.URL, m.allowed); err != nil {
			return fmt.Errorf("redirect: %w", err)
		}
		if orig != nil {
			return orig(req, via)
		}
		if len(via) >= 10 {
			return errors.New("more than 10 redirects")
		}
		return nil
	}
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, u.String(), nil)
	if err != nil {
		stopAll(context.Canceled)
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if cause := context.Cause(tctx); cause != nil && errors.Is(cause, ErrSlowDownload) {
			err = cause
		} else if errors.Is(err, ErrSource) {
			// keep the refusal's text: it names the rule
		} else {
			err = fmt.Errorf("download %s: %w", name, err)
		}
		stopAll(context.Canceled)
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		stopAll(context.Canceled)
		return nil, fmt.Errorf("download %s: HTTP %s", name, resp.Status)
	}
	return &download{ctx: tctx, cancel: stopAll, body: resp.Body, n: n}, nil
}

// watchRate calls slow (once) when fewer than rate*window bytes arrived in
// the last window, checking every tenth of a window from the end of the
// first one on. It returns when ctx ends.
func watchRate(ctx context.Context, n *atomic.Int64, rate int64, window time.Duration, slow func(got int64)) {
	const steps = 10
	t := time.NewTicker(window / steps)
	defer t.Stop()
	need := rate * int64(window/time.Millisecond) / 1000
	samples := []int64{0} // counts at each tick, the oldest a window ago
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		samples = append(samples, n.Load())
		if len(samples) > steps+1 {
			samples = samples[1:]
		}
		if len(samples) < steps+1 {
			continue // the grace period: the first window
		}
		if got := samples[steps] - samples[0]; got < need {
			slow(got)
			return
		}
	}
}
