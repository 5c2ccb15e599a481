package padsim

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
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
//	  {"delay": "200ms"},
//	  {"insert": {"pan": "4761739001010010", "expiry": "251231", "online_pin": true,
//	              "decision": "online", "finish": "follow"}},
//	  {"chip_fault": "mute"},
//	  {"key": "enter"},
//	  {"remove": true},
//	  {"timeout": true},
//	  {"fault": {"kind": "nak", "count": 3}},
//	  {"tap": {"pan": "4761739001010010", "mode": "emv", "aid": "A0000000031010",
//	           "cdcvm": false, "form_factor": "20700000"}}
//	]}
//
// See the package documentation for what each event answers.
//
// Script, Event and Swipe are plain data: safe for concurrent reads, not for
// a concurrent write. New copies the events; the Pad never modifies a Script.
type Script struct {
	Events []Event `json:"events"`
}

// Event is one cardholder action, or a fault of the pad. Exactly one field is
// set.
//
// Events hold card data and PINs in the clear (they are test data): String,
// GoString and Swipe's and Chip's String mask them.
//
// A plain value: safe for concurrent use when not modified.
type Event struct {
	// Swipe is a magnetic stripe swipe, answering GCR (or CKE).
	Swipe *Swipe
	// PIN is what the cardholder types, 4 to 12 digits, answering GPN, or GOC
	// when the inserted card asks for an online PIN.
	PIN string
	// Cancel is the CANCEL key: GCR, GPN, GOC or CKE answers status 013.
	Cancel bool
	// Delay makes the pad wait this long, after the ACK, before it handles the
	// next command it receives, whatever that command is. Consecutive delays
	// add up.
	Delay time.Duration
	// Insert is a chip card inserted, answering GCR (or CKE) with its data;
	// GOC and FNC then run on it.
	Insert *Chip
	// ChipFault is a chip card that cannot be read: ChipMute answers GCR
	// with 060, ChipFallback with 076. Either way the next swipe is reported
	// as a fallback (chip status 1).
	ChipFault string
	// Key is a key pressed, answering CKE: "enter", "clear", "cancel", or
	// "f1" to "f4".
	Key string
	// Remove takes the chip card out: it answers a CKE waiting for removal,
	// and GOC's online PIN entry or FNC with 043 (the card was pulled
	// mid-transaction).
	Remove bool
	// Timeout is a cardholder who does not act: GCR, GPN, GOC (PIN entry) or
	// CKE answers 012; a CKE with contactless on (on a pad with a reader)
	// answers event 3 with CKE_CTLSSTAT 0 (no card in 2 minutes) instead.
	Timeout bool
	// Fault is a fault of the pad's link, applied to the next command packet
	// (see Fault).
	Fault *Fault
	// Tap is a contactless card tapped, answering a GCR with contactless on
	// on a pad with a contactless reader (see Tap). A CKE with contactless on
	// answers it as event 3, CKE_CTLSSTAT 1, and leaves it for that GCR. A pad
	// without a reader ignores the contactless flag of GCR and CKE alike.
	Tap *Tap
}

// Chip faults.
const (
	ChipMute     = "mute"     // the card does not answer: GCR 060
	ChipFallback = "fallback" // chip error that allows fallback: GCR 076
)

// keyCodes are the names a key event may use; never modified.
var keyCodes = map[string]abecs.Key{
	"enter": abecs.KeyEnter, "clear": abecs.KeyClear, "cancel": abecs.KeyCancel,
	"f1": abecs.KeyF1, "f2": abecs.KeyF2, "f3": abecs.KeyF3, "f4": abecs.KeyF4,
}

