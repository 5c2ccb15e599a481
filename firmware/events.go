package firmware

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Event kinds in the event log.
const (
	EventInstall    = "install"    // an install into the inactive slot, ok or refused
	EventPINPad     = "pinpad"     // a PIN pad firmware transfer, ok or refused
	EventConfirm    = "confirm"    // the new slot passed posd's self-test
	EventFallback   = "fallback"   // the unconfirmed slot was abandoned for the previous one
	EventRollback   = "rollback"   // a technician switched back to the other slot
	EventLogRepair  = "log-repair" // a torn last line (power cut while writing) was cut off
	EventInitialise = "initialise" // a new state directory, with the factory slot
	genesisHash     = "0000000000000000000000000000000000000000000000000000000000000000"
	eventsFile      = "events.log"
	detailMaxLength = 1000
)

// ErrTampered: the event log's hash chain is broken: a line was changed,
// removed or inserted. The error names the first bad line.
var ErrTampered = errors.New("event log hash chain is broken")

// Event is one record of the firmware event log, the file events.log in the
// state directory: one JSON object per line, each holding the SHA-256 of the
// line before it (Prev), so that changing, removing or inserting a line
// breaks the chain. Cutting lines off the end cannot be seen from the file
// alone; Options.OnEvent lets posd copy each record elsewhere (its journal)
// as it is written.
//
// Event is a plain value, safe for concurrent use.
type Event struct {
	Seq     uint64    `json:"seq"`               // 1, 2, 3, ...
	Time    time.Time `json:"time"`              // when it happened (Options.Now)
	Kind    string    `json:"event"`             // EventInstall, EventFallback, ...
	Who     string    `json:"who"`               // the technician, or "posd" for automatic steps
	OK      bool      `json:"ok"`                // false: refused or failed; Detail says why
	Slot    string    `json:"slot,omitempty"`    // "a" or "b"
	Version string    `json:"version,omitempty"` // the firmware version concerned
	From    string    `json:"from,omitempty"`    // the version that was active before
	Source  string    `json:"source,omitempty"`  // where the bundle came from
	Detail  string    `json:"detail,omitempty"`  // the error, or what happened
	Prev    string    `json:"prev"`              // hex SHA-256 of the previous line; 64 zeros for the first
}

// eventLog is the append-only, hash-chained log. Callers serialise access.
type eventLog struct {
	path     string
	f        *os.File
	seq      uint64
	head     string // hash of the last line
	chainErr error  // the chain was found broken when opened
}

func lineHash(line []byte) string {
	s := sha256.Sum256(line)
	return hex.EncodeToString(s[:])
}

// openEventLog opens (creating) the log, cuts off a torn last line and checks
// the chain. A broken chain is not an error here: it is kept in chainErr so
// that the terminal still starts, and new lines chain on from the last one.
func openEventLog(path string) (l *eventLog, repaired int64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i+1 < len(b) {
		repaired = int64(len(b) - (i + 1))
		if err := f.Truncate(int64(i + 1)); err != nil {
			f.Close()
			return nil, 0, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, 0, err
		}
		b = b[:i+1]
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, 0, err
	}
	l = &eventLog{path: path, f: f, head: genesisHash}
	_, l.seq, l.head, l.chainErr = parseEvents(b, 0)
	return l, repaired, nil
}

// parseEvents parses and checks the lines of b, returning the events with
// Seq > after, the last sequence number and the hash of the last line. On a
// broken chain it returns what it read up to there and an error wrapping
// ErrTampered; seq and head then come from the last line that parsed.
func parseEvents(b []byte, after uint64) (evs []Event, seq uint64, head string, err error) {
	head = genesisHash
	lineNo := 0
	for len(b) > 0 {
		lineNo++
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			i = len(b)
		}
		line := b[:i]
		b = b[min(i+1, len(b)):]
		var ev Event
		if e := strictUnmarshal(line, &ev); e != nil {
			if err == nil {
				err = fmt.Errorf("line %d is not a log record: %w", lineNo, ErrTampered)
			}
			continue
		}
		if err == nil && (ev.Prev != head || ev.Seq != seq+1) {
			err = fmt.Errorf("line %d (seq %d) does not follow line %d: %w", lineNo, ev.Seq, lineNo-1, ErrTampered)
		}
		seq, head = ev.Seq, lineHash(line)
		if ev.Seq > after {
			evs = append(evs, ev)
		}
	}
	return evs, seq, head, err
}

// append writes ev (Seq and Prev filled in) as a new line and fsyncs it.
func (l *eventLog) append(ev Event) (Event, error) {
	ev.Seq = l.seq + 1
	ev.Prev = l.head
	ev.Time = ev.Time.UTC()
	if len(ev.Detail) > detailMaxLength {
		ev.Detail = ev.Detail[:detailMaxLength] + "..."
	}
	ev.Who = strings.ToValidUTF8(ev.Who, "?")
	line, err := json.Marshal(ev)
	if err != nil {
		return Event{}, err
	}
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		return Event{}, fmt.Errorf("event log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return Event{}, fmt.Errorf("event log: %w", err)
	}
	l.seq, l.head = ev.Seq, lineHash(line)
	return ev, nil
}

// read returns the events after seq after, and an error wrapping ErrTampered
// if the chain is broken.
func (l *eventLog) read(after uint64) ([]Event, error) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil, err
	}
	evs, _, _, err := parseEvents(b, after)
	return evs, err
}

func (l *eventLog) close() error { return l.f.Close() }
