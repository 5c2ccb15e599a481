package hsmtest_test

import (
	"context"
	"fmt"
	"io"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/hsmtest"
	"github.com/posd-dev/posd/hsm/soft"
)

// Running the suite against the soft backend, as a backend's test does.
func Example() {
	rep, err := hsmtest.Run(context.Background(), hsmtest.Config{
		Open: func(entry func(context.Context, hsm.PINRequest) (string, error), fill io.Reader) (hsm.Driver, error) {
			return soft.New(&soft.Options{PINEntry: entry, Rand: fill}), nil
		},
	})
	fmt.Println(len(rep) > 40, len(rep.Unsupported()), err)
	// Output:
	// true 0 <nil>
}
