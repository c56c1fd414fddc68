package http

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/bencode"

	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	"github.com/chihaya/chihaya/config"
	"github.com/chihaya/chihaya/tracker"
)

// newFrontend wires the frontend to the real tracker logic and memory cache,
// as the command does; the cache keeps peer ids, so the dictionary model
// can be checked.
func newFrontend(t testing.TB, cfg Config) *Frontend {
	t.Helper()
	return newFrontendOn(t, cfg, `{"peer_ids": true}`)
}

// newFrontendOn is newFrontend with the memory cache configured by
// cacheConfig.
func newFrontendOn(t testing.TB, cfg Config, cacheConfig string) *Frontend {
	t.Helper()
	store, err := cache.Open("memory", []byte(cacheConfig), cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tr := tracker.New(tracker.Config{
		AnnounceInterval:    30 * time.Minute,
		MinAnnounceInterval: 15 * time.Minute,
		DefaultNumWant:      50,
		MaxNumWant:          200,
		MaxScrapeInfoHashes: 3,
	}, store)
	return New(tr, cfg, slog.New(slog.DiscardHandler))
}

type announce struct {
	hash, peer string
	port       int
	left       int
	extra      string
}

func (a announce) target(path string) string {
	if path == "" {
		path = "/announce"
	}
	return fmt.Sprintf("%s?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d%s",
		path, url.QueryEscape(a.hash), url.QueryEscape(a.peer), a.port, a.left, a.extra)
}

// get serves one request and decodes the bencoded body with an independent
// decoder.
func get(t *testing.T, h http.Handler, target, remote string, header http.Header) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = remote
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	if rec.Header().Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Fatalf("Content-Length %q for a body of %d bytes", rec.Header().Get("Content-Length"), len(body))
	}
	var doc map[string]any
	if err := bencode.DecodeBytes(body, &doc); err != nil {
		t.Fatalf("response %q is not a bencoded dictionary: %v", body, err)
	}
	return rec.Code, doc
}

func failure(doc map[string]any) string {
	s, _ := doc["failure reason"].(string)
	return s
}

const hashA = "aaaaaaaaaaaaaaaaaaaa"

func TestAnnounceCompactIPv4(t *testing.T) {
	fe := newFrontend(t, Config{})
	seeder := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881, left: 0}
	leecher := announce{hash: hashA, peer: "-LE0001-000000000002", port: 6882, left: 100}

	_, doc := get(t, fe, seeder.target(""), "10.0.0.1:40000", nil)
	if f := failure(doc); f != "" {
		t.Fatalf("failure: %s", f)
	}
	if doc["peers"] != "" || doc["complete"] != int64(1) || doc["incomplete"] != int64(0) {
		t.Fatalf("first announce: %v", doc)
	}

	code, doc := get(t, fe, leecher.target(""), "10.0.0.2:40000", nil)
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	want := string([]byte{10, 0, 0, 1, 6881 >> 8, 6881 & 0xff})
	if doc["peers"] != want {
		t.Fatalf("peers = %q, want the seeder %q", doc["peers"], want)
	}
	if _, ok := doc["peers6"]; ok {
		t.Errorf("an IPv4 client got peers6")
	}
	if doc["complete"] != int64(1) || doc["incomplete"] != int64(1) || doc["downloaded"] != int64(0) {
		t.Errorf("counts: %v", doc)
	}
	if doc["interval"] != int64(1800) || doc["min interval"] != int64(900) {
		t.Errorf("intervals: %v %v", doc["interval"], doc["min interval"])
	}
	if doc["external ip"] != "\x0a\x00\x00\x02" {
		t.Errorf("external ip = %q", doc["external ip"])
	}

	// The seeder now learns of the leecher.
	_, doc = get(t, fe, seeder.target(""), "10.0.0.1:40000", nil)
	if doc["peers"] != string([]byte{10, 0, 0, 2, 6882 >> 8, 6882 & 0xff}) {
		t.Errorf("seeder got %q", doc["peers"])
	}
}

