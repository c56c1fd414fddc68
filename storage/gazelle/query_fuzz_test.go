package gazelle

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	"github.com/chihaya/chihaya/storage"
	"github.com/chihaya/chihaya/tracker"
)

// FuzzUpdateQuery feeds arbitrary query strings to the update API: the
// parser (parseQuery and the value readers the actions use) must agree
// with a straightforward reading of Ocelot's rules, and the whole handler,
// applying the update to the real private-tracker rules, must answer 200
// and never panic. The port is public; only the secret stands before this
// parser, and a query is whatever the site (or a bug in it) sends.
func FuzzUpdateQuery(f *testing.F) {
	hash := "%AA%BB%CC%DD%EE%FF%00%11%22%33%44%55%66%77%88%99%AA%BB%CC%DD"
	passkey := strings.Repeat("k", secretLen)
	for _, q := range []string{
		"action=add_torrent&id=1&info_hash=" + hash + "&freetorrent=1",
		"action=update_torrent&info_hash=" + hash + "&freetorrent=0",
		"action=update_torrents&info_hashes=" + hash + hash + "abc&freetorrent=2",
		"action=delete_torrent&info_hash=" + hash + "&reason=3",
		"action=add_user&id=7&passkey=" + passkey + "&visible=0",
		"action=update_user&passkey=" + passkey + "&can_leech=0",
		"action=remove_users&passkeys=" + passkey + passkey + "short",
		"action=change_passkey&oldpasskey=" + passkey + "&newpasskey=x",
		"action=add_token&info_hash=" + hash + "&userid=7",
		"action=remove_token&info_hash=" + hash + "&userid=4294967296",
		"action=add_whitelist&peer_id=-TR",
		"action=edit_whitelist&old_peer_id=-TR&new_peer_id=-qB",
		"action=update_announce_interval&new_announce_interval=99999999999999999999",
		"action=update_announce_jitter&new_announce_jitter=-5",
		"action=info_torrent&info_hash=" + hash,
		"action=trace_user&passkey=" + passkey + "&trace=1",
		"action=add_torrent&id=+12abc&info_hash=%zz%4",
		"&&==&action&=&action=&%", "a=1&b=x+y&c=%41&&d&e=f=g&a=2&=z", "",
	} {
		f.Add(q)
	}

	s := fuzzStore(f)
	swarms, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { swarms.Close() })
	// The flusher is never started: nothing reaches the (absent) database.
	flusher := storage.NewFlusher(s, storage.FlusherConfig{Interval: time.Hour, Timeout: time.Second, MaxBackoff: time.Hour, MaxPeerRows: 1000}, s.log)
	// Each input gets fresh rules, so that inputs do not pile state up
	// (the minimizer runs one input thousands of times).
	handler := func() http.Handler {
		tr := tracker.New(tracker.Config{
			AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute,
			DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 50,
		}, swarms)
		p := tracker.NewPrivate(tr, tracker.PrivateConfig{PeerLifetime: time.Hour, DeletionMemory: time.Hour, DeletionMessage: DeletionMessage}, flusher)
		return s.SiteHandler(p)
	}

	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 512 {
			return
		}
		q := parseQuery(raw)
		checkQuery(t, raw, q)
		for _, v := range q {
			checkValue(t, v)
		}
		checkValue(t, raw)

		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path = "/" + testSitePassword + "/update"
		req.URL.RawQuery = raw
		rec := httptest.NewRecorder()
		handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 || rec.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) {
			t.Fatalf("update?%q answered %d, Content-Length %q, %q", raw, rec.Code, rec.Header().Get("Content-Length"), rec.Body)
		}
	})
}

// fuzzStore is storeWithoutDB for a fuzz target, with a silent log.
func fuzzStore(f *testing.F) *Store {
	raw, _ := json.Marshal(map[string]any{
		"dsn":             "user:secret@tcp(127.0.0.1:1)/gazelle",
		"site_password":   testSitePassword,
		"report_password": testReportPassword,
	})
	c, err := parseConfig(raw)
	if err != nil {
		f.Fatal(err)
	}
	connector, err := mysql.NewConnector(c.mysql)
	if err != nil {
		f.Fatal(err)
	}
	s := newStore(c, sql.OpenDB(connector))
	s.log = slog.New(slog.DiscardHandler)
	f.Cleanup(func() { s.Close() })
	return s
}

// checkQuery compares parseQuery with a plain reading of the rules: pairs
// split on '&', empty pairs skipped, key and value split at the first '=',
// the last of a repeated key wins, nothing decoded.
func checkQuery(t *testing.T, raw string, q map[string]string) {
	t.Helper()
	want := map[string]string{}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		want[k] = v
	}
	if !maps.Equal(q, want) {
		t.Fatalf("parseQuery(%q) = %q, want %q", raw, q, want)
	}
	for k, v := range q {
		if strings.ContainsAny(k, "&=") || strings.Contains(v, "&") {
			t.Fatalf("parseQuery(%q): pair %q=%q crosses a separator", raw, k, v)
		}
	}
}

// checkValue checks the readers of one parameter value.
func checkValue(t *testing.T, v string) {
	t.Helper()
	b := percentDecode(v)
	if len(b) > len(v) {
		t.Fatalf("percentDecode(%q) grew to %d bytes", v, len(b))
	}
	if !strings.Contains(v, "%") && string(b) != v {
		t.Fatalf("percentDecode(%q) = %q changed a value without escapes", v, b)
	}
	// Escaping every byte and decoding gives the bytes back.
	enc := make([]byte, 0, 3*len(v))
	for i := 0; i < len(v); i++ {
		enc = append(enc, '%', "0123456789ABCDEF"[v[i]>>4], "0123456789abcdef"[v[i]&15])
	}
	if got := percentDecode(string(enc)); string(got) != v {
		t.Fatalf("percentDecode of %q fully escaped = %q", v, got)
	}

	h, ok := parseInfoHash(v)
	if ok != (len(b) == len(h)) || ok && !bytes.Equal(h[:], b) {
		t.Fatalf("parseInfoHash(%q) = %x, %v; decoded %x", v, h, ok, b)
	}
	hashes := parseInfoHashes(v)
	if len(hashes) != len(b)/20 {
		t.Fatalf("parseInfoHashes(%q): %d hashes from %d bytes", v, len(hashes), len(b))
	}
	for i, h := range hashes {
		if !bytes.Equal(h[:], b[i*20:i*20+20]) {
			t.Fatalf("parseInfoHashes(%q)[%d] = %x", v, i, h)
		}
	}

	n, ok := leadingInt(v)
	if digits := strings.TrimLeft(v, "+-"); ok != (len(v) > 0 && len(digits) > 0 && digits[0] >= '0' && digits[0] <= '9' && len(v)-len(digits) <= 1) {
		t.Fatalf("leadingInt(%q) ok = %v", v, ok)
	}
	if ok && (n < 0) != (v[0] == '-' && n != 0) {
		t.Fatalf("leadingInt(%q) = %d: wrong sign", v, n)
	}
	id, idOK := parseID(v)
	if idOK != (ok && n >= 1 && n <= math.MaxUint32) || idOK && int64(id) != n {
		t.Fatalf("parseID(%q) = %d, %v; leadingInt %d, %v", v, id, idOK, n, ok)
	}
}
