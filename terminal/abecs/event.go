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
	// padEventLen is CKE_EVENT N1, CKE_KEY N2, tracks 1-3 (N2+A76, N2+A37, N3+A104);
	// CKE_ICCSTAT N1 and CKE_CTLSSTAT N1 follow (padEventFullLen).
	padEventLen     = 227
	padEventFullLen = padEventLen + 2
)

// WaitRequest asks the pad to report the first of the events it enables
// (CKE, ABECS §3.3.3). At least one must be enabled; Insert and Remove exclude
// each other. It is a plain value, safe for concurrent use.
type WaitRequest struct {
	Keys   bool // a key pressed
	Swipe  bool // a magnetic stripe swiped (the tracks are returned)
	Insert bool // a chip card inserted
	Remove bool // the chip card removed (reported at once if no card is in)
	// Contactless powers the pad's antenna and looks for a contactless card
	// (the optional 4th flag CKE_CTLS = "1"): the pad answers EventTapped when
	// one is in the field, EventNoTap when none came within 2 minutes. The
	// card is not read: a GCR with contactless on reads it. Only for a pad
	// with a contactless reader (Info.Contactless); default false. posd's
	// sale does not use it: it waits for a card with GCR, contactless on,
	// which reads the tap in the same command. It is for a host that
	// watches the reader before it knows the amount (an idle screen that
	// starts a sale on a tap, then GCR), as CKE with Insert is for a chip.
	Contactless bool
	// Timeout is how long the client waits. When it elapses the client
	// cancels the command (CAN) and returns an error matching ErrPadTimeout.
	// It is not sent to the pad. Default DefaultEventTimeout.
	Timeout time.Duration
}

// PadEventKind says what a CKE response reports. It is a plain value, safe
// for concurrent use.
type PadEventKind uint8

// Kinds of CKE events. On the wire (CKE_EVENT) a key is "0", a swipe "1", a
// chip card inserted or removed "2" with CKE_ICCSTAT "1" or "0", and a
// contactless event "3" with CKE_CTLSSTAT "1" (card detected) or "0" (none in
// 2 minutes).
const (
	EventKey      PadEventKind = 0
	EventSwipe    PadEventKind = 1
	EventInserted PadEventKind = 2
	EventRemoved  PadEventKind = 3
	EventTapped   PadEventKind = 4 // a contactless card detected in the field
	EventNoTap    PadEventKind = 5 // no contactless card detected in 2 minutes
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
	case EventTapped:
		return "contactless card detected"
	case EventNoTap:
		return "no contactless card"
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
	if !r.Keys && !r.Swipe && !r.Insert && !r.Remove && !r.Contactless {
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
	return append(dst, bit(r.Keys), bit(r.Swipe), icc, bit(r.Contactless)), nil
}

// ParseWaitRequest parses a CKE command block: 4 flags, or 3 without the
// optional CKE_CTLS (contactless off). Timeout is left zero.
func ParseWaitRequest(block []byte) (WaitRequest, error) {
	if len(block) != waitRequestLen && len(block) != waitRequestLen-1 {
		return WaitRequest{}, fmt.Errorf("%w: CKE block is %d bytes, want %d or %d", ErrFormat, len(block), waitRequestLen-1, waitRequestLen)
	}
	for i, c := range block {
		if c != '0' && c != '1' && !(i == 2 && c == '2') {
			return WaitRequest{}, fmt.Errorf("%w: CKE flag %d is not valid", ErrFormat, i+1)
		}
	}
	r := WaitRequest{Keys: block[0] == '1', Swipe: block[1] == '1', Insert: block[2] == '1', Remove: block[2] == '2'}
	r.Contactless = len(block) == waitRequestLen && block[3] == '1'
	if err := r.validate(); err != nil {
		return WaitRequest{}, fmt.Errorf("%w: CKE: %v", ErrFormat, err)
	}
	return r, nil
}

// AppendPadEvent appends the CKE response block for e: CKE_EVENT, CKE_KEY,
// the three tracks, CKE_ICCSTAT and CKE_CTLSSTAT. A swipe's tracks must fit
// (track 1 76, track 2 37 characters, printable ASCII).
func AppendPadEvent(dst []byte, e PadEvent) ([]byte, error) {
	if e.Kind > EventNoTap {
		return dst, fmt.Errorf("abecs: CKE: event kind %d is not 0-5", e.Kind)
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
	event, icc, ctls := '0'+byte(e.Kind), byte('0'), byte('0')
	switch e.Kind {
	case EventInserted:
		event, icc = '2', '1'
	case EventRemoved:
		event = '2'
	case EventTapped:
		event, ctls = '3', '1'
	case EventNoTap:
		event = '3'
	}
	dst = append(dst, event)
	dst = appendNum(dst, int(e.Key), 2)
	dst = appendNum(dst, len(t1), 2)
	dst = appendText(dst, t1, 76)
	dst = appendNum(dst, len(t2), 2)
	dst = appendText(dst, t2, 37)
	dst = appendNum(dst, 0, 3)
	dst = appendText(dst, "", 104)
	return append(dst, icc, ctls), nil
}

// ParsePadEvent parses a CKE response block. CKE_ICCSTAT and CKE_CTLSSTAT
// are required for an ICC (2) or contactless (3) event; a key or swipe may
// end after the tracks.
func ParsePadEvent(block []byte) (PadEvent, error) {
	if len(block) < padEventLen || !printable(string(block[:padEventLen])) {
		return PadEvent{}, fmt.Errorf("%w: CKE response must be %d printable characters", ErrFormat, padEventLen)
	}
	if block[0] < '0' || block[0] > '3' {
		return PadEvent{}, fmt.Errorf("%w: CKE event is not 0-3", ErrFormat)
	}
	e := PadEvent{Kind: PadEventKind(block[0] - '0')} // key 0, swipe 1
	if w := block[0]; w == '2' || w == '3' {
		if len(block) < padEventFullLen {
			return PadEvent{}, fmt.Errorf("%w: CKE event %c without CKE_ICCSTAT and CKE_CTLSSTAT", ErrFormat, w)
		}
		name, stat, on, off := "CKE_ICCSTAT", block[padEventLen], EventInserted, EventRemoved
		if w == '3' {
			name, stat, on, off = "CKE_CTLSSTAT", block[padEventLen+1], EventTapped, EventNoTap
		}
		switch stat {
		case '1':
			e.Kind = on
		case '0':
			e.Kind = off
		default:
			return PadEvent{}, fmt.Errorf("%w: CKE event %c: %s is not 0 or 1", ErrFormat, w, name)
		}
	}
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
// chip card inserted or removed, a contactless card in the field or none
// within 2 minutes. When req.Timeout elapses first it cancels
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
