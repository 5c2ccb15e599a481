package hsm_test

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/terminal/card"
)

// A Module over the soft backend: a technician loads the keys, then posd asks for PIN
// blocks, MACs and sealed records by key id, and never sees a key.
func Example() {
	ctx := context.Background()
	pinEntry := func(context.Context, hsm.PINRequest) (string, error) { return "1234", nil } // the simulated pad
	m, _ := hsm.New(soft.New(&soft.Options{PINEntry: pinEntry}), nil)

	ik, _ := hex.DecodeString("6AC292FAA1315B4D858AB3A3D7D5933A") // X9.24-1 test IPEK
	ksn, _ := hex.DecodeString("FFFF9876543210E00000")
	info, _ := m.LoadKey(ctx, hsm.LoadRequest{ID: "pin", Algorithm: hsm.TDES2, Usage: hsm.UsageDUKPT, Components: [][]byte{ik}, KSN: ksn})
	fmt.Println(info)
	macKey, _ := hex.DecodeString("2B7E151628AED2A6ABF7158809CF4F3C")
	m.LoadKey(ctx, hsm.LoadRequest{ID: "mac", Algorithm: hsm.AES128, Usage: hsm.UsageMAC, Components: [][]byte{macKey}})
	dataKey, _ := hex.DecodeString("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4")
	m.LoadKey(ctx, hsm.LoadRequest{ID: "data", Algorithm: hsm.AES256, Usage: hsm.UsageData, Components: [][]byte{dataKey}})

	pan, _ := card.ParsePAN("4012345678909")
	p, _ := m.PINBlock(ctx, "", pan, "12.50 EUR")
	fmt.Println(p)
	fmt.Printf("field 52 %X, KSN %s\n", p.Block(), p.KSNHex())

	mac, _ := m.MAC(ctx, "", nil)
	fmt.Printf("MAC %X\n", mac)

	sealed, _ := m.Seal(ctx, "", []byte("track 2 data"), []byte("txn 42"))
	back, err := m.Open(ctx, "", sealed, []byte("txn 42"))
	fmt.Printf("%s %v\n", back, err)
	_, err = m.Open(ctx, "", sealed, []byte("txn 43"))
	fmt.Println(err)
	// Output:
	// pin: TDES-2key DUKPT initial key, KCV AF8C07 (legacy), KSN FFFF9876543210E00000, 1048575 transactions left
	// EncryptedPIN{ISO 9564 format 0, KSN FFFF9876543210E00001, block [hidden]}
	// field 52 1B9C1845EB993A7A, KSN FFFF9876543210E00001
	// MAC BB1D6929E9593728
	// track 2 data <nil>
	// hsm: sealed data does not open (soft)
}
