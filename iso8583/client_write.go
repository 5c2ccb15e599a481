package iso8583

// Writing frames: one writer per connection at a time; frames that queue behind it go out
// together in one system call.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// A write in progress on a link: frames queue while another Send writes; the writer then
// writes every frame that queued meanwhile in one system call (with the latest of their
// deadlines) and hands the writing on to the next in line. Each request still learns
// exactly how much of its own frame went out, except when its context ends while its frame
// is inside such a combined write: then it may have gone out (write returns -1).
type wreq struct {
	frame    []byte
	deadline time.Time // zero: none
	state    atomic.Int32
	done     chan wres // buffered; one result, or the lead
}

// wreq states.
const (
	wreqWaiting int32 = iota
	wreqTaken         // inside a combined write
	wreqGone          // its Send gave up before it was taken
	wreqLead          // handed the writing
)

type wres struct {
	n    int
	err  error
	lead bool
}

// pooledFrameCap is the least memory a buffer of the client's frame pool gets, so that
// one used for a packed request serves for a framed one (a chip sale is about 450 bytes).
const pooledFrameCap = 1024

// frameBuf returns a buffer of the client's pool, of at least pooledFrameCap bytes; the
// caller puts it back in c.frames when nothing holds its memory any more.
func (c *Client) frameBuf() *[]byte {
	fb, _ := c.frames.Get().(*[]byte)
	if fb == nil {
		fb = new([]byte)
	}
	if cap(*fb) < pooledFrameCap {
		*fb = make([]byte, 0, pooledFrameCap)
	}
	return fb
}

// appendFramer is implemented by this package's framers: they frame into a buffer without
// a second copy.
type appendFramer interface {
	appendFrame(dst, b []byte) ([]byte, error)
}

// frame appends b with its framing to dst.
func (c *Client) frame(dst, b []byte) ([]byte, error) {
	if af, ok := c.framer.(appendFramer); ok {
		return af.appendFrame(dst, b)
	}
	if err := c.framer.WriteFrame(appendWriter{&dst}, b); err != nil {
		return nil, err
	}
	return dst, nil
}

// appendWriter lets a Framer write into a buffer.
type appendWriter struct{ b *[]byte }

func (a appendWriter) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

// write writes message b as one frame on l, at most until ctx ends, and returns how many
// bytes of the frame reached the connection: all of them with a nil error; 0 when none
// did (safe to send again); -1 when ctx ended while the frame may be going out.
func (c *Client) write(ctx context.Context, l *link, b []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	select {
	case <-l.done:
		return 0, l.err
	default:
	}
	fb := c.frameBuf()
	frame, err := c.frame((*fb)[:0], b)
	if err != nil {
		c.frames.Put(fb)
		return 0, err
	}
	*fb = frame
	n, err := c.writeFrame(ctx, l, frame)
	if n >= 0 {
		// The frame's memory is free again, except when ctx ended while the frame was
		// taken into a combined write that may still be copying it.
		c.frames.Put(fb)
	}
	return n, err
}

// writeFrame is write, for a framed message.
func (c *Client) writeFrame(ctx context.Context, l *link, frame []byte) (int, error) {
	l.wmu.Lock()
	if !l.writing {
		l.writing = true
		l.wmu.Unlock()
		return c.lead(ctx, l, frame)
	}
	r := &wreq{frame: frame, done: make(chan wres, 1)}
	r.deadline, _ = ctx.Deadline()
	l.queue = append(l.queue, r)
	l.wmu.Unlock()
	var stop <-chan struct{}
	select {
	case res := <-r.done:
		if res.lead {
			return c.lead(ctx, l, frame)
		}
		return res.n, res.err
	case <-ctx.Done():
	case <-l.done:
		stop = l.done
	}
	if r.state.CompareAndSwap(wreqWaiting, wreqGone) {
		if stop != nil {
			return 0, l.err
		}
		return 0, ctx.Err()
	}
	if r.state.Load() == wreqLead {
		<-r.done
		return c.lead(ctx, l, frame) // writes nothing of its own on a dead context, but passes the writing on
	}
	if stop != nil { // taken, on a closed connection: the write ends at once
		res := <-r.done
		return res.n, res.err
	}
	select {
	case res := <-r.done:
		return res.n, res.err
	default:
		return -1, ctx.Err()
	}
}

