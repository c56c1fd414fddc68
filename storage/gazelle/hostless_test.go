package gazelle

import (
	"bytes"
	"io"
	"net"
)

// tolerateMissingHost lets these tests serve the site handler on net/http
// and still send requests the way What.CD-era Gazelle does: without a Host
// header, which net/http answers 400, as HTTP/1.1 requires. The tracker's
// own HTTP server accepts such a request, so production needs no wrapper.
//
// It reads each connection's first request header and inserts
// "Host: <local address>" after the request line when there is none.
// gazelleCall sends one request a connection, with CRLF line ends; nothing
// else is looked at.
func tolerateMissingHost(ln net.Listener) net.Listener {
	return hostListener{ln}
}

type hostListener struct{ net.Listener }

// Accept returns the next connection, wrapped. The header is read in the
// connection's first Read, on the server's goroutine for that connection
// and under its deadlines, so a slow client never holds up Accept.
func (l hostListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &hostConn{Conn: c}, nil
}

type hostConn struct {
	net.Conn
	// r yields the (amended) header, then the rest of the connection;
	// nil until the first Read.
	r io.Reader
}

func (c *hostConn) Read(p []byte) (int, error) {
	if c.r == nil {
		c.r = io.MultiReader(bytes.NewReader(c.header()), c.Conn)
	}
	return c.r.Read(p)
}

// header reads up to the end of the first header (or an error, which the
// next read of the connection returns again) and adds the Host line if it
// is missing.
func (c *hostConn) header() []byte {
	var head []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		n, err := c.Conn.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			return head
		}
	}
	if bytes.Contains(bytes.ToLower(head), []byte("\r\nhost:")) {
		return head
	}
	i := bytes.Index(head, []byte("\r\n")) + 2
	out := make([]byte, 0, len(head)+64)
	out = append(out, head[:i]...)
	out = append(out, "Host: "+c.LocalAddr().String()+"\r\n"...)
	return append(out, head[i:]...)
}
