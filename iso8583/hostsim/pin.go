package hostsim

// PIN checking: DUKPT keys (TDES and AES) and PIN blocks.

import (
	"crypto/subtle"
	"sync"

	"github.com/posd-dev/posd/hsm/dukpt"
	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/terminal/card"
)

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
