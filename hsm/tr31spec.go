package hsm

import (
	"encoding/hex"
	"fmt"

	"github.com/posd-dev/posd/hsm/tr31"
)

// TR31Spec is for backends importing TR-31 key blocks: it maps a block's header and key
// length to the key's Algorithm and Usage, and for a DUKPT initial key (usage B1) reads its
// KSN from the header: the "KS" optional block (20 hex digits, TDES) or the "IK" block (16
// hex digits, the AES initial key ID; the counter starts at 0). It refuses usages posd has
// no use for.
func TR31Spec(h tr31.Header, keyLen int) (Algorithm, Usage, []byte, error) {
	var alg Algorithm
	switch {
	case h.Algorithm == 'T' && keyLen == 16:
		alg = TDES2
	case h.Algorithm == 'T' && keyLen == 24:
		alg = TDES3
	case h.Algorithm == 'A' && keyLen == 16:
		alg = AES128
	case h.Algorithm == 'A' && keyLen == 24:
		alg = AES192
	case h.Algorithm == 'A' && keyLen == 32:
		alg = AES256
	default:
		return 0, 0, nil, fmt.Errorf("%w: key block algorithm %c with a %d-byte key", ErrUnsupported, h.Algorithm, keyLen)
	}
	var u Usage
	switch h.KeyUsage {
	case "P0":
		u = UsagePIN
	case "B0":
		u = UsageBDK
	case "B1":
		u = UsageDUKPT
	case "M0", "M1", "M3", "M6", "M7":
		u = UsageMAC
	case "D0":
		u = UsageData
	case "K1":
		u = UsageKBPK
	default:
		return 0, 0, nil, fmt.Errorf("%w: key block usage %s (%s)", ErrUnsupported, h.KeyUsage, tr31.UsageName(h.KeyUsage))
	}
	if u != UsageDUKPT {
		return alg, u, nil, nil
	}
	if ks, ok := h.Get("KS"); ok && alg == TDES2 {
		ksn, err := hex.DecodeString(ks)
		if err != nil || len(ksn) != 10 {
			return 0, 0, nil, fmt.Errorf("hsm: key block KS block %q is not a 20-digit KSN", ks)
		}
		return alg, u, ksn, nil
	}
	if ik, ok := h.Get("IK"); ok && alg.IsAES() {
		id, err := hex.DecodeString(ik)
		if err != nil || len(id) != 8 {
			return 0, 0, nil, fmt.Errorf("hsm: key block IK block %q is not a 16-digit initial key ID", ik)
		}
		return alg, u, append(id, 0, 0, 0, 0), nil
	}
	return 0, 0, nil, fmt.Errorf("hsm: a %v DUKPT initial key block needs its KSN (optional block KS for TDES, IK for AES)", alg)
}
