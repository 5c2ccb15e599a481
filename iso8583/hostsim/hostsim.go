// Package hostsim is an acquirer host simulator: it answers 0100 and 0200 requests in
// posd's default ISO 8583 dialect from a table of test cards, checking the card, its
// expiry, a TDES DUKPT PIN block and the balance. It is used by tests and by
// cmd/acquirer-sim; posd itself never imports it.
//
// # Basics
//
//	srv, err := hostsim.NewServer(hostsim.Options{BDK: bdk})
//	ln, err := net.Listen("tcp", "127.0.0.1:0")
//	go srv.Serve(ctx, ln) // until ctx ends
//
// Each request is decided in this order: a malformed request gets 30; an unknown, blocked
// or Luhn-invalid card 14; an expiry in the past (a card is valid through the end of its
// month) or different from the table's 54; a PIN block that does not decrypt to the card's
// PIN 55; an amount above the balance 51; anything else 00, with a 6-digit approval code
// and a 12-digit retrieval reference number, and the amount taken from the balance.
// A request without a PIN block is not PIN-checked. 0800 is answered 00; other request
// types 12. The response has the request MTI + 10 and echoes fields 3, 4, 7, 11, 12, 13,
// 41, 42 and 49.
//
// # Caveats
//
// A request that cannot be unpacked is logged and dropped: without its STAN and terminal
// id nobody could match an answer. The connection stays up. Requests on one connection are
// handled concurrently, so responses may come back in another order. Options.Delay,
// Options.Drop and Options.Override inject faults for tests. Reversals (0400/0420) are not
// simulated yet.
package hostsim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
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

// Options configure a [Server]. The hooks (Now, Logf, Delay, Drop, Override) are called
// from many goroutines at once and must be safe for concurrent use.
type Options struct {
	// BDK is the 16-byte TDES DUKPT base derivation key of the PIN blocks. Required.
	BDK []byte
	// Cards is the card table. Default (nil): DefaultCards().
	Cards []Card
	// Spec is the dialect. Default: iso8583.DefaultSpec().
	Spec *iso8583.MessageSpec
	// Framer frames messages. Default: iso8583.BinaryLengthFramer{}.
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
	// Override, when set, is asked for each authorization request for a response code to
	// answer with instead of deciding ("" decides normally); nothing is changed or
	// recorded. Use it for codes such as 91 and 96. Default: always decide.
	Override func(req *iso8583.Message) string
}

// LedgerEntry is one approved authorization. It holds the PAN masked only. It is a plain
// value, safe for concurrent use if not modified.
type LedgerEntry struct {
	Time         time.Time
	STAN         uint32
	TerminalID   string
	MaskedPAN    string
	AmountMinor  int64
	Currency     string
	ApprovalCode string
	RRN          string
}

// String returns the entry on one line.
func (e LedgerEntry) String() string {
	return fmt.Sprintf("%s stan=%06d tid=%s pan=%s amount=%d cur=%s auth=%s rrn=%s",
		e.Time.UTC().Format(time.RFC3339), e.STAN, e.TerminalID, e.MaskedPAN, e.AmountMinor, e.Currency, e.ApprovalCode, e.RRN)
}

// Server is the simulated acquirer. It is safe for concurrent use; one Server may serve
// several listeners, sharing its cards and ledger.
type Server struct {
	opts   Options
	spec   *iso8583.MessageSpec
	framer iso8583.Framer
	now    func() time.Time
	logf   func(string, ...any)

	mu     sync.Mutex
	cards  map[string]*Card // by PAN; balances change
	ledger []LedgerEntry
	seq    uint64
}

// NewServer checks opts and returns a server.
func NewServer(opts Options) (*Server, error) {
	if len(opts.BDK) != 16 {
		return nil, fmt.Errorf("hostsim: BDK must be 16 bytes, got %d", len(opts.BDK))
	}
	cards := opts.Cards
	if cards == nil {
		cards = DefaultCards()
	}
	if err := checkCards(cards); err != nil {
		return nil, err
	}
	s := &Server{
		opts:   opts,
		spec:   opts.Spec,
		framer: opts.Framer,
		now:    opts.Now,
		logf:   opts.Logf,
		cards:  make(map[string]*Card, len(cards)),
	}
	s.opts.BDK = append([]byte(nil), opts.BDK...)
	for _, c := range cards {
		s.cards[c.PAN] = &c
	}
	if s.spec == nil {
		s.spec = iso8583.DefaultSpec()
	}
	if err := s.spec.Validate(); err != nil {
		return nil, fmt.Errorf("hostsim: invalid spec: %w", err)
	}
	if s.framer == nil {
		s.framer = iso8583.BinaryLengthFramer{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	return s, nil
}

// Ledger returns a copy of the approvals so far, oldest first.
func (s *Server) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LedgerEntry(nil), s.ledger...)
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

// Serve accepts connections on ln and answers their requests until ctx ends; then it
// closes ln and every connection, waits for its goroutines and returns nil. It returns an
// error if Accept fails otherwise.
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
			s.serveConn(ctx, nc)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	defer nc.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return s.framer.WriteFrame(nc, b)
	}
	for {
		b, err := s.framer.ReadFrame(nc)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logf("hostsim: connection from %s: %v", nc.RemoteAddr(), err)
			}
			return
		}
		if len(b) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, b, write)
		}()
	}
}

