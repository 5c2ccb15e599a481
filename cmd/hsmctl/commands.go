package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/hsm/tr31"
)

func up(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// flagSet returns a flag set that reports errors only through Parse's error.
func flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return bad("%s: see hsmctl help", fs.Name())
		}
		return bad("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return bad("%s: unexpected argument %d (flags are --name VALUE)", fs.Name(), len(args)-fs.NArg()+1)
	}
	return nil
}

// hexArg decodes the hex value of flag name, which must be one of lens bytes long. Its
// errors never repeat the value: it may be a key.
func hexArg(name, s string, lens ...int) ([]byte, error) {
	if s == "" {
		return nil, bad("--%s is required", name)
	}
	if len(s)%2 != 0 {
		return nil, bad("--%s: odd number of hex digits (%d)", name, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, bad("--%s: not hexadecimal", name)
	}
	if len(lens) == 0 {
		return b, nil
	}
	for _, n := range lens {
		if len(b) == n {
			return b, nil
		}
	}
	want := make([]string, len(lens))
	for i, n := range lens {
		want[i] = strconv.Itoa(2 * n)
	}
	return nil, bad("--%s: %d hex digits, want %s", name, len(s), strings.Join(want, " or "))
}

// digitsArg checks that flag name holds min to max decimal digits. Its errors never
// repeat the value: it may be a PIN or a PAN.
func digitsArg(name, s string, min, max int) (string, error) {
	if s == "" {
		return "", bad("--%s is required", name)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", bad("--%s: decimal digits only", name)
		}
	}
	if len(s) < min || len(s) > max {
		return "", bad("--%s: %d digits, want %d to %d", name, len(s), min, max)
	}
	return s, nil
}

func pinArg(s string) (string, error) { return digitsArg("pin", s, 4, 12) }

func panArg(s string) (string, error) { return digitsArg("pan", s, 8, 19) }

func dukptCmd(sub string, args []string) ([]string, error) {
	fs := flagSet("dukpt " + sub)
	bdkS := fs.String("bdk", "", "base derivation key")
	ksnS := fs.String("ksn", "", "key serial number")
	pinS := fs.String("pin", "", "PIN")
	panS := fs.String("pan", "", "PAN")
	blockS := fs.String("block", "", "encrypted PIN block")
	fillS := fs.String("fill", "", "format 4 random field")
	typeS := fs.String("key-type", "", "working key type")
	usageS := fs.String("usage", "pin", "working key usage")
	switch sub {
	case "ipek", "key", "encrypt-pin", "decrypt-pin":
	default:
		return nil, bad("unknown dukpt command %q (ipek, key, encrypt-pin, decrypt-pin)", sub)
	}
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	ksn, err := hexArg("ksn", *ksnS, 10, 12)
	if err != nil {
		return nil, err
	}
	if len(ksn) == 10 {
		return tdesDUKPT(sub, *bdkS, dukpt.KSN(ksn), *pinS, *panS, *blockS, *fillS, *typeS, *usageS)
	}
	return aesDUKPT(sub, *bdkS, dukpt.AESKSN(ksn), *pinS, *panS, *blockS, *fillS, *typeS, *usageS)
}

func counterErr(err error) error {
	if errors.Is(err, dukpt.ErrCounter) {
		return bad("--ksn: its counter names no transaction key (it is 0, or has more one bits than an originator uses)")
	}
	if errors.Is(err, dukpt.ErrKeyType) {
		return bad("--key-type: %v", err)
	}
	return err
}

