package hostsim

// MACs at the host: every request of a MAC dialect is checked, every answer MACed.

import (
	"context"

	"github.com/posd-dev/posd/iso8583"
)

// MACStats returns how many requests' MACs verified and how many were missing or did not
// verify, since the server was made.
func (s *Server) MACStats() (verified, failed uint64) {
	return s.macGood.Load(), s.macBad.Load()
}

// checkMAC checks the MAC of req, unpacked from raw; nil when it verifies or the dialect
// MACs nothing of req's MTI.
func (s *Server) checkMAC(ctx context.Context, req *iso8583.Message, raw []byte) error {
	if s.mac == nil {
		return nil
	}
	mti, _ := req.GetMTI()
	if _, err := iso8583.ResponseMTI(mti); err != nil || !s.mac.Carries(mti) {
		return nil // not a request (a terminal's answer to the host's 0800), or not MACed
	}
	key := s.MACKeyID()
	if err := s.mac.VerifyMessage(ctx, s.opts.MAC, key, req, raw); err != nil {
		s.macBad.Add(1)
		return err
	}
	s.macGood.Add(1)
	s.keyMu.Lock()
	s.macByKey[key]++
	s.keyMu.Unlock()
	return nil
}

// pack packs resp, the answer to req, MACed when the dialect MACs it (and its MAC
// corrupted when TamperMAC says so).
func (s *Server) pack(ctx context.Context, req, resp *iso8583.Message) ([]byte, error) {
	if s.mac == nil {
		return iso8583.Pack(resp)
	}
	out, err := s.mac.SignMessage(ctx, s.opts.MAC, s.MACKeyID(), resp)
	if err != nil || s.opts.TamperMAC == nil || !s.opts.TamperMAC(req) {
		return out, err
	}
	mti, _ := resp.GetMTI()
	if s.mac.Carries(mti) && len(out) > 0 {
		// The MAC is the last field: change its last character, keeping it a hex digit.
		switch b := &out[len(out)-1]; {
		case *b == '0':
			*b = '1'
		case *b >= '1' && *b <= '9' || *b >= 'A' && *b <= 'F':
			*b = '0'
		default:
			*b ^= 1
		}
		s.logf("hostsim: the MAC of the answer to %s corrupted (on purpose)", iso8583.Masked{Msg: req})
	}
	return out, nil
}
