package padsim_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/emv"
	"github.com/posd-dev/posd/terminal/padsim"
)

const chipCard = `{"pan":"` + pan + `","expiry":"251231","pan_seq":"01","label":"VISA CREDITO","online_pin":true}`

func insertScript(card string, more ...string) string {
	return `{"events":[{"insert":` + card + `}` + strings.Join(append([]string{""}, more...), ",") + `]}`
}

// decodePIN checks a PIN block the way the host does.
func decodePIN(t *testing.T, block [8]byte, ksn [10]byte, pan string) string {
	t.Helper()
	key, err := dukpt.TDESPINKey(bdk(t), dukpt.KSN(ksn))
	if err != nil {
		t.Fatal(err)
	}
	clearBlock, err := pinblock.DecryptTDES(key, block)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := pinblock.DecodeFormat0(clearBlock, pan)
	if err != nil {
		t.Fatal(err)
	}
	return pin
}

func goChip(r *rig, amount int64) (abecs.GoChipResult, error) {
	return r.client.GoOnChip(context.Background(), abecs.GoChipRequest{AmountMinor: amount, KeyIndex: 1, Tags: emv.GoOnChipTags(), Timeout: 2 * time.Second})
}

func finishChip(r *rig, responded bool, rc string, issuer []byte) (abecs.FinishChipResult, error) {
	return r.client.FinishChip(context.Background(), abecs.FinishChipRequest{HostResponded: responded, ResponseCode: rc, IssuerData: issuer, Tags: emv.FinishChipTags()})
}

func TestChipOnlineApproved(t *testing.T) {
	r := newRig(t, insertScript(chipCard, `{"pin":"1234"}`), rigOpts{})
	ctx := context.Background()
	cd, err := r.client.GetCard(ctx, abecs.CardRequest{AmountMinor: 1234, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !cd.Chip() || cd.PAN() != pan || cd.PANSequence() != "01" || cd.Label() != "VISA CREDITO" || cd.Expiry() != "2512" || !strings.HasPrefix(cd.Track2(), pan+"=2512201") {
		t.Fatalf("GCR chip card: %v seq %q label %q", cd, cd.PANSequence(), cd.Label())
	}
	res, err := goChip(r, 1234)
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != abecs.DecisionOnline || !res.OnlinePIN {
		t.Fatalf("GOC: %v", res)
	}
	if pin := decodePIN(t, res.PINBlock, res.KSN, pan); pin != "1234" {
		t.Fatal("online PIN does not decode to the scripted PIN")
	}
	data, err := emv.Parse(res.EMVData)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(data.Tags(), ","); got != strings.Join(emv.GoOnChipTags(), ",") {
		t.Fatalf("GOC tags %s", got)
	}
	for tag, want := range map[string]string{"9F02": "000000001234", "5F2A": "0978", "9F1A": "0250", "9F27": "80", "9F34": "420300", "5F34": "01"} {
		if v, _ := data.Value(tag); strings.ToUpper(hex.EncodeToString(v)) != want {
			t.Errorf("%s = %X, want %s", tag, v, want)
		}
	}
	c, err := emv.ExtractCard(data)
	if err != nil || c.PAN().Digits() != pan || c.Expiry().YYMM() != "2512" {
		t.Fatalf("card data: %v %v", c, err)
	}
	if _, err := emv.BuildDE55(data); err != nil {
		t.Fatalf("DE 55: %v", err)
	}
	issuer, _ := hex.DecodeString("910A0102030405060708090A" + "710B9F180400000001860200FF")
	fin, err := finishChip(r, true, "00", issuer)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := emv.Parse(fin.EMVData)
	if err != nil {
		t.Fatal(err)
	}
	if ct, _ := fd.CryptogramType(); !fin.Approved || ct != emv.TC {
		t.Fatalf("FNC: %v %v", fin, fd)
	}
	if v, ok := fd.Value("9F5B"); !ok || hex.EncodeToString(v) != "2000000000" {
		t.Errorf("script results %X %v", v, ok)
	}
	if v, _ := fd.Value("8A"); string(v) != "00" {
		t.Errorf("8A = %q", v)
	}
	if err := r.client.Finish(ctx, "APPROVED"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GCR amount 1234: insert chip 476173******0010 -> 000", "online PIN: pin -> KSN", "chip: go online, online PIN", "FNC host 00 chip 476173******0010: chip: card approved"} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestChipDecisions(t *testing.T) {
	cases := []struct {
		name      string
		card      string
		responded bool
		rc        string
		approved  bool
		arc       string
	}{
		{"declined after host approval", `{"pan":"` + pan + `","finish":"decline"}`, true, "00", false, "00"},
		{"host declined", `{"pan":"` + pan + `"}`, true, "05", false, "05"},
		{"no host answer", `{"pan":"` + pan + `"}`, false, "", false, "Z3"},
		{"approved without host", `{"pan":"` + pan + `","finish":"approve"}`, false, "", true, "Z3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, insertScript(c.card), rigOpts{})
			if _, err := r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second}); err != nil {
				t.Fatal(err)
			}
			res, err := goChip(r, 500)
			if err != nil || res.OnlinePIN || res.Decision != abecs.DecisionOnline {
				t.Fatalf("GOC %v %v", res, err)
			}
			fin, err := finishChip(r, c.responded, c.rc, nil)
			if err != nil || fin.Approved != c.approved {
				t.Fatalf("FNC %v %v, want approved %v", fin, err, c.approved)
			}
			fd, _ := emv.Parse(fin.EMVData)
			if v, _ := fd.Value("8A"); string(v) != c.arc {
				t.Errorf("8A = %q, want %q", v, c.arc)
			}
			// The card has decided: a second FNC is an invalid call.
			if _, err := finishChip(r, true, "00", nil); !errors.Is(err, abecs.ErrInvalidCall) {
				t.Errorf("second FNC: %v", err)
			}
		})
	}
}

