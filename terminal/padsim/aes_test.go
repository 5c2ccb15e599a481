package padsim_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
)

// The public AES-128 BDK and initial KSN of the ANSI X9.24-3-2017 supplement.
const (
	testAESBDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	testAESKSN = "123456789012345600000000"
	aesPAN     = "4111111111111111"
)

func aesOpts(t testing.TB, kt dukpt.KeyType, bdkHex string) padsim.Options {
	t.Helper()
	b, err := hex.DecodeString(bdkHex)
	if err != nil {
		t.Fatal(err)
	}
	k, err := dukpt.ParseAESKSN(testAESKSN)
	if err != nil {
		t.Fatal(err)
	}
	return padsim.Options{BDK: b, KeyType: kt, AESKSN: k}
}

// decryptAES is the receiving side: BDK -> the PIN key of ksn -> format 4 -> PIN.
func decryptAES(t *testing.T, bdkHex string, kt dukpt.KeyType, block [16]byte, ksn [12]byte, pan string) string {
	t.Helper()
	b, _ := hex.DecodeString(bdkHex)
	key, err := dukpt.AESWorkingKey(b, dukpt.AESKSN(ksn), dukpt.UsagePINEncryption, kt)
	if err != nil {
		t.Fatal(err)
	}
	field, err := pinblock.DecryptFormat4(key, block, pan)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := pinblock.Decode(pinblock.Format4, field[:], pan)
	if err != nil {
		t.Fatalf("the block does not decode: %v", err)
	}
	return pin
}

const aesSaleScript = `{"events":[{"pin":"1234"},{"pin":"987654"},{"pin":"4321"}]}`

// A pad with an AES DUKPT key answers GPN method 4 with format 4 blocks that the hsm/dukpt
// receiver decrypts to the PIN typed, one counter per block; method 3 gets 042 and takes no
// PIN.
func TestAESPINBlocks(t *testing.T) {
	r := newRig(t, aesSaleScript, rigOpts{padOpts: aesOpts(t, dukpt.KeyAES128, testAESBDK)})
	ctx := context.Background()
	req := abecs.PINRequest{KeyIndex: 1, PAN: aesPAN, Timeout: 2 * time.Second}

	if _, _, err := r.client.GetPIN(ctx, req); !errors.Is(err, abecs.ErrKeyMissing) {
		t.Fatalf("TDES GPN on an AES pad: %v, want ErrKeyMissing", err)
	}
	seen := map[string]bool{}
	for i, want := range []string{"1234", "987654", "4321"} {
		block, ksn, err := r.client.GetPINAES(ctx, req)
		if err != nil {
			t.Fatalf("GetPINAES %d: %v", i+1, err)
		}
		k := dukpt.AESKSN(ksn)
		if k.InitialKeyID() != [8]byte{0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56} || k.Counter() != uint32(i+1) {
			t.Errorf("block %d: KSN %v, want initial key ID 1234567890123456 and counter %d", i+1, k, i+1)
		}
		if got := decryptAES(t, testAESBDK, dukpt.KeyAES128, block, ksn, aesPAN); got != want {
			t.Errorf("block %d decrypts to a %d-digit PIN that is not the one typed", i+1, len(got))
		}
		// The same block does not decode for another PAN.
		bk, _ := hex.DecodeString(testAESBDK)
		key, _ := dukpt.AESWorkingKey(bk, k, dukpt.UsagePINEncryption, dukpt.KeyAES128)
		field, _ := pinblock.DecryptFormat4(key, block, "4761739001010010")
		if _, err := pinblock.Decode(pinblock.Format4, field[:], "4761739001010010"); err == nil {
			t.Errorf("block %d decodes for another PAN", i+1)
		}
		seen[hex.EncodeToString(block[:])] = true
		if i == 0 {
			// The published X9.24-3 vector: the first block's PIN key is AF8C...93FB.
			if got := strings.ToUpper(hex.EncodeToString(key)); got != "AF8CB133A78F8DC2D1359F18527593FB" {
				t.Errorf("PIN key of counter 1 %s", got)
			}
		}
	}
	if len(seen) != 3 {
		t.Error("blocks repeat")
	}
	if got := r.pad.AESKSN().Counter(); got != 3 {
		t.Errorf("pad KSN counter %d, want 3", got)
	}
	if r.pad.KSN() != (dukpt.KSN{}) {
		t.Error("an AES pad reports a TDES KSN")
	}
	if s := r.pad.KeySerial(); !strings.Contains(s, "AES-128") || !strings.Contains(s, "123456789012345600000003") {
		t.Errorf("KeySerial() = %q", s)
	}
	if strings.Contains(strings.ToUpper(r.log.String()), testAESBDK) {
		t.Error("the log shows the BDK")
	}
	for b := range seen {
		if strings.Contains(strings.ToLower(r.log.String()), b) {
			t.Error("the log shows a PIN block")
		}
	}
}

