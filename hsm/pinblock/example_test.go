package pinblock_test

import (
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
