package http

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/chihaya/chihaya/tracker"
)

// Connections that bring one request and close get the same answers
// whether the accept loop answers them inline or a goroutine does, and
// every kind that cannot be answered inline (a request in pieces, an
// unfinished body, keep-alive, the site handler's paths) still is.
func TestOneShotConnections(t *testing.T) {
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("site " + r.URL.Path)) })
	for _, inline := range []bool{true, false} {
		name := "goroutine"
		if inline {
			name = "inline"
		}
		t.Run(name, func(t *testing.T) {
			_, addr := serveInline(t, newTracker(t, tracker.Config{}), Config{Site: site}, inline)
			oneShot := func(parts ...string) (*http.Response, []byte, *client) {
				t.Helper()
				c := dial(t, addr)
				for i, p := range parts {
					if i > 0 {
						time.Sleep(50 * time.Millisecond)
					}
					c.send(p)
				}
				resp, body := c.read()
				return resp, body, c
			}

			// HTTP/1.1 with Connection: close, and HTTP/1.0.
			for _, req := range []string{
				rawGet(announceTarget(1), "HTTP/1.1", "Host: t", "Connection: close"),
				rawGet(announceTarget(2), "HTTP/1.0"),
			} {
				resp, body, c := oneShot(req)
				mustAnnounceOK(t, resp, body)
				if !resp.Close || !c.closedByServer(2*time.Second) {
					t.Fatalf("%q: connection not closed after the answer", req)
				}
				// The address comes from the socket.
				if !bytes.Contains(body, []byte("11:external ip4:\x7f\x00\x00\x01")) {
					t.Fatalf("external ip not 127.0.0.1 in %q", body)
				}
			}

			// A scrape, and a refusal with its reason.
			resp, body, _ := oneShot(rawGet("/scrape?info_hash="+hashA, "HTTP/1.0"))
			if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("d5:filesd20:")) {
				t.Fatalf("scrape: %d %q", resp.StatusCode, body)
			}
			resp, body, _ = oneShot(rawGet("/announce?info_hash=short", "HTTP/1.0"))
			if resp.StatusCode != 200 || failureOf(t, body) == "" {
				t.Fatalf("bad announce: %d %q", resp.StatusCode, body)
			}

			// The head in two pieces.
			req := rawGet(announceTarget(3), "HTTP/1.1", "Host: t", "Connection: close")
			resp, body, _ = oneShot(req[:20], req[20:])
			mustAnnounceOK(t, resp, body)

			// A body that arrives after the head.
			resp, body, _ = oneShot("GET "+announceTarget(4)+" HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", "abc")
			mustAnnounceOK(t, resp, body)

			// Keep-alive: the connection stays and serves again.
			resp, body, c := oneShot(rawGet(announceTarget(5), "HTTP/1.1", "Host: t"))
			mustAnnounceOK(t, resp, body)
			c.ok(announceTarget(6))

			// The site handler's paths.
			resp, body, _ = oneShot(rawGet("/secret/update", "HTTP/1.0"))
			if resp.StatusCode != 200 || string(body) != "site /secret/update" {
				t.Fatalf("site: %d %q", resp.StatusCode, body)
			}
		})
	}
}
