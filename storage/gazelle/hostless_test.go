package gazelle

import (
	"bytes"
	"net"
	"slices"
)

// maxLookAhead bounds how much of a connection's first request
// tolerateMissingHost reads to find the end of its header; a longer header
// is passed through untouched.
const maxLookAhead = 8 << 10

// tolerateMissingHost lets these tests serve the site handler on net/http
// and still send requests the way What.CD-era Gazelle does. The tracker's
// own HTTP server accepts a Host-less HTTP/1.1 request, so production needs
// no such wrapper.
//
// It wraps ln so that an HTTP/1.1 request without a Host
// header, the way What.CD-era Gazelle calls its tracker, reaches the
// handler instead of being answered 400 by net/http, which HTTP/1.1
// requires to refuse it. The first request of each connection is read
// ahead up to the end of its header (at most 8 KiB); if it is HTTP/1.1
// and has no Host line, "Host: <local address>" is inserted after the
// request line. Everything else on the connection is passed on unchanged.
// Later requests on a kept-alive connection are not inspected (Gazelle
// closes after one).
func tolerateMissingHost(ln net.Listener) net.Listener {
	return hostListener{ln}
}

type hostListener struct{ net.Listener }

// Accept returns the next connection, wrapped. The look-ahead happens in
// the connection's first Read, on the server's goroutine for that
// connection, so a slow client never holds up Accept.
func (l hostListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &hostConn{Conn: c}, nil
}

type hostConn struct {
	net.Conn
	inspected bool
	// pending holds the looked-ahead bytes not yet handed to the
	// reader; err is the error the look-ahead met, returned after them.
	pending []byte
	err     error
}

// Read serves the looked-ahead (and possibly amended) bytes first, then
// reads the connection.
func (c *hostConn) Read(p []byte) (int, error) {
	if !c.inspected {
		c.inspected = true
		c.lookAhead()
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.err != nil {
		err := c.err
		c.err = nil
		return 0, err
	}
	return c.Conn.Read(p)
}

// lookAhead reads until the end of the first header, the limit or an error
// (deadlines the server set apply, so a silent client times out as usual),
// then adds the Host header if it is missing. It stops early when the
// bytes cannot be an HTTP/1.1 request (a TLS handshake, HTTP/1.0, the
// HTTP/2 preface): such a client may be waiting for the server, so reading
// on could stall it.
func (c *hostConn) lookAhead() {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) > 0 && (buf[0] < 'A' || buf[0] > 'Z') {
			c.pending = buf
			return
		}
		if i := bytes.IndexByte(buf, '\n'); i >= 0 && !isHTTP11(buf[:i]) {
			c.pending = buf
			return
		}
		if end := headerEnd(buf); end >= 0 {
			c.pending = addHost(buf, end, c.LocalAddr().String())
			return
		}
		if len(buf) >= maxLookAhead {
			c.pending = buf
			return
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), maxLookAhead-len(buf)))
		}
		n, err := c.Conn.Read(buf[len(buf):min(cap(buf), maxLookAhead)])
		buf = buf[:len(buf)+n]
		if err != nil {
			c.pending, c.err = buf, err
			return
		}
	}
}

// CloseWrite half-closes the connection when the underlying one can, which
// net/http uses to let the client read the whole reply before the close.
func (c *hostConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// isHTTP11 reports whether a request line (without its "\n") is HTTP/1.1.
func isHTTP11(line []byte) bool {
	return bytes.HasSuffix(bytes.TrimSuffix(line, []byte("\r")), []byte(" HTTP/1.1"))
}

// headerEnd returns the length of the header block (request line, header
// lines and the empty line), -1 if b does not hold all of it yet. Bare "\n"
// line ends are accepted, as net/http does.
func headerEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		// An empty line: "\n" directly after the previous line's end,
		// optionally with a "\r".
		j := i + 1
		if j < len(b) && b[j] == '\r' {
			j++
		}
		if j < len(b) && b[j] == '\n' {
			return j + 1
		}
	}
	return -1
}

var hostPrefix = []byte("host:")

// addHost returns b with a Host line after the request line when the
// request (its header is b[:end]) is HTTP/1.1 without one.
func addHost(b []byte, end int, host string) []byte {
	lineEnd := bytes.IndexByte(b, '\n')
	if !isHTTP11(b[:lineEnd]) {
		return b
	}
	for _, line := range bytes.Split(b[lineEnd+1:end], []byte("\n")) {
		if len(line) >= len(hostPrefix) && bytes.EqualFold(line[:len(hostPrefix)], hostPrefix) {
			return b
		}
	}
	eol := "\n"
	if lineEnd > 0 && b[lineEnd-1] == '\r' {
		eol = "\r\n"
	}
	out := make([]byte, 0, len(b)+len(host)+8)
	out = append(out, b[:lineEnd+1]...)
	out = append(out, "Host: "...)
	out = append(out, host...)
	out = append(out, eol...)
	return append(out, b[lineEnd+1:]...)
}