// Chip is an EMV chip card and how it behaves. PAN and Track2 are card data:
// String masks them. It is plain data, safe for concurrent reads.
type Chip struct {
	// PAN is the card number (tag 5A), 12 to 19 digits. Required.
	PAN string `json:"pan"`
	// Expiry is YYMMDD (tag 5F24). Default "301231".
	Expiry string `json:"expiry,omitempty"`
	// ServiceCode is the 3-digit service code (tag 5F30). Default "201".
	ServiceCode string `json:"service_code,omitempty"`
	// PANSequence is the 2-digit PAN sequence number (tag 5F34). Default "01".
	PANSequence string `json:"pan_seq,omitempty"`
	// Track2 is the track 2 equivalent data (tag 57) with '=' as separator.
	// Default PAN '=' YYMM service code "00000000".
	Track2 string `json:"track2,omitempty"`
	// Label is the application label (tag 50), at most 16 characters.
	// Default "CREDIT".
	Label string `json:"label,omitempty"`
	// Name is the cardholder name (tag 5F20), at most 26 characters.
	Name string `json:"name,omitempty"`
	// AID is the application identifier in hex (tag 84). Default
	// "A0000000031010".
	AID string `json:"aid,omitempty"`
	// OnlinePIN makes the card ask for an online PIN when it goes online:
	// GOC then takes the next script event (pin, cancel, timeout, remove).
	OnlinePIN bool `json:"online_pin,omitempty"`
	// Decision is the card's first decision in GOC: DecisionOnline (the
	// default), DecisionApprove (offline) or DecisionDecline (offline).
	Decision string `json:"decision,omitempty"`
	// Finish is the card's final decision in FNC: FinishFollow (the
	// default: approve when the host answered 00), FinishApprove or
	// FinishDecline (a decline even after the host approved).
	Finish string `json:"finish,omitempty"`
}

// Chip decisions.
const (
	DecisionOnline  = "online"
	DecisionApprove = "approve"
	DecisionDecline = "decline"
	FinishFollow    = "follow"
	FinishApprove   = "approve"
	FinishDecline   = "decline"
)

// String returns "chip" and the masked PAN.
func (c Chip) String() string { return "chip " + card.MaskPAN(c.PAN) }

// GoString returns the same as String.
func (c Chip) GoString() string { return "padsim.Chip{" + c.String() + "}" }

