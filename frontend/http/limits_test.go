package http

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/bencode"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/metrics"
	"github.com/chihaya/chihaya/tracker"
)

// recorder is an Observer that keeps each refusal's metric reason class.
type recorder struct {
	mu      sync.Mutex
	reasons map[string]int
}

func (r *recorder) Observe(action string, err error, _ time.Duration) { r.Count(action, err) }

func (r *recorder) Count(action string, err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reasons == nil {
		r.reasons = map[string]int{}
	}
	r.reasons[action+"/"+metrics.ReasonClass(err)]++
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reasons[key]
}

// newTracker returns the real tracker logic on the memory cache.
func newTracker(t testing.TB, cfg tracker.Config) *tracker.Tracker {
	t.Helper()
	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if cfg.AnnounceInterval == 0 {
		cfg.AnnounceInterval, cfg.MinAnnounceInterval = 30*time.Minute, 15*time.Minute
		cfg.DefaultNumWant, cfg.MaxNumWant, cfg.MaxScrapeInfoHashes = 50, 200, 10
	}
	return tracker.New(cfg, store)
}

// serve starts the frontend on a loopback socket with short timeouts. As
// cmd/chihaya does with the memory cache, one-shot connections are
// answered in the accept loops, except with a tracker that holds answers
// back on purpose (slowTracker), which the command never runs inline.
func serve(t *testing.T, tr Tracker, cfg Config) (*Frontend, string) {
	t.Helper()
	_, slow := tr.(*slowTracker)
	return serveInline(t, tr, cfg, !slow)
}

// serveInline is serve with one-shot connections answered inline or not.
func serveInline(t *testing.T, tr Tracker, cfg Config, inline bool) (*Frontend, string) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.InlineAnswers = inline
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 2 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 2 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 8192
	}
	fe := New(tr, cfg, slog.New(slog.DiscardHandler))
	addr, err := fe.ListenAndServe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = fe.Shutdown(ctx)
	})
	return fe, addr.String()
}

// client is one raw keep-alive connection that sends hand-written
// requests, so the test decides exactly which connection carries what.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// do sends one GET and reads the answer with its body.
func (c *client) do(target string) (*http.Response, []byte) {
	c.t.Helper()
	_ = c.conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: tracker\r\n\r\n", target); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	return c.read()
}

func (c *client) read() (*http.Response, []byte) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("read answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return resp, body
}

// closedByServer waits up to d for the server to close the connection.
func (c *client) closedByServer(d time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.r)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func announceTarget(i int) string {
	return announce{hash: hashA, peer: fmt.Sprintf("-GC0001-%012d", i), port: 6881, left: 1}.target("")
}

// ok sends an announce and checks that it was answered.
func (c *client) ok(target string) {
	c.t.Helper()
	resp, body := c.do(target)
	mustAnnounceOK(c.t, resp, body)
}

func mustAnnounceOK(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	var doc map[string]any
	if resp.StatusCode != http.StatusOK || bencode.DecodeBytes(body, &doc) != nil || failure(doc) != "" || doc["interval"] == nil {
		t.Fatalf("announce answered %d %q", resp.StatusCode, body)
	}
}

func failureOf(t *testing.T, body []byte) string {
	t.Helper()
	var doc map[string]any
	if err := bencode.DecodeBytes(body, &doc); err != nil {
		t.Fatalf("%q is not bencoded: %v", body, err)
	}
	return failure(doc)
}