func tdesDUKPT(sub, bdkS string, ksn dukpt.KSN, pinS, panS, blockS, fillS, typeS, usageS string) ([]string, error) {
	bdk, err := hexArg("bdk", bdkS, 16)
	if err != nil {
		return nil, err
	}
	if typeS != "" {
		if t, err := dukpt.ParseKeyType(typeS); err != nil || t != dukpt.KeyTDES2 {
			return nil, bad("--key-type: TDES DUKPT (a 20-digit KSN) has double-length TDES keys only")
		}
	}
	defer clear(bdk)
	switch sub {
	case "ipek":
		ipek, err := dukpt.TDESInitialKey(bdk, ksn)
		if err != nil {
			return nil, err
		}
		cv, _ := kcv.TDES(ipek, kcv.Legacy)
		return []string{fmt.Sprintf("TDES DUKPT (ANSI X9.24-1) initial PIN encryption key for KSN %v, KCV %X", ksn.WithCounter(0), cv), up(ipek)}, nil
	case "key":
		v, ok := map[string]dukpt.Variant{"pin": dukpt.VariantPIN, "mac": dukpt.VariantMACRequest, "mac-request": dukpt.VariantMACRequest,
			"mac-response": dukpt.VariantMACResponse, "data": dukpt.VariantDataRequest, "data-request": dukpt.VariantDataRequest,
			"data-response": dukpt.VariantDataResponse}[usageS]
		if !ok {
			return nil, bad("--usage: TDES DUKPT has pin, mac (mac-request), mac-response, data (data-request) and data-response keys")
		}
		key, err := dukpt.TDESWorkingKey(bdk, ksn, v)
		if err != nil {
			return nil, counterErr(err)
		}
		cv, _ := kcv.TDES(key, kcv.Legacy)
		return []string{fmt.Sprintf("TDES DUKPT %v key for KSN %v (counter %d), KCV %X", v, ksn, ksn.Counter(), cv), up(key)}, nil
	}
	key, err := dukpt.TDESWorkingKey(bdk, ksn, dukpt.VariantPIN)
	if err != nil {
		return nil, counterErr(err)
	}
	defer clear(key)
	pan, err := panArg(panS)
	if err != nil {
		return nil, err
	}
	if sub == "encrypt-pin" {
		if fillS != "" {
			return nil, bad("--fill: ISO 9564 format 0 (TDES DUKPT) has no random part")
		}
		pin, err := pinArg(pinS)
		if err != nil {
			return nil, err
		}
		clearBlock, err := pinblock.EncodeFormat0(pin, pan)
		if err != nil {
			return nil, err
		}
		enc, err := pinblock.EncryptTDES(key, clearBlock)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("ISO 9564 format 0 PIN block under the TDES DUKPT PIN key of KSN %v", ksn), up(enc[:])}, nil
	}
	block, err := hexArg("block", blockS, 8)
	if err != nil {
		return nil, err
	}
	clearBlock, err := pinblock.DecryptTDES(key, [8]byte(block))
	if err != nil {
		return nil, err
	}
	pin, err := pinblock.DecodeFormat0(clearBlock, pan)
	if err != nil {
		return nil, errors.New("the block does not decode as ISO 9564 format 0 under this BDK, KSN and PAN")
	}
	return []string{fmt.Sprintf("PIN from the ISO 9564 format 0 block of KSN %v", ksn), pin}, nil
}

var aesUsages = map[string]dukpt.KeyUsage{
	"pin": dukpt.UsagePINEncryption, "mac": dukpt.UsageMACGeneration, "mac-generate": dukpt.UsageMACGeneration,
	"mac-verify": dukpt.UsageMACVerification, "mac-both": dukpt.UsageMACBoth, "data": dukpt.UsageDataEncrypt,
	"data-encrypt": dukpt.UsageDataEncrypt, "data-decrypt": dukpt.UsageDataDecrypt, "data-both": dukpt.UsageDataBoth,
	"kek": dukpt.UsageKeyEncryption,
}

