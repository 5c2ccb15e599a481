// Package hostsim is an acquirer host simulator: it answers the terminal message set of
// package iso8583 (0100, 0200, 0220/0221, 0400/0401, 0420/0421, 0500, 0800) from a table
// of test cards, in posd's default dialect or any other, checking the card, its expiry, a
// DUKPT PIN block (TDES, ISO 9564 format 0; or AES, format 4) and the balance, and keeping a
// ledger of what it charged. It is used by tests and by cmd/acquirer-sim; posd itself never
// imports it.
//
// # Basics
//
//	srv, err := hostsim.NewServer(hostsim.Options{BDK: bdk})
//	ln, err := net.Listen("tcp", "127.0.0.1:0")
//	go srv.Serve(ctx, ln) // until ctx ends
//
// # PIN blocks
//
// Field 52 with its KSN in field 62 (hexadecimal) is checked by its length: an 8-byte block
// with a 20-digit KSN is TDES DUKPT (ANSI X9.24-1), decrypted under the PIN key derived from
// Options.BDK and decoded as ISO 9564 format 0; a 16-byte block with a 24-digit KSN is AES
// DUKPT (ANSI X9.24-3-2017), decrypted under the PIN encryption working key of type
// Options.AESPINKeyType derived from Options.AESBDK and decoded as format 4 with the
// request's PAN. Any other pairing, or a variant the host has no BDK for, is a format error
// (30); a block that does not hold the card's PIN is 55.
//
// Every request is first checked against the message rules of Options.Dialect (the
// "mandatory" and "forbidden" fields its file's "messages" object gives each MTI, see
// iso8583.ParseDialect): one that breaks them gets 30, its log line names the field, and
// nothing is decided or recorded.
//
// An 0100 or 0200 is decided in this order: a malformed request gets 30; an unknown,
// blocked or Luhn-invalid card 14; an expiry in the past (a card is valid through the end
// of its month) or different from the table's 54; a PIN block that does not decrypt to the
// card's PIN 55; an amount above the balance 51, or for a card with PartialApproval and a
// balance above 0, 10 with the balance in field 4 of the response, the balance taken and
// charged; anything else 00, with a 6-digit approval code and a 12-digit retrieval
// reference number, and the amount taken from the balance (a processing code 20xxxx, a
// refund, adds it instead). The response has the request MTI + 10 and echoes fields 3, 4,
// 7, 11, 12, 13, 41, 42 and 49.
//
// Each transaction is known by terminal id, STAN and local date and time (fields 41, 11,
// 13 and 12; field 7 when 12 and 13 are absent). A duplicate or a repeat (0221) of one
// already processed is answered as the first was, without changing anything; a duplicate
// whose amount or card differs gets 94.
//
// An 0220 (offline approval or completion) is accepted with 00 whatever the card, unless
// malformed (30): it records the terminal's decision (field 39) and, for an approval,
// takes the amount. A completion whose field 90 names an approved 0100 of the same
// terminal releases that authorization's hold.
//
// An 0400, 0401, 0420 or 0421 is checked against the ledger through field 90 (original
// MTI, STAN and transmission time, with the terminal id): no such original, 25 (and an
// original that arrives later is declined with 12); a different MTI or card 12; a
// different amount 13 (partial reversals are not simulated; a partial approval is
// reversed with the amount approved, field 4 of its response); otherwise 00, and the first
// reversal gives the amount back. Reversing twice changes nothing the second time.
//
// An 0500 compares the terminal's totals with the host's for the terminal's transactions
// not yet settled: debits are approved 0200s and approving 0220s, credits the same with a
// processing code 20xxxx, their reversals those of them reversed (0100 authorizations
// count only through their completions). Equal totals get 00 and settle the batch (field
// 60); different ones 95, changing nothing. An 0800 gets 00 for sign-on (001), sign-off
// (002) and echo (301), 12 for other codes. Other request types get 12.
//
// # Caveats
//
// A request that cannot be unpacked is logged and dropped: without its STAN and terminal
// id nobody could match an answer. The connection stays up. Requests on one connection are
// handled concurrently, so responses may come back in another order. Options.Delay, Drop,
// Override, Duplicate, Corrupt and Hangup inject faults for tests.
package hostsim

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	moov "github.com/moov-io/iso8583"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

// Card is one test card. Its String and LogValue show the PAN masked and never the PIN.
// A Card is a plain value: safe for concurrent use if not modified. The Server keeps its
// own copies.
type Card struct {
	PAN          string `json:"pan"`           // 12 to 19 digits, Luhn-valid
	PIN          string `json:"pin,omitempty"` // 4 to 12 digits; empty: the card has no PIN
	BalanceMinor int64  `json:"balance_minor"` // available funds in minor units
	Expiry       string `json:"expiry"`        // YYMM
	Blocked      bool   `json:"blocked,omitempty"`
	// PartialApproval: a debit above the balance is approved for the balance with 10
	// (approved for a partial amount, the amount in field 4 of the response) instead of
	// declined with 51, as prepaid and gift cards are. A balance of 0 still gets 51.
	PartialApproval bool `json:"partial_approval,omitempty"`
}

// String returns the card with its PAN masked and without its PIN.
func (c Card) String() string {
	return fmt.Sprintf("%s expiry=%s balance=%d blocked=%t", card.MaskPAN(c.PAN), c.Expiry, c.BalanceMinor, c.Blocked)
}

// LogValue implements slog.LogValuer like String.
func (c Card) LogValue() slog.Value { return slog.StringValue(c.String()) }

