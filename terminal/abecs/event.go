package abecs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DefaultEventTimeout is WaitRequest.Timeout's default.
const DefaultEventTimeout = 60 * time.Second

const (
	waitRequestLen = 4
	padEventLen    = 227
)

// WaitRequest asks the pad to report the first of the events it enables
// (CKE). At least one must be enabled; Insert and Remove exclude each other.
// It is a plain value, safe for concurrent use.
type WaitRequest struct {
	Keys   bool // a key pressed
	Swipe  bool // a magnetic stripe swiped (the tracks are returned)
	Insert bool // a chip card inserted
	Remove bool // the chip card removed (reported at once if no card is in)
	// Timeout is how long the client waits. When it elapses the client
	// cancels the command (CAN) and returns an error matching ErrPadTimeout.
	// It is not sent to the pad. Default DefaultEventTimeout.
	Timeout time.Duration
}

// PadEventKind says what a CKE response reports. It is a plain value, safe
// for concurrent use.
type PadEventKind uint8

// Kinds of CKE events, numbered as on the wire.
const (
	EventKey      PadEventKind = 0
	EventSwipe    PadEventKind = 1
	EventInserted PadEventKind = 2
	EventRemoved  PadEventKind = 3
)

// String names the kind.
func (k PadEventKind) String() string {
	switch k {
	case EventKey:
		return "key"
	case EventSwipe:
		return "swipe"
	case EventInserted:
		return "card inserted"
	case EventRemoved:
		return "card removed"
	}
	return fmt.Sprintf("PadEventKind(%d)", uint8(k))
}

// Key is a pad key code as CKE reports it. It is a plain value, safe for
// concurrent use.
type Key int

// Key codes.
const (
	KeyEnter  Key = 0
	KeyF1     Key = 4
	KeyF2     Key = 5
	KeyF3     Key = 6
	KeyF4     Key = 7
	KeyClear  Key = 8
	KeyCancel Key = 13
)

// String names the key.
func (k Key) String() string {
	switch k {
	case KeyEnter:
		return "ENTER"
	case KeyF1, KeyF2, KeyF3, KeyF4:
		return fmt.Sprintf("F%d", k-KeyF1+1)
	case KeyClear:
		return "CLEAR"
	case KeyCancel:
		return "CANCEL"
	}
	return fmt.Sprintf("key %02d", int(k))
}

// PadEvent is the event a CKE response reports. For a swipe, Card holds the
// tracks: String, GoString and LogValue mask them. It is immutable and safe
// for concurrent use.
type PadEvent struct {
	Kind PadEventKind
	Key  Key      // EventKey only
	Card CardData // EventSwipe only: a magnetic stripe card
}

// String describes the event with the PAN masked.
func (e PadEvent) String() string {
	switch e.Kind {
	case EventKey:
		return "key " + e.Key.String()
	case EventSwipe:
		return "swipe " + e.Card.MaskedPAN()
	}
	return e.Kind.String()
}

// GoString returns the masked description.
func (e PadEvent) GoString() string { return "abecs.PadEvent{" + e.String() + "}" }

// LogValue implements slog.LogValuer with the masked description.
func (e PadEvent) LogValue() slog.Value { return slog.StringValue(e.String()) }

func (r WaitRequest) validate() error {
	if !r.Keys && !r.Swipe && !r.Insert && !r.Remove {
		return errors.New("no event enabled")
	}
	if r.Insert && r.Remove {
		return errors.New("insert and remove cannot be awaited together")
	}
	return nil
}

func bit(b bool) byte {
	if b {
		return '1'
	}
	return '0'
}

// AppendWaitRequest appends the CKE command block for r.
func AppendWaitRequest(dst []byte, r WaitRequest) ([]byte, error) {
	if err := r.validate(); err != nil {
		return dst, fmt.Errorf("abecs: CKE: %w", err)
	}
	icc := byte('0')
	switch {
	case r.Insert:
		icc = '1'
	case r.Remove:
		icc = '2'
	}
	return append(dst, bit(r.Keys), bit(r.Swipe), icc, '0'), nil
}