func aesDUKPT(sub, bdkS string, ksn dukpt.AESKSN, pinS, panS, blockS, fillS, typeS, usageS string) ([]string, error) {
	bdk, err := hexArg("bdk", bdkS, 16, 24, 32)
	if err != nil {
		return nil, err
	}
	defer clear(bdk)
	kt, _ := dukpt.AESKeyType(len(bdk))
	if typeS != "" {
		if kt, err = dukpt.ParseKeyType(typeS); err != nil {
			return nil, bad("--key-type: want aes128, aes192, aes256, tdes2 or tdes3")
		}
	}
	if sub == "ipek" {
		id := ksn.InitialKeyID()
		ik, err := dukpt.AESInitialKey(bdk, id)
		if err != nil {
			return nil, err
		}
		cv, _ := kcv.AES(ik)
		return []string{fmt.Sprintf("AES DUKPT (ANSI X9.24-3) initial key for initial key ID %X, KCV %X (CMAC)", id, cv), up(ik)}, nil
	}
	usage := dukpt.UsagePINEncryption
	if sub == "key" {
		u, ok := aesUsages[usageS]
		if !ok {
			return nil, bad("--usage: AES DUKPT has pin, mac (mac-generate), mac-verify, mac-both, data (data-encrypt), data-decrypt, data-both and kek keys")
		}
		usage = u
	}
	key, err := dukpt.AESWorkingKey(bdk, ksn, usage, kt)
	if err != nil {
		return nil, counterErr(err)
	}
	defer clear(key)
	if sub == "key" {
		var cv []byte
		if kt.IsAES() {
			cv, _ = kcv.AES(key)
		} else {
			cv, _ = kcv.TDES(key, kcv.Legacy)
		}
		return []string{fmt.Sprintf("AES DUKPT %v %v key for KSN %v, KCV %X", kt, usage, ksn, cv), up(key)}, nil
	}
	pan, err := panArg(panS)
	if err != nil {
		return nil, err
	}
	if sub == "encrypt-pin" {
		pin, err := pinArg(pinS)
		if err != nil {
			return nil, err
		}
		if !kt.IsAES() {
			if fillS != "" {
				return nil, bad("--fill: ISO 9564 format 0 (a TDES working key) has no random part")
			}
			clearBlock, err := pinblock.EncodeFormat0(pin, pan)
			if err != nil {
				return nil, err
			}
			enc, err := pinblock.EncryptTDES(key, clearBlock)
			if err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("ISO 9564 format 0 PIN block under the %v PIN key of KSN %v", kt, ksn), up(enc[:])}, nil
		}
		var rand io.Reader // crypto/rand
		if fillS != "" {
			f, err := hexArg("fill", fillS, 8)
			if err != nil {
				return nil, err
			}
			rand = bytes.NewReader(f)
		}
		field, err := pinblock.Encode(pinblock.Format4, pin, pan, rand)
		if err != nil {
			return nil, err
		}
		enc, err := pinblock.EncryptFormat4(key, [16]byte(field), pan)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("ISO 9564 format 4 PIN block under the %v PIN key of KSN %v", kt, ksn), up(enc[:])}, nil
	}
	if !kt.IsAES() {
		block, err := hexArg("block", blockS, 8)
		if err != nil {
			return nil, err
		}
		clearBlock, _ := pinblock.DecryptTDES(key, [8]byte(block))
		pin, err := pinblock.DecodeFormat0(clearBlock, pan)
		if err != nil {
			return nil, errors.New("the block does not decode as ISO 9564 format 0 under this BDK, KSN, key type and PAN")
		}
		return []string{fmt.Sprintf("PIN from the ISO 9564 format 0 block of KSN %v", ksn), pin}, nil
	}
	block, err := hexArg("block", blockS, 16)
	if err != nil {
		return nil, err
	}
	field, err := pinblock.DecryptFormat4(key, [16]byte(block), pan)
	if err != nil {
		return nil, err
	}
	pin, err := pinblock.Decode(pinblock.Format4, field[:], pan)
	if err != nil {
		return nil, errors.New("the block does not decode as ISO 9564 format 4 under this BDK, KSN, key type and PAN")
	}
	return []string{fmt.Sprintf("PIN from the ISO 9564 format 4 block of KSN %v", ksn), pin}, nil
}

func formatArg(s string) (pinblock.Format, error) {
	switch s {
	case "0", "1", "3", "4":
		return pinblock.Format(s[0] - '0'), nil
	case "":
		return 0, bad("--format is required (0, 1, 3 or 4)")
	}
	return 0, bad("--format: want 0, 1, 3 or 4")
}

