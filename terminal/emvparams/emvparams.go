// Package emvparams reads an acquirer's EMV parameter file: the AIDs (kernel,
// terminal action codes, floor and contactless limits, TTQ, default TDOL and
// DDOL), the certification authority public keys (CAPKs) with their SHA-1
// checksums, and the revoked issuer certificates, and turns them into the
// ABECS table records a PIN pad loads (TLI, TLR, TLE).
//
// # Basics
//
// A parameter file is JSON (see examples/emv-params.json and the README),
// wrapped in the firmware metadata envelope {"signed": FILE, "signatures":
// [...]} and signed by the targets role of posd's firmware trust root
// (fwtool sign-params). Verify checks the signature (firmware.VerifyRole),
// Parse checks every entry and every CAPK checksum; an error names the entry
// and the field. Newer tells whether a file may replace the one in use: only
// a higher version may.
//
// # Caveats
//
// The pad derives the TTQ from the AID record (ABECS has no TTQ field): the
// file's TTQ is documentation for the acquirer and the simulator. CAPK
// expiry dates are kept but not sent (the ABECS record has no expiry field).
package emvparams

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/posd-dev/posd/firmware"
	"github.com/posd-dev/posd/terminal/abecs"
)

// Format is the value of the file's "format" field.
const Format = "posd-emv-params/1"

// SigningRole is the firmware trust root role whose keys sign parameter files.
const SigningRole = firmware.RoleTargets

// Errors. Each error of Parse and Verify wraps one of them.
var (
	// ErrFormat: the file is not a parameter file, or an entry is invalid.
	ErrFormat = errors.New("emvparams: malformed parameter file")
	// ErrChecksum: a CAPK's SHA-1 is not the checksum of its RID, index, modulus and exponent.
	ErrChecksum = errors.New("emvparams: CA public key checksum does not match")
	// ErrSignature: the file is not signed by the trusted keys.
	ErrSignature = errors.New("emvparams: parameter file signature not valid")
	// ErrNotNewer: the file's version is not above the one in use.
	ErrNotNewer = errors.New("emvparams: parameter file is not newer than the one in use")
)

// TAC is a set of terminal action codes, 5 bytes in hex each.
//
// A plain value: safe for concurrent use when not modified.
type TAC struct {
	Default string `json:"default"`
	Denial  string `json:"denial"`
	Online  string `json:"online"`
}

// Contactless are an AID's contactless parameters. Amounts are minor units.
//
// A plain value: safe for concurrent use when not modified.
type Contactless struct {
	TransactionLimit int64  `json:"transaction_limit"`     // at or above: try another interface (ABECS 087)
	CVMLimit         int64  `json:"cvm_limit"`             // at or above: CVM required (online PIN or CDCVM)
	FloorLimit       int64  `json:"floor_limit"`           // above: online cryptogram required
	TTQ              string `json:"ttq,omitempty"`         // 9F66, 4 bytes hex (Visa kernels), or ""
	Capabilities     string `json:"terminal_capabilities"` // 9F33 for taps, 3 bytes hex
	TAC              TAC    `json:"tac"`
}

// AID is one application the terminal accepts.
//
// A plain value: safe for concurrent use when not modified.
type AID struct {
	AID        string      `json:"aid"`
	Label      string      `json:"label"`
	KernelID   int         `json:"kernel_id"` // 2 Mastercard, 3 Visa, 4 Amex, 5 JCB, 6 Discover, 7 UnionPay; 0 contact only
	AppVersion string      `json:"app_version"`
	TAC        TAC         `json:"tac"`
	FloorLimit int64       `json:"floor_limit"`
	CTLS       Contactless `json:"contactless"`
	TDOL       string      `json:"tdol"`
	DDOL       string      `json:"ddol"`
}

// CAPK is a certification authority public key.
//
// A plain value: safe for concurrent use when not modified.
type CAPK struct {
	RID      string `json:"rid"`
	Index    string `json:"index"`
	Exponent string `json:"exponent"`
	Modulus  string `json:"modulus"`
	Expiry   string `json:"expiry"` // YYMMDD, or "" when the source gives none
	SHA1     string `json:"sha1"`
}

// Revoked is a revoked issuer public key certificate.
//
// A plain value: safe for concurrent use when not modified.
type Revoked struct {
	RID    string `json:"rid"`
	Index  string `json:"index"`
	Serial string `json:"serial"`
}

