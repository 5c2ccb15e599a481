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
	return c.mac.SignMessage(ctx, c.macer, *c.macKey.Load(), wire)
}

// received returns what a request's wait ended with, after checking the response's MAC
// when the dialect MACs it. A response without a MAC that verifies is not a response: its
// request's outcome is unknown (the caller reverses it).
func (c *Client) received(ctx context.Context, r result) (*Message, error) {
	if r.err != nil || c.mac == nil {
		return r.msg, r.err
	}
	if err := c.mac.VerifyMessage(ctx, c.macer, *c.macKey.Load(), r.msg, r.raw); err != nil {
		c.stats.badMACs.Add(1)
		c.logf("iso8583: response refused, its outcome is unknown: %s: %v", Summary(r.msg), err)
		return nil, unknown(err)
	}
	return r.msg, nil
}

// SetMACKey makes id the MAC key of every request packed from now on, and of every
// response checked from now on: a working-key change switches to the new key this way once
// the host has confirmed it, between two sales. A request already written keeps the key it
// was MACed under; its response, if the host MACs it under the old key and it arrives after
// the switch, fails its check (outcome unknown, reversed), so the caller switches when no
// sale is in flight.
func (c *Client) SetMACKey(id string) { c.macKey.Store(&id) }

// MACKey returns the id of the MAC key in use ("" for the MACer's default).
func (c *Client) MACKey() string { return *c.macKey.Load() }