// fillReader turns --fill into what pinblock.Encode reads: for formats 1 and 3 one byte per
// fill digit (14 minus the PIN length of them; A to F for format 3), for format 4 the 8
// bytes of the random field.
func fillReader(f pinblock.Format, fillS, pin string) (io.Reader, error) {
	if fillS == "" {
		return nil, nil
	}
	switch f {
	case pinblock.Format0:
		return nil, bad("--fill: format 0 has no random part")
	case pinblock.Format4:
		b, err := hexArg("fill", fillS, 8)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(b), nil
	}
	if n := 14 - len(pin); len(fillS) != n {
		return nil, bad("--fill: %d hex digits, want %d (14 minus the PIN length)", len(fillS), n)
	}
	var b []byte
	for _, c := range strings.ToUpper(fillS) {
		v := strings.IndexRune("0123456789ABCDEF", c)
		if v < 0 {
			return nil, bad("--fill: not hexadecimal")
		}
		if f == pinblock.Format3 && v < 10 {
			return nil, bad("--fill: format 3 fill digits are A to F")
		}
		b = append(b, byte(v))
	}
	return bytes.NewReader(b), nil
}

func pinblockCmd(sub string, args []string) ([]string, error) {
	fs := flagSet("pinblock " + sub)
	formatS := fs.String("format", "", "ISO 9564 format")
	pinS := fs.String("pin", "", "PIN")
	panS := fs.String("pan", "", "PAN")
	blockS := fs.String("block", "", "PIN block")
	fillS := fs.String("fill", "", "fill digits")
	keyS := fs.String("key", "", "key")
	if sub != "encode" && sub != "decode" {
		return nil, bad("unknown pinblock command %q (encode, decode)", sub)
	}
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	f, err := formatArg(*formatS)
	if err != nil {
		return nil, err
	}
	var key []byte
	if *keyS != "" {
		lens := []int{16, 24}
		if f == pinblock.Format4 {
			lens = []int{16, 24, 32}
		}
		if key, err = hexArg("key", *keyS, lens...); err != nil {
			return nil, err
		}
		defer clear(key)
	}
	// The PAN: required by formats 0 and 3, and by format 4 with a key.
	pan := ""
	if f == pinblock.Format0 || f == pinblock.Format3 || (f == pinblock.Format4 && key != nil) {
		if f == pinblock.Format4 {
			pan, err = digitsArg("pan", *panS, 1, 19)
		} else {
			pan, err = panArg(*panS)
		}
		if err != nil {
			return nil, err
		}
	} else if *panS != "" {
		return nil, bad("--pan: format %d does not use a PAN here", int(f))
	}
	what := fmt.Sprintf("ISO 9564 format %d", int(f))
	if sub == "encode" {
		pin, err := pinArg(*pinS)
		if err != nil {
			return nil, err
		}
		rand, err := fillReader(f, *fillS, pin)
		if err != nil {
			return nil, err
		}
		b, err := pinblock.Encode(f, pin, pan, rand)
		if err != nil {
			return nil, err
		}
		defer clear(b)
		if key == nil {
			if f == pinblock.Format4 {
				return []string{what + " plain-text PIN field (encrypt it with --key and --pan)", up(b)}, nil
			}
			return []string{what + " clear PIN block", up(b)}, nil
		}
		if f == pinblock.Format4 {
			enc, err := pinblock.EncryptFormat4(key, [16]byte(b), pan)
			if err != nil {
				return nil, err
			}
			cv, _ := kcv.AES(key)
			return []string{fmt.Sprintf("%s PIN block under the AES key with KCV %X", what, cv), up(enc[:])}, nil
		}
		enc, err := pinblock.EncryptTDES(key, [8]byte(b))
		if err != nil {
			return nil, err
		}
		cv, _ := kcv.TDES(key, kcv.Legacy)
		return []string{fmt.Sprintf("%s PIN block under the TDES key with KCV %X", what, cv), up(enc[:])}, nil
	}
	if *fillS != "" || *pinS != "" {
		return nil, bad("pinblock decode takes --format, --block, --pan and --key")
	}
	block, err := hexArg("block", *blockS, f.Size())
	if err != nil {
		return nil, err
	}
	switch {
	case key != nil && f == pinblock.Format4:
		field, err := pinblock.DecryptFormat4(key, [16]byte(block), pan)
		if err != nil {
			return nil, err
		}
		block = field[:]
	case key != nil:
		c, err := pinblock.DecryptTDES(key, [8]byte(block))
		if err != nil {
			return nil, err
		}
		block = c[:]
	}
	pin, err := pinblock.Decode(f, block, pan)
	if err != nil {
		return nil, fmt.Errorf("the block does not decode as %s (wrong key, PAN or format?)", what)
	}
	return []string{"PIN from the " + what + " block", pin}, nil
}

