package http

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
)

// The refusals of the frontend's own bounds, reported to the Observer;
// metrics classify them by their text.
const (
	errOverloaded         = bittorrent.ClientError("tracker overloaded, retry later")
	errTooManyConnections = bittorrent.ClientError("too many connections, retry later")
)

// retryAfter is the Retry-After of every 503, in seconds.
const retryAfter = "5"

// badRequestCounter is implemented by a tracker that limits the bad
// requests of each address (tracker.Tracker): the frontend tells it of
// the requests it could not parse, and answers with the error it returns.
type badRequestCounter interface {
	Malformed(source netip.Addr, err error) error
}

// malformed counts a request the frontend could not parse against its
// source's bad-request budget, when the tracker keeps one.
func (f *Frontend) malformed(source netip.Addr, err error) error {
	if f.badRequests == nil {
		return err
	}
	return f.badRequests.Malformed(source, err)
}

// enter counts a request in flight; false means the frontend already
// serves max_inflight requests and this one must be shed (leave is not to
// be called then).
func (f *Frontend) enter() bool {
	if f.cfg.MaxInflight <= 0 {
		return true
	}
	if f.inflight.Add(1) > int64(f.cfg.MaxInflight) {
		f.inflight.Add(-1)
		return false
	}
	return true
}

func (f *Frontend) leave() {
	if f.cfg.MaxInflight > 0 {
		f.inflight.Add(-1)
	}
}

// shed refuses a request at once, without queueing it: 503 with
// Retry-After and a bencoded failure reason.
func (f *Frontend) shed(w http.ResponseWriter, action string) {
	w.Header()["Retry-After"] = []string{retryAfter}
	f.fail(w, http.StatusServiceUnavailable, string(errOverloaded))
	f.observe(action, errOverloaded, time.Now())
}

// The answer to a connection over max_connections, written straight to
// the socket: the server never sees the connection.
var tooManyConnections = func() []byte {
	body := appendFailure(nil, string(errTooManyConnections))
	head := "HTTP/1.1 503 Service Unavailable\r\n" +
		"Retry-After: " + retryAfter + "\r\n" +
		"Connection: close\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(head), body...)
}()

// maxRejecting bounds the connections being turned away at one time; past
// it, an excess connection is closed without an answer.
const maxRejecting = 64

// rejectTimeout bounds the time spent turning one connection away.
const rejectTimeout = time.Second

// limitListener accepts at most max connections at once. An excess
// connection is accepted, answered 503 with Retry-After and closed, so a
// well-behaved client learns to come back rather than waiting in the
// kernel's backlog; the server never sees it. A connection counts until it
// is closed.
type limitListener struct {
	net.Listener
	max       int64
	active    atomic.Int64
	rejecting atomic.Int64
	refused   func()
	// silent closes an excess connection without the 503, for a TLS
	// port, where the answer would have to wait for a handshake.
	silent bool
}

func newLimitListener(ln net.Listener, max int, refused func()) *limitListener {
	return &limitListener{Listener: ln, max: int64(max), refused: refused}
}

// Accept returns the next connection within the limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) <= l.max {
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.active.Add(-1)
		l.reject(c)
	}
}

// reject answers c with the 503 and closes it, off the accept loop. The
// connection's write side is shut first and what the client sent is read
// and dropped until it closes (briefly): closing a socket with unread data
// resets it, and a reset can destroy the answer before the client reads
// it.
func (l *limitListener) reject(c net.Conn) {
	if l.refused != nil {
		l.refused()
	}
	if l.silent {
		_ = c.Close()
		return
	}
	if l.rejecting.Add(1) > maxRejecting {
		l.rejecting.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer l.rejecting.Add(-1)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(rejectTimeout))
		if _, err := c.Write(tooManyConnections); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// Active is the number of connections open now.
func (l *limitListener) Active() int { return int(l.active.Load()) }

// limitedConn gives its slot back when it is closed.
type limitedConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.active.Add(-1)
	}
	return c.Conn.Close()
}

// CloseWrite lets the server shut the write side before closing, as it
// does for a bare TCP connection, so its error answers are not lost to a
// reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
