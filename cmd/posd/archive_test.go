package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/store"
)

// archivedFixture writes a store with two closed batches (3 and 2 sales) and one open sale,
// archives the first batch and returns the store's path and archive directory.
func archivedFixture(t *testing.T) (path, dir string) {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	path = filepath.Join(t.TempDir(), "posd.db")
	dir = store.ArchiveDir(path)
	st, err := store.Open(path, &store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sell := func(n int) {
		for i := range n {
			id, _, err := st.BeginWithSTAN(ctx, store.Intent{Kind: "sale", MTI: "0200", SaleID: "till-1", SaleTransactionID: fmt.Sprint(now.Unix(), i),
				AmountMinor: 1234, Currency: "EUR", MaskedPAN: "476173******0010", Time: now})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Finish(ctx, id, store.Outcome{State: store.StateApproved, ResponseCode: "00", Time: now}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range []int{3, 2} {
		sell(n)
		b, _, err := st.BeginClose(ctx, "sup")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.FinishClose(ctx, store.Batch{Number: b.Number, ResponseCode: "00"}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(40 * 24 * time.Hour)
	}
	sell(1)
	rep, err := st.Archive(ctx, store.ArchiveOptions{Dir: dir, Keep: 30 * 24 * time.Hour})
	if err != nil || rep.Records != 3 {
		t.Fatalf("archive: %+v %v, want the 3 records of batch 1", rep, err)
	}
	return path, dir
}

func TestStoreCheckArchive(t *testing.T) {
	path, dir := archivedFixture(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"store", "check", "--path", path, "--archive", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "store check: ok") || !strings.Contains(out.String(), "3 records") {
		t.Fatalf("store check --archive: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "posd-archive-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("archive files %v, want one", files)
	}
	raw, _ := os.ReadFile(files[0])
	edited := bytes.Replace(raw, []byte(`"amount_minor":1234`), []byte(`"amount_minor":1200`), 1)
	if err := os.WriteFile(files[0], edited, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"store", "check", "--path", path, "--archive", dir}, &out, &errOut); code != 1 || !strings.Contains(out.String(), "PROBLEM") || !strings.Contains(out.String(), "edited") {
		t.Errorf("store check --archive of an edited line: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

func TestJournalAPIArchived(t *testing.T) {
	path, dir := archivedFixture(t)
	st, err := store.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := &admin{st: st, log: slog.New(slog.DiscardHandler), archiveDir: dir}
	get := func(q string) (int, []store.Record) {
		rec := httptest.NewRecorder()
		h.serveJournal(rec, httptest.NewRequest(http.MethodGet, "/v1/journal"+q, nil))
		var recs []store.Record
		_ = json.Unmarshal(rec.Body.Bytes(), &recs)
		return rec.Code, recs
	}
	if code, recs := get(""); code != 200 || len(recs) != 3 || recs[0].ID != 4 {
		t.Errorf("live journal: %d, %d records, want the 3 live ones from id 4", code, len(recs))
	}
	code, recs := get("?archived=1")
	if code != 200 || len(recs) != 6 {
		t.Fatalf("journal?archived=1: %d, %d records, want 6", code, len(recs))
	}
	for i, r := range recs {
		if r.ID != store.TxnID(i+1) {
			t.Errorf("record %d has id %d: want the archived ones first, then the live, in order", i, r.ID)
		}
	}
	if code, _ := get("?archived=yes"); code != http.StatusBadRequest {
		t.Errorf("archived=yes: %d, want 400", code)
	}
}
