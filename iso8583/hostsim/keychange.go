package hostsim

// Working-key changes at the host: an 0800 of a key-change code gets a fresh key in a TR-31
// block under the KEK (Options.KEK) with its check value; the terminal's confirming 0800
// (the new key's check value) makes the host switch to it once that 0800 is answered.
// MAC keys are loaded into Options.MAC's module as generations of Options.MACKeyID
// ("mac.g1", "mac.g2"...), so that every request's MAC is checked with the key in use and
// counted by key id.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/hsm/kcv"
	"github.com/posd-dev/posd/hsm/tr31"
	"github.com/posd-dev/posd/iso8583"
)

// pendingKey is a key the host sent and the terminal has not confirmed yet.
type pendingKey struct {
	id  string // the MAC key's id in the module; "" for keys the host does not use
	kcv []byte
}

// MACKeyID returns the id of the MAC key the host checks requests with now.
func (s *Server) MACKeyID() string {
	if p := s.macKey.Load(); p != nil {
		return *p
	}
	return s.opts.MACKeyID
}

// MACVerifiedByKey returns, per MAC key id, how many requests' MACs verified under it.
func (s *Server) MACVerifiedByKey() map[string]uint64 {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	return maps.Clone(s.macByKey)
}

// KeyChanges returns how many key changes the host has completed (confirmed), by key.
func (s *Server) KeyChanges() map[iso8583.KeyKind]int {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	return maps.Clone(s.changes)
}

// keyChange answers a key-change 0800: a new key, or the switch to the one sent.
func (s *Server) keyChange(req *iso8583.Message) (decision, bool) {
	x := s.dialect.KeyExchange
	kc, ok, err := x.ParseRequest(req)
	if !ok {
		return decision{}, false
	}
	if err != nil {
		s.logf("hostsim: key change: %v", err)
		return decision{rc: iso8583.RCFormatError}, true
	}
	if s.opts.KEK == nil || x.Form != iso8583.KeyFormTR31 {
		s.logf("hostsim: key change for the %s key: no KEK (--kek-file), or a %s form (only TR-31 is simulated)", kc.Key, x.Form)
		return decision{rc: iso8583.RCInvalidTxn}, true
	}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if kc.Confirm != nil {
		p, ok := s.pending[kc.Key]
		if !ok || subtle.ConstantTimeCompare(p.kcv, kc.Confirm) != 1 {
			s.logf("hostsim: key change for the %s key: confirmation of check value %X, which the host did not send", kc.Key, kc.Confirm)
			return decision{rc: iso8583.RCInvalidTxn}, true
		}
		delete(s.pending, kc.Key)
		if s.opts.LoseKeyConfirm && !s.lostConf {
			// The switch happens; its answer is lost (never written).
			s.lostConf = true
			s.changes[kc.Key]++
			if p.id != "" {
				s.macKey.Store(&p.id)
			}
			s.logf("hostsim: the %s key is now the one of check value %X (%s); the answer to the confirmation is lost on purpose", kc.Key, p.kcv, p.id)
			return decision{rc: iso8583.RCApproved, fields: func(*iso8583.Message) error {
				return errors.New("the 0810 to a key-change confirmation is lost on purpose (LoseKeyConfirm)")
			}}, true
		}
		return decision{rc: iso8583.RCApproved, after: func() {
			s.keyMu.Lock()
			s.changes[kc.Key]++
			s.keyMu.Unlock()
			if p.id != "" {
				s.macKey.Store(&p.id)
			}
			s.logf("hostsim: the %s key is now the one of check value %X (%s)", kc.Key, p.kcv, p.id)
		}}, true
	}
	block, p, err := s.newKey(kc.Key)
	if err != nil {
		s.logf("hostsim: key change for the %s key: %v", kc.Key, err)
		return decision{rc: iso8583.RCInvalidTxn}, true
	}
	s.pending[kc.Key] = p
	s.logf("hostsim: sent a new %s key, check value %X, under the KEK", kc.Key, p.kcv)
	return decision{rc: iso8583.RCApproved, fields: func(resp *iso8583.Message) error {
		return x.Answer(resp, block, p.kcv)
	}}, true
}

