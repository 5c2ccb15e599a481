package abecs

import (
	"errors"
	"fmt"
	"strconv"
)

// Command ids this package knows. A pad answers any other id with ERR010.
const (
	CmdOpen    = "OPN" // open a session
	CmdClose   = "CLO" // close the session, leaving a message on the display
	CmdDisplay = "DSP" // show two lines of 16 characters
	CmdGetCard = "GCR" // wait for a card and return its data
	CmdGetPIN  = "GPN" // capture the PIN and return it encrypted
	CmdInfo    = "GIN" // the pad's manufacturer, model, versions and serial number
	CmdEvent   = "CKE" // wait for a key, a swipe, or a chip card inserted or removed
	CmdGoChip  = "GOC" // run the chip card's risk management, PIN and first cryptogram
	CmdFinChip = "FNC" // give the card the host's answer; the card's final decision
	CmdTabVer  = "GTS" // the version of the EMV tables loaded for an acquirer
	CmdTabInit = "TLI" // start loading EMV tables under a version
	CmdTabRec  = "TLR" // EMV table records (held until TLE)
	CmdTabEnd  = "TLE" // commit the loaded tables and their version
	CmdError   = "ERR" // the id of the response to an unknown command
)

// Statuses a pad returns. Others exist; a *StatusError carries any of them.
const (
	StatusOK               = 0  // success
	StatusNotify           = 2  // notification while a command waits; not final
	StatusInvalidCall      = 10 // invalid call, or unknown command (as ERR010)
	StatusInvalidParameter = 11 // a parameter is invalid
	StatusTimeout          = 12 // the cardholder did not act in time
	StatusCancelled        = 13 // the cardholder pressed CANCEL, or the host sent CAN
	StatusInternal         = 40 // internal pad error
	StatusMagstripeError   = 41 // the magnetic stripe could not be read
	StatusKeyMissing       = 42 // the key index given has no key
	StatusNoCard           = 43 // no card present, or the chip card was removed
	StatusMuteCard         = 60 // chip card does not answer
	StatusFallback         = 76 // chip error that allows magnetic stripe fallback
	StatusTableVersion     = 20 // ST_TABVERDIF: the EMV table version differs (GCR; TLI: load started)
	StatusTableError       = 21 // ST_TABERR: the pad could not store the tables
	StatusCtlsMultiple     = 80 // more than one contactless card in the field: tap again
	StatusCtlsCommError    = 81 // antenna-card communication error: tap again (twice: another interface)
	StatusCtlsInvalidated  = 82 // contactless card invalidated: use another interface
	StatusCtlsProblems     = 83 // the contactless card misbehaves: use another interface
	StatusCtlsNoApp        = 84 // no contactless application for the conditions
	StatusCtlsAppNotHere   = 85 // the selected application cannot be used here
	StatusCtlsSeePhone     = 86 // the cardholder must act on the phone and tap again
	StatusCtlsChange       = 87 // ST_CTLSIFCHG: the card asks for another interface (insert or swipe)
)

