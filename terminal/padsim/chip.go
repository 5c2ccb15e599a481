package padsim

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/emv"
)

// chipState is the pad's card session; guarded by Pad.mu.
type chipState struct {
	card     *Chip // the chip card in the reader, or nil
	tap      *Tap  // the card was tapped (EMV mode): card is &tap.Chip
	limits   CtlsLimits
	cdcvm    bool // the tap verified its holder on the device
	reported bool // GCR has returned its data
	stage    chipStage
	fallback bool // a chip read failed: the next swipe is a fallback
	atc      uint16
	amount   int64
	cashback int64
	un       [4]byte
	decision abecs.ChipDecision
	pin      bool // the cardholder entered an online PIN in GOC
}

type chipStage uint8

const (
	stageIdle   chipStage = iota
	stageRead             // GCR returned the card: GOC may run
	stageOnline           // GOC asked to go online: FNC may run
	stageDone             // the card has decided
)

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s) // validated with the script
	return b
}

// insertedCard returns the card a CKE saw inserted that GCR has not yet
// reported.
func (p *Pad) insertedCard() *Chip {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.chip.card != nil && !p.chip.reported {
		return p.chip.card
	}
	return nil
}

func (p *Pad) insert(c *Chip) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.chip.card, p.chip.tap, p.chip.reported, p.chip.stage = c, nil, false, stageIdle
}

func (p *Pad) removeCard() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.chip.card, p.chip.reported, p.chip.stage = nil, false, stageIdle
}

func (p *Pad) chipFailed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.chip.card, p.chip.reported, p.chip.stage, p.chip.fallback = nil, false, stageIdle, true
}

// takeFallback reports and clears the fallback flag.
func (p *Pad) takeFallback() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.chip.fallback
	p.chip.fallback = false
	return f
}

// endSession forgets the card session (CLO).
func (p *Pad) endSession() {
	p.mu.Lock()
	defer p.mu.Unlock()
	atc := p.chip.atc
	p.chip = chipState{atc: atc}
}

func (c *Chip) expiry() string { return def(c.Expiry, "301231") }

func (c *Chip) serviceCode() string { return def(c.ServiceCode, "201") }

func (c *Chip) panSeq() string { return def(c.PANSequence, "01") }

func (c *Chip) track2() string {
	if c.Track2 != "" {
		return c.Track2
	}
	return c.PAN + "=" + c.expiry()[:4] + c.serviceCode() + "00000000"
}

