package iso8583

import (
	"embed"
	"io/fs"
)

//go:embed dialects/*.json
var shipped embed.FS

// ShippedDialects returns the dialect files shipped with posd, the repository's
// iso8583/dialects folder, as a read-only file system holding that folder:
// dialects/aes-pin.json (the default dialect with a 16-byte field 52 for AES DUKPT PIN
// blocks), dialects/pos-conditions.json (the default dialect with fixed fields 24, 25
// and 43, an example of a "messages" object), dialects/bcd-tpdu.json (binary bitmap, BCD
// numerics and lengths, a 5-byte TPDU, field 55 as BER-TLV: jPOS's ISO87BPackager over
// NACChannel), dialects/ebcdic.json (EBCDIC MTI, fields and lengths, binary bitmap),
// dialects/binary.json (ASCII text and numerics, binary bitmap, raw b fields: the layout
// Wireshark's ISO 8583 dissector reads with "Bin data not encoded") and
// dialects/mac-retail.json (the default dialect with a retail MAC in field 64, or 128 with
// a secondary bitmap, over the whole message: an example of a "mac" object), and
// dialects/mac-retail-keyx.json (mac-retail.json with working-key changes, the key in field
// 120 and its check value in 123: an example of a "key_exchange" object);
// each file's "description" says what it is modelled on. They are built into the binary so that a
// program can write one out or parse it with [ParseDialect] without the source tree. Safe
// for concurrent use.
func ShippedDialects() fs.FS { return shipped }
