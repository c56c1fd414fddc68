package http

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/config"
	"github.com/chihaya/chihaya/internal/testcert"
	"github.com/chihaya/chihaya/tracker"
)

// send writes raw bytes as they are.
func (c *client) send(s string) {
	c.t.Helper()
	_ = c.conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// readFor reads one answer to a request of the given method.
func (c *client) readFor(method string) (*http.Response, []byte) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return resp, body
}

func rawGet(target, proto string, headers ...string) string {
	return "GET " + target + " " + proto + "\r\n" + strings.Join(append(headers, ""), "\r\n") + "\r\n"
}

func TestKeepAliveByVersion(t *testing.T) {
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{})
	for _, tt := range []struct {
		name       string
		proto      string
		headers    []string
		persistent bool
		connection string
	}{
		{"1.1 default", "HTTP/1.1", []string{"Host: t"}, true, ""},
		{"1.1 close", "HTTP/1.1", []string{"Host: t", "Connection: close"}, false, "close"},
		{"1.1 close among tokens", "HTTP/1.1", []string{"Connection: TE, Close"}, false, "close"},
		{"1.0 default", "HTTP/1.0", nil, false, "close"},
		{"1.0 keep-alive", "HTTP/1.0", []string{"Connection: Keep-Alive"}, true, "keep-alive"},
		{"1.1 without Host", "HTTP/1.1", nil, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			for i := range 3 {
				c.send(rawGet(announceTarget(i), tt.proto, tt.headers...))
				resp, body := c.read()
				mustAnnounceOK(t, resp, body)
				// net/http turns "Connection: close" into Close.
				if got := resp.Header.Get("Connection"); !strings.EqualFold(got, tt.connection) && !(resp.Close && tt.connection == "close") {
					t.Fatalf("Connection %q (close %v), want %q", got, resp.Close, tt.connection)
				}
				if resp.ContentLength != int64(len(body)) || resp.Header.Get("Date") == "" {
					t.Fatalf("Content-Length %d for %d bytes, Date %q", resp.ContentLength, len(body), resp.Header.Get("Date"))
				}
				if !tt.persistent {
					if !c.closedByServer(2 * time.Second) {
						t.Fatal("connection left open")
					}
					return
				}
			}
		})
	}
}

// A pipelining client's requests, sent in one write, are all answered, in
// order, on the same connection.
func TestPipelining(t *testing.T) {
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{})
	c := dial(t, addr)
	var batch strings.Builder
	batch.WriteString(rawGet(announceTarget(1), "HTTP/1.1", "Host: t"))
	batch.WriteString(rawGet("/scrape?info_hash="+hashA, "HTTP/1.1"))
	batch.WriteString("HEAD " + announceTarget(2) + " HTTP/1.1\r\n\r\n")
	batch.WriteString(rawGet("/nowhere", "HTTP/1.1"))
	batch.WriteString(rawGet("/announce?info_hash=short", "HTTP/1.1"))
	batch.WriteString("\r\n") // a stray empty line between requests is allowed
	batch.WriteString(rawGet("http://tracker:6969"+announceTarget(3), "HTTP/1.1", "Connection: close"))
	c.send(batch.String())

	resp, body := c.read()
	mustAnnounceOK(t, resp, body)
	resp, body = c.read()
	if !bytes.HasPrefix(body, []byte("d5:filesd20:"+hashA)) {
		t.Fatalf("second answer is not the scrape: %d %q", resp.StatusCode, body)
	}
	resp, body = c.readFor(http.MethodHead)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength <= 0 {
		t.Fatalf("HEAD answer: %d, Content-Length %d, body %q", resp.StatusCode, resp.ContentLength, body)
	}
	resp, body = c.read()
	if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(failureOf(t, body), "not found") {
		t.Fatalf("fourth answer: %d %q", resp.StatusCode, body)
	}
	resp, body = c.read()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(failureOf(t, body), "invalid info_hash") {
		t.Fatalf("fifth answer: %d %q", resp.StatusCode, body)
	}
	resp, body = c.read()
	mustAnnounceOK(t, resp, body)
	if !resp.Close {
		t.Error("the last answer does not say the connection closes")
	}
	if !c.closedByServer(2 * time.Second) {
		t.Error("connection left open after Connection: close")
	}
}

