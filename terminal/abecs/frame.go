package abecs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Control bytes of the link layer.
const (
	EOT byte = 0x04 // end of transmission: the pad's answer to CAN
	ACK byte = 0x06 // packet accepted
	DC3 byte = 0x13 // escape inside packet data
	NAK byte = 0x15 // packet rejected: send it again
	SYN byte = 0x16 // start of packet
	ETB byte = 0x17 // end of packet data; the CRC follows
	CAN byte = 0x18 // abort the command in progress
)

// MaxData is the largest packet data, before stuffing, in bytes.
const MaxData = 2049

// Errors of the link layer. A packet [Event] carries ErrBadCRC, ErrBadEscape
// or ErrFrameTooLong when its packet must be rejected with NAK.
var (
	// ErrBadCRC: a packet's CRC does not match its data.
	ErrBadCRC = errors.New("abecs: packet CRC mismatch")
	// ErrBadEscape: a DC3 inside packet data was not followed by 0x33, 0x36 or 0x37.
	ErrBadEscape = errors.New("abecs: invalid DC3 escape in packet")
	// ErrFrameTooLong: packet data longer than MaxData bytes.
	ErrFrameTooLong = errors.New("abecs: packet data longer than 2049 bytes")
)

// CRC16 returns the CRC-16/XMODEM of b: polynomial 0x1021, initial value 0,
// no reflection, no final XOR. A packet's CRC covers its unstuffed data and
// the ETB byte.
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crcByte(crc, c)
	}
	return crc
}

func crcByte(crc uint16, c byte) uint16 {
	return crc<<8 ^ crcTable[byte(crc>>8)^c]
}

// crcTable holds the CRC-16/XMODEM of each byte value; it is computed once
// and never written again.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// AppendFrame appends to dst the packet carrying data: SYN, data with DC3, SYN
// and ETB stuffed, ETB, and the CRC16 big-endian. It returns an error wrapping
// ErrFrameTooLong if data is longer than MaxData.
func AppendFrame(dst, data []byte) ([]byte, error) {
	if len(data) > MaxData {
		return dst, fmt.Errorf("%w (%d bytes)", ErrFrameTooLong, len(data))
	}
	dst = append(dst, SYN)
	var crc uint16
	for _, c := range data {
		crc = crcByte(crc, c)
		switch c {
		case DC3, SYN, ETB:
			dst = append(dst, DC3, c+0x20)
		default:
			dst = append(dst, c)
		}
	}
	crc = crcByte(crc, ETB)
	return append(dst, ETB, byte(crc>>8), byte(crc)), nil
}

// Kind says what an [Event] is. It is a plain value, safe for concurrent use.
type Kind uint8

// Kinds of link-layer events.
const (
	KindPacket Kind = iota + 1 // a packet (SYN ... ETB CRC)
	KindACK
	KindNAK
	KindEOT
	KindCAN
)