// Sentinels that errors.Is matches against a *StatusError with the
// corresponding Status constant (ErrInvalidCall 010, ErrInvalidParameter 011,
// ErrPadTimeout 012, ErrCancelled 013, ErrInternal 040, ErrMagstripeRead 041,
// ErrKeyMissing 042, ErrNoCard 043, ErrMuteCard 060, ErrFallbackAllowed 076),
// so callers need not compare codes.
var (
	ErrInvalidCall      = errors.New("abecs: invalid call or unknown command")
	ErrInvalidParameter = errors.New("abecs: invalid parameter")
	// ErrPadTimeout also matches the client giving up on GetCard or GetPIN
	// when the request's Timeout elapses.
	ErrPadTimeout      = errors.New("abecs: timed out waiting for the cardholder")
	ErrCancelled       = errors.New("abecs: cancelled")
	ErrInternal        = errors.New("abecs: internal pad error")
	ErrMagstripeRead   = errors.New("abecs: magnetic stripe read error")
	ErrKeyMissing      = errors.New("abecs: key missing")
	ErrNoCard          = errors.New("abecs: no card")
	ErrMuteCard        = errors.New("abecs: mute chip card")
	ErrFallbackAllowed = errors.New("abecs: chip error, fallback allowed")
	// ErrTableVersion (020): the pad's EMV tables are not the version the
	// host named; load them (TLI, TLR, TLE) and resume with a bare GCR.
	ErrTableVersion = errors.New("abecs: EMV table version differs")
	// ErrTableStore (021): the pad could not store the tables.
	ErrTableStore = errors.New("abecs: EMV tables could not be stored")
	// ErrCtlsAgain (080, 081): tap again.
	ErrCtlsAgain = errors.New("abecs: contactless read failed, tap again")
	// ErrCtlsOtherInterface (082-085, 087): the contactless transaction cannot go on;
	// the card is to be inserted or swiped (GCR again with contactless off).
	ErrCtlsOtherInterface = errors.New("abecs: contactless not possible, insert or swipe")
	// ErrCtlsSeePhone (086): the cardholder must follow the phone's instructions and tap again.
	ErrCtlsSeePhone = errors.New("abecs: see phone, then tap again")
)

// ErrFormat is wrapped by the errors of ParseCommand, ParseResponse and the
// block parsers: the bytes do not have the documented layout. The errors say
// which field is wrong but never repeat its content.
var ErrFormat = errors.New("abecs: malformed message")

func statusSentinel(code int) error {
	switch code {
	case StatusInvalidCall:
		return ErrInvalidCall
	case StatusInvalidParameter:
		return ErrInvalidParameter
	case StatusTimeout:
		return ErrPadTimeout
	case StatusCancelled:
		return ErrCancelled
	case StatusInternal:
		return ErrInternal
	case StatusMagstripeError:
		return ErrMagstripeRead
	case StatusKeyMissing:
		return ErrKeyMissing
	case StatusNoCard:
		return ErrNoCard
	case StatusMuteCard:
		return ErrMuteCard
	case StatusFallback:
		return ErrFallbackAllowed
	case StatusTableVersion:
		return ErrTableVersion
	case StatusTableError:
		return ErrTableStore
	case StatusCtlsMultiple, StatusCtlsCommError:
		return ErrCtlsAgain
	case StatusCtlsInvalidated, StatusCtlsProblems, StatusCtlsNoApp, StatusCtlsAppNotHere, StatusCtlsChange:
		return ErrCtlsOtherInterface
	case StatusCtlsSeePhone:
		return ErrCtlsSeePhone
	}
	return nil
}

// StatusError is a pad's error status for a command. Cmd is the command the
// host sent (also when the pad answered with the id ERR). It is plain data,
// safe for concurrent reads.
type StatusError struct {
	Cmd  string
	Code int
}

// Error describes the status.
func (e *StatusError) Error() string {
	if s := statusSentinel(e.Code); s != nil {
		return fmt.Sprintf("abecs: %s: pad status %03d: %s", e.Cmd, e.Code, s.Error()[len("abecs: "):])
	}
	return fmt.Sprintf("abecs: %s: pad status %03d", e.Cmd, e.Code)
}

// Is reports whether target is the sentinel for e.Code.
func (e *StatusError) Is(target error) bool {
	s := statusSentinel(e.Code)
	return s != nil && s == target
}

// Command is one application-layer command: a 3-letter id and its blocks.
// It is plain data: safe for concurrent reads, not for a concurrent write.
type Command struct {
	ID     string
	Blocks [][]byte
}

// Append appends the command's packet data to dst. It fails if the id is not
// three upper-case letters or a block is longer than 999 bytes.
func (c Command) Append(dst []byte) ([]byte, error) {
	if !validID(c.ID) {
		return dst, fmt.Errorf("%w: command id must be 3 upper-case letters", ErrFormat)
	}
	dst = append(dst, c.ID...)
	return appendBlocks(dst, c.ID, c.Blocks)
}

