package hostsim_test

import (
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

const advicePAN = "4761739001010010"

// offlineAdvice is an approved 0220 of an offline approval: STAN stan, sent at sent.
func offlineAdvice(t *testing.T, stan uint32, sent time.Time) iso8583.Advice {
	return iso8583.Advice{AmountMinor: 12_00, CurrencyNumeric: "978", STAN: stan, TransmissionTime: sent,
		LocalTime: localAt, PAN: mustPAN(t, advicePAN), Expiry: "3012", EntryMode: "051",
		TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", ApprovalCode: "Y10040", ResponseCode: "00"}
}

// reversalOfAdvice is an 0400 naming a (as sent: its MTI, STAN and field 7).
func reversalOfAdvice(a iso8583.Advice, stan uint32) iso8583.Reversal {
	return iso8583.Reversal{STAN: stan, TransmissionTime: a.TransmissionTime.Add(time.Hour),
		OriginalMTI: a.MTI(), OriginalSTAN: a.STAN, OriginalTransmissionTime: a.TransmissionTime,
		PAN: a.PAN, AmountMinor: a.AmountMinor, CurrencyNumeric: a.CurrencyNumeric, TerminalID: a.TerminalID,
		MerchantID: a.MerchantID, ReasonCode: iso8583.ReasonLateResponse}
}

func charged(ch []hostsim.Charge) int {
	n := 0
	for _, c := range ch {
		if c.Charged() {
			n++
		}
	}
	return n
}

func TestParseMatchBy(t *testing.T) {
	for in, want := range map[string]hostsim.MatchBy{"": hostsim.MatchLocalTime, "local": hostsim.MatchLocalTime, "transmission": hostsim.MatchTransmission} {
		if got, err := hostsim.ParseMatchBy(in); err != nil || got != want {
			t.Errorf("ParseMatchBy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := hostsim.ParseMatchBy("stan"); err == nil {
		t.Error(`ParseMatchBy("stan") succeeded`)
	}
	if _, err := hostsim.NewServer(hostsim.Options{BDK: bdk(t), MatchBy: "field7"}); err == nil {
		t.Error("NewServer took MatchBy field7")
	}
}

// A strict host knows an advice by terminal, STAN and field 7: a repeat (0221) with the
// same field 7 is answered and not booked again; the same advice resent with a new field 7
// is a second sale, charged twice. The default host books it once either way.
func TestMatchTransmissionAdvices(t *testing.T) {
	for _, tc := range []struct {
		match       hostsim.MatchBy
		resentTwice int // charges standing after a resend with a new field 7
	}{{hostsim.MatchLocalTime, 1}, {hostsim.MatchTransmission, 2}} {
		t.Run(string(tc.match), func(t *testing.T) {
			s := newServer(t, hostsim.Options{MatchBy: tc.match})
			a := offlineAdvice(t, 40, sentAt)
			for _, repeat := range []bool{false, true, true} {
				a.Repeat = repeat
				if r := answer(t, s, msg(t)(a.Message())); r.ResponseCode != "00" {
					t.Fatalf("0220 repeat=%t: %+v", repeat, r)
				}
			}
			ch := s.Charges()
			if len(ch) != 1 || ch[0].Times != 3 || !ch[0].Charged() || ch[0].MTI != "0220" {
				t.Fatalf("after a 0220 and two 0221 with the same field 7: %v", ch)
			}
			// Resent with a new field 7, as posd did before issue 12.
			a.Repeat = false
			a.TransmissionTime = sentAt.Add(5 * time.Minute)
			if r := answer(t, s, msg(t)(a.Message())); r.ResponseCode != "00" {
				t.Fatalf("resend: %+v", r)
			}
			ch = s.Charges()
			if got := charged(ch); got != tc.resentTwice {
				t.Fatalf("%d charges standing, want %d:\n%v", got, tc.resentTwice, ch)
			}
			if bal, _ := s.Balance(advicePAN); bal != 1_000_000_00-int64(tc.resentTwice)*12_00 {
				t.Errorf("balance %d", bal)
			}
		})
	}
}

// A reversal names an advice by its MTI (0220 or 0221), STAN and field 7 and gives back
// that advice's charge, under both matchings; under MatchTransmission it names one of two
// copies sent with different fields 7, and a copy of the reversal (same terminal, STAN,
// field 7) is answered and not counted again.
func TestMatchReversalOfAdvice(t *testing.T) {
	for _, match := range []hostsim.MatchBy{hostsim.MatchLocalTime, hostsim.MatchTransmission} {
		for _, firstMTI := range []string{"0220", "0221"} {
			t.Run(string(match)+"/"+firstMTI, func(t *testing.T) {
				s := newServer(t, hostsim.Options{MatchBy: match})
				a := offlineAdvice(t, 50, sentAt)
				a.Repeat = firstMTI == "0221" // sent as a repeat first, as after a crash
				answer(t, s, msg(t)(a.Message()))
				rev := reversalOfAdvice(a, 51)
				for range 2 { // the second is a copy
					if r := answer(t, s, msg(t)(rev.Message())); r.ResponseCode != "00" || r.MTI != "0410" {
						t.Fatalf("reversal naming %s: %+v", rev.OriginalMTI, r)
					}
				}
				ch := s.Charges()
				wantReversals := map[hostsim.MatchBy]int{hostsim.MatchLocalTime: 2, hostsim.MatchTransmission: 1}[match]
				if len(ch) != 1 || !ch[0].Reversed || ch[0].Charged() || ch[0].Reversals != wantReversals {
					t.Fatalf("charges: %v", ch)
				}
				if bal, _ := s.Balance(advicePAN); bal != 1_000_000_00 {
					t.Errorf("balance %d, want the charge given back once", bal)
				}
			})
		}
	}

	t.Run("two copies with different fields 7", func(t *testing.T) {
		s := newServer(t, hostsim.Options{MatchBy: hostsim.MatchTransmission})
		first := offlineAdvice(t, 60, sentAt)
		second := first
		second.TransmissionTime = sentAt.Add(time.Minute)
		answer(t, s, msg(t)(first.Message()))
		answer(t, s, msg(t)(second.Message()))
		if r := answer(t, s, msg(t)(reversalOfAdvice(second, 61).Message())); r.ResponseCode != "00" {
			t.Fatalf("reversal: %+v", r)
		}
		ch := s.Charges()
		if len(ch) != 2 || !ch[0].Charged() || ch[1].Charged() || !ch[1].Reversed {
			t.Fatalf("the reversal did not undo exactly the copy it names:\n%v", ch)
		}
	})
}

// A completion (0220 whose field 90 names an approved 0100) replaces the authorization's
// hold under both matchings, also when it reuses the authorization's STAN and local time.
func TestMatchCompletion(t *testing.T) {
	for _, match := range []hostsim.MatchBy{hostsim.MatchLocalTime, hostsim.MatchTransmission} {
		for _, sameSTAN := range []bool{false, true} {
			name := string(match) + map[bool]string{false: "/own STAN", true: "/the 0100's STAN"}[sameSTAN]
			t.Run(name, func(t *testing.T) {
				s := newServer(t, hostsim.Options{MatchBy: match})
				pre := auth(t, 70, advicePAN, 50_00)
				pre.MTI = "0100"
				if r := answer(t, s, msg(t)(pre.Message())); r.ResponseCode != "00" {
					t.Fatalf("0100: %+v", r)
				}
				c := offlineAdvice(t, 71, sentAt.Add(time.Hour))
				c.AmountMinor, c.ApprovalCode, c.EntryMode = 42_00, "000001", pre.EntryMode
				c.Original = &iso8583.Original{MTI: "0100", STAN: 70, TransmissionTime: pre.TransmissionTime}
				if sameSTAN {
					c.STAN, c.LocalTime = pre.STAN, pre.LocalTime
				}
				if r := answer(t, s, msg(t)(c.Message())); r.ResponseCode != "00" || r.MTI != "0230" {
					t.Fatalf("completion: %+v", r)
				}
				if bal, _ := s.Balance(advicePAN); bal != 1_000_000_00-42_00 {
					t.Errorf("balance %d, want the completion's amount taken and the hold released", bal)
				}
				ch := s.Charges()
				if len(ch) != 2 || !ch[0].Completed || ch[0].Charged() || !ch[1].Charged() || ch[1].AmountMinor != 42_00 {
					t.Fatalf("charges:\n%v", ch)
				}
			})
		}
	}
}
