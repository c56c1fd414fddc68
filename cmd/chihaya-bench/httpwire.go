package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// A minimal HTTP/1.1 client: one GET at a time on one connection, the
// request written from a reused buffer and the response read into another.
// net/http's client costs several times the tracker's own work per request
// (a goroutine pair per connection, header maps, pooled-connection
// bookkeeping); with the tool and the tracker on one core each, that would
// measure the client. Only what a tracker or a reverse proxy in front of
// one sends back is understood: Content-Length, chunked bodies and bodies
// that end with the connection.

// maxBody bounds a response body; a tracker's answers are a few kilobytes.
const maxBody = 1 << 20

// errBadResponse is a response that is not HTTP/1.x as understood here.
var errBadResponse = errors.New("malformed HTTP response")

// httpConn is one client connection.
type httpConn struct {
	nc   net.Conn
	br   *bufio.Reader
	body []byte
}

func newHTTPConn() *httpConn {
	return &httpConn{br: bufio.NewReaderSize(nil, 8192), body: make([]byte, 0, 4096)}
}

// connected tells whether the connection is open.
func (c *httpConn) connected() bool { return c.nc != nil }

// dial opens the connection from local (nil: the kernel's choice).
func (c *httpConn) dial(target string, local net.Addr, deadline time.Time) error {
	d := net.Dialer{LocalAddr: local, Deadline: deadline}
	nc, err := d.Dial("tcp", target)
	if err != nil {
		return err
	}
	c.nc = nc
	c.br.Reset(nc)
	return nil
}

// close closes the connection; the buffers stay for the next one.
func (c *httpConn) close() {
	if c.nc != nil {
		_ = c.nc.Close()
		c.nc = nil
	}
}

// httpResponse is a response as read; body is valid until the next
// roundTrip.
type httpResponse struct {
	status int
	body   []byte
	// closed says the server ends the connection after this response.
	closed bool
}

// roundTrip writes req, a whole request, and reads the response, all before
// deadline. After an error the connection is closed, since its state is
// unknown.
func (c *httpConn) roundTrip(req []byte, deadline time.Time) (httpResponse, error) {
	if err := c.nc.SetDeadline(deadline); err != nil {
		c.close()
		return httpResponse{}, err
	}
	if _, err := c.nc.Write(req); err != nil {
		c.close()
		return httpResponse{}, err
	}
	resp, err := c.readResponse()
	if err != nil || resp.closed {
		c.close()
	}
	return resp, err
}

func (c *httpConn) readResponse() (httpResponse, error) {
	var r httpResponse
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return r, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return r, errBadResponse
	}
	r.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return r, errBadResponse
	}
	// HTTP/1.0 closes unless told otherwise; the tool never asks.
	r.closed = line[7] == '0'
	length, chunked := -1, false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errBadResponse
			}
			return r, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return r, errBadResponse
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return r, errBadResponse
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			r.closed = r.closed || bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case r.status/100 == 1 || r.status == 204 || r.status == 304:
		r.body = c.body[:0]
	case chunked:
		r.body, err = c.readChunked()
	case length >= 0:
		if length > maxBody {
			return r, errBadResponse
		}
		r.body = grow(c.body[:0], length)
		_, err = io.ReadFull(c.br, r.body)
	default:
		// The body ends with the connection.
		r.closed = true
		r.body, err = c.readToEOF()
	}
	c.body = r.body[:0]
	return r, err
}

// grow returns b resized to n bytes, reallocating only when it must.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func (c *httpConn) readChunked() ([]byte, error) {
	body := c.body[:0]
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return body, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil || len(body)+int(size) > maxBody {
			return body, errBadResponse
		}
		if size == 0 {
			// Trailers, up to an empty line.
			for {
				line, err := c.br.ReadSlice('\n')
				if err != nil {
					return body, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, size)...)
		if _, err := io.ReadFull(c.br, body[start:]); err != nil {
			return body, err
		}
		if _, err := c.br.Discard(2); err != nil {
			return body, err
		}
	}
}

func (c *httpConn) readToEOF() ([]byte, error) {
	body := c.body[:0]
	for len(body) <= maxBody {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := c.br.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if errors.Is(err, io.EOF) {
			return body, nil
		}
		if err != nil {
			return body, err
		}
	}
	return body, errBadResponse
}

// failureReason returns the "failure reason" of a bencoded tracker answer.
func failureReason(body []byte) (string, bool) {
	const key = "14:failure reason"
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := body[i+len(key):]
	colon := bytes.IndexByte(rest, ':')
	if colon < 0 {
		return "", true
	}
	n, err := strconv.Atoi(string(rest[:colon]))
	if err != nil || n < 0 || colon+1+n > len(rest) {
		return "", true
	}
	return string(rest[colon+1 : colon+1+n]), true
}