// A HEAD announce is answered with the GET's head and no body: the next
// answer on the connection starts right after it.
func TestHead(t *testing.T) {
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{})
	c := dial(t, addr)
	c.send("HEAD " + announceTarget(1) + " HTTP/1.1\r\n\r\n")
	resp, body := c.readFor(http.MethodHead)
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 || len(body) != 0 {
		t.Fatalf("HEAD: %d, Content-Length %d, body %q", resp.StatusCode, resp.ContentLength, body)
	}
	c.ok(announceTarget(1))
}

// Requests the server cannot frame are answered and the connection
// closed; requests it can frame but not serve leave it open.
func TestMalformedRequests(t *testing.T) {
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{})
	for _, tt := range []struct {
		name, raw string
		status    int
		keep      bool
	}{
		{"no version", "GET /announce\r\n\r\n", 400, false},
		{"bad version", "GET /announce HTTP/2.0\r\n\r\n", 505, false},
		{"lower-case version", "GET /announce http/1.1\r\n\r\n", 400, false},
		{"space in target", "GET /ann ounce HTTP/1.1\r\n\r\n", 400, false},
		{"binary", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, false},
		{"header without colon", "GET /announce HTTP/1.1\r\nHost t\r\n\r\n", 400, false},
		{"folded header", "GET /announce HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n", 400, false},
		{"space before colon", "GET /announce HTTP/1.1\r\nHost : t\r\n\r\n", 400, false},
		{"two lengths", "GET /announce HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400, false},
		{"chunked body", "GET /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, false},
		{"huge body", "GET /announce HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413, false},
		{"POST", "POST /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405, true},
		{"bare LF", "GET /nowhere HTTP/1.1\nHost: t\n\n", 404, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			c.send(tt.raw)
			resp, body := c.read()
			if resp.StatusCode != tt.status || failureOf(t, body) == "" {
				t.Fatalf("%d %q, want %d with a failure reason", resp.StatusCode, body, tt.status)
			}
			if tt.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			if !tt.keep {
				if !resp.Close || !c.closedByServer(2*time.Second) {
					t.Fatal("connection left open")
				}
				return
			}
			c.ok(announceTarget(1))
		})
	}
}

// A body on an announce is read and dropped, so the next request on the
// connection is still found, whether the body came with the head or later.
func TestAnnounceBodyIsSkipped(t *testing.T) {
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{})
	c := dial(t, addr)
	c.send("GET " + announceTarget(1) + " HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
	resp, body := c.read()
	mustAnnounceOK(t, resp, body)

	c.send("GET " + announceTarget(2) + " HTTP/1.1\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("x", 100))
	time.Sleep(20 * time.Millisecond)
	c.send(strings.Repeat("y", 9900))
	resp, body = c.read()
	mustAnnounceOK(t, resp, body)
	c.ok(announceTarget(3))
}

// An idle keep-alive connection is closed after idle_timeout; a head that
// trickles in is cut at read_timeout after its first byte, however often
// bytes arrive.
func TestTimeouts(t *testing.T) {
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	c := dial(t, addr)
	c.ok(announceTarget(1))
	if !c.closedByServer(3 * time.Second) {
		t.Fatal("idle connection not closed")
	}

	c = dial(t, addr)
	head := rawGet(announceTarget(2), "HTTP/1.1", "X-Padding: "+strings.Repeat("p", 200))
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	cut := false
	for i := 0; i < len(head)-1; i++ {
		if _, err := c.conn.Write([]byte{head[i]}); err != nil {
			cut = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The head took more than 2 s to send; the server must have
	// given up long before its end.
	if !cut && !c.closedByServer(time.Second) {
		t.Fatal("a trickling head was not cut")
	}
}

func TestTLS(t *testing.T) {
	certs := testcert.Issue(t, t.TempDir())
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{TLSCertFile: certs.Cert, TLSKeyFile: certs.Key, MaxConnections: 10})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	conns := 0
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+announceTarget(i), nil)
		req = req.WithContext(withConnCounter(req.Context(), &conns))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mustAnnounceOK(t, resp, body)
	}
	if conns != 1 {
		t.Errorf("%d TLS connections for 3 announces, want 1 kept alive", conns)
	}

	// Plain text on the TLS port is not served.
	c := dial(t, addr)
	c.send(rawGet(announceTarget(9), "HTTP/1.1"))
	if resp, err := http.ReadResponse(c.r, nil); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("a plain-text request was served on the TLS port")
	}

	if _, err := New(newTracker(t, tracker.Config{}), Config{Addr: "127.0.0.1:0", TLSCertFile: certs.Key, TLSKeyFile: certs.Key}, slog.New(slog.DiscardHandler)).ListenAndServe(); err == nil {
		t.Error("a bad certificate file was accepted")
	}
}

// withConnCounter counts the connections a client request opens.
func withConnCounter(ctx context.Context, n *int) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			*n++
		}
	}})
}

