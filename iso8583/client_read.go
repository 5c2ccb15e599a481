package iso8583

// Reading frames and matching responses to the requests that wait for them.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
)

// recentSize is how many finished requests the client remembers, to tell a late response
// (its request gave up: reverse) from a duplicate (already answered: ignore).
const recentSize = 4096

// matchKey identifies the response a request waits for: the response MTI, field 11 as sent
// and field 41 without its space padding. It holds them in arrays, so that making one and
// keeping it (the recent set holds thousands) costs no memory of its own; values longer than
// the arrays (a dialect's unusual field 11 or 41) go into long instead.
type matchKey struct {
	mti         [4]byte
	nstan, ntid uint8
	stan        [12]byte
	tid         [16]byte
	long        string // "mti\x00stan\x00tid" when a part does not fit its array; then the arrays are empty
}

// newMatchKey returns the key of a response mti for the request of field 11 stan and
// field 41 tid (without its padding).
func newMatchKey(mti, stan, tid string) matchKey {
	var k matchKey
	if len(mti) != len(k.mti) || len(stan) > len(k.stan) || len(tid) > len(k.tid) {
		k.long = mti + "\x00" + stan + "\x00" + tid
		return k
	}
	copy(k.mti[:], mti)
	k.nstan, k.ntid = uint8(copy(k.stan[:], stan)), uint8(copy(k.tid[:], tid))
	return k
}

// parts returns the key's MTI, STAN and terminal id.
func (k matchKey) parts() (mti, stan, tid string) {
	if k.long != "" {
		mti, rest, _ := strings.Cut(k.long, "\x00")
		stan, tid, _ := strings.Cut(rest, "\x00")
		return mti, stan, tid
	}
	return string(k.mti[:]), string(k.stan[:k.nstan]), string(k.tid[:k.ntid])
}

func (k matchKey) String() string {
	mti, stan, tid := k.parts()
	return mti + " stan=" + stan + " tid=" + tid
}

// requestKey returns the key of the response req waits for.
func requestKey(req *Message) (matchKey, error) {
	if req == nil {
		return matchKey{}, errors.New("iso8583: nil request")
	}
	mti, err := req.GetMTI()
	if err != nil {
		return matchKey{}, &FieldError{Field: 0, Op: "pack", Err: err}
	}
	resp, err := ResponseMTI(mti)
	if err != nil {
		return matchKey{}, &FieldError{Field: 0, Op: "pack", Err: err}
	}
	stan, err := req.text(11)
	if err != nil || stan == "" {
		return matchKey{}, &FieldError{Field: 11, Op: "pack", Err: fmt.Errorf("%w: needed to match the response", ErrMissingField)}
	}
	tid, err := req.text(41)
	if err != nil {
		return matchKey{}, &FieldError{Field: 41, Op: "pack", Err: err}
	}
	return newMatchKey(resp, stan, strings.TrimRight(tid, " ")), nil
}

type result struct {
	msg *Message
	raw []byte // msg as it came (without framing), for its MAC; never reused
	err error
}

// pending is where a request's result comes: buffered, so the reader never blocks on it.
type pending chan result

// recentSet remembers the last finished requests: answered, or given up.
type recentSet struct {
	state map[matchKey]bool // true: answered
	ring  []matchKey
	next  int
}

func (r *recentSet) put(k matchKey, answered bool) {
	if r.state == nil {
		r.state = make(map[matchKey]bool, recentSize)
		r.ring = make([]matchKey, recentSize)
	}
	if _, ok := r.state[k]; !ok {
		if old := r.ring[r.next]; old != (matchKey{}) {
			delete(r.state, old)
		}
		r.ring[r.next] = k
		r.next = (r.next + 1) % len(r.ring)
	}
	r.state[k] = answered
}