func TestAnnounceDictionaryModel(t *testing.T) {
	fe := newFrontend(t, Config{})
	a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881}
	b := announce{hash: hashA, peer: "-LE0001-000000000002", port: 6882, left: 5, extra: "&compact=0"}
	get(t, fe, a.target(""), "10.0.0.1:1", nil)
	get(t, fe, a.target(""), "[2001:db8::1]:1", nil)

	_, doc := get(t, fe, b.target(""), "10.0.0.2:1", nil)
	p := onlyPeerDict(t, doc)
	if p["ip"] != "10.0.0.1" || p["port"] != int64(6881) || p["peer id"] != a.peer {
		t.Errorf("peer = %v", p)
	}

	b.extra = "&compact=0&no_peer_id=1"
	_, doc = get(t, fe, b.target(""), "[2001:db8::2]:1", nil)
	p = onlyPeerDict(t, doc)
	if p["ip"] != "2001:db8::1" || p["port"] != int64(6881) {
		t.Errorf("IPv6 peer = %v", p)
	}
	if _, ok := p["peer id"]; ok {
		t.Errorf("no_peer_id=1 still sent peer id")
	}
}

func TestAnnounceIPv6(t *testing.T) {
	fe := newFrontend(t, Config{})
	a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881}
	b := announce{hash: hashA, peer: "-LE0001-000000000002", port: 6882, left: 5}
	get(t, fe, a.target(""), "[2001:db8::1]:1", nil)
	_, doc := get(t, fe, b.target(""), "[2001:db8::2]:1", nil)
	ip := netip.MustParseAddr("2001:db8::1").As16()
	want := string(ip[:]) + "\x1a\xe1"
	if doc["peers6"] != want {
		t.Errorf("peers6 = %q, want %q", doc["peers6"], want)
	}
	if doc["peers"] != "" {
		t.Errorf("an IPv6 client got IPv4 peers %q", doc["peers"])
	}
	if len(doc["external ip"].(string)) != 16 {
		t.Errorf("external ip = %q", doc["external ip"])
	}
}

// IPv4-mapped addresses, as a dual-stack socket reports IPv4 clients, are
// IPv4 clients.
func TestMappedAddressIsIPv4(t *testing.T) {
	fe := newFrontend(t, Config{})
	a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881}
	b := announce{hash: hashA, peer: "-LE0001-000000000002", port: 6882, left: 5}
	get(t, fe, a.target(""), "[::ffff:192.0.2.1]:1", nil)
	_, doc := get(t, fe, b.target(""), "192.0.2.2:1", nil)
	if doc["peers"] != string([]byte{192, 0, 2, 1, 0x1a, 0xe1}) {
		t.Errorf("peers = %q", doc["peers"])
	}
}

func TestPasskeyPathIsRouted(t *testing.T) {
	fe := newFrontend(t, Config{})
	a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881}
	_, doc := get(t, fe, a.target("/0123456789abcdef0123456789abcdef/announce"), "10.0.0.1:1", nil)
	if f := failure(doc); f != "" || doc["complete"] != int64(1) {
		t.Fatalf("passkey announce: %v", doc)
	}
	_, doc = get(t, fe, "/0123456789abcdef0123456789abcdef/scrape?info_hash="+hashA, "10.0.0.1:1", nil)
	if _, ok := doc["files"].(map[string]any)[hashA]; !ok {
		t.Fatalf("passkey scrape: %v", doc)
	}
}

func TestFailures(t *testing.T) {
	fe := newFrontend(t, Config{})
	ok := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881}
	tests := []struct {
		name, target string
		status       int
		reason       string
	}{
		{"short hash", announce{hash: "abc", peer: ok.peer, port: 1}.target(""), 200, "invalid info_hash: need 20 bytes, got 3"},
		{"no query", "/announce", 200, "missing info_hash"},
		{"port zero", announce{hash: hashA, peer: ok.peer, port: 0}.target(""), 200, "invalid port: 0 is not a port peers can connect to"},
		{"unknown path", "/announce.php", 404, "not found: announce at /announce, scrape at /scrape"},
		{"nested path", "/a/b/announce", 404, "not found: announce at /announce, scrape at /scrape"},
		{"empty passkey", "//announce", 404, "not found: announce at /announce, scrape at /scrape"},
		{"scrape without hash", "/scrape", 200, "missing info_hash: this tracker does not serve a scrape of every torrent"},
		{"scrape too many", "/scrape?info_hash=" + hashA + "&info_hash=bbbbbbbbbbbbbbbbbbbb&info_hash=cccccccccccccccccccc&info_hash=dddddddddddddddddddd", 200, "too many info_hash values: 4, at most 3 per scrape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, doc := get(t, fe, tt.target, "10.0.0.1:1", nil)
			if code != tt.status || failure(doc) != tt.reason {
				t.Fatalf("got %d %q, want %d %q", code, failure(doc), tt.status, tt.reason)
			}
		})
	}

	req := httptest.NewRequest(http.MethodPost, "/announce", strings.NewReader("x"))
	rec := httptest.NewRecorder()
	fe.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", rec.Code)
	}
}

