package abecs

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// AIDRecord is an ABECS AID table record (§4.1.1, the 340-byte layout of
// spec v2.12). Amounts are minor units of the transaction currency, sent as
// 8 hexadecimal characters (a 32-bit binary amount). Hex fields are given as
// hex text of their exact width. It is plain data, safe for concurrent reads.
type AIDRecord struct {
	Acquirer   int    // TAB_ACQ, 1-99
	Index      string // TAB_RECIDX, 2 characters, unique per acquirer and table
	AID        string // T1_AID, 5-16 bytes in hex
	AppType    int    // T1_APPTYPE, 0-99 (1 credit, 2 debit)
	Label      string // T1_DEFLABEL, at most 16 characters
	AppVersion string // T1_APPVER1 (9F09), 4 hex
	Country    string // T1_TRMCNTRY (9F1A), 3 digits
	Currency   string // T1_TRNCURR (5F2A), 3 digits
	CurrExp    int    // T1_TRNCRREXP (5F36), 0-9
	MerchantID string // T1_MERCHID (9F16), at most 15
	MCC        string // T1_MCC (9F15), 4 digits
	TerminalID string // T1_TRMID (9F1C), at most 8
	TermCaps   string // T1_TRMCAPAB (9F33), 6 hex
	AddCaps    string // T1_ADDTRMCP (9F40), 10 hex
	TermType   string // T1_TRMTYP (9F35), 2 digits
	TACDefault string // T1_TACDEF, 10 hex
	TACDenial  string // T1_TACDEN, 10 hex
	TACOnline  string // T1_TACONL, 10 hex
	FloorLimit int64  // T1_FLRLIMIT (9F1B)
	CtlsMode   byte   // T1_CTLSMODE: '0' no contactless, '1'-'9' by scheme (ABECS §4.1.1)
	CtlsTxnLimit,
	CtlsFloorLimit,
	CtlsCVMLimit int64 // T1_CTLSTRNLIM (DF8124), T1_CTLSFLRLIM (DF8123), T1_CTLSCVMLIM (DF8126)
	TDOL, DDOL                                   string // T1_TDOLDEF, T1_DDOLDEF: hex, at most 20 bytes
	CtlsTACDefault, CtlsTACDenial, CtlsTACOnline string // 10 hex each (DF8120-DF8122)
	CtlsTermCaps                                 string // T1_CTLSTRMCP, 6 hex
}

// CAPKRecord is an ABECS CA public key record (§4.1.2, 611 bytes). The
// checksum is SHA-1 over RID, index, modulus and exponent. Plain data.
//
// A plain value: safe for concurrent use when not modified.
type CAPKRecord struct {
	Acquirer int    // TAB_ACQ, 0-99 (0: shared keys)
	Index    string // TAB_RECIDX
	RID      string // 5 bytes in hex
	KeyIndex string // 1 byte in hex (9F22)
	Exponent string // hex, 1 or 3 bytes
	Modulus  string // hex, at most 248 bytes
	Checksum string // SHA-1, 20 bytes in hex
}

// RevokedRecord is an ABECS revoked certificate record (§4.1.3, 26 bytes).
//
// A plain value: safe for concurrent use when not modified.
type RevokedRecord struct {
	Acquirer int
	Index    string
	RID      string // 5 bytes hex
	KeyIndex string // 1 byte hex
	Serial   string // certificate serial number, 3 bytes hex
}

type recWriter struct {
	b   []byte
	err error
}

func (w *recWriter) fail(name, why string) {
	if w.err == nil {
		w.err = fmt.Errorf("abecs: table record: %s %s", name, why)
	}
}

func (w *recWriter) num(v int64, n int, name string) {
	s := fmt.Sprintf("%0*d", n, v)
	if v < 0 || len(s) != n {
		w.fail(name, fmt.Sprintf("does not fit %d digits", n))
	}
	w.b = append(w.b, s...)
}

func (w *recWriter) digits(s string, n int, name string) {
	if len(s) != n || !allDigits([]byte(s)) {
		w.fail(name, fmt.Sprintf("must be %d digits", n))
	}
	w.b = append(w.b, s...)
}