// readLoop reads the frames of l until it fails, and hands each to deliver. A frame that
// cannot be read in step (see [ErrOutOfStep]) drops the connection at once; the client
// dials again without waiting for a backoff.
func (c *Client) readLoop(l *link) {
	defer c.bg.Done()
	defer close(l.readerDone)
	fr := &frameReader{br: l.br, nc: l.nc, timeout: c.frameTimeout}
	for {
		b, err := fr.frame(c.readFramer)
		if err != nil {
			if outOfStep(err) {
				err = fmt.Errorf("%w: %w", ErrOutOfStep, err)
			}
			select {
			case <-l.done: // closed on purpose
			default:
				if errors.Is(err, ErrOutOfStep) {
					c.stats.outOfStep.Add(1)
				}
				c.logf("iso8583: connection to %s lost: %v", c.addr, err)
			}
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("iso8583: host closed the connection: %w", err)
			}
			c.drop(l, err)
			return
		}
		l.lastRecv.Store(c.mono())
		c.stats.framesIn.Add(1)
		if len(b) == 0 {
			continue
		}
		var msg *Message
		if c.ownFrames {
			// The frame is this read's own memory, kept as the response's raw form: the
			// message keeps it too (its capacity capped: decoded values go elsewhere).
			msg, err = unpackOwned(c.spec, b[:len(b):len(b)])
		} else {
			msg, err = unpack(c.spec, b)
		}
		if err != nil {
			c.stats.malformed.Add(1)
			c.logf("iso8583: unreadable frame of %d bytes: %v", len(b), err)
			c.failMalformed(msg, err)
			continue
		}
		c.deliver(l, msg, b)
	}
}

// outOfStep reports whether a frame read failed in a way that leaves the stream unreadable
// while the connection itself may still be up: a length header out of range or not a
// length, or a frame that stopped coming.
func outOfStep(err error) bool {
	return errors.Is(err, ErrFrameSize) || errors.Is(err, ErrFrameHeader) || errors.Is(err, os.ErrDeadlineExceeded)
}

// frameReader is what a framer reads one frame from: once the first byte of a frame has
// come, the rest must come within timeout. Between frames a read waits for as long as it
// takes (an idle link is watched by keepalive). The deadline is set only when a read of a
// started frame would wait for the network, so a frame already buffered costs nothing.
type frameReader struct {
	br      *bufio.Reader
	nc      net.Conn
	timeout time.Duration
	started bool // a byte of the current frame has been read
	armed   bool // nc's read deadline is set
}

// frame reads one frame with f.
func (r *frameReader) frame(f Framer) ([]byte, error) {
	b, err := f.ReadFrame(r)
	r.started = false
	if r.armed {
		r.armed = false
		if derr := r.nc.SetReadDeadline(time.Time{}); derr != nil && err == nil {
			err = fmt.Errorf("iso8583: read frame: %w", derr)
		}
	}
	return b, err
}

func (r *frameReader) Read(p []byte) (int, error) {
	if r.started && !r.armed && r.br.Buffered() == 0 {
		if err := r.nc.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
			return 0, err
		}
		r.armed = true
	}
	n, err := r.br.Read(p)
	if n > 0 {
		r.started = true
	}
	return n, err
}

// limitFramer returns f with its maximum lowered to the largest message spec can unpack,
// when f is one of this package's framers and spec's largest message can be computed; else
// f itself. A length header stating more is then refused as soon as it is read.
func limitFramer(f Framer, spec *MessageSpec) Framer {
	limit, ok := maxMessageLen(spec)
	if !ok {
		return f
	}
	switch lf := f.(type) {
	case BinaryLengthFramer:
		lf.MaxFrame = min(lf.max(), limit)
		return lf
	case LengthFramer:
		if lf.check() != nil {
			return f // its ReadFrame reports what is wrong
		}
		lf.MaxFrame = min(lf.max(), limit)
		return lf
	}
	return f
}

