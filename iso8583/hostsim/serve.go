package hostsim

// Serving connections: reading requests, fault injection, writing answers.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/posd-dev/posd/iso8583"
)

// Serve accepts connections on ln and answers their requests until ctx ends; then it
// closes ln and every connection, waits for its goroutines and returns nil. It returns an
// error if Accept fails otherwise. For TLS, pass a tls.NewListener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("hostsim: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ServeConn(ctx, nc)
		}()
	}
}

// ServeConn answers the requests arriving on one connection until it closes or ctx ends,
// then closes it. Tests use it on one end of a net.Pipe.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	var wg sync.WaitGroup
	w := newConnWriter(nc, s.writeFramer)
	s.keyMu.Lock()
	s.conns[w] = true
	s.keyMu.Unlock()
	defer func() {
		s.keyMu.Lock()
		delete(s.conns, w)
		s.keyMu.Unlock()
	}()
	br := bufio.NewReaderSize(nc, 16<<10)
	for {
		b, err := s.framer.ReadFrame(br)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logf("hostsim: connection from %s: %v", nc.RemoteAddr(), err)
			}
			break
		}
		if len(b) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, b, w, cancel)
		}()
	}
	// The terminal has gone (or ctx ended): answers still being made cannot be delivered.
	cancel()
	stop()
	nc.Close()
	wg.Wait()
	w.close()
}

func (s *Server) handle(ctx context.Context, b []byte, w *connWriter, hangup func()) {
	req, err := iso8583.Unpack(s.spec, b)
	if err != nil {
		s.logf("hostsim: dropped an unreadable request of %d bytes: %v", len(b), err)
		return
	}
	if s.opts.Hangup != nil && s.opts.Hangup(req) {
		s.logf("hostsim: %s -> connection closed (on purpose)", iso8583.Masked{Msg: req})
		hangup()
		return
	}
	if s.opts.Drop != nil && s.opts.Drop(req) {
		s.logf("hostsim: %s -> no answer (dropped on purpose)", iso8583.Masked{Msg: req})
		return
	}
	resp, after := s.respond(req, s.checkMAC(ctx, req, b))
	if resp == nil {
		return
	}
	if after != nil {
		defer after()
	}
	if s.opts.Delay != nil {
		if d := s.opts.Delay(req); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
	out, err := s.pack(ctx, req, resp)
	if err != nil {
		s.logf("hostsim: cannot pack the answer to %s: %v", iso8583.Masked{Msg: req}, err)
		return
	}
	if s.opts.Corrupt != nil {
		if out = s.opts.Corrupt(req, out); out == nil {
			s.logf("hostsim: %s -> answer withheld (on purpose)", iso8583.Masked{Msg: req})
			return
		}
	}
	copies := 1
	if s.opts.Duplicate != nil && s.opts.Duplicate(req) {
		copies = 2
	}
	for range copies {
		if err := w.write(out); err != nil {
			s.logf("hostsim: %s -> write failed: %v", iso8583.Masked{Msg: req}, err)
			return
		}
	}
	if s.tracing {
		s.logf("hostsim: %s -> %s", iso8583.Masked{Msg: req}, iso8583.Summary(resp))
	}
}

// connWriter writes the answers of one connection: callers queue frames, one goroutine
// writes them, gathering those that wait into one write.
type connWriter struct {
	nc     net.Conn
	framer iso8583.Framer
	mu     sync.Mutex
	queue  []byte // framed answers waiting
	err    error
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

func newConnWriter(nc net.Conn, f iso8583.Framer) *connWriter {
	w := &connWriter{nc: nc, framer: f, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.loop()
	return w
}

// appendWriter lets a Framer append a frame to a buffer.
type appendWriter struct{ b *[]byte }

func (a appendWriter) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

func (w *connWriter) write(b []byte) error {
	w.mu.Lock()
	if w.err != nil || w.closed {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return err
	}
	err := w.framer.WriteFrame(appendWriter{&w.queue}, b)
	w.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

func (w *connWriter) loop() {
	defer close(w.done)
	var out []byte
	for {
		w.mu.Lock()
		out, w.queue = w.queue, out[:0]
		closed := w.closed
		w.mu.Unlock()
		if len(out) > 0 {
			if _, err := w.nc.Write(out); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			continue
		}
		if closed {
			return
		}
		<-w.wake
	}
}

// close lets the writer finish what is queued and stop.
func (w *connWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}
