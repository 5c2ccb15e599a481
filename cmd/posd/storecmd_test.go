package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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

// salvageFixture writes a store of 150 sales (every tenth from the 3rd outcome unknown, its
// reversal queued; the last two open) and returns its path.
func salvageFixture(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posd.db")
	st, err := store.Open(path, &store.Options{FoldDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := 1; i <= 150; i++ {
		id, stan, err := st.BeginWithSTAN(ctx, store.Intent{Kind: "sale", MTI: "0200", TerminalID: "TERM0001", SaleID: fmt.Sprintf("SALE-%04d", i),
			SaleTransactionID: fmt.Sprintf("till-transaction-%04d", i), AmountMinor: int64(100 + i), Currency: "EUR",
			MaskedPAN: "476173******0010", EntryMode: "051", Time: base.Add(time.Duration(i) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i > 148:
		case i%10 == 3:
			_, err = st.FinishAndQueue(ctx, id, store.Outcome{State: store.StateUnknown, Time: base}, store.Item{Kind: store.KindReversal, STAN: stan + 500000, Currency: "EUR", AmountMinor: int64(100 + i), MaskedPAN: "476173******0010"})
		default:
			err = st.Finish(ctx, id, store.Outcome{State: store.StateApproved, ResponseCode: "00", Time: base})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStoreSalvageCommand(t *testing.T) {
	good := salvageFixture(t)
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	runStore := func(args ...string) int {
		out.Reset()
		errOut.Reset()
		return run(append([]string{"store"}, args...), &out, &errOut)
	}

	// A healthy file: everything copied, exit 0, and the copy checks.
	copy1 := filepath.Join(dir, "copy1.db")
	if code := runStore("salvage", "--path", good, "--out", copy1); code != 0 || !strings.Contains(out.String(), "everything was copied") ||
		!strings.Contains(out.String(), "150 records copied (2 open)") || !strings.Contains(out.String(), "mv "+copy1+" "+good) {
		t.Errorf("healthy file: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if code := runStore("check", "--path", copy1); code != 0 || !strings.Contains(out.String(), "store check: ok") {
		t.Errorf("check of the copy: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	// A journal page overwritten with garbage (with any old copies of it on free pages).
	damaged := filepath.Join(dir, "damaged.db")
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	ps := int(binary.NativeEndian.Uint32(b[16+8:])) // bbolt's page size, from meta page 0
	hit := 0
	for off := bytes.Index(b, []byte(`"sale_id":"SALE-0073"`)); off >= 0; off = bytes.Index(b, []byte(`"sale_id":"SALE-0073"`)) {
		pg := off / ps
		copy(b[pg*ps:(pg+1)*ps], bytes.Repeat([]byte{0xEE}, ps))
		hit++
	}
	if hit == 0 {
		t.Fatal("record 73 not found in the file")
	}
	os.WriteFile(damaged, b, 0o600)
	sum := sha256.Sum256(b)
	copy2 := filepath.Join(dir, "copy2.db")
	code := runStore("salvage", "--path", damaged, "--out", copy2)
	t.Logf("salvage of a damaged file:\n%s%s", out.String(), errOut.String())
	var from, to int
	if m := regexp.MustCompile(`LOST: journal records (\d+) to (\d+): unreadable`).FindStringSubmatch(out.String()); m != nil {
		from, _ = strconv.Atoi(m[1])
		to, _ = strconv.Atoi(m[2])
	}
	if from == 0 || from > 73 || to < 73 {
		t.Errorf("record 73's page is not reported lost as a range of records")
	}
	if code != 3 || !strings.Contains(out.String(), "placeholder") ||
		!strings.Contains(out.String(), "settle with the acquirer") || !strings.Contains(out.String(), "mv "+damaged+" "+damaged+".damaged") {
		t.Errorf("damaged file: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if strings.Contains(out.String(), "4761730") {
		t.Error("the report shows PAN digits")
	}
	if after, _ := os.ReadFile(damaged); sha256.Sum256(after) != sum {
		t.Error("salvage changed the damaged file")
	}
	if code := runStore("check", "--path", copy2); code != 0 {
		t.Errorf("check of the salvaged copy: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	st, err := store.Open(copy2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := st.Begin(context.Background(), store.Intent{Kind: "sale", MaskedPAN: "476173******0010"}); err != nil || id != 151 {
		t.Errorf("Begin on the copy = %d, %v; want 151", id, err)
	}
	st.Close()

	// Refusals.
	if code := runStore("salvage", "--path", damaged); code != 2 {
		t.Errorf("no --out: exit %d, want 2", code)
	}
	if code := runStore("salvage", "--path", damaged, "--out", copy2); code != 1 || !strings.Contains(errOut.String(), "not empty") {
		t.Errorf("existing --out: exit %d\n%s", code, errOut.String())
	}
	zeroed := filepath.Join(dir, "zeroed.db")
	b, _ = os.ReadFile(good)
	copy(b, make([]byte, 2*ps))
	os.WriteFile(zeroed, b, 0o600)
	if code := runStore("salvage", "--path", zeroed, "--out", filepath.Join(dir, "copy3.db")); code != 1 || !strings.Contains(errOut.String(), "both of its meta pages") {
		t.Errorf("both meta pages zeroed: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "copy3.db")); err == nil {
		t.Error("a failed salvage left its output behind")
	}
	if code := runStore(); code != 2 || !strings.Contains(errOut.String(), "posd store salvage --path FILE --out NEWFILE") {
		t.Errorf("posd store: exit %d\n%s", code, errOut.String())
	}
}