// String returns the name of the event kind.
func (k Kind) String() string {
	switch k {
	case KindPacket:
		return "packet"
	case KindACK:
		return "ACK"
	case KindNAK:
		return "NAK"
	case KindEOT:
		return "EOT"
	case KindCAN:
		return "CAN"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Event is one thing received on the link: a packet or a control byte. It is
// plain data: safe for concurrent reads, not for a concurrent write.
type Event struct {
	Kind Kind
	// Data is a good packet's unstuffed data (KindPacket with Err nil). It
	// belongs to the caller.
	Data []byte
	// Err is set on a packet that must be rejected with NAK: it wraps
	// ErrBadCRC, ErrBadEscape or ErrFrameTooLong. Data is nil then.
	Err error
}

// Decoder reads link-layer events from a byte stream. It skips bytes outside
// a packet that are not ACK, NAK, EOT or CAN, and a SYN inside a packet
// starts a new packet, so it resynchronises after noise or a lost byte.
//
// A Decoder keeps a partly received packet across a read error, so Next may
// be called again after an error the reader recovers from (such as
// [ErrTimeout]). It reads ahead from its reader; do not read that reader
// elsewhere. A Decoder is not safe for concurrent use.
type Decoder struct {
	r       *bufio.Reader
	state   decState
	buf     []byte
	bad     error
	crcHi   byte
	skipped int64
}

type decState uint8

const (
	stIdle decState = iota
	stData
	stEsc
	stCRC1
	stCRC2
)

// NewDecoder returns a decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReader(r), buf: make([]byte, 0, 256)}
}

// Skipped returns how many bytes the decoder has discarded as noise, including
// the bytes of packets abandoned because a new SYN arrived before their end.
func (d *Decoder) Skipped() int64 { return d.skipped }

// Next returns the next event. It returns the reader's error as is, except
// that end of file inside a packet becomes io.ErrUnexpectedEOF.
func (d *Decoder) Next() (Event, error) {
	for {
		if d.state == stData && d.r.Buffered() > 0 {
			// Fast path: decode the data bytes already buffered in one go,
			// up to the next SYN or ETB, or a DC3 the buffer cannot settle.
			b, _ := d.r.Peek(d.r.Buffered())
			if i := d.addData(b); i > 0 {
				d.r.Discard(i)
				continue
			}
		}
		c, err := d.r.ReadByte()
		if err != nil {
			if err == io.EOF && d.state != stIdle {
				err = io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		if ev, ok := d.step(c); ok {
			return ev, nil
		}
	}
}

func (d *Decoder) start() {
	d.state = stData
	d.buf = d.buf[:0]
	d.bad = nil
}

// addData decodes packet data from the start of b: plain bytes and valid
// DC3 escapes, up to a SYN, an ETB, a DC3 followed by anything else, or a
// DC3 at the end of b, which it leaves to step. It returns how many bytes of
// b it used.
func (d *Decoder) addData(b []byte) int {
	i := 0
	for i < len(b) {
		c := b[i]
		switch c {
		case SYN, ETB:
			return i
		case DC3:
			if i+1 == len(b) {
				return i
			}
			switch e := b[i+1]; e {
			case 0x33, 0x36, 0x37:
				c = e - 0x20
				i++
			default:
				return i
			}
		}
		i++
		if len(d.buf) < MaxData {
			d.buf = append(d.buf, c)
		} else {
			d.bad = ErrFrameTooLong
		}
	}
	return i
}

func (d *Decoder) add(c byte) {
	if len(d.buf) < MaxData {
		d.buf = append(d.buf, c)
		return
	}
	d.bad = ErrFrameTooLong
}

// step consumes one byte and reports an event when one is complete.
func (d *Decoder) step(c byte) (Event, bool) {
	switch d.state {
	case stIdle:
		switch c {
		case SYN:
			d.start()
		case ACK:
			return Event{Kind: KindACK}, true
		case NAK:
			return Event{Kind: KindNAK}, true
		case EOT:
			return Event{Kind: KindEOT}, true
		case CAN:
			return Event{Kind: KindCAN}, true
		default:
			d.skipped++
		}
	case stEsc:
		switch c {
		case 0x33, 0x36, 0x37:
			d.add(c - 0x20)
			d.state = stData
			return Event{}, false
		}
		if d.bad == nil {
			d.bad = ErrBadEscape
		}
		d.state = stData
		return d.step(c) // the byte after a bad DC3 keeps its own meaning
	case stData:
		switch c {
		case SYN:
			d.skipped += int64(len(d.buf)) + 1
			d.start()
		case ETB:
			d.state = stCRC1
		case DC3:
			d.state = stEsc
		default:
			d.add(c)
		}
	case stCRC1:
		d.crcHi = c
		d.state = stCRC2
	case stCRC2:
		d.state = stIdle
		if d.bad != nil {
			return Event{Kind: KindPacket, Err: d.bad}, true
		}
		want := uint16(d.crcHi)<<8 | uint16(c)
		if crcByte(CRC16(d.buf), ETB) != want {
			return Event{Kind: KindPacket, Err: ErrBadCRC}, true
		}
		return Event{Kind: KindPacket, Data: append([]byte(nil), d.buf...)}, true
	}
	return Event{}, false
}
