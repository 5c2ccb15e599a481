package card_test

import (
	"fmt"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

func ExampleParseSwipe() {
	sw, err := card.ParseSwipe("", ";4761739001010010=30121011234567890?")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sw.PAN(), sw.Track2.Expiry(), sw.Track2.ServiceCode())
	fmt.Println(sw.CheckSale(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), false))
	// Output:
	// 476173******0010 12/30 101
	// card: expired (valid through 12/30)
}