// lead writes the caller's own frame, then the frames queued behind it in one write, then
// passes the writing on.
//
// With other requests in flight it first lets the goroutines that are ready run: requests
// come in bursts then (a batch of answers wakes their senders together), and those that
// queue meanwhile go out with its own frame in one write instead of one write each.
func (c *Client) lead(ctx context.Context, l *link, frame []byte) (int, error) {
	if len(c.window) > 1 {
		runtime.Gosched()
		l.wmu.Lock()
		queued := len(l.queue) > 0
		l.wmu.Unlock()
		if queued && ctx.Err() == nil {
			own := &wreq{frame: frame, done: make(chan wres, 1)}
			own.deadline, _ = ctx.Deadline()
			own.state.Store(wreqTaken)
			c.writeQueued(l, own)
			res := <-own.done
			return res.n, res.err
		}
	}
	n, err := c.writeOwn(ctx, l, frame)
	c.writeQueued(l, nil)
	return n, err
}

// writeOwn writes one frame until ctx ends: its deadline, and its cancellation.
func (c *Client) writeOwn(ctx context.Context, l *link, frame []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deadline, hasDeadline := ctx.Deadline() // the zero time (no deadline) when ctx has none
	if err := l.nc.SetWriteDeadline(deadline); err != nil {
		return 0, err
	}
	var stop func() bool
	var fired chan struct{}
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			l.nc.SetWriteDeadline(time.Unix(1, 0)) // unblock a write stuck on a full buffer
			close(fired)
		})
	}
	n, err := l.nc.Write(frame)
	if stop != nil && !stop() {
		<-fired // let it finish before the next writer sets its own deadline
	}
	switch {
	case err == nil && n < len(frame):
		err = io.ErrShortWrite
	case err == nil:
	case ctx.Err() != nil:
		err = fmt.Errorf("iso8583: write frame: %w (%w)", ctx.Err(), err)
	case hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(deadline):
		err = fmt.Errorf("iso8583: write frame: %w (%w)", context.DeadlineExceeded, err) // the connection's timer fired first
	default:
		err = fmt.Errorf("iso8583: write frame: %w", err)
	}
	if n > 0 {
		l.lastSend.Store(c.mono())
	}
	if n == len(frame) {
		c.stats.framesOut.Add(1)
	}
	return n, err
}

// writeQueued writes, in one system call, own (the writer's own frame, taken already; nil
// when written already) and every frame queued on l whose Send still waits, gives each its
// result, and passes the writing to the next in line (or ends it).
func (c *Client) writeQueued(l *link, own *wreq) {
	l.wmu.Lock()
	batch := l.queue
	l.queue = l.spare[:0]
	l.wmu.Unlock()
	// Only the writer uses taken and buf: they keep their memory from batch to batch.
	taken := l.taken[:0]
	buf := l.wbuf[:0]
	var deadline time.Time
	none := false
	if own != nil {
		batch = append(batch, nil)
		copy(batch[1:], batch)
		batch[0] = own
	}
	for _, r := range batch {
		if r != own && !r.state.CompareAndSwap(wreqWaiting, wreqTaken) {
			continue
		}
		taken = append(taken, r)
		buf = append(buf, r.frame...)
		switch {
		case r.deadline.IsZero():
			none = true
		case r.deadline.After(deadline):
			deadline = r.deadline
		}
	}
	if len(taken) > 0 {
		if none {
			deadline = time.Time{}
		}
		n, err := 0, l.nc.SetWriteDeadline(deadline)
		if err == nil {
			n, err = l.nc.Write(buf)
		}
		if err == nil && n < len(buf) {
			err = io.ErrShortWrite
		}
		if err != nil {
			err = fmt.Errorf("iso8583: write frame: %w", err)
		}
		if n > 0 {
			l.lastSend.Store(c.mono())
		}
		off := 0
		for _, r := range taken {
			wn := min(max(n-off, 0), len(r.frame))
			var werr error
			if wn < len(r.frame) {
				werr = err
			} else {
				c.stats.framesOut.Add(1)
			}
			r.done <- wres{n: wn, err: werr}
			off += len(r.frame)
		}
		if err != nil && n > 0 {
			c.drop(l, err) // a frame went out in part: the stream is out of step
		}
	}
	clear(batch)
	clear(taken)
	l.taken, l.wbuf = taken[:0], buf[:0]
	l.wmu.Lock()
	l.spare = batch[:0]
	for len(l.queue) > 0 {
		next := l.queue[0]
		l.queue = l.queue[1:]
		if next.state.CompareAndSwap(wreqWaiting, wreqLead) {
			l.wmu.Unlock()
			next.done <- wres{lead: true}
			return
		}
	}
	l.writing = false
	l.wmu.Unlock()
}
