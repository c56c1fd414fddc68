package gazelle

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAddHost(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", "GET / HTTP/1.1\r\nHost: H\r\nConnection: Close\r\n\r\n"},
		{"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: H\r\n\r\n"},
		{"GET / HTTP/1.1\n\n", "GET / HTTP/1.1\nHost: H\n\n"},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"GET / HTTP/1.1\r\nhOST:a\r\n\r\n", "GET / HTTP/1.1\r\nhOST:a\r\n\r\n"},
		{"GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"},
		// Only the header is looked at; what follows is kept.
		{"POST / HTTP/1.1\r\n\r\nbody\r\n\r\nmore", "POST / HTTP/1.1\r\nHost: H\r\n\r\nbody\r\n\r\nmore"},
	} {
		end := headerEnd([]byte(c.in))
		if got := string(addHost([]byte(c.in), end, "H")); got != c.want {
			t.Errorf("addHost(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if headerEnd([]byte("GET / HTTP/1.1\r\nHost: a\r\n")) != -1 {
		t.Error("an unfinished header has an end")
	}
}

// echoServer answers with the Host it saw and the body it read.
func echoServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "host=%s body=%s", r.Host, body)
	}))
	srv.Listener = TolerateMissingHost(srv.Listener)
	srv.Config.ReadHeaderTimeout = 2 * time.Second
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func roundTrip(t *testing.T, addr string, chunks ...string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	for _, c := range chunks {
		if _, err := io.WriteString(conn, c); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := io.ReadAll(conn)
	return string(b)
}

func TestTolerateMissingHost(t *testing.T) {
	addr := echoServer(t)

	// The request arrives in pieces, the header split mid-line.
	got := roundTrip(t, addr, "GET /x HTTP/1.1\r\nConn", "ection: Close\r\n", "\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK") || !strings.Contains(got, "host="+addr+" ") {
		t.Errorf("Host-less request: %q", got)
	}

	// A body after the header reaches the handler intact.
	got = roundTrip(t, addr, "POST /x HTTP/1.1\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello\r\n\r\n!!")
	if !strings.Contains(got, "body=hello\r\n\r\n!!") {
		t.Errorf("body: %q", got)
	}

	// A request with a Host keeps it.
	got = roundTrip(t, addr, "GET /x HTTP/1.1\r\nHost: tracker.example\r\nConnection: close\r\n\r\n")
	if !strings.Contains(got, "host=tracker.example ") {
		t.Errorf("Host kept: %q", got)
	}

	// A header beyond the look-ahead is passed on untouched, and
	// net/http refuses it as before (no Host).
	got = roundTrip(t, addr, "GET /x HTTP/1.1\r\nX-Pad: "+strings.Repeat("p", 9000)+"\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("oversized header: %.60q", got)
	}
}

// Bytes that cannot start an HTTP/1.1 request (here a TLS ClientHello) are
// handed on at once: the client is waiting for the server's reply and
// would never send the blank line the look-ahead waits for.
func TestTolerateMissingHostPassesOtherProtocols(t *testing.T) {
	for _, first := range []string{"\x16\x03\x01\x00\xa5\x01", "GET / HTTP/1.0\r\n", "PRI * HTTP/2.0\r\n"} {
		client, server := net.Pipe()
		c := &hostConn{Conn: server}
		go func() { _, _ = io.WriteString(client, first) }()
		done := make(chan string, 1)
		go func() {
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			done <- string(buf[:n])
		}()
		select {
		case got := <-done:
			if got != first {
				t.Errorf("read %q, want %q", got, first)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%q: Read waited for more", first)
		}
		client.Close()
		server.Close()
	}
}

// A client that stops mid-header meets the server's read deadline as it
// would without the wrapper.
func TestTolerateMissingHostTimeout(t *testing.T) {
	addr := echoServer(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\n")
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	b, _ := io.ReadAll(conn)
	if time.Since(start) > 4*time.Second {
		t.Errorf("the server kept a silent connection for %v (%q)", time.Since(start), b)
	}
}
