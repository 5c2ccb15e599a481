package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"

	"github.com/posd-dev/posd/hsm"
	"github.com/posd-dev/posd/terminal/card"
)

// panHashKeyID is the id of the key (AES, MAC usage) that makes the journal's keyed PAN
// hashes, beside the data key in the same backend.
const panHashKeyID = "pan-hash"

// panHashDomain separates posd's PAN hashes from any other MAC under the same key, and
// names their version: 2 hashes the PAN and the expiry (version 1, the PAN alone, let
// whoever held a masked PAN find the card by trying about 10^5 middles).
const panHashDomain = "posd/pan-hash/2:"

// softPANHashKey derives the soft backend's PAN-hash key from its data key file.
func softPANHashKey(fileKey []byte) []byte {
	h := hmac.New(sha256.New, fileKey)
	h.Write([]byte("posd soft backend: pan-hash key"))
	return h.Sum(nil)
}

// panHasher returns the function that makes a journal record's PAN hash: a CMAC of the PAN
// and its expiry under the pan-hash key, which never leaves the backend, so that the hash cannot be
// brute-forced from the masked PAN beside it (a masked PAN leaves about 10^5 candidates)
// without the token. The hash is written with the letters a-p (one per hex digit, "h1."
// first), so that nothing can take it for a card number. It returns nil, and says why at
// warning level, when the backend has no such key: records then carry no hash.
func panHasher(ctx context.Context, m *hsm.Module, log *slog.Logger) func(context.Context, card.PAN, card.Expiry) (string, error) {
	if m == nil {
		return nil
	}
	if _, err := m.KeyInfo(ctx, panHashKeyID); err != nil {
		log.Warn("no PAN-hash key: journal records carry no keyed PAN hash, and posctl journal find cannot find a card's sales; load an AES key with MAC usage as \"pan-hash\" (posd key import)", "err", err)
		return nil
	}
	return func(ctx context.Context, pan card.PAN, expiry card.Expiry) (string, error) {
		if pan.IsZero() || expiry.YYMM() == "" {
			return "", errors.New("pan hash: no PAN or expiry")
		}
		mac, err := m.MAC(ctx, panHashKeyID, []byte(panHashDomain+pan.Digits()+"="+expiry.YYMM()))
		if err != nil {
			return "", fmt.Errorf("pan hash: %w", err)
		}
		return letterHash(mac), nil
	}
}

// letterHash writes b as "h1." and one letter a-p per hexadecimal digit: no digits at all.
func letterHash(b []byte) string {
	out := make([]byte, 0, 3+2*len(b))
	out = append(out, "h1."...)
	for _, c := range b {
		out = append(out, 'a'+c>>4, 'a'+c&0x0f)
	}
	return string(out)
}