func (s *Server) handle(ctx context.Context, b []byte, write func([]byte) error) {
	req, err := iso8583.Unpack(s.spec, b)
	if err != nil {
		s.logf("hostsim: dropped an unreadable request of %d bytes: %v", len(b), err)
		return
	}
	if s.opts.Drop != nil && s.opts.Drop(req) {
		s.logf("hostsim: %s -> no answer (dropped on purpose)", iso8583.Summary(req))
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
		s.logf("hostsim: cannot pack the answer to %s: %v", iso8583.Summary(req), err)
		return
	}
	if err := write(out); err != nil {
		s.logf("hostsim: %s -> write failed: %v", iso8583.Summary(req), err)
		return
	}
	s.logf("hostsim: %s -> %s", iso8583.Summary(req), iso8583.Summary(resp))
}

// Respond decides req and returns the response, or nil when req cannot be answered (it is
// not a request, or has no STAN to match). It changes balances and the ledger like a
// request over the network, without the fault injection hooks Delay and Drop.
func (s *Server) Respond(req *iso8583.Message) *iso8583.Message {
	mti, _ := req.GetMTI()
	respMTI, err := iso8583.ResponseMTI(mti)
	if err != nil {
		s.logf("hostsim: %s -> no answer: not a request", iso8583.Summary(req))
		return nil
	}
	if stan, _ := req.GetString(11); stan == "" {
		s.logf("hostsim: %s -> no answer: no STAN to match", iso8583.Summary(req))
		return nil
	}
	resp := moov.NewMessage(s.spec)
	resp.MTI(respMTI)
	for _, id := range [...]int{3, 4, 7, 11, 12, 13, 41, 42, 49} { // echoed fields
		if v, err := req.GetString(id); err == nil && v != "" {
			if err := resp.Field(id, v); err != nil {
				return nil
			}
		}
	}

	var d decision
	switch mti {
	case iso8583.MTIAuthorizationRequest, iso8583.MTIFinancialRequest:
		d = s.authorize(req)
	case "0800":
		d.rc = iso8583.RCApproved
		if v, _ := req.GetString(70); v != "" {
			_ = resp.Field(70, v)
		}
	default:
		d.rc = "12" // invalid transaction: not simulated
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
}

// authorize decides an 0100 or 0200.
func (s *Server) authorize(req *iso8583.Message) decision {
	get := func(id int) string { v, _ := req.GetString(id); return v }
	formatError := decision{rc: iso8583.RCFormatError}
	if err := iso8583.CheckMandatory(req); err != nil {
		s.logf("hostsim: format error: %v", err)
		return formatError
	}
	amount, err := strconv.ParseInt(get(4), 10, 64)
	if err != nil {
		return formatError
	}
	stan, err := strconv.ParseUint(get(11), 10, 32)
	if err != nil {
		return formatError
	}
	if s.opts.Override != nil {
		if rc := s.opts.Override(req); rc != "" {
			return decision{rc: rc}
		}
	}
	now := s.now()

	var pan card.PAN
	var exp card.Expiry
	if t2 := get(35); t2 != "" {
		tr, err := card.ParseTrack2(t2)
		switch {
		case errors.Is(err, card.ErrLuhn) || errors.Is(err, card.ErrPANFormat):
			return decision{rc: iso8583.RCInvalidCard}
		case err != nil:
			return formatError
		}
		pan, exp = tr.PAN(), tr.Expiry()
	} else {
		pan, err = card.ParsePAN(get(2))
		if err != nil {
			return decision{rc: iso8583.RCInvalidCard}
		}
		if exp, err = card.ParseExpiry(get(14)); err != nil {
			return formatError
		}
	}

	var block []byte
	var ksn dukpt.KSN
	if block, _ = req.GetBytes(52); block != nil {
		if len(block) != 8 {
			return formatError
		}
		if ksn, err = dukpt.ParseKSN(get(62)); err != nil {
			return formatError
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cards[pan.Digits()]
	switch {
	case c == nil || c.Blocked:
		return decision{rc: iso8583.RCInvalidCard}
	case exp.Expired(now) || exp.YYMM() != c.Expiry:
		return decision{rc: iso8583.RCExpiredCard}
	}
	if block != nil && !s.pinOK(c, pan, ksn, [8]byte(block)) {
		return decision{rc: iso8583.RCIncorrectPIN}
	}
	if amount > c.BalanceMinor {
		return decision{rc: iso8583.RCInsufficientFunds}
	}
	c.BalanceMinor -= amount
	s.seq++
	d := decision{
		rc:       iso8583.RCApproved,
		approval: fmt.Sprintf("%06d", s.seq%1_000_000),
		// YDDDhh then a 6-digit sequence: the common retrieval reference number layout.
		rrn: fmt.Sprintf("%d%03d%02d%06d", now.Year()%10, now.YearDay(), now.Hour(), s.seq%1_000_000),
	}
	s.ledger = append(s.ledger, LedgerEntry{
		Time:         now,
		STAN:         uint32(stan),
		TerminalID:   get(41),
		MaskedPAN:    pan.Masked(),
		AmountMinor:  amount,
		Currency:     get(49),
		ApprovalCode: d.approval,
		RRN:          d.rrn,
	})
	return d
}

// pinOK reports whether block, encrypted under the DUKPT PIN key of ksn, holds c's PIN.
func (s *Server) pinOK(c *Card, pan card.PAN, ksn dukpt.KSN, block [8]byte) bool {
	key, err := dukpt.TDESPINKey(s.opts.BDK, ksn)
	if err != nil {
		return false
	}
	defer clear(key)
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