func TestChipOfflineDecisions(t *testing.T) {
	for _, c := range []struct {
		decision string
		want     abecs.ChipDecision
		cid      emv.Cryptogram
		offline  bool
	}{
		{"approve", abecs.DecisionApprovedOffline, emv.TC, false},
		{"decline", abecs.DecisionDeclinedOffline, emv.AAC, false},
		{"online", abecs.DecisionDeclinedOffline, emv.AAC, true}, // an offline-only terminal cannot go online
	} {
		r := newRig(t, insertScript(`{"pan":"`+pan+`","decision":"`+c.decision+`"}`), rigOpts{})
		if _, err := r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second}); err != nil {
			t.Fatal(err)
		}
		res, err := r.client.GoOnChip(context.Background(), abecs.GoChipRequest{AmountMinor: 100, OfflineOnly: c.offline, Tags: emv.GoOnChipTags(), Timeout: 2 * time.Second})
		if err != nil || res.Decision != c.want {
			t.Fatalf("%s: %v %v", c.decision, res, err)
		}
		d, _ := emv.Parse(res.EMVData)
		if ct, _ := d.CryptogramType(); ct != c.cid {
			t.Errorf("%s: cryptogram %v", c.decision, ct)
		}
		if _, err := finishChip(r, true, "00", nil); !errors.Is(err, abecs.ErrInvalidCall) {
			t.Errorf("%s: FNC after an offline decision: %v", c.decision, err)
		}
	}
}

