package firmware_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posd-dev/posd/firmware"
)

// logWithHistory returns a state directory whose event log holds an
// initialise, an install, a confirm and a rollback.
func logWithHistory(t *testing.T) (*vendor, string) {
	t.Helper()
	v := newVendor(t)
	v.publish("2.0.0", 4096)
	dir := t.TempDir()
	m := v.open(dir, nil)
	installConfirmed(t, m, v.bundleFile())
	if _, err := m.Rollback(context.Background(), "carol"); err != nil {
		t.Fatal(err)
	}
	m.Close()
	return v, dir
}

func TestEventLogDetectsTampering(t *testing.T) {
	edits := []struct {
		name string
		edit func([][]byte) [][]byte
		want string
	}{
		{"a field changed", func(l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`"who":"setup"`), []byte(`"who":"alice"`), 1)
			return l
		}, "line 3 (seq 3) does not follow line 2"},
		{"a line removed", func(l [][]byte) [][]byte { return append(l[:1], l[2:]...) }, "line 2 (seq 3) does not follow line 1"},
		{"lines swapped", func(l [][]byte) [][]byte { l[1], l[2] = l[2], l[1]; return l }, "line 2 (seq 3) does not follow line 1"},
		{"garbage inserted", func(l [][]byte) [][]byte {
			return append(l[:2], append([][]byte{[]byte("hello")}, l[2:]...)...)
		}, "line 3 is not a log record"},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			v, dir := logWithHistory(t)
			path := filepath.Join(dir, "events.log")
			rewrite(t, path, func(b []byte) []byte {
				lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
				if len(lines) != 4 {
					t.Fatalf("%d lines in the log, want 4:\n%s", len(lines), b)
				}
				return append(bytes.Join(e.edit(lines), []byte("\n")), '\n')
			})
			m := v.open(dir, nil) // a broken log must not stop the terminal
			_, err := m.Events(context.Background(), 0)
			if !errors.Is(err, firmware.ErrTampered) || !strings.Contains(err.Error(), e.want) {
				t.Fatalf("Events: %v, want %q", err, e.want)
			}
			if st := status(t, m); !strings.Contains(st.LogError, e.want) {
				t.Errorf("status log error = %q", st.LogError)
			}
		})
	}
	t.Run("untouched", func(t *testing.T) {
		v, dir := logWithHistory(t)
		m := v.open(dir, nil)
		evs, err := m.Events(context.Background(), 2)
		if err != nil || len(evs) != 2 || evs[0].Seq != 3 || evs[1].Kind != firmware.EventRollback || evs[1].Who != "carol" {
			t.Fatalf("Events(after 2) = %+v, %v", evs, err)
		}
	})
}

func TestEventLogTornLine(t *testing.T) {
	v, dir := logWithHistory(t)
	path := filepath.Join(dir, "events.log")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(`{"seq":5,"time":"2026-03-0`)) // a power cut mid-write
	f.Close()
	m := v.open(dir, nil)
	evs, err := m.Events(context.Background(), 0)
	if err != nil {
		t.Fatalf("Events after repair: %v", err)
	}
	last := evs[len(evs)-1]
	if len(evs) != 5 || last.Kind != firmware.EventLogRepair || !strings.Contains(last.Detail, "26 bytes") {
		t.Fatalf("events after a torn line: %+v", evs)
	}
}
