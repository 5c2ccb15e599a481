package fwapi

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/posd-dev/posd/firmware"
)

// WriteStatus prints st for a technician: one line per slot, which one
// starts and runs, and the last result.
func WriteStatus(w io.Writer, st firmware.Status) {
	fmt.Fprintf(w, "model %s, installed %s, trusted root version %d, release metadata version %d\n", st.Model, st.Installed, st.RootVersion, st.TargetsVersion)
	fmt.Fprintf(w, "%-4s %-7s %-10s %-11s %-9s %-20s %s\n", "SLOT", "", "VERSION", "STATE", "CONFIRMED", "INSTALLED", "BY")
	for _, s := range st.Slots {
		mark := ""
		switch {
		case s.Name == st.Active && s.Name == st.Running:
			mark = "active"
		case s.Name == st.Active:
			mark = "next"
		case s.Name == st.Running:
			mark = "running"
		}
		version, when, by := s.Version, "-", s.InstalledBy
		if version == "" {
			version = "-"
		}
		if !s.InstalledAt.IsZero() {
			when = s.InstalledAt.UTC().Format("2006-01-02 15:04:05")
		}
		if s.Factory {
			when, by = "factory", ""
		}
		conf := "no"
		if s.Confirmed {
			conf = "yes"
		}
		if s.State != firmware.SlotReady {
			conf = "-"
		}
		fmt.Fprintf(w, "%-4s %-7s %-10s %-11s %-9s %-20s %s\n", s.Name, mark, version, s.State, conf, when, by)
		if s.Failed != "" {
			fmt.Fprintf(w, "     failed: %s\n", s.Failed)
		}
	}
	if !strings.EqualFold(st.Active, st.Running) && st.Running != "" {
		fmt.Fprintf(w, "posd runs slot %s; slot %s starts at the next restart\n", st.Running, st.Active)
	}
	if st.Attempts > 0 {
		fmt.Fprintf(w, "starts of slot %s without confirmation: %d of %d\n", st.Active, st.Attempts, st.MaxBootAttempts)
	}
	if st.PadModel != "" {
		fmt.Fprintf(w, "PIN pad %s firmware %s\n", st.PadModel, st.PadVersion)
	}
	if st.InProgress != nil {
		p := st.InProgress
		fmt.Fprintf(w, "in progress: %s %s %s, %s of %s\n", p.Op, p.Target, p.Phase, size(p.Done), size(p.Total))
	}
	if e := st.Last; e != nil {
		res := "ok"
		if !e.OK {
			res = "FAILED"
		}
		fmt.Fprintf(w, "last: %s %s by %s at %s: %s", e.Kind, res, e.Who, e.Time.UTC().Format("2006-01-02 15:04:05"), e.Detail)
		fmt.Fprintln(w)
	}
	if st.Note != "" {
		fmt.Fprintf(w, "note: %s\n", st.Note)
	}
	if st.LogError != "" {
		fmt.Fprintf(w, "WARNING: firmware event log: %s\n", st.LogError)
	}
}

// WriteEvents prints event log records, one per line.
func WriteEvents(w io.Writer, evs []firmware.Event) {
	for _, e := range evs {
		res := "ok"
		if !e.OK {
			res = "FAILED"
		}
		line := fmt.Sprintf("%5d %s %-10s %-6s %-12s", e.Seq, e.Time.UTC().Format("2006-01-02 15:04:05"), e.Kind, res, e.Who)
		if e.Slot != "" {
			line += " slot " + e.Slot
		}
		if e.Version != "" {
			line += " " + e.Version
		}
		if e.From != "" {
			line += " (from " + e.From + ")"
		}
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		fmt.Fprintln(w, line)
	}
}

func size(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.0f MB", float64(n)/1e6)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 10<<10:
		return fmt.Sprintf("%.0f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// ProgressBar draws install progress: a bar, the percentage, the rate and
// the time left. Give it each firmware.Progress in order. It is not safe
// for concurrent use.
type ProgressBar struct {
	// W receives the output. Required.
	W io.Writer
	// Redraw redraws one line in place with carriage returns (a terminal);
	// otherwise a line is printed per phase and per tenth of the work.
	// Default false.
	Redraw bool
	// Width is the bar's width in characters. Default 30.
	Width int
	// Now is the clock. Default time.Now.
	Now func() time.Time

	phase  string
	start  time.Time
	tenths int64
	drawn  bool
}

func (b *ProgressBar) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Update shows p.
func (b *ProgressBar) Update(p firmware.Progress) {
	now := b.now()
	if p.Phase != b.phase {
		b.end()
		b.phase, b.start, b.tenths = p.Phase, now, -1
		if !measured(p) {
			fmt.Fprintf(b.W, "%s\n", phaseName(p))
			return
		}
	}
	if !measured(p) {
		return
	}
	line := b.line(p, now.Sub(b.start))
	if b.Redraw {
		fmt.Fprintf(b.W, "\r%s\x1b[K", line)
		b.drawn = true
		return
	}
	if t := p.Done * 10 / p.Total; t > b.tenths {
		b.tenths = t
		fmt.Fprintln(b.W, line)
	}
}

// end finishes a redrawn line.
func (b *ProgressBar) end() {
	if b.drawn {
		fmt.Fprintln(b.W)
		b.drawn = false
	}
}

// Done ends the output (call it after the last Update).
func (b *ProgressBar) Done() { b.end() }

// measured reports whether p's phase has a bar: the image and transfer
// phases, once their size is known.
func measured(p firmware.Progress) bool {
	return (p.Phase == "image" || p.Phase == "transfer") && p.Total > 0
}

func phaseName(p firmware.Progress) string {
	switch p.Phase {
	case "metadata":
		return "verifying signed metadata"
	case "image":
		if p.Op == "pinpad" || p.Op == "check" {
			return fmt.Sprintf("verifying %s %s", p.Target, p.Version)
		}
		return fmt.Sprintf("writing %s %s to the inactive slot", p.Target, p.Version)
	case "sync":
		return "syncing to disk"
	case "switch":
		return "switching the active slot"
	case "transfer":
		return fmt.Sprintf("sending %s %s to the PIN pad", p.Target, p.Version)
	case "done":
		return "done"
	}
	return p.Phase
}

func (b *ProgressBar) line(p firmware.Progress, elapsed time.Duration) string {
	width := b.Width
	if width <= 0 {
		width = 30
	}
	done := min(max(p.Done, 0), p.Total)
	fill := int(done * int64(width) / p.Total)
	bar := strings.Repeat("#", fill) + strings.Repeat(".", width-fill)
	rate, eta := "", "ETA --"
	if secs := elapsed.Seconds(); secs > 0 && done > 0 {
		r := float64(done) / secs
		rate = size(int64(r)) + "/s"
		left := time.Duration(float64(p.Total-done) / r * float64(time.Second)).Round(time.Second)
		eta = "ETA " + clock(left)
	}
	return fmt.Sprintf("%-40s [%s] %3d%% %s of %s %10s %s", phaseName(p), bar, done*100/p.Total, size(done), size(p.Total), rate, eta)
}

// clock formats d as M:SS or H:MM:SS.
func clock(d time.Duration) string {
	s := int64(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
