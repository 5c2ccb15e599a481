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

// AES DUKPT (X9.24-3-2017): the PIN pad holds the initial key for its
// initial key ID; the host derives the same PIN key from the BDK and the
// 12-byte KSN the pad sends.
func Example_aes() {
	bdk, _ := hex.DecodeString("FEDCBA9876543210F1F1F1F1F1F1F1F1")
	ksn, _ := dukpt.ParseAESKSN("123456789012345600000000")

	ik, _ := dukpt.AESInitialKey(bdk, ksn.InitialKeyID()) // injected into the pad
	pad, _ := dukpt.NewAESOriginator(ik, ksn, nil)

	padKey, sent, _ := pad.NextPINKey(dukpt.KeyAES128)
	hostKey, _ := dukpt.AESWorkingKey(bdk, sent, dukpt.UsagePINEncryption, dukpt.KeyAES128)

	fmt.Printf("IK   %X\n", ik)
	fmt.Println("KSN", sent)
	fmt.Printf("pad  %X\nhost %X\n", padKey, hostKey)
	// Output:
	// IK   1273671EA26AC29AFA4D1084127652A1
	// KSN 123456789012345600000001
	// pad  AF8CB133A78F8DC2D1359F18527593FB
	// host AF8CB133A78F8DC2D1359F18527593FB
}
