package nexo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrTooLarge is returned by ReadBody for a body over MaxBody.
var ErrTooLarge = errors.New("request larger than 64 KiB")

// Body is a till's request body read once and decoded once for every step that looks at
// it: the API's guard (Peek, to tell the request's role) and the handler. ReadBody sets it
// as the request's Body, where the handler finds it; a till's request was decoded three
// times on its way, a twentieth of posd's CPU per sale.
//
// Safe for concurrent use as far as Peek goes (the decoded request is not modified); read
// as an io.Reader, by one goroutine.
type Body struct {
	*bytes.Reader
	raw []byte
	env *Envelope // the decoded body, nil when it did not decode (err says why)
	err error
}

// ReadBody reads r's body (at most MaxBody: ErrTooLarge beyond), decodes it, and sets it as
// r.Body. A body already read by ReadBody is returned as it is. A body that is not a valid
// request is not an error here: Peek tells what it can, and the handler refuses it.
func ReadBody(r *http.Request) (*Body, error) {
	if b, ok := r.Body.(*Body); ok {
		return b, nil
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	if len(raw) > MaxBody {
		return nil, ErrTooLarge
	}
	b := &Body{Reader: bytes.NewReader(raw), raw: raw}
	b.env, b.err = decodeEnvelope(raw)
	r.Body = b
	return b, nil
}

// Close does nothing: the server closes the connection's body.
func (b *Body) Close() error { return nil }

// Peek is PeekRequest of the body, from the decoded request when it decoded.
func (b *Body) Peek() Peek {
	if b.env == nil || b.env.Request == nil {
		return PeekRequest(b.raw)
	}
	req := b.env.Request
	pr := req.PaymentRequest
	return Peek{SaleID: req.MessageHeader.SaleID, Category: req.MessageHeader.MessageCategory,
		Refund: pr != nil && pr.PaymentData != nil && pr.PaymentData.PaymentType == "Refund"}
}

// category is Category of the body, from the decoded request when it decoded.
func (b *Body) category() string {
	if b.env == nil || b.env.Request == nil {
		return Category(b.raw)
	}
	return b.env.Request.MessageHeader.MessageCategory
}

// payment is DecodePayment of the body, without decoding it again.
func (b *Body) payment(poiid string) (Payment, error) {
	if b.err != nil {
		return Payment{}, b.err
	}
	return decodePayment(b.env, poiid)
}