func def(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// chipCardData answers GCR with the data of the chip card c.
func (p *Pad) chipCardData(id, what string, c *Chip) abecs.Response {
	cd := abecs.NewChipCard(abecs.ChipFields{
		PAN: c.PAN, Track2: c.track2(), Expiry: c.expiry(), ServiceCode: c.serviceCode(),
		PANSequence: c.panSeq(), Label: def(c.Label, "CREDIT"), Name: c.Name, IssuerCountry: p.country,
	})
	block, err := abecs.AppendCardData(nil, cd)
	if err != nil {
		p.logf("%s: %v: %v -> 040", what, c, strings.TrimPrefix(err.Error(), "abecs: "))
		return status(id, abecs.StatusInternal)
	}
	p.mu.Lock()
	p.chip.card, p.chip.tap, p.chip.reported, p.chip.stage, p.chip.fallback = c, nil, true, stageRead, false
	p.mu.Unlock()
	p.logf("%s: insert %v -> 000", what, c)
	return abecs.Response{ID: id, Status: abecs.StatusOK, Blocks: [][]byte{block}}
}

func (p *Pad) info(cmd abecs.Command) abecs.Response {
	if len(cmd.Blocks) != 1 {
		p.logf("GIN with %d blocks -> 011", len(cmd.Blocks))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	idx, err := abecs.ParseInfoRequest(cmd.Blocks[0])
	if err != nil || idx != 0 {
		p.logf("GIN: only acquirer index 00 is known -> 011")
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	block, err := abecs.AppendInfo(nil, abecs.Info{
		Manufacturer: "POSD", Model: "PADSIM", Firmware: "1.0", SpecVersion: "1.08",
		AppVersion: "padsim", Serial: p.serial, Contactless: p.ctls,
	})
	if err != nil {
		p.logf("GIN: %v -> 040", err)
		return status(cmd.ID, abecs.StatusInternal)
	}
	p.logf("GIN 00 -> 000")
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{block}}
}

func (p *Pad) waitEvent(cmd abecs.Command) abecs.Response {
	if len(cmd.Blocks) != 1 {
		p.logf("CKE with %d blocks -> 011", len(cmd.Blocks))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	req, err := abecs.ParseWaitRequest(cmd.Blocks[0])
	if err != nil {
		p.logf("CKE: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	var parts []string
	for _, f := range []struct {
		on   bool
		name string
	}{{req.Keys, "keys"}, {req.Swipe, "swipe"}, {req.Insert, "insert"}, {req.Remove, "remove"}, {req.Contactless, "ctls"}} {
		if f.on {
			parts = append(parts, f.name)
		}
	}
	what := "CKE " + strings.Join(parts, ",")
	answer := func(e abecs.PadEvent) abecs.Response {
		block, err := abecs.AppendPadEvent(nil, e)
		if err != nil {
			p.logf("%s: %v -> 040", what, strings.TrimPrefix(err.Error(), "abecs: "))
			return status(cmd.ID, abecs.StatusInternal)
		}
		p.logf("%s: %v -> 000", what, e)
		return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{block}}
	}
	p.mu.Lock()
	cardIn := p.chip.card != nil
	p.mu.Unlock()
	// CKE_CTLS on a pad without a contactless reader is ignored, as GCR_CTLSON is: the
	// antenna it would power is not there (ABECS says no more; a real pad may differ).
	ctls := req.Contactless && p.ctls
	ev, ok := p.peek()
	switch {
	case req.Remove && !cardIn:
		return answer(abecs.PadEvent{Kind: abecs.EventRemoved})
	case req.Remove && (!ok || (ev.Remove || !(ev.Cancel || ev.Timeout || (ev.Key != "" && req.Keys) || (ev.Swipe != nil && req.Swipe) || (ev.Tap != nil && ctls)))):
		if ok && ev.Remove {
			p.consume()
		}
		p.removeCard()
		return answer(abecs.PadEvent{Kind: abecs.EventRemoved})
	}
	if ok && ev.Timeout && ctls {
		// The antenna was on and nothing came: CKE_EVENT 3, CKE_CTLSSTAT 0.
		p.consume()
		return answer(abecs.PadEvent{Kind: abecs.EventNoTap})
	}
	if resp, ok := p.cardholder(cmd.ID, what, ev, ok); !ok {
		return resp
	}
	switch {
	case ev.Tap != nil && ctls:
		// CKE_EVENT 3, CKE_CTLSSTAT 1. The card stays in the field: the script
		// event is left for the GCR with contactless on that reads it.
		return answer(abecs.PadEvent{Kind: abecs.EventTapped})
	case ev.Key != "" && req.Keys:
		p.consume()
		return answer(abecs.PadEvent{Kind: abecs.EventKey, Key: keyCodes[ev.Key]})
	case ev.Swipe != nil && req.Swipe:
		p.consume()
		return answer(abecs.PadEvent{Kind: abecs.EventSwipe, Card: abecs.NewMagstripeCard(ev.Swipe.Track1, ev.Swipe.Track2)})
	case ev.Insert != nil && req.Insert:
		p.consume()
		p.insert(ev.Insert)
		return answer(abecs.PadEvent{Kind: abecs.EventInserted})
	}
	p.logf("%s: next script event is %v, not one asked for -> 040", what, ev)
	return status(cmd.ID, abecs.StatusInternal)
}

// cardRemoved answers 043 when the next event pulls the card out.
func (p *Pad) cardRemoved(id, what string) (abecs.Response, bool) {
	if ev, ok := p.peek(); ok && ev.Remove {
		p.consume()
		p.removeCard()
		p.logf("%s: card removed -> 043", what)
		return status(id, abecs.StatusNoCard), true
	}
	return abecs.Response{}, false
}

func (p *Pad) goChip(cmd abecs.Command) abecs.Response {
	p.mu.Lock()
	c, stage := p.chip.card, p.chip.stage
	p.mu.Unlock()
	if c == nil || stage != stageRead {
		p.logf("GOC without a chip card read by GCR -> 010")
		return status(cmd.ID, abecs.StatusInvalidCall)
	}
	req, err := abecs.ParseGoChip(cmd.Blocks)
	if err != nil {
		p.logf("GOC: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	what := fmt.Sprintf("GOC amount %d %v", req.AmountMinor, c)
	if p.keyIndex != 0 && req.KeyIndex != p.keyIndex {
		p.logf("%s: key %02d: the pad's key is in slot %02d -> 042", what, req.KeyIndex, p.keyIndex)
		return status(cmd.ID, abecs.StatusKeyMissing)
	}
	decision := abecs.DecisionOnline
	switch c.Decision {
	case DecisionApprove:
		decision = abecs.DecisionApprovedOffline
	case DecisionDecline:
		decision = abecs.DecisionDeclinedOffline
	}
	p.mu.Lock()
	tap, lim := p.chip.tap, p.chip.limits
	p.mu.Unlock()
	askPIN, cdcvm := c.OnlinePIN, false
	if tap != nil {
		if decision == abecs.DecisionApprovedOffline && req.AmountMinor > lim.Floor {
			decision = abecs.DecisionOnline // above the contactless floor limit
		}
		cvmRequired := lim.CVM > 0 && req.AmountMinor >= lim.CVM
		askPIN, cdcvm = cvmRequired && !tap.CDCVM, cvmRequired && tap.CDCVM
	}
	if decision == abecs.DecisionOnline && req.OfflineOnly {
		decision = abecs.DecisionDeclinedOffline
	}
	res := abecs.GoChipResult{Decision: decision, AES: req.AES} // the response's layout follows the method asked
	if decision == abecs.DecisionOnline && askPIN {
		if aes := p.aesOrig != nil; req.AES != aes {
			p.logf("%s: online PIN under DUKPT %s asked, the pad's key is %s -> 042", what, dukptName(req.AES), dukptName(aes))
			return status(cmd.ID, abecs.StatusKeyMissing)
		}
		enc, code := p.enterPIN(what+" online PIN", c.PAN, 4, 12)
		if code != abecs.StatusOK {
			return status(cmd.ID, code)
		}
		res.OnlinePIN = true
		if req.AES {
			res.AESPINBlock, res.AESKSN = [16]byte(enc.block), [12]byte(enc.ksn)
		} else {
			res.PINBlock, res.KSN = [8]byte(enc.block), [10]byte(enc.ksn)
		}
		enc.clear()
	}
	p.mu.Lock()
	p.chip.atc++
	p.chip.amount, p.chip.cashback, p.chip.decision, p.chip.pin = req.AmountMinor, req.CashbackMinor, decision, res.OnlinePIN
	p.chip.cdcvm = cdcvm
	rand.Read(p.chip.un[:])
	p.chip.stage = stageDone
	if decision == abecs.DecisionOnline {
		p.chip.stage = stageOnline
	}
	cid := byte(0x80)
	switch decision {
	case abecs.DecisionApprovedOffline:
		cid = 0x40
	case abecs.DecisionDeclinedOffline:
		cid = 0x00
	}
	data, err := p.chipData(req.Tags, c, cid, "")
	p.mu.Unlock()
	var block []byte
	if err == nil {
		res.EMVData = data
		block, err = abecs.AppendGoChipResult(nil, res)
	}
	if err != nil {
		p.logf("%s: EMV data: %v -> 040", what, err)
		return status(cmd.ID, abecs.StatusInternal)
	}
	p.logf("%s: %v -> 000", what, res)
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{block}}
}

func (p *Pad) finishChip(cmd abecs.Command) abecs.Response {
	p.mu.Lock()
	c, stage := p.chip.card, p.chip.stage
	p.mu.Unlock()
	if c == nil || stage != stageOnline {
		p.logf("FNC without a GOC that went online -> 010")
		return status(cmd.ID, abecs.StatusInvalidCall)
	}
	req, err := abecs.ParseFinishChip(cmd.Blocks)
	if err != nil {
		p.logf("FNC: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	host := "no host answer"
	if req.HostResponded {
		host = "host " + req.ResponseCode
	}
	what := fmt.Sprintf("FNC %s %v", host, c)
	if resp, removed := p.cardRemoved(cmd.ID, what); removed {
		return resp
	}
	approve := req.HostResponded && req.ResponseCode == "00"
	switch c.Finish {
	case FinishApprove:
		approve = true
	case FinishDecline:
		approve = false
	}
	scripts := 0
	if d, err := emv.Parse(req.IssuerData); err == nil {
		for _, t := range d.Tags() {
			if t == "71" || t == "72" {
				scripts++
			}
		}
	}
	arc := "Z3" // unable to go online, declined
	if req.HostResponded {
		arc = req.ResponseCode
	}
	cid := byte(0x00)
	if approve {
		cid = 0x40
	}
	p.mu.Lock()
	data, err := p.chipData(req.Tags, c, cid, arc)
	p.chip.stage = stageDone
	p.mu.Unlock()
	if err != nil {
		p.logf("%s: EMV data: %v -> 040", what, err)
		return status(cmd.ID, abecs.StatusInternal)
	}
	if scripts > 0 {
		data = append(data, scriptResults(req.Tags, req.IssuerData)...)
	}
	res := abecs.FinishChipResult{Approved: approve, EMVData: data}
	block, err := abecs.AppendFinishChipResult(nil, res)
	if err != nil {
		p.logf("%s: %v -> 040", what, err)
		return status(cmd.ID, abecs.StatusInternal)
	}
	p.logf("%s: %v -> 000", what, res)
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{block}}
}

// scriptResults returns tag 9F5B (issuer script results: one 5-byte result
// per script, "processed successfully") when the host asked for it.
func scriptResults(tags []string, issuer []byte) []byte {
	want := false
	for _, t := range tags {
		want = want || t == "9F5B"
	}
	d, err := emv.Parse(issuer)
	if !want || err != nil {
		return nil
	}
	var results []byte
	for _, t := range d.Tags() {
		if t == "71" || t == "72" {
			results = append(results, 0x20, 0, 0, 0, 0)
		}
	}
	if len(results) > 127 {
		results = results[:125]
	}
	out, err := emv.New(emv.Object{Tag: "9F5B", Value: results})
	if err != nil {
		return nil
	}
	b, _ := out.Encode()
	return b
}

// chipData returns the requested tags the card and the pad know, in order:
// the card's data objects, the pad's tables, and the transaction (with
// cryptogram information cid; arc is the response code 8A after FNC, or ""
// in GOC). The caller holds p.mu.
func (p *Pad) chipData(tags []string, c *Chip, cid byte, arc string) ([]byte, error) {
	st := &p.chip
	bcd := func(s string, n int) []byte { b, _ := emv.PackBCD(s, n); return b }
	var atc [2]byte
	binary.BigEndian.PutUint16(atc[:], st.atc)
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|%d|%x|%x|%02x|%s|%t", c.PAN, st.amount, st.atc, st.un, p.serial, cid, arc, st.tap != nil)
	crypto := h.Sum(nil)[:8]
	cvm := "1F0302" // no CVM performed
	switch {
	case st.pin:
		cvm = "420300" // enciphered PIN verified online
	case st.cdcvm:
		cvm = "010002" // verified on the cardholder's device (CDCVM)
	}
	tvr := "0000000000"
	if st.decision == abecs.DecisionOnline {
		tvr = "0000008000" // transaction exceeds floor limit
	}
	ifd := []byte((p.serial + "        ")[:8])
	var objs []emv.Object
	for _, tag := range tags {
		var v []byte
		switch tag {
		case "5A":
			v, _ = emv.PackDigits(c.PAN)
		case "57":
			v, _ = emv.PackDigits(c.track2())
		case "5F24":
			v = bcd(c.expiry(), 3)
		case "5F34":
			v = bcd(c.panSeq(), 1)
		case "5F30":
			v = bcd(c.serviceCode(), 2)
		case "5F28":
			v = bcd(p.country, 2)
		case "50":
			v = []byte(def(c.Label, "CREDIT"))
		case "5F20":
			if c.Name == "" {
				continue
			}
			v = []byte(c.Name)
		case "84", "4F":
			v = mustHex(def(c.AID, "A0000000031010"))
		case "82":
			v = []byte{0x3C, 0x00}
		case "9F10":
			v = []byte{0x06, 0x01, 0x0A, 0x03, 0xA0, 0x00, 0x00}
		case "9F26":
			v = crypto
		case "9F27":
			v = []byte{cid}
		case "9F36":
			v = atc[:]
		case "9F37":
			v = st.un[:]
		case "95":
			v = mustHex(tvr)
		case "9A":
			v = bcd(p.now().Format("060102"), 3)
		case "9C":
			v = []byte{0x00}
		case "9F02":
			v = bcd(fmt.Sprint(st.amount), 6)
		case "9F03":
			v = bcd(fmt.Sprint(st.cashback), 6)
		case "5F2A":
			v = bcd(p.currency, 2)
		case "9F1A":
			v = bcd(p.country, 2)
		case "9F33":
			v = []byte{0xE0, 0xF8, 0xC8}
		case "9F34":
			v = mustHex(cvm)
		case "9F35":
			v = []byte{0x22}
		case "9F09":
			v = []byte{0x00, 0x8C}
		case "9F1E":
			v = ifd
		case "9F41":
			v = bcd(fmt.Sprint(st.atc), 4)
		case "9B":
			v = []byte{0xE8, 0x00}
		case "9F6E":
			if st.tap == nil || st.tap.FormFactor == "" {
				continue
			}
			v = mustHex(st.tap.FormFactor)
		case "9F66":
			if st.tap == nil {
				continue
			}
			v = []byte{0x36, 0x00, 0x40, 0x00} // EMV mode, contact chip, online PIN, signature; CDCVM
			if st.limits.CVM > 0 && st.amount >= st.limits.CVM {
				v[1] |= 0x40 // CVM required
			}
			if st.amount > st.limits.Floor {
				v[1] |= 0x80 // online cryptogram required
			}
		case "8A":
			if arc == "" {
				continue
			}
			v = []byte(arc)
		default:
			continue
		}
		objs = append(objs, emv.Object{Tag: tag, Value: v})
	}
	d, err := emv.New(objs...)
	if err != nil {
		return nil, err
	}
	return d.Encode()
}
