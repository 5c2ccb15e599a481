package terminal_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
	"github.com/posd-dev/posd/terminal"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/emvparams"
	"github.com/posd-dev/posd/terminal/padsim"
)

// ctlsPad gives the simulated pad a contactless reader with a transaction limit of 100.00,
// a CVM limit of 50.00 and a floor limit of 0.
func ctlsPad(o *padsim.Options) {
	o.Contactless = true
	o.CtlsLimits = padsim.CtlsLimits{Transaction: 10000, CVM: 5000}
}

func tap(t padsim.Tap) padsim.Event {
	if t.PAN == "" {
		t.PAN = "4761739001010010"
	}
	return padsim.Event{Tap: &t}
}

func TestTapUnderCVMLimitNoPIN(t *testing.T) {
	r := newRig(t, []padsim.Event{tap(padsim.Tap{FormFactor: "20700000"})}, hostFaults{pad: ctlsPad})
	res := r.sale(t, 2500)
	if !res.Approved || res.EntryMode != "071" || res.PINEntered || res.CVM != terminal.CVMNone {
		t.Fatalf("result = %+v", res)
	}
	f22, f23, f55 := r.sent.field(t, 0, 22), r.sent.field(t, 0, 23), r.sent.field(t, 0, 55)
	if f22 != "071" || f23 != "001" || !strings.Contains(f55, "9F26") || !strings.Contains(f55, "9F6E0420700000") || !strings.Contains(f55, "9F6604") {
		t.Errorf("fields 22=%q 23=%q 55=%q", f22, f23, f55)
	}
	ch := r.host.Charges()
	if len(ch) != 1 || ch[0].EntryMode != "071" || !ch[0].ChipData || !ch[0].Approved {
		t.Errorf("host = %+v", ch)
	}
	if rc := res.Receipt; !strings.Contains(strings.Join(rc.Customer, "\n"), "CONTACTLESS") {
		t.Errorf("receipt has no CONTACTLESS line:\n%s", strings.Join(rc.Customer, "\n"))
	}
	// The tap's form factor (9F6E) is on the receipt and in the journal, so the answer
	// rebuilt from the journal carries it too.
	if res.ChipData.FormFactor != "20700000" || !strings.Contains(strings.Join(res.Receipt.Merchant, "\n"), "FORM FACTOR             20700000") {
		t.Errorf("form factor %q, receipt:\n%s", res.ChipData.FormFactor, strings.Join(res.Receipt.Merchant, "\n"))
	}
	if in := r.records(t)[0].Intent; in.FormFactor != "20700000" {
		t.Errorf("journal intent form factor = %q", in.FormFactor)
	}
	st, err := r.term.TransactionStatus(context.Background(), store.SaleTxnKey("TILL", t.Name()+"-1"))
	if err != nil || !reflect.DeepEqual(st.Result, res) {
		t.Errorf("status = %+v, %v\nwant %+v", st.Result, err, res)
	}
	r.checkNoCardData(t)
}

func TestTapAboveCVMLimitAsksOnlinePIN(t *testing.T) {
	r := newRig(t, []padsim.Event{tap(padsim.Tap{}), pin("1234")}, hostFaults{pad: ctlsPad})
	res := r.sale(t, 6000)
	if !res.Approved || res.EntryMode != "071" || !res.PINEntered || res.CVM != terminal.CVMOnlinePIN {
		t.Fatalf("result = %+v", res)
	}
	if f52 := r.sent.field(t, 0, 52); f52 == "" {
		t.Error("no PIN block in field 52")
	}
	r.checkNoCardData(t, pinBlocks(t, "4761739001010010", "1234")...)
}

func TestTapAboveCVMLimitWithCDCVM(t *testing.T) {
	r := newRig(t, []padsim.Event{tap(padsim.Tap{CDCVM: true})}, hostFaults{pad: ctlsPad})
	res := r.sale(t, 6000)
	if !res.Approved || res.PINEntered || res.CVM != terminal.CVMDevice {
		t.Fatalf("result = %+v", res)
	}
	if f52 := r.sent.field(t, 0, 52); f52 != "" {
		t.Error("a PIN block went with a CDCVM tap")
	}
}

func TestTapAboveContactlessLimitContinuesByChip(t *testing.T) {
	r := newRig(t, []padsim.Event{tap(padsim.Tap{}), insert(padsim.Chip{})}, hostFaults{pad: ctlsPad})
	res := r.sale(t, 12000)
	if !res.Approved || res.EntryMode != "051" || !res.Chip {
		t.Fatalf("result = %+v", res)
	}
	r.logm.Lock()
	log := r.log.String()
	r.logm.Unlock()
	// The pad refused the tap (087), and the GCR that followed had contactless off.
	i := strings.Index(log, "-> 087")
	if i < 0 || !strings.Contains(log[i:], "GCR amount 12000: insert") {
		t.Errorf("pad log does not show 087 then an insert on a GCR without contactless:\n%s", log)
	}
	if ch := r.host.Charges(); len(ch) != 1 || ch[0].EntryMode != "051" {
		t.Errorf("host = %+v", ch)
	}
}