func TestScrape(t *testing.T) {
	fe := newFrontend(t, Config{})
	hashB := "bbbbbbbbbbbbbbbbbbbb"
	get(t, fe, announce{hash: hashA, peer: "-SE0001-000000000001", port: 1}.target(""), "10.0.0.1:1", nil)
	get(t, fe, announce{hash: hashA, peer: "-LE0001-000000000002", port: 1, left: 9, extra: "&event=started"}.target(""), "10.0.0.2:1", nil)
	get(t, fe, announce{hash: hashA, peer: "-LE0001-000000000002", port: 1, left: 0, extra: "&event=completed"}.target(""), "10.0.0.2:1", nil)
	get(t, fe, announce{hash: hashB, peer: "-LE0001-000000000003", port: 1, left: 9}.target(""), "10.0.0.3:1", nil)

	_, doc := get(t, fe, "/scrape?info_hash="+hashB+"&info_hash="+hashA+"&info_hash="+hashA+"&info_hash=cccccccccccccccccccc", "10.0.0.9:1", nil)
	files := doc["files"].(map[string]any)
	if len(files) != 2 {
		t.Fatalf("files = %v, want the two known swarms only", files)
	}
	a := files[hashA].(map[string]any)
	if a["complete"] != int64(2) || a["incomplete"] != int64(0) || a["downloaded"] != int64(1) {
		t.Errorf("swarm A = %v", a)
	}
	b := files[hashB].(map[string]any)
	if b["complete"] != int64(0) || b["incomplete"] != int64(1) || b["downloaded"] != int64(0) {
		t.Errorf("swarm B = %v", b)
	}
}

func TestReverseProxyHeader(t *testing.T) {
	proxies, _ := config.ParsePrefixes([]string{"127.0.0.1", "10.1.0.0/16"})
	for _, tt := range []struct {
		name, header, remote string
		values               []string
		want                 string
		reason               string
	}{
		{name: "X-Real-IP from proxy", header: "X-Real-IP", remote: "127.0.0.1:1", values: []string{"192.0.2.7"}, want: "192.0.2.7"},
		{name: "X-Real-IP from elsewhere is ignored", header: "X-Real-IP", remote: "192.0.2.9:1", values: []string{"192.0.2.7"}, want: "192.0.2.9"},
		{name: "X-Forwarded-For right-most untrusted hop", header: "X-Forwarded-For", remote: "127.0.0.1:1", values: []string{"6.6.6.6, 192.0.2.7, 10.1.2.3"}, want: "192.0.2.7"},
		{name: "X-Forwarded-For over several headers", header: "X-Forwarded-For", remote: "127.0.0.1:1", values: []string{"6.6.6.6", "2001:db8::5"}, want: "2001:db8::5"},
		{name: "header missing", header: "X-Real-IP", remote: "127.0.0.1:1", reason: "the reverse proxy did not send the X-Real-IP header"},
		{name: "header garbage", header: "X-Real-IP", remote: "127.0.0.1:1", values: []string{"nope"}, reason: "the reverse proxy sent an invalid X-Real-IP header"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fe := newFrontend(t, Config{TrustedProxies: proxies, RealIPHeader: tt.header})
			a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 1}
			_, doc := get(t, fe, a.target(""), tt.remote, http.Header{http.CanonicalHeaderKey(tt.header): tt.values})
			if failure(doc) != tt.reason {
				t.Fatalf("failure %q, want %q", failure(doc), tt.reason)
			}
			if tt.reason != "" {
				return
			}
			want := netip.MustParseAddr(tt.want)
			if got, _ := netip.AddrFromSlice([]byte(doc["external ip"].(string))); got != want {
				t.Fatalf("client address %v, want %v", got, want)
			}
		})
	}
}

func TestIPParamsRegisterBothFamilies(t *testing.T) {
	fe := newFrontend(t, Config{AllowIPParam: true})
	a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881, extra: "&ipv6=2001:db8::1"}
	get(t, fe, a.target(""), "10.0.0.1:1", nil)
	b := announce{hash: hashA, peer: "-LE0001-000000000002", port: 6882, left: 1}
	_, doc := get(t, fe, b.target(""), "[2001:db8::2]:1", nil)
	if len(doc["peers6"].(string)) != 18 {
		t.Errorf("peers6 = %q", doc["peers6"])
	}
	if doc["complete"] != int64(1) {
		t.Errorf("a dual-stack peer must count once: %v", doc)
	}
}

