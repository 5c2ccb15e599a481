package iso8583_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
)

const keyxDialectFile = "dialects/mac-retail-keyx.json"

// keyxDialect parses the shipped key-exchange dialect with its "key_exchange" object
// replaced by obj ("" keeps it).
func keyxDialect(t *testing.T, obj string) (*iso8583.Dialect, error) {
	t.Helper()
	b, err := os.ReadFile(keyxDialectFile)
	if err != nil {
		t.Fatal(err)
	}
	if obj == "" {
		return iso8583.ParseDialect(b)
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	file["key_exchange"] = json.RawMessage(obj)
	b, _ = json.Marshal(file)
	return iso8583.ParseDialect(b)
}

func TestKeyExchangeDialect(t *testing.T) {
	d, err := keyxDialect(t, "")
	if err != nil {
		t.Fatal(err)
	}
	x := d.KeyExchange
	if x == nil || x.Code(iso8583.KeyMAC) != "162" || x.Code(iso8583.KeyPIN) != "161" || x.Code(iso8583.KeyData) != "163" ||
		x.Form != iso8583.KeyFormTR31 || x.KeyField != 120 || x.KCVField != 123 {
		t.Fatalf("key exchange: %+v", x)
	}
	d, err = keyxDialect(t, `{"codes": {"mac": "812"}, "key_field": 120, "kcv_field": 123, "form": "tr31"}`)
	if err != nil {
		t.Fatal(err)
	}
	if x := d.KeyExchange; x.Code(iso8583.KeyMAC) != "812" || x.Code(iso8583.KeyPIN) != "161" || x.Form != iso8583.KeyFormTR31 {
		t.Fatalf("key exchange: %+v", x)
	}
	// The legacy form is refused at load, saying why.
	_, err = keyxDialect(t, `{"key_field": 120, "kcv_field": 123, "form": "legacy"}`)
	var de *iso8583.DialectError
	if !errors.Is(err, iso8583.ErrLegacyKeyForm) || !errors.As(err, &de) || de.Setting != "key_exchange.form" || !strings.Contains(err.Error(), "no key usage and no integrity") {
		t.Fatalf("legacy form: %v, want ErrLegacyKeyForm at key_exchange.form", err)
	}

	for _, c := range []struct{ obj, setting string }{
		{`{"kcv_field": 123}`, "key_exchange.key_field"},
		{`{"key_field": 120}`, "key_exchange.kcv_field"},
		{`{"key_field": 120, "kcv_field": 120}`, "key_exchange.kcv_field"},
		{`{"key_field": 64, "kcv_field": 123}`, "key_exchange.key_field"},
		{`{"key_field": 52, "kcv_field": 123}`, "key_exchange.key_field"},  // binary
		{`{"key_field": 120, "kcv_field": 53}`, "key_exchange.kcv_field"},  // numeric
		{`{"key_field": 38, "kcv_field": 123}`, "key_exchange.key_field"},  // too short, fixed
		{`{"key_field": 120, "kcv_field": 200}`, "key_exchange.kcv_field"}, // no such field
		{`{"key_field": 120, "kcv_field": 123, "form": "x9.17"}`, "key_exchange.form"},
		{`{"key_field": 120, "kcv_field": 123, "codes": {"mac": "161"}}`, "key_exchange.codes.mac"},
		{`{"key_field": 120, "kcv_field": 123, "codes": {"mac": "301"}}`, "key_exchange.codes.mac"},
		{`{"key_field": 120, "kcv_field": 123, "codes": {"mac": "16"}}`, "key_exchange.codes.mac"},
		{`{"key_field": 120, "kcv_field": 123, "codes": {"kek": "164"}}`, "key_exchange.codes.kek"},
		{`{"key_field": 120, "kcv_field": 123, "kcv": 1}`, "key_exchange"},
	} {
		_, err := keyxDialect(t, c.obj)
		var de *iso8583.DialectError
		if !errors.As(err, &de) || de.Setting != c.setting {
			t.Errorf("%s: got %v, want a DialectError at %s", c.obj, err, c.setting)
		}
	}
}

// TestKeyChangeMessages: the request, the host's reading of it, its answer and the
// terminal's reading of the answer, through the dialect's wire form.
func TestKeyChangeMessages(t *testing.T) {
	d, err := keyxDialect(t, "")
	if err != nil {
		t.Fatal(err)
	}
	x := d.KeyExchange
	wire := func(m *iso8583.Message) *iso8583.Message {
		t.Helper()
		c, err := iso8583.Convert(m, d.Spec)
		if err != nil {
			t.Fatal(err)
		}
		b, err := iso8583.Pack(c)
		if err != nil {
			t.Fatal(err)
		}
		out, err := iso8583.Unpack(d.Spec, b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	at := time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	req, err := x.Request(iso8583.KeyChange{Key: iso8583.KeyMAC, STAN: 42, TransmissionTime: at, TerminalID: "TERM0001"})
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := x.ParseRequest(wire(req))
	if err != nil || !ok || got.Key != iso8583.KeyMAC || got.STAN != 42 || got.TerminalID != "TERM0001" || got.Confirm != nil {
		t.Fatalf("request read as %+v, %t, %v", got, ok, err)
	}
	if _, err := x.Request(iso8583.KeyChange{Key: "kek", STAN: 1, TransmissionTime: at}); err == nil {
		t.Error("a key change of an unknown key was built")
	}
	conf, err := x.Request(iso8583.KeyChange{Key: iso8583.KeyMAC, STAN: 43, TransmissionTime: at, TerminalID: "TERM0001", Confirm: []byte{0x08, 0xD7, 0xB4}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := x.ParseRequest(wire(conf)); err != nil || string(got.Confirm) != "\x08\xD7\xB4" {
		t.Fatalf("confirmation read as %+v, %v", got, err)
	}
	echo, _ := iso8583.NetworkManagement{Code: iso8583.NMEcho, STAN: 44, TransmissionTime: at}.Message()
	if _, ok, _ := x.ParseRequest(wire(echo)); ok {
		t.Error("an echo read as a key change")
	}

	// The answer.
	const block = "B0080M3TC00N0000" + "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF" + "0123456789ABCDEF"
	resp := wire(req)
	resp.MTI(iso8583.MTINetworkManagementResponse)
	if err := resp.Field(39, "00"); err != nil {
		t.Fatal(err)
	}
	if err := x.Answer(resp, block, []byte{0x08, 0xD7, 0xB4}); err != nil {
		t.Fatal(err)
	}
	r, err := x.ParseResponse(wire(resp), false)
	if err != nil || r.ResponseCode != "00" || r.Key != iso8583.KeyMAC || r.Block != block || string(r.CheckValue) != "\x08\xD7\xB4" {
		t.Fatalf("answer read as %+v, %v", r, err)
	}
	// An approved answer without the key, or without its check value, is refused naming
	// the field; a decline needs neither.
	for _, c := range []struct {
		unset int
		rc    string
		want  int
	}{{120, "00", 120}, {123, "00", 123}, {120, "91", 0}} {
		m := wire(resp)
		m.UnsetField(c.unset)
		_ = m.Field(39, c.rc)
		_, err := x.ParseResponse(m, false)
		var fe *iso8583.FieldError
		switch {
		case c.want == 0 && err != nil:
			t.Errorf("decline without field %d: %v", c.unset, err)
		case c.want != 0 && (!errors.As(err, &fe) || fe.Field != c.want):
			t.Errorf("approved without field %d: %v", c.unset, err)
		}
	}
	m := wire(resp)
	_ = m.Field(123, "XYZ")
	if _, err := x.ParseResponse(m, false); err == nil || !strings.Contains(err.Error(), "123") {
		t.Errorf("a check value that is not hex: %v", err)
	}
}
