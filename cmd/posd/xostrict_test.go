package main

import "github.com/posd-dev/posd/iso8583/hostsim"

// strictHost makes the exactly-once test's acquirer identify every message by terminal id,
// STAN and field 7 (transmission time) only, the key field 90 uses: a resend that takes a
// new field 7 is a new transaction to it, and books the sale a second time. This is the one
// place the test names the strict mode (hostsim.Options.MatchBy, acquirer-sim
// --match-by transmission), so that it can follow that API if it changes.
func strictHost(o *hostsim.Options) bool {
	o.MatchBy = hostsim.MatchTransmission
	return true
}
