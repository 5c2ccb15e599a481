package pinblock_test

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/posd-dev/posd/hsm/pinblock"
)

// A PIN pad builds a format 0 block and encrypts it under its PIN key; the
// receiver decrypts and decodes it with the same PAN.
func Example() {
	// PIN key for KSN FFFF9876543210E00001 (ANSI X9.24-1:2009 Annex A).
	key, _ := hex.DecodeString("042666B49184CF5C68DE9628D0397B36")

	clearBlock, _ := pinblock.EncodeFormat0("1234", "4012345678909")
	enc, _ := pinblock.EncryptTDES(key, clearBlock)
	fmt.Printf("%s clear %X encrypted %X\n", pinblock.Format0, clearBlock, enc)

	dec, _ := pinblock.DecryptTDES(key, enc)
	pin, err := pinblock.DecodeFormat0(dec, "4012345678909")
	fmt.Println(len(pin), "digits, error:", err)
	// Output:
	// ISO-0 clear 041274EDCBA9876F encrypted 1B9C1845EB993A7A
	// 4 digits, error: <nil>
}

// ISO 9564 format 4 under an AES key: the PIN field is enciphered together
// with the PAN field (X9.24-3-2017 supplement, PIN key for KSN
// 123456789012345600000001).
func Example_format4() {
	key, _ := hex.DecodeString("AF8CB133A78F8DC2D1359F18527593FB")
	random, _ := hex.DecodeString("2F69ADDE2E9E7ACE") // the random field, fixed here

	field, _ := pinblock.Encode(pinblock.Format4, "1234", "", bytes.NewReader(random))
	block, _ := pinblock.EncryptFormat4(key, [16]byte(field), "4111111111111111")
	fmt.Printf("PIN field %X\nblock     %X\n", field, block)

	back, _ := pinblock.DecryptFormat4(key, block, "4111111111111111")
	pin, err := pinblock.Decode(pinblock.Format4, back[:], "4111111111111111")
	fmt.Println(len(pin), "digits, error:", err)
	// Output:
	// PIN field 441234AAAAAAAAAA2F69ADDE2E9E7ACE
	// block     A912150391AB65A67E52883D81CE2D15
	// 4 digits, error: <nil>
}
