package terminal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/emv"
	"github.com/posd-dev/posd/terminal/money"
)

// Errors of the card steps on the PIN pad. Each wraps the pad's own error.
var (
	// ErrChipFallback: the chip could not be read and the pad allows the
	// magnetic stripe instead (ABECS status 076). The swipe that follows is
	// a fallback: POS entry mode 801.
	ErrChipFallback = errors.New("terminal: chip could not be read; magnetic stripe fallback allowed")
	// ErrCardUnreadable: the card could not be read (a mute chip, 060; a
	// stripe read error, 041; data that does not parse). The customer may
	// try again.
	ErrCardUnreadable = errors.New("terminal: card could not be read")
	// ErrCardRemoved: the chip card was pulled out before the card finished
	// (043). After a host approval the sale must be reversed.
	ErrCardRemoved = errors.New("terminal: card removed before the end of the transaction")
	// ErrChipData: the chip's data cannot be sent: a data object the issuer
	// needs is missing, PAN or expiry disagree between data objects, or the
	// amount or currency the card signed differ from the sale's (the pad's
	// EMV tables are for another currency).
	ErrChipData = errors.New("terminal: chip data unusable")
	// ErrChangeInterface: the tap cannot go on (ABECS 082-085, 087: the
	// amount is at or above the contactless transaction limit, or the card
	// asks for another interface). The customer inserts or swipes; the pad's
	// next GCR in this session has contactless off.
	ErrChangeInterface = errors.New("terminal: contactless not possible here: insert or swipe the card")
)

// PINPad adapts an ABECS PIN pad to what the sale needs: its card reader
// (CardReader for the magnetic stripe, ReadCardAny and the chip steps for
// EMV), its display (Display) and its secure PIN entry (hsm/pinpad.Device
// and hsm/pinpad.AESDevice: TDES or AES DUKPT).
// It is safe for concurrent use in the sense that the pad refuses a second
// command while one is running (abecs.ErrBusy); the Terminal and hsm.Module
// never overlap them.
type PINPad struct {
	fixed *abecs.Client
	dev   *PadDevice

	mu         sync.Mutex
	ctlsClient *abecs.Client // the link ctls was learnt on (GIN)
	ctls       bool          // the pad has a contactless reader
	ctlsOff    bool          // a tap was refused in this session: GCR with contactless off
	tabVer     string        // the EMV table version posd loaded ("" none)
	tabRecs    [][]byte      // its records, to reload after a 020
	tapped     bool          // the last card ReadCardAny returned was tapped
}

