package main

import (
	"bytes"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelp: posctl --help, -h, help, and -h / --help after every command exit 0 and print
// that command's usage on stdout; an unknown command is a usage error (exit 2, stderr).
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, nil, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "usage: posctl") || stderr.Len() != 0 {
			t.Errorf("posctl %v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	for _, cmd := range []string{"status", "sale", "abort", "refund", "journal", "void", "saf", "store", "totals", "close", "audit", "firmware", "params"} {
		for _, args := range [][]string{{cmd, "-h"}, {cmd, "--help"}, {"help", cmd}, {cmd, "list", "-h"}} {
			var stdout, stderr bytes.Buffer
			code := run(args, nil, &stdout, &stderr)
			out := stdout.String()
			if code != 0 || stderr.Len() != 0 || !strings.Contains(out, "usage: posctl") || !strings.Contains(out, "\n  "+cmd) && cmd != "firmware" {
				t.Errorf("posctl %v: exit %d, stdout %q, stderr %q", args, code, out, stderr.String())
			}
			if cmd == "firmware" && !strings.Contains(out, "rollback") {
				t.Errorf("posctl %v: not firmware's usage: %q", args, out)
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"nosuch", "-h"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "nosuch"`) {
		t.Errorf("posctl nosuch -h: exit %d, stderr %q", code, stderr.String())
	}
}

// TestFirmwareOff: against a posd whose firmware updates are off (no /v1/firmware routes:
// its mux answers 404 page not found), posctl firmware says so in a sentence.
func TestFirmwareOff(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "posd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"Status":"ok"}`)) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, args := range [][]string{{"firmware", "status"}, {"firmware", "log"}} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--api", "unix:" + sock}, args...), nil, &stdout, &stderr)
		want := "posctl: firmware updates are off in posd's config: set firmware.model (this terminal's hardware model) and restart posd to turn them on\n"
		if code != 1 || stderr.String() != want {
			t.Errorf("posctl %v: exit %d, stderr %q, want %q", args, code, stderr.String(), want)
		}
	}
}