// newKey makes a fresh key of kind k, wraps it under the KEK and, for a MAC key, loads it
// into the MAC module as the next generation. It is called with keyMu held.
func (s *Server) newKey(k iso8583.KeyKind) (string, pendingKey, error) {
	alg, usage := byte('T'), ""
	mode := byte('C')
	n := 16
	switch k {
	case iso8583.KeyMAC:
		usage = "M3"
		if s.mac != nil && s.mac.Algorithm == iso8583.MACAESCMAC {
			alg, usage = 'A', "M6"
		}
	case iso8583.KeyPIN:
		usage, mode = "P0", 'B'
	case iso8583.KeyData:
		alg, usage, mode = 'A', "D0", 'B'
	}
	key := make([]byte, n)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return "", pendingKey{}, err
	}
	var cv []byte
	var err error
	if alg == 'A' {
		cv, err = kcv.AES(key)
	} else {
		cv, err = kcv.TDES(key, kcv.Legacy)
	}
	if err != nil {
		return "", pendingKey{}, err
	}
	if s.opts.BadKey == "usage" && k == iso8583.KeyMAC {
		usage, mode = "P0", 'B'
	}
	version := byte('B')
	if len(s.opts.KEK) == 32 {
		version = 'D'
	}
	block, err := tr31.Wrap(s.opts.KEK, tr31.Header{Version: version, KeyUsage: usage, Algorithm: alg, ModeOfUse: mode, KeyVersion: "00", Exportability: 'N'}, key, nil)
	if err != nil {
		return "", pendingKey{}, fmt.Errorf("wrapping under the KEK: %w", err)
	}
	p := pendingKey{kcv: cv}
	switch s.opts.BadKey {
	case "kcv":
		p.kcv = append([]byte(nil), cv...)
		p.kcv[0] ^= 0xFF // sent beside the key, and then expected in the confirmation
	case "block":
		b := []byte(block)
		if b[len(b)-1] == '0' {
			b[len(b)-1] = '1'
		} else {
			b[len(b)-1] = '0'
		}
		block = string(b)
	}
	if k == iso8583.KeyMAC {
		m, ok := s.opts.MAC.(*hsm.Module)
		if !ok {
			return "", pendingKey{}, fmt.Errorf("the MAC key rotates only in an *hsm.Module (Options.MAC)")
		}
		s.macGen++
		base := s.opts.MACKeyID
		if base == "" {
			base = "mac"
		}
		p.id = hsm.GenerationID(base, s.macGen)
		a := hsm.TDES2
		if alg == 'A' {
			a = hsm.AES128
		}
		if _, err := m.LoadKey(context.Background(), hsm.LoadRequest{ID: p.id, Algorithm: a, Usage: hsm.UsageMAC, Components: [][]byte{key}, Replace: true}); err != nil {
			return "", pendingKey{}, fmt.Errorf("loading the new MAC key: %w", err)
		}
	}
	return block, p, nil
}

// RequestKeyChange asks every connected terminal to change its working key k now: an 0800
// with field 70 the dialect's code for k, which a terminal answers 00 and follows with its
// own key-change 0800s. It returns how many connections it was written to. The 0800 is not
// MACed (the terminal answers it without acting on its content beyond the code).
func (s *Server) RequestKeyChange(k iso8583.KeyKind) (int, error) {
	if s.dialect == nil || s.dialect.KeyExchange == nil {
		return 0, fmt.Errorf("hostsim: the dialect declares no key exchange")
	}
	s.keyMu.Lock()
	s.hostSTAN = s.hostSTAN%999999 + 1
	stan := s.hostSTAN
	conns := make([]*connWriter, 0, len(s.conns))
	for w := range s.conns {
		conns = append(conns, w)
	}
	s.keyMu.Unlock()
	req, err := s.dialect.KeyExchange.Request(iso8583.KeyChange{Key: k, STAN: stan, TransmissionTime: s.now()})
	if err != nil {
		return 0, err
	}
	wire, err := iso8583.Convert(req, s.spec)
	if err != nil {
		return 0, err
	}
	b, err := iso8583.Pack(wire)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, w := range conns {
		if w.write(b) == nil {
			n++
		}
	}
	s.logf("hostsim: asked %d terminal(s) for a %s key change (0800, 70=%s)", n, k, s.dialect.KeyExchange.Code(k))
	return n, nil
}