func TestChipFaultsAndFallback(t *testing.T) {
	r := newRig(t, `{"events":[{"chip_fault":"mute"},{"chip_fault":"fallback"},{"swipe":{"track2":"`+track2+`"}},{"swipe":{"track2":"`+track2+`"}}]}`, rigOpts{})
	ctx := context.Background()
	req := abecs.CardRequest{Timeout: 2 * time.Second}
	var se *abecs.StatusError
	if _, err := r.client.GetCard(ctx, req); !errors.Is(err, abecs.ErrMuteCard) || !errors.As(err, &se) || se.Code != 60 {
		t.Fatalf("mute: %v", err)
	}
	if _, err := r.client.GetCard(ctx, req); !errors.Is(err, abecs.ErrFallbackAllowed) || !errors.As(err, &se) || se.Code != 76 {
		t.Fatalf("fallback: %v", err)
	}
	cd, err := r.client.GetCard(ctx, req)
	if err != nil || !cd.Magstripe() || !cd.Fallback() {
		t.Fatalf("swipe after the chip failure: %v %v", cd, err)
	}
	cd, err = r.client.GetCard(ctx, req)
	if err != nil || cd.Fallback() {
		t.Fatalf("second swipe: %v %v", cd, err)
	}
	if !strings.Contains(r.log.String(), "swipe 476173******0010 (fallback) -> 000") {
		t.Errorf("log:\n%s", r.log)
	}
}

func TestChipCardholderFaults(t *testing.T) {
	for _, c := range []struct {
		event string
		want  error
	}{
		{`{"cancel":true}`, abecs.ErrCancelled},
		{`{"timeout":true}`, abecs.ErrPadTimeout}, // the cardholder never types the PIN
		{`{"remove":true}`, abecs.ErrNoCard},
		{`{"swipe":{"track2":"` + track2 + `"}}`, abecs.ErrInternal},
	} {
		r := newRig(t, insertScript(chipCard, c.event), rigOpts{})
		if _, err := r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second}); err != nil {
			t.Fatal(err)
		}
		if _, err := goChip(r, 100); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.event, err, c.want)
		}
	}
	// Removed between GOC and FNC: the card could not finish.
	r := newRig(t, insertScript(`{"pan":"`+pan+`"}`, `{"remove":true}`), rigOpts{})
	r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second})
	if _, err := goChip(r, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := finishChip(r, true, "00", nil); !errors.Is(err, abecs.ErrNoCard) {
		t.Fatalf("FNC after removal: %v", err)
	}
	// GOC without a card read.
	if _, err := goChip(r, 100); !errors.Is(err, abecs.ErrInvalidCall) {
		t.Fatalf("GOC without a card: %v", err)
	}
}

func TestWaitEventAndInfo(t *testing.T) {
	r := newRig(t, `{"events":[{"key":"enter"},{"swipe":{"track2":"`+track2+`"}},{"insert":`+chipCard+`},{"remove":true},{"cancel":true},{"key":"f1"}]}`, rigOpts{})
	ctx := context.Background()
	wait := func(req abecs.WaitRequest) (abecs.PadEvent, error) {
		req.Timeout = 2 * time.Second
		return r.client.WaitEvent(ctx, req)
	}
	if ev, err := wait(abecs.WaitRequest{Keys: true}); err != nil || ev.Kind != abecs.EventKey || ev.Key != abecs.KeyEnter {
		t.Fatalf("key: %v %v", ev, err)
	}
	if ev, err := wait(abecs.WaitRequest{Swipe: true, Insert: true}); err != nil || ev.Kind != abecs.EventSwipe || ev.Card.Track2() != track2 {
		t.Fatalf("swipe: %v %v", ev, err)
	}
	if ev, err := wait(abecs.WaitRequest{Swipe: true, Insert: true}); err != nil || ev.Kind != abecs.EventInserted {
		t.Fatalf("insert: %v %v", ev, err)
	}
	// GCR reads the card the CKE saw inserted, without a script event.
	cd, err := r.client.GetCard(ctx, abecs.CardRequest{Timeout: 2 * time.Second})
	if err != nil || !cd.Chip() {
		t.Fatalf("GCR after CKE insert: %v %v", cd, err)
	}
	if ev, err := wait(abecs.WaitRequest{Remove: true}); err != nil || ev.Kind != abecs.EventRemoved {
		t.Fatalf("remove: %v %v", ev, err)
	}
	// No card in: removal is reported at once, and the script is untouched.
	if ev, err := wait(abecs.WaitRequest{Remove: true}); err != nil || ev.Kind != abecs.EventRemoved {
		t.Fatalf("remove with no card: %v %v", ev, err)
	}
	if _, err := wait(abecs.WaitRequest{Keys: true}); !errors.Is(err, abecs.ErrCancelled) {
		t.Fatalf("cancel: %v", err)
	}
	if _, err := wait(abecs.WaitRequest{Swipe: true}); !errors.Is(err, abecs.ErrInternal) {
		t.Fatalf("a key while only swipes are awaited: %v", err)
	}
	info, err := r.client.Info(ctx)
	if err != nil || info.Serial != "PADSIM0001" || info.SpecVersion != "1.08" {
		t.Fatalf("GIN: %+v %v", info, err)
	}
	if _, err := r.client.Do(ctx, abecs.Command{ID: "GIN", Blocks: [][]byte{[]byte("01")}}, 0); !errors.Is(err, abecs.ErrInvalidParameter) {
		t.Fatalf("GIN 01: %v", err)
	}
	if r.pad.Remaining() != 1 {
		t.Fatalf("%d events left, want 1 (the f1 key)", r.pad.Remaining())
	}
}

