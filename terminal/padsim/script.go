package padsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/card"
)

// Script is what the simulated cardholder does, in order. The pad takes the
// next event when a command needs one (see the package documentation).
//
// JSON form, decoded strictly (unknown fields are errors):
//
//	{"events": [
//	  {"swipe": {"track1": "B4761739001010010^...", "track2": "4761739001010010=..."}},
//	  {"pin": "1234"},
//	  {"cancel": true},
//	  {"delay": "200ms"}
//	]}
//
// Script, Event and Swipe are plain data: safe for concurrent reads, not for
// a concurrent write. New copies the events; the Pad never modifies a Script.
type Script struct {
	Events []Event `json:"events"`
}

// Event is one cardholder action. Exactly one field is set.
//
// Events hold card data and PINs in the clear (they are test data): String,
// GoString and Swipe's String mask them.
type Event struct {
	// Swipe is a magnetic stripe swipe, answering GCR.
	Swipe *Swipe
	// PIN is what the cardholder types, 4 to 12 digits, answering GPN.
	PIN string
	// Cancel is the CANCEL key: GCR or GPN answers status 013.
	Cancel bool
	// Delay makes the pad wait this long, after the ACK, before it handles the
	// next command it receives, whatever that command is. Consecutive delays
	// add up.
	Delay time.Duration
}

// Swipe is the tracks a swipe reads, without start and end sentinels. At
// least one track is required; track 1 is at most 76 characters and track 2
// at most 37, printable ASCII.
type Swipe struct {
	Track1 string `json:"track1,omitempty"`
	Track2 string `json:"track2,omitempty"`
}

// PAN returns the card number on the tracks (track 2 first), or "".
func (s Swipe) PAN() string {
	if i := strings.IndexAny(s.Track2, "=D"); i >= 0 {
		return s.Track2[:i]
	}
	if parts := strings.SplitN(s.Track1, "^", 2); len(parts) == 2 {
		return strings.TrimPrefix(parts[0], "B")
	}
	return ""
}

// String returns "swipe" and the masked PAN.
func (s Swipe) String() string { return "swipe " + card.MaskPAN(s.PAN()) }

// String describes the event without card data or PIN.
func (e Event) String() string {
	switch {
	case e.Swipe != nil:
		return e.Swipe.String()
	case e.PIN != "":
		return "pin"
	case e.Cancel:
		return "cancel"
	case e.Delay > 0:
		return "delay " + e.Delay.String()
	}
	return "empty event"
}

// GoString returns the same as String, so %#v does not print card data.
func (e Event) GoString() string { return "padsim.Event{" + e.String() + "}" }

// UnmarshalJSON decodes one event of the JSON form strictly, so that
// encoding/json can decode a Script directly (ParseScript's errors also name
// the event's index).
func (e *Event) UnmarshalJSON(b []byte) error {
	ev, err := parseEvent(b)
	if err != nil {
		return fmt.Errorf("padsim: script event: %w", err)
	}
	*e = ev
	return nil
}

// MarshalJSON encodes the event in the JSON form ParseScript reads.
func (e Event) MarshalJSON() ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("padsim: script event: %w", err)
	}
	var v any
	switch {
	case e.Swipe != nil:
		v = map[string]*Swipe{"swipe": e.Swipe}
	case e.PIN != "":
		v = map[string]string{"pin": e.PIN}
	case e.Cancel:
		v = map[string]bool{"cancel": true}
	default:
		v = map[string]string{"delay": e.Delay.String()}
	}
	return json.Marshal(v)
}

// validate checks that exactly one field is set and that it is usable.
func (e Event) validate() error {
	n := 0
	if e.Swipe != nil {
		n++
		if err := e.Swipe.validate(); err != nil {
			return err
		}
	}
	if e.PIN != "" {
		n++
		if len(e.PIN) < 4 || len(e.PIN) > 12 || strings.Trim(e.PIN, "0123456789") != "" {
			return errors.New("pin must be 4 to 12 digits")
		}
	}
	if e.Cancel {
		n++
	}
	if e.Delay < 0 {
		return errors.New("delay must be positive")
	}
	if e.Delay > 0 {
		n++
	}
	switch n {
	case 0:
		return errors.New("empty event: want one of swipe, pin, cancel, delay")
	case 1:
		return nil
	}
	return errors.New("more than one of swipe, pin, cancel, delay in one event")
}

func (s *Swipe) validate() error {
	if s.Track1 == "" && s.Track2 == "" {
		return errors.New("swipe has no track")
	}
	for _, t := range []struct {
		name, value string
		max         int
		start, end  string
	}{{"track1", s.Track1, 76, "%", "?"}, {"track2", s.Track2, 37, ";", "?"}} {
		if strings.HasPrefix(t.value, t.start) || strings.HasSuffix(t.value, t.end) {
			return fmt.Errorf("swipe %s must be given without its %s and %s sentinels", t.name, t.start, t.end)
		}
		if len(t.value) > t.max {
			return fmt.Errorf("swipe %s is %d characters, at most %d", t.name, len(t.value), t.max)
		}
		for i := 0; i < len(t.value); i++ {
			if t.value[i] < 0x20 || t.value[i] > 0x7E {
				return fmt.Errorf("swipe %s has a character outside printable ASCII", t.name)
			}
		}
	}
	return nil
}

// Validate checks every event and names the first bad one by its index.
func (s *Script) Validate() error {
	for i, e := range s.Events {
		if err := e.validate(); err != nil {
			return fmt.Errorf("padsim: script events[%d]: %w", i, err)
		}
	}
	return nil
}

// LoadScript reads and parses the script file at path.
func LoadScript(path string) (*Script, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("padsim: script: %w", err)
	}
	s, err := ParseScript(b)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return s, nil
}

// ParseScript parses a script in its JSON form, strictly: unknown fields,
// trailing data and invalid events are errors, and an event's error names its
// index in the events list.
func ParseScript(b []byte) (*Script, error) {
	var raw struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("padsim: script: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("padsim: script: data after the script object")
	}
	if raw.Events == nil {
		return nil, errors.New(`padsim: script: no "events" list`)
	}
	s := &Script{Events: make([]Event, len(raw.Events))}
	for i, r := range raw.Events {
		e, err := parseEvent(r)
		if err != nil {
			return nil, fmt.Errorf("padsim: script events[%d]: %w", i, err)
		}
		s.Events[i] = e
	}
	return s, nil
}

func parseEvent(b []byte) (Event, error) {
	var raw struct {
		Swipe  *Swipe  `json:"swipe"`
		PIN    *string `json:"pin"`
		Cancel *bool   `json:"cancel"`
		Delay  *string `json:"delay"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Event{}, err
	}
	var e Event
	n := 0
	if raw.Swipe != nil {
		n++
		e.Swipe = raw.Swipe
	}
	if raw.PIN != nil {
		n++
		if *raw.PIN == "" {
			return Event{}, errors.New("pin must be 4 to 12 digits")
		}
		e.PIN = *raw.PIN
	}
	if raw.Cancel != nil {
		n++
		if !*raw.Cancel {
			return Event{}, errors.New(`cancel must be true`)
		}
		e.Cancel = true
	}
	if raw.Delay != nil {
		n++
		d, err := time.ParseDuration(*raw.Delay)
		if err != nil || d <= 0 {
			return Event{}, errors.New(`delay must be a positive duration such as "200ms"`)
		}
		e.Delay = d
	}
	if n > 1 {
		return Event{}, errors.New("more than one of swipe, pin, cancel, delay in one event")
	}
	if err := e.validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}
