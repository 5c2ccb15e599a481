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
// 13 and 12; field 7 when 12 and 13 are absent), and by whether it is an authorization
// (01xx) or a financial message (02xx). A duplicate or a repeat (0221) of one already
// processed is answered as the first was, without changing anything; a duplicate whose
// amount or card differs gets 94. With Options.MatchBy set to [MatchTransmission] the host
// is stricter, as a host that keys on the same fields as field 90 is: field 7 takes the
// place of the local date and time, so a copy that keeps the STAN but carries a new field
// 7 is a new transaction, decided and charged again; and a reversal whose terminal id,
// STAN and field 7 repeat one already answered gets the same answer without being counted
// again.
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
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/iso8583"
)

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

	// LoseEvery, when positive, drops every LoseEvery-th approved transaction from the
	// host's reconciliation totals (it is still answered as approved, and a copy is still
	// known): its batch close then answers 95 until a batch upload brings it back (0330
	// answer 25). Use it to see the out-of-balance path. Default 0: nothing lost.
	LoseEvery int

	// MatchBy is how the host knows a copy of a message it has processed: see [MatchBy].
	// Default "": MatchLocalTime.
	MatchBy MatchBy

	// MAC checks and computes the MACs of a dialect that declares them (Dialect.MAC): a
	// request whose MAC is missing or does not verify is answered with the dialect's
	// failure code (nothing is decided) and logged; every answer to a MACed request is
	// MACed. An *hsm.Module over the soft backend serves. Required when the dialect
	// declares a MAC. Default nil.
	MAC iso8583.MACer
	// MACKeyID is the key id passed to MAC. Default "" (the Module's default, "mac").
	MACKeyID string
	// TamperMAC, when set, is asked for each MACed answer whether to corrupt its MAC (one
	// character of the MAC field changed), so that a test sees the terminal refuse it.
	// Default: never.
	TamperMAC func(req *iso8583.Message) bool

	// KEK is the key encryption key the host shares with the terminal (clear: this is a
	// simulator): 16 or 24 bytes for TDES (TR-31 version B blocks), 32 for AES (version
	// D). With it and a dialect that declares a "key_exchange", key-change 0800s get a
	// fresh key under it; a MAC key is loaded into MAC (an *hsm.Module) as the next
	// generation of MACKeyID and used once the terminal confirms it. Default nil: key
	// changes are answered 12.
	KEK []byte
	// BadKey makes every new key the host sends faulty, so that a test sees the terminal
	// refuse it and keep its old key: "kcv" (a wrong check value beside it), "block" (its
	// TR-31 MAC altered) or "usage" (a MAC key sent as a PIN key, P0). Default "": none.
	BadKey string
	// LoseKeyConfirm makes the host switch to the new key on the terminal's first
	// confirming 0800 but leave that 0800 unanswered, as if its 0810 were lost: the
	// terminal cannot know that the host switched. Default false.
	LoseKeyConfirm bool
}

// MatchBy says which fields identify an original message (0100, 0200, 0220, 0400, 0420
// and their repeats) to the host, so that a duplicate or a repeat is answered as the first
// copy was and not processed again. Whatever it is, field 90 of a reversal or a completion
// names its original by MTI, STAN and field 7. A MatchBy is a plain value, safe for
// concurrent use.
type MatchBy string

const (
	// MatchLocalTime: terminal id (field 41), STAN (11) and the local date and time (13
	// and 12; field 7 when they are absent). A resend with a new field 7 is still the same
	// transaction. The default.
	MatchLocalTime MatchBy = "local"
	// MatchTransmission: terminal id (41), STAN (11) and transmission date and time (7)
	// only, the key field 90 uses: a resend with a new field 7 is a new transaction and is
	// charged again (visible in Charges), as at a strict host.
	MatchTransmission MatchBy = "transmission"
)

