package magstripe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/posd-dev/posd/terminal/card"
	"github.com/posd-dev/posd/terminal/magstripe"
	"github.com/posd-dev/posd/terminal/money"
	"github.com/posd-dev/posd/terminal/ptypair"
)

const (
	t1  = "B4761739001010010^VISA ACQUIRER TEST/CARD 01^2512201123400001230"
	t2  = "4761739001010010=25122011234000001230"
	t3  = "011234567890123445=724724100000000000030300XXXX040400099010=************************==1=0000000000000000"
	pan = "4761739001010010"
)

func TestParseFormats(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		t1, t2 string
		t3     string
		failed []int
	}{
		{"MagTek CR", "%" + t1 + "?;" + t2 + "?\r", t1, t2, "", nil},
		{"STX ETX", "\x02%" + t1 + "?;" + t2 + "?\x03", t1, t2, "", nil},
		{"ESC CR LF", "\x1b%" + t1 + "?;" + t2 + "?\r\n", t1, t2, "", nil},
		{"track 2 only", ";" + t2 + "?\r", "", t2, "", nil},
		{"three tracks, + sentinel", "%" + t1 + "?;" + t2 + "?+" + t3[:20] + "?", t1, t2, t3[:20], nil},
		{"three tracks, ISO 4909 ;", "%" + t1 + "?;" + t2 + "?;" + t3[:20] + "?", t1, t2, t3[:20], nil},
		{"track 1 error", "%E?;" + t2 + "?\r", "", t2, "", []int{1}},
		{"track 2 error", "%" + t1 + "?;E?+E?\r", t1, "", "", []int{2, 3}},
		{"no terminator", ";" + t2 + "?", "", t2, "", nil},
		{"spaces between", "%" + t1 + "? ;" + t2 + "? \r", t1, t2, "", nil},
	}
	for _, c := range cases {
		s, err := magstripe.Parse([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if s.Track1() != c.t1 || s.Track2() != c.t2 || s.Track3() != c.t3 {
			t.Errorf("%s: tracks %v", c.name, s)
		}
		for n := 1; n <= 3; n++ {
			want := false
			for _, f := range c.failed {
				want = want || f == n
			}
			if s.Failed(n) != want {
				t.Errorf("%s: Failed(%d) = %v", c.name, n, s.Failed(n))
			}
		}
		// What the reader hands on passes the track rules of package card.
		if c.t2 != "" {
			if _, err := card.ParseSwipe(s.Track1(), s.Track2()); err != nil {
				t.Errorf("%s: card.ParseSwipe: %v", c.name, err)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]struct {
		in   string
		want error
	}{
		"lone E":             {"E\r", magstripe.ErrUnreadable},
		"all tracks E":       {"%E?;E?+E?\r", magstripe.ErrUnreadable},
		"empty":              {"\r", magstripe.ErrFormat},
		"garbage":            {"hello\r", magstripe.ErrFormat},
		"no end sentinel":    {"%" + t1 + ";" + t2 + "\r", magstripe.ErrFormat},
		"track 2 letters":    {";4761739001010010=2512ABC?\r", magstripe.ErrFormat},
		"track 1 lower case": {"%b4761^x^2512?\r", magstripe.ErrFormat},
		"track 2 too long":   {";" + strings.Repeat("1", 38) + "?", magstripe.ErrFormat},
		"track 1 too long":   {"%" + strings.Repeat("A", 77) + "?", magstripe.ErrFormat},
		"track twice":        {";" + t2 + "?;" + t2 + "?;" + t2 + "?", magstripe.ErrFormat},
		"empty track":        {";?", magstripe.ErrFormat},
		"LRC after sentinel": {";" + t2 + "?7\r", magstripe.ErrFormat},
	}
	for name, c := range cases {
		_, err := magstripe.Parse([]byte(c.in))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "4761") || strings.Contains(err.Error(), "2512")) {
			t.Errorf("%s: error shows track data: %v", name, err)
		}
	}
}

func TestSwipeMasking(t *testing.T) {
	s, err := magstripe.Parse([]byte("%" + t1 + "?;" + t2 + "?\r"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("swipe", "s", s)
	out := fmt.Sprintf("%v %+v %#v %s", s, s, s, s) + buf.String()
	if strings.Contains(out, pan) || strings.Contains(out, "2512201") || strings.Contains(out, "ACQUIRER") {
		t.Fatalf("swipe leaks: %s", out)
	}
	if !strings.Contains(out, "476173******0010 t1 t2") {
		t.Fatalf("masked form: %s", out)
	}
}

// readerLink is a Reader on side A of a fresh pty pair and the "hardware"
// writing on side B.
type readerLink struct {
	r    *magstripe.Reader
	dev  serial.Port
	pair *ptypair.Pair
}

func newReaderLink(t *testing.T, opts *magstripe.Options) *readerLink {
	t.Helper()
	pair, err := ptypair.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	dev, err := serial.Open(pair.B, &serial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	r, err := magstripe.Open(pair.A, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &readerLink{r: r, dev: dev, pair: pair}
}

func (l *readerLink) swipe(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(l.dev, s); err != nil {
		t.Fatal(err)
	}
}

var eur = money.Currency{Code: "EUR", Numeric: "978", Exponent: 2}

func TestReaderOverPTY(t *testing.T) {
	l := newReaderLink(t, nil)
	// A swipe before anybody asks is not used for the next sale.
	l.swipe(t, "\x02%"+t1+"?;"+t2+"?\x03")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	type res struct {
		t1, t2 string
		err    error
	}
	got := make(chan res, 1)
	go func() {
		a, b, err := l.r.ReadCard(ctx, money.Amount{Minor: 100, Currency: eur})
		got <- res{a, b, err}
	}()
	time.Sleep(50 * time.Millisecond)
	// Split across writes, as a slow line delivers it.
	l.swipe(t, "%"+t1[:10])
	time.Sleep(10 * time.Millisecond)
	l.swipe(t, t1[10:]+"?;"+t2+"?\r\n")
	r := <-got
	if r.err != nil || r.t1 != t1 || r.t2 != t2 {
		t.Fatalf("ReadCard: %q %q %v", r.t1, r.t2, r.err)
	}

	// Track 2 unreadable: a clean error for that sale.
	go func() {
		a, b, err := l.r.ReadCard(ctx, money.Amount{})
		got <- res{a, b, err}
	}()
	time.Sleep(50 * time.Millisecond)
	l.swipe(t, "%"+t1+"?;E?\r")
	if r := <-got; !errors.Is(r.err, magstripe.ErrUnreadable) || r.t1 != "" {
		t.Fatalf("track 2 E: %+v", r)
	}

	// Garbage with no terminator, then silence longer than the gap, then a
	// good swipe: the reader resynchronises.
	go func() {
		a, b, err := l.r.ReadCard(ctx, money.Amount{})
		got <- res{a, b, err}
	}()
	time.Sleep(50 * time.Millisecond)
	l.swipe(t, "\x00\xff%garbage")
	time.Sleep(1200 * time.Millisecond)
	l.swipe(t, ";"+t2+"?\r")
	if r := <-got; r.err != nil || r.t2 != t2 {
		t.Fatalf("after garbage: %+v", r)
	}
}

func TestReaderTimeoutAndLongRecord(t *testing.T) {
	l := newReaderLink(t, &magstripe.Options{MaxRecord: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := l.r.ReadCard(ctx, money.Amount{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no swipe: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := l.r.Next(ctx); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.swipe(t, strings.Repeat("%", 200)+"\r")
	if err := <-done; !errors.Is(err, magstripe.ErrFormat) {
		t.Fatalf("long record: %v", err)
	}
}

func TestReaderPortFailure(t *testing.T) {
	l := newReaderLink(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, _, err := l.r.ReadCard(ctx, money.Amount{}); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.pair.Close() // the cable is pulled: reads fail with EIO
	if err := <-done; !errors.Is(err, magstripe.ErrClosed) {
		t.Fatalf("ReadCard on a failed port: %v", err)
	}
	select {
	case <-l.r.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed")
	}
	if err := l.r.Err(); !errors.Is(err, magstripe.ErrClosed) || !strings.Contains(err.Error(), "read") {
		t.Fatalf("Err: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"%" + t1 + "?;" + t2 + "?\r", "\x02%E?;" + t2 + "?+E?\x03", "\x1b;" + t2 + "?;" + t3[:30] + "?", "E", "%?", ";;??",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := magstripe.Parse(in)
		if err != nil {
			if !errors.Is(err, magstripe.ErrFormat) && !errors.Is(err, magstripe.ErrUnreadable) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if len(s.Track1()) > magstripe.MaxTrack1 || len(s.Track2()) > magstripe.MaxTrack2 || len(s.Track3()) > magstripe.MaxTrack3 {
			t.Fatal("track over its length")
		}
		// The tracks re-framed parse to the same swipe.
		var b strings.Builder
		for i, tr := range []string{s.Track1(), s.Track2(), s.Track3()} {
			switch {
			case s.Failed(i + 1):
				b.WriteString("%;+"[i:i+1] + "E?")
			case tr != "":
				b.WriteString("%;+"[i:i+1] + tr + "?")
			}
		}
		s2, err := magstripe.Parse([]byte(b.String()))
		if err != nil || s2 != s {
			t.Fatalf("re-framed %q: %v %v", b.String(), s2, err)
		}
		if pan := s.PAN(); len(pan) >= 11 && strings.Contains(s.String(), pan) {
			t.Fatal("String shows the PAN")
		}
	})
}

// A serial magstripe reader's record, as MagTek and ID TECH readers send it.
func ExampleParse() {
	s, err := magstripe.Parse([]byte("\x02%B4761739001010010^TEST/CARD^2512201?;4761739001010010=2512201?\x03"))
	fmt.Println(s, err)
	s, err = magstripe.Parse([]byte("%E?;E?\r"))
	fmt.Println(err)
	// Output:
	// swipe 476173******0010 t1 t2 <nil>
	// magstripe: card could not be read: the reader read no track
}
