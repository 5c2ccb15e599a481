package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

// With the AES PIN dialect and the default (public) AES BDK, the published ANSI X9.24-3
// format 4 block is approved and an altered one declined with 55.
func TestRunChecksAESPINBlocks(t *testing.T) {
	dir := t.TempDir()
	cards := filepath.Join(dir, "cards.json")
	os.WriteFile(cards, []byte(`[{"pan":"4111111111111111","pin":"1234","balance_minor":10000,"expiry":"3012"}]`), 0o600)
	dialectPath := filepath.Join("..", "..", "iso8583", "dialects", "aes-pin.json")
	d, err := iso8583.LoadDialect(dialectPath)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--listen", "127.0.0.1:0", "--cards", cards, "--dialect", dialectPath}, pw, &stderr)
		pw.Close()
	}()
	out := bufio.NewReader(pr)
	addr := listenAddr(t, out)
	go io.Copy(io.Discard, out) // the server's log lines

	c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: addr, Dialect: d})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pan, _ := card.ParsePAN("4111111111111111")
	block, _ := hex.DecodeString("A912150391AB65A67E52883D81CE2D15")
	altered := bytes.Clone(block)
	altered[0] ^= 0x80
	for i, tt := range []struct {
		block []byte
		ksn   string
		want  string
	}{
		{block, "123456789012345600000001", "00"},
		{altered, "123456789012345600000002", "55"},
	} {
		req, err := iso8583.Authorization{
			AmountMinor: 100, CurrencyNumeric: "978", STAN: uint32(i + 1),
			TransmissionTime: time.Now(), LocalTime: time.Now(),
			PAN: pan, Expiry: "3012", EntryMode: "012", TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
			PINBlock: tt.block, KSN: tt.ksn, Spec: d.Spec,
		}.Message()
		if err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.Send(sctx, req)
		scancel()
		if err != nil {
			t.Fatal(err)
		}
		if rc, _ := resp.GetString(39); rc != tt.want {
			t.Errorf("sale %d: rc %s, want %s", i+1, rc, tt.want)
		}
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d, stderr %s", c, stderr.String())
	}
}

func TestRunRejectsBadAESFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--aes-bdk", "0123"}, "--aes-bdk"},
		{[]string{"--aes-bdk", strings.Repeat("zz", 16)}, "--aes-bdk"},
		{[]string{"--aes-pin-key", "aes512"}, "--aes-pin-key"},
		{[]string{"--aes-pin-key", "tdes2"}, "--aes-pin-key"},
		{[]string{"--aes-bdk", "", "--aes-pin-key", "aes128"}, "--aes-pin-key needs --aes-bdk"},
		{[]string{"--aes-pin-key", "aes256"}, "AESPINKeyType"}, // stronger than the AES-128 BDK
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append(tt.args, "--listen", "127.0.0.1:0"), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q (want it to name %s)", tt.args, code, stderr.String(), tt.want)
		}
	}
}
