package main

import (
	"errors"
	"strings"
	"testing"
)

const aesPINDialect = "../../iso8583/dialects/aes-pin.json"

func dukptConfig(t *testing.T, kind, dialect string) string {
	t.Helper()
	c := goodConfig
	if kind != "" {
		c = strings.Replace(c, `"port": "/dev/ttyUSB0"`, `"port": "/dev/ttyUSB0", "dukpt": "`+kind+`"`, 1)
	}
	if dialect != "" {
		c = strings.Replace(c, `"response_timeout": "20s"`, `"response_timeout": "20s", "dialect": "`+dialect+`"`, 1)
	}
	return c
}

// pinpad.dukpt chooses the pad's key kind, and the acquirer's dialect must carry its PIN
// blocks: a mismatch is a config error naming pinpad.dukpt, field 52 and both lengths.
func TestConfigDUKPT(t *testing.T) {
	for _, tc := range []struct {
		name, kind, dialect string
		want                string // "" for accepted, with the kind filled in
		filled              string
	}{
		{"default", "", "", "", "tdes"},
		{"tdes", "tdes", "", "", "tdes"},
		{"aes with the AES PIN dialect", "aes", aesPINDialect, "", "aes"},
		{"aes with the default dialect", "aes", "", "16 bytes; field 52 of dialect \"posd ISO 8583:1987 ASCII\" takes exactly 8", ""},
		{"tdes with the AES PIN dialect", "tdes", aesPINDialect, "8 bytes; field 52 of dialect", ""},
		{"unknown kind", "des", "", `"des" is not one of tdes, aes`, ""},
		{"key type instead of kind", "aes128", aesPINDialect, `"aes128" is not one of tdes, aes`, ""},
	} {
		c, err := ParseConfig([]byte(dukptConfig(t, tc.kind, tc.dialect)))
		if tc.want == "" {
			if err != nil || c.PINPad.DUKPT != tc.filled {
				t.Errorf("%s: %v, dukpt %q", tc.name, err, c.PINPad.DUKPT)
			}
			continue
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "pinpad.dukpt" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one for pinpad.dukpt containing %q", tc.name, err, tc.want)
		}
	}
	// The error for the common mistake says what to do.
	_, err := ParseConfig([]byte(dukptConfig(t, "aes", "")))
	if err == nil || !strings.Contains(err.Error(), "aes-pin.json") || !strings.Contains(err.Error(), "field 52") {
		t.Errorf("aes without a dialect: %v", err)
	}
}
