// Package magstripe reads magnetic stripe card readers that send the tracks
// as ASCII on a serial line, as MagTek and ID TECH readers do in their
// serial (and keyboard-like) output modes.
//
// # Format
//
// One swipe is one record:
//
//	[STX | ESC] [%track1?] [;track2?] [+track3? | ;track3?] (CR | ETX)
//
// Track 1 holds characters 0x20-0x5F (at most 76 between its sentinels),
// tracks 2 and 3 characters 0x30-0x3F (at most 37 and 104). A reader sends E
// between the sentinels of a track it could not read (%E?, ;E?, +E?), and
// some send a lone E for a swipe with nothing readable. Spaces and line feeds
// around the tracks are ignored; anything else is a malformed record.
// Readers set to append an LRC character after each end sentinel are not
// supported: configure them without it.
//
// [Parse] reads one record; [Reader] reads records from a serial port and
// implements the terminal's CardReader.
//
// # Sensitive data
//
// Tracks never appear in errors or in the String, GoString or LogValue of
// any type here; PANs are masked to their first 6 and last 4 digits.
//
// The package is a leaf: it imports only terminal/card and terminal/money of
// posd.
package magstripe

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/posd-dev/posd/terminal/card"
)

// Errors of a swipe. They never carry track data.
var (
	// ErrFormat: the record is not in the reader format (see the package
	// documentation).
	ErrFormat = errors.New("magstripe: malformed swipe record")
	// ErrUnreadable: the reader could not read track 2 (it sent E, or no
	// track 2 at all), which a sale needs. Swiping again may work.
	ErrUnreadable = errors.New("magstripe: card could not be read")
)

// Control characters of the reader format.
const (
	STX = 0x02
	ETX = 0x03
	ESC = 0x1B
	CR  = 0x0D
	LF  = 0x0A
)

// Maximum track lengths between the sentinels (ISO/IEC 7811, 7813).
const (
	MaxTrack1 = 76
	MaxTrack2 = 37
	MaxTrack3 = 104
)

// Swipe is the tracks of one swipe, without sentinels. It is sensitive:
// String, GoString and LogValue show the masked PAN only. Swipe is immutable
// and safe for concurrent use.
type Swipe struct {
	tracks [3]string
	state  [3]trackState
}

type trackState uint8

const (
	absent trackState = iota
	read
	failed
)

// Track1 returns track 1 without sentinels, or "" when it was not read.
func (s Swipe) Track1() string { return s.tracks[0] }

// Track2 returns track 2 without sentinels, or "" when it was not read.
func (s Swipe) Track2() string { return s.tracks[1] }

// Track3 returns track 3 without sentinels, or "" when it was not read.
func (s Swipe) Track3() string { return s.tracks[2] }

// Failed reports whether the reader reported track n (1-3) as unreadable.
func (s Swipe) Failed(n int) bool { return n >= 1 && n <= 3 && s.state[n-1] == failed }

// PAN returns the card number on the tracks (track 2 first), or "".
func (s Swipe) PAN() string {
	if i := strings.IndexByte(s.tracks[1], '='); i >= 0 {
		return s.tracks[1][:i]
	}
	if p, _, ok := strings.Cut(s.tracks[0], "^"); ok {
		return strings.TrimPrefix(p, "B")
	}
	return ""
}

// String returns the masked PAN and which tracks were read.
func (s Swipe) String() string {
	var b strings.Builder
	b.WriteString("swipe " + card.MaskPAN(s.PAN()))
	for i, st := range s.state {
		switch st {
		case read:
			fmt.Fprintf(&b, " t%d", i+1)
		case failed:
			fmt.Fprintf(&b, " t%d:E", i+1)
		}
	}
	return b.String()
}

// GoString returns the masked description.
func (s Swipe) GoString() string { return "magstripe.Swipe{" + s.String() + "}" }

// LogValue implements slog.LogValuer with the masked description.
func (s Swipe) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Parse parses one record: the bytes of a swipe, with or without its leading
// STX or ESC and its terminating CR or ETX. A record with no track read at
// all (all E, or a lone E) is an error wrapping ErrUnreadable; one that does
// not follow the format, an error wrapping ErrFormat. A swipe whose track 2
// failed is returned without error: Failed(2) says so.
func Parse(record []byte) (Swipe, error) {
	r := bytes.TrimLeft(record, " \r\n")
	if len(r) > 0 && (r[0] == STX || r[0] == ESC) {
		r = r[1:]
	}
	r = bytes.TrimRight(r, " \r\n")
	if len(r) > 0 && (r[len(r)-1] == ETX || r[len(r)-1] == CR) {
		r = bytes.TrimRight(r[:len(r)-1], " \r\n")
	}
	if len(r) == 1 && r[0] == 'E' {
		return Swipe{state: [3]trackState{failed, failed, failed}}, fmt.Errorf("%w: the reader read no track", ErrUnreadable)
	}
	var s Swipe
	for len(r) > 0 {
		if r[0] == ' ' || r[0] == '\r' || r[0] == '\n' {
			r = r[1:]
			continue
		}
		n := -1
		switch r[0] {
		case '%':
			n = 0
		case ';':
			n = 1
			if s.state[1] != absent {
				n = 2 // a second ;...? is track 3 (ISO 4909)
			}
		case '+':
			n = 2
		}
		if n < 0 {
			return Swipe{}, fmt.Errorf("%w: unexpected byte 0x%02X between tracks", ErrFormat, r[0])
		}
		if s.state[n] != absent {
			return Swipe{}, fmt.Errorf("%w: track %d appears twice", ErrFormat, n+1)
		}
		end := bytes.IndexByte(r[1:], '?')
		if end < 0 {
			return Swipe{}, fmt.Errorf("%w: track %d has no end sentinel", ErrFormat, n+1)
		}
		body := r[1 : 1+end]
		r = r[2+end:]
		if len(body) == 1 && body[0] == 'E' {
			s.state[n] = failed
			continue
		}
		if err := checkTrack(n, body); err != nil {
			return Swipe{}, err
		}
		s.tracks[n], s.state[n] = string(body), read
	}
	if s.state == [3]trackState{} {
		return Swipe{}, fmt.Errorf("%w: no track in the record", ErrFormat)
	}
	if s.state[0] != read && s.state[1] != read && s.state[2] != read {
		return s, fmt.Errorf("%w: the reader read no track", ErrUnreadable)
	}
	return s, nil
}

// checkTrack checks a track's length and character set.
func checkTrack(n int, body []byte) error {
	max, lo, hi := MaxTrack1, byte(0x20), byte(0x5F)
	switch n {
	case 1:
		max, lo, hi = MaxTrack2, 0x30, 0x3F
	case 2:
		max, lo, hi = MaxTrack3, 0x30, 0x3F
	}
	if len(body) == 0 || len(body) > max {
		return fmt.Errorf("%w: track %d is %d characters, want 1 to %d", ErrFormat, n+1, len(body), max)
	}
	for _, c := range body {
		if c < lo || c > hi || c == '%' || c == ';' || c == '?' {
			return fmt.Errorf("%w: track %d has a character outside its set", ErrFormat, n+1)
		}
	}
	return nil
}