// ParseWaitRequest parses a CKE command block. Timeout is left zero.
func ParseWaitRequest(block []byte) (WaitRequest, error) {
	if len(block) != waitRequestLen {
		return WaitRequest{}, fmt.Errorf("%w: CKE block is %d bytes, want %d", ErrFormat, len(block), waitRequestLen)
	}
	for i, c := range block {
		if c != '0' && c != '1' && !(i == 2 && c == '2') {
			return WaitRequest{}, fmt.Errorf("%w: CKE flag %d is not valid", ErrFormat, i+1)
		}
	}
	r := WaitRequest{Keys: block[0] == '1', Swipe: block[1] == '1', Insert: block[2] == '1', Remove: block[2] == '2'}
	if err := r.validate(); err != nil {
		return WaitRequest{}, fmt.Errorf("%w: CKE: %v", ErrFormat, err)
	}
	return r, nil
}

// AppendPadEvent appends the CKE response block for e. A swipe's tracks
// must fit (track 1 76, track 2 37 characters, printable ASCII).
func AppendPadEvent(dst []byte, e PadEvent) ([]byte, error) {
	if e.Kind > EventRemoved {
		return dst, fmt.Errorf("abecs: CKE: event kind %d is not 0-3", e.Kind)
	}
	if e.Key < 0 || e.Key > 99 {
		return dst, fmt.Errorf("abecs: CKE: key code %d is not 0-99", e.Key)
	}
	var t1, t2 string
	if e.Kind == EventSwipe {
		t1, t2 = e.Card.Track1(), e.Card.Track2()
	}
	for _, t := range []struct {
		name, v string
		w       int
	}{{"track 1", t1, 76}, {"track 2", t2, 37}} {
		if len(t.v) > t.w || !printable(t.v) {
			return dst, fmt.Errorf("abecs: CKE: %s must be at most %d printable characters", t.name, t.w)
		}
	}
	dst = append(dst, '0'+byte(e.Kind))
	dst = appendNum(dst, int(e.Key), 2)
	dst = appendNum(dst, len(t1), 2)
	dst = appendText(dst, t1, 76)
	dst = appendNum(dst, len(t2), 2)
	dst = appendText(dst, t2, 37)
	dst = appendNum(dst, 0, 3)
	return appendText(dst, "", 104), nil
}

// ParsePadEvent parses a CKE response block.
func ParsePadEvent(block []byte) (PadEvent, error) {
	if len(block) < padEventLen || !printable(string(block[:padEventLen])) {
		return PadEvent{}, fmt.Errorf("%w: CKE response must be %d printable characters", ErrFormat, padEventLen)
	}
	if block[0] < '0' || block[0] > '3' {
		return PadEvent{}, fmt.Errorf("%w: CKE event is not 0-3", ErrFormat)
	}
	e := PadEvent{Kind: PadEventKind(block[0] - '0')}
	key, ok := parseNum(block[1:3])
	if !ok {
		return PadEvent{}, fmt.Errorf("%w: CKE key code is not 2 digits", ErrFormat)
	}
	l1, ok1 := parseNum(block[3:5])
	l2, ok2 := parseNum(block[81:83])
	if !ok1 || !ok2 || l1 > 76 || l2 > 37 {
		return PadEvent{}, fmt.Errorf("%w: CKE track length is not valid", ErrFormat)
	}
	switch e.Kind {
	case EventKey:
		e.Key = Key(key)
	case EventSwipe:
		e.Card = NewMagstripeCard(string(block[5:5+l1]), string(block[83:83+l2]))
	}
	return e, nil
}

// WaitEvent waits for the first event req enables (CKE): a key, a swipe, a
// chip card inserted or removed. When req.Timeout elapses first it cancels
// the pad and returns an error matching ErrPadTimeout.
func (c *Client) WaitEvent(ctx context.Context, req WaitRequest) (PadEvent, error) {
	if req.Timeout <= 0 {
		req.Timeout = DefaultEventTimeout
	}
	block, err := AppendWaitRequest(nil, req)
	if err != nil {
		return PadEvent{}, err
	}
	resp, err := c.do(ctx, Command{ID: CmdEvent, Blocks: [][]byte{block}}, req.Timeout, ErrPadTimeout)
	if err != nil {
		return PadEvent{}, err
	}
	if len(resp.Blocks) != 1 {
		return PadEvent{}, cmdErrorf(CmdEvent, "response has %d blocks, want 1: %w", len(resp.Blocks), ErrBadResponse)
	}
	ev, err := ParsePadEvent(resp.Blocks[0])
	if err != nil {
		return PadEvent{}, cmdErrorf(CmdEvent, "%w: %w", ErrBadResponse, err)
	}
	return ev, nil
}
