package dukpt_test

import (
	"crypto/des"
	"encoding/hex"
	"fmt"

	"github.com/posd-dev/posd/hsm/dukpt"
)

// A PIN pad (the originator) and a host (the receiver) derive the same PIN
// key for each transaction from different secrets: the pad from its initial
// key, the host from the base derivation key and the KSN the pad sent.
func Example() {
	bdk, _ := hex.DecodeString("0123456789ABCDEFFEDCBA9876543210")
	ksn, _ := dukpt.ParseKSN("FFFF9876543210E00000")

	ipek, _ := dukpt.TDESInitialKey(bdk, ksn) // injected into the pad
	pad, _ := dukpt.NewOriginator(ipek, ksn)

	padKey, sent, _ := pad.NextPINKey()
	hostKey, _ := dukpt.TDESPINKey(bdk, sent)

	clearBlock, _ := hex.DecodeString("041274EDCBA9876F") // PIN 1234, PAN 4012345678909
	fmt.Println("KSN", sent, "counter", sent.Counter())
	fmt.Printf("pad  %X\n", encrypt(padKey, clearBlock))
	fmt.Printf("host %X\n", encrypt(hostKey, clearBlock))
	// Output:
	// KSN FFFF9876543210E00001 counter 1
	// pad  1B9C1845EB993A7A
	// host 1B9C1845EB993A7A
}

func encrypt(key16, block []byte) []byte {
	c, _ := des.NewTripleDESCipher(append(append([]byte{}, key16...), key16[:8]...))
	out := make([]byte, 8)
	c.Encrypt(out, block)
	return out
}
