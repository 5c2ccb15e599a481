// Package iso8583 is posd's side of the acquirer link: the ISO 8583:1987 dialect as data
// (and other dialects from files), typed requests and responses of the terminal's message
// set, framing, the client that sends requests and matches responses, and masked
// descriptions for people and logs. It does not decide business outcomes: a decline is a
// response like an approval.
//
// # Basics
//
// [DefaultSpec] is the default dialect (ASCII, binary fields as hexadecimal characters, a
// 16-character bitmap); [LoadDialect] reads an acquirer's dialect (moov-io's JSON spec
// format plus its framing, and the fields each request MTI must or must not carry and the
// fixed values the link adds, see [ParseDialect]). The builders make requests on the
// default spec (an Authorization may be built on the link's own, see Authorization.Spec)
// and check them ([CheckMandatory]): [Authorization] (0100, 0200), [Advice] (0220,
// 0221), [Reversal] (0400, 0401, 0420, 0421), [NetworkManagement] (0800: sign-on,
// sign-off, echo) and [Reconciliation] (0500). [Pack] and [Unpack] turn messages into bytes and back, strictly;
// [Convert] moves a message to another dialect. A [Framer] puts them on a stream: a
// 2-byte binary length by default, 4 ASCII digits or 2-byte BCD, with an optional TPDU.
// [Client.Send] sends a request and returns its response:
//
//	c, err := iso8583.NewClient(iso8583.ClientOptions{Addr: "acquirer:8583"})
//	req, err := auth.Message()
//	resp, err := c.Send(ctx, req)
//	switch {
//	case errors.Is(err, iso8583.ErrNotSent):        // nothing left: retrying is safe
//	case errors.Is(err, iso8583.ErrOutcomeUnknown): // the host may have approved: reverse
//	}
//	r, err := iso8583.ParseResponse(resp)           // r.Approved(), r.ResponseCode
//
// The client keeps its link: TCP or TLS (the server's certificate verified, a client
// certificate optional), an optional sign-on on each connection, echoes on an idle link,
// a dead-link timeout, resynchronisation (a frame longer than the dialect's largest message,
// or one that stops coming for ClientOptions.FrameTimeout, drops the connection and dials
// again at once: [ErrOutOfStep]), reconnection with exponential backoff and jitter, a
// bounded window of requests in flight, and [Client.Shutdown]. A response that comes after its request
// gave up goes to ClientOptions.LateResponse: the caller reverses what it approved.
// [Client.Stats] counts frames, malformed frames, late and duplicate responses and
// reconnects.
//
// [Describe], [Summary] and [MarshalJSON] show a message to a person or a log with card
// data masked: PAN as first 6 and last 4 digits, tracks reduced to that, PIN block and
// MACs hidden, field 55 as its EMV tags with the cryptogram and other sensitive tags
// hidden.
//
// # Caveats
//
// Specs are moov-io/iso8583 specs, but messages are posd's own [Message]: values as bytes
// in one buffer, no map and no field objects (a composite field alone is a moov field). A
// value [Message.Bytes] returns is the message's memory: read it, do not change it. moov's
// Spec87ASCII is not this dialect (its bitmap is 32 characters; fields 52 and 64 do not
// round-trip).
//
// Errors never contain a field's value. [*FieldError] names the field; fields with card or
// PIN data hide any detail that does not come from this package. [*DialectError] names the
// setting of a dialect file that cannot be used.
//
// # PIN blocks
//
// A TDES DUKPT PIN block (ISO 9564 format 0) is 8 bytes with a 10-byte KSN; an AES DUKPT
// one (ANSI X9.24-3-2017, format 4) is 16 bytes with a 12-byte KSN. Field 52 of the default
// dialect takes 8 bytes, as ISO 8583:1987 says; iso8583/dialects/aes-pin.json is the same
// dialect with a 16-byte field 52 (32 hexadecimal characters on the wire). An
// [Authorization] built on a dialect whose field 52 does not take its block fails with a
// [*FieldError] naming field 52 and both lengths ([CheckPINFields]); nothing is truncated.
//
// Choices this dialect makes where ISO 8583:1987 leaves room: the KSN of a DUKPT PIN block
// travels in field 62 as hexadecimal characters, 20 or 24 (field 53 is n16); a reconciliation's batch number in field 60, as 6
// digits; the reason for a reversal in field 39 of the request. Wireshark's ISO 8583
// dissector, the independent decoder of the tests, reads fields 86 to 89 as n15 and field
// 53 as n8 where ISO says n16.
package iso8583
