package mac_test

import (
	"crypto/aes"
	"encoding/hex"
	"fmt"

	"github.com/posd-dev/posd/hsm/mac"
)

// An ISO 8583 MAC: the retail MAC for a TDES key, CMAC for an AES key, the
// leftmost 8 bytes in field 64.
func Example() {
	msg := []byte("4012345678909D987")

	tdes, _ := hex.DecodeString("042666B4918430A368DE9628D03984C9") // X9.24-1 A.4.2 request MAC key, KSN ...E00001
	r, _ := mac.RetailMAC(tdes, msg)
	fmt.Printf("retail %X\n", r)

	key, _ := hex.DecodeString("2B7E151628AED2A6ABF7158809CF4F3C") // RFC 4493
	c, _ := aes.NewCipher(key)
	fmt.Printf("cmac   %X\n", mac.CMAC(c, nil)[:8])
	// Output:
	// retail 9CCC78173FC4FB64
	// cmac   BB1D6929E9593728
}