// text writes s left aligned, space filled.
func (w *recWriter) text(s string, n int, name string) {
	if len(s) > n || !printable(s) {
		w.fail(name, fmt.Sprintf("must be at most %d printable characters", n))
	}
	w.b = appendText(w.b, s, n)
}

// hexFixed writes hex of exactly n characters.
func (w *recWriter) hexFixed(s string, n int, name string) {
	if _, err := hex.DecodeString(s); err != nil || len(s) != n {
		w.fail(name, fmt.Sprintf("must be %d hex characters", n))
	}
	w.b = append(w.b, strings.ToUpper(s)...)
}

// hexLeft writes hex left aligned in n characters, zero filled.
func (w *recWriter) hexLeft(s string, n int, name string) {
	if _, err := hex.DecodeString(s); err != nil || len(s) > n {
		w.fail(name, fmt.Sprintf("must be hex of at most %d characters", n))
	}
	w.b = append(w.b, strings.ToUpper(s)...)
	w.b = append(w.b, strings.Repeat("0", max(0, n-len(s)))...)
}

func (w *recWriter) amount(v int64, name string) {
	if v < 0 || v > 0xFFFFFFFF {
		w.fail(name, "must be 0 to 4294967295 minor units")
	}
	w.b = fmt.Appendf(w.b, "%08X", v)
}

func (w *recWriter) header(length, id, acq int, idx string) {
	w.num(int64(length), 3, "length")
	w.num(int64(id), 1, "table id")
	w.num(int64(acq), 2, "acquirer")
	w.text(idx, 2, "record index")
	if len(idx) != 2 {
		w.fail("record index", "must be 2 characters")
	}
}

func (w *recWriter) done(want int) ([]byte, error) {
	if w.err == nil && len(w.b) != want {
		w.err = fmt.Errorf("abecs: table record is %d bytes, want %d", len(w.b), want)
	}
	return w.b, w.err
}

// Append returns the 340-byte record.
func (r AIDRecord) Append(dst []byte) ([]byte, error) {
	w := &recWriter{b: make([]byte, 0, TableAIDLen)}
	w.header(TableAIDLen, 1, r.Acquirer, r.Index)
	aid, err := hex.DecodeString(r.AID)
	if err != nil || len(aid) < 5 || len(aid) > 16 {
		w.fail("AID", "must be 5 to 16 bytes of hex")
	}
	w.num(int64(len(aid)), 2, "AID length")
	w.hexLeft(r.AID, 32, "AID")
	w.num(int64(r.AppType), 2, "application type")
	w.text(r.Label, 16, "label")
	w.b = append(w.b, "03"...)
	for range 3 {
		w.hexFixed(r.AppVersion, 4, "application version")
	}
	w.digits(r.Country, 3, "terminal country")
	w.digits(r.Currency, 3, "currency")
	w.num(int64(r.CurrExp), 1, "currency exponent")
	w.text(r.MerchantID, 15, "merchant id")
	w.digits(r.MCC, 4, "MCC")
	w.text(r.TerminalID, 8, "terminal id")
	w.hexFixed(r.TermCaps, 6, "terminal capabilities")
	w.hexFixed(r.AddCaps, 10, "additional terminal capabilities")
	w.digits(r.TermType, 2, "terminal type")
	w.hexFixed(r.TACDefault, 10, "TAC default")
	w.hexFixed(r.TACDenial, 10, "TAC denial")
	w.hexFixed(r.TACOnline, 10, "TAC online")
	w.amount(r.FloorLimit, "floor limit")
	w.b = append(w.b, 'R', '0')
	mode := r.CtlsMode
	if mode == 0 {
		mode = '0'
	}
	w.b = append(w.b, mode)
	w.amount(r.CtlsTxnLimit, "contactless transaction limit")
	w.amount(r.CtlsFloorLimit, "contactless floor limit")
	w.amount(r.CtlsCVMLimit, "contactless CVM limit")
	w.b = append(w.b, "0000"...) // T1_CTLSAPPVER, obsolete in v2.20
	w.b = append(w.b, '0')
	w.hexLeft(r.TDOL, 40, "default TDOL")
	w.hexLeft(r.DDOL, 40, "default DDOL")
	w.b = append(w.b, "Y1Z1Y3Z3"...)
	w.hexFixed(r.CtlsTACDefault, 10, "contactless TAC default")
	w.hexFixed(r.CtlsTACDenial, 10, "contactless TAC denial")
	w.hexFixed(r.CtlsTACOnline, 10, "contactless TAC online")
	w.hexFixed(r.CtlsTermCaps, 6, "contactless terminal capabilities")
	w.b = append(w.b, '1') // T1_MOBCVM: CDCVM supported
	w.hexFixed(r.AddCaps, 10, "additional terminal capabilities")
	w.amount(r.CtlsTxnLimit, "contactless transaction limit (CDCVM)")
	w.b = append(w.b, '0')
	b, err := w.done(TableAIDLen)
	return append(dst, b...), err
}