// A TDES pad refuses an AES request with 042 and keeps the PIN event for the next GPN.
func TestTDESPadRefusesAES(t *testing.T) {
	r := newRig(t, `{"events":[{"pin":"1234"}]}`, rigOpts{})
	ctx := context.Background()
	req := abecs.PINRequest{KeyIndex: 1, PAN: vectorPAN, Timeout: 2 * time.Second}
	if _, _, err := r.client.GetPINAES(ctx, req); !errors.Is(err, abecs.ErrKeyMissing) {
		t.Fatalf("AES GPN on a TDES pad: %v, want ErrKeyMissing", err)
	}
	block, _, err := r.client.GetPIN(ctx, req)
	if err != nil || strings.ToUpper(hex.EncodeToString(block[:])) != vectorEPB1 {
		t.Fatalf("GetPIN after the refusal: %X, %v; want the counter 1 vector", block, err)
	}
}

// AES-256 and AES-192 keys: the PIN key has the key's type.
func TestAESKeyTypes(t *testing.T) {
	for _, tt := range []struct {
		kt  dukpt.KeyType
		bdk string
	}{
		{dukpt.KeyAES256, strings.Repeat("0123456789ABCDEF", 4)},
		{dukpt.KeyAES192, strings.Repeat("0123456789ABCDEF", 3)},
	} {
		t.Run(tt.kt.String(), func(t *testing.T) {
			r := newRig(t, `{"events":[{"pin":"5678"}]}`, rigOpts{padOpts: aesOpts(t, tt.kt, tt.bdk)})
			block, ksn, err := r.client.GetPINAES(context.Background(), abecs.PINRequest{PAN: aesPAN, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if got := decryptAES(t, tt.bdk, tt.kt, block, ksn, aesPAN); got != "5678" {
				t.Error("the block does not decrypt to the PIN typed")
			}
		})
	}
}

// The AES counter survives a restart in the state file (24 hex digits), is saved before it
// is used, and a state file of another key stops New.
func TestAESStatePersists(t *testing.T) {
	state := filepath.Join(t.TempDir(), "pad.state")
	opts := aesOpts(t, dukpt.KeyAES128, testAESBDK)
	opts.StatePath = state
	for run, want := range []uint32{1, 2} {
		r := newRig(t, `{"events":[{"pin":"1234"}]}`, rigOpts{padOpts: opts})
		_, ksn, err := r.client.GetPINAES(context.Background(), abecs.PINRequest{PAN: aesPAN, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if c := dukpt.AESKSN(ksn).Counter(); c != want {
			t.Errorf("run %d: counter %d, want %d", run+1, c, want)
		}
		b, err := os.ReadFile(state)
		if err != nil || strings.TrimSpace(string(b)) != dukpt.AESKSN(ksn).String() {
			t.Errorf("run %d: state file %q, %v", run+1, b, err)
		}
	}
	// Another initial key ID.
	other := opts
	other.AESKSN = dukpt.NewAESKSN([8]byte{1, 2, 3, 4, 5, 6, 7, 8}, 0)
	if _, err := padsim.New(nil, &other); err == nil || !strings.Contains(err.Error(), state) {
		t.Errorf("state of another key: %v", err)
	}
	// A TDES state file.
	os.WriteFile(state, []byte("FFFF9876543210E00005\n"), 0o600)
	if _, err := padsim.New(nil, &opts); err == nil {
		t.Error("a TDES state file accepted for an AES key")
	}
	// And the TDES pad refuses an AES state file.
	os.WriteFile(state, []byte("123456789012345600000005\n"), 0o600)
	tdes := padsim.Options{BDK: bdk(t), KSN: ksn0(t), StatePath: state}
	if _, err := padsim.New(nil, &tdes); err == nil {
		t.Error("an AES state file accepted for a TDES key")
	}
}

// The counter skips values with more than 16 one bits, as X9.24-3 requires.
func TestAESCounterSkips(t *testing.T) {
	opts := aesOpts(t, dukpt.KeyAES128, testAESBDK)
	opts.AESKSN = opts.AESKSN.WithCounter(0x0001FFFE) // 16 one bits; +1 would have 17
	r := newRig(t, `{"events":[{"pin":"1234"}]}`, rigOpts{padOpts: opts})
	block, ksn, err := r.client.GetPINAES(context.Background(), abecs.PINRequest{PAN: aesPAN, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c := dukpt.AESKSN(ksn).Counter(); c != 0x00020000 {
		t.Errorf("counter after 0x1FFFE is %#x, want 0x20000", c)
	}
	if decryptAES(t, testAESBDK, dukpt.KeyAES128, block, ksn, aesPAN) != "1234" {
		t.Error("wrong PIN")
	}
}

func TestNewAESErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts padsim.Options
		want string
	}{
		{"AES-256 with a 16-byte BDK", aesOpts(t, dukpt.KeyAES256, testAESBDK), "32-byte BDK"},
		{"3TDEA", padsim.Options{BDK: bytes.Repeat([]byte{1}, 24), KeyType: dukpt.KeyTDES3}, "key type"},
		{"unknown type", padsim.Options{BDK: bytes.Repeat([]byte{1}, 16), KeyType: dukpt.KeyType(42)}, "key type"},
	} {
		if _, err := padsim.New(nil, &tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

// A chip card's online PIN on an AES pad: GOC with PIN method 4 gets a format 4 block the
// receiver decrypts; GOC with method 3 gets 042.
func TestChipOnlinePINAES(t *testing.T) {
	card := `{"pan":"` + pan + `","expiry":"251231","online_pin":true}`
	r := newRig(t, insertScript(card, `{"pin":"2468"}`), rigOpts{padOpts: aesOpts(t, dukpt.KeyAES128, testAESBDK)})
	ctx := context.Background()
	if _, err := r.client.GetCard(ctx, abecs.CardRequest{AmountMinor: 100, Timeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	req := abecs.GoChipRequest{AmountMinor: 100, KeyIndex: 1, Tags: []string{"9F26", "9F27"}, Timeout: 2 * time.Second}
	if _, err := r.client.GoOnChip(ctx, req); !errors.Is(err, abecs.ErrKeyMissing) {
		t.Fatalf("GOC method 3 on an AES pad: %v, want ErrKeyMissing", err)
	}
	req.AES = true
	res, err := r.client.GoOnChip(ctx, req)
	if err != nil || !res.OnlinePIN || !res.AES {
		t.Fatalf("GOC method 4: %v %v", res, err)
	}
	if got := decryptAES(t, testAESBDK, dukpt.KeyAES128, res.AESPINBlock, res.AESKSN, pan); got != "2468" {
		t.Error("the online PIN does not decrypt to the PIN typed")
	}
	if res.PINBlock != ([8]byte{}) {
		t.Error("a TDES block beside the AES one")
	}
}
