package abecs_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/posd-dev/posd/terminal/abecs"
)

// GPN method 4 (DUKPT AES): the request says "4", the response carries a 16-byte block and
// a 12-byte KSN as 56 hexadecimal characters.
func TestPINRequestAESRoundTrip(t *testing.T) {
	req := abecs.PINRequest{KeyIndex: 2, AES: true, PAN: "4111111111111111", Line1: "TOTAL 1.00", MinLen: 4, MaxLen: 6}
	block, err := abecs.AppendPINRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(block), "402"+strings.Repeat("0", 32)+"16") {
		t.Fatalf("block %q does not start with method 4, key 02", block)
	}
	back, err := abecs.ParsePINRequest(block)
	if err != nil || back != req {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	if s := req.String(); !strings.Contains(s, "AES DUKPT") || strings.Contains(s, "4111111111111111") {
		t.Errorf("String() = %q", s)
	}
	block[0] = '5'
	if _, err := abecs.ParsePINRequest(block); !errors.Is(err, abecs.ErrFormat) || !strings.Contains(err.Error(), "method") {
		t.Errorf("method 5: %v", err)
	}
}

func TestPINResponseAES(t *testing.T) {
	block := [16]byte{0xA9, 0x12, 0x15, 0x03, 0x91, 0xAB, 0x65, 0xA6, 0x7E, 0x52, 0x88, 0x3D, 0x81, 0xCE, 0x2D, 0x15}
	ksn := [12]byte{0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0, 0, 0, 1}
	b := abecs.AppendPINResponseAES(nil, block, ksn)
	if string(b) != "A912150391AB65A67E52883D81CE2D15"+"123456789012345600000001" {
		t.Fatalf("got %s", b)
	}
	gb, gk, err := abecs.ParsePINResponseAES([]byte(strings.ToLower(string(b))))
	if err != nil || gb != block || gk != ksn {
		t.Fatalf("parse: %X %X %v", gb, gk, err)
	}
	for _, bad := range []string{
		string(b[:55]),                         // short
		string(b[:31]) + "X" + string(b[32:]),  // block not hex
		string(b[:55]) + "G",                   // KSN not hex
		"1B9C1845EB993A7AFFFF9876543210E00001", // a TDES response
	} {
		if _, _, err := abecs.ParsePINResponseAES([]byte(bad)); !errors.Is(err, abecs.ErrFormat) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
	// And a TDES parser refuses an AES response.
	if _, _, err := abecs.ParsePINResponse(b); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("TDES parser on an AES response: %v", err)
	}
}

// GetPINAES sends method 4 and reads the AES response; GetPIN refuses an AES request
// before anything is sent; a pad answering 042 gives ErrKeyMissing.
func TestGetPINAES(t *testing.T) {
	c, pad := newLink(t, fastOpts())
	ctx := context.Background()
	if _, _, err := c.GetPIN(ctx, abecs.PINRequest{PAN: "4111111111111111", AES: true}); err == nil || !strings.Contains(err.Error(), "GetPINAES") {
		t.Fatalf("GetPIN with AES: %v", err)
	}
	var block [16]byte
	var ksn [12]byte
	done := run(func() (err error) {
		block, ksn, err = c.GetPINAES(ctx, abecs.PINRequest{KeyIndex: 3, PAN: "4111111111111111"})
		return err
	})
	cmd := pad.command()
	if !strings.HasPrefix(cmd, "GPN093403") {
		t.Fatalf("pad got %q, want GPN method 4 key 03", cmd)
	}
	pad.write(abecs.ACK)
	pad.send("GPN000056" + "A912150391AB65A67E52883D81CE2D15" + "123456789012345600000001")
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if block[0] != 0xA9 || block[15] != 0x15 || ksn[11] != 1 || ksn[0] != 0x12 {
		t.Errorf("block %X ksn %X", block, ksn)
	}

	done = run(func() error {
		_, _, err := c.GetPINAES(ctx, abecs.PINRequest{KeyIndex: 3, PAN: "4111111111111111"})
		return err
	})
	pad.command()
	pad.write(abecs.ACK)
	pad.send("GPN042")
	if err := wait(t, done); !errors.Is(err, abecs.ErrKeyMissing) {
		t.Fatalf("042: err = %v", err)
	}

	// A TDES-sized answer to an AES request is a bad response, not a PIN block.
	done = run(func() error { _, _, err := c.GetPINAES(ctx, abecs.PINRequest{PAN: "4111111111111111"}); return err })
	pad.command()
	pad.write(abecs.ACK)
	pad.send("GPN000036" + "1B9C1845EB993A7AFFFF9876543210E00001")
	if err := wait(t, done); !errors.Is(err, abecs.ErrBadResponse) || strings.Contains(err.Error(), "1B9C") {
		t.Fatalf("short answer: err = %v", err)
	}
}

// GOC with PIN method 4: the request says "4", the response carries the 16-byte block and
// 12-byte KSN; the TDES parser refuses it.
func TestGoChipAESLayout(t *testing.T) {
	req := abecs.GoChipRequest{AmountMinor: 1234, KeyIndex: 1, AES: true, Tags: []string{"9F26", "9F27"}}
	blocks, err := abecs.AppendGoChip(req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(blocks[0]), "000000001234"+"000000000000"+"0"+"1"+"4"+"01") {
		t.Fatalf("GOC block %q does not ask for PIN method 4", blocks[0])
	}
	back, err := abecs.ParseGoChip(blocks)
	if err != nil || !back.AES || back.KeyIndex != 1 {
		t.Fatalf("round trip %+v %v", back, err)
	}
	bad := append([]byte(nil), blocks[0]...)
	bad[26] = '5'
	if _, err := abecs.ParseGoChip([][]byte{bad, blocks[1]}); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("PIN method 5: %v", err)
	}

	res := abecs.GoChipResult{Decision: abecs.DecisionOnline, OnlinePIN: true, AES: true,
		AESPINBlock: [16]byte{0xA9, 0x12, 0x15, 0x03, 0x91, 0xAB, 0x65, 0xA6, 0x7E, 0x52, 0x88, 0x3D, 0x81, 0xCE, 0x2D, 0x15},
		AESKSN:      [12]byte{0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0, 0, 0, 1},
		EMVData:     []byte{0x9F, 0x27, 0x01, 0x80}}
	b, err := abecs.AppendGoChipResult(nil, res)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "200001"+"A912150391AB65A67E52883D81CE2D15"+"123456789012345600000001"+"008"+"9F270180"+"000" {
		t.Fatalf("GOC response %q", b)
	}
	got, err := abecs.ParseGoChipResultAES(b)
	if err != nil || got.AESPINBlock != res.AESPINBlock || got.AESKSN != res.AESKSN || !got.AES || !got.OnlinePIN {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if _, err := abecs.ParseGoChipResult(b); !errors.Is(err, abecs.ErrFormat) {
		t.Errorf("TDES parser on an AES response: %v", err)
	}
	if s := got.String(); strings.Contains(s, "A912") {
		t.Errorf("String shows the block: %s", s)
	}
	// Without an online PIN the block and KSN are zeros, and come back zero.
	res.OnlinePIN = false
	b, _ = abecs.AppendGoChipResult(nil, res)
	if got, err := abecs.ParseGoChipResultAES(b); err != nil || got.AESPINBlock != ([16]byte{}) {
		t.Errorf("without online PIN: %+v %v", got, err)
	}
}