// ParseAIDRecord reads the fields of an AID record a pad needs to decide a
// tap: acquirer, index, AID, and the contactless limits.
func ParseAIDRecord(rec []byte) (AIDRecord, error) {
	if len(rec) < TableAIDLen || rec[3] != '1' {
		return AIDRecord{}, fmt.Errorf("%w: AID record is %d bytes or not table 1", ErrFormat, len(rec))
	}
	fr := &fieldReader{b: rec, id: "AID record"}
	fr.take(4, "header")
	var r AIDRecord
	r.Acquirer = int(fr.num(2, "acquirer"))
	r.Index = string(fr.take(2, "index"))
	n := int(fr.num(2, "AID length"))
	aid := fr.take(32, "AID")
	if fr.err == nil && (n < 5 || n > 16) {
		fr.fail("AID length", "is not 5-16")
	}
	if fr.err == nil {
		r.AID = string(aid[:2*n])
	}
	fr.take(166-42, "terminal fields")
	if m := fr.take(1, "contactless mode"); fr.err == nil {
		r.CtlsMode = m[0]
	}
	r.CtlsTxnLimit = fr.hexNum(8, "contactless transaction limit")
	r.CtlsFloorLimit = fr.hexNum(8, "contactless floor limit")
	r.CtlsCVMLimit = fr.hexNum(8, "contactless CVM limit")
	return r, fr.err
}

// Append returns the 611-byte record.
func (r CAPKRecord) Append(dst []byte) ([]byte, error) {
	w := &recWriter{b: make([]byte, 0, TableCAPKLen)}
	w.header(TableCAPKLen, 2, r.Acquirer, r.Index)
	w.hexFixed(r.RID, 10, "RID")
	w.hexFixed(r.KeyIndex, 2, "key index")
	w.b = append(w.b, "00"...)
	if len(r.Exponent) != 2 && len(r.Exponent) != 6 {
		w.fail("exponent", "must be 1 or 3 bytes")
	}
	w.num(int64(len(r.Exponent)/2), 1, "exponent length")
	w.hexLeft(r.Exponent, 6, "exponent")
	w.num(int64(len(r.Modulus)/2), 3, "modulus length")
	w.hexLeft(r.Modulus, 496, "modulus")
	w.b = append(w.b, '1')
	w.hexFixed(r.Checksum, 40, "checksum")
	w.b = append(w.b, strings.Repeat("0", 42)...)
	b, err := w.done(TableCAPKLen)
	return append(dst, b...), err
}

// Append returns the 26-byte record.
func (r RevokedRecord) Append(dst []byte) ([]byte, error) {
	w := &recWriter{b: make([]byte, 0, TableRevokedLen)}
	w.header(TableRevokedLen, 3, r.Acquirer, r.Index)
	w.hexFixed(r.RID, 10, "RID")
	w.hexFixed(r.KeyIndex, 2, "key index")
	w.hexFixed(r.Serial, 6, "certificate serial number")
	b, err := w.done(TableRevokedLen)
	return append(dst, b...), err
}
