package fwapi

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeRequest feeds arbitrary bodies to the JSON request decoder of
// the install, check and rollback endpoints: it must never panic, and must
// accept only one JSON object with known fields.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(`{"source":"/media/usb/posd-2.0.0","who":"alice"}`)
	f.Add(`{"source":"https://example.com/b.tar","who":"a","x":1}`)
	f.Add(`{"who":"a"}{"who":"b"}`)
	f.Add(`"just a string"`)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/v1/firmware/install", strings.NewReader(body))
		var req request
		if err := decodeRequest(r, &req); err == nil && strings.Count(body, "{") == 0 {
			t.Fatalf("accepted %q", body)
		}
	})
}