// Every path that is not an announce or a scrape reaches the site handler
// over the socket: method, Host-less HTTP/1.1, query, body and remote
// address in; status, headers and body out, framed by the server.
func TestSiteHandlerOverSocket(t *testing.T) {
	type seen struct {
		method, path, query, body, remote, host string
	}
	got := make(chan seen, 4)
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.RemoteAddr, r.Host}
		if r.URL.Path == "/fail" {
			http.Error(w, "nope", http.StatusForbidden)
			return
		}
		if r.URL.Path == "/panic" {
			panic("site handler bug")
		}
		w.Header().Set("X-Site", "yes")
		io.WriteString(w, "success")
	})
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{Site: site})
	c := dial(t, addr)
	c.send("GET /secret/update?action=add_torrent&id=1 HTTP/1.1\r\n\r\n")
	resp, body := c.read()
	s := <-got
	if resp.StatusCode != 200 || string(body) != "success" || resp.Header.Get("X-Site") != "yes" || resp.ContentLength != 7 {
		t.Fatalf("site answer %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if s.method != "GET" || s.path != "/secret/update" || s.query != "action=add_torrent&id=1" || !strings.HasPrefix(s.remote, "127.0.0.1:") {
		t.Fatalf("site saw %+v", s)
	}

	c.send("POST /secret/report HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd")
	resp, body = c.read()
	if s = <-got; s.method != "POST" || s.body != "abcd" || s.host != "t" || resp.StatusCode != 200 || string(body) != "success" {
		t.Fatalf("POST: site saw %+v, answered %d %q", s, resp.StatusCode, body)
	}
	c.send(rawGet("/fail", "HTTP/1.0", "Connection: keep-alive"))
	resp, body = c.read()
	<-got
	if resp.StatusCode != http.StatusForbidden || string(body) != "nope\n" || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("error answer %d %q %v", resp.StatusCode, body, resp.Header)
	}
	c.ok(announceTarget(1))

	c.send(rawGet("/panic", "HTTP/1.1"))
	resp, _ = c.read()
	<-got
	if resp.StatusCode != http.StatusInternalServerError || !c.closedByServer(2*time.Second) {
		t.Fatalf("panicking handler: %d", resp.StatusCode)
	}
}

// Behind a trusted proxy the socket path takes the client's address from
// the header, every line of it, as ServeHTTP does.
func TestRealIPHeaderOverSocket(t *testing.T) {
	proxies, _ := config.ParsePrefixes([]string{"127.0.0.1"})
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{TrustedProxies: proxies, RealIPHeader: "X-Forwarded-For"})
	c := dial(t, addr)
	c.send(rawGet(announceTarget(1), "HTTP/1.1", "x-forwarded-for: 6.6.6.6, 192.0.2.7", "X-Forwarded-For: 127.0.0.1"))
	resp, body := c.read()
	mustAnnounceOK(t, resp, body)
	if !bytes.Contains(body, []byte("11:external ip4:\xc0\x00\x02\x07")) {
		t.Fatalf("external ip not 192.0.2.7 in %q", body)
	}
	c.send(rawGet(announceTarget(2), "HTTP/1.1"))
	if _, body = c.read(); failureOf(t, body) != "the reverse proxy did not send the X-Forwarded-For header" {
		t.Fatalf("without the header: %q", body)
	}
}

