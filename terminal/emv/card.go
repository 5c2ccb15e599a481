package emv

import (
	"fmt"
	"log/slog"

	"github.com/posd-dev/posd/terminal/card"
)

// Cryptogram is the type of application cryptogram a card generated, from
// the top two bits of its Cryptogram Information Data (9F27). It is a plain
// value, safe for concurrent use.
type Cryptogram uint8

// Cryptogram types.
const (
	AAC  Cryptogram = 0 // declined
	TC   Cryptogram = 1 // approved
	ARQC Cryptogram = 2 // online authorization requested
	RFU  Cryptogram = 3 // reserved
)

// String names the cryptogram type.
func (c Cryptogram) String() string {
	switch c {
	case AAC:
		return "AAC"
	case TC:
		return "TC"
	case ARQC:
		return "ARQC"
	}
	return "RFU"
}

// CryptogramType returns the type of cryptogram 9F27 announces.
func (d Data) CryptogramType() (Cryptogram, bool) {
	t, ok := d.find("9F27")
	if !ok || len(t.Value) != 1 {
		return 0, false
	}
	return Cryptogram(t.Value[0] >> 6), true
}

// Card is the card data inside a chip card's EMV data: PAN, track 2
// equivalent, expiry, PAN sequence number. It is sensitive: String, GoString
// and LogValue mask the PAN and never show the track. Card is immutable and
// safe for concurrent use.
type Card struct {
	pan    card.PAN
	track2 card.Track2
	expiry card.Expiry
	psn    string // 2 digits or ""
}

// ExtractCard reads the card data objects: the PAN from 5A (or from 57 when
// 5A is absent), the track 2 equivalent data 57 (optional), the expiry from
// 5F24 (or 57), and the PAN sequence number 5F34 (optional). When both are
// present, 5A and 57 must hold the same PAN and 5F24 and 57 the same expiry
// month (ErrInconsistent). The PAN must pass card.ParsePAN. Errors are
// *TagError values naming the tag, without its value.
func ExtractCard(d Data) (Card, error) {
	var c Card
	if v, ok := d.find("57"); ok {
		s, err := unpackDigits(v.Value, true)
		if err != nil {
			return Card{}, &TagError{Tag: "57", Err: fmt.Errorf("%w: not track 2 equivalent data", ErrFormat)}
		}
		t2, err := card.ParseTrack2(s)
		if err != nil {
			return Card{}, &TagError{Tag: "57", Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}
		c.track2, c.pan, c.expiry = t2, t2.PAN(), t2.Expiry()
	}
	if v, ok := d.find("5A"); ok {
		s, err := unpackDigits(v.Value, false)
		if err != nil {
			return Card{}, &TagError{Tag: "5A", Err: fmt.Errorf("%w: not a compressed numeric PAN", ErrFormat)}
		}
		pan, err := card.ParsePAN(s)
		if err != nil {
			return Card{}, &TagError{Tag: "5A", Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}
		if !c.pan.IsZero() && !c.pan.Equal(pan) {
			return Card{}, &TagError{Tag: "5A", Err: fmt.Errorf("%w: PAN differs from the one in 57", ErrInconsistent)}
		}
		c.pan = pan
	}
	if c.pan.IsZero() {
		return Card{}, &TagError{Tag: "5A", Err: ErrMissingTag}
	}
	if v, ok := d.find("5F24"); ok {
		s, err := bcd(v.Value)
		if err != nil || len(s) != 6 {
			return Card{}, &TagError{Tag: "5F24", Err: fmt.Errorf("%w: not a YYMMDD date", ErrFormat)}
		}
		exp, err := card.ParseExpiry(s[:4])
		if err != nil {
			return Card{}, &TagError{Tag: "5F24", Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}
		if !c.track2.IsZero() && exp != c.expiry {
			return Card{}, &TagError{Tag: "5F24", Err: fmt.Errorf("%w: expiry differs from the one in 57", ErrInconsistent)}
		}
		c.expiry = exp
	}
	if c.expiry == (card.Expiry{}) {
		return Card{}, &TagError{Tag: "5F24", Err: ErrMissingTag}
	}
	if v, ok := d.find("5F34"); ok {
		s, err := bcd(v.Value)
		if err != nil || len(s) != 2 {
			return Card{}, &TagError{Tag: "5F34", Err: fmt.Errorf("%w: not one BCD byte", ErrFormat)}
		}
		c.psn = s
	}
	return c, nil
}

// PAN returns the card number.
func (c Card) PAN() card.PAN { return c.pan }

// Track2 returns the track 2 equivalent data (57), or the zero Track2 when
// the card did not give it.
func (c Card) Track2() card.Track2 { return c.track2 }

// Expiry returns the application expiry month.
func (c Card) Expiry() card.Expiry { return c.expiry }

// PANSequence returns the PAN sequence number as ISO 8583 field 23 carries
// it (3 digits, "001"), and false when the card has none.
func (c Card) PANSequence() (string, bool) {
	if c.psn == "" {
		return "", false
	}
	return "0" + c.psn, true
}

// String returns the masked form.
func (c Card) String() string { return "chip card " + c.pan.Masked() }

// GoString returns the masked form.
func (c Card) GoString() string { return "emv.Card{" + c.String() + "}" }

// LogValue implements slog.LogValuer with the masked form.
func (c Card) LogValue() slog.Value { return slog.StringValue(c.String()) }