// Terminal is the terminal data every AID record repeats.
//
// A plain value: safe for concurrent use when not modified.
type Terminal struct {
	Country          string `json:"country"`
	Currency         string `json:"currency"`
	CurrencyExponent int    `json:"currency_exponent"`
	MerchantID       string `json:"merchant_id"`
	MCC              string `json:"mcc"`
	TerminalID       string `json:"terminal_id"`
	TerminalType     string `json:"terminal_type"`
	Capabilities     string `json:"capabilities"`
	AddCapabilities  string `json:"additional_capabilities"`
}

// Params is a parsed, checked parameter file. Plain data: safe for concurrent reads.
type Params struct {
	Format        string    `json:"format"`
	Acquirer      string    `json:"acquirer"`
	AcquirerIndex int       `json:"acquirer_index"`
	Version       int64     `json:"version"`
	Terminal      Terminal  `json:"terminal"`
	AIDs          []AID     `json:"aids"`
	CAPKs         []CAPK    `json:"capks"`
	Revoked       []Revoked `json:"revoked"`
}

// TableVersion is the ABECS table version (A10) of the file: its version in 10 digits.
func (p *Params) TableVersion() string { return fmt.Sprintf("%010d", p.Version) }

// Verify checks that file is signed by the SigningRole keys of rootFile and returns the
// parsed, checked parameters.
func Verify(rootFile, file []byte) (*Params, error) {
	body, err := firmware.VerifyRole(rootFile, SigningRole, file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return Parse(body)
}

// Newer returns nil when p may replace cur (nil: none in use), else an error wrapping ErrNotNewer.
func (p *Params) Newer(cur *Params) error {
	if cur != nil && p.Version <= cur.Version {
		return fmt.Errorf("%w: version %d, in use %d", ErrNotNewer, p.Version, cur.Version)
	}
	return nil
}

func hexField(s string, min, max int) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) >= min && len(b) <= max
}

// Parse decodes a parameter file strictly and checks every entry.
func Parse(b []byte) (*Params, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Params
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", ErrFormat)
	}
	bad := func(where, field, why string) error {
		return fmt.Errorf("%w: %s %s %s", ErrFormat, where, field, why)
	}
	switch {
	case p.Format != Format:
		return nil, bad("file", "format", fmt.Sprintf("is %q, want %q", p.Format, Format))
	case p.Version < 1 || p.Version > 9999999999:
		return nil, bad("file", "version", "must be 1 to 9999999999")
	case p.AcquirerIndex < 1 || p.AcquirerIndex > 99:
		return nil, bad("file", "acquirer_index", "must be 1 to 99")
	case len(p.AIDs) == 0:
		return nil, bad("file", "aids", "is empty")
	case len(p.AIDs)+len(p.CAPKs)+len(p.Revoked) > 36*36:
		return nil, bad("file", "entries", "are more than the 1296 record indexes")
	}
	for i, a := range p.AIDs {
		w := fmt.Sprintf("aids[%d] (%s)", i, a.AID)
		switch {
		case !hexField(a.AID, 5, 16):
			return nil, bad(w, "aid", "must be 5 to 16 bytes of hex")
		case a.KernelID < 0 || a.KernelID > 7:
			return nil, bad(w, "kernel_id", "must be 0 to 7")
		case a.CTLS.TTQ != "" && !hexField(a.CTLS.TTQ, 4, 4):
			return nil, bad(w, "contactless.ttq", "must be 4 bytes of hex")
		case a.FloorLimit < 0 || a.CTLS.TransactionLimit < 0 || a.CTLS.CVMLimit < 0 || a.CTLS.FloorLimit < 0:
			return nil, bad(w, "limits", "must not be negative")
		}
		if _, err := p.aidRecord(i); err != nil {
			return nil, bad(w, "", strings.TrimPrefix(err.Error(), "abecs: table record: "))
		}
	}
	for i, k := range p.CAPKs {
		w := fmt.Sprintf("capks[%d] (%s %s)", i, k.RID, k.Index)
		switch {
		case !hexField(k.RID, 5, 5):
			return nil, bad(w, "rid", "must be 5 bytes of hex")
		case !hexField(k.Index, 1, 1):
			return nil, bad(w, "index", "must be 1 byte of hex")
		case !hexField(k.Exponent, 1, 3) || len(k.Exponent) == 4:
			return nil, bad(w, "exponent", "must be 1 or 3 bytes of hex")
		case !hexField(k.Modulus, 64, 248):
			return nil, bad(w, "modulus", "must be 64 to 248 bytes of hex")
		case !hexField(k.SHA1, 20, 20):
			return nil, bad(w, "sha1", "must be 20 bytes of hex")
		case k.Expiry != "" && (len(k.Expiry) != 6 || strings.Trim(k.Expiry, "0123456789") != ""):
			return nil, bad(w, "expiry", "must be YYMMDD or empty")
		}
		if sum := Checksum(k.RID, k.Index, k.Modulus, k.Exponent); !strings.EqualFold(sum, k.SHA1) {
			return nil, fmt.Errorf("%w: %s: sha1 is %s, the key's checksum is %s", ErrChecksum, w, strings.ToUpper(k.SHA1), sum)
		}
	}
	for i, r := range p.Revoked {
		w := fmt.Sprintf("revoked[%d]", i)
		if !hexField(r.RID, 5, 5) || !hexField(r.Index, 1, 1) || !hexField(r.Serial, 3, 3) {
			return nil, bad(w, "rid/index/serial", "must be 5, 1 and 3 bytes of hex")
		}
	}
	if _, err := p.Records(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return &p, nil
}

