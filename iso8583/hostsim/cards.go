package hostsim

// The card table: test cards, their PINs and balances.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/posd-dev/posd/hsm/pinblock"
	"github.com/posd-dev/posd/terminal/card"
)

// Card is one test card. Its String and LogValue show the PAN masked and never the PIN.
// A Card is a plain value: safe for concurrent use if not modified. The Server keeps its
// own copies.
type Card struct {
	PAN          string `json:"pan"`           // 12 to 19 digits, Luhn-valid
	PIN          string `json:"pin,omitempty"` // 4 to 12 digits; empty: the card has no PIN
	BalanceMinor int64  `json:"balance_minor"` // available funds in minor units
	Expiry       string `json:"expiry"`        // YYMM
	Blocked      bool   `json:"blocked,omitempty"`
	// PartialApproval: a debit above the balance is approved for the balance with 10
	// (approved for a partial amount, the amount in field 4 of the response) instead of
	// declined with 51, as prepaid and gift cards are. A balance of 0 still gets 51.
	PartialApproval bool `json:"partial_approval,omitempty"`
}

// String returns the card with its PAN masked and without its PIN.
func (c Card) String() string {
	return fmt.Sprintf("%s expiry=%s balance=%d blocked=%t", card.MaskPAN(c.PAN), c.Expiry, c.BalanceMinor, c.Blocked)
}

// LogValue implements slog.LogValuer like String.
func (c Card) LogValue() slog.Value { return slog.StringValue(c.String()) }

// DefaultCards returns the demo's test cards (public test numbers, all Luhn-valid):
//
//	4761739001010010  PIN 1234  balance 1,000,000.00  expiry 3012  approves
//	5413330089020011  PIN 1234  balance 5.00          expiry 3012  51 above 5.00
//	4000000000000002  blocked                                      14
//
// Any other Luhn-valid PAN is declined with 14.
func DefaultCards() []Card {
	return []Card{
		{PAN: "4761739001010010", PIN: "1234", BalanceMinor: 1_000_000_00, Expiry: "3012"},
		{PAN: "5413330089020011", PIN: "1234", BalanceMinor: 5_00, Expiry: "3012"},
		{PAN: "4000000000000002", PIN: "1234", BalanceMinor: 1_000_00, Expiry: "3012", Blocked: true},
	}
}

// ReadCards decodes a JSON array of cards (fields pan, pin, balance_minor, expiry, blocked),
// refusing unknown fields, and checks each card as NewServer would.
func ReadCards(r io.Reader) ([]Card, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var cards []Card
	if err := dec.Decode(&cards); err != nil {
		return nil, fmt.Errorf("hostsim: read cards: %w", err)
	}
	if dec.More() {
		return nil, errors.New("hostsim: read cards: data after the JSON array")
	}
	if err := checkCards(cards); err != nil {
		return nil, err
	}
	return cards, nil
}

func checkCards(cards []Card) error {
	seen := make(map[string]bool, len(cards))
	for i, c := range cards {
		if _, err := card.ParsePAN(c.PAN); err != nil {
			return fmt.Errorf("hostsim: card %d: %w", i, err)
		}
		if seen[c.PAN] {
			return fmt.Errorf("hostsim: card %d: PAN %s listed twice", i, card.MaskPAN(c.PAN))
		}
		seen[c.PAN] = true
		if c.PIN != "" {
			if _, err := pinblock.EncodeFormat0(c.PIN, c.PAN); err != nil {
				return fmt.Errorf("hostsim: card %d: %w", i, err)
			}
		}
		if _, err := card.ParseExpiry(c.Expiry); err != nil {
			return fmt.Errorf("hostsim: card %d: %w", i, err)
		}
		if c.BalanceMinor < 0 {
			return fmt.Errorf("hostsim: card %d: negative balance", i)
		}
	}
	return nil
}

// Balance returns the current balance of a card in the table, and whether it is there.
func (s *Server) Balance(pan string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cards[pan]
	if c == nil {
		return 0, false
	}
	return c.BalanceMinor, true
}
