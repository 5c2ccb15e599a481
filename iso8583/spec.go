package iso8583

import (
	"sync"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"
	"github.com/moov-io/iso8583/prefix"
)

// MessageSpec describes every field of a dialect: the moov-io/iso8583 type. [DefaultSpec]
// returns this project's ISO 8583:1987 ASCII dialect. A spec must not be changed once a
// message uses it; it is then safe for concurrent use.
type MessageSpec = moov.MessageSpec

// maxField is the highest field number of a message with primary and secondary bitmaps.
const maxField = 128

// class is the set of characters a field may carry on the wire (ISO 8583:1987 clause 4.1).
type class uint8

const (
	classN   class = iota + 1 // n: digits 0-9
	classAN                   // an: letters and digits
	classANS                  // ans: printable ASCII, space to '~'
	classZ                    // z: track 2 and 3 code set as ASCII: digits and '='
	classXN                   // x+n: 'C' (credit) or 'D' (debit) then digits
	classB                    // b: binary, carried as hexadecimal characters
)

func (c class) String() string {
	switch c {
	case classN:
		return "n"
	case classAN:
		return "an"
	case classANS:
		return "ans"
	case classZ:
		return "z"
	case classXN:
		return "x+n"
	case classB:
		return "b"
	}
	return "unknown"
}

// text is a field value: a string or a byte slice.
type text interface{ ~string | ~[]byte }

// badChar returns the offset of the first byte of s that the class does not allow, or -1.
func (c class) badChar(s []byte) int { return badChar(c, s) }

func badChar[T text](c class, s T) int {
	if c == classXN {
		for i := 0; i < len(s); i++ {
			if ch := s[i]; i == 0 && ch != 'C' && ch != 'D' || i > 0 && !isDigit(ch) {
				return i
			}
		}
		return -1
	}
	if c >= class(len(classChars)) {
		if len(s) > 0 {
			return 0
		}
		return -1
	}
	allowed := &classChars[c]
	for i := 0; i < len(s); i++ {
		if !allowed[s[i]] {
			return i
		}
	}
	return -1
}