// DefaultCards returns the demo's test cards (public test numbers, all Luhn-valid):
//
//	4761739001010010  PIN 1234  balance 1,000,000.00  expiry 3012  approves
//	5413330089020011  PIN 1234  balance 5.00          expiry 3012  51 above 5.00
//	4000000000000002  blocked                                      14
//
// Any other Luhn-valid PAN is declined with 14.
func DefaultCards() []Card {
	return []Card{
		{PAN: "4761739001010010", PIN: "1234", BalanceMinor: 1_000_000_00, Expiry: "3012"},
		{PAN: "5413330089020011", PIN: "1234", BalanceMinor: 5_00, Expiry: "3012"},
		{PAN: "4000000000000002", PIN: "1234", BalanceMinor: 1_000_00, Expiry: "3012", Blocked: true},
	}
}

// ReadCards decodes a JSON array of cards (fields pan, pin, balance_minor, expiry, blocked),
// refusing unknown fields, and checks each card as NewServer would.
func ReadCards(r io.Reader) ([]Card, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var cards []Card
	if err := dec.Decode(&cards); err != nil {
		return nil, fmt.Errorf("hostsim: read cards: %w", err)
	}
	if dec.More() {
		return nil, errors.New("hostsim: read cards: data after the JSON array")
	}
	if err := checkCards(cards); err != nil {
		return nil, err
	}
	return cards, nil
}

func checkCards(cards []Card) error {
	seen := make(map[string]bool, len(cards))
	for i, c := range cards {
		if _, err := card.ParsePAN(c.PAN); err != nil {
			return fmt.Errorf("hostsim: card %d: %w", i, err)
		}
		if seen[c.PAN] {
			return fmt.Errorf("hostsim: card %d: PAN %s listed twice", i, card.MaskPAN(c.PAN))
		}
		seen[c.PAN] = true
		if c.PIN != "" {
			if _, err := pinblock.EncodeFormat0(c.PIN, c.PAN); err != nil {
				return fmt.Errorf("hostsim: card %d: %w", i, err)
			}
		}
		if _, err := card.ParseExpiry(c.Expiry); err != nil {
			return fmt.Errorf("hostsim: card %d: %w", i, err)
		}
		if c.BalanceMinor < 0 {
			return fmt.Errorf("hostsim: card %d: negative balance", i)
		}
	}
	return nil
}

// Options configure a [Server]. The hooks (Now, Logf, Delay, Drop, Override, Duplicate,
// Corrupt, Hangup) are called from many goroutines at once and must be safe for
// concurrent use; they must not call the Server.
type Options struct {
	// BDK is the 16-byte TDES DUKPT base derivation key of 8-byte (format 0) PIN blocks.
	// Required unless AESBDK is set; without it TDES PIN blocks get 30.
	BDK []byte
	// AESBDK is the AES DUKPT base derivation key (16, 24 or 32 bytes) of 16-byte (format 4)
	// PIN blocks. Default nil: AES PIN blocks get 30.
	AESBDK []byte
	// AESPINKeyType is the type of the PIN encryption working key the terminals' PIN pads
	// derive from each AES transaction key: dukpt.KeyAES128, KeyAES192 or KeyAES256, no
	// stronger than AESBDK (format 4 is AES only). Default 0: AESBDK's own type.
	AESPINKeyType dukpt.KeyType
	// Cards is the card table. Default (nil): DefaultCards().
	Cards []Card
	// Dialect supplies Spec and Framer when those are nil. Its message rules (the
	// "mandatory" and "forbidden" fields of its file's "messages" object) are checked on
	// every request, as a real acquirer of that dialect would: a request that breaks them
	// gets 30 (format error) and a log line naming the field. Default: the default
	// dialect, which has no message rules.
	Dialect *iso8583.Dialect
	// Spec is the dialect's message spec. Default: Dialect's, else iso8583's default.
	Spec *iso8583.MessageSpec
	// Framer frames messages as the terminals do; the server writes with
	// iso8583.HostFramer(Framer) (a TPDU's addresses swapped). Default: Dialect's, else
	// iso8583.BinaryLengthFramer{}.
	Framer iso8583.Framer
	// Now is the clock for expiry checks, the ledger and reference numbers. Default:
	// time.Now.
	Now func() time.Time
	// Logf receives one masked line per request and its answer. Default: discard.
	Logf func(format string, args ...any)

	// Delay, when set, is asked for each request how long to wait before answering (the
	// decision, and any change of balance, is made before the wait). Default: no delay.
	Delay func(req *iso8583.Message) time.Duration
	// Drop, when set, is asked for each request whether to leave it unanswered (nothing
	// is decided or changed). Default: answer everything.
	Drop func(req *iso8583.Message) bool
	// Override, when set, is asked for each 0100 or 0200 for a response code to answer
	// with instead of deciding ("" decides normally); nothing is changed or recorded. Use
	// it for codes such as 91 and 96. Default: always decide.
	Override func(req *iso8583.Message) string
	// Duplicate, when set, is asked for each request whether to send its answer twice.
	// Default: once.
	Duplicate func(req *iso8583.Message) bool
	// Corrupt, when set, may replace the packed answer to req before it is framed (return
	// wire unchanged to leave it; nil to send nothing). The decision has been made and
	// recorded. Default: no change.
	Corrupt func(req *iso8583.Message, wire []byte) []byte
	// Hangup, when set, is asked for each request whether to close its connection at once
	// instead of answering (nothing is decided or changed). Default: never.
	Hangup func(req *iso8583.Message) bool
}

