package iso8583_test

import (
	"fmt"

	"github.com/posd-dev/posd/iso8583"
)

// An AES DUKPT PIN block (ISO 9564 format 4) is 16 bytes: the default dialect's field 52
// cannot carry it, the shipped AES PIN dialect can.
func ExampleCheckPINFields() {
	fmt.Println(iso8583.CheckPINFields(nil, iso8583.AESPINBlockLen, iso8583.AESKSNDigits))

	d, err := iso8583.LoadDialect("dialects/aes-pin.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(iso8583.CheckPINFields(d.Spec, iso8583.AESPINBlockLen, iso8583.AESKSNDigits))
	fmt.Println(iso8583.CheckPINFields(d.Spec, iso8583.TDESPINBlockLen, iso8583.TDESKSNDigits))
	// Output:
	// iso8583: build field 52: invalid length: the PIN block is 16 bytes; field 52 of dialect "posd ISO 8583:1987 ASCII" takes exactly 8
	// <nil>
	// iso8583: build field 52: invalid length: the PIN block is 8 bytes; field 52 of dialect "posd ISO 8583:1987 ASCII, AES PIN blocks" takes exactly 16
}
