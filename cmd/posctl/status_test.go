package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestPrintStatus: the state and its reasons come first, then each part in words.
func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	body := `{"status":"down","reasons":["acquirer 10.0.0.1:8583 unreachable for 3m0s (connection refused)","2 parked messages (posctl saf list)"],
	"poiid":"POSD-T1","terminal_id":"T1",
	"acquirer":{"host":"10.0.0.1:8583","connected":false,"sign_on":true,"since":"2026-12-06T11:57:00Z","last_error":"connection refused","in_flight":0},
	"acquirer_hosts":[{"host":"10.0.0.1:8583","active":false,"connected":false,"last_error":"connection refused"},{"host":"10.0.0.2:8583","active":true,"connected":true,"since":"2026-12-06T11:58:00Z"}],
	"devices":[{"name":"pinpad","port":"/dev/ttyS0","state":"connected","since":"2026-12-06T10:00:00Z","reconnects":2,"info":"ACME P1 fw 1.0","last_seen":"2026-12-06T11:59:58Z"}],
	"store":{"path":"/var/lib/posd/posd.db","size_bytes":3145728,"cap_bytes":67108864},
	"queue":{"depth":2,"pending":0,"parked":2,"reversals":2,"advices":0,"oldest":"2026-12-06T11:00:00Z"},
	"open_batch":7,"last_close":{"number":6,"ended":"2026-12-05T23:00:00Z","response_code":"00","by":"auto"},
	"firmware":{"active":"A","slots":[{"name":"A","state":"ready","version":"1.2.0","confirmed":true},{"name":"B","state":"empty"}]}}`
	var st statusAnswer
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printStatus(&b, &st, now)
	out := b.String()
	for _, want := range []string{
		"posd down, POIID POSD-T1\n",
		"  ! acquirer 10.0.0.1:8583 unreachable for 3m0s (connection refused)\n  ! 2 parked messages",
		"acquirer   10.0.0.1:8583 DOWN since ",
		"    primary  10.0.0.1:8583 down (connection refused)\n",
		"    backup   10.0.0.2:8583 connected since ", ", active: the next transactions go here\n",
		"pinpad     /dev/ttyS0     connected since", ", 2 reconnects", "ACME P1 fw 1.0",
		"store      /var/lib/posd/posd.db 3.0 MiB of 64 MiB (4%)",
		"queue      2 queued (0 pending, 2 parked; 2 reversals, 0 advices), oldest queued 1h0m0s ago",
		"open batch 7; last close: batch 6 at ", "response 00, by auto",
		"firmware   slot A ready 1.2.0 (active, confirmed); slot B empty",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("posctl status lacks %q:\n%s", want, out)
		}
	}
}
