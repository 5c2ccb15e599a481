package main

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/card"
)

// TestDemo runs `posd demo` in-process: it must exit 0 (every outcome as expected), show
// the outcomes (three swipes, then a tap without PIN, a tap with an online PIN and a tap
// above the contactless limit finished by chip) and the fields by name, and print no card
// data.
func TestDemo(t *testing.T) {
	out := runDemo(t, []string{"demo"},
		"Success approved",
		"Failure (WrongPIN)",
		"Failure (Refusal) card refused: expired",
		"35 track 2 data",
		"52 personal identification number data        [hidden]",
		"| ENTRY                CONTACTLESS |",
		"-> 087",
		"all 6 sales ended as expected",
		"batch 1 closed in balance (0510 response 00)",
		"Visa       Debit            4  247.40 EUR",
		"Visa       Credit           1  5.00 EUR",
		"Visa       ReverseDebit     1  12.50 EUR",
		"|              REFUND              |",
	)
	assertNoCardData(t, out, demoPINBlocks(t))
}

// runDemo runs posd with args in-process (skipped with -short), fails the test unless it
// exits 0 and prints every one of wants, and returns what it printed.
func runDemo(t *testing.T, args []string, wants ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("demo runs real ptys and TCP; skipped with -short")
	}
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	if code != 0 {
		t.Fatalf("posd %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	return out
}

// TestDemoAES runs `posd demo --dukpt aes`: the pad sends format 4 blocks with 24-digit
// KSNs in the shipped aes-pin dialect, the host decrypts them (an approval, and 55 for the
// wrong PIN), and nothing of the card is printed.
func TestDemoAES(t *testing.T) {
	out := runDemo(t, []string{"demo", "--dukpt", "aes"},
		"Success approved",
		"Failure (WrongPIN)",
		"52 PIN data, ISO 9564 format 4 (16 bytes)     [hidden]",
		"all 6 sales ended as expected",
	)
	// Two swipes and the tap above the CVM limit go with a PIN.
	if ksns := regexp.MustCompile(`62 reserved, private \(KSN\) +[0-9A-F]{24}\n`).FindAllString(out, -1); len(ksns) != 3 {
		t.Errorf("%d AES KSNs (24 hex digits) in field 62, want 3:\n%s", len(ksns), out)
	}
	assertNoCardData(t, out, nil)

	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo", "--dukpt", "des"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `--dukpt "des"`) {
		t.Errorf("--dukpt des: exit %d, stderr %q", code, stderr.String())
	}
}

// demoPINBlocks computes the encrypted PIN blocks the demo's simulated pad produces, so
// that the test can prove none of them was printed.
func demoPINBlocks(t *testing.T) []string {
	t.Helper()
	bdk, _ := hex.DecodeString(demoBDK)
	ksn, _ := dukpt.ParseKSN(demoKSN)
	ipek, err := dukpt.TDESInitialKey(bdk, ksn)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := dukpt.NewOriginator(ipek, ksn)
	var blocks []string
	for _, s := range demoSales() {
		for _, e := range s.events {
			if e.PIN == "" {
				continue
			}
			key, _, err := o.NextPINKey()
			if err != nil {
				t.Fatal(err)
			}
			clear, _ := pinblock.EncodeFormat0(e.PIN, "4761739001010010")
			enc, _ := pinblock.EncryptTDES(key, clear)
			blocks = append(blocks, hex.EncodeToString(enc[:]), hex.EncodeToString(clear[:]))
		}
	}
	return blocks
}

// assertNoCardData fails if text carries card data (see cardDataIn).
func assertNoCardData(t *testing.T, text string, pinBlocks []string) {
	t.Helper()
	for _, leak := range cardDataIn(text, pinBlocks) {
		t.Errorf("output carries %s", leak)
	}
}

// sha256Hex is a SHA-256 written in lower-case hexadecimal on its own: the audit chain's
// hashes in the journal and in posctl's output.
var sha256Hex = regexp.MustCompile(`(^|[^0-9A-Za-z])[0-9a-f]{64}([^0-9A-Za-z]|$)`)

// cardDataIn lists what of card data text carries: Luhn-valid 13-19 digit runs, the demo's
// track data after the PAN, or one of pinBlocks (hex, any case). The findings are masked.
//
// Runs beginning 000000 are amounts (no card has that BIN). SHA-256 hashes are left out of the PAN scan: 64 hexadecimal characters hold a run of 13
// or more digits about one time in 25, and a tenth of those pass the Luhn check, which
// made the journal scan fail now and then on an audit hash.
func cardDataIn(text string, pinBlocks []string) []string {
	var leaks []string
	hashless := sha256Hex.ReplaceAllStringFunc(text, func(m string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' || r >= 'a' && r <= 'f' {
				return '#'
			}
			return r
		}, m)
	})
	for _, p := range card.ScanPANs(hashless) {
		if strings.HasPrefix(p, "000000") {
			// A zero-padded amount (the 0500's fields 86-89 are 16 digits): no issuer
			// has the BIN 000000.
			continue
		}
		leaks = append(leaks, "a full PAN "+p)
	}
	upper := strings.ToUpper(text)
	for _, s := range demoSales() {
		for _, e := range s.events {
			if e.Swipe == nil {
				continue
			}
			for _, tr := range []string{e.Swipe.Track1, e.Swipe.Track2} {
				// The part after the PAN is track data too: look for it on its own.
				if i := strings.IndexAny(tr, "=^"); i > 0 && strings.Contains(upper, strings.ToUpper(tr[i:])) {
					leaks = append(leaks, "track data of "+card.MaskPAN(tr[:i]))
				}
			}
		}
	}
	for _, b := range pinBlocks {
		if strings.Contains(upper, strings.ToUpper(b)) {
			leaks = append(leaks, "a PIN block")
		}
	}
	return leaks
}

func TestCardDataInCatchesLeaks(t *testing.T) {
	blocks := []string{"1B9C1845EB993A7A"}
	for _, text := range []string{
		"pan=4761739001010010",
		"t2 ;4761739001010010=30121060000000000?",
		"t2 rest =30121060000000000",
		"name ^DEMO/APPROVED^3012106000000000000",
		"block 1b9c1845eb993a7a",
	} {
		if len(cardDataIn(text, blocks)) == 0 {
			t.Errorf("no leak found in %q", card.MaskPAN(text))
		}
	}
	// A hash with a Luhn-valid digit run is not a PAN; the same run outside a hash is.
	hash := "a4761739001010010" + strings.Repeat("b", 47)
	if leaks := cardDataIn(`"prev":"`+hash+`"`, blocks); len(leaks) != 0 {
		t.Errorf("an audit hash flagged: %v", leaks)
	}
	for _, text := range []string{"x" + hash, hash + "0", "a4761739001010010b"} {
		if len(cardDataIn(text, blocks)) == 0 {
			t.Errorf("no leak found in %d characters that are not a lone SHA-256", len(text))
		}
	}
	if leaks := cardDataIn("pan=476173******0010 ksn=FFFF9876543210E00001 stan=000001", blocks); len(leaks) != 0 {
		t.Errorf("false alarm: %v", leaks)
	}
}