// Slowloris: connections that send part of a request line and stall hold
// a slot only until read_timeout; meanwhile a well-behaved client is
// answered at once.
func TestSlowlorisIsBoundedByReadTimeout(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	fe, addr := serve(t, newTracker(t, tracker.Config{}), Config{ReadTimeout: readTimeout, MaxConnections: 1000})
	const stalled = 200
	slow := make([]*client, stalled)
	for i := range slow {
		slow[i] = dial(t, addr)
		if _, err := io.WriteString(slow[i].conn, "GET /announce?info_hash=aaaa"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for i := range 20 {
		good := dial(t, addr)
		good.ok(announceTarget(i))
		good.conn.Close()
	}
	if took := time.Since(start); took > readTimeout {
		t.Errorf("20 announces beside %d stalled connections took %v", stalled, took)
	}
	for i, c := range slow {
		if !c.closedByServer(readTimeout + 3*time.Second) {
			t.Fatalf("stalled connection %d still open after the read timeout", i)
		}
	}
	waitFor(t, "the stalled connections' slots to be given back", func() bool { return fe.conns.Active() == 0 })
	resp, body := dial(t, addr).do(announceTarget(99))
	mustAnnounceOK(t, resp, body)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request line or headers beyond max_header_bytes get 431 and a closed
// connection; an absurd parameter within it gets a bencoded failure; the
// server goes on.
func TestOversizedRequests(t *testing.T) {
	_, addr := serve(t, newTracker(t, tracker.Config{}), Config{MaxHeaderBytes: 1024, MaxConnections: 100})
	// net/http allows max_header_bytes plus 4 KiB of buffer.
	long := "/announce?info_hash=" + strings.Repeat("a", 64<<10)
	c := dial(t, addr)
	resp, _ := c.do(long)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 64 KiB request line: %s", resp.Status)
	}
	if !c.closedByServer(2 * time.Second) {
		t.Error("connection left open after a 431")
	}

	c = dial(t, addr)
	_ = c.conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: tracker\r\n", announceTarget(1))
	for i := range 200 {
		fmt.Fprintf(c.conn, "X-Padding-%d: %s\r\n", i, strings.Repeat("p", 100))
	}
	io.WriteString(c.conn, "\r\n")
	if resp, _ := c.read(); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("20 KB of headers: %s", resp.Status)
	}
	if !c.closedByServer(2 * time.Second) {
		t.Error("connection left open after a 431")
	}

	c = dial(t, addr)
	resp, body := c.do("/announce?info_hash=" + strings.Repeat("%41", 1000) + "&peer_id=-GC0001-000000000001&port=1&left=0")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(failureOf(t, body), "invalid info_hash") {
		t.Errorf("a 3000-byte info_hash: %d %q", resp.StatusCode, body)
	}
	resp, body = c.do(announceTarget(2))
	mustAnnounceOK(t, resp, body)
}

// Past max_connections a connection is told 503 with Retry-After and
// closed; the connections within the limit, the well-behaved client's
// among them, are served throughout; once connections close, new ones are
// served again.
func TestConnectionFlood(t *testing.T) {
	obs := &recorder{}
	const limit = 4
	fe, addr := serve(t, newTracker(t, tracker.Config{}), Config{MaxConnections: limit, Observer: obs})

	good := dial(t, addr)
	good.ok(announceTarget(0))
	// Holders fill the other slots; each is answered once, so the
	// server has certainly accepted and counted it.
	holders := make([]*client, limit-1)
	for i := range holders {
		holders[i] = dial(t, addr)
		holders[i].ok(announceTarget(10 + i))
	}
	if n := fe.conns.Active(); n != limit {
		t.Fatalf("%d connections counted, want %d", n, limit)
	}

	const flood = 30
	for i := range flood {
		c := dial(t, addr)
		resp, body := c.do(announceTarget(100 + i))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" || !resp.Close {
			t.Fatalf("excess connection %d: %s, Retry-After %q, close %v", i, resp.Status, resp.Header.Get("Retry-After"), resp.Close)
		}
		if f := failureOf(t, body); f != "too many connections, retry later" {
			t.Fatalf("failure reason %q", f)
		}
		if !c.closedByServer(2 * time.Second) {
			t.Fatal("an excess connection was left open")
		}
		// The well-behaved client keeps its connection and its answers.
		good.ok(announceTarget(0))
	}
	if n := obs.count("connect/too_many_connections_retry_later"); n != flood {
		t.Errorf("%d refused connections reported, want %d", n, flood)
	}

	for _, h := range holders {
		h.conn.Close()
	}
	waitFor(t, "the closed connections' slots", func() bool { return fe.conns.Active() == 1 })
	for i := range limit - 1 {
		dial(t, addr).ok(announceTarget(200 + i))
	}
	good.ok(announceTarget(0))
}

// slowTracker is the real tracker behind a gate: announces wait until the
// test lets them through, so requests pile up in flight on demand.
type slowTracker struct {
	Tracker
	entered chan struct{}
	gate    chan struct{}
}

func (s *slowTracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	s.entered <- struct{}{}
	<-s.gate
	return s.Tracker.Announce(ctx, req, resp)
}