func TestChipOptions(t *testing.T) {
	r := newRig(t, insertScript(`{"pan":"`+pan+`"}`), rigOpts{padOpts: padsimOpts(t, "986", "076")})
	r.client.GetCard(context.Background(), abecs.CardRequest{Timeout: 2 * time.Second})
	res, err := goChip(r, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := emv.Parse(res.EMVData)
	v1, _ := d.Value("5F2A")
	v2, _ := d.Value("9F1A")
	if fmt.Sprintf("%X %X", v1, v2) != "0986 0076" {
		t.Fatalf("currency, country %X %X", v1, v2)
	}
}

func padsimOpts(t *testing.T, currency, country string) padsim.Options {
	return padsim.Options{BDK: bdk(t), KSN: ksn0(t), Currency: currency, Country: country}
}

// CKE with contactless on: a tap answers event 3 with CKE_CTLSSTAT 1 and stays for the GCR
// that reads it; a cardholder who does not act answers event 3 with CKE_CTLSSTAT 0. A pad
// without a reader ignores the flag: the tap is not an event it can report.
func TestWaitEventContactless(t *testing.T) {
	script := `{"events":[{"tap":` + chipCard + `},{"timeout":true},{"timeout":true}]}`
	r := newRig(t, script, rigOpts{padOpts: padsim.Options{Contactless: true}})
	ctx := context.Background()
	wait := func(r *rig, req abecs.WaitRequest) (abecs.PadEvent, error) {
		req.Timeout = 2 * time.Second
		return r.client.WaitEvent(ctx, req)
	}
	if ev, err := wait(r, abecs.WaitRequest{Keys: true, Insert: true, Contactless: true}); err != nil || ev.Kind != abecs.EventTapped {
		t.Fatalf("tap: %v %v", ev, err)
	}
	cd, err := r.client.GetCard(ctx, abecs.CardRequest{AmountMinor: 1000, Contactless: true, Timeout: 2 * time.Second})
	if err != nil || cd.Type() != abecs.CardTypeCtlsChip {
		t.Fatalf("GCR after the CKE tap: %v %v", cd, err)
	}
	if ev, err := wait(r, abecs.WaitRequest{Keys: true, Contactless: true}); err != nil || ev.Kind != abecs.EventNoTap {
		t.Fatalf("no tap: %v %v", ev, err)
	}
	// Contactless off: the same cardholder times out (012).
	if _, err := wait(r, abecs.WaitRequest{Keys: true}); !errors.Is(err, abecs.ErrPadTimeout) {
		t.Fatalf("timeout with contactless off: %v", err)
	}
	if !strings.Contains(r.log.String(), "CKE keys,insert,ctls") {
		t.Errorf("log does not name the contactless wait:\n%s", r.log.String())
	}

	plain := newRig(t, `{"events":[{"tap":`+chipCard+`}]}`, rigOpts{})
	if _, err := wait(plain, abecs.WaitRequest{Keys: true, Contactless: true}); !errors.Is(err, abecs.ErrInternal) {
		t.Fatalf("tap on a pad without a reader: %v", err)
	}
}
