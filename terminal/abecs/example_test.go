package abecs_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/padsim"
	"github.com/posd-dev/posd/terminal/ptypair"
)

// Framing is symmetric: what AppendFrame writes, a Decoder reads back, past
// any noise before it.
func ExampleAppendFrame() {
	frame, _ := abecs.AppendFrame(nil, []byte("OPN"))
	fmt.Printf("% X\n", frame)

	d := abecs.NewDecoder(bytes.NewReader(append([]byte("noise"), frame...)))
	ev, _ := d.Next()
	fmt.Println(ev.Kind, string(ev.Data), ev.Err, d.Skipped())
	// Output:
	// 16 4F 50 4E 17 A8 A9
	// packet OPN <nil> 5
}

// A terminal's conversation with its PIN pad, here a simulated one on the
// other end of a pseudo-terminal pair.
func ExampleClient() {
	link, err := ptypair.Open()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer link.Close()
	bdk, _ := hex.DecodeString("0123456789ABCDEFFEDCBA9876543210") // public test key
	ksn, _ := dukpt.ParseKSN("FFFF9876543210E00000")
	script, _ := padsim.ParseScript([]byte(`{"events":[{"swipe":{"track2":"4761739001010010=25122011234000001230"}}]}`))
	pad, _ := padsim.New(script, &padsim.Options{BDK: bdk, KSN: ksn})
	padPort, _ := abecs.OpenSerial(link.B, 0)
	defer padPort.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pad.Serve(ctx, padPort)

	c, err := abecs.Dial(link.A, 19200, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.Open(ctx); err != nil {
		fmt.Println(err)
		return
	}
	c.Display(ctx, "TOTAL", "12.34")
	card, err := c.GetCard(ctx, abecs.CardRequest{AmountMinor: 1234, Timeout: 30 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(card, card.Expiry())
	_, err = c.GetCard(ctx, abecs.CardRequest{Timeout: time.Second})
	fmt.Println(err) // the script has no second card
	fmt.Println(c.Finish(ctx, "THANK YOU"))
	// Output:
	// card 476173******0010 (magstripe) 2512
	// abecs: GCR: pad status 012: timed out waiting for the cardholder
	// <nil>
}
