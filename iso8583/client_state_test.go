package iso8583_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/iso8583/hostsim"
)

// TestLinkStatus follows the link through its states: up and signed on, an echo answered,
// (TestLinkStatusUnreachable covers a link that is down).
func TestLinkStatus(t *testing.T) {
	addr, _ := startHost(t, hostsim.Options{})
	c := newClient(t, iso8583.ClientOptions{Addr: addr, SignOn: true, TerminalID: "TERM0001",
		NextSTAN: stanCounter(100), EchoInterval: 30 * time.Millisecond, DeadLinkTimeout: 5 * time.Second})

	st := c.LinkStatus()
	if st.Connected || st.SignedOn || !st.Since.IsZero() || st.Addr != addr || !st.SignOn {
		t.Fatalf("before any dial: %+v", st)
	}
	before := time.Now()
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	st = c.LinkStatus()
	if !st.Connected || !st.SignedOn || st.Since.Before(before) || st.LastError != "" || st.InFlight != 0 {
		t.Fatalf("after Connect: %+v", st)
	}
	// The idle link sends an echo after 30ms; the host answers it.
	for deadline := time.Now().Add(5 * time.Second); c.LinkStatus().LastEcho.IsZero(); {
		if time.Now().After(deadline) {
			t.Fatalf("no echo recorded: %+v", c.LinkStatus())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := c.LinkStatus(); st.LastEchoError != "" || !st.Connected {
		t.Fatalf("after an answered echo: %+v", st)
	}
}

// TestLinkStatusUnreachable: a host that refuses connections leaves the link down, since
// the first failed dial, with the dial's error.
func TestLinkStatusUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newClient(t, iso8583.ClientOptions{Addr: addr, ReconnectMin: time.Hour, ReconnectMax: time.Hour})
	before := time.Now()
	if err := c.Connect(ctxTimeout(t, 5*time.Second)); err == nil {
		t.Fatal("Connect to a closed listener succeeded")
	}
	st := c.LinkStatus()
	if st.Connected || st.SignedOn || st.Since.Before(before) || !strings.Contains(st.LastError, "connect") {
		t.Fatalf("after a refused dial: %+v", st)
	}
	since := st.Since
	// A second failure does not move Since: the link has been down since the first.
	_ = c.Connect(ctxTimeout(t, 50*time.Millisecond))
	if st := c.LinkStatus(); !st.Since.Equal(since) {
		t.Fatalf("Since moved from %v to %v while the link stayed down", since, st.Since)
	}
	c.Close()
	if st := c.LinkStatus(); st.Connected || !strings.Contains(st.LastError, "closed") {
		t.Fatalf("after Close: %+v", st)
	}
}