func TestTapMagstripeMode(t *testing.T) {
	r := newRig(t, []padsim.Event{tap(padsim.Tap{Mode: padsim.TapMagstripe})}, hostFaults{pad: ctlsPad})
	res := r.sale(t, 2500)
	if !res.Approved || res.EntryMode != "911" || res.Chip {
		t.Fatalf("result = %+v", res)
	}
	if f22, f55 := r.sent.field(t, 0, 22), r.sent.field(t, 0, 55); f22 != "911" || f55 != "" {
		t.Errorf("fields 22=%q 55=%q", f22, f55)
	}
}

func TestTapOnPadWithoutReaderIsNotTaken(t *testing.T) {
	// Without a contactless reader, posd asks with contactless off and the tap event does
	// not match: the pad answers 040 and the sale fails as a device fault.
	r := newRig(t, []padsim.Event{tap(padsim.Tap{})}, hostFaults{})
	res := r.sale(t, 2500)
	if res.Approved {
		t.Fatalf("result = %+v", res)
	}
	r.logm.Lock()
	defer r.logm.Unlock()
	if !strings.Contains(r.log.String(), "-> 040") || strings.Contains(r.log.String(), " ctls") {
		t.Errorf("pad log:\n%s", r.log.String())
	}
}

func TestTableVersionMismatchReloadsAndRetries(t *testing.T) {
	r := newRig(t, []padsim.Event{tap(padsim.Tap{}), pin("1234")}, hostFaults{pad: func(o *padsim.Options) { o.Contactless = true }})
	// posd holds version V2 with a Visa AID whose CVM limit is 30.00; the pad has none.
	rec, err := abecs.AIDRecord{
		Acquirer: 1, Index: "01", AID: "A0000000031010", AppType: 1, Label: "VISA CREDIT", AppVersion: "008C",
		Country: "250", Currency: "978", CurrExp: 2, MerchantID: "MERCHANT0001", MCC: "5999", TerminalID: "TERM0001",
		TermCaps: "E0F8C8", AddCaps: "F000F0A001", TermType: "22", TACDefault: "DC4000A800", TACDenial: "0010000000",
		TACOnline: "DC4004F800", CtlsMode: '2', CtlsTxnLimit: 10000, CtlsCVMLimit: 3000,
		CtlsTACDefault: "DC4000A800", CtlsTACDenial: "0010000000", CtlsTACOnline: "DC4004F800", CtlsTermCaps: "E068C8",
	}.Append(nil)
	if err != nil || len(rec) != abecs.TableAIDLen {
		t.Fatalf("AID record: %d bytes, %v", len(rec), err)
	}
	r.pp.SetEMVTables("POSDV00002", [][]byte{rec})
	res := r.sale(t, 4000) // above the table's CVM limit: the PIN proves the table is in use
	if !res.Approved || res.EntryMode != "071" || !res.PINEntered {
		t.Fatalf("result = %+v", res)
	}
	if v := r.pad.TableVersion(); v != "POSDV00002" {
		t.Errorf("pad table version = %q", v)
	}
	r.logm.Lock()
	defer r.logm.Unlock()
	log := r.log.String()
	if strings.Count(log, `the pad has "0000000000" -> 020`) != 1 || !strings.Contains(log, "TLE -> 000") {
		t.Errorf("pad log does not show one 020 and a load:\n%s", log)
	}
}

