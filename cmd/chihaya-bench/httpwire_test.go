package main

import (
	"bufio"
	"net/url"
	"strings"
	"testing"
)

func readFrom(raw string) (httpResponse, error) {
	c := newHTTPConn()
	c.br = bufio.NewReader(strings.NewReader(raw))
	return c.readResponse()
}

func TestReadResponse(t *testing.T) {
	for _, c := range []struct {
		name, raw, body string
		status          int
		closed          bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloNEXT", "hello", 200, false},
		{"connection close", "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\nConnection: close\r\n\r\nno", "no", 500, true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n", "abcde", 200, false},
		{"until close", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n400 Bad Request", "400 Bad Request", 400, true},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", "x", 200, true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "", 204, false},
	} {
		r, err := readFrom(c.raw)
		if err != nil || r.status != c.status || string(r.body) != c.body || r.closed != c.closed {
			t.Errorf("%s: status %d body %q closed %v err %v", c.name, r.status, r.body, r.closed, err)
		}
	}
	for _, raw := range []string{
		"HTTP/2 200\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	} {
		if _, err := readFrom(raw); err == nil {
			t.Errorf("%q: accepted", raw)
		}
	}
}

func TestClassifyHTTP(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		scrape bool
		want   string
	}{
		{200, "d8:completei1e10:incompletei0e8:intervali1800e5:peers0:e", false, ""},
		{200, "d5:filesdee", true, ""},
		{200, "d14:failure reason11:unknown keye", false, "failure reason: unknown key"},
		{500, "d14:failure reason5:oops!e", false, "http 500: oops!"},
		{404, "not found", true, "http 404"},
		{200, "<html>", false, "malformed answer"},
		{200, "d8:intervali5ee", true, "malformed answer"},
	} {
		if got := classifyHTTP(c.status, []byte(c.body), c.scrape); got != c.want {
			t.Errorf("classifyHTTP(%d, %q) = %q, want %q", c.status, c.body, got, c.want)
		}
	}
}

func TestAnnounceRequestDecodesAsSent(t *testing.T) {
	m := newModel(10, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 0, 1)
	c := defaultConfig()
	c.passkey = "pk"
	c.passkeys = []string{c.passkey}
	w := &httpWorker{c: &c, m: m, annPaths: c.paths("announce"), peers: newPeerSet(m, 0, 1, 1)}
	g := 37
	req := string(w.appendAnnounce(nil, g, evStopped, true))
	line, rest, _ := strings.Cut(req, "\r\n")
	if !strings.HasSuffix(rest, "Connection: close\r\n\r\n") || !strings.Contains(rest, "Host: 127.0.0.1:6969\r\n") {
		t.Fatalf("headers %q", rest)
	}
	target, ok := strings.CutPrefix(line, "GET ")
	target, ok2 := strings.CutSuffix(target, " HTTP/1.1")
	if !ok || !ok2 {
		t.Fatalf("request line %q", line)
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	h := m.hashes[m.torrentOf(g)]
	id := m.peerID(g)
	if u.Path != "/pk/announce" || q.Get("info_hash") != string(h[:]) || q.Get("peer_id") != string(id[:]) ||
		q.Get("event") != "stopped" || q.Get("numwant") != "0" || q.Get("compact") != "1" || q.Get("port") != "1061" || q.Get("left") == "" {
		t.Fatalf("announce %q decodes to %v", target, q)
	}
	if none := string(w.appendAnnounce(nil, g, evNone, false)); strings.Contains(none, "event=") || strings.Contains(none, "Connection:") {
		t.Fatalf("a regular announce names an event or closes: %q", none)
	}
}

func TestAppendEscapedEncodesEveryByte(t *testing.T) {
	var all []byte
	for b := range 256 {
		all = append(all, byte(b))
	}
	got, err := url.QueryUnescape(string(appendEscaped(nil, all)))
	if err != nil || got != string(all) {
		t.Fatalf("round trip: %v", err)
	}
	if s := string(appendEscaped(nil, []byte("a+b c"))); s != "a%2Bb%20c" {
		t.Fatalf("escaped %q", s)
	}
}