// Response is one application-layer response: id, status and, on success,
// blocks. It is plain data: safe for concurrent reads, not for a concurrent
// write.
type Response struct {
	ID     string
	Status int
	Blocks [][]byte
}

// Append appends the response's packet data to dst. It fails if the id is not
// three upper-case letters, the status is not 0-999 or a block is longer than
// 999 bytes.
func (r Response) Append(dst []byte) ([]byte, error) {
	if !validID(r.ID) {
		return dst, fmt.Errorf("%w: response id must be 3 upper-case letters", ErrFormat)
	}
	if r.Status < 0 || r.Status > 999 {
		return dst, fmt.Errorf("%w: %s: status %d is not 0-999", ErrFormat, r.ID, r.Status)
	}
	dst = append(dst, r.ID...)
	dst = appendNum(dst, r.Status, 3)
	return appendBlocks(dst, r.ID, r.Blocks)
}

// ParseCommand parses a command from packet data.
func ParseCommand(data []byte) (Command, error) {
	if len(data) < 3 || !validID(string(data[:3])) {
		return Command{}, fmt.Errorf("%w: command does not start with a 3-letter id", ErrFormat)
	}
	id := string(data[:3])
	blocks, err := parseBlocks(data[3:], id)
	if err != nil {
		return Command{}, err
	}
	return Command{ID: id, Blocks: blocks}, nil
}

// ParseResponse parses a response from packet data.
func ParseResponse(data []byte) (Response, error) {
	if len(data) < 6 || !validID(string(data[:3])) {
		return Response{}, fmt.Errorf("%w: response does not start with a 3-letter id and a status", ErrFormat)
	}
	id := string(data[:3])
	status, ok := parseNum(data[3:6])
	if !ok {
		return Response{}, fmt.Errorf("%w: %s: status is not 3 digits", ErrFormat, id)
	}
	blocks, err := parseBlocks(data[6:], id)
	if err != nil {
		return Response{}, err
	}
	return Response{ID: id, Status: status, Blocks: blocks}, nil
}

func validID(id string) bool {
	if len(id) != 3 {
		return false
	}
	for i := range 3 {
		if id[i] < 'A' || id[i] > 'Z' {
			return false
		}
	}
	return true
}

func appendBlocks(dst []byte, id string, blocks [][]byte) ([]byte, error) {
	for i, b := range blocks {
		if len(b) > 999 {
			return dst, fmt.Errorf("%w: %s: block %d is %d bytes, at most 999", ErrFormat, id, i+1, len(b))
		}
		dst = appendNum(dst, len(b), 3)
		dst = append(dst, b...)
	}
	return dst, nil
}

func parseBlocks(b []byte, id string) ([][]byte, error) {
	var blocks [][]byte
	for n := 1; len(b) > 0; n++ {
		if len(b) < 3 {
			return nil, fmt.Errorf("%w: %s: block %d length is not 3 digits", ErrFormat, id, n)
		}
		l, ok := parseNum(b[:3])
		if !ok {
			return nil, fmt.Errorf("%w: %s: block %d length is not 3 digits", ErrFormat, id, n)
		}
		if len(b)-3 < l {
			return nil, fmt.Errorf("%w: %s: block %d says %d bytes, %d follow", ErrFormat, id, n, l, len(b)-3)
		}
		blocks = append(blocks, b[3:3+l])
		b = b[3+l:]
	}
	return blocks, nil
}

// appendNum appends n as exactly width decimal digits; n must fit.
func appendNum(dst []byte, n, width int) []byte {
	s := strconv.Itoa(n)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// appendNum64 appends n as exactly width decimal digits; n must fit. It
// exists beside appendNum for amounts, which do not fit an int on 32-bit ARM.
func appendNum64(dst []byte, n int64, width int) []byte {
	s := strconv.FormatInt(n, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// parseNum parses b, 1 to 9 decimal digits, as a number (so that it fits an
// int on 32-bit processors too).
func parseNum(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n, ok := parseNum64(b)
	return int(n), ok
}

// parseNum64 parses b, 1 to 18 decimal digits, as a number.
func parseNum64(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
