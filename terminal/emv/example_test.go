package emv_test

import (
	"encoding/hex"
	"fmt"

	"github.com/posd-dev/posd/terminal/emv"
)

// From the PIN pad's GOC data to field 55 and the card data of the
// authorization; what is printed is masked.
func Example() {
	goc, err := hex.DecodeString("9F2608C2A1B3D4E5F60718" + "9F270180" + "9F100706010A03A00000" +
		"9F36020011" + "82023C00" + "9F370411223344" + "95050000008000" + "9A03250314" + "9C0100" +
		"9F0206000000001234" + "5F2A020978" + "9F1A020250" + "5A084761739001010010" + "5F2403251231" + "5F340101")
	if err != nil {
		fmt.Println(err)
		return
	}
	data, err := emv.Parse(goc)
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := emv.ExtractCard(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	psn, _ := c.PANSequence()
	fmt.Println(c, c.Expiry(), "field 23:", psn)
	de55, err := emv.BuildDE55(data)
	fmt.Println(len(de55), "bytes of field 55,", err)
	fmt.Println(emv.Describe(de55))

	issuer, _, _ := emv.IssuerData([]byte{0x8A, 0x02, '0', '0', 0x91, 0x08, 1, 2, 3, 4, 5, 6, 7, 8})
	fmt.Println("for FNC:", emv.Describe(issuer))
	// Output:
	// chip card 476173******0010 12/25 field 23: 001
	// 79 bytes of field 55, <nil>
	// emv[9F26(8 bytes) 9F27=80 9F10=06010A03A00000 9F36=0011 82=3C00 5F34=01 9F37=11223344 95=0000008000 9A=250314 9C=00 9F02=000000001234 5F2A=0978 9F1A=0250]
	// for FNC: emv[91(8 bytes)]
}