// LedgerEntry is one 0100 or 0200 the host approved. It holds the PAN masked only. It is a
// plain value, safe for concurrent use if not modified.
type LedgerEntry struct {
	Time         time.Time
	STAN         uint32
	TerminalID   string
	MaskedPAN    string
	AmountMinor  int64
	Currency     string
	ApprovalCode string
	RRN          string
	Reversed     bool // a reversal has since undone it
}

// String returns the entry on one line.
func (e LedgerEntry) String() string {
	s := fmt.Sprintf("%s stan=%06d tid=%s pan=%s amount=%d cur=%s auth=%s rrn=%s",
		e.Time.UTC().Format(time.RFC3339), e.STAN, e.TerminalID, e.MaskedPAN, e.AmountMinor, e.Currency, e.ApprovalCode, e.RRN)
	if e.Reversed {
		s += " reversed"
	}
	return s
}

// Charge is what the host knows of one original transaction (an 0100, 0200 or 0220,
// approved or not), identified by terminal id, STAN and transmission time. A test checks
// with it that each sale was charged at most once net of reversals: Charged() is true for
// at most one Charge per transaction, and Times counts the copies that arrived. It holds
// the PAN masked only. A Charge is a plain value, safe for concurrent use if not modified.
type Charge struct {
	TerminalID       string
	STAN             uint32
	TransmissionTime string // field 7 of the first copy processed, MMDDhhmmss
	LocalTime        string // fields 13 and 12, MMDDhhmmss; "" when absent
	MTI              string // of the first copy processed: 0100, 0200 or 0220
	MaskedPAN        string
	AmountMinor      int64
	Currency         string
	Credit           bool   // a refund (processing code 20xxxx)
	ResponseCode     string // the host's answer to an 0100 or 0200; the terminal's decision in an 0220
	ApprovalCode     string
	RRN              string
	Approved         bool // the amount was charged (or credited)
	Reversed         bool // a reversal has since undone it
	Completed        bool // an 0100 whose hold a completion (0220) has replaced
	Settled          bool // counted in a reconciliation that balanced
	Times            int  // copies received: the first, then duplicates and repeats
	Reversals        int  // reversal messages received for it
	Time             time.Time
}

// Charged reports whether the transaction's amount stands: approved, not reversed, and not
// an authorization replaced by its completion.
func (c Charge) Charged() bool { return c.Approved && !c.Reversed && !c.Completed }

// String returns the charge on one line.
func (c Charge) String() string {
	return fmt.Sprintf("%s stan=%06d tid=%s time=%s pan=%s amount=%d cur=%s rc=%s approved=%t reversed=%t times=%d reversals=%d",
		c.MTI, c.STAN, c.TerminalID, c.TransmissionTime, c.MaskedPAN, c.AmountMinor, c.Currency, c.ResponseCode,
		c.Approved, c.Reversed, c.Times, c.Reversals)
}

// txnKey identifies a transaction: terminal id, STAN, and local date and time (or field 7).
type txnKey struct{ tid, stan, when string }

// origKey is what field 90 names: terminal id, STAN and transmission time.
type origKey struct{ tid, stan, sent string }

// charge is a Charge with what the host needs to answer copies and reversals.
type charge struct {
	Charge
	pan   string // digits: the card table's key
	asked int64  // the request's amount: AmountMinor, or more for a partial approval
}

// Server is the simulated acquirer. It is safe for concurrent use; one Server may serve
// several listeners, sharing its cards and ledger.
type Server struct {
	opts        Options
	spec        *iso8583.MessageSpec
	dialect     *iso8583.Dialect // for its message rules; nil: none
	framer      iso8583.Framer
	writeFramer iso8583.Framer
	now         func() time.Time
	logf        func(string, ...any)
	tracing     bool

	mu       sync.Mutex
	cards    map[string]*Card // by PAN; balances change
	charges  []*charge        // in the order processed
	byTxn    map[txnKey]*charge
	byOrig   map[origKey]*charge
	orphans  map[origKey]bool // reversed before they arrived
	batches  map[string]bool  // terminal id + batch number, settled
	signedOn map[string]bool
	seq      uint64

	ipekMu   sync.Mutex
	ipeks    map[dukpt.KSN][]byte // TDES initial keys by KSN with a zero counter
	aesIKs   map[[8]byte][]byte   // AES initial keys by initial key ID
	aesPINKT dukpt.KeyType        // the AES PIN working key's type
}

