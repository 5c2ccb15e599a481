// Command hsmctl is a key and PIN calculator for payment engineers, in the manner of the
// crypto calculators of the trade: DUKPT (TDES, ANSI X9.24-1; AES, ANSI X9.24-3), ISO 9564
// PIN blocks, key check values and TR-31 key blocks. It works on its own, with keys typed on
// the command line; it is for test keys and key ceremonies on an offline machine, not for
// production keys on a networked one.
//
// Hex goes in in any case and comes out in uppercase; the result is alone on the last line
// of standard output, after any description lines. Bad input exits with status 2 and one
// line on standard error saying what is wrong; a failed operation (a block that does not
// decode, a MAC that does not verify) exits with status 1.
//
//	hsmctl dukpt ipek --bdk HEX --ksn HEX
//	hsmctl dukpt key --bdk HEX --ksn HEX [--usage pin|mac|mac-response|data|data-response|...] [--key-type T]
//	hsmctl dukpt encrypt-pin --bdk HEX --ksn HEX --pin DIGITS --pan DIGITS [--fill HEX] [--key-type T]
//	hsmctl dukpt decrypt-pin --bdk HEX --ksn HEX --block HEX --pan DIGITS [--key-type T]
//	hsmctl pinblock encode --format 0|1|3|4 --pin DIGITS [--pan DIGITS] [--fill HEX] [--key HEX]
//	hsmctl pinblock decode --format 0|1|3|4 --block HEX [--pan DIGITS] [--key HEX]
//	hsmctl kcv --key HEX [--aes] [--cmac]
//	hsmctl tr31 unwrap --kbpk HEX --block STRING
//	hsmctl tr31 wrap --kbpk HEX --key HEX --header HEADER [--ks HEX] [--ik HEX]
//	hsmctl mac --alg retail|x9.19|aes-cmac|dukpt-request|dukpt-response --key-file FILE [--ksn HEX] (--data-hex HEX | --file FILE) [--length N]
//
// hsmctl mac reads its key from a file, never from the command line; hsmctl mac -h prints
// its usage.
//
// The DUKPT variant follows from the KSN: 20 hex digits for TDES, 24 for AES. For AES DUKPT
// the working key's type defaults to the BDK's and --key-type (aes128, aes192, aes256,
// tdes2, tdes3) changes it; PIN blocks are ISO 9564 format 4 under AES working keys and
// format 0 under TDES ones.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: hsmctl COMMAND ...
  dukpt ipek        --bdk HEX --ksn HEX
  dukpt key         --bdk HEX --ksn HEX [--usage U] [--key-type T]
  dukpt encrypt-pin --bdk HEX --ksn HEX --pin DIGITS --pan DIGITS [--fill HEX] [--key-type T]
  dukpt decrypt-pin --bdk HEX --ksn HEX --block HEX --pan DIGITS [--key-type T]
  pinblock encode   --format 0|1|3|4 --pin DIGITS [--pan DIGITS] [--fill HEX] [--key HEX]
  pinblock decode   --format 0|1|3|4 --block HEX [--pan DIGITS] [--key HEX]
  kcv               --key HEX [--aes] [--cmac]
  tr31 unwrap       --kbpk HEX --block STRING
  tr31 wrap         --kbpk HEX --key HEX --header HEADER [--ks HEX] [--ik HEX]
  mac               --alg retail|aes-cmac|dukpt-request|dukpt-response --key-file FILE
                    [--ksn HEX] (--data-hex HEX | --file FILE) [--length N]   (hsmctl mac -h)
`

// exit statuses
const (
	exitOK     = 0
	exitFailed = 1 // the operation failed on valid input
	exitUsage  = 2 // bad input
)

// inputError is bad input: exit status 2.
type inputError struct{ msg string }

func (e inputError) Error() string { return e.msg }

func bad(format string, a ...any) error { return inputError{fmt.Sprintf(format, a...)} }

// run is hsmctl with its arguments and output streams; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var (
		lines []string
		err   error
	)
	cmd := args[0]
	sub := ""
	if len(args) > 1 {
		sub = args[1]
	}
	switch {
	case cmd == "dukpt" && len(args) > 1:
		lines, err = dukptCmd(sub, args[2:])
	case cmd == "pinblock" && len(args) > 1:
		lines, err = pinblockCmd(sub, args[2:])
	case cmd == "kcv":
		lines, err = kcvCmd(args[1:])
	case cmd == "mac":
		lines, err = macCmd(args[1:])
	case cmd == "tr31" && len(args) > 1:
		lines, err = tr31Cmd(sub, args[2:])
	default:
		err = bad("unknown command %q; run hsmctl help", cmd)
	}
	if err != nil {
		fmt.Fprintf(stderr, "hsmctl: %v\n", err)
		if _, ok := err.(inputError); ok {
			return exitUsage
		}
		return exitFailed
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return exitOK
}
