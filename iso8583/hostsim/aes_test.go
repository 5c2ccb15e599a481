package hostsim_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// The public AES-128 BDK of the ANSI X9.24-3-2017 supplement and its initial key ID.
const (
	testAESBDKHex = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	testAESKSN0   = "123456789012345600000000"
	aesDialect    = "../dialects/aes-pin.json"
)

func aesBDK(t testing.TB) []byte {
	b, err := hex.DecodeString(testAESBDKHex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// aesPINBlock encrypts pin for pan as an ISO 9564 format 4 block under the AES DUKPT PIN
// key (of type kt) of counter n, as a PIN pad holding bdk's initial key would.
func aesPINBlock(t *testing.T, bdk []byte, kt dukpt.KeyType, pin, pan string, n uint32) ([]byte, string) {
	t.Helper()
	ksn, err := dukpt.ParseAESKSN(testAESKSN0)
	if err != nil {
		t.Fatal(err)
	}
	ksn = ksn.WithCounter(n)
	key, err := dukpt.AESWorkingKey(bdk, ksn, dukpt.UsagePINEncryption, kt)
	if err != nil {
		t.Fatal(err)
	}
	field, err := pinblock.Encode(pinblock.Format4, pin, "", bytes.NewReader(bytes.Repeat([]byte{0x5A}, 8)))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := pinblock.EncryptFormat4(key, [16]byte(field), pan)
	if err != nil {
		t.Fatal(err)
	}
	return enc[:], ksn.String()
}

func rcOf(t *testing.T, s *hostsim.Server, block []byte, ksn, pan string, stan int) string {
	t.Helper()
	m := request(t, "0200", sale(stan, pan, "3012", "000000000100"))
	if err := m.BinaryField(52, block); err != nil {
		t.Fatal(err)
	}
	if err := m.Field(62, ksn); err != nil {
		t.Fatal(err)
	}
	resp := s.Respond(m)
	if resp == nil {
		t.Fatal("no response")
	}
	rc, _ := resp.GetString(39)
	return rc
}

// Format 4 blocks under AES DUKPT: the right PIN approves, a wrong one or one bound to
// another PAN gets 55, and the published X9.24-3 block decrypts to its PIN.
func TestRespondAESPIN(t *testing.T) {
	cards := append(hostsim.DefaultCards(), hostsim.Card{PAN: "4111111111111111", PIN: "1234", BalanceMinor: 100_00, Expiry: "3012"})
	s := newServer(t, hostsim.Options{AESBDK: aesBDK(t), Cards: cards})
	const pan = "4761739001010010"
	for _, tt := range []struct {
		pin  string
		n    uint32
		want string
	}{{"1234", 1, "00"}, {"4321", 2, "55"}, {"12345", 3, "55"}, {"1234", 0x30000, "00"}} {
		block, ksn := aesPINBlock(t, aesBDK(t), dukpt.KeyAES128, tt.pin, pan, tt.n)
		if got := rcOf(t, s, block, ksn, pan, int(300+tt.n%1000)); got != tt.want {
			t.Errorf("PIN %s counter %d: rc = %s, want %s", tt.pin, tt.n, got, tt.want)
		}
	}
	// A block bound to another PAN does not decode for this one.
	block, ksn := aesPINBlock(t, aesBDK(t), dukpt.KeyAES128, "1234", "5413330089020011", 5)
	if got := rcOf(t, s, block, ksn, pan, 310); got != "55" {
		t.Errorf("block of another PAN: rc = %s, want 55", got)
	}
	// A block made under another BDK.
	other := bytes.Repeat([]byte{0x42}, 16)
	block, ksn = aesPINBlock(t, other, dukpt.KeyAES128, "1234", pan, 6)
	if got := rcOf(t, s, block, ksn, pan, 311); got != "55" {
		t.Errorf("block under another BDK: rc = %s, want 55", got)
	}
	// ANSI X9.24-3-2017 supplement: PIN 1234, PAN 4111111111111111, counter 1.
	pub, _ := hex.DecodeString("A912150391AB65A67E52883D81CE2D15")
	if got := rcOf(t, s, pub, "123456789012345600000001", "4111111111111111", 312); got != "00" {
		t.Errorf("published block: rc = %s, want 00", got)
	}
	pub[15] ^= 1
	if got := rcOf(t, s, pub, "123456789012345600000002", "4111111111111111", 313); got != "55" {
		t.Errorf("altered published block: rc = %s, want 55", got)
	}
	// Block and KSN of different variants, a KSN that is not hexadecimal, a 12-byte block.
	block, ksn = aesPINBlock(t, aesBDK(t), dukpt.KeyAES128, "1234", pan, 7)
	for i, tc := range []struct {
		block []byte
		ksn   string
	}{
		{block, "FFFF9876543210E00001"},
		{block[:8], ksn},
		{block, strings.Repeat("G", 24)},
		{block[:12], ksn},
	} {
		if got := rcOf(t, s, tc.block, tc.ksn, pan, 320+i); got != "30" {
			t.Errorf("case %d (%d-byte block, %d-character KSN): rc = %s, want 30", i, len(tc.block), len(tc.ksn), got)
		}
	}
	// A host without a TDES BDK: a TDES block is a format error, not a wrong PIN.
	aesOnly, err := hostsim.NewServer(hostsim.Options{AESBDK: aesBDK(t), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tb, tk := pinBlock(t, "1234", pan, 1)
	if got := rcOf(t, aesOnly, tb, tk, pan, 330); got != "30" {
		t.Errorf("TDES block on an AES-only host: rc = %s, want 30", got)
	}
	// And a host with a TDES BDK only answers an AES block 30.
	tdesOnly := newServer(t, hostsim.Options{})
	if got := rcOf(t, tdesOnly, block, ksn, pan, 331); got != "30" {
		t.Errorf("AES block on a TDES-only host: rc = %s, want 30", got)
	}
	if got := rcOf(t, tdesOnly, tb, tk, pan, 332); got != "00" {
		t.Errorf("TDES block on a TDES host: rc = %s, want 00", got)
	}
}

// AES-256 BDKs, with AES-256 or AES-128 PIN keys: the host derives the key type it is told.
func TestRespondAESPINKeyTypes(t *testing.T) {
	bdk256 := bytes.Repeat([]byte{0x3C, 0xA5}, 16)
	const pan = "4761739001010010"
	for _, kt := range []dukpt.KeyType{dukpt.KeyAES256, dukpt.KeyAES128, dukpt.KeyAES192} {
		opts := hostsim.Options{BDK: bdk(t), AESBDK: bdk256}
		if kt != dukpt.KeyAES256 {
			opts.AESPINKeyType = kt // default: the BDK's type
		}
		s := newServer(t, opts)
		block, ksn := aesPINBlock(t, bdk256, kt, "1234", pan, 1)
		if got := rcOf(t, s, block, ksn, pan, 400); got != "00" {
			t.Errorf("%v PIN key: rc = %s, want 00", kt, got)
		}
		wrong, ksn := aesPINBlock(t, bdk256, kt, "9999", pan, 2)
		if got := rcOf(t, s, wrong, ksn, pan, 401); got != "55" {
			t.Errorf("%v PIN key, wrong PIN: rc = %s, want 55", kt, got)
		}
	}
	// A host told AES-128 does not accept an AES-256 PIN key's block.
	s := newServer(t, hostsim.Options{AESBDK: bdk256, AESPINKeyType: dukpt.KeyAES128})
	block, ksn := aesPINBlock(t, bdk256, dukpt.KeyAES256, "1234", pan, 3)
	if got := rcOf(t, s, block, ksn, pan, 402); got != "55" {
		t.Errorf("AES-256 key's block on an AES-128 host: rc = %s, want 55", got)
	}
}

func TestNewServerChecksAESOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts hostsim.Options
		want string
	}{
		{"AES BDK of 15 bytes", hostsim.Options{AESBDK: make([]byte, 15)}, "AESBDK"},
		{"PIN key stronger than the BDK", hostsim.Options{AESBDK: aesBDK(t), AESPINKeyType: dukpt.KeyAES256}, "AESPINKeyType"},
		{"TDES PIN key", hostsim.Options{AESBDK: aesBDK(t), AESPINKeyType: dukpt.KeyTDES2}, "AESPINKeyType"},
		{"PIN key type without a BDK", hostsim.Options{BDK: bdk(t), AESPINKeyType: dukpt.KeyAES128}, "AESPINKeyType"},
		{"no BDK at all", hostsim.Options{}, "BDK"},
		{"bad TDES BDK beside an AES one", hostsim.Options{BDK: make([]byte, 8), AESBDK: aesBDK(t)}, "BDK must be 16 bytes"},
	} {
		if _, err := hostsim.NewServer(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one naming %s", tt.name, err, tt.want)
		}
	}
	if _, err := hostsim.NewServer(hostsim.Options{AESBDK: aesBDK(t)}); err != nil {
		t.Errorf("AES BDK alone: %v", err)
	}
}

// A terminal's AES PIN sale over TCP in the AES PIN dialect: the 16-byte field 52 and the
// 24-digit KSN cross the wire, the right PIN is approved and a wrong one declined with 55.
func TestAESPINSaleOverTCP(t *testing.T) {
	d, err := iso8583.LoadDialect(aesDialect)
	if err != nil {
		t.Fatal(err)
	}
	s, err := hostsim.NewServer(hostsim.Options{BDK: bdk(t), AESBDK: aesBDK(t), Dialect: d})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go s.Serve(ctx, ln)
	client, err := iso8583.NewClient(iso8583.ClientOptions{Addr: ln.Addr().String(), Dialect: d})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const pan = "4761739001010010"
	for i, tt := range []struct{ pin, want string }{{"1234", "00"}, {"0000", "55"}} {
		block, ksn := aesPINBlock(t, aesBDK(t), dukpt.KeyAES128, tt.pin, pan, uint32(i+1))
		a := auth(t, uint32(500+i), pan, 1_00)
		a.PINBlock, a.KSN, a.Spec = block, ksn, d.Spec
		req, err := a.Message()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Send(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		r, err := iso8583.ParseAuthResponse(resp)
		if err != nil || r.ResponseCode != tt.want {
			t.Errorf("PIN %s: %+v, %v; want rc %s", tt.pin, r, err, tt.want)
		}
	}
	if n := len(s.Ledger()); n != 1 {
		t.Errorf("ledger has %d approvals, want 1", n)
	}
}