// NewServer checks opts and returns a server.
func NewServer(opts Options) (*Server, error) {
	if len(opts.BDK) != 16 && (opts.BDK != nil || opts.AESBDK == nil) {
		return nil, fmt.Errorf("hostsim: BDK must be 16 bytes, got %d", len(opts.BDK))
	}
	var aesPINKT dukpt.KeyType
	if opts.AESBDK != nil {
		bt, err := dukpt.AESKeyType(len(opts.AESBDK))
		if err != nil {
			return nil, fmt.Errorf("hostsim: AESBDK: %w", err)
		}
		aesPINKT = opts.AESPINKeyType
		if aesPINKT == 0 {
			aesPINKT = bt
		}
		if !aesPINKT.IsAES() {
			return nil, fmt.Errorf("hostsim: AESPINKeyType %v: format 4 PIN blocks need an AES PIN key", aesPINKT)
		}
		// Derive once to check that the type may come from the BDK's (no stronger).
		if _, err := dukpt.AESDerivationPath(bt, dukpt.NewAESKSN([8]byte{}, 1), dukpt.UsagePINEncryption, aesPINKT); err != nil {
			return nil, fmt.Errorf("hostsim: AESPINKeyType %v with a %v BDK: %w", aesPINKT, bt, err)
		}
	} else if opts.AESPINKeyType != 0 {
		return nil, errors.New("hostsim: AESPINKeyType without AESBDK")
	}
	cards := opts.Cards
	if cards == nil {
		cards = DefaultCards()
	}
	if err := checkCards(cards); err != nil {
		return nil, err
	}
	s := &Server{
		opts:     opts,
		spec:     opts.Spec,
		framer:   opts.Framer,
		now:      opts.Now,
		logf:     opts.Logf,
		cards:    make(map[string]*Card, len(cards)),
		byTxn:    make(map[txnKey]*charge),
		byOrig:   make(map[origKey]*charge),
		orphans:  make(map[origKey]bool),
		batches:  make(map[string]bool),
		signedOn: make(map[string]bool),
		ipeks:    make(map[dukpt.KSN][]byte),
		aesIKs:   make(map[[8]byte][]byte),
		aesPINKT: aesPINKT,
	}
	s.opts.BDK = append([]byte(nil), opts.BDK...)
	s.opts.AESBDK = append([]byte(nil), opts.AESBDK...)
	for _, c := range cards {
		s.cards[c.PAN] = &c
	}
	if d := opts.Dialect; d != nil {
		s.dialect = d
		if s.spec == nil {
			s.spec = d.Spec
		}
		if s.framer == nil {
			s.framer = d.Framer
		}
	}
	if s.spec == nil {
		s.spec = iso8583.DefaultDialect().Spec
	}
	if err := s.spec.Validate(); err != nil {
		return nil, fmt.Errorf("hostsim: invalid spec: %w", err)
	}
	if s.framer == nil {
		s.framer = iso8583.BinaryLengthFramer{}
	}
	s.writeFramer = iso8583.HostFramer(s.framer)
	if s.now == nil {
		s.now = time.Now
	}
	s.tracing = s.logf != nil
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	return s, nil
}

// Ledger returns the approved 0100s and 0200s so far, oldest first (reversed ones
// included, marked).
func (s *Server) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []LedgerEntry
	for _, c := range s.charges {
		if !c.Approved || (c.MTI != iso8583.MTIAuthorizationRequest && c.MTI != iso8583.MTIFinancialRequest) {
			continue
		}
		out = append(out, LedgerEntry{Time: c.Time, STAN: c.STAN, TerminalID: c.TerminalID, MaskedPAN: c.MaskedPAN,
			AmountMinor: c.AmountMinor, Currency: c.Currency, ApprovalCode: c.ApprovalCode, RRN: c.RRN, Reversed: c.Reversed})
	}
	return out
}

// Charges returns every transaction the host has processed (approved or not), oldest first.
func (s *Server) Charges() []Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Charge, len(s.charges))
	for i, c := range s.charges {
		out[i] = c.Charge
	}
	return out
}

// Balance returns the current balance of a card in the table, and whether it is there.
func (s *Server) Balance(pan string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cards[pan]
	if c == nil {
		return 0, false
	}
	return c.BalanceMinor, true
}

// SignedOn reports whether terminal tid's last sign-on (0800, 001) has not been followed by
// a sign-off (002).
func (s *Server) SignedOn(tid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signedOn[tid]
}

// Serve accepts connections on ln and answers their requests until ctx ends; then it
// closes ln and every connection, waits for its goroutines and returns nil. It returns an
// error if Accept fails otherwise. For TLS, pass a tls.NewListener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("hostsim: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ServeConn(ctx, nc)
		}()
	}
}

// ServeConn answers the requests arriving on one connection until it closes or ctx ends,
// then closes it. Tests use it on one end of a net.Pipe.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	var wg sync.WaitGroup
	w := newConnWriter(nc, s.writeFramer)
	br := bufio.NewReaderSize(nc, 16<<10)
	for {
		b, err := s.framer.ReadFrame(br)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logf("hostsim: connection from %s: %v", nc.RemoteAddr(), err)
			}
			break
		}
		if len(b) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, b, w, cancel)
		}()
	}
	// The terminal has gone (or ctx ended): answers still being made cannot be delivered.
	cancel()
	stop()
	nc.Close()
	wg.Wait()
	w.close()
}

