package main

import (
	"fmt"
	"time"
)

// PINPadConfig is the PIN pad's serial line.
type PINPadConfig struct {
	Port        string   `json:"port"`                  // serial device path, e.g. /dev/ttyUSB0; required
	Baud        int      `json:"baud" min:"1"`          // default 19200 (ABECS)
	ACKTimeout  Duration `json:"ack_timeout"`           // default 2s (ABECS)
	PINKeyIndex int      `json:"pin_key_index" min:"1"` // the pad's DUKPT key slot for PINs; default 1
	// DUKPT is the kind of the pad's PIN key: "tdes" (TDES DUKPT, ISO 9564 format 0, 8-byte
	// PIN blocks and 10-byte KSNs; the default) or "aes" (AES DUKPT, ANSI X9.24-3, format 4,
	// 16-byte PIN blocks and 12-byte KSNs). The acquirer's dialect must carry the blocks:
	// "aes" needs an acquirer.dialect whose field 52 takes 16 bytes, such as
	// iso8583/dialects/aes-pin.json. The pad's GPN and GOC (chip online PIN) use the kind.
	DUKPT string `json:"dukpt"`
	// ResponseTimeout bounds the pad's answer to a command that needs no customer. Default 10s.
	ResponseTimeout Duration `json:"response_timeout"`
	// ReconnectMin and ReconnectMax bound the wait between reconnection attempts after a
	// pulled cable. Defaults 500ms and 30s.
	ReconnectMin Duration `json:"reconnect_min"`
	ReconnectMax Duration `json:"reconnect_max"`
	// FailAfter is how long the pad may be away before its status turns from
	// reconnecting to failed. Default 1m.
	FailAfter Duration `json:"fail_after"`
	// Heartbeat is how long the pad's link may stay idle before posd checks that the pad
	// still answers (GIN, which changes nothing on the pad; never during a command): a pad
	// that lost power behind a cable that is still there then shows as reconnecting, with
	// "heartbeat got no answer", instead of at the next sale. "off" disables it. Default 30s.
	Heartbeat DurationOrOff `json:"heartbeat"`
}

// The kinds of PIN pad key (pinpad.dukpt).
const (
	DUKPTTDES = "tdes"
	DUKPTAES  = "aes"
)

// ReaderConfig chooses the card reader.
type ReaderConfig struct {
	// Source is "pinpad" (the pad's own reader, chip and stripe; default) or "serial"
	// (a MagTek / ID TECH magnetic stripe reader on its own port; chip cards are then not
	// read).
	Source string `json:"source"`
	Port   string `json:"port"`         // with "serial": the reader's device; required
	Baud   int    `json:"baud" min:"1"` // with "serial": default 9600
}

func validBaud(b int) bool {
	switch b {
	case 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200:
		return true
	}
	return false
}

// fill checks the pinpad section and fills its defaults.
func (p *PINPadConfig) fill() error {
	if p.Port == "" {
		return &ConfigError{"pinpad.port", "required (the PIN pad's serial device, e.g. /dev/ttyUSB0)"}
	}
	if p.Baud == 0 {
		p.Baud = 19200
	}
	if !validBaud(p.Baud) {
		return &ConfigError{"pinpad.baud", fmt.Sprintf("%d is not a standard rate (1200 to 115200)", p.Baud)}
	}
	if p.ACKTimeout == 0 {
		p.ACKTimeout = Duration(2 * time.Second)
	}
	if p.PINKeyIndex == 0 {
		p.PINKeyIndex = 1
	}
	if p.PINKeyIndex < 0 || p.PINKeyIndex > 99 {
		return &ConfigError{"pinpad.pin_key_index", "must be 1 to 99"}
	}
	switch p.DUKPT {
	case "":
		p.DUKPT = DUKPTTDES
	case DUKPTTDES, DUKPTAES:
	default:
		return &ConfigError{"pinpad.dukpt", fmt.Sprintf("%q is not one of tdes, aes", p.DUKPT)}
	}
	if p.ResponseTimeout == 0 {
		p.ResponseTimeout = Duration(10 * time.Second)
	}
	if p.ReconnectMin == 0 {
		p.ReconnectMin = Duration(500 * time.Millisecond)
	}
	if p.ReconnectMax == 0 {
		p.ReconnectMax = Duration(30 * time.Second)
	}
	if p.FailAfter == 0 {
		p.FailAfter = Duration(time.Minute)
	}
	if p.ReconnectMax < p.ReconnectMin {
		return &ConfigError{"pinpad.reconnect_max", "must not be shorter than pinpad.reconnect_min"}
	}
	if err := p.Heartbeat.check("pinpad.heartbeat", 30*time.Second); err != nil {
		return err
	}
	return nil
}

// fill checks the card_reader section and fills its defaults.
func (r *ReaderConfig) fill() error {
	switch r.Source {
	case "":
		r.Source = "pinpad"
	case "pinpad":
	case "serial":
		if r.Port == "" {
			return &ConfigError{"card_reader.port", `required with source "serial"`}
		}
		if r.Baud == 0 {
			r.Baud = 9600
		}
		if !validBaud(r.Baud) {
			return &ConfigError{"card_reader.baud", fmt.Sprintf("%d is not a standard rate (1200 to 115200)", r.Baud)}
		}
	default:
		return &ConfigError{"card_reader.source", fmt.Sprintf("%q is not one of pinpad, serial", r.Source)}
	}
	return nil
}