// Shutdown closes idle connections at once, lets a request in flight be
// answered (and told the connection closes), and gives up at ctx's end.
func TestShutdown(t *testing.T) {
	slow := &slowTracker{Tracker: newTracker(t, tracker.Config{}), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	fe, addr := serve(t, slow, Config{})
	idle := dial(t, addr)
	busy := dial(t, addr)
	busy.send(rawGet(announceTarget(1), "HTTP/1.1"))
	<-slow.entered

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- fe.Shutdown(ctx)
	}()
	if !idle.closedByServer(2 * time.Second) {
		t.Fatal("idle connection not closed by Shutdown")
	}
	close(slow.gate)
	resp, body := busy.read()
	mustAnnounceOK(t, resp, body)
	if !resp.Close {
		t.Error("an answer during Shutdown does not close the connection")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}

	// A request that does not finish in time is cut off.
	slow2 := &slowTracker{Tracker: newTracker(t, tracker.Config{}), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	defer close(slow2.gate)
	fe2, addr2 := serve(t, slow2, Config{})
	stuck := dial(t, addr2)
	stuck.send(rawGet(announceTarget(1), "HTTP/1.1"))
	<-slow2.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- fe2.Shutdown(ctx) }()
	select {
	case err := <-errc:
		t.Fatalf("Shutdown returned %v while a request was stuck", err)
	case <-time.After(300 * time.Millisecond):
	}
	slow2.gate <- struct{}{}
	if err := <-errc; err != context.DeadlineExceeded {
		t.Fatalf("Shutdown past its deadline: %v", err)
	}
}

// BenchmarkKeepAliveAnnounce is one client announcing over a kept-alive
// loopback connection, request after request: the server's whole path,
// socket included. Allocations count both ends; the client allocates
// nothing.
func BenchmarkKeepAliveAnnounce(b *testing.B) {
	fe := newFrontend(b, Config{Addr: "127.0.0.1:0", ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 8192})
	addr, err := fe.ListenAndServe()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fe.Shutdown(context.Background()) })
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	const swarm = 50
	reqs := make([][]byte, swarm)
	for i := range reqs {
		reqs[i] = []byte(rawGet(announce{hash: hashA, peer: fmt.Sprintf("-BE0001-%012d", i), port: 6881, left: i % 2}.target(""), "HTTP/1.1",
			"Host: tracker", "User-Agent: bench/1.0", "Accept-Encoding: gzip"))
	}
	buf := make([]byte, 64<<10)
	roundTrip := func(req []byte) {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			m, err := conn.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
			if end := bytes.Index(buf[:n], []byte("\r\n\r\n")); end >= 0 && responseComplete(buf[:n], end) {
				return
			}
		}
	}
	for _, r := range reqs {
		roundTrip(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		roundTrip(reqs[i%swarm])
	}
}

// responseComplete reports whether b holds the head (ending at end) and
// the whole body of one answer.
func responseComplete(b []byte, end int) bool {
	i := bytes.Index(b[:end], []byte("Content-Length: "))
	if i < 0 {
		return true
	}
	n := 0
	for j := i + len("Content-Length: "); b[j] >= '0' && b[j] <= '9'; j++ {
		n = n*10 + int(b[j]-'0')
	}
	return len(b) >= end+4+n
}

var benchHead = []byte("GET /announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A&peer_id=-qB4500-k8f0Hs9Pzq4q&port=51413&uploaded=0&downloaded=0&left=1048576&corrupt=0&key=8D1AFA2B&event=started&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0 HTTP/1.1\r\n" +
	"Host: tracker.example.org:6969\r\nUser-Agent: qBittorrent/4.5.0\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")