// classChars says, for each class but x+n, which bytes it allows. It is built once and
// never changed.
var classChars = func() (t [classB + 1][256]bool) {
	for ch := range 256 {
		b := byte(ch)
		digit := isDigit(b)
		t[classN][ch] = digit
		t[classAN][ch] = digit || b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z'
		t[classANS][ch] = b >= ' ' && b <= '~'
		t[classZ][ch] = digit || b == '='
		t[classB][ch] = digit || b >= 'A' && b <= 'F' || b >= 'a' && b <= 'f'
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// def is one row of the dialect table.
type def struct {
	class     class
	lenDigits int // 0 fixed, 2 LLVAR, 3 LLLVAR
	length    int // see codec
	name      string
}

func fixedDef(c class, length int, name string) def { return def{c, 0, length, name} }
func llvar(c class, max int, name string) def       { return def{c, 2, max, name} }
func lllvar(c class, max int, name string) def      { return def{c, 3, max, name} }

// fields87 is the default dialect: ISO 8583:1987 in ASCII, binary fields as hexadecimal
// characters. It is a function so that no mutable table is shared between callers.
func fields87() map[int]def {
	return map[int]def{
		0:   fixedDef(classN, 4, "message type indicator"),
		2:   llvar(classN, 19, "primary account number"),
		3:   fixedDef(classN, 6, "processing code"),
		4:   fixedDef(classN, 12, "amount, transaction"),
		5:   fixedDef(classN, 12, "amount, settlement"),
		6:   fixedDef(classN, 12, "amount, cardholder billing"),
		7:   fixedDef(classN, 10, "transmission date and time"),
		8:   fixedDef(classN, 8, "amount, cardholder billing fee"),
		9:   fixedDef(classN, 8, "conversion rate, settlement"),
		10:  fixedDef(classN, 8, "conversion rate, cardholder billing"),
		11:  fixedDef(classN, 6, "systems trace audit number"),
		12:  fixedDef(classN, 6, "time, local transaction"),
		13:  fixedDef(classN, 4, "date, local transaction"),
		14:  fixedDef(classN, 4, "date, expiration"),
		15:  fixedDef(classN, 4, "date, settlement"),
		16:  fixedDef(classN, 4, "date, conversion"),
		17:  fixedDef(classN, 4, "date, capture"),
		18:  fixedDef(classN, 4, "merchant type"),
		19:  fixedDef(classN, 3, "acquiring institution country code"),
		20:  fixedDef(classN, 3, "PAN extended, country code"),
		21:  fixedDef(classN, 3, "forwarding institution country code"),
		22:  fixedDef(classN, 3, "point of service entry mode"),
		23:  fixedDef(classN, 3, "card sequence number"),
		24:  fixedDef(classN, 3, "network international identifier"),
		25:  fixedDef(classN, 2, "point of service condition code"),
		26:  fixedDef(classN, 2, "point of service PIN capture code"),
		27:  fixedDef(classN, 1, "authorization identification response length"),
		28:  fixedDef(classXN, 9, "amount, transaction fee"),
		29:  fixedDef(classXN, 9, "amount, settlement fee"),
		30:  fixedDef(classXN, 9, "amount, transaction processing fee"),
		31:  fixedDef(classXN, 9, "amount, settlement processing fee"),
		32:  llvar(classN, 11, "acquiring institution identification code"),
		33:  llvar(classN, 11, "forwarding institution identification code"),
		34:  llvar(classANS, 28, "primary account number, extended"),
		35:  llvar(classZ, 37, "track 2 data"),
		36:  lllvar(classZ, 104, "track 3 data"),
		37:  fixedDef(classAN, 12, "retrieval reference number"),
		38:  fixedDef(classAN, 6, "authorization identification response"),
		39:  fixedDef(classAN, 2, "response code"),
		40:  fixedDef(classAN, 3, "service restriction code"),
		41:  fixedDef(classANS, 8, "card acceptor terminal identification"),
		42:  fixedDef(classANS, 15, "card acceptor identification code"),
		43:  fixedDef(classANS, 40, "card acceptor name/location"),
		44:  llvar(classAN, 25, "additional response data"),
		45:  llvar(classANS, 76, "track 1 data"),
		46:  lllvar(classANS, 999, "additional data, ISO"),
		47:  lllvar(classANS, 999, "additional data, national"),
		48:  lllvar(classANS, 999, "additional data, private"),
		49:  fixedDef(classN, 3, "currency code, transaction"),
		50:  fixedDef(classN, 3, "currency code, settlement"),
		51:  fixedDef(classN, 3, "currency code, cardholder billing"),
		52:  fixedDef(classB, 8, "personal identification number data"),
		53:  fixedDef(classN, 16, "security related control information"),
		54:  lllvar(classAN, 120, "additional amounts"),
		55:  lllvar(classB, 999, "ICC data"),
		56:  lllvar(classANS, 999, "reserved, ISO"),
		57:  lllvar(classANS, 999, "reserved, national"),
		58:  lllvar(classANS, 999, "reserved, national"),
		59:  lllvar(classANS, 999, "reserved, national"),
		60:  lllvar(classANS, 999, "reserved, private"),
		61:  lllvar(classANS, 999, "reserved, private"),
		62:  lllvar(classANS, 999, "reserved, private (KSN)"),
		63:  lllvar(classANS, 999, "reserved, private"),
		64:  fixedDef(classB, 8, "message authentication code"),
		65:  fixedDef(classB, 1, "bitmap, extended"),
		66:  fixedDef(classN, 1, "settlement code"),
		67:  fixedDef(classN, 2, "extended payment code"),
		68:  fixedDef(classN, 3, "receiving institution country code"),
		69:  fixedDef(classN, 3, "settlement institution country code"),
		70:  fixedDef(classN, 3, "network management information code"),
		71:  fixedDef(classN, 4, "message number"),
		72:  fixedDef(classN, 4, "message number, last"),
		73:  fixedDef(classN, 6, "date, action"),
		74:  fixedDef(classN, 10, "credits, number"),
		75:  fixedDef(classN, 10, "credits, reversal number"),
		76:  fixedDef(classN, 10, "debits, number"),
		77:  fixedDef(classN, 10, "debits, reversal number"),
		78:  fixedDef(classN, 10, "transfers, number"),
		79:  fixedDef(classN, 10, "transfers, reversal number"),
		80:  fixedDef(classN, 10, "inquiries, number"),
		81:  fixedDef(classN, 10, "authorizations, number"),
		82:  fixedDef(classN, 12, "credits, processing fee amount"),
		83:  fixedDef(classN, 12, "credits, transaction fee amount"),
		84:  fixedDef(classN, 12, "debits, processing fee amount"),
		85:  fixedDef(classN, 12, "debits, transaction fee amount"),
		86:  fixedDef(classN, 16, "credits, amount"),
		87:  fixedDef(classN, 16, "credits, reversal amount"),
		88:  fixedDef(classN, 16, "debits, amount"),
		89:  fixedDef(classN, 16, "debits, reversal amount"),
		90:  fixedDef(classN, 42, "original data elements"),
		91:  fixedDef(classAN, 1, "file update code"),
		92:  fixedDef(classAN, 2, "file security code"),
		93:  fixedDef(classAN, 5, "response indicator"),
		94:  fixedDef(classAN, 7, "service indicator"),
		95:  fixedDef(classAN, 42, "replacement amounts"),
		96:  fixedDef(classB, 8, "message security code"),
		97:  fixedDef(classXN, 17, "amount, net settlement"),
		98:  fixedDef(classANS, 25, "payee"),
		99:  llvar(classN, 11, "settlement institution identification code"),
		100: llvar(classN, 11, "receiving institution identification code"),
		101: llvar(classANS, 17, "file name"),
		102: llvar(classANS, 28, "account identification 1"),
		103: llvar(classANS, 28, "account identification 2"),
		104: lllvar(classANS, 100, "transaction description"),
		105: lllvar(classANS, 999, "reserved, ISO"),
		106: lllvar(classANS, 999, "reserved, ISO"),
		107: lllvar(classANS, 999, "reserved, ISO"),
		108: lllvar(classANS, 999, "reserved, ISO"),
		109: lllvar(classANS, 999, "reserved, ISO"),
		110: lllvar(classANS, 999, "reserved, ISO"),
		111: lllvar(classANS, 999, "reserved, ISO"),
		112: lllvar(classANS, 999, "reserved, national"),
		113: lllvar(classANS, 999, "reserved, national"),
		114: lllvar(classANS, 999, "reserved, national"),
		115: lllvar(classANS, 999, "reserved, national"),
		116: lllvar(classANS, 999, "reserved, national"),
		117: lllvar(classANS, 999, "reserved, national"),
		118: lllvar(classANS, 999, "reserved, national"),
		119: lllvar(classANS, 999, "reserved, national"),
		120: lllvar(classANS, 999, "reserved, private"),
		121: lllvar(classANS, 999, "reserved, private"),
		122: lllvar(classANS, 999, "reserved, private"),
		123: lllvar(classANS, 999, "reserved, private"),
		124: lllvar(classANS, 999, "reserved, private"),
		125: lllvar(classANS, 999, "reserved, private"),
		126: lllvar(classANS, 999, "reserved, private"),
		127: lllvar(classANS, 999, "reserved, private"),
		128: fixedDef(classB, 8, "message authentication code (secondary)"),
	}
}

// DefaultSpec returns a new copy of the project's default dialect: ISO 8583:1987 with every
// field in ASCII and binary fields as hexadecimal characters, the way jPOS's ISO87APackager
// and Wireshark's ISO 8583 dissector read it. All fields 1 to 128 are defined:
//
//   - MTI n4; bitmap: 16 hexadecimal characters, followed by 16 more for the secondary bitmap
//     exactly when a field 65 to 128 is present.
//   - n fields are digits only, with no padding: a value must have its full length
//     ("000000001000" for an amount of 10.00).
//   - Fixed ans fields (41, 42, 43, 98) are padded on the right with spaces when packed; the
//     spaces are removed when unpacked.
//   - Fields 52, 64, 96 and 128 are 8 bytes as 16 hexadecimal characters; field 55 is LLLVAR
//     binary as hexadecimal characters, its length prefix counting characters.
//   - Field 35 (track 2) is z..37 as ASCII: digits and '=' only, no sentinels.
//   - Field 62 carries the DUKPT KSN as upper-case hexadecimal characters, 20 for TDES
//     and 24 for AES (see [Authorization]); field 53 is n16 as in ISO and cannot hold a KSN.
//     Field 52's 8 bytes take a TDES PIN block only: see [CheckPINFields] for AES.
//   - Field 65 (tertiary bitmap indicator) is defined but rejected by [Pack] and [Unpack]:
//     the dialect has no tertiary bitmap.
//
// Where this departs from a literal reading of ISO 8583:1987 it follows the jPOS ASCII
// packager: track 1 (45) and the additional data fields (46-48) are ans, not an, since real
// track 1 data holds '^' and spaces.
//
// Every field's Packer and Unpacker is this package's codec, which enforces the character
// class; Enc, Pref and Pad describe the same layout in moov's terms. Use the spec with
// [Pack] and [Unpack], not with the Message methods of the same names.
func DefaultSpec() *MessageSpec {
	fields := make(map[int]field.Field, maxField+1)
	for id, d := range fields87() {
		fields[id] = d.field()
	}
	fields[1] = field.NewBitmap(&field.Spec{
		Length:      8,
		Description: "bitmap",
		Enc:         encoding.BytesToASCIIHex,
		Pref:        prefix.Hex.Fixed,
	})
	return &MessageSpec{Name: "posd ISO 8583:1987 ASCII", Fields: fields}
}

func (d def) field() field.Field {
	c := codec{class: d.class, lenDigits: d.lenDigits, enc: encASCII, pref: prefASCII}
	spec := &field.Spec{
		Length:      d.length,
		Description: d.name,
		Enc:         encoding.ASCII,
	}
	switch d.lenDigits {
	case 0:
		spec.Pref = prefix.ASCII.Fixed
	case 2:
		spec.Pref = prefix.ASCII.LL
	default:
		spec.Pref = prefix.ASCII.LLL
	}
	if d.class == classANS && d.lenDigits == 0 {
		spec.Pad = padding.Right(' ')
		c.unpad = true
	}
	if d.class == classB {
		c.enc = encHex
		c.countChars = d.lenDigits != 0
		spec.Enc = encoding.BytesToASCIIHex
		spec.Packer, spec.Unpacker = c, c
		return field.NewBinary(spec)
	}
	spec.Packer, spec.Unpacker = c, c
	return field.NewString(spec)
}

// defaultSpec is the spec shared by messages built without one. It is never handed to
// callers to change: messages built on it expose it through GetSpec, which callers must
// treat as read-only, as for any spec in use.
var defaultSpec = sync.OnceValue(DefaultSpec)