// Past max_inflight a request is refused at once with 503, Retry-After
// and a bencoded failure reason, never queued.
func TestMaxInflightSheds(t *testing.T) {
	obs := &recorder{}
	slow := &slowTracker{Tracker: newTracker(t, tracker.Config{}), entered: make(chan struct{}), gate: make(chan struct{})}
	fe := New(slow, Config{MaxInflight: 2, Observer: obs}, slog.New(slog.DiscardHandler))

	serveOne := func(target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = "10.0.0.1:4000"
		rec := httptest.NewRecorder()
		fe.ServeHTTP(rec, req)
		return rec
	}
	done := make(chan *httptest.ResponseRecorder, 2)
	for i := range 2 {
		go func() { done <- serveOne(announceTarget(i)) }()
		<-slow.entered
	}

	shed := make(chan *httptest.ResponseRecorder, 2)
	go func() {
		shed <- serveOne(announceTarget(3))
		shed <- serveOne("/scrape?info_hash=" + hashA)
	}()
	for i := range 2 {
		select {
		case rec := <-shed:
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
				t.Fatalf("request %d over the limit: %d, Retry-After %q", i, rec.Code, rec.Header().Get("Retry-After"))
			}
			if f := failureOf(t, rec.Body.Bytes()); f != "tracker overloaded, retry later" {
				t.Fatalf("failure reason %q", f)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a request over max_inflight waited instead of being refused")
		}
	}
	if obs.count("announce/tracker_overloaded_retry_later") != 1 || obs.count("scrape/tracker_overloaded_retry_later") != 1 {
		t.Errorf("shed requests not reported: %v", obs.reasons)
	}

	close(slow.gate)
	for range 2 {
		if rec := <-done; rec.Code != http.StatusOK || failureOf(t, rec.Body.Bytes()) != "" {
			t.Fatalf("a request within the limit: %d %q", rec.Code, rec.Body)
		}
	}
	go func() {
		for range slow.entered {
		}
	}()
	defer close(slow.entered)
	if rec := serveOne(announceTarget(4)); rec.Code != http.StatusOK {
		t.Fatalf("after the load: %d %q", rec.Code, rec.Body)
	}
	if n := fe.inflight.Load(); n != 0 {
		t.Errorf("%d requests counted in flight after all returned", n)
	}
}

// Requests the frontend cannot parse spend the source's bad-request budget
// in the tracker; past it, every request of the address is refused.
func TestBadRequestLimit(t *testing.T) {
	obs := &recorder{}
	tr := newTracker(t, tracker.Config{
		AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute,
		DefaultNumWant: 50, MaxNumWant: 200, MaxScrapeInfoHashes: 10,
		BadRequestsPerMinute: 3,
	})
	fe := New(tr, Config{Observer: obs}, slog.New(slog.DiscardHandler))
	const abuser = "10.9.9.9:5000"
	for i := range 3 {
		if _, doc := get(t, fe, "/announce?info_hash=short&peer_id=x&port=1&left=0", abuser, nil); !strings.HasPrefix(failure(doc), "invalid info_hash") {
			t.Fatalf("malformed %d: %v", i+1, doc)
		}
	}
	for _, target := range []string{"/announce?info_hash=short", "/scrape?info_hash=x", announceTarget(1)} {
		if _, doc := get(t, fe, target, abuser, nil); failure(doc) != "too many bad requests, slow down" {
			t.Fatalf("%s from a blocked address: %v", target, doc)
		}
	}
	if _, doc := get(t, fe, announceTarget(2), "10.9.9.10:5000", nil); failure(doc) != "" {
		t.Fatalf("another address: %v", doc)
	}
	if n := obs.count("announce/too_many_bad_requests_slow_down"); n != 2 {
		t.Errorf("%d refusals reported, want 2: %v", n, obs.reasons)
	}
}

// FuzzSplitPath checks the routing of paths: only /announce, /scrape and
// their /<passkey>/ forms have an action, and the parts put back together
// are the path.
func FuzzSplitPath(f *testing.F) {
	for _, p := range []string{"/announce", "/scrape", "/abc/announce", "/abc/scrape", "//announce", "/a/b/announce",
		"announce", "/", "", "/announce/", "/ANNOUNCE", "/abc/", "/abc/update", "/%2F/announce", "/a\x00/scrape"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		passkey, action := splitPath(path)
		if action == "" {
			if passkey != "" {
				t.Fatalf("%q: passkey %q without an action", path, passkey)
			}
			return
		}
		if action != "announce" && action != "scrape" {
			t.Fatalf("%q: action %q", path, action)
		}
		if strings.Contains(passkey, "/") {
			t.Fatalf("%q: passkey %q holds a slash", path, passkey)
		}
		want := "/" + action
		if passkey != "" {
			want = "/" + passkey + want
		}
		if want != path {
			t.Fatalf("%q split into %q and %q", path, passkey, action)
		}
	})
}