func (s *Server) handle(ctx context.Context, b []byte, w *connWriter, hangup func()) {
	req, err := iso8583.Unpack(s.spec, b)
	if err != nil {
		s.logf("hostsim: dropped an unreadable request of %d bytes: %v", len(b), err)
		return
	}
	if s.opts.Hangup != nil && s.opts.Hangup(req) {
		s.logf("hostsim: %s -> connection closed (on purpose)", iso8583.Masked{Msg: req})
		hangup()
		return
	}
	if s.opts.Drop != nil && s.opts.Drop(req) {
		s.logf("hostsim: %s -> no answer (dropped on purpose)", iso8583.Masked{Msg: req})
		return
	}
	resp := s.Respond(req)
	if resp == nil {
		return
	}
	if s.opts.Delay != nil {
		if d := s.opts.Delay(req); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
	out, err := iso8583.Pack(resp)
	if err != nil {
		s.logf("hostsim: cannot pack the answer to %s: %v", iso8583.Masked{Msg: req}, err)
		return
	}
	if s.opts.Corrupt != nil {
		if out = s.opts.Corrupt(req, out); out == nil {
			s.logf("hostsim: %s -> answer withheld (on purpose)", iso8583.Masked{Msg: req})
			return
		}
	}
	copies := 1
	if s.opts.Duplicate != nil && s.opts.Duplicate(req) {
		copies = 2
	}
	for range copies {
		if err := w.write(out); err != nil {
			s.logf("hostsim: %s -> write failed: %v", iso8583.Masked{Msg: req}, err)
			return
		}
	}
	if s.tracing {
		s.logf("hostsim: %s -> %s", iso8583.Masked{Msg: req}, iso8583.Summary(resp))
	}
}

// Respond decides req and returns the response, or nil when req cannot be answered (it is
// not a request, or has no STAN to match). It changes balances and the ledger like a
// request over the network, without the fault injection hooks other than Override.
func (s *Server) Respond(req *iso8583.Message) *iso8583.Message {
	mti, _ := req.GetMTI()
	respMTI, err := iso8583.ResponseMTI(mti)
	if err != nil {
		s.logf("hostsim: %s -> no answer: not a request", iso8583.Masked{Msg: req})
		return nil
	}
	if stan, _ := req.GetString(11); stan == "" {
		s.logf("hostsim: %s -> no answer: no STAN to match", iso8583.Masked{Msg: req})
		return nil
	}
	resp := moov.NewMessage(s.spec)
	resp.MTI(respMTI)
	echo := []int{3, 4, 7, 11, 12, 13, 41, 42, 49}
	var decide func(*iso8583.Message) decision
	switch mti {
	case iso8583.MTIAuthorizationRequest, iso8583.MTIFinancialRequest:
		decide = s.authorize
	case iso8583.MTIAdvice, iso8583.MTIAdviceRepeat:
		decide = s.advice
		echo = append(echo, 38)
	case iso8583.MTIReversalRequest, iso8583.MTIReversalRequestRepeat, iso8583.MTIReversalAdvice, iso8583.MTIReversalAdviceRepeat:
		decide = s.reverse
		echo = append(echo, 90)
	case iso8583.MTIReconciliationRequest:
		decide = s.reconcile
		echo = []int{7, 11, 41, 42, 50, 60}
	case iso8583.MTINetworkManagementRequest:
		decide = s.network
		echo = []int{7, 11, 41, 70}
	default:
		decide = func(*iso8583.Message) decision { return decision{rc: iso8583.RCInvalidTxn} } // not simulated
	}
	var d decision
	if err := s.dialect.CheckRequest(req); err != nil {
		// The dialect's own rules, checked like a real acquirer of the dialect would:
		// nothing is decided or recorded.
		s.logf("hostsim: format error: %v", err)
		d.rc = iso8583.RCFormatError
	} else {
		d = decide(req)
	}
	for _, id := range echo {
		if v, err := req.GetString(id); err == nil && v != "" {
			if err := resp.Field(id, v); err != nil {
				return nil
			}
		}
	}
	if d.amount > 0 {
		_ = resp.Field(4, fmt.Sprintf("%012d", d.amount))
	}
	_ = resp.Field(39, d.rc)
	if d.rrn != "" {
		_ = resp.Field(37, d.rrn)
	}
	if d.approval != "" {
		_ = resp.Field(38, d.approval)
	}
	return resp
}

type decision struct {
	rc, approval, rrn string
	amount            int64 // > 0: field 4 of the response, the amount approved (10)
}

func (c *charge) decision() decision {
	d := decision{rc: c.ResponseCode, approval: c.ApprovalCode, rrn: c.RRN}
	if c.ResponseCode == iso8583.RCPartialApproval {
		d.amount = c.AmountMinor
	}
	return d
}

// txn holds what the host reads of a financial request.
type txn struct {
	mti      string
	tid      string
	stan     uint32
	key      txnKey
	orig     origKey
	amount   int64
	currency string
	credit   bool
	pan      card.PAN
	exp      card.Expiry
	local    string
}

// readTxn reads the common fields of an 0100, 0200 or 0220 that CheckMandatory accepted.
func (s *Server) readTxn(req *iso8583.Message) (txn, decision, bool) {
	get := func(id int) string { v, _ := req.GetString(id); return v }
	formatError := decision{rc: iso8583.RCFormatError}
	var t txn
	var err error
	t.mti, _ = req.GetMTI()
	if t.amount, err = strconv.ParseInt(get(4), 10, 64); err != nil {
		return t, formatError, false
	}
	stan, err := strconv.ParseUint(get(11), 10, 32)
	if err != nil {
		return t, formatError, false
	}
	t.stan = uint32(stan)
	t.tid = strings.TrimRight(get(41), " ")
	t.local = get(13) + get(12)
	when := t.local
	if when == "" {
		when = get(7)
	}
	t.key = txnKey{t.tid, get(11), when}
	t.orig = origKey{t.tid, get(11), get(7)}
	t.currency = get(49)
	t.credit = strings.HasPrefix(get(3), "20")
	if t2 := get(35); t2 != "" {
		tr, err := card.ParseTrack2(t2)
		switch {
		case errors.Is(err, card.ErrLuhn) || errors.Is(err, card.ErrPANFormat):
			return t, decision{rc: iso8583.RCInvalidCard}, false
		case err != nil:
			return t, formatError, false
		}
		t.pan, t.exp = tr.PAN(), tr.Expiry()
	} else {
		if t.pan, err = card.ParsePAN(get(2)); err != nil {
			return t, decision{rc: iso8583.RCInvalidCard}, false
		}
		if t.exp, err = card.ParseExpiry(get(14)); err != nil {
			return t, formatError, false
		}
	}
	return t, decision{}, true
}

// seen answers a copy of a transaction already processed, if it is one. The caller holds
// s.mu.
func (s *Server) seen(t txn) (decision, bool) {
	c := s.byTxn[t.key]
	if c == nil {
		return decision{}, false
	}
	c.Times++
	if _, ok := s.byOrig[t.orig]; !ok {
		s.byOrig[t.orig] = c // a retransmission with a new field 7 names the same transaction
	}
	if c.asked != t.amount || c.pan != t.pan.Digits() {
		s.logf("hostsim: STAN %06d of %s reused with other content: 94", t.stan, t.tid)
		return decision{rc: iso8583.RCDuplicate}, true
	}
	return c.decision(), true
}

// record adds a new transaction. The caller holds s.mu.
func (s *Server) record(t txn, d decision, approved bool, now time.Time) *charge {
	c := &charge{pan: t.pan.Digits(), asked: t.amount, Charge: Charge{
		TerminalID: t.tid, STAN: t.stan, TransmissionTime: t.orig.sent, LocalTime: t.local, MTI: t.mti,
		MaskedPAN: t.pan.Masked(), AmountMinor: t.amount, Currency: t.currency, Credit: t.credit,
		ResponseCode: d.rc, ApprovalCode: d.approval, RRN: d.rrn, Approved: approved, Times: 1, Time: now,
	}}
	if c.MTI == iso8583.MTIAdviceRepeat {
		c.MTI = iso8583.MTIAdvice
	}
	s.charges = append(s.charges, c)
	s.byTxn[t.key] = c
	s.byOrig[t.orig] = c
	return c
}

// apply changes a card's balance by the amount of a transaction (minus for a debit).
// The caller holds s.mu. Unknown cards are ignored.
func (s *Server) apply(pan string, amount int64, credit bool, undo bool) {
	c := s.cards[pan]
	if c == nil {
		return
	}
	if credit != undo {
		c.BalanceMinor += amount
	} else {
		c.BalanceMinor -= amount
	}
}

// authorize decides an 0100 or 0200.
func (s *Server) authorize(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	if s.opts.Override != nil {
		if rc := s.opts.Override(req); rc != "" {
			return decision{rc: rc}
		}
	}
	t, d, ok := s.readTxn(req)
	if !ok {
		return d
	}
	now := s.now()

	// A copy of a transaction already decided is answered as it was.
	s.mu.Lock()
	if d, ok := s.seen(t); ok {
		s.mu.Unlock()
		return d
	}
	cp := s.cards[t.pan.Digits()]
	var c Card
	if cp != nil {
		c = *cp
	}
	s.mu.Unlock()

	// The card and the PIN, outside the lock.
	switch {
	case cp == nil || c.Blocked:
		d = decision{rc: iso8583.RCInvalidCard}
	case t.exp.Expired(now) || t.exp.YYMM() != c.Expiry:
		d = decision{rc: iso8583.RCExpiredCard}
	default:
		if block, _ := req.GetBytes(52); block != nil {
			ksnHex, _ := req.GetString(62)
			d.rc = s.checkPIN(&c, t.pan, block, ksnHex)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.seen(t); ok { // a concurrent copy won the race
		return d
	}
	switch {
	case d.rc != "":
	case s.orphans[t.orig]:
		d = decision{rc: iso8583.RCInvalidTxn} // reversed before it arrived
	case !t.credit && t.amount > s.cards[t.pan.Digits()].BalanceMinor && (!c.PartialApproval || s.cards[t.pan.Digits()].BalanceMinor <= 0):
		d = decision{rc: iso8583.RCInsufficientFunds}
	default:
		rc, asked := iso8583.RCApproved, t.amount
		if bal := s.cards[t.pan.Digits()].BalanceMinor; !t.credit && t.amount > bal {
			// A partial approval: the charge is the balance, and the response says so.
			rc, t.amount = iso8583.RCPartialApproval, bal
		}
		s.apply(t.pan.Digits(), t.amount, t.credit, false)
		s.seq++
		d = decision{
			rc:       rc,
			approval: fmt.Sprintf("%06d", s.seq%1_000_000),
			// YDDDhh then a 6-digit sequence: the common retrieval reference number layout.
			rrn: fmt.Sprintf("%d%03d%02d%06d", now.Year()%10, now.YearDay(), now.Hour(), s.seq%1_000_000),
		}
		if rc == iso8583.RCPartialApproval {
			d.amount = t.amount
		}
		ch := s.record(t, d, true, now)
		ch.asked = asked
		return d
	}
	s.record(t, d, false, now)
	return d
}

// advice records an 0220 or 0221.
func (s *Server) advice(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	t, d, ok := s.readTxn(req)
	if !ok {
		return d
	}
	rc, _ := req.GetString(39)
	approval, _ := req.GetString(38)
	f90, _ := req.GetString(90)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen(t); ok {
		return decision{rc: iso8583.RCApproved}
	}
	approved := rc == iso8583.RCApproved && !s.orphans[t.orig]
	c := s.record(t, decision{rc: rc, approval: approval}, approved, now)
	if !approved {
		return decision{rc: iso8583.RCApproved}
	}
	s.apply(c.pan, t.amount, t.credit, false)
	if f90 != "" { // a completion: release the authorization's hold
		if o, err := iso8583.ParseOriginal(f90, now); err == nil {
			h := s.byOrig[origKey{t.tid, fmt.Sprintf("%06d", o.STAN), o.Transmission()}]
			if h != nil && h.MTI == iso8583.MTIAuthorizationRequest && h.Approved && !h.Reversed && !h.Completed {
				h.Completed = true
				s.apply(h.pan, h.AmountMinor, h.Credit, true)
			}
		}
	}
	return decision{rc: iso8583.RCApproved}
}

// reverse decides a reversal by its field 90.
func (s *Server) reverse(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	get := func(id int) string { v, _ := req.GetString(id); return v }
	amount, err := strconv.ParseInt(get(4), 10, 64)
	if err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	o, err := iso8583.ParseOriginal(get(90), s.now())
	if err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	tid := strings.TrimRight(get(41), " ")
	key := origKey{tid, fmt.Sprintf("%06d", o.STAN), o.Transmission()}
	pan := get(2)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byOrig[key]
	switch {
	case c == nil:
		s.orphans[key] = true
		return decision{rc: iso8583.RCNoOriginal}
	case base(o.MTI) != base(c.MTI):
		return decision{rc: iso8583.RCInvalidTxn}
	case pan != "" && pan != c.pan:
		return decision{rc: iso8583.RCInvalidTxn}
	case amount != c.AmountMinor:
		return decision{rc: iso8583.RCInvalidAmount}
	}
	c.Reversals++
	if !c.Reversed {
		c.Reversed = true
		if c.Approved && !c.Completed {
			s.apply(c.pan, c.AmountMinor, c.Credit, true)
		}
	}
	return decision{rc: iso8583.RCApproved}
}

// base returns an MTI with a repeat made into the first transmission (0221 -> 0220).
func base(mti string) string {
	if len(mti) == 4 && (mti[3] == '1' || mti[3] == '3') {
		return mti[:3] + string(mti[3]-1)
	}
	return mti
}

// reconcile compares an 0500's totals with the host's.
func (s *Server) reconcile(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return decision{rc: iso8583.RCFormatError}
	}
	theirs, err := iso8583.ParseTotals(req)
	if err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	tid, _ := req.GetString(41)
	tid = strings.TrimRight(tid, " ")
	batch, _ := req.GetString(60)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.batches[tid+"/"+batch] {
		return decision{rc: iso8583.RCApproved} // a copy of a reconciliation that balanced
	}
	var ours iso8583.Totals
	var open []*charge
	for _, c := range s.charges {
		if c.TerminalID != tid || c.Settled || !c.Approved || c.MTI == iso8583.MTIAuthorizationRequest {
			continue
		}
		open = append(open, c)
		switch {
		case c.Credit:
			ours.CreditsCount++
			ours.CreditsAmount += c.AmountMinor
			if c.Reversed {
				ours.CreditReversalsCount++
				ours.CreditReversalsAmount += c.AmountMinor
			}
		default:
			ours.DebitsCount++
			ours.DebitsAmount += c.AmountMinor
			if c.Reversed {
				ours.DebitReversalsCount++
				ours.DebitReversalsAmount += c.AmountMinor
			}
		}
	}
	if ours != theirs {
		s.logf("hostsim: batch %s of %s out of balance: host %+v, terminal %+v", batch, tid, ours, theirs)
		return decision{rc: iso8583.RCReconcileError}
	}
	for _, c := range open {
		c.Settled = true
	}
	s.batches[tid+"/"+batch] = true
	return decision{rc: iso8583.RCApproved}
}

// network answers an 0800.
func (s *Server) network(req *iso8583.Message) decision {
	if err := iso8583.CheckMandatory(req); err != nil {
		return decision{rc: iso8583.RCFormatError}
	}
	code, _ := req.GetString(70)
	tid, _ := req.GetString(41)
	tid = strings.TrimRight(tid, " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch code {
	case iso8583.NMSignOn:
		s.signedOn[tid] = true
	case iso8583.NMSignOff:
		delete(s.signedOn, tid)
	case iso8583.NMEcho:
	default:
		return decision{rc: iso8583.RCInvalidTxn}
	}
	return decision{rc: iso8583.RCApproved}
}

// maxIPEKs bounds the cache of initial keys: one per PIN pad seen.
const maxIPEKs = 1024

// initialKey returns the DUKPT initial key of the device that made ksn, derived once per
// device and kept (a simulator may; a real host derives it in its HSM each time).
func (s *Server) initialKey(ksn dukpt.KSN) ([]byte, error) {
	return cachedKey(&s.ipekMu, s.ipeks, ksn.WithCounter(0), func() ([]byte, error) {
		return dukpt.TDESInitialKey(s.opts.BDK, ksn)
	})
}

// cachedKey returns cache[k], deriving it with derive and keeping it when absent (the
// cache is emptied when it holds maxIPEKs keys). mu guards cache; derive runs outside it.
func cachedKey[K comparable](mu *sync.Mutex, cache map[K][]byte, k K, derive func() ([]byte, error)) ([]byte, error) {
	mu.Lock()
	key, ok := cache[k]
	mu.Unlock()
	if ok {
		return key, nil
	}
	key, err := derive()
	if err != nil {
		return nil, err
	}
	mu.Lock()
	if len(cache) >= maxIPEKs {
		clear(cache)
	}
	cache[k] = key
	mu.Unlock()
	return key, nil
}

// checkPIN returns "" when block, with its KSN in hexadecimal, holds c's PIN; else the
// response code: 30 when the block and KSN are not a TDES or AES DUKPT pair the host has a
// BDK for, 55 when the PIN is not the card's.
func (s *Server) checkPIN(c *Card, pan card.PAN, block []byte, ksnHex string) string {
	ok := false
	switch {
	case len(block) == iso8583.TDESPINBlockLen && len(ksnHex) == iso8583.TDESKSNDigits:
		ksn, err := dukpt.ParseKSN(ksnHex)
		if err != nil || len(s.opts.BDK) == 0 {
			s.logf("hostsim: TDES PIN block with KSN %q: %s", ksnHex, unusable(err, "no TDES BDK"))
			return iso8583.RCFormatError
		}
		ok = s.pinOK(c, pan, ksn, [8]byte(block))
	case len(block) == iso8583.AESPINBlockLen && len(ksnHex) == iso8583.AESKSNDigits:
		ksn, err := dukpt.ParseAESKSN(ksnHex)
		if err != nil || len(s.opts.AESBDK) == 0 {
			s.logf("hostsim: AES PIN block with KSN %q: %s", ksnHex, unusable(err, "no AES BDK"))
			return iso8583.RCFormatError
		}
		ok = s.aesPINOK(c, pan, ksn, [16]byte(block))
	default:
		s.logf("hostsim: a %d-byte PIN block with a %d-character KSN is neither TDES (8, 20) nor AES (16, 24) DUKPT", len(block), len(ksnHex))
		return iso8583.RCFormatError
	}
	if !ok {
		return iso8583.RCIncorrectPIN
	}
	return ""
}

func unusable(err error, noKey string) string {
	if err != nil {
		return "KSN is not hexadecimal"
	}
	return noKey
}

// aesInitialKey returns the AES DUKPT initial key of initial key ID ikid, derived once and
// kept like the TDES ones.
func (s *Server) aesInitialKey(ikid [8]byte) ([]byte, error) {
	return cachedKey(&s.ipekMu, s.aesIKs, ikid, func() ([]byte, error) {
		return dukpt.AESInitialKey(s.opts.AESBDK, ikid)
	})
}

// aesPINOK reports whether block, a format 4 block encrypted under the AES DUKPT PIN key of
// ksn, holds c's PIN.
func (s *Server) aesPINOK(c *Card, pan card.PAN, ksn dukpt.AESKSN, block [16]byte) bool {
	ik, err := s.aesInitialKey(ksn.InitialKeyID())
	if err != nil {
		return false
	}
	tk, err := dukpt.AESTransactionKey(ik, ksn)
	if err != nil {
		return false // a counter no originator uses
	}
	defer clear(tk)
	key, err := dukpt.AESWorkingKeyFromTransactionKey(tk, ksn, dukpt.UsagePINEncryption, s.aesPINKT)
	if err != nil {
		return false
	}
	defer clear(key)
	field, err := pinblock.DecryptFormat4(key, block, pan.Digits())
	if err != nil {
		return false
	}
	defer clear(field[:])
	pin, err := pinblock.Decode(pinblock.Format4, field[:], pan.Digits())
	if err != nil {
		return false
	}
	return c.PIN != "" && subtle.ConstantTimeCompare([]byte(pin), []byte(c.PIN)) == 1
}

// pinOK reports whether block, encrypted under the DUKPT PIN key of ksn, holds c's PIN.
func (s *Server) pinOK(c *Card, pan card.PAN, ksn dukpt.KSN, block [8]byte) bool {
	ipek, err := s.initialKey(ksn)
	if err != nil {
		return false
	}
	key, err := dukpt.TDESTransactionKey(ipek, ksn)
	if err != nil {
		return false
	}
	defer clear(key)
	key[7] ^= 0xFF // the PIN encryption variant (ANSI X9.24-1: 00000000000000FF00000000000000FF)
	key[15] ^= 0xFF
	clearBlock, err := pinblock.DecryptTDES(key, block)
	if err != nil {
		return false
	}
	defer clear(clearBlock[:])
	pin, err := pinblock.DecodeFormat0(clearBlock, pan.Digits())
	if err != nil {
		return false
	}
	return c.PIN != "" && subtle.ConstantTimeCompare([]byte(pin), []byte(c.PIN)) == 1
}

// connWriter writes the answers of one connection: callers queue frames, one goroutine
// writes them, gathering those that wait into one write.
type connWriter struct {
	nc     net.Conn
	framer iso8583.Framer
	mu     sync.Mutex
	queue  []byte // framed answers waiting
	err    error
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

func newConnWriter(nc net.Conn, f iso8583.Framer) *connWriter {
	w := &connWriter{nc: nc, framer: f, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.loop()
	return w
}

// appendWriter lets a Framer append a frame to a buffer.
type appendWriter struct{ b *[]byte }

func (a appendWriter) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

func (w *connWriter) write(b []byte) error {
	w.mu.Lock()
	if w.err != nil || w.closed {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return err
	}
	err := w.framer.WriteFrame(appendWriter{&w.queue}, b)
	w.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

func (w *connWriter) loop() {
	defer close(w.done)
	var out []byte
	for {
		w.mu.Lock()
		out, w.queue = w.queue, out[:0]
		closed := w.closed
		w.mu.Unlock()
		if len(out) > 0 {
			if _, err := w.nc.Write(out); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			continue
		}
		if closed {
			return
		}
		<-w.wake
	}
}

// close lets the writer finish what is queued and stop.
func (w *connWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}