func BenchmarkParseHead(b *testing.B) {
	var h head
	b.SetBytes(int64(len(benchHead)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := parseHead(benchHead, &h, "x-forwarded-for"); n != len(benchHead) || err != nil {
			b.Fatal(n, err)
		}
	}
}

// FuzzParseHead checks the head parser against net/http's: a head it
// accepts, net/http reads the same way; the length it reports is the
// head's whole length whatever follows; an incomplete head never turns
// into an error when more of a valid one arrives.
func FuzzParseHead(f *testing.F) {
	f.Add(benchHead)
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("\r\nHEAD /x?y HTTP/1.1\nConnection: keep-alive, close\nContent-Length: 12\n\nbody"))
	f.Add([]byte("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"))
	f.Add([]byte("GET /a HTTP/1.1\r\nA: b\r\n c\r\n\r\n"))
	f.Add([]byte("GET /a HTTP/2.0\r\n\r\n"))
	f.Add([]byte("0 * HTTP/1.2\n\r\n"))
	f.Add([]byte("GET http://tracker/announce?x HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h head
		n, err := parseHead(b, &h, "x-forwarded-for")
		if err != nil || n == 0 {
			return
		}
		if n > len(b) {
			t.Fatalf("head length %d of %d bytes", n, len(b))
		}
		var again head
		if m, err := parseHead(b[:n], &again, "x-forwarded-for"); m != n || err != nil {
			t.Fatalf("the head alone parses to %d, %v; with what follows to %d", m, err, n)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:n])))
		if err != nil {
			// net/http is stricter about some header values and
			// about Content-Length beside Transfer-Encoding; only
			// heads the tracker serves without a site handler
			// must agree.
			return
		}
		// HTTP/1.y past 1.1 is served as 1.1.
		if req.Method != string(h.method) || req.RequestURI != string(h.target) || min(req.ProtoMinor, 1) != h.minor {
			t.Fatalf("%q: net/http reads %s %s 1.%d, we %s %s 1.%d", b[:n], req.Method, req.RequestURI, req.ProtoMinor, h.method, h.target, h.minor)
		}
		if bytes.HasPrefix(h.path, []byte("/")) && !bytes.ContainsAny(h.path, "%") && req.URL.Path != string(h.path) {
			t.Fatalf("%q: path %q, we %q", b[:n], req.URL.Path, h.path)
		}
		if ua := req.Header.Get("User-Agent"); len(req.Header.Values("User-Agent")) == 1 && ua != string(h.userAgent) {
			t.Fatalf("%q: User-Agent %q, we %q", b[:n], ua, h.userAgent)
		}
		if !h.transferEncoding && h.contentLength >= 0 && req.ContentLength != h.contentLength {
			t.Fatalf("%q: Content-Length %d, we %d", b[:n], req.ContentLength, h.contentLength)
		}
		if len(req.Header.Values("X-Forwarded-For")) != len(h.realIP) {
			t.Fatalf("%q: %d X-Forwarded-For lines, we %d", b[:n], len(req.Header.Values("X-Forwarded-For")), len(h.realIP))
		}
		if h.close && !req.Close {
			t.Fatalf("%q: we close, net/http would not", b[:n])
		}
	})
}

// actions keeps the action strings it is told, as a metrics label would.
type actions struct {
	mu    sync.Mutex
	seen  []string
	timed int
}

func (a *actions) Observe(action string, _ error, _ time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, action)
	a.timed++
}

func (a *actions) Count(action string, _ error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, action)
}

// The strings the Observer is given outlive the read buffer they were
// parsed from.
func TestObserverKeepsItsActions(t *testing.T) {
	obs := &actions{}
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{Observer: obs})
	c := dial(t, addr)
	c.ok(announceTarget(1))
	c.send(rawGet("/scrape?info_hash="+hashA+"&padding=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "HTTP/1.1"))
	c.read()
	c.send(rawGet("/xxxxxxxx/announce?info_hash=short", "HTTP/1.1"))
	c.read()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if strings.Join(obs.seen, ",") != "announce,scrape,announce" {
		t.Fatalf("the Observer holds %q", obs.seen)
	}
}

// Every request of a keep-alive connection is counted, and a sample of
// them timed: the first and every timingSample-th after.
func TestObserverCountsAllTimesSome(t *testing.T) {
	obs := &actions{}
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{Observer: obs})
	c := dial(t, addr)
	// With timingSample 16: the 1st, 17th and 33rd are timed.
	const n, timed = 33, 3
	for i := range n {
		c.ok(announceTarget(i))
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.seen) != n || obs.timed != timed {
		t.Fatalf("%d requests: %d counted, %d timed; want %d and %d", n, len(obs.seen), obs.timed, n, timed)
	}
}