func (c *Chip) validate() error {
	if len(c.PAN) < 12 || len(c.PAN) > 19 || strings.Trim(c.PAN, "0123456789") != "" {
		return errors.New("insert pan must be 12 to 19 digits")
	}
	if c.Expiry != "" && (len(c.Expiry) != 6 || strings.Trim(c.Expiry, "0123456789") != "") {
		return errors.New("insert expiry must be YYMMDD")
	}
	if c.ServiceCode != "" && (len(c.ServiceCode) != 3 || strings.Trim(c.ServiceCode, "0123456789") != "") {
		return errors.New("insert service_code must be 3 digits")
	}
	if c.PANSequence != "" && (len(c.PANSequence) != 2 || strings.Trim(c.PANSequence, "0123456789") != "") {
		return errors.New("insert pan_seq must be 2 digits")
	}
	if c.Track2 != "" && (len(c.Track2) > 37 || strings.Trim(c.Track2, "0123456789=") != "" || strings.Count(c.Track2, "=") != 1) {
		return errors.New("insert track2 must be at most 37 digits with one '=', without sentinels")
	}
	if len(c.Label) > 16 || len(c.Name) > 26 || !printable(c.Label) || !printable(c.Name) {
		return errors.New("insert label and name must be at most 16 and 26 printable characters")
	}
	if c.AID != "" {
		if b, err := hex.DecodeString(c.AID); err != nil || len(b) < 5 || len(b) > 16 {
			return errors.New("insert aid must be 5 to 16 bytes of hex")
		}
	}
	switch c.Decision {
	case "", DecisionOnline, DecisionApprove, DecisionDecline:
	default:
		return errors.New(`insert decision must be "online", "approve" or "decline"`)
	}
	switch c.Finish {
	case "", FinishFollow, FinishApprove, FinishDecline:
	default:
		return errors.New(`insert finish must be "follow", "approve" or "decline"`)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// Fault is a fault of the pad's link layer. Fault events at the head of the
// script are taken when the next good command packet arrives, before the
// pad ACKs it (so put them before that command's delays and cardholder
// event):
//
//   - FaultNAK: the pad NAKs that packet and the next Count-1 (a NAK storm
//     when Count is 3 or more: the host gives up).
//   - FaultNoACK: the pad ignores that packet and the next Count-1 entirely.
//   - FaultSlowACK: the pad ACKs only after Delay.
//   - FaultBadCRC: the next Count sends of the response carry a wrong CRC.
//   - FaultNoise: the pad sends the bytes Hex before its ACK.
//   - FaultUnplug: the pad vanishes for Delay, losing that packet: under
//     Serve it ignores the line, under ServeDevice it closes its port and
//     opens it again.
//
// It is plain data, like Event: safe for concurrent reads.
type Fault struct {
	Kind  string        `json:"kind"`
	Count int           `json:"count,omitempty"` // NAK, no ACK, bad CRC: default 1
	Delay time.Duration `json:"-"`               // slow ACK, unplug: required; JSON "delay": "2s"
	Hex   string        `json:"hex,omitempty"`   // noise: 1 to 64 bytes of hex
}

// Fault kinds.
const (
	FaultNAK     = "nak"
	FaultNoACK   = "no_ack"
	FaultSlowACK = "slow_ack"
	FaultBadCRC  = "bad_crc"
	FaultNoise   = "noise"
	FaultUnplug  = "unplug"
)

// String describes the fault.
func (f Fault) String() string {
	switch f.Kind {
	case FaultSlowACK, FaultUnplug:
		return fmt.Sprintf("fault %s %v", f.Kind, f.Delay)
	case FaultNoise:
		return fmt.Sprintf("fault noise %d bytes", len(f.Hex)/2)
	}
	return fmt.Sprintf("fault %s x%d", f.Kind, f.count())
}

func (f Fault) count() int {
	if f.Count <= 0 {
		return 1
	}
	return f.Count
}

func (f *Fault) validate() error {
	switch f.Kind {
	case FaultNAK, FaultNoACK, FaultBadCRC:
		if f.Count < 0 || f.Count > 100 {
			return errors.New("fault count must be 1 to 100")
		}
		if f.Delay != 0 || f.Hex != "" {
			return fmt.Errorf("fault %s takes only a count", f.Kind)
		}
	case FaultSlowACK, FaultUnplug:
		if f.Delay <= 0 {
			return fmt.Errorf("fault %s needs a positive delay", f.Kind)
		}
		if f.Count != 0 || f.Hex != "" {
			return fmt.Errorf("fault %s takes only a delay", f.Kind)
		}
	case FaultNoise:
		if b, err := hex.DecodeString(f.Hex); err != nil || len(b) == 0 || len(b) > 64 {
			return errors.New("fault noise needs hex of 1 to 64 bytes")
		}
		if f.Count != 0 || f.Delay != 0 {
			return errors.New("fault noise takes only hex")
		}
	default:
		return errors.New(`fault kind must be "nak", "no_ack", "slow_ack", "bad_crc", "noise" or "unplug"`)
	}
	return nil
}

// MarshalJSON encodes the fault with its delay as a duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	type plain Fault
	v := struct {
		plain
		Delay string `json:"delay,omitempty"`
	}{plain: plain(f)}
	if f.Delay > 0 {
		v.Delay = f.Delay.String()
	}
	return json.Marshal(v)
}

// Swipe is the tracks a swipe reads, without start and end sentinels. At
// least one track is required; track 1 is at most 76 characters and track 2
// at most 37, printable ASCII.
//
// A plain value: safe for concurrent use when not modified.
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
	case e.Insert != nil:
		return "insert " + e.Insert.String()
	case e.ChipFault != "":
		return "chip fault " + e.ChipFault
	case e.Key != "":
		return "key " + e.Key
	case e.Remove:
		return "remove"
	case e.Timeout:
		return "timeout"
	case e.Fault != nil:
		return e.Fault.String()
	case e.Tap != nil:
		return e.Tap.String()
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
	case e.Insert != nil:
		v = map[string]*Chip{"insert": e.Insert}
	case e.ChipFault != "":
		v = map[string]string{"chip_fault": e.ChipFault}
	case e.Key != "":
		v = map[string]string{"key": e.Key}
	case e.Remove:
		v = map[string]bool{"remove": true}
	case e.Timeout:
		v = map[string]bool{"timeout": true}
	case e.Fault != nil:
		v = map[string]*Fault{"fault": e.Fault}
	case e.Tap != nil:
		v = map[string]*Tap{"tap": e.Tap}
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
	if e.Insert != nil {
		n++
		if err := e.Insert.validate(); err != nil {
			return err
		}
	}
	if e.ChipFault != "" {
		n++
		if e.ChipFault != ChipMute && e.ChipFault != ChipFallback {
			return errors.New(`chip_fault must be "mute" or "fallback"`)
		}
	}
	if e.Key != "" {
		n++
		if _, ok := keyCodes[e.Key]; !ok {
			return errors.New(`key must be one of "enter", "clear", "cancel", "f1" to "f4"`)
		}
	}
	if e.Remove {
		n++
	}
	if e.Timeout {
		n++
	}
	if e.Fault != nil {
		n++
		if err := e.Fault.validate(); err != nil {
			return err
		}
	}
	if e.Tap != nil {
		n++
		if err := e.Tap.validate(); err != nil {
			return err
		}
	}
	switch n {
	case 0:
		return errors.New("empty event: want one of " + eventNames)
	case 1:
		return nil
	}
	return errors.New("more than one of " + eventNames + " in one event")
}

