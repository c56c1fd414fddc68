package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := Default()
	if c.HTTP.Listen != ":6969" || !c.HTTP.Enabled {
		t.Errorf("HTTP must listen on :6969 by default, got %q enabled=%v", c.HTTP.Listen, c.HTTP.Enabled)
	}
	if c.Cache.Name != "memory" || c.Storage.Name != "" {
		t.Errorf("default stores: cache %q storage %q; want memory and none (open tracker)", c.Cache.Name, c.Storage.Name)
	}
	if c.Tracker.AnnounceInterval.D() != 30*time.Minute {
		t.Errorf("announce_interval = %v", c.Tracker.AnnounceInterval.D())
	}
}

// Every key of the configuration must appear in example.json, which is the
// documentation operators read; decoding already refuses keys it does not
// know, so this checks the other direction.
func TestExampleNamesEveryKey(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(defaults, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(typ reflect.Type, doc map[string]any, path string)
	walk = func(typ reflect.Type, doc map[string]any, path string) {
		for i := range typ.NumField() {
			field := typ.Field(i)
			name, _, _ := strings.Cut(field.Tag.Get("json"), ",")
			value, ok := doc[name]
			if !ok {
				t.Errorf("example.json lacks %s%s", path, name)
				continue
			}
			if field.Type.Kind() == reflect.Struct && field.Type != reflect.TypeFor[Duration]() {
				sub, _ := value.(map[string]any)
				walk(field.Type, sub, path+name+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), doc, "")
}

func TestParseOverridesOnlyWhatItNames(t *testing.T) {
	c, err := Parse(strings.NewReader(`{"tracker": {"announce_interval": "40m", "peer_lifetime": "1h"}, "http": {"listen": "127.0.0.1:7000"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracker.AnnounceInterval.D() != 40*time.Minute || c.Tracker.PeerLifetime.D() != time.Hour || c.HTTP.Listen != "127.0.0.1:7000" {
		t.Errorf("overrides not applied: %+v", c)
	}
	if c.Tracker.MinAnnounceInterval.D() != 15*time.Minute || c.Tracker.MaxNumWant != 200 || c.HTTP.ReadTimeout.D() != 5*time.Second {
		t.Errorf("defaults lost: %+v", c)
	}
}

func TestSwitchingDriverDropsTheDefaultBlock(t *testing.T) {
	c, err := Parse(strings.NewReader(`{"cache": {"driver": "other"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.Name != "other" || c.Cache.Config != nil {
		t.Errorf("cache = %q %s; the memory driver's block must not reach another driver", c.Cache.Name, c.Cache.Config)
	}
	c, err = Parse(strings.NewReader(`{"cache": {"config": {"shards": 16}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Cache.Config) != `{"shards": 16}` {
		t.Errorf("cache.config = %s", c.Cache.Config)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	tests := []struct{ input, want string }{
		{``, "the configuration is empty"},
		{`[]`, "the configuration must be a JSON object"},
		{`{"http": {"listen": ":1"}`, "invalid JSON"},
		{`{} {}`, "invalid JSON"},
		{`{"listen": ":1"}`, `unknown key "listen"`},
		{`{"http": {"listn": ":1"}}`, `unknown key "http.listn"`},
		{`{"tracker": []}`, "tracker: want an object"},
		{`{"tracker": {"max_numwant": "many"}}`, "tracker.max_numwant: want a whole number, got string"},
		{`{"tracker": {"max_numwant": 2.5}}`, "tracker.max_numwant: want a whole number, got number 2.5"},
		{`{"http": {"enabled": "yes"}}`, "http.enabled: want true or false, got string"},
		{`{"http": {"trusted_proxies": "10.0.0.1"}}`, "http.trusted_proxies: want a list, got string"},
		{`{"tracker": {"peer_lifetime": "forever"}}`, `tracker.peer_lifetime: invalid duration "forever"`},
		{`{"tracker": {"peer_lifetime": 60}}`, `tracker.peer_lifetime: want a duration string such as "30m"`},
		{`{"log_level": "chatty"}`, `log_level: unknown level "chatty"`},
		{`{"shutdown_timeout": "0s"}`, "shutdown_timeout: must be positive"},
		{`{"tracker": {"announce_interval": "0s"}}`, "tracker.announce_interval: must be positive"},
		{`{"tracker": {"min_announce_interval": "1h"}}`, "tracker.min_announce_interval: must be positive and at most announce_interval (30m0s)"},
		{`{"tracker": {"announce_jitter": "-1s"}}`, "tracker.announce_jitter: must not be negative"},
		{`{"tracker": {"peer_lifetime": "30m"}}`, "tracker.peer_lifetime: must be longer than announce_interval plus announce_jitter (35m0s)"},
		{`{"tracker": {"default_numwant": 300}}`, "tracker.default_numwant: must be between 0 and max_numwant (200)"},
		{`{"tracker": {"max_numwant": -1, "default_numwant": 0}}`, "tracker.max_numwant: must not be negative"},
		{`{"tracker": {"max_scrape_infohashes": 0}}`, "tracker.max_scrape_infohashes: must be at least 1"},
		{`{"tracker": {"infohash_list_mode": "block"}}`, `tracker.infohash_list_mode: must be "allow" or "deny"`},
		{`{"http": {"listen": ""}}`, "http.listen: must be set while http.enabled is true"},
		{`{"http": {"read_timeout": "0s"}}`, "http.read_timeout: must be positive"},
		{`{"http": {"write_timeout": "0s"}}`, "http.write_timeout: must be positive"},
		{`{"http": {"idle_timeout": "0s"}}`, "http.idle_timeout: must be positive"},
		{`{"http": {"max_header_bytes": 100}}`, "http.max_header_bytes: must be at least 512"},
		{`{"http": {"trusted_proxies": ["10.0.0.0/33"], "real_ip_header": "X-Real-IP"}}`, `http.trusted_proxies: "10.0.0.0/33" is not an address or prefix`},
		{`{"http": {"trusted_proxies": ["10.0.0.1"]}}`, "http.real_ip_header: must be set when trusted_proxies is not empty"},
		{`{"http": {"real_ip_header": "X-Real-IP"}}`, "http.trusted_proxies: must list the proxies whose X-Real-IP header is believed"},
		{`{"cache": {"driver": ""}}`, "cache.driver: must name a cache driver"},
		{`{"storage": {"flush_interval": "0s"}}`, "storage.flush_interval: must be positive"},
		{`{"storage": {"write_timeout": "0s"}}`, "storage.write_timeout: must be positive"},
		{`{"storage": {"max_retry_interval": "1s"}}`, "storage.max_retry_interval: must be at least flush_interval (3s)"},
		{`{"storage": {"max_pending_peer_rows": 0}}`, "storage.max_pending_peer_rows: must be at least 1"},
		{`{"storage": {"reload_interval": "-1s"}}`, "storage.reload_interval: must not be negative"},
		{`{"storage": {"deletion_reason_lifetime": "-1s"}}`, "storage.deletion_reason_lifetime: must not be negative"},
		{`{"storage": {"bogus": 1}}`, `unknown key "storage.bogus"`},
		{`{"http": {"enabled": false}, "udp": {"enabled": false}}`, "http.enabled: http and udp are both disabled"},
		{`{"udp": {"listen": ""}}`, "udp.listen: must be set while udp.enabled is true"},
		{`{"admin": {"listen": ""}}`, "admin.listen: must be set while admin.enabled is true"},
		{`{"udp": {"readers": -1}}`, "udp.readers: must be between 0 (one per CPU) and 1024"},
		{`{"udp": {"connection_id_lifetime": "10s"}}`, "udp.connection_id_lifetime: must be between 1m and 1h"},
		{`{"udp": {"connection_id_key": "abc"}}`, "udp.connection_id_key: must be 32 hex digits, got 3 characters"},
		{`{"udp": {"connection_id_key": "zz000000000000000000000000000000"}}`, "udp.connection_id_key: must be 32 hex digits"},
		{`{"udp": {"connection_id_key": "00000000000000000000000000000000"}}`, "udp.connection_id_key: must not be all zeros"},
		{`{"udp": {"max_numwant": -5}}`, "udp.max_numwant: must not be negative"},
		{`{"udp": {"max_scrape_infohashes": 0}}`, "udp.max_scrape_infohashes: must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(path, []byte(`{"http": {"listen": 6969}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "http.listen: want a string") {
		t.Fatalf("error = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("a missing file must be an error")
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"10.0.0.1", "::ffff:192.168.0.0/112", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1/32", "192.168.0.0/16", "2001:db8::/32"}
	for i, p := range got {
		if p.String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, p, want[i])
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(string(defaults))
	f.Add(`{"tracker": {"peer_lifetime": "1h"}, "http": {"trusted_proxies": ["::1"], "real_ip_header": "X-Real-IP"}}`)
	f.Add(`{"cache": {"driver": "x", "config": [1, 2]}}`)
	f.Fuzz(func(t *testing.T, input string) {
		c, err := Parse(strings.NewReader(input))
		if err == nil && c.Validate() != nil {
			t.Fatalf("Parse accepted a configuration that does not validate: %s", input)
		}
	})
}
