package main

import (
	"os"
	"runtime"
)

// runOneProc makes posd run's Go code run on one thread at a time (GOMAXPROCS 1) unless
// the environment sets GOMAXPROCS, and returns the number in force.
//
// posd runs one sale at a time, and a sale is a chain of short steps handed from
// goroutine to goroutine (the till's connection, the PIN pad's and the acquirer's read
// loops, the store's writer): with a second P idle, each hand-over woke a second thread
// that spun, found nothing and slept again, about a fifth of posd's CPU per sale, and
// the sale waited for the wake-ups. The cost of one P: work in the background (a batch
// close, an archive run) shares the thread with a sale and is preempted every 10ms at
// most. Set GOMAXPROCS in posd's environment (the systemd unit's Environment=) to give
// it more.
func runOneProc() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(1)
	return 1
}
