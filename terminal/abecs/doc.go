// Package abecs speaks the ABECS PIN pad protocol (the public Brazilian PIN pad
// standard) over a serial line: the link layer, usable by both ends, and the
// host (terminal) side of the commands posd needs.
//
// # Link layer
//
// Every command and response travels as a packet
//
//	SYN | stuffed data | ETB | CRC16
//
// where CRC16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection) over the unstuffed data followed by the ETB byte, sent
// big-endian and not stuffed. Inside the data, DC3 (0x13), SYN (0x16) and ETB
// (0x17) are sent as DC3 followed by 0x33, 0x36 and 0x37. Data is at most
// [MaxData] bytes. [AppendFrame] and [Decoder] implement the framing and hold
// no state about the conversation, so the PIN pad simulator (package
// terminal/padsim) uses them too.
//
// The host sends a command and waits [Options.ACKTimeout] for ACK (accepted)
// or NAK (bad packet); it sends the command again on NAK or silence, at most
// [Options.Retries] times in all. The response is not acknowledged; when its
// CRC is wrong the host answers NAK and the pad sends it again, up to
// Options.Retries times. CAN from the host aborts the command in progress and
// the pad answers EOT. A receiver skips any byte outside a packet that is not
// ACK, NAK, EOT or CAN, so it resynchronises on the next SYN.
//
// # Application layer
//
// A command is a 3-letter id followed by zero or more blocks, each a 3-digit
// decimal length and that many bytes. A response is the same id, a 3-digit
// status (000 is success) and, on success, blocks; an error response is
// exactly id and status. A pad answers an unknown command with ERR010.
// [Command], [Response] and [StatusError] model these; the common statuses
// have sentinels ([ErrCancelled], [ErrPadTimeout], [ErrNoCard], ...) that
// errors.Is matches against a *StatusError.
//
// # Command formats
//
// The fields below follow the classic ABECS 1.x command set. Where this
// package had no public source for a detail it made the plain choice stated
// here; both ends in this repository use these layouts. Field types: N is
// decimal digits, A and S are printable ASCII (left-aligned, space padded),
// H is upper-case hexadecimal.
//
//	OPN  command: no blocks.                    response: OPN000
//	DSP  command: one block of 32: S32 text,     response: DSP000
//	     chars 1-16 on line 1, 17-32 on line 2.
//	CLO  command: one block of 32: S32 message   response: CLO000
//	     shown after the session closes (2x16).
//	GIN  command: one block of 2: N2 acquirer index ("00": the pad itself).
//	     response: one block of 100:
//	       A20 manufacturer   A19 model   A1 contactless ("C" = present)
//	       A20 firmware version   A4 ABECS version   A16 application version
//	       A20 serial number
//	CKE  command: one block of 4: N1 keys, N1 swipe (1 = report),
//	       N1 chip card (0 = no, 1 = report insertion, 2 = report removal),
//	       N1 contactless ("0").
//	     response: one block of 227: N1 event (0 key, 1 swipe, 2 inserted,
//	       3 removed)   N2 key code (00 ENTER, 04-07 F1-F4, 08 CLEAR,
//	       13 CANCEL)   N2 + A76 track 1   N2 + A37 track 2   N3 + A104 track 3
//	GCR  command: one block of 41:
//	       N2 acquirer index ("00" = all)    N2 application type ("00" = all)
//	       N12 amount in minor units         N6 date YYMMDD   N6 time HHMMSS
//	       A10 EMV table version ("0000000000")
//	       N2 number of listed applications ("00")   N1 contactless ("0" = off)
//	     response: one block of 342:
//	       N2 card type ("00" magnetic stripe, "03" EMV contact chip)
//	       N1 previous chip status ("1": a stripe read after a failed chip
//	          read, i.e. a fallback)
//	       N2 application type   N2 acquirer index   N2 record index
//	       N2 track 1 length  A76 track 1     N2 track 2 length  A37 track 2
//	       N3 track 3 length  A104 track 3    N2 PAN length      A19 PAN
//	       N2 PAN sequence number   S16 application label   N3 service code
//	       S26 cardholder name      N6 expiry YYMMDD (day 00 from a stripe)
//	       A29 reserved ("0"s)      N3 issuer country code
//	       N3 length of acquirer data ("000": this package sends none)
//	     Tracks are sent without their start and end sentinels. For a chip
//	     card track 2 is the track 2 equivalent data (tag 57) with '=' as
//	     separator, and PAN, sequence number, label, service code, name,
//	     expiry and country come from tags 5A, 5F34, 50, 5F30, 5F20, 5F24
//	     and 5F28.
//	GPN  command: one block of 93:
//	       N1 method ("3" = DUKPT TDES, "4" = DUKPT AES)    N2 key index
//	       H32 working key (unused by DUKPT: 32 "0"s)
//	       N2 PAN length   A19 PAN
//	       N1 number of entries ("1")  N2 minimum PIN length  N2 maximum PIN length
//	       S32 prompt (2x16)
//	     response, method 3: one block of 36: H16 encrypted PIN block (ISO 9564
//	       format 0) and H20 KSN (ANSI X9.24-1).
//	     response, method 4: one block of 56: H32 encrypted PIN block (ISO 9564
//	       format 4, AES) and H24 KSN (ANSI X9.24-3: 8-byte initial key ID and
//	       32-bit counter).
//	     A pad whose key in the slot is not of the method asked answers 042.
//	GOC  command: two blocks. 1: N12 amount   N12 cashback
//	       N1 card in exception list ("0")   N1 online capable ("1")
//	       N1 PIN method ("3" = DUKPT TDES, "4" = DUKPT AES)   N2 key index
//	       H32 working key
//	       N1 terminal risk management   H8 floor limit
//	       N2 target percentage   H8 threshold   N2 maximum target percentage
//	       N3 length of acquirer data ("000")
//	     2: the tags to return, their hex concatenated ("9F269F27...").
//	     response: one block: N1 decision (0 approved offline, 1 declined
//	       offline, 2 go online)   N1 signature   N1 offline PIN verified
//	       N1 offline PIN failures   N1 offline PIN blocked   N1 online PIN
//	       H16 encrypted PIN block   H20 KSN (zeros without an online PIN);
//	       with PIN method 4: H32 block (ISO 9564 format 4) and H24 KSN
//	       N3 length + H EMV data (BER-TLV of the requested tags, in hex)
//	       N3 length + acquirer data
//	FNC  command: two blocks. 1: N1 communication status (0 the host
//	       answered, 1 it did not)   A2 response code (field 39; spaces
//	       without an answer)   N3 length + H issuer data (BER-TLV of 91,
//	       71, 72, in hex)   N3 length of acquirer data ("000")
//	     2: the tags to return, as for GOC.
//	     response: one block: N1 decision (0 approved: TC, 1 declined: AAC)
//	       N3 length + H EMV data   N3 length + acquirer data
//
// PIN method 4 (GPN and GOC) is this package's choice for AES DUKPT: the
// ABECS 1.x documents name DUKPT TDES only.
//
// Hexadecimal (H) data may be upper or lower case on input and is sent upper
// case. GIN, CKE, GOC and FNC carry their EMV data in hexadecimal, which
// keeps the frames printable; the ABECS 1.x documents leave pads and hosts
// free in some of these details, and both ends in this repository agree on
// the layouts above.
//
// While a command waits for the cardholder, a pad may send notification
// responses with status 002; the client skips them.
//
// # Sensitive data
//
// Tracks, PANs, PIN blocks and EMV data never appear in an error or in the
// String, GoString or LogValue of any type here; PANs are masked to their
// first 6 and last 4 digits.
//
// # Robustness
//
// No byte sequence from the line makes this package panic: the decoder
// resynchronises on the next SYN, a bad packet is NAKed, and a response that
// does not parse ends that command with an error wrapping ErrBadResponse.
// [SerialPort] turns go.bug.st/serial's (0, nil) read timeout into
// [ErrTimeout] and ENOTTY on the modem lines into [ErrNoModemLines]; it never
// sets the modem lines. A port that fails (EIO, closed) ends the [Client]:
// [Client.Done] is closed and [Client.Err] says why.
package abecs
