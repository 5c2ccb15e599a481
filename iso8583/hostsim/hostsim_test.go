package hostsim_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
	"github.com/posd-dev/posd/terminal/card"
)

const testBDKHex = "0123456789ABCDEFFEDCBA9876543210" // public ANSI X9.24-1 test key

func bdk(t testing.TB) []byte {
	b, err := hex.DecodeString(testBDKHex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var now = time.Date(2025, 3, 14, 15, 9, 27, 0, time.UTC)

func newServer(t *testing.T, opts hostsim.Options) *hostsim.Server {
	t.Helper()
	if opts.BDK == nil {
		opts.BDK = bdk(t)
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return now }
	}
	s, err := hostsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pinBlock encrypts pin for pan under the DUKPT key of counter n of the test KSN.
func pinBlock(t *testing.T, pin, pan string, n uint32) ([]byte, string) {
	t.Helper()
	ksn, err := dukpt.ParseKSN("FFFF9876543210E00000")
	if err != nil {
		t.Fatal(err)
	}
	ksn = ksn.WithCounter(n)
	key, err := dukpt.TDESPINKey(bdk(t), ksn)
	if err != nil {
		t.Fatal(err)
	}
	clear, err := pinblock.EncodeFormat0(pin, pan)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := pinblock.EncryptTDES(key, clear)
	if err != nil {
		t.Fatal(err)
	}
	return enc[:], ksn.String()
}

func TestDefaultCards(t *testing.T) {
	cards := hostsim.DefaultCards()
	want := map[string]hostsim.Card{
		"4761739001010010": {PAN: "4761739001010010", PIN: "1234", BalanceMinor: 100_000_000, Expiry: "3012"},
		"5413330089020011": {PAN: "5413330089020011", PIN: "1234", BalanceMinor: 500, Expiry: "3012"},
	}
	blocked := false
	for _, c := range cards {
		if !card.Luhn(c.PAN) {
			t.Errorf("%s fails the Luhn check", card.MaskPAN(c.PAN))
		}
		if _, err := card.ParsePAN(c.PAN); err != nil {
			t.Errorf("%s: %v", card.MaskPAN(c.PAN), err)
		}
		if w, ok := want[c.PAN]; ok && c != w {
			t.Errorf("card %v, want %v", c, w)
		}
		delete(want, c.PAN)
		if c.PAN == "4000000000000002" {
			blocked = c.Blocked
		}
	}
	if len(want) != 0 || !blocked {
		t.Errorf("missing cards %v, 4000000000000002 blocked: %t", want, blocked)
	}
	// By hand: in 4000000000000002 the check digit 2 is kept and the leading 4, in a doubled
	// position, counts 8: 2 + 8 = 10, valid. Any other check digit is not.
	if !card.Luhn("4000000000000002") || card.Luhn("4000000000000003") {
		t.Error("Luhn accepts a wrong check digit")
	}
}

func TestCardStringHidesPANAndPIN(t *testing.T) {
	c := hostsim.Card{PAN: "4761739001010010", PIN: "9876", BalanceMinor: 1, Expiry: "3012"}
	for _, s := range []string{c.String(), fmt.Sprint(c), c.LogValue().String()} {
		if strings.Contains(s, "4761739001010010") || strings.Contains(s, "9876") || !strings.Contains(s, "476173******0010") {
			t.Errorf("card shown as %q", s)
		}
	}
}

func TestNewServerChecksOptions(t *testing.T) {
	bad := []hostsim.Options{
		{},                      // no BDK
		{BDK: make([]byte, 24)}, // not double length
		{BDK: bdk(t), Cards: []hostsim.Card{{PAN: "4761739001010011", Expiry: "3012"}}},            // Luhn
		{BDK: bdk(t), Cards: []hostsim.Card{{PAN: "4761739001010010", Expiry: "3013"}}},            // expiry
		{BDK: bdk(t), Cards: []hostsim.Card{{PAN: "4761739001010010", Expiry: "3012", PIN: "12"}}}, // PIN
		{BDK: bdk(t), Cards: []hostsim.Card{{PAN: "4761739001010010", Expiry: "3012", BalanceMinor: -1}}},
		{BDK: bdk(t), Cards: []hostsim.Card{{PAN: "4761739001010010", Expiry: "3012"}, {PAN: "4761739001010010", Expiry: "3012"}}},
	}
	for i, opts := range bad {
		_, err := hostsim.NewServer(opts)
		if err == nil {
			t.Errorf("options %d accepted", i)
			continue
		}
		if strings.Contains(err.Error(), "476173900101001") {
			t.Errorf("error %q shows the PAN", err)
		}
	}
}

func TestReadCards(t *testing.T) {
	cards, err := hostsim.ReadCards(strings.NewReader(`[{"pan":"4761739001010010","pin":"1234","balance_minor":500,"expiry":"3012"},
		{"pan":"4000000000000002","balance_minor":0,"expiry":"2901","blocked":true}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []hostsim.Card{{PAN: "4761739001010010", PIN: "1234", BalanceMinor: 500, Expiry: "3012"}, {PAN: "4000000000000002", Expiry: "2901", Blocked: true}}
	if fmt.Sprint(cards) != fmt.Sprint(want) || cards[0].PIN != "1234" {
		t.Fatalf("got %v, want %v", cards, want)
	}
	for _, bad := range []string{
		`[{"pan":"4761739001010010","expiry":"3012","colour":"red"}]`, // unknown field
		`[{"pan":"4761739001010011","expiry":"3012"}]`,                // Luhn
		`[] []`,
		`{`,
	} {
		if _, err := hostsim.ReadCards(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadCards(%s) succeeded", bad)
		}
	}
}

func request(t *testing.T, mti string, fields map[int]string) *iso8583.Message {
	t.Helper()
	m := iso8583.NewMessage(iso8583.DefaultSpec())
	m.MTI(mti)
	for id, v := range fields {
		if err := m.Field(id, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func sale(stan int, pan, expiry, amount string) map[int]string {
	return map[int]string{2: pan, 3: "000000", 4: amount, 7: "0314150926", 11: fmt.Sprintf("%06d", stan), 12: "160926", 13: "0314",
		14: expiry, 22: "012", 41: "TERM0001", 42: "MERCHANT0000001", 49: "978"}
}

func TestRespond(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	rc := func(m *iso8583.Message) string {
		t.Helper()
		if m == nil {
			t.Fatal("no response")
		}
		v, _ := m.GetString(39)
		return v
	}

	// Approval without a PIN block; the echoed fields come back.
	resp := s.Respond(request(t, "0200", sale(42, "4761739001010010", "3012", "000000001000")))
	if rc(resp) != "00" {
		t.Fatalf("rc = %s", rc(resp))
	}
	for id, want := range map[int]string{0: "0210", 3: "000000", 4: "000000001000", 7: "0314150926", 11: "000042",
		12: "160926", 13: "0314", 41: "TERM0001", 42: "MERCHANT0000001", 49: "978", 38: "000001", 37: "507315000001"} {
		if got, _ := resp.GetString(id); got != want {
			t.Errorf("field %d = %q, want %q", id, got, want)
		}
	}
	if got, _ := resp.GetString(2); got != "" {
		t.Error("the response carries the PAN")
	}

	// Expiry: valid through the end of its month.
	if got := rc(s.Respond(request(t, "0100", sale(102, "4761739001010010", "2503", "000000000100")))); got != "54" {
		t.Errorf("expiry 2503 = %s, want 54 (table says 3012)", got)
	}
	if got := rc(s.Respond(request(t, "0100", sale(103, "4761739001010010", "2502", "000000000100")))); got != "54" {
		t.Errorf("expired 2502 = %s, want 54", got)
	}
	expiring := newServer(t, hostsim.Options{Cards: []hostsim.Card{{PAN: "4761739001010010", BalanceMinor: 100, Expiry: "2503"}}})
	if got := rc(expiring.Respond(request(t, "0100", sale(104, "4761739001010010", "2503", "000000000100")))); got != "00" {
		t.Errorf("card expiring this month = %s, want 00", got)
	}

	// Format errors: missing mandatory field, PIN block without KSN.
	f := sale(105, "4761739001010010", "3012", "000000000100")
	delete(f, 3)
	if got := rc(s.Respond(request(t, "0200", f))); got != "30" {
		t.Errorf("without field 3 = %s, want 30", got)
	}
	m := request(t, "0200", sale(106, "4761739001010010", "3012", "000000000100"))
	m.BinaryField(52, make([]byte, 8))
	if got := rc(s.Respond(m)); got != "30" {
		t.Errorf("PIN block without KSN = %s, want 30", got)
	}

	// Luhn-invalid PAN: 14.
	if got := rc(s.Respond(request(t, "0200", sale(107, "4761739001010011", "3012", "000000000100")))); got != "14" {
		t.Errorf("Luhn-invalid = %s, want 14", got)
	}

	// Network management and unsupported types.
	echo := s.Respond(request(t, "0800", map[int]string{7: "0314150926", 11: "000001", 70: "301"}))
	if mti, _ := echo.GetMTI(); mti != "0810" || rc(echo) != "00" {
		t.Errorf("0800: %s rc %s", mti, rc(echo))
	}
	if nmic, _ := echo.GetString(70); nmic != "301" {
		t.Errorf("0810 field 70 = %q", nmic)
	}
	if got := rc(s.Respond(request(t, "0400", sale(108, "4761739001010010", "3012", "000000000100")))); got != "30" {
		t.Errorf("0400 without field 90 = %s, want 30", got)
	}
	if got := rc(s.Respond(request(t, "0600", sale(108, "4761739001010010", "3012", "000000000100")))); got != "12" {
		t.Errorf("0600 = %s, want 12", got)
	}
	if s.Respond(request(t, "0210", map[int]string{11: "000001"})) != nil {
		t.Error("answered a response")
	}
	if s.Respond(request(t, "0200", map[int]string{41: "TERM0001"})) != nil {
		t.Error("answered a request without STAN")
	}
	if n := len(s.Ledger()); n != 1 {
		t.Errorf("ledger has %d entries, want 1", n)
	}
}

func TestRespondPIN(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	for _, tt := range []struct {
		pin  string
		n    uint32
		want string
	}{{"1234", 1, "00"}, {"1235", 2, "55"}, {"1234", 3, "00"}} {
		m := request(t, "0200", sale(int(200+tt.n), "4761739001010010", "3012", "000000000100"))
		block, ksn := pinBlock(t, tt.pin, "4761739001010010", tt.n)
		m.BinaryField(52, block)
		m.Field(62, ksn)
		if got, _ := s.Respond(m).GetString(39); got != tt.want {
			t.Errorf("PIN %s: rc = %s, want %s", tt.pin, got, tt.want)
		}
	}
	// A block made for another PAN does not decode for this one.
	m := request(t, "0200", sale(110, "4761739001010010", "3012", "000000000100"))
	block, ksn := pinBlock(t, "1234", "5413330089020011", 4)
	m.BinaryField(52, block)
	m.Field(62, ksn)
	if got, _ := s.Respond(m).GetString(39); got != "55" {
		t.Errorf("block of another PAN: rc = %s, want 55", got)
	}
}

func TestLedgerAndBalance(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	for i, amount := range []string{"000000000300", "000000000300", "000000000200"} {
		s.Respond(request(t, "0200", sale(40+i, "5413330089020011", "3012", amount)))
	}
	ledger := s.Ledger()
	if len(ledger) != 2 {
		t.Fatalf("ledger %v", ledger)
	}
	e := ledger[1]
	want := hostsim.LedgerEntry{Time: now, STAN: 42, TerminalID: "TERM0001", MaskedPAN: "541333******0011", AmountMinor: 200,
		Currency: "978", ApprovalCode: "000002", RRN: "507315000002"}
	if e != want {
		t.Errorf("entry %+v\nwant %+v", e, want)
	}
	if strings.Contains(e.String(), "5413330089020011") {
		t.Errorf("ledger line shows the PAN: %s", e)
	}
	if bal, ok := s.Balance("5413330089020011"); !ok || bal != 0 {
		t.Errorf("balance = %d, %t", bal, ok)
	}
	ledger[0].RRN = "changed"
	if s.Ledger()[0].RRN == "changed" {
		t.Error("Ledger returned its own slice")
	}
}

func TestOverride(t *testing.T) {
	s := newServer(t, hostsim.Options{Override: func(*iso8583.Message) string { return "91" }})
	got, _ := s.Respond(request(t, "0200", sale(112, "4761739001010010", "3012", "000000000100"))).GetString(39)
	if got != "91" || len(s.Ledger()) != 0 {
		t.Fatalf("rc = %s, ledger %v", got, s.Ledger())
	}
}

// The connection survives a request it cannot read; Serve stops when its context ends.
func TestServeSurvivesGarbage(t *testing.T) {
	logged := make(chan string, 10)
	s := newServer(t, hostsim.Options{Logf: func(format string, args ...any) {
		select {
		case logged <- fmt.Sprintf(format, args...):
		default:
		}
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fr := iso8583.BinaryLengthFramer{}
	if err := fr.WriteFrame(nc, []byte("not iso 8583")); err != nil {
		t.Fatal(err)
	}
	out, err := iso8583.Pack(request(t, "0200", sale(113, "4761739001010010", "3012", "000000000100")))
	if err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteFrame(nc, out); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := fr.ReadFrame(nc)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := iso8583.Unpack(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if rc, _ := resp.GetString(39); rc != "00" {
		t.Fatalf("rc = %s", rc)
	}
	// Requests are handled concurrently: the garbage's log line may come second.
	for found := false; !found; {
		select {
		case line := <-logged:
			found = strings.Contains(line, "unreadable request of 12 bytes")
		case <-time.After(5 * time.Second):
			t.Fatal("the unreadable request was not logged")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// A terminal's sale against the simulated acquirer over TCP.
func Example() {
	bdk, _ := hex.DecodeString("0123456789ABCDEFFEDCBA9876543210") // public test key
	srv, err := hostsim.NewServer(hostsim.Options{BDK: bdk})
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)

	client, err := iso8583.NewClient(iso8583.ClientOptions{Addr: ln.Addr().String()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	pan, _ := card.ParsePAN("5413330089020011") // balance 5.00
	for stan, amount := range []int64{4_00, 2_00} {
		req, err := iso8583.Authorization{
			AmountMinor: amount, CurrencyNumeric: "978", STAN: uint32(stan + 1),
			TransmissionTime: time.Now(), LocalTime: time.Now(),
			PAN: pan, Expiry: "3012", EntryMode: "012",
			TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
		}.Message()
		if err != nil {
			fmt.Println(err)
			return
		}
		resp, err := client.Send(ctx, req)
		if err != nil {
			fmt.Println(err)
			return
		}
		r, _ := iso8583.ParseAuthResponse(resp)
		fmt.Println(r.STAN, r.ResponseCode, iso8583.ResponseText(r.ResponseCode))
	}
	fmt.Println(len(srv.Ledger()), "approved:", srv.Ledger()[0].MaskedPAN)
	// Output:
	// 1 00 approved
	// 2 51 insufficient funds
	// 1 approved: 541333******0011
}

var (
	sentAt  = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	localAt = sentAt.In(time.FixedZone("CET", 3600))
)

func mustPAN(t *testing.T, s string) card.PAN {
	t.Helper()
	p, err := card.ParsePAN(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func auth(t *testing.T, stan uint32, pan string, amount int64) iso8583.Authorization {
	return iso8583.Authorization{AmountMinor: amount, CurrencyNumeric: "978", STAN: stan,
		TransmissionTime: sentAt.Add(time.Duration(stan) * time.Second), LocalTime: localAt.Add(time.Duration(stan) * time.Second),
		PAN: mustPAN(t, pan), Expiry: "3012", EntryMode: "012", TerminalID: "TERM0001", MerchantID: "MERCHANT0000001"}
}

func reversal(t *testing.T, a iso8583.Authorization, stan uint32) iso8583.Reversal {
	mti := a.MTI
	if mti == "" {
		mti = "0200"
	}
	return iso8583.Reversal{STAN: stan, TransmissionTime: a.TransmissionTime.Add(time.Minute),
		OriginalMTI: mti, OriginalSTAN: a.STAN, OriginalTransmissionTime: a.TransmissionTime,
		PAN: a.PAN, AmountMinor: a.AmountMinor, CurrencyNumeric: "978", TerminalID: a.TerminalID,
		MerchantID: a.MerchantID, ReasonCode: iso8583.ReasonLateResponse}
}

func msg(t *testing.T) func(*iso8583.Message, error) *iso8583.Message {
	return func(m *iso8583.Message, err error) *iso8583.Message {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func answer(t *testing.T, s *hostsim.Server, m *iso8583.Message) iso8583.Response {
	t.Helper()
	resp := s.Respond(m)
	if resp == nil {
		t.Fatal("no answer")
	}
	r, err := iso8583.ParseResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A duplicate of a sale (same terminal, STAN and local time; even with a new field 7) gets
// the first answer and changes nothing; the same STAN with other content gets 94.
func TestDuplicatesAreNotProcessedTwice(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	a := auth(t, 1, "5413330089020011", 3_00)
	first := answer(t, s, msg(t)(a.Message()))
	a.TransmissionTime = a.TransmissionTime.Add(30 * time.Second) // a retransmission
	again := answer(t, s, msg(t)(a.Message()))
	if first.ResponseCode != "00" || again.String() != first.String() {
		t.Fatalf("first %+v, again %+v", first, again)
	}
	a.AmountMinor = 4_00
	if r := answer(t, s, msg(t)(a.Message())); r.ResponseCode != "94" {
		t.Errorf("same STAN, other amount: %+v", r)
	}
	if bal, _ := s.Balance("5413330089020011"); bal != 2_00 {
		t.Errorf("balance %d, want 200", bal)
	}
	ch := s.Charges()
	if len(ch) != 1 || ch[0].Times != 3 || !ch[0].Charged() {
		t.Fatalf("charges %v", ch)
	}
	// A decline is remembered too.
	d := auth(t, 2, "5413330089020011", 9_00)
	if r1, r2 := answer(t, s, msg(t)(d.Message())), answer(t, s, msg(t)(d.Message())); r1.ResponseCode != "51" || r2.String() != r1.String() {
		t.Errorf("declines %+v %+v", r1, r2)
	}
}

// Reversals are checked against the ledger by field 90 and are idempotent.
func TestReversals(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	sale := auth(t, 10, "5413330089020011", 3_00)
	answer(t, s, msg(t)(sale.Message()))
	tests := []struct {
		name string
		edit func(*iso8583.Reversal)
		rc   string
	}{
		{"other amount", func(r *iso8583.Reversal) { r.AmountMinor = 2_00 }, "13"},
		{"other MTI", func(r *iso8583.Reversal) { r.OriginalMTI = "0100" }, "12"},
		{"other card", func(r *iso8583.Reversal) { r.PAN = mustPAN(t, "4761739001010010") }, "12"},
		{"unknown original", func(r *iso8583.Reversal) { r.OriginalSTAN = 99 }, "25"},
		{"reversal", func(r *iso8583.Reversal) {}, "00"},
		{"repeat", func(r *iso8583.Reversal) { r.Repeat = true }, "00"},
		{"advice", func(r *iso8583.Reversal) { r.Advice = true; r.STAN = 12 }, "00"},
		{"advice repeat", func(r *iso8583.Reversal) { r.Advice, r.Repeat = true, true; r.STAN = 12 }, "00"},
		{"without card data", func(r *iso8583.Reversal) { r.PAN = card.PAN{}; r.STAN = 13 }, "00"},
	}
	for _, tt := range tests {
		r := reversal(t, sale, 11)
		tt.edit(&r)
		got := answer(t, s, msg(t)(r.Message()))
		if got.ResponseCode != tt.rc || got.MTI != map[bool]string{false: "0410", true: "0430"}[r.Advice] {
			t.Errorf("%s: %+v, want %s", tt.name, got, tt.rc)
		}
	}
	if bal, _ := s.Balance("5413330089020011"); bal != 5_00 {
		t.Errorf("balance %d after reversals, want 500 (given back once)", bal)
	}
	ch := s.Charges()
	if len(ch) != 1 || !ch[0].Reversed || ch[0].Charged() || ch[0].Reversals != 5 {
		t.Fatalf("charges %v", ch)
	}
	if l := s.Ledger(); len(l) != 1 || !l[0].Reversed || !strings.HasSuffix(l[0].String(), " reversed") {
		t.Errorf("ledger %v", l)
	}
	// The original of an earlier "unknown original" reversal arrives late: declined.
	late := auth(t, 99, "5413330089020011", 1_00)
	late.TransmissionTime = sale.TransmissionTime
	late.LocalTime = sale.LocalTime.Add(time.Hour)
	if r := answer(t, s, msg(t)(late.Message())); r.ResponseCode != "12" {
		t.Errorf("original after its reversal: %+v", r)
	}
	if bal, _ := s.Balance("5413330089020011"); bal != 5_00 {
		t.Errorf("balance %d, want 500", bal)
	}
}

// Advices: accepted and recorded; a repeat is answered without a second charge; a
// completion releases its authorization's hold.
func TestAdvices(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	pre := auth(t, 20, "4761739001010010", 50_00)
	pre.MTI = "0100"
	if r := answer(t, s, msg(t)(pre.Message())); r.ResponseCode != "00" || r.MTI != "0110" {
		t.Fatalf("0100: %+v", r)
	}
	completion := iso8583.Advice{AmountMinor: 42_00, CurrencyNumeric: "978", STAN: 21, TransmissionTime: sentAt.Add(time.Hour),
		LocalTime: localAt.Add(time.Hour), PAN: mustPAN(t, "4761739001010010"), Expiry: "3012", EntryMode: "012",
		TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", ApprovalCode: "000001", ResponseCode: "00",
		Original: &iso8583.Original{MTI: "0100", STAN: 20, TransmissionTime: pre.TransmissionTime}}
	for _, repeat := range []bool{false, true, true} {
		completion.Repeat = repeat
		completion.TransmissionTime = completion.TransmissionTime.Add(time.Minute)
		if r := answer(t, s, msg(t)(completion.Message())); r.ResponseCode != "00" || r.MTI != "0230" || r.ApprovalCode != "000001" {
			t.Errorf("0220 repeat=%t: %+v", repeat, r)
		}
	}
	if bal, _ := s.Balance("4761739001010010"); bal != 1_000_000_00-42_00 {
		t.Errorf("balance %d: the hold was not replaced by the completion", bal)
	}
	offline := completion
	offline.STAN, offline.Original, offline.ApprovalCode, offline.Repeat = 22, nil, "Y10022", false
	offline.LocalTime = offline.LocalTime.Add(time.Hour)
	offline.PAN = mustPAN(t, "4111111111111111") // not in the table: accepted all the same
	if r := answer(t, s, msg(t)(offline.Message())); r.ResponseCode != "00" {
		t.Errorf("offline advice: %+v", r)
	}
	declined := offline
	declined.STAN, declined.ResponseCode, declined.ApprovalCode = 23, "05", ""
	declined.LocalTime = declined.LocalTime.Add(time.Hour)
	answer(t, s, msg(t)(declined.Message()))
	ch := s.Charges()
	if len(ch) != 4 || !ch[0].Completed || ch[0].Charged() || ch[1].Times != 3 || ch[1].MTI != "0220" || !ch[2].Charged() || ch[3].Approved {
		t.Fatalf("charges:\n%v", ch)
	}
}

// Reconciliation compares the terminal's totals with the host's and closes the batch.
func TestReconciliation(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	a1, a2, a3 := auth(t, 30, "4761739001010010", 10_00), auth(t, 31, "4761739001010010", 20_00), auth(t, 32, "4761739001010010", 5_00)
	a3.ProcessingCode = "200000" // refund
	for _, a := range []iso8583.Authorization{a1, a2, a3} {
		answer(t, s, msg(t)(a.Message()))
	}
	answer(t, s, msg(t)(reversal(t, a2, 33).Message()))
	rec := iso8583.Reconciliation{BatchNumber: 1, STAN: 34, TransmissionTime: sentAt, TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
		CurrencyNumeric: "978", Totals: iso8583.Totals{DebitsCount: 2, DebitsAmount: 30_00, DebitReversalsCount: 1, DebitReversalsAmount: 20_00,
			CreditsCount: 1, CreditsAmount: 5_00}}
	wrong := rec
	wrong.Totals.DebitsAmount++
	if r := answer(t, s, msg(t)(wrong.Message())); r.ResponseCode != "95" || r.MTI != "0510" {
		t.Errorf("out of balance: %+v", r)
	}
	for range 2 { // the second is a copy of a batch already closed
		if r := answer(t, s, msg(t)(rec.Message())); r.ResponseCode != "00" {
			t.Errorf("in balance: %+v", r)
		}
	}
	for _, c := range s.Charges() {
		if !c.Settled {
			t.Errorf("not settled: %v", c)
		}
	}
	// The next batch starts empty.
	rec.BatchNumber, rec.STAN, rec.Totals = 2, 35, iso8583.Totals{}
	if r := answer(t, s, msg(t)(rec.Message())); r.ResponseCode != "00" {
		t.Errorf("empty batch: %+v", r)
	}
	if bal, _ := s.Balance("4761739001010010"); bal != 1_000_000_00-10_00+5_00 {
		t.Errorf("balance %d", bal)
	}
	// Batch 1: three 0500s (95, 00, the copy), closed with the balanced totals; batch 2: one.
	got := s.ClosedBatches()
	want := []hostsim.ClosedBatch{
		{TerminalID: "TERM0001", Batch: "000001", Totals: iso8583.Totals{DebitsCount: 2, DebitsAmount: 30_00, DebitReversalsCount: 1,
			DebitReversalsAmount: 20_00, CreditsCount: 1, CreditsAmount: 5_00}, Requests: 3, Closed: true},
		{TerminalID: "TERM0001", Batch: "000002", Requests: 1, Closed: true},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("ClosedBatches:\n got %+v\nwant %+v", got, want)
	}
}

func TestNetworkManagement(t *testing.T) {
	s := newServer(t, hostsim.Options{})
	for _, tt := range []struct {
		code, rc string
		on       bool
	}{{"001", "00", true}, {"301", "00", true}, {"002", "00", false}} {
		m := msg(t)(iso8583.NetworkManagement{Code: tt.code, STAN: 1, TransmissionTime: sentAt, TerminalID: "TERM0001"}.Message())
		r := answer(t, s, m)
		if r.ResponseCode != tt.rc || r.NetworkCode != tt.code || r.MTI != "0810" || s.SignedOn("TERM0001") != tt.on {
			t.Errorf("%s: %+v, signed on %t", tt.code, r, s.SignedOn("TERM0001"))
		}
	}
	m := msg(t)(iso8583.NetworkManagement{Code: "301", STAN: 1, TransmissionTime: sentAt}.Message())
	m.Field(70, "161")
	if r := answer(t, s, m); r.ResponseCode != "12" {
		t.Errorf("code 161: %+v", r)
	}
}

// A card with PartialApproval above its balance is approved for the balance with 10, the
// amount in field 4 of the answer; a repeat is answered the same; the reversal must carry
// the amount approved, which gives it back.
func TestPartialApproval(t *testing.T) {
	const pan = "4761739001010010"
	s := newServer(t, hostsim.Options{Cards: []hostsim.Card{
		{PAN: pan, PIN: "1234", BalanceMinor: 700, Expiry: "3012", PartialApproval: true},
		{PAN: "5413330089020011", BalanceMinor: 0, Expiry: "3012", PartialApproval: true},
	}})
	a := auth(t, 1, pan, 1250)
	for range 2 { // the second is a duplicate: answered as the first, nothing taken twice
		r := answer(t, s, msg(t)(a.Message()))
		if r.ResponseCode != iso8583.RCPartialApproval || r.AmountMinor != 700 {
			t.Fatalf("answer %+v, want 10 for 700", r)
		}
	}
	if bal, _ := s.Balance(pan); bal != 0 {
		t.Errorf("balance %d after the partial approval, want 0", bal)
	}
	if l := s.Ledger(); len(l) != 1 || l[0].AmountMinor != 700 {
		t.Errorf("ledger = %+v", l)
	}
	if r := answer(t, s, msg(t)(auth(t, 2, "5413330089020011", 100).Message())); r.ResponseCode != iso8583.RCInsufficientFunds {
		t.Errorf("a card with nothing left: %s, want 51", r.ResponseCode)
	}
	rev := reversal(t, a, 3)
	if r := answer(t, s, msg(t)(rev.Message())); r.ResponseCode != iso8583.RCInvalidAmount {
		t.Errorf("reversal of the amount asked: %s, want 13", r.ResponseCode)
	}
	rev.STAN, rev.AmountMinor = 4, 700
	if r := answer(t, s, msg(t)(rev.Message())); r.ResponseCode != iso8583.RCApproved {
		t.Errorf("reversal of the amount approved: %s, want 00", r.ResponseCode)
	}
	if bal, _ := s.Balance(pan); bal != 700 {
		t.Errorf("balance %d after the reversal, want 700", bal)
	}
}
