package soft_test

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/soft"
	"github.com/posd-dev/posd/terminal/card"
)

// A simulator's PIN entry under AES DUKPT: the soft backend takes the PIN from a callback
// and returns an ISO 9564 format 4 block with its 12-byte KSN.
func Example() {
	fill, _ := hex.DecodeString("2F69ADDE2E9E7ACE") // fixes the random part, for the published block
	b := soft.New(&soft.Options{
		PINEntry: func(context.Context, hsm.PINRequest) (string, error) { return "1234", nil },
		Rand:     bytesReader(fill),
	})
	m, _ := hsm.New(b, nil)
	ik, _ := hex.DecodeString("1273671EA26AC29AFA4D1084127652A1") // X9.24-3 test initial key
	ksn, _ := hex.DecodeString("123456789012345600000000")
	m.LoadKey(context.Background(), hsm.LoadRequest{ID: "pin", Algorithm: hsm.AES128, Usage: hsm.UsageDUKPT, Components: [][]byte{ik}, KSN: ksn})

	pan, _ := card.ParsePAN("4111111111111111")
	p, _ := m.PINBlock(context.Background(), "pin", pan, "")
	fmt.Printf("%v\n%X\n", p, p.Block())
	// Output:
	// EncryptedPIN{ISO 9564 format 4, KSN 123456789012345600000001, block [hidden]}
	// A912150391AB65A67E52883D81CE2D15
}

type reader []byte

func (r *reader) Read(p []byte) (int, error) { n := copy(p, *r); *r = (*r)[n:]; return n, nil }

func bytesReader(b []byte) *reader { r := reader(b); return &r }
