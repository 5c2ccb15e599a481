package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posd-dev/posd/terminal/card"
)

func TestPANHasher(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	keyFile := filepath.Join(t.TempDir(), "data.key")
	m, closeFn, err := openDataModule(ctx, &DataKeyConfig{Backend: "soft", AllowSoft: true, KeyFile: keyFile}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	hash := panHasher(ctx, m, log)
	if hash == nil {
		t.Fatalf("no hasher with the soft backend:\n%s", logs.String())
	}
	a, _ := card.ParsePAN("4761739001010010")
	b, _ := card.ParsePAN("4000000000000002")
	exp, _ := card.ParseExpiry("3012")
	other, _ := card.ParseExpiry("2901")
	ha, err := hash(ctx, a, exp)
	if err != nil {
		t.Fatal(err)
	}
	ha2, _ := hash(ctx, a, exp)
	hb, _ := hash(ctx, b, exp)
	if ha != ha2 || ha == hb || !strings.HasPrefix(ha, "h1.") || len(ha) != 3+16 {
		t.Errorf("hashes %q %q %q", ha, ha2, hb)
	}
	// The expiry is in the hash: the card number alone does not find the card.
	if hx, _ := hash(ctx, a, other); hx == ha {
		t.Error("the same hash under another expiry")
	}
	if strings.ContainsAny(ha[3:], "0123456789") {
		t.Errorf("hash %q has digits", ha)
	}
	// The same key file gives the same hashes after a restart; another file, others.
	m2, close2, err := openDataModule(ctx, &DataKeyConfig{Backend: "soft", AllowSoft: true, KeyFile: keyFile}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer close2()
	if h, _ := panHasher(ctx, m2, log)(ctx, a, exp); h != ha {
		t.Errorf("after a restart %q, before %q", h, ha)
	}
	m3, close3, err := openDataModule(ctx, &DataKeyConfig{Backend: "soft", AllowSoft: true, KeyFile: filepath.Join(t.TempDir(), "other.key")}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer close3()
	if h, _ := panHasher(ctx, m3, log)(ctx, a, exp); h == ha {
		t.Error("two key files give the same hash: the hash is not keyed")
	}
	if panHasher(ctx, nil, log) != nil {
		t.Error("a hasher without a data module")
	}
	if strings.Contains(logs.String(), "4761739001010010") {
		t.Error("the PAN was logged")
	}
}