// SetEMVTables gives the pad adapter the EMV tables posd holds: GCR then
// names version, and a pad that answers 020 (another version) gets records
// loaded (TLI, TLR, TLE) once before the GCR is resumed. An empty version
// means none (GCR names "0000000000").
func (p *PINPad) SetEMVTables(version string, records [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tabVer, p.tabRecs = version, records
}

// LoadEMVTables loads records into the pad under version (TLI, TLR, TLE)
// and checks with GTS that the pad holds that version; on success GCR names
// it from then on (SetEMVTables).
func (p *PINPad) LoadEMVTables(ctx context.Context, version string, records [][]byte) error {
	err := p.run(func(c *abecs.Client) error {
		if err := c.LoadTables(ctx, 0, version, records); err != nil {
			return err
		}
		got, err := c.TableVersion(ctx, 0)
		if err != nil {
			return err
		}
		if got != version {
			return fmt.Errorf("terminal: the pad reports table version %q after loading %q", got, version)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.SetEMVTables(version, records)
	return nil
}

// PadTableVersion asks the pad which EMV table version it holds (GTS).
func (p *PINPad) PadTableVersion(ctx context.Context) (string, error) {
	var v string
	err := p.run(func(c *abecs.Client) (err error) {
		v, err = c.TableVersion(ctx, 0)
		return err
	})
	return v, err
}

// contactless reports whether the pad on c has a contactless reader (GIN,
// asked once per link).
func (p *PINPad) contactless(ctx context.Context, c *abecs.Client) bool {
	p.mu.Lock()
	known, ctls := p.ctlsClient == c, p.ctls
	p.mu.Unlock()
	if known {
		return ctls
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false
	}
	p.mu.Lock()
	p.ctlsClient, p.ctls = c, info.Contactless
	p.mu.Unlock()
	return info.Contactless
}

// NewPINPad returns the adapter over c, a link that is not reconnected.
func NewPINPad(c *abecs.Client) *PINPad { return &PINPad{fixed: c} }

// NewPINPadDevice returns the adapter over d, which reconnects the pad when
// its link is lost. A command while the link is down fails at once with an
// error wrapping ErrDeviceUnavailable.
func NewPINPadDevice(d *PadDevice) *PINPad { return &PINPad{dev: d} }

// Status returns the pad link's status: the PadDevice's, or for a plain
// client "connected" until its port fails.
func (p *PINPad) Status() DeviceStatus {
	if p.dev != nil {
		return p.dev.Status()
	}
	st := DeviceStatus{Name: "pinpad", State: DeviceConnected}
	if err := p.fixed.Err(); err != nil {
		st.State, st.LastError = DeviceFailed, err.Error()
	}
	return st
}

// run runs f on the pad's client. On a PadDevice the command is counted as
// in progress, so that the heartbeat never overlaps it. A link fault (port
// failed, pad deaf) is reported to the PadDevice, which reconnects, and comes
// back wrapped in ErrDeviceUnavailable.
func (p *PINPad) run(f func(c *abecs.Client) error) error {
	c := p.fixed
	if p.dev != nil {
		var err error
		if c, err = p.dev.begin(); err != nil {
			return err
		}
	}
	err := f(c)
	if p.dev != nil {
		p.dev.end(c, err)
	}
	if err != nil && isLinkFault(err) {
		if p.dev != nil {
			p.dev.sup.report(c, err)
		}
		return fmt.Errorf("%w: PIN pad link: %w", ErrDeviceUnavailable, err)
	}
	return err
}

// waitFor returns how long the pad may wait for the customer: until ctx's
// deadline, or 0 (the abecs default) without one.
func waitFor(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 0
}

// ReadCard implements CardReader through GCR: a magnetic stripe swipe. The
// deadline of ctx bounds the wait. A chip card inserted instead is refused
// with ErrCardUnreadable: use ReadCardAny for chip cards.
func (p *PINPad) ReadCard(ctx context.Context, amount money.Amount) (string, string, error) {
	pc, err := p.ReadCardAny(ctx, amount)
	if err != nil {
		return "", "", err
	}
	if pc.Chip() {
		return "", "", fmt.Errorf("%w: a chip card was inserted; ReadCard reads magnetic stripes only", ErrCardUnreadable)
	}
	t1, t2 := pc.Tracks()
	return t1, t2, nil
}

// PresentedCard is what the customer presented to the pad: a magnetic
// stripe swipe (possibly a fallback after a chip failure) or an EMV chip
// card, whose transaction continues with GoOnChip. It is sensitive: String,
// GoString and LogValue show the masked PAN only. It is immutable and safe
// for concurrent use.
type PresentedCard struct {
	cd abecs.CardData
}

// Chip reports whether the card continues as an EMV chip card (GoOnChip,
// FinishChip): inserted (contact chip) or tapped in EMV mode.
func (c PresentedCard) Chip() bool { return c.cd.Chip() || c.cd.Type() == abecs.CardTypeCtlsChip }

// Contactless reports whether the card was tapped (EMV or magnetic stripe
// mode).
func (c PresentedCard) Contactless() bool { return c.cd.Contactless() }

// Fallback reports whether a swipe follows a failed chip read (the pad says
// so): the sale goes with POS entry mode 801, and a chip card's service code
// (2xx, 6xx) is then acceptable on the stripe.
func (c PresentedCard) Fallback() bool { return c.cd.Fallback() }

// Tracks returns a swipe's track 1 and track 2 without sentinels, for
// card.ParseSwipe. For a chip card track 2 is its track 2 equivalent data
// and track 1 is empty; use the data GoOnChip returns instead.
func (c PresentedCard) Tracks() (track1, track2 string) { return c.cd.Track1(), c.cd.Track2() }

// EntryMode returns ISO 8583 field 22 for the card as read by a terminal
// that accepts PINs: "051" chip, "071" contactless EMV, "911" contactless
// magnetic stripe, "801" fallback swipe, "021" swipe. A Terminal replaces the
// contactless ones with its Options.CtlsEntryModes (the acquirer dialect's).
func (c PresentedCard) EntryMode() string {
	switch {
	case c.cd.Type() == abecs.CardTypeCtlsChip:
		return "071"
	case c.cd.Type() == abecs.CardTypeCtlsMag:
		return "911"
	case c.cd.Chip():
		return "051"
	case c.cd.Fallback():
		return "801"
	}
	return "021"
}

// MaskedPAN returns the PAN the pad reported, masked.
func (c PresentedCard) MaskedPAN() string { return c.cd.MaskedPAN() }

// String returns the masked description.
func (c PresentedCard) String() string { return c.cd.String() }

// GoString returns the masked description.
func (c PresentedCard) GoString() string { return "terminal.PresentedCard{" + c.cd.String() + "}" }

// LogValue implements slog.LogValuer with the masked description.
func (c PresentedCard) LogValue() slog.Value { return slog.StringValue(c.cd.String()) }

// ReadCardAny waits for a card through GCR, showing the amount: a swipe or an
// inserted chip card. The deadline of ctx bounds the wait. Errors wrap
// ErrChipFallback (076: ask for a swipe, which will be a fallback),
// ErrCardUnreadable (mute chip, stripe read error: ask to try again),
// ErrDeviceCancel, ErrDeviceTimeout or ErrDeviceUnavailable.
//
// On a pad with a contactless reader GCR takes taps too (card type 06 goes on
// as a chip card, 05 as a swipe), unless a tap was refused earlier in the
// session. A tap the pad cannot take (ABECS 082-085, 087, or a second 081)
// returns ErrChangeInterface; 080 and a first 081 ask for the tap again, 086
// shows "SEE PHONE" and asks again. A 020 (the pad's EMV tables are another
// version) reloads the tables of SetEMVTables once and resumes with a bare
// GCR.
func (p *PINPad) ReadCardAny(ctx context.Context, amount money.Amount) (PresentedCard, error) {
	p.mu.Lock()
	ver, recs, off := p.tabVer, p.tabRecs, p.ctlsOff
	p.mu.Unlock()
	req := abecs.CardRequest{AmountMinor: amount.Minor, Timeout: waitFor(ctx), TableVersion: ver}
	var cd abecs.CardData
	err := p.run(func(c *abecs.Client) (err error) {
		req.Contactless = !off && p.contactless(ctx, c)
		reloaded, again := false, 0
		for {
			cd, err = c.GetCard(ctx, req)
			if errors.Is(err, abecs.ErrTableVersion) && len(recs) > 0 && !reloaded {
				reloaded = true
				if lerr := c.LoadTables(ctx, 0, ver, recs); lerr != nil {
					return fmt.Errorf("the pad's EMV tables are another version and reloading them failed: %w", lerr)
				}
				cd, err = c.ResumeCard(ctx, req.Timeout)
			}
			switch {
			case errors.Is(err, abecs.ErrCtlsAgain) && again < 1:
				again++
				continue
			case errors.Is(err, abecs.ErrCtlsSeePhone) && again < 2:
				again++
				if derr := c.Display(ctx, "SEE PHONE", "TAP AGAIN"); derr != nil {
					return derr
				}
				continue
			}
			return err
		}
	})
	if errors.Is(err, abecs.ErrCtlsOtherInterface) || errors.Is(err, abecs.ErrCtlsAgain) || errors.Is(err, abecs.ErrCtlsSeePhone) {
		p.mu.Lock()
		p.ctlsOff = true
		p.mu.Unlock()
		return PresentedCard{}, fmt.Errorf("%w: %w", ErrChangeInterface, err)
	}
	if err != nil {
		return PresentedCard{}, padError(err)
	}
	switch {
	case cd.Magstripe(), cd.Type() == abecs.CardTypeCtlsMag:
	case cd.Chip(), cd.Type() == abecs.CardTypeCtlsChip:
		t2 := cd.Track2()
		if cd.PAN() == "" || (t2 != "" && !strings.HasPrefix(t2, cd.PAN()+"=") && !strings.HasPrefix(t2, cd.PAN()+"D")) {
			return PresentedCard{}, fmt.Errorf("%w: the pad's chip card data has no PAN, or a track 2 with another PAN", ErrCardUnreadable)
		}
	default:
		return PresentedCard{}, fmt.Errorf("%w: the pad reported card type %s, which posd does not take", ErrCardUnreadable, cd.Type())
	}
	p.mu.Lock()
	p.tapped = cd.Contactless()
	p.mu.Unlock()
	return PresentedCard{cd: cd}, nil
}

// Show implements Display.
func (p *PINPad) Show(ctx context.Context, line1, line2 string) error {
	return padError(p.run(func(c *abecs.Client) error { return c.Display(ctx, line1, line2) }))
}

// Finish implements Display (CLO): it ends the pad's session, chip included,
// leaving msg on the display. The next session may take taps again.
func (p *PINPad) Finish(ctx context.Context, msg string) error {
	p.mu.Lock()
	p.ctlsOff = false
	p.mu.Unlock()
	return padError(p.run(func(c *abecs.Client) error { return c.Finish(ctx, msg) }))
}

// Info returns what the pad says about itself (GIN).
func (p *PINPad) Info(ctx context.Context) (abecs.Info, error) {
	var info abecs.Info
	err := p.run(func(c *abecs.Client) (err error) {
		info, err = c.Info(ctx)
		return err
	})
	return info, padError(err)
}

// WaitRemoval waits (CKE) until the chip card is out of the reader, for a
// "REMOVE CARD" prompt after a chip transaction. It returns at once when no
// card is in. The deadline of ctx bounds the wait (ErrDeviceTimeout).
func (p *PINPad) WaitRemoval(ctx context.Context) error {
	return padError(p.run(func(c *abecs.Client) error {
		_, err := c.WaitEvent(ctx, abecs.WaitRequest{Remove: true, Timeout: waitFor(ctx)})
		return err
	}))
}

// EncryptPIN implements hsm/pinpad.Device through GPN (DUKPT TDES, ISO 9564 format 0).
func (p *PINPad) EncryptPIN(ctx context.Context, pan card.PAN, keyIndex int, prompt string) ([8]byte, [10]byte, error) {
	req := abecs.PINRequest{KeyIndex: keyIndex, PAN: pan.Digits(), Line1: prompt, Line2: "ENTER PIN", Timeout: waitFor(ctx)}
	var block [8]byte
	var ksn [10]byte
	err := p.run(func(c *abecs.Client) (err error) {
		block, ksn, err = c.GetPIN(ctx, req)
		return err
	})
	return block, ksn, pinError(err)
}

// EncryptPINAES implements hsm/pinpad.AESDevice through GPN method 4 (DUKPT AES, ISO 9564
// format 4): a 16-byte block and the 12-byte KSN of the pad's AES key keyIndex. A pad
// without an AES key in that slot answers 042: the error wraps hsm.ErrDevice and
// abecs.ErrKeyMissing.
func (p *PINPad) EncryptPINAES(ctx context.Context, pan card.PAN, keyIndex int, prompt string) ([16]byte, [12]byte, error) {
	req := abecs.PINRequest{KeyIndex: keyIndex, AES: true, PAN: pan.Digits(), Line1: prompt, Line2: "ENTER PIN", Timeout: waitFor(ctx)}
	var block [16]byte
	var ksn [12]byte
	err := p.run(func(c *abecs.Client) (err error) {
		block, ksn, err = c.GetPINAES(ctx, req)
		return err
	})
	return block, ksn, pinError(err)
}

// pinError maps a failed PIN entry onto the hsm errors a Driver returns.
func pinError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, abecs.ErrCancelled):
		return fmt.Errorf("%w: %w", hsm.ErrCancelled, err)
	case errors.Is(err, abecs.ErrPadTimeout):
		return fmt.Errorf("%w: %w", hsm.ErrTimeout, err)
	}
	return fmt.Errorf("%w: %w", hsm.ErrDevice, err)
}

// ChipDecision is the card's first decision (GOC). It is a plain value, safe
// for concurrent use.
type ChipDecision int

// Chip decisions.
const (
	// ChipOnline: the card asks for online authorization (ARQC): send the
	// authorization with field 55 and call FinishChip with the answer.
	ChipOnline ChipDecision = iota
	// ChipApprovedOffline: the card approved offline (TC). No FinishChip.
	ChipApprovedOffline
	// ChipDeclinedOffline: the card declined offline (AAC). No FinishChip;
	// nothing goes online.
	ChipDeclinedOffline
)

// String names the decision.
func (d ChipDecision) String() string {
	switch d {
	case ChipOnline:
		return "online"
	case ChipApprovedOffline:
		return "approved offline"
	case ChipDeclinedOffline:
		return "declined offline"
	}
	return fmt.Sprintf("ChipDecision(%d)", int(d))
}

// ChipRequest starts the chip card's transaction (GOC). It is a plain value,
// safe for concurrent use.
type ChipRequest struct {
	// Amount is the sale's amount; the card signs it (9F02) and the pad's
	// currency (5F2A) must be Amount.Currency.
	Amount money.Amount
	// KeyIndex is the pad's DUKPT key slot for an online PIN: posd's
	// pinpad.pin_key_index, as for GPN.
	KeyIndex int
	// AES says the slot's key is AES DUKPT: an online PIN comes as an ISO 9564
	// format 4 block with a 12-byte KSN. Default false: TDES DUKPT, format 0.
	AES bool
	// OfflineOnly tells the card the terminal cannot go online. Default
	// false.
	OfflineOnly bool
}

// ChipAuth is the card's answer to GoOnChip: its decision, its card data
// for the authorization (fields 2, 14, 23, 35), field 55, and the online PIN
// when the card asked for one. It is sensitive: String, GoString and
// LogValue show the decision and the masked PAN only. It is immutable once
// returned and safe for concurrent reads.
type ChipAuth struct {
	Decision ChipDecision
	// Card is the PAN, track 2 equivalent, expiry and PAN sequence number
	// (field 23: Card.PANSequence) from the card's data objects.
	Card emv.Card
	// Data is all the EMV data the pad returned (masked when printed).
	Data emv.Data
	// DE55 is ISO 8583 field 55 as BER-TLV bytes (the ASCII dialect sends
	// them as hex characters): the tags of emv.DE55Tags the pad returned.
	DE55 []byte
	// PIN is the online PIN the cardholder entered during GOC, encrypted by
	// the pad (DUKPT: ISO 9564 format 0, or format 4 with ChipRequest.AES);
	// zero (PIN.IsZero) when the card did not ask for one.
	PIN hsm.EncryptedPIN
	// SignatureRequired: the card's CVM asks for a signature.
	SignatureRequired bool
	// Contactless: the card was tapped (EMV mode), not inserted. Set by the
	// caller from PresentedCard.Contactless.
	Contactless bool
}

// EntryMode returns field 22 for a chip card: "051", or "071" tapped. A
// Terminal replaces "071" with its Options.CtlsEntryModes.EMV.
func (a ChipAuth) EntryMode() string {
	if a.Contactless {
		return "071"
	}
	return "051"
}

// String describes the answer with the PAN masked.
func (a ChipAuth) String() string {
	s := fmt.Sprintf("chip %s: %s", a.Card.PAN().Masked(), a.Decision)
	if !a.PIN.IsZero() {
		s += ", online PIN"
	}
	return s
}

// GoString returns the masked description.
func (a ChipAuth) GoString() string { return "terminal.ChipAuth{" + a.String() + "}" }

// LogValue implements slog.LogValuer with the masked description.
func (a ChipAuth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// GoOnChip runs the inserted chip card's transaction up to its first
// cryptogram (GOC): risk management, cardholder verification (the pad takes
// an online PIN itself when the card asks), and the card's decision. The
// deadline of ctx bounds it (PIN entry included).
//
// Errors wrap ErrDeviceCancel (cancel during PIN entry), ErrDeviceTimeout,
// ErrCardRemoved, ErrDeviceUnavailable, or ErrChipData when the card's data
// cannot be sent (then end the session with Finish; nothing went online).
func (p *PINPad) GoOnChip(ctx context.Context, req ChipRequest) (ChipAuth, error) {
	tags := append(emv.GoOnChipTags(), receiptTags...)
	p.mu.Lock()
	tapped := p.tapped
	p.mu.Unlock()
	if tapped {
		tags = append(tags, emv.ContactlessTags()...)
	}
	greq := abecs.GoChipRequest{
		AmountMinor: req.Amount.Minor, KeyIndex: req.KeyIndex, AES: req.AES, OfflineOnly: req.OfflineOnly,
		Tags: tags, Timeout: waitFor(ctx),
	}
	var res abecs.GoChipResult
	err := p.run(func(c *abecs.Client) (err error) {
		res, err = c.GoOnChip(ctx, greq)
		return err
	})
	if err != nil {
		return ChipAuth{}, padError(err)
	}
	data, err := emv.Parse(res.EMVData)
	if err != nil {
		return ChipAuth{}, fmt.Errorf("%w: %w", ErrChipData, err)
	}
	a := ChipAuth{Data: data, SignatureRequired: res.SignatureRequired, Contactless: tapped}
	switch res.Decision {
	case abecs.DecisionOnline:
		a.Decision = ChipOnline
	case abecs.DecisionApprovedOffline:
		a.Decision = ChipApprovedOffline
	default:
		a.Decision = ChipDeclinedOffline
	}
	if a.Card, err = emv.ExtractCard(data); err != nil {
		return ChipAuth{}, fmt.Errorf("%w: %w", ErrChipData, err)
	}
	if err := checkSigned(data, req.Amount); err != nil {
		return ChipAuth{}, err
	}
	if a.DE55, err = emv.BuildDE55(data); err != nil && a.Decision == ChipOnline {
		return ChipAuth{}, fmt.Errorf("%w: %w", ErrChipData, err)
	}
	if res.OnlinePIN {
		var perr error
		if req.AES {
			a.PIN, perr = hsm.NewEncryptedPIN(res.AESPINBlock[:], res.AESKSN[:], hsm.FormatISO4)
		} else {
			a.PIN, perr = hsm.NewEncryptedPIN(res.PINBlock[:], res.KSN[:], hsm.FormatISO0)
		}
		if perr != nil {
			return ChipAuth{}, fmt.Errorf("%w: online PIN: %w", ErrChipData, perr)
		}
	}
	return a, nil
}

// checkSigned checks that the amount (9F02) and currency (5F2A) the card
// signed are the sale's, when the pad returned them.
func checkSigned(d emv.Data, amount money.Amount) error {
	if v, ok := d.Value("5F2A"); ok {
		got, err := emv.UnpackBCD(v)
		if err != nil || len(got) != 4 || got[1:] != amount.Currency.Numeric {
			return fmt.Errorf("%w: the card signed currency %q, the sale is in %s (%s): check the PIN pad's EMV tables", ErrChipData, strings.TrimPrefix(got, "0"), amount.Currency.Code, amount.Currency.Numeric)
		}
	}
	if v, ok := d.Value("9F02"); ok {
		got, err := emv.UnpackBCD(v)
		want := fmt.Sprintf("%012d", amount.Minor)
		if err != nil || got != want {
			return fmt.Errorf("%w: the card signed another amount than the sale's", ErrChipData)
		}
	}
	return nil
}

// HostAnswer is what the host said to the chip authorization, for
// FinishChip. It is plain data, safe for concurrent reads.
type HostAnswer struct {
	// Responded is false when the request was not sent or no answer came
	// (timeout, disconnect): the card then decides offline, normally a
	// decline.
	Responded bool
	// ResponseCode is field 39 when Responded.
	ResponseCode string
	// Field55 is the host's field 55 as BER-TLV bytes (decoded from hex in
	// the ASCII dialect), or nil. Its issuer authentication data (91) and
	// scripts (71, 72) go to the card; the rest is ignored.
	Field55 []byte
}

// ChipFinal is the card's final decision (FNC). It is immutable once
// returned and safe for concurrent reads.
type ChipFinal struct {
	// Approved is the card's decision (TC). Approved false after a host
	// approval means the card declined: reverse the sale.
	Approved bool
	// Data is the card's final data (9F27, 9F26, 95, 9B, 8A, 9F5B), for the
	// receipt, an advice or the reversal's field 55; masked when printed.
	Data emv.Data
	// ScriptsDropped counts issuer scripts that did not fit the pad's
	// command and were not given to the card.
	ScriptsDropped int
}

// String describes the decision.
func (f ChipFinal) String() string {
	if f.Approved {
		return "chip: card approved"
	}
	return "chip: card declined"
}

// MustReverse reports whether a sale the host answered with hostApproved
// must be reversed because the card declined it.
func (f ChipFinal) MustReverse(hostApproved bool) bool { return hostApproved && !f.Approved }

// FinishChip gives the card the host's answer (FNC) and returns the card's
// final decision. If the host approved and either the card declines
// (ChipFinal.Approved false) or FinishChip fails (ErrCardRemoved,
// ErrDeviceTimeout, ErrDeviceUnavailable...), the sale must be reversed: the
// card did not complete it.
func (p *PINPad) FinishChip(ctx context.Context, ans HostAnswer) (ChipFinal, error) {
	issuer, dropped, err := emv.IssuerData(ans.Field55)
	if err != nil {
		// An unreadable field 55 from the host: the card gets no issuer
		// data, and decides on the response code alone.
		issuer, dropped = nil, 0
	}
	req := abecs.FinishChipRequest{
		HostResponded: ans.Responded, ResponseCode: ans.ResponseCode, IssuerData: issuer,
		Tags: emv.FinishChipTags(), Timeout: waitFor(ctx),
	}
	if ans.Responded && (len(ans.ResponseCode) != 2 || !printableASCII(ans.ResponseCode)) {
		req.ResponseCode = "  "
	}
	var res abecs.FinishChipResult
	err = p.run(func(c *abecs.Client) (err error) {
		res, err = c.FinishChip(ctx, req)
		return err
	})
	if err != nil {
		return ChipFinal{}, padError(err)
	}
	data, err := emv.Parse(res.EMVData)
	if err != nil {
		data = emv.Data{}
	}
	return ChipFinal{Approved: res.Approved, Data: data, ScriptsDropped: dropped}, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// padError maps the pad's customer-facing statuses onto the terminal's.
func padError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, abecs.ErrCancelled):
		return fmt.Errorf("%w: %w", ErrDeviceCancel, err)
	case errors.Is(err, abecs.ErrPadTimeout):
		return fmt.Errorf("%w: %w", ErrDeviceTimeout, err)
	case errors.Is(err, abecs.ErrFallbackAllowed):
		return fmt.Errorf("%w: %w", ErrChipFallback, err)
	case errors.Is(err, abecs.ErrMuteCard), errors.Is(err, abecs.ErrMagstripeRead):
		return fmt.Errorf("%w: %w", ErrCardUnreadable, err)
	case errors.Is(err, abecs.ErrNoCard):
		return fmt.Errorf("%w: %w", ErrCardRemoved, err)
	}
	return err
}