// Checksum returns the CAPK checksum, SHA-1(RID || index || modulus || exponent), in upper-case hex.
func Checksum(rid, index, modulus, exponent string) string {
	b, _ := hex.DecodeString(rid + index + modulus + exponent)
	s := sha1.Sum(b)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// recIndex returns the n-th two-character record index: "01".."99", then "A0".."ZZ".
func recIndex(n int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	n++
	return string([]byte{digits[n/36], digits[n%36]})
}

// ctlsMode maps a kernel id to T1_CTLSMODE (ABECS §4.1.1).
func ctlsMode(kernel int) byte {
	switch kernel {
	case 2:
		return '4' // PayPass M/Chip
	case 3:
		return '2' // qVSDC
	case 4:
		return '6' // Expresspay EMV
	case 5:
		return 'A' // JCB
	case 6:
		return '9' // D-PAS EMV
	case 7:
		return 'B' // UnionPay
	}
	return '0'
}

func (p *Params) aidRecord(i int) ([]byte, error) {
	a, t := p.AIDs[i], p.Terminal
	return abecs.AIDRecord{
		Acquirer: p.AcquirerIndex, Index: recIndex(i), AID: a.AID, AppType: 1, Label: a.Label, AppVersion: a.AppVersion,
		Country: t.Country, Currency: t.Currency, CurrExp: t.CurrencyExponent, MerchantID: t.MerchantID, MCC: t.MCC,
		TerminalID: t.TerminalID, TermCaps: t.Capabilities, AddCaps: t.AddCapabilities, TermType: t.TerminalType,
		TACDefault: a.TAC.Default, TACDenial: a.TAC.Denial, TACOnline: a.TAC.Online, FloorLimit: a.FloorLimit,
		CtlsMode: ctlsMode(a.KernelID), CtlsTxnLimit: a.CTLS.TransactionLimit, CtlsFloorLimit: a.CTLS.FloorLimit,
		CtlsCVMLimit: a.CTLS.CVMLimit, TDOL: a.TDOL, DDOL: a.DDOL, CtlsTACDefault: a.CTLS.TAC.Default,
		CtlsTACDenial: a.CTLS.TAC.Denial, CtlsTACOnline: a.CTLS.TAC.Online, CtlsTermCaps: a.CTLS.Capabilities,
	}.Append(nil)
}

// Records returns the ABECS table records of p, AIDs, then CAPKs, then revoked
// certificates, each with its own record index.
func (p *Params) Records() ([][]byte, error) {
	var out [][]byte
	for i := range p.AIDs {
		r, err := p.aidRecord(i)
		if err != nil {
			return nil, fmt.Errorf("aids[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	for i, k := range p.CAPKs {
		r, err := abecs.CAPKRecord{Acquirer: p.AcquirerIndex, Index: recIndex(i), RID: k.RID, KeyIndex: k.Index,
			Exponent: k.Exponent, Modulus: k.Modulus, Checksum: k.SHA1}.Append(nil)
		if err != nil {
			return nil, fmt.Errorf("capks[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	for i, v := range p.Revoked {
		r, err := abecs.RevokedRecord{Acquirer: p.AcquirerIndex, Index: recIndex(i), RID: v.RID, KeyIndex: v.Index, Serial: v.Serial}.Append(nil)
		if err != nil {
			return nil, fmt.Errorf("revoked[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}
