package hsm_test

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/hsm/tr31"
)

// The KBPK of the TR-31 version A example (REFERENCE.md), used as the KEK.
const testKEK = "89E88CF7931444F334BD7547FC3F380C"

func workingKeyRig(t *testing.T) (*hsm.Module, []byte, *[]hsm.AuditEvent) {
	t.Helper()
	var events []hsm.AuditEvent
	m, err := hsm.New(soft.New(nil), &hsm.Options{Audit: func(e hsm.AuditEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	kek, _ := hex.DecodeString(testKEK)
	if _, err := m.LoadKey(context.Background(), hsm.LoadRequest{ID: "kek", Algorithm: hsm.TDES2, Usage: hsm.UsageKBPK, Components: [][]byte{kek}}); err != nil {
		t.Fatal(err)
	}
	return m, kek, &events
}

// wrapWorking wraps key under kek in a version B block of the usage, and returns it with
// the key's legacy check value.
func wrapWorking(t *testing.T, kek []byte, usage string, key []byte) (string, []byte) {
	t.Helper()
	blk, err := tr31.Wrap(kek, tr31.Header{Version: 'B', KeyUsage: usage, Algorithm: 'T', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'N'}, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	cv, err := kcv.TDES(key, kcv.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	return blk, cv
}

func TestImportWorkingKey(t *testing.T) {
	ctx := context.Background()
	m, kek, events := workingKeyRig(t)
	key1, _ := hex.DecodeString("0123456789ABCDEFFEDCBA9876543210")
	key2, _ := hex.DecodeString("F039121BEC83D26B169BDCD5B22AAF8F")
	blk1, cv1 := wrapWorking(t, kek, "M3", key1)
	blk2, cv2 := wrapWorking(t, kek, "M3", key2)

	info, err := m.ImportWorkingKey(ctx, hsm.WorkingKeyRequest{ID: "mac.g1", KBPKID: "kek", Block: blk1, Usage: hsm.UsageMAC, CheckValue: cv1})
	if err != nil {
		t.Fatal(err)
	}
	if info.Usage != hsm.UsageMAC || info.Algorithm != hsm.TDES2 || !strings.EqualFold(info.CheckValue.String(), hex.EncodeToString(cv1)) {
		t.Fatalf("imported %v", info)
	}
	// The imported key MACs like the clear key: ISO 9797-1 B.4's vector.
	got, err := m.MAC(ctx, "mac.g1", []byte("Now is the time for all "))
	if err != nil || strings.ToUpper(hex.EncodeToString(got)) != "A1C72E74EA3FA9B6" {
		t.Fatalf("MAC under the imported key: %X, %v", got, err)
	}

	tampered := []byte(blk2)
	tampered[len(tampered)-1] ^= 1 // last hex digit of the block's MAC
	if tampered[len(tampered)-1] > 'F' || tampered[len(tampered)-1] < '0' {
		tampered[len(tampered)-1] = '0'
	}
	p0, cvP := wrapWorking(t, kek, "P0", key2)
	for _, c := range []struct {
		name string
		req  hsm.WorkingKeyRequest
		want error
	}{
		{"wrong KCV", hsm.WorkingKeyRequest{Block: blk2, Usage: hsm.UsageMAC, CheckValue: cv1}, hsm.ErrCheckValue},
		{"no KCV", hsm.WorkingKeyRequest{Block: blk2, Usage: hsm.UsageMAC}, hsm.ErrCheckValue},
		{"wrong usage", hsm.WorkingKeyRequest{Block: p0, Usage: hsm.UsageMAC, CheckValue: cvP}, hsm.ErrKeyUsage},
		{"MAC key for PIN", hsm.WorkingKeyRequest{Block: blk2, Usage: hsm.UsagePIN, CheckValue: cv2}, hsm.ErrKeyUsage},
		{"tampered block", hsm.WorkingKeyRequest{Block: string(tampered), Usage: hsm.UsageMAC, CheckValue: cv2}, nil},
		{"into the id in use", hsm.WorkingKeyRequest{ID: "mac", Block: blk2, Usage: hsm.UsageMAC, CheckValue: cv2}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.req.ID == "" {
				c.req.ID = "mac.g2"
			}
			c.req.KBPKID = "kek"
			n := len(*events)
			_, err := m.ImportWorkingKey(ctx, c.req)
			if err == nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if strings.Contains(err.Error(), hex.EncodeToString(key2)) || strings.Contains(strings.ToUpper(err.Error()), "F039121BEC83D26B") {
				t.Errorf("the error shows the key: %v", err)
			}
			if _, err := m.KeyInfo(ctx, c.req.ID); !errors.Is(err, hsm.ErrUnknownKey) {
				t.Errorf("key %s after a refused import: %v", c.req.ID, err)
			}
			// The old generation stays, as it was.
			if info, err := m.KeyInfo(ctx, "mac.g1"); err != nil || !strings.EqualFold(info.CheckValue.String(), hex.EncodeToString(cv1)) {
				t.Errorf("mac.g1 after a refused import: %v, %v", info, err)
			}
			if len(*events) != n+1 || (*events)[n].Op != "import-working-key" || (*events)[n].Err == "" {
				t.Errorf("audit: %+v", (*events)[n:])
			}
		})
	}
	// A later good block replaces nothing in use: it is a new generation.
	if _, err := m.ImportWorkingKey(ctx, hsm.WorkingKeyRequest{ID: "mac.g2", KBPKID: "kek", Block: blk2, Usage: hsm.UsageMAC, CheckValue: cv2}); err != nil {
		t.Fatal(err)
	}
}

func TestGenerationID(t *testing.T) {
	for gen, id := range map[uint64]string{0: "mac", 1: "mac.g1", 12: "mac.g12"} {
		if got := hsm.GenerationID("mac", gen); got != id {
			t.Errorf("GenerationID(mac, %d) = %q", gen, got)
		}
		if got, err := hsm.ParseGeneration("mac", id); err != nil || got != gen {
			t.Errorf("ParseGeneration(mac, %q) = %d, %v", id, got, err)
		}
	}
	for _, id := range []string{"pin", "mac.g0", "mac.g01", "mac.gx", "mac.g", "macg1"} {
		if _, err := hsm.ParseGeneration("mac", id); !errors.Is(err, hsm.ErrGeneration) {
			t.Errorf("ParseGeneration(mac, %q): %v", id, err)
		}
	}
}