// maxMessageLen returns the length of the largest message spec can unpack: the MTI, a
// primary and a secondary bitmap, and every field [Unpack] accepts at its longest on the
// wire. It reports
// false when a field is not one whose longest form this package knows (a field of a spec
// not made by [DefaultSpec] or [ParseDialect]).
func maxMessageLen(spec *MessageSpec) (int, bool) {
	if spec == nil {
		return 0, false
	}
	total := 0
	for id, f := range spec.Fields {
		if id == 65 || id > maxField {
			continue // Unpack refuses them
		}
		if f == nil {
			return 0, false
		}
		fs := f.Spec()
		if fs == nil {
			return 0, false
		}
		if _, ok := f.(*field.Bitmap); ok {
			per := 0
			switch fs.Enc {
			case encoding.Binary:
				per = fs.Length
			case encoding.BytesToASCIIHex:
				per = 2 * fs.Length
			default:
				return 0, false
			}
			total += 2 * per // the secondary bitmap too; a tertiary one is refused
			continue
		}
		c, ok := fs.Packer.(codec)
		if !ok {
			return 0, false
		}
		total += c.maxWireLen(fs.Length)
	}
	return total, true
}

// maxWireLen returns the most bytes a field of this codec and spec length takes on the
// wire, length prefix included.
func (c codec) maxWireLen(length int) int {
	if c.fixed() {
		return c.wireLen(length)
	}
	if c.class == classB && c.enc == encHex && c.countChars {
		n := min(length, c.maxPrefix())
		return c.prefixLen() + n - n%2 // whole bytes: an odd count is refused
	}
	return c.prefixLen() + c.wireLen(min(length, c.maxPrefix()))
}

// failMalformed ends the request a broken response was meant for, if the fields read
// before the error (MTI, STAN and, when it came that far, terminal id) single it out.
func (c *Client) failMalformed(partial *Message, cause error) {
	if partial == nil {
		return
	}
	mti, _ := partial.text(0)
	stan, _ := partial.text(11)
	if mti == "" || stan == "" {
		return
	}
	tid, _ := partial.text(41)
	tid = strings.TrimRight(tid, " ")
	c.mu.Lock()
	var key matchKey
	var p pending
	for k, q := range c.pending {
		if kmti, kstan, ktid := k.parts(); kmti == mti && kstan == stan && (tid == "" || ktid == tid) {
			if p != nil {
				p = nil // ambiguous: let the requests time out
				break
			}
			key, p = k, q
		}
	}
	if p != nil {
		delete(c.pending, key)
		c.recent.put(key, false)
	}
	c.mu.Unlock()
	if p != nil {
		c.logf("iso8583: the unreadable frame answers %s: its outcome is unknown", key)
		p <- result{err: unknown(fmt.Errorf("%w: %w", ErrMalformedResponse, cause))}
	}
}

func (c *Client) deliver(l *link, msg *Message, raw []byte) {
	mti, _ := msg.GetMTI()
	// A request or an advice from the host (function digit 0 or 2). The digit is looked at
	// first so that a response, the usual case, costs no error value.
	if len(mti) == 4 && (mti[2] == '0' || mti[2] == '2') && isRequestMTI(mti) {
		if mti == MTINetworkManagementRequest {
			c.hostKeyChange(msg)
			c.answerEcho(l, msg)
			return
		}
		c.logf("iso8583: ignored a request from the host: %s", Masked{msg})
		return
	}
	stan, _ := msg.text(11)
	tid, _ := msg.text(41)
	key := newMatchKey(mti, stan, strings.TrimRight(tid, " "))
	c.mu.Lock()
	p := c.pending[key]
	answered, known := c.recent.state[key]
	if p != nil {
		delete(c.pending, key)
	}
	if p != nil || known {
		c.recent.put(key, true)
	}
	c.mu.Unlock()
	switch {
	case p != nil:
		if c.tracing {
			c.logf("iso8583: recv %s", Masked{msg})
		}
		p <- result{msg: msg, raw: raw}
		return
	case known && answered:
		c.stats.duplicates.Add(1)
		c.logf("iso8583: duplicate response ignored: %s", Masked{msg})
		return
	case known:
		c.stats.late.Add(1)
		c.logf("iso8583: late response: %s", Masked{msg})
	default:
		c.stats.unmatched.Add(1)
		c.logf("iso8583: unmatched response: %s", Masked{msg})
	}
	if c.late != nil && !strings.HasPrefix(mti, "08") {
		c.late(msg)
	}
}

// isRequestMTI reports whether mti is one a response answers ([ResponseMTI]).
func isRequestMTI(mti string) bool {
	_, err := ResponseMTI(mti)
	return err == nil
}
