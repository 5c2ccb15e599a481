package main

import (
	"crypto/aes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/mac"
)

const macUsage = `usage: hsmctl mac --alg retail|x9.19|aes-cmac|dukpt-request|dukpt-response --key-file FILE
                 [--ksn HEX] (--data-hex HEX | --file FILE) [--length N]

Prints the MAC of the data, in hex, on the last line:
  retail, x9.19   ISO 9797-1 MAC algorithm 3 (ANSI X9.19), padding method 1; the key file
                  holds a double-length TDES key (32 hex digits). 8 bytes.
  aes-cmac        CMAC (NIST SP 800-38B); an AES key (32, 48 or 64 hex digits). 16 bytes.
  dukpt-request   the retail MAC under the TDES DUKPT (ANSI X9.24-1) MAC request or
  dukpt-response  response variant of the transaction key of --ksn (20 hex digits); the key
                  file holds the BDK. 4 bytes, as X9.24 gives them.
--length keeps the N leftmost bytes (4 to the MAC's size). The key is read from a file
(hex digits; whitespace ignored), never from the command line.
`

// macCmd computes a MAC: retail, AES-CMAC, or DUKPT request/response MAC.
func macCmd(args []string) ([]string, error) {
	if slices.Contains(args, "-h") || slices.Contains(args, "--help") || slices.Contains(args, "-help") {
		return strings.Split(strings.TrimRight(macUsage, "\n"), "\n"), nil
	}
	fs := flagSet("mac")
	algS := fs.String("alg", "", "algorithm")
	keyFile := fs.String("key-file", "", "key file")
	ksnS := fs.String("ksn", "", "DUKPT key serial number")
	dataS := fs.String("data-hex", "", "data in hex")
	dataFile := fs.String("file", "", "data file")
	length := fs.Int("length", 0, "MAC bytes to keep")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	var data []byte
	switch {
	case (*dataS == "") == (*dataFile == ""):
		return nil, bad("mac: give exactly one of --data-hex and --file")
	case *dataS != "":
		b, err := hexArg("data-hex", *dataS)
		if err != nil {
			return nil, err
		}
		data = b
	default:
		b, err := readLimited(*dataFile, 1<<20)
		if err != nil {
			return nil, bad("--file: %v", err)
		}
		data = b
	}
	if *keyFile == "" {
		return nil, bad("--key-file is required (the key is never given on the command line)")
	}
	raw, err := readLimited(*keyFile, 1024)
	if err != nil {
		return nil, bad("--key-file: %v", err)
	}
	defer clear(raw)
	key, err := hex.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	defer clear(key)
	if err != nil {
		return nil, bad("--key-file %s: not hexadecimal digits", *keyFile)
	}
	if *ksnS != "" && !strings.HasPrefix(*algS, "dukpt-") {
		return nil, bad("--ksn goes with --alg dukpt-request or dukpt-response")
	}
	var out []byte
	var what string
	switch *algS {
	case "retail", "x9.19":
		if len(key) != 16 {
			return nil, bad("--key-file: a %d-byte key; the retail MAC takes a double-length TDES key (32 hex digits)", len(key))
		}
		out, err = mac.RetailMAC(key, data)
		what = "ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC)"
	case "aes-cmac":
		if len(key) != 16 && len(key) != 24 && len(key) != 32 {
			return nil, bad("--key-file: a %d-byte key; AES-CMAC takes an AES key (32, 48 or 64 hex digits)", len(key))
		}
		b, _ := aes.NewCipher(key)
		out = mac.CMAC(b, data)
		what = "AES-CMAC (NIST SP 800-38B)"
	case "dukpt-request", "dukpt-response":
		if len(key) != 16 {
			return nil, bad("--key-file: a %d-byte key; TDES DUKPT takes a double-length BDK (32 hex digits)", len(key))
		}
		ksn, err := hexArg("ksn", *ksnS, 10)
		if err != nil {
			return nil, err
		}
		v := dukpt.VariantMACRequest
		if *algS == "dukpt-response" {
			v = dukpt.VariantMACResponse
		}
		k, err := dukpt.TDESWorkingKey(key, dukpt.KSN(ksn), v)
		if err != nil {
			return nil, counterErr(err)
		}
		defer clear(k)
		if out, err = mac.RetailMAC(k, data); err == nil {
			out = out[:4]
		}
		what = fmt.Sprintf("TDES DUKPT %v retail MAC for KSN %X", v, ksn)
	case "":
		return nil, bad("--alg is required: retail, x9.19, aes-cmac, dukpt-request or dukpt-response")
	default:
		return nil, bad("--alg %q: want retail, x9.19, aes-cmac, dukpt-request or dukpt-response", *algS)
	}
	if err != nil {
		return nil, err
	}
	if *length != 0 {
		if *length < 4 || *length > len(out) {
			return nil, bad("--length %d: want 4 to %d", *length, len(out))
		}
		out = out[:*length]
	}
	return []string{fmt.Sprintf("%s over %d bytes, %d-byte MAC", what, len(data), len(out)), up(out)}, nil
}

// readLimited reads a file of at most max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errors.New("larger than allowed")
	}
	return b, nil
}