const eventNames = "swipe, pin, cancel, delay, insert, chip_fault, key, remove, timeout, fault, tap"

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
		Swipe     *Swipe  `json:"swipe"`
		PIN       *string `json:"pin"`
		Cancel    *bool   `json:"cancel"`
		Delay     *string `json:"delay"`
		Insert    *Chip   `json:"insert"`
		ChipFault *string `json:"chip_fault"`
		Key       *string `json:"key"`
		Remove    *bool   `json:"remove"`
		Timeout   *bool   `json:"timeout"`
		Tap       *Tap    `json:"tap"`
		Fault     *struct {
			Kind  string  `json:"kind"`
			Count int     `json:"count"`
			Delay *string `json:"delay"`
			Hex   string  `json:"hex"`
		} `json:"fault"`
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
	if raw.Insert != nil {
		n++
		e.Insert = raw.Insert
	}
	if raw.Tap != nil {
		n++
		e.Tap = raw.Tap
	}
	if raw.ChipFault != nil {
		n++
		if *raw.ChipFault == "" {
			return Event{}, errors.New(`chip_fault must be "mute" or "fallback"`)
		}
		e.ChipFault = *raw.ChipFault
	}
	if raw.Key != nil {
		n++
		if *raw.Key == "" {
			return Event{}, errors.New(`key must be one of "enter", "clear", "cancel", "f1" to "f4"`)
		}
		e.Key = *raw.Key
	}
	for _, f := range []struct {
		name string
		v    *bool
		dst  *bool
	}{{"remove", raw.Remove, &e.Remove}, {"timeout", raw.Timeout, &e.Timeout}} {
		if f.v != nil {
			n++
			if !*f.v {
				return Event{}, fmt.Errorf("%s must be true", f.name)
			}
			*f.dst = true
		}
	}
	if raw.Fault != nil {
		n++
		e.Fault = &Fault{Kind: raw.Fault.Kind, Count: raw.Fault.Count, Hex: raw.Fault.Hex}
		if raw.Fault.Delay != nil {
			d, err := time.ParseDuration(*raw.Fault.Delay)
			if err != nil || d <= 0 {
				return Event{}, errors.New(`fault delay must be a positive duration such as "2s"`)
			}
			e.Fault.Delay = d
		}
	}
	if n > 1 {
		return Event{}, errors.New("more than one of " + eventNames + " in one event")
	}
	if err := e.validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}