// ParseMatchBy reads a MatchBy as its constants spell it; "" is MatchLocalTime.
func ParseMatchBy(s string) (MatchBy, error) {
	switch m := MatchBy(s); m {
	case "":
		return MatchLocalTime, nil
	case MatchLocalTime, MatchTransmission:
		return m, nil
	}
	return "", fmt.Errorf("hostsim: unknown MatchBy %q (want %q or %q)", s, MatchLocalTime, MatchTransmission)
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

	mu        sync.Mutex
	cards     map[string]*Card // by PAN; balances change
	charges   []*charge        // in the order processed
	byTxn     map[txnKey]*charge
	byOrig    map[origKey]*charge
	orphans   map[origKey]bool        // reversed before they arrived
	batches   map[string]bool         // terminal id + batch number, settled
	closes    map[string]*ClosedBatch // terminal id + batch number: every batch an 0500 named
	signedOn  map[string]bool
	revs      map[txnKey]decision // MatchTransmission: reversals answered, by their own key
	seq       uint64
	approvedN int // approved transactions, for LoseEvery

	ipekMu   sync.Mutex
	ipeks    map[dukpt.KSN][]byte // TDES initial keys by KSN with a zero counter
	aesIKs   map[[8]byte][]byte   // AES initial keys by initial key ID
	aesPINKT dukpt.KeyType        // the AES PIN working key's type

	mac             *iso8583.MACSpec       // the dialect's MAC; nil: none
	macGood, macBad atomic.Uint64          // requests whose MAC verified, or did not
	macKey          atomic.Pointer[string] // the MAC key in use, after a key change; nil: MACKeyID

	keyMu    sync.Mutex
	pending  map[iso8583.KeyKind]pendingKey // keys sent, not confirmed yet
	changes  map[iso8583.KeyKind]int        // key changes confirmed
	macByKey map[string]uint64              // requests whose MAC verified, by key id
	macGen   uint64                         // the last MAC key generation made
	lostConf bool                           // LoseKeyConfirm has lost its answer
	conns    map[*connWriter]bool           // the connections, for RequestKeyChange
	hostSTAN uint32                         // the host's own 0800s
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
	match, err := ParseMatchBy(string(opts.MatchBy))
	if err != nil {
		return nil, err
	}
	opts.MatchBy = match
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
		closes:   make(map[string]*ClosedBatch),
		signedOn: make(map[string]bool),
		revs:     make(map[txnKey]decision),
		ipeks:    make(map[dukpt.KSN][]byte),
		aesIKs:   make(map[[8]byte][]byte),
		aesPINKT: aesPINKT,
		pending:  make(map[iso8583.KeyKind]pendingKey),
		changes:  make(map[iso8583.KeyKind]int),
		macByKey: make(map[string]uint64),
		conns:    make(map[*connWriter]bool),
	}
	switch len(opts.KEK) {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("hostsim: KEK must be 16 or 24 bytes (TDES) or 32 (AES), got %d", len(opts.KEK))
	}
	switch opts.BadKey {
	case "", "kcv", "block", "usage":
	default:
		return nil, fmt.Errorf("hostsim: BadKey %q: want \"kcv\", \"block\" or \"usage\"", opts.BadKey)
	}
	if opts.KEK != nil {
		s.opts.KEK = append([]byte(nil), opts.KEK...)
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
	if s.dialect != nil && s.dialect.MAC != nil {
		if opts.MAC == nil {
			return nil, fmt.Errorf("hostsim: the dialect MACs its messages (%v): MAC is required", s.dialect.MAC)
		}
		s.mac = s.dialect.MAC
	} else if opts.MAC != nil {
		return nil, errors.New("hostsim: MAC is set but the dialect declares no MAC")
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

// SignedOn reports whether terminal tid's last sign-on (0800, 001) has not been followed by
// a sign-off (002).
func (s *Server) SignedOn(tid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signedOn[tid]
}

// Respond decides req and returns the response, or nil when req cannot be answered (it is
// not a request, or has no STAN to match). It changes balances and the ledger like a
// request over the network, without the fault injection hooks other than Override.
func (s *Server) Respond(req *iso8583.Message) *iso8583.Message {
	resp, after := s.respond(req, nil)
	if after != nil {
		after()
	}
	return resp
}

// respond is Respond for a request whose MAC check failed with macErr (nil: passed or none):
// such a request is answered with the dialect's MAC failure code, nothing decided.
// The func returned with it, when not nil, must run once the response is packed (a key
// change switches keys then, so that its answer is MACed under the old key).
func (s *Server) respond(req *iso8583.Message, macErr error) (*iso8583.Message, func()) {
	mti, _ := req.GetMTI()
	respMTI, err := iso8583.ResponseMTI(mti)
	if err != nil {
		s.logf("hostsim: %s -> no answer: not a request", iso8583.Masked{Msg: req})
		return nil, nil
	}
	if stan, _ := req.GetString(11); stan == "" {
		s.logf("hostsim: %s -> no answer: no STAN to match", iso8583.Masked{Msg: req})
		return nil, nil
	}
	resp := iso8583.NewMessage(s.spec)
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
	case iso8583.MTIBatchUpload:
		decide = s.upload
		echo = []int{3, 4, 7, 11, 41, 42, 49, 60}
	case iso8583.MTINetworkManagementRequest:
		decide = s.network
		echo = []int{7, 11, 41, 70}
	default:
		decide = func(*iso8583.Message) decision { return decision{rc: iso8583.RCInvalidTxn} } // not simulated
	}
	var d decision
	if macErr != nil {
		s.logf("hostsim: %s -> %s: %v", iso8583.Masked{Msg: req}, s.mac.FailureCode, macErr)
		d.rc = s.mac.FailureCode
	} else if err := s.dialect.CheckRequest(req); err != nil {
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
				return nil, nil
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
	if d.fields != nil {
		if err := d.fields(resp); err != nil {
			s.logf("hostsim: cannot answer %s: %v", iso8583.Masked{Msg: req}, err)
			return nil, nil
		}
	}
	return resp, d.after
}

type decision struct {
	rc, approval, rrn string
	amount            int64 // > 0: field 4 of the response, the amount approved (10)
	// fields, when set, adds fields to the response (a key change's key).
	fields func(resp *iso8583.Message) error
	// after, when set, runs once the response is packed.
	after func()
}