// TestLoadFullTableSet loads 50 AID and 40 CAPK records (TLI, TLR, TLE, then GTS) and
// reports the time. POSD_THROTTLE=1920 throttles the simulated pad to 19200 baud.
func TestLoadFullTableSet(t *testing.T) {
	rate := 0
	if v := os.Getenv("POSD_THROTTLE"); v != "" {
		rate, _ = strconv.Atoi(v)
	}
	r := newRig(t, nil, hostFaults{pad: func(o *padsim.Options) { o.Contactless, o.BytesPerSecond = true, rate }})
	var recs [][]byte
	for i := range 50 {
		rec, err := abecs.AIDRecord{
			Acquirer: 1, Index: fmt.Sprintf("%02d", i+1), AID: fmt.Sprintf("A00000000310%02d", i), AppType: 1, Label: "VISA", AppVersion: "008C",
			Country: "250", Currency: "978", CurrExp: 2, MCC: "5999", TermCaps: "E0F8C8", AddCaps: "F000F0A001", TermType: "22",
			TACDefault: "DC4000A800", TACDenial: "0010000000", TACOnline: "DC4004F800", CtlsMode: '2', CtlsTxnLimit: 10000, CtlsCVMLimit: 5000,
			CtlsTACDefault: "DC4000A800", CtlsTACDenial: "0010000000", CtlsTACOnline: "DC4004F800", CtlsTermCaps: "E068C8",
		}.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	mod := strings.Repeat("C3", 248)
	for i := range 40 {
		sum := emvparams.Checksum("A000000003", fmt.Sprintf("%02X", i), mod, "03")
		rec, err := abecs.CAPKRecord{Acquirer: 1, Index: fmt.Sprintf("%02d", i+1), RID: "A000000003", KeyIndex: fmt.Sprintf("%02X", i), Exponent: "03", Modulus: mod, Checksum: sum}.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	n := 0
	for _, rec := range recs {
		n += len(rec)
	}
	start := time.Now()
	if err := r.pp.LoadEMVTables(r.ctx, "0000000042", recs); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if v, n := r.pad.TableVersion(), r.pad.TableRecords(); v != "0000000042" || n != 90 {
		t.Fatalf("pad holds version %q, %d records", v, n)
	}
	t.Logf("loaded %d records (%d bytes) in %v (pad throttled to %d bytes/s; 0 = unthrottled pty)", len(recs), n, took, rate)
}

// TestTapAndChipLinkBytes reports the pad link's bytes and commands for a tap sale and a
// chip sale (online, no PIN), from a pad that already answered GIN.
func TestTapAndChipLinkBytes(t *testing.T) {
	measure := func(ev padsim.Event) padsim.LinkStats {
		r := newRig(t, []padsim.Event{ev}, hostFaults{pad: ctlsPad})
		if res := r.sale(t, 2500); !res.Approved {
			t.Fatalf("result = %+v", res)
		}
		return r.pad.LinkStats()
	}
	tp, ch := measure(tap(padsim.Tap{})), measure(insert(padsim.Chip{}))
	if tp.Commands == 0 || ch.Commands == 0 {
		t.Fatalf("tap %+v chip %+v", tp, ch)
	}
	t.Logf("tap sale: %d bytes to the pad, %d from it, %d commands; chip sale: %d, %d, %d",
		tp.BytesIn, tp.BytesOut, tp.Commands, ch.BytesIn, ch.BytesOut, ch.Commands)
}

// A dialect whose entry_modes say 072/912 gets them in field 22 of taps, as posd wires
// it (Options.CtlsEntryModes from Dialect.EntryModes); chip and swipe modes are untouched.
func TestTapEntryModesFromDialect(t *testing.T) {
	raw, err := os.ReadFile("../iso8583/dialects/pos-conditions.json")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(raw), `"name"`, `"entry_modes": {"contactless_emv": "072", "contactless_magstripe": "912"}, "name"`, 1)
	d, err := iso8583.ParseDialect([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	events := []padsim.Event{tap(padsim.Tap{}), tap(padsim.Tap{Mode: padsim.TapMagstripe})}
	r := newRig(t, events, hostFaults{pad: ctlsPad, dialect: d, opts: func(o *terminal.Options) {
		o.CtlsEntryModes = terminal.CtlsEntryModes{EMV: d.EntryModes.ContactlessEMV, Magstripe: d.EntryModes.ContactlessMagstripe}
	}})
	res := r.sale(t, 2500)
	if !res.Approved || res.EntryMode != "072" {
		t.Fatalf("EMV tap: result = %+v", res)
	}
	if f22 := r.sent.field(t, 0, 22); f22 != "072" {
		t.Errorf("EMV tap: field 22 = %q, want 072", f22)
	}
	res = r.sale(t, 2600)
	if !res.Approved || res.EntryMode != "912" {
		t.Fatalf("magstripe tap: result = %+v", res)
	}
	if f22 := r.sent.field(t, 1, 22); f22 != "912" {
		t.Errorf("magstripe tap: field 22 = %q, want 912", f22)
	}
	// New refuses a contactless entry mode that is not 3 digits.
	for _, m := range []terminal.CtlsEntryModes{{EMV: "07"}, {Magstripe: "91x"}} {
		o := r.topts
		o.CtlsEntryModes = m
		if _, err := terminal.New(r.pp, r.pp, r.pins, r.sent, r.st, o); err == nil || !strings.Contains(err.Error(), "CtlsEntryModes") {
			t.Errorf("%+v: err = %v", m, err)
		}
	}
}
