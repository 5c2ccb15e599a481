package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// statusAnswer is what posctl reads of posd's GET /v1/status.
type statusAnswer struct {
	Status     string   `json:"status"`
	Reasons    []string `json:"reasons"`
	POIID      string   `json:"poiid"`
	TerminalID string   `json:"terminal_id"`
	Acquirer   *struct {
		Host          string    `json:"host"`
		Connected     bool      `json:"connected"`
		SignedOn      bool      `json:"signed_on"`
		SignOn        bool      `json:"sign_on"`
		Since         time.Time `json:"since"`
		LastError     string    `json:"last_error"`
		LastEcho      time.Time `json:"last_echo"`
		LastEchoError string    `json:"last_echo_error"`
		InFlight      int       `json:"in_flight"`
	} `json:"acquirer"`
	AcquirerHosts []struct {
		Host      string    `json:"host"`
		Active    bool      `json:"active"`
		Connected bool      `json:"connected"`
		Since     time.Time `json:"since"`
		LastError string    `json:"last_error"`
	} `json:"acquirer_hosts"`
	Devices []struct {
		Name       string    `json:"name"`
		Port       string    `json:"port"`
		State      string    `json:"state"`
		LastError  string    `json:"last_error"`
		Since      time.Time `json:"since"`
		Reconnects int       `json:"reconnects"`
		Info       string    `json:"info"`
		LastSeen   time.Time `json:"last_seen"`
	} `json:"devices"`
	Store *struct {
		Path      string `json:"path"`
		SizeBytes int64  `json:"size_bytes"`
		CapBytes  int64  `json:"cap_bytes"`
		Error     string `json:"error"`
	} `json:"store"`
	Queue *struct {
		Depth, Pending, Parked, Reversals, Advices int
		Oldest                                     time.Time `json:"oldest"`
		Error                                      string    `json:"error"`
	} `json:"queue"`
	OpenBatch uint64 `json:"open_batch"`
	LastClose *struct {
		Number       uint64    `json:"number"`
		Ended        time.Time `json:"ended"`
		ResponseCode string    `json:"response_code"`
		By           string    `json:"by"`
	} `json:"last_close"`
	Firmware *struct {
		Active  string `json:"active"`
		Running string `json:"running"`
		Slots   []struct {
			Name      string `json:"name"`
			State     string `json:"state"`
			Version   string `json:"version"`
			Confirmed bool   `json:"confirmed"`
			Failed    string `json:"failed"`
		} `json:"slots"`
	} `json:"firmware"`
	AuditHead *struct {
		Seq uint64 `json:"seq"`
		MAC string `json:"mac"`
	} `json:"audit_head"`
}

// status prints posd's overall state with its reasons, then each part.
func (c *client) status(w io.Writer) error {
	var st statusAnswer
	if err := c.get("/v1/status", &st); err != nil {
		return err
	}
	printStatus(w, &st, time.Now())
	return nil
}

