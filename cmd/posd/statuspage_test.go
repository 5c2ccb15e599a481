package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/terminal/padsim"
)

// TestStatusPageHeaders: the page is one HTML document that may load nothing from
// elsewhere, for the technician only.
func TestStatusPageHeaders(t *testing.T) {
	if len(statusHTML) == 0 {
		t.Fatal("status page not embedded")
	}
	for _, bad := range []string{"http://", "https://", "<link ", " src=", "innerHTML"} {
		if strings.Contains(string(statusHTML), bad) {
			t.Errorf("the status page has %q: it must be self-contained and put text as text", bad)
		}
	}
	for _, id := range []string{"state", "reasons", "link", "devices", "queue", "store", "last-close", "firmware", "audit"} {
		if !strings.Contains(string(statusHTML), `id="`+id+`"`) {
			t.Errorf("the status page has no #%s", id)
		}
	}
}

// TestStatusPageBrowser loads GET / in headless Chromium (when installed) against a
// running posd and checks what it shows after its scripts ran: the state, the link, the
// pad, the queue, the store, the last close, the firmware and the recent audit, with no
// script error and no failed request.
func TestStatusPageBrowser(t *testing.T) {
	chromium := ""
	for _, c := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(c); err == nil {
			chromium = c
			break
		}
	}
	if chromium == "" {
		t.Skip("no Chromium at /usr/bin/chromium: the status page's browser test needs it (apt-get install chromium)")
	}
	r := newOpsRig(t, "text", []padsim.Event{}, "")
	if err := r.d.st.Audit(context.Background(), "tech-alice", "test-entry", "seen on the page"); err != nil {
		t.Fatal(err)
	}
	// Chromium speaks TCP; posd's API is a unix socket: a loopback relay in between. The
	// relay's connections come from this process, which holds the technician role.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sock := strings.TrimPrefix(r.d.addr(), "unix:")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("unix", sock)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.(*net.UnixConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	// The relay works for plain requests first.
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET /: %d %v", resp.StatusCode, resp.Header)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--user-data-dir="+t.TempDir(),
		"--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", "http://"+ln.Addr().String()+"/")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	page := string(dom)
	text := func(id string) string {
		m := regexp.MustCompile(`(?s)id="` + id + `"[^>]*>(.*?)</(?:span|table|ul|p)>`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no #%s in the page after load:\n%s", id, page)
		}
		return regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[1], " ")
	}
	if s := text("state"); s != "ok" {
		t.Errorf("#state = %q, want ok", s)
	}
	if s := text("link"); !strings.Contains(s, r.cfg.Acquirer.Address) || !strings.Contains(s, "connected  yes") {
		t.Errorf("#link = %q", s)
	}
	if s := text("devices"); !strings.Contains(s, "pinpad") || !strings.Contains(s, "connected") {
		t.Errorf("#devices = %q", s)
	}
	for id, want := range map[string]string{"queue": "depth  0", "store": "MiB", "last-close": "no close yet", "firmware": "updates are off",
		"audit": "tech-alice", "poiid": "POSD-OPS00001"} {
		if s := text(id); !strings.Contains(s, want) {
			t.Errorf("#%s = %q, want it to contain %q", id, s, want)
		}
	}
	if s := text("updated"); s == "never" {
		t.Errorf("the page never refreshed")
	}
	if s := text("error"); strings.TrimSpace(s) != "" {
		t.Errorf("the page shows an error: %s", s)
	}
	if strings.Contains(page, "data-js-error") {
		t.Errorf("a script error on the page:\n%s", page)
	}
	// Console messages (a CSP violation, an uncaught error, a failed fetch) go to stderr.
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Content Security Policy") || strings.Contains(l, "Uncaught") {
			t.Errorf("browser console: %s", l)
		}
	}
}
