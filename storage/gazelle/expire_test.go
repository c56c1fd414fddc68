package gazelle

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/chihaya/chihaya/storage"
)

const (
	testSitePassword   = "s1tepassw0rds1tepassw0rds1tepass"
	testReportPassword = "rep0rtpassw0rdrep0rtpassw0rdrep0"
)

// storeWithoutDB builds a store from a configuration without connecting;
// the site interface and the token callback need no database.
func storeWithoutDB(t *testing.T, extra map[string]any) *Store {
	t.Helper()
	conf := map[string]any{
		"dsn":             "user:secret@tcp(127.0.0.1:1)/gazelle",
		"site_password":   testSitePassword,
		"report_password": testReportPassword,
	}
	for k, v := range extra {
		conf[k] = v
	}
	raw, _ := json.Marshal(conf)
	c, err := parseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	connector, err := mysql.NewConnector(c.mysql)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(c, sql.OpenDB(connector))
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeSite stands in for Gazelle's tools.php: a real HTTP server in the
// test process that records the requests it gets.
type fakeSite struct {
	mu       sync.Mutex
	requests []*http.Request
	status   int
}

func (f *fakeSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r)
	if f.status != 0 {
		w.WriteHeader(f.status)
	}
	fmt.Fprint(w, "ok")
}

func TestExpireTokensCallback(t *testing.T) {
	site := &fakeSite{}
	srv := httptest.NewServer(site)
	defer srv.Close()
	// The base URL lacks its trailing slash on purpose.
	s := storeWithoutDB(t, map[string]any{"site_url": srv.URL + "/gazelle"})

	if err := s.ExpireTokens(ctx, []storage.Token{{UserID: 1, TorrentID: 2}, {UserID: 30, TorrentID: 40}}); err != nil {
		t.Fatal(err)
	}
	if len(site.requests) != 1 {
		t.Fatalf("%d requests, want 1", len(site.requests))
	}
	r := site.requests[0]
	if r.Method != http.MethodGet || r.URL.Path != "/gazelle/tools.php" {
		t.Errorf("request %s %s, want GET /gazelle/tools.php", r.Method, r.URL.Path)
	}
	if want := "key=" + testSitePassword + "&type=expiretoken&action=ocelot&tokens=1:2,30:40"; r.URL.RawQuery != want {
		t.Errorf("query %q\n want %q", r.URL.RawQuery, want)
	}
}

func TestExpireTokensSplitsLongLists(t *testing.T) {
	site := &fakeSite{}
	srv := httptest.NewServer(site)
	defer srv.Close()
	s := storeWithoutDB(t, map[string]any{"site_url": srv.URL + "/"})

	var tokens []storage.Token
	var want []string
	for i := range 100 {
		tok := storage.Token{UserID: uint32(1000000 + i), TorrentID: uint32(2000000 + i)}
		tokens = append(tokens, tok)
		want = append(want, fmt.Sprintf("%d:%d", tok.UserID, tok.TorrentID))
	}
	if err := s.ExpireTokens(ctx, tokens); err != nil {
		t.Fatal(err)
	}
	if len(site.requests) < 5 {
		t.Fatalf("%d requests for 100 tokens of 15 characters, want several", len(site.requests))
	}
	var got []string
	for _, r := range site.requests {
		v := r.URL.Query().Get("tokens")
		if len(v) > maxTokensParam {
			t.Errorf("tokens value of %d characters, want at most %d", len(v), maxTokensParam)
		}
		got = append(got, strings.Split(v, ",")...)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the requests did not carry every token once, in order")
	}
}

func TestExpireTokensErrors(t *testing.T) {
	site := &fakeSite{status: http.StatusInternalServerError}
	srv := httptest.NewServer(site)
	s := storeWithoutDB(t, map[string]any{"site_url": srv.URL + "/"})
	err := s.ExpireTokens(ctx, []storage.Token{{UserID: 1, TorrentID: 2}})
	if err == nil || storage.IsPermanent(err) || !strings.Contains(err.Error(), "500") {
		t.Errorf("site answering 500: %v, want a retryable error naming the status", err)
	}

	srv.Close()
	err = s.ExpireTokens(ctx, []storage.Token{{UserID: 1, TorrentID: 2}})
	if err == nil || storage.IsPermanent(err) {
		t.Errorf("site down: %v, want a retryable error", err)
	}
	if err != nil && strings.Contains(err.Error(), testSitePassword) {
		t.Errorf("the error shows the site password: %v", err)
	}
}

func TestExpireTokensReadonly(t *testing.T) {
	site := &fakeSite{}
	srv := httptest.NewServer(site)
	defer srv.Close()
	s := storeWithoutDB(t, map[string]any{"site_url": srv.URL + "/", "readonly": true})
	if err := s.ExpireTokens(ctx, []storage.Token{{UserID: 1, TorrentID: 2}}); err != nil {
		t.Fatal(err)
	}
	if len(site.requests) != 0 {
		t.Errorf("a readonly store called the site")
	}
}

func TestTokenParams(t *testing.T) {
	if got := tokenParams(nil); len(got) != 0 {
		t.Errorf("no tokens: %q", got)
	}
	if got := tokenParams([]storage.Token{{UserID: 5, TorrentID: 6}}); len(got) != 1 || got[0] != "5:6" {
		t.Errorf("one token: %q", got)
	}
}
