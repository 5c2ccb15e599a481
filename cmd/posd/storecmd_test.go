package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/store"
)

func TestStoreCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	st, err := store.Open(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := st.Begin(context.Background(), store.Intent{Kind: "sale", MTI: "0200", STAN: 1, MaskedPAN: "476173******0010", Time: time.Now()})
	st.Finish(context.Background(), id, store.Outcome{State: store.StateApproved, Time: time.Now()})
	st.Close()

	var out, errOut bytes.Buffer
	if code := run([]string{"store", "check", "--path", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "store check: ok") || !strings.Contains(out.String(), "1 records") {
		t.Errorf("good file: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	garbage := filepath.Join(dir, "garbage.db")
	junk := bytes.Repeat([]byte("not a journal "), 500)
	os.WriteFile(garbage, junk, 0o600)
	out.Reset()
	errOut.Reset()
	code := run([]string{"store", "check", "--path", garbage}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "not a bbolt database") || !strings.Contains(errOut.String(), "move it aside") {
		t.Errorf("garbage file: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if b, _ := os.ReadFile(garbage); !bytes.Equal(b, junk) {
		t.Error("store check changed the file it refused")
	}
	if code := run([]string{"store", "check"}, &out, &errOut); code != 2 {
		t.Errorf("no --path: exit %d, want 2", code)
	}
}
