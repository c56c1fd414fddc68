package config

import (
	"strings"
	"testing"
)

func TestLimitDefaults(t *testing.T) {
	c := Default()
	if c.HTTP.MaxConnections != 10000 || c.HTTP.MaxInflight != 4096 {
		t.Errorf("http bounds: max_connections %d, max_inflight %d", c.HTTP.MaxConnections, c.HTTP.MaxInflight)
	}
	if c.Tracker.RateLimit.BadRequestsPerMinute != 60 || c.Tracker.RateLimit.AnnouncesPerMinute != 0 {
		t.Errorf("rate limits: %+v", c.Tracker.RateLimit)
	}
	if c.Tracker.MinPort != 0 || len(c.Tracker.BlockedPeerIDPrefixes) != 0 || c.MemoryLimit != 0 {
		t.Errorf("min_port %d, blocked %q, memory_limit %d: want all off", c.Tracker.MinPort, c.Tracker.BlockedPeerIDPrefixes, c.MemoryLimit)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30, "2 GiB": 2 << 30,
		"1.5GB": 1_500_000_000, "64KiB": 64 << 10, "100B": 100, "1TiB": 1 << 40, "3MB": 3_000_000,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "2GB2", "1e9", "0x10", "NaN", "inf", "2 gigabytes", "99999999TiB"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestLimitKeys(t *testing.T) {
	c, err := Parse(strings.NewReader(`{"memory_limit": "2GiB", "tracker": {"min_port": 1024,
		"blocked_peer_id_prefixes": ["-XX", "M7-"], "rate_limit": {"announces_per_minute": 30}},
		"http": {"max_connections": 5, "max_inflight": 0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.MemoryLimit != 2<<30 || c.Tracker.MinPort != 1024 || len(c.Tracker.BlockedPeerIDPrefixes) != 2 ||
		c.Tracker.RateLimit.AnnouncesPerMinute != 30 || c.Tracker.RateLimit.BadRequestsPerMinute != 60 ||
		c.HTTP.MaxConnections != 5 || c.HTTP.MaxInflight != 0 {
		t.Errorf("not applied: %+v", c)
	}
	if c, err := Parse(strings.NewReader(`{"memory_limit": 33554432}`)); err != nil || c.MemoryLimit != 32<<20 {
		t.Errorf("a plain number of bytes: %v %v", c, err)
	}

	for body, key := range map[string]string{
		`{"memory_limit": "2"}`:                                                  "memory_limit: must be",
		`{"memory_limit": "lots"}`:                                               "memory_limit: invalid size",
		`{"memory_limit": true}`:                                                 "memory_limit: want a size",
		`{"tracker": {"min_port": 70000}}`:                                       "tracker.min_port:",
		`{"tracker": {"min_port": -1}}`:                                          "tracker.min_port:",
		`{"tracker": {"blocked_peer_id_prefixes": [""]}}`:                        "tracker.blocked_peer_id_prefixes:",
		`{"tracker": {"blocked_peer_id_prefixes": ["-XX0001-0123456789abc"]}}`:   "tracker.blocked_peer_id_prefixes:",
		`{"tracker": {"rate_limit": {"bad_requests_per_minute": -1}}}`:           "tracker.rate_limit.bad_requests_per_minute:",
		`{"tracker": {"rate_limit": {"announces_per_minute": 2000000}}}`:         "tracker.rate_limit.announces_per_minute:",
		`{"tracker": {"rate_limit": {"per_hour": 1}}}`:                           `unknown key "tracker.rate_limit.per_hour"`,
		`{"http": {"max_connections": -1}}`:                                      "http.max_connections:",
		`{"http": {"max_inflight": -5}}`:                                         "http.max_inflight:",
		`{"http": {"max_inflight": "lots"}}`:                                     "http.max_inflight: want a whole number",
		`{"tracker": {"blocked_peer_id_prefixes": "-XX"}}`:                       "tracker.blocked_peer_id_prefixes: want a list",
		`{"tracker": {"rate_limit": {"bad_requests_per_minute": 1.5}}}`:          "tracker.rate_limit.bad_requests_per_minute:",
		`{"tracker": {"rate_limit": {"announces_per_minute": 1000001, "x": 1}}}`: "tracker.rate_limit.",
	} {
		_, err := Parse(strings.NewReader(body))
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v, want one naming %q", body, err, key)
		}
	}
}