// BenchmarkAnnounceHotPath measures parse → logic → memory cache → write for
// a peer that re-announces into a swarm of 50, the common case, without the
// HTTP server's own work.
func BenchmarkAnnounceHotPath(b *testing.B) {
	fe := newFrontend(b, Config{})
	ctx := b.Context()
	const swarm = 50
	queries := make([]string, swarm)
	for i := range queries {
		queries[i] = announce{hash: hashA, peer: fmt.Sprintf("-BE0001-%012d", i), port: 6881, left: i % 2}.target("")[len("/announce?"):]
	}
	x := fe.pool.Get().(*exchange)
	addr := func(i int) netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x0a000000+uint32(i))
		return netip.AddrFrom4(b)
	}
	for i, q := range queries {
		x.announce.Reset()
		x.announce.IPv4 = addr(i)
		if err := fe.parser.parseAnnounce(q, &x.announce); err != nil {
			b.Fatal(err)
		}
		if err := fe.tracker.Announce(ctx, &x.announce, &x.response); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req, resp := &x.announce, &x.response
		req.Reset()
		resp.Reset()
		req.IPv4, req.Source = addr(i%swarm), addr(i%swarm)
		if err := fe.parser.parseAnnounce(queries[i%swarm], req); err != nil {
			b.Fatal(err)
		}
		if err := fe.tracker.Announce(ctx, req, resp); err != nil {
			b.Fatal(err)
		}
		x.buf = appendAnnounce(x.buf[:0], req, resp)
	}
}

// BenchmarkServeHTTP adds net/http's request handling, as a real client
// sees it minus the socket.
func BenchmarkServeHTTP(b *testing.B) {
	fe := newFrontend(b, Config{})
	target := announce{hash: hashA, peer: "-BE0001-000000000001", port: 6881, left: 1}.target("")
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = "10.0.0.1:4000"
	rec := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		rec.Body.Reset()
		fe.ServeHTTP(rec, req)
	}
}

func TestSiteHandlerGetsOtherPaths(t *testing.T) {
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := "d4:site" + fmt.Sprint(len(r.URL.Path)) + ":" + r.URL.Path + "e"
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write([]byte(body))
	})
	fe := newFrontend(t, Config{Site: site})
	_, doc := get(t, fe, "/0123456789abcdef0123456789abcdef/update?action=x", "10.0.0.1:1", nil)
	if doc["site"] != "/0123456789abcdef0123456789abcdef/update" {
		t.Fatalf("site handler not reached: %v", doc)
	}
	a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881, extra: "&corrupt=12"}
	req := httptest.NewRequest(http.MethodGet, a.target("/k/announce"), nil)
	req.RemoteAddr = "10.0.0.1:1"
	req.Header.Set("User-Agent", "Transmission/4.0")
	rec := httptest.NewRecorder()
	fe.ServeHTTP(rec, req)
	if !strings.HasPrefix(rec.Body.String(), "d8:complete") {
		t.Fatalf("announce beside a site handler: %q", rec.Body.String())
	}
}

// onlyPeerDict is the one peer of a dictionary-model answer.
func onlyPeerDict(t *testing.T, doc map[string]any) map[string]any {
	t.Helper()
	peers, ok := doc["peers"].([]any)
	if !ok || len(peers) != 1 {
		t.Fatalf("peers = %#v", doc["peers"])
	}
	p, ok := peers[0].(map[string]any)
	if !ok {
		t.Fatalf("peer = %#v, not a dictionary", peers[0])
	}
	return p
}

// With the memory cache's defaults no peer ids are kept; the dictionary model
// then lists peers without a `peer id` rather than with a made-up one.
func TestAnnounceDictionaryModelWithoutStoredIDs(t *testing.T) {
	fe := newFrontendOn(t, Config{}, `{}`)
	a := announce{hash: hashA, peer: "-SE0001-000000000001", port: 6881}
	b := announce{hash: hashA, peer: "-LE0001-000000000002", port: 6882, left: 5, extra: "&compact=0"}
	get(t, fe, a.target(""), "10.0.0.1:1", nil)
	_, doc := get(t, fe, b.target(""), "10.0.0.2:1", nil)
	p := onlyPeerDict(t, doc)
	if p["ip"] != "10.0.0.1" || p["port"] != int64(6881) {
		t.Errorf("peer = %v", p)
	}
	if id, ok := p["peer id"]; ok {
		t.Errorf("peer id %q sent though the cache keeps none", id)
	}
}
