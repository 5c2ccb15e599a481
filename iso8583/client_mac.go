package iso8583

// The link's MACs: requests are MACed as they are packed, responses checked on the
// goroutine of the Send that waits for them (never on the connection's reader).

import "context"

// pack packs wire for the wire: with its MAC when the dialect MACs its MTI. wire is not
// changed.
func (c *Client) pack(ctx context.Context, wire *Message) ([]byte, error) {
	if c.mac == nil {
		return Pack(wire)
	}
	return c.mac.SignMessage(ctx, c.macer, c.macKey, wire)
}

// received returns what a request's wait ended with, after checking the response's MAC
// when the dialect MACs it. A response without a MAC that verifies is not a response: its
// request's outcome is unknown (the caller reverses it).
func (c *Client) received(ctx context.Context, r result) (*Message, error) {
	if r.err != nil || c.mac == nil {
		return r.msg, r.err
	}
	if err := c.mac.VerifyMessage(ctx, c.macer, c.macKey, r.msg, r.raw); err != nil {
		c.stats.badMACs.Add(1)
		c.logf("iso8583: response refused, its outcome is unknown: %s: %v", Summary(r.msg), err)
		return nil, unknown(err)
	}
	return r.msg, nil
}
