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
	u, err := tr31Usage(h)
	if err != nil {
		return 0, 0, nil, err
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

// tr31Usage maps a block's TR-31 key usage to posd's, refusing those posd has no use for.
func tr31Usage(h tr31.Header) (Usage, error) {
	switch h.KeyUsage {
	case "P0":
		return UsagePIN, nil
	case "B0":
		return UsageBDK, nil
	case "B1":
		return UsageDUKPT, nil
	case "M0", "M1", "M3", "M6", "M7":
		return UsageMAC, nil
	case "D0":
		return UsageData, nil
	case "K1":
		return UsageKBPK, nil
	}
	return 0, fmt.Errorf("%w: key block usage %s (%s)", ErrUnsupported, h.KeyUsage, tr31.UsageName(h.KeyUsage))
}

// tr31UsageCode is the TR-31 key usage that corresponds to u, for messages.
func tr31UsageCode(u Usage) string {
	switch u {
	case UsagePIN:
		return "P0"
	case UsageBDK:
		return "B0"
	case UsageDUKPT:
		return "B1"
	case UsageMAC:
		return "M0-M7"
	case UsageData:
		return "D0"
	case UsageKBPK:
		return "K1"
	}
	return "?"
}
