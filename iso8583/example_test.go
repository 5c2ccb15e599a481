package iso8583_test

import (
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

// A sale got no answer in time: the terminal reverses it (0400; from the store-and-forward
// queue, 0420 and then 0421 repeats). Field 90 names the original.
func ExampleReversal() {
	pan, _ := card.ParsePAN("4761739001010010")
	sent := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	rev := iso8583.Reversal{
		STAN: 43, TransmissionTime: sent.Add(31 * time.Second),
		OriginalMTI: "0200", OriginalSTAN: 42, OriginalTransmissionTime: sent,
		PAN: pan, AmountMinor: 1234, CurrencyNumeric: "978",
		TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
		ReasonCode: iso8583.ReasonLateResponse,
	}
	m, err := rev.Message()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rev)
	iso8583.Describe(os.Stdout, m)
	// Output:
	// 0400 stan=000043 tid=TERM0001 amount=1234 cur=978 pan=476173******0010 reason=68 original=0200/000042/0314150926
	// MTI 0400
	//   2 primary account number                     476173******0010
	//   3 processing code                            000000
	//   4 amount, transaction                        000000001234
	//   7 transmission date and time                 0314150957
	//  11 systems trace audit number                 000043
	//  39 response code                              68
	//  41 card acceptor terminal identification      TERM0001
	//  42 card acceptor identification code          MERCHANT0000001
	//  49 currency code, transaction                 978
	//  90 original data elements                     0200 000042 0314150926 00000000000 00000000000
}

// An acquirer's dialect comes from a file in moov-io's JSON spec format, with its framing.
// Messages are built once, on the default dialect, and converted for the wire.
func ExampleLoadDialect() {
	d, err := iso8583.LoadDialect("testdata/dialects/bcd87.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	echo, _ := iso8583.NetworkManagement{Code: iso8583.NMEcho, STAN: 7,
		TransmissionTime: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)}.Message()
	wire, err := iso8583.Convert(echo, d.Spec)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := iso8583.Pack(wire)
	fmt.Println(d.Name)
	fmt.Println(hex.EncodeToString(b))
	// Output:
	// ISO 8583:1987 binary (test dialect)
	// 08008220000000000000040000000000000003141509260000070301
}

// Masked JSON of a message, for structured logs.
func ExampleMarshalJSON() {
	m, _ := iso8583.NetworkManagement{Code: iso8583.NMSignOn, STAN: 1,
		TransmissionTime: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC), TerminalID: "TERM0001"}.Message()
	js, _ := iso8583.MarshalJSON(m)
	fmt.Println(string(js))
	// Output:
	// {"0":"0800","7":"0314150926","11":"000001","41":"TERM0001","70":"001"}
}

// A dialect file's "messages" object adds fixed fields to requests and names fields they
// must carry. A Client does this to every request it sends; PrepareRequest shows the result.
func ExampleDialect_PrepareRequest() {
	d, err := iso8583.LoadDialect("dialects/pos-conditions.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	signOn, _ := iso8583.NetworkManagement{Code: iso8583.NMSignOn, STAN: 1,
		TransmissionTime: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC), TerminalID: "TERM0001"}.Message()
	wire, err := d.PrepareRequest(signOn)
	if err != nil {
		fmt.Println(err)
		return
	}
	js, _ := iso8583.MarshalJSON(wire)
	fmt.Println(string(js)) // 24 added; 25, which the file sets on "*", is forbidden in an 0800
	wire.Field(25, "00")
	fmt.Println(d.CheckRequest(wire))
	// Output:
	// {"0":"0800","7":"0314150926","11":"000001","24":"001","41":"TERM0001","70":"001"}
	// iso8583: check field 25: field not allowed: dialect "posd ISO 8583:1987 ASCII, POS condition and NII on every request" forbids it in an 0800
}
