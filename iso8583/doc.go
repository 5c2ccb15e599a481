// Package iso8583 is posd's side of the acquirer link: the ISO 8583:1987 dialect as data,
// typed requests and responses of the sale spine, framing, the client that sends requests
// and matches responses, and masked descriptions for people and logs. It does not decide
// business outcomes: a decline is a response like an approval.
//
// # Basics
//
// [DefaultSpec] is the dialect (ASCII, binary fields as hexadecimal characters, a 16-character
// bitmap). [Authorization.Message] builds an 0100 or 0200 and checks it; [Pack] and [Unpack]
// turn messages into bytes and back, strictly; [Framer] puts them on a stream (default
// [BinaryLengthFramer], a 2-byte big-endian length). [Client.Send] sends a request and
// returns its response:
//
//	c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583"})
//	req, err := auth.Message()
//	resp, err := c.Send(ctx, req)
//	switch {
//	case errors.Is(err, iso8583.ErrNotSent):        // nothing left: retrying is safe
//	case errors.Is(err, iso8583.ErrOutcomeUnknown): // the host may have approved: reverse
//	}
//	r, err := iso8583.ParseAuthResponse(resp)       // r.Approved(), r.ResponseCode
//
// [Describe] and [Summary] show a message to a person or a log with card data masked.
//
// # Caveats
//
// Messages are moov-io/iso8583 messages, but some of that library's methods must not be
// used on posd's messages: Message.Unpack accepts trailing bytes silently (use [Unpack]);
// Message.Pack does not name failing fields in a typed error (use [Pack]); moov's Describe
// and json.Marshal of a message show card data (use [Describe] or [Summary]); its
// Spec87ASCII is not this dialect.
//
// Errors never contain a field's value. [*FieldError] names the field; fields with card or
// PIN data hide any detail that does not come from this package.
//
// Not yet here: TLS, echo (0800/0810) on idle links, reconnect backoff, a window on
// requests in flight, and the other message types (0220, 0400, 0420, 0500, 0800). The
// client's structure (one link, one reader, a pending table keyed by response MTI) is meant
// to take them.
package iso8583
