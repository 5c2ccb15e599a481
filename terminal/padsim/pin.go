package padsim

// This file holds PIN entry: GPN, GOC's PIN and the DUKPT encryption.

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/abecs"
	"github.com/posd-dev/posd/terminal/card"
)

func (p *Pad) getPIN(cmd abecs.Command) abecs.Response {
	if len(cmd.Blocks) != 1 {
		p.logf("GPN with %d blocks -> 011", len(cmd.Blocks))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	req, err := abecs.ParsePINRequest(cmd.Blocks[0])
	if err != nil {
		p.logf("GPN: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	}
	what := fmt.Sprintf("GPN key %02d PAN %s prompt %q %q", req.KeyIndex, card.MaskPAN(req.PAN), req.Line1, req.Line2)
	if p.keyIndex != 0 && req.KeyIndex != p.keyIndex {
		p.logf("%s: the pad's key is in slot %02d -> 042", what, p.keyIndex)
		return status(cmd.ID, abecs.StatusKeyMissing)
	}
	if aes := p.aesOrig != nil; req.AES != aes {
		p.logf("%s: %s DUKPT asked, the pad's key is %s -> 042", what, dukptName(req.AES), dukptName(aes))
		return status(cmd.ID, abecs.StatusKeyMissing)
	}
	enc, code := p.enterPIN(what, req.PAN, req.MinLen, req.MaxLen)
	if code != abecs.StatusOK {
		return status(cmd.ID, code)
	}
	defer enc.clear()
	var b []byte
	if req.AES {
		b = abecs.AppendPINResponseAES(nil, [16]byte(enc.block), [12]byte(enc.ksn))
	} else {
		b = abecs.AppendPINResponse(nil, [8]byte(enc.block), [10]byte(enc.ksn))
	}
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{b}}
}

func dukptName(aes bool) string {
	if aes {
		return "AES"
	}
	return "TDES"
}

// encryptedPIN is a PIN block as it leaves the pad: 8 bytes and a 10-byte KSN
// (TDES, format 0) or 16 bytes and a 12-byte KSN (AES, format 4).
type encryptedPIN struct {
	block, ksn []byte
}

func (e encryptedPIN) clear() { clear(e.block) }

// enterPIN takes the next event as a PIN entry for pan and returns the
// encrypted block and its KSN, or the status to answer.
func (p *Pad) enterPIN(what, pan string, minLen, maxLen int) (encryptedPIN, int) {
	ev, ok := p.peek()
	if resp, ok := p.cardholder("", what, ev, ok); !ok {
		return encryptedPIN{}, resp.Status
	}
	switch {
	case ev.Remove:
		p.consume()
		p.removeCard()
		p.logf("%s: card removed -> 043", what)
		return encryptedPIN{}, abecs.StatusNoCard
	case ev.PIN == "":
		p.logf("%s: next script event is %v, not a pin or cancel -> 040", what, ev)
		return encryptedPIN{}, abecs.StatusInternal
	case len(ev.PIN) < minLen || len(ev.PIN) > maxLen:
		p.logf("%s: scripted pin length is outside %d-%d -> 040", what, minLen, maxLen)
		return encryptedPIN{}, abecs.StatusInternal
	}
	enc, err := p.encrypt(ev.PIN, pan)
	if errors.Is(err, pinblock.ErrPIN) || errors.Is(err, pinblock.ErrPAN) {
		p.logf("%s: %v -> 011", what, err)
		return encryptedPIN{}, abecs.StatusInvalidParameter
	}
	if err != nil {
		p.logf("%s: %v -> 040", what, err)
		return encryptedPIN{}, abecs.StatusInternal
	}
	p.consume()
	p.logf("%s: pin -> KSN %X -> 000", what, enc.ksn)
	return enc, abecs.StatusOK
}

// encrypt builds the PIN block for pin and pan in the key's format and
// encrypts it under the next DUKPT PIN key, after recording the new counter
// in the state file.
func (p *Pad) encrypt(pin, pan string) (encryptedPIN, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.aesOrig != nil {
		return p.encryptAES(pin, pan)
	}
	clearBlock, err := pinblock.EncodeFormat0(pin, pan)
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(clearBlock[:])
	key, ksn, err := p.orig.NextPINKey()
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(key)
	if p.statePath != "" {
		if err := saveState(p.statePath, ksn); err != nil {
			return encryptedPIN{}, err
		}
	}
	block, err := pinblock.EncryptTDES(key, clearBlock)
	if err != nil {
		return encryptedPIN{}, err
	}
	return encryptedPIN{block: block[:], ksn: ksn[:]}, nil
}

// encryptAES is encrypt for an AES key: an ISO 9564 format 4 block under the
// next AES DUKPT PIN encryption key (of the key's own type). The originator's
// Store saves the counter before the key is derived. The caller holds p.mu.
func (p *Pad) encryptAES(pin, pan string) (encryptedPIN, error) {
	if _, err := pinblock.Format4PANField(pan); err != nil || len(pan) < 12 {
		return encryptedPIN{}, pinblock.ErrPAN
	}
	field, err := pinblock.Encode(pinblock.Format4, pin, "", rand.Reader)
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(field)
	key, ksn, err := p.aesOrig.NextPINKey(p.aesOrig.KeyType())
	if err != nil {
		return encryptedPIN{}, err
	}
	defer clear(key)
	block, err := pinblock.EncryptFormat4(key, [16]byte(field), pan)
	if err != nil {
		return encryptedPIN{}, err
	}
	return encryptedPIN{block: block[:], ksn: ksn[:]}, nil
}