func printStatus(w io.Writer, st *statusAnswer, now time.Time) {
	clock := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
	ago := func(t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" }
	fmt.Fprintf(w, "posd %s, POIID %s\n", st.Status, st.POIID)
	for _, r := range st.Reasons {
		fmt.Fprintf(w, "  ! %s\n", r)
	}
	if a := st.Acquirer; a != nil {
		fmt.Fprintf(w, "  %-10s %s ", "acquirer", a.Host)
		switch {
		case a.Connected:
			fmt.Fprintf(w, "connected since %s", clock(a.Since))
			if a.SignOn {
				fmt.Fprint(w, ", signed on")
			}
		case a.Since.IsZero():
			fmt.Fprint(w, "not connected yet (posd dials at the first request)")
		default:
			fmt.Fprintf(w, "DOWN since %s (%s)", clock(a.Since), a.LastError)
		}
		if !a.LastEcho.IsZero() {
			if a.LastEchoError != "" {
				fmt.Fprintf(w, ", last echo %s failed: %s", clock(a.LastEcho), a.LastEchoError)
			} else {
				fmt.Fprintf(w, ", last echo %s answered", clock(a.LastEcho))
			}
		}
		fmt.Fprintf(w, ", %d in flight\n", a.InFlight)
	}
	for i, h := range st.AcquirerHosts {
		role := "backup"
		if i == 0 {
			role = "primary"
		}
		state := "not connected"
		switch {
		case h.Connected:
			state = "connected since " + clock(h.Since)
		case h.LastError != "":
			state = "down (" + h.LastError + ")"
		}
		mark := ""
		if h.Active {
			mark = ", active: the next transactions go here"
		}
		fmt.Fprintf(w, "    %-8s %s %s%s\n", role, h.Host, state, mark)
	}
	for _, d := range st.Devices {
		fmt.Fprintf(w, "  %-10s %-14s %s since %s", d.Name, d.Port, d.State, clock(d.Since))
		if d.Reconnects > 0 {
			fmt.Fprintf(w, ", %d reconnects", d.Reconnects)
		}
		if !d.LastSeen.IsZero() {
			fmt.Fprintf(w, ", last answered %s", d.LastSeen.Local().Format("15:04:05"))
		}
		if d.LastError != "" && d.State != "connected" {
			fmt.Fprintf(w, " (%s)", d.LastError)
		}
		if d.Info != "" {
			fmt.Fprintf(w, "\n  %-10s %s", "", d.Info)
		}
		fmt.Fprintln(w)
	}
	if s := st.Store; s != nil {
		fmt.Fprintf(w, "  %-10s %s %.1f MiB", "store", s.Path, float64(s.SizeBytes)/(1<<20))
		if s.CapBytes > 0 {
			fmt.Fprintf(w, " of %d MiB (%d%%)", s.CapBytes>>20, s.SizeBytes*100/s.CapBytes)
		}
		if s.Error != "" {
			fmt.Fprintf(w, " (%s)", s.Error)
		}
		fmt.Fprintln(w)
	}
	if q := st.Queue; q != nil {
		fmt.Fprintf(w, "  %-10s %d queued (%d pending, %d parked; %d reversals, %d advices)", "queue", q.Depth, q.Pending, q.Parked, q.Reversals, q.Advices)
		if !q.Oldest.IsZero() {
			fmt.Fprintf(w, ", oldest queued %s", ago(q.Oldest))
		}
		if q.Error != "" {
			fmt.Fprintf(w, " (%s)", q.Error)
		}
		fmt.Fprintln(w)
	}
	if st.Queue != nil {
		fmt.Fprintf(w, "  %-10s open batch %d; ", "batch", st.OpenBatch)
		if lc := st.LastClose; lc != nil {
			fmt.Fprintf(w, "last close: batch %d at %s, response %s", lc.Number, clock(lc.Ended), lc.ResponseCode)
			if lc.By != "" {
				fmt.Fprintf(w, ", by %s", lc.By)
			}
			fmt.Fprintln(w)
		} else {
			fmt.Fprintln(w, "no close yet")
		}
	}
	if f := st.Firmware; f != nil {
		var slots []string
		for _, s := range f.Slots {
			d := "slot " + s.Name + " " + s.State
			if s.Version != "" {
				d += " " + s.Version
			}
			if s.Name == f.Active {
				d += " (active"
				if s.Confirmed {
					d += ", confirmed"
				}
				d += ")"
			}
			if s.Failed != "" {
				d += " failed: " + s.Failed
			}
			slots = append(slots, d)
		}
		fmt.Fprintf(w, "  %-10s %s\n", "firmware", strings.Join(slots, "; "))
	}
	if h := st.AuditHead; h != nil {
		fmt.Fprintf(w, "  audit head %d:%.16s (keep it: posctl audit verify --head finds a cut tail against it)\n", h.Seq, h.MAC)
	}
}