func kcvCmd(args []string) ([]string, error) {
	fs := flagSet("kcv")
	keyS := fs.String("key", "", "key")
	isAES := fs.Bool("aes", false, "the key is AES")
	cmac := fs.Bool("cmac", false, "CMAC check value for a TDES key")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	key, err := hexArg("key", *keyS, 8, 16, 24, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if len(key) == 32 {
		*isAES = true
	}
	if *isAES {
		if len(key) == 8 {
			return nil, bad("--key: an AES key is 32, 48 or 64 hex digits")
		}
		cv, err := kcv.AES(key)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("AES-%d key check value (CMAC, 5 bytes)", 8*len(key)), up(cv)}, nil
	}
	m := kcv.Legacy
	if *cmac {
		m = kcv.CMAC
	}
	cv, err := kcv.TDES(key, m)
	if err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("TDES %d-byte key check value (%v, %d bytes)", len(key), m, m.Len()), up(cv)}, nil
}

func tr31Cmd(sub string, args []string) ([]string, error) {
	fs := flagSet("tr31 " + sub)
	kbpkS := fs.String("kbpk", "", "key block protection key")
	blockS := fs.String("block", "", "key block")
	keyS := fs.String("key", "", "key to wrap")
	headerS := fs.String("header", "", "header to wrap under")
	ksS := fs.String("ks", "", "KSN for a KS optional block")
	ikS := fs.String("ik", "", "AES DUKPT initial key ID for an IK optional block")
	if sub != "unwrap" && sub != "wrap" {
		return nil, bad("unknown tr31 command %q (unwrap, wrap)", sub)
	}
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	kbpk, err := hexArg("kbpk", *kbpkS, 16, 24, 32)
	if err != nil {
		return nil, err
	}
	defer clear(kbpk)
	if sub == "unwrap" {
		if *blockS == "" {
			return nil, bad("--block is required")
		}
		h, key, err := tr31.Unwrap(kbpk, strings.TrimSpace(*blockS))
		if err != nil {
			if errors.Is(err, tr31.ErrMAC) {
				return nil, err
			}
			return nil, bad("--block: %v", err)
		}
		defer clear(key)
		return []string{h.String(), checkValueLine(h.Algorithm, key), up(key)}, nil
	}
	if len(*headerS) < 16 {
		return nil, bad("--header: want the 16-character fixed header, such as D0000P0AE00N0000")
	}
	h, _, err := tr31.ParseHeader((*headerS)[:16])
	if err != nil {
		return nil, bad("--header: %v", err)
	}
	h.Blocks = nil
	if *ksS != "" {
		if _, err := hexArg("ks", *ksS, 10); err != nil {
			return nil, err
		}
		h.Blocks = append(h.Blocks, tr31.Block{ID: "KS", Data: strings.ToUpper(*ksS)})
	}
	if *ikS != "" {
		if _, err := hexArg("ik", *ikS, 8); err != nil {
			return nil, err
		}
		h.Blocks = append(h.Blocks, tr31.Block{ID: "IK", Data: strings.ToUpper(*ikS)})
	}
	key, err := hexArg("key", *keyS, 8, 16, 24, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	s, err := tr31.Wrap(kbpk, h, key, nil)
	if err != nil {
		return nil, bad("%v", err)
	}
	return []string{h.String(), checkValueLine(h.Algorithm, key), s}, nil
}

func checkValueLine(alg byte, key []byte) string {
	if alg == 'A' {
		cv, _ := kcv.AES(key)
		return fmt.Sprintf("KCV %X (CMAC)", cv)
	}
	cv, err := kcv.TDES(key, kcv.Legacy)
	if err != nil {
		return "KCV n/a"
	}
	return fmt.Sprintf("KCV %X (legacy)", cv)
}