// Over the socket too, a request past max_inflight is refused at once with
// 503 and Retry-After, and the connection stays usable.
func TestMaxInflightOverSocket(t *testing.T) {
	slow := &slowTracker{Tracker: newTracker(t, tracker.Config{}), entered: make(chan struct{}, 4), gate: make(chan struct{})}
	_, addr := serve(t, slow, Config{MaxInflight: 1})
	busy := dial(t, addr)
	busy.send(rawGet(announceTarget(1), "HTTP/1.1"))
	<-slow.entered

	c := dial(t, addr)
	c.send(rawGet(announceTarget(2), "HTTP/1.1"))
	resp, body := c.read()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" || failureOf(t, body) != "tracker overloaded, retry later" {
		t.Fatalf("over max_inflight: %d, Retry-After %q, %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	close(slow.gate)
	resp, body = busy.read()
	mustAnnounceOK(t, resp, body)
	c.ok(announceTarget(2))
}

// A client that stops reading holds its connection only until the write
// timeout.
func TestWriteTimeout(t *testing.T) {
	// Several times what the server's send buffer grows to (tcp_wmem,
	// 4 MiB by default), yet small enough to copy quickly under the race
	// detector: the site's answer is buffered whole.
	big := strings.Repeat("x", 16<<20)
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	fe, addr := serve(t, newTracker(t, tracker.Config{}), Config{Site: site, WriteTimeout: 200 * time.Millisecond, MaxConnections: 10})
	c := dial(t, addr)
	// A fixed receive buffer: hosts that let TCP grow one to 32 MiB
	// (tcp_rmem) would otherwise take in the whole answer, and the
	// server's writes would never stall.
	if err := c.conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	c.send(rawGet("/big", "HTTP/1.1"))
	// The answer's first bytes: the server has the connection and is
	// writing (before it counts the connection, none is active). The
	// timeout is timed from here, not from the send: building the
	// answer takes a while under the race detector on a busy machine.
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c.conn, make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stalled connection to be closed", func() bool { return fe.conns.Active() == 0 })
}

// A renewed certificate is served after ReloadCertificate, without a
// restart; a broken file leaves the running one in place.
func TestReloadCertificate(t *testing.T) {
	dir := t.TempDir()
	old := testcert.Issue(t, dir)
	certFile := old.Cert
	fe, addr := serve(t, newTracker(t, tracker.Config{}), Config{TLSCertFile: old.Cert, TLSKeyFile: old.Key})
	handshake := func(pool *x509.CertPool) error { return testcert.Handshake(addr, pool) }
	oldPool := old.Pool
	if err := handshake(oldPool); err != nil {
		t.Fatal(err)
	}

	// The renewal overwrites the files in place, as certbot's deploy
	// step or a copy would.
	newPool := testcert.Issue(t, dir).Pool
	if err := handshake(newPool); err == nil {
		t.Fatal("the renewed certificate was served before a reload")
	}
	if err := fe.ReloadCertificate(); err != nil {
		t.Fatal(err)
	}
	if err := handshake(newPool); err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	if err := handshake(oldPool); err == nil {
		t.Fatal("the old certificate is still served after the reload")
	}

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fe.ReloadCertificate(); err == nil {
		t.Fatal("a broken certificate file was accepted")
	}
	if err := handshake(newPool); err != nil {
		t.Fatalf("a failed reload dropped the running certificate: %v", err)
	}
}

// A client that sends Expect: 100-continue waits for the go-ahead before
// its body; the server gives it rather than leave the client to time out.
func TestExpectContinue(t *testing.T) {
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b))
	})
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{Site: site})
	c := dial(t, addr)
	c.send("POST /secret/report HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	resp, _ := c.read()
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("status %d before the body, want 100", resp.StatusCode)
	}
	c.send("abcd")
	resp, body := c.read()
	if resp.StatusCode != 200 || string(body) != "got abcd" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}

	// An announce's body is read and dropped, after the same go-ahead.
	c.send("GET " + announceTarget(1) + " HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	if resp, _ = c.read(); resp.StatusCode != http.StatusContinue {
		t.Fatalf("announce: status %d before the body, want 100", resp.StatusCode)
	}
	c.send("xy")
	resp, body = c.read()
	mustAnnounceOK(t, resp, body)
}

// A deadline is set again only when the one set would fall later than
// asked, or more than an eighth of the timeout earlier: a connection's
// timeouts never grow, and shrink by at most an eighth.
func TestDeadlineReset(t *testing.T) {
	const d = 8 * time.Second
	t0 := time.Unix(1000, 0)
	var dl deadline
	for _, c := range []struct {
		want  time.Time
		moved bool
	}{
		{t0, true},                   // none set yet
		{t0.Add(d / 8), false},       // set one falls an eighth early: kept
		{t0.Add(d/8 + 1), true},      // more than an eighth early: moved
		{t0, true},                   // set one would fall later: moved
		{t0.Add(-time.Second), true}, // earlier still: moved
	} {
		if got := dl.reset(c.want, d); got != c.moved {
			t.Errorf("reset(%v) = %v, want %v", c.want.Sub(t0), got, c.moved)
		}
		if dl.t.After(c.want) || c.want.Sub(dl.t) > d/8 {
			t.Errorf("after reset(%v) the deadline is %v", c.want.Sub(t0), dl.t.Sub(t0))
		}
	}
}
