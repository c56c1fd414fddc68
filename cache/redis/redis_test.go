package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/cache/cachetest"
)

func TestSuite(t *testing.T) {
	addrs := []string{sharedRedis(t)}
	cachetest.Run(t, func(t *testing.T, opts cache.Options) cache.Store {
		return openStore(t, addrs, false, testPrefix(t, addrs, false), opts, "")
	})
}

func TestConfig(t *testing.T) {
	def := defaultConfig()
	with := func(f func(c *config)) config {
		c := defaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		in   string
		want config
		err  string
	}{
		{in: ``, want: def},
		{in: `null`, want: def},
		{in: ` {} `, want: def},
		{in: `{"addrs": ["redis:6380"], "username": "u", "password": "p", "db": 2, "key_prefix": "t1:", "pool_size": 16,
			"dial_timeout": "2s", "read_timeout": "1s", "write_timeout": "250ms", "reap_interval": "30s"}`,
			want: with(func(c *config) {
				c.addrs, c.username, c.password, c.db, c.keyPrefix, c.poolSize = []string{"redis:6380"}, "u", "p", 2, "t1:", 16
				c.dialTimeout, c.readTimeout, c.writeTimeout, c.reapInterval = 2*time.Second, time.Second, 250*time.Millisecond, 30*time.Second
			})},
		{in: `{"cluster": true, "addrs": ["a:1", "b:2", "[::1]:3"]}`, want: with(func(c *config) {
			c.cluster, c.addrs = true, []string{"a:1", "b:2", "[::1]:3"}
		})},
		{in: `{"tls": {"enabled": true, "ca_file": "/ca.pem", "server_name": "r", "insecure_skip_verify": true}}`, want: with(func(c *config) {
			c.tls = tlsConfig{enabled: true, caFile: "/ca.pem", serverName: "r", insecureSkipVerify: true}
		})},
		{in: `{"key_prefix": ""}`, want: with(func(c *config) { c.keyPrefix = "" })},
		{in: `{"addrs": null, "db": null}`, want: def},
		{in: `{"addrs": []}`, err: `addrs: must be a non-empty list of "host:port" strings`},
		{in: `{"addrs": "a:1"}`, err: `addrs: must be a non-empty list of "host:port" strings`},
		{in: `{"addrs": ["localhost"]}`, err: `addrs: "localhost" is not a "host:port" address`},
		{in: `{"addrs": ["a:1", "b:2"]}`, err: "addrs: a single Redis takes one address; set cluster to true to list cluster nodes"},
		{in: `{"cluster": "yes"}`, err: "cluster: must be true or false"},
		{in: `{"cluster": true, "db": 1}`, err: "db: a Redis Cluster has only database 0"},
		{in: `{"db": -1}`, err: "db: must be a non-negative integer"},
		{in: `{"db": "1"}`, err: "db: must be a non-negative integer"},
		{in: `{"username": 1}`, err: "username: must be a string"},
		{in: `{"password": true}`, err: "password: must be a string"},
		{in: `{"key_prefix": []}`, err: "key_prefix: must be a string"},
		{in: `{"pool_size": 0}`, err: "pool_size: must be a power of two between 1 and 256"},
		{in: `{"pool_size": 3}`, err: "pool_size: must be a power of two between 1 and 256"},
		{in: `{"pool_size": 512}`, err: "pool_size: must be a power of two between 1 and 256"},
		{in: `{"dial_timeout": 1}`, err: `dial_timeout: must be a duration string such as "1s"`},
		{in: `{"read_timeout": "x"}`, err: `read_timeout: time: invalid duration "x"`},
		{in: `{"write_timeout": "0s"}`, err: "write_timeout: must be positive"},
		{in: `{"reap_interval": "-1m"}`, err: "reap_interval: must be positive"},
		{in: `{"tls": {"enabled": "yes"}}`, err: "tls.enabled: must be true or false"},
		{in: `{"tls": {"insecure_skip_verify": 1}}`, err: "tls.insecure_skip_verify: must be true or false"},
		{in: `{"tls": {"ca_file": 1}}`, err: "tls.ca_file: must be a string"},
		{in: `{"tls": {"server_name": false}}`, err: "tls.server_name: must be a string"},
		{in: `{"tls": {"cert": "x"}}`, err: `unknown key "tls.cert"`},
		{in: `{"tls": true}`, err: "tls must be a JSON object, not bool"},
		{in: `{"foo": 1}`, err: `unknown key "foo"`},
		{in: `[]`, err: "the configuration must be a JSON object, not array"},
		{in: `{"db": 1} {}`, err: "unexpected data after the configuration object"},
		{in: `{"db": }`, err: "invalid JSON at byte 8: invalid character '}' looking for beginning of value"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseConfig(json.RawMessage(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if !slices.Contains(cache.Drivers(), "redis") {
		t.Fatalf("redis not among the registered drivers %v", cache.Drivers())
	}
	if _, err := cache.Open("redis", json.RawMessage(`{"pool_size": 3}`), cache.Options{PeerLifetime: time.Minute}); err == nil || !strings.Contains(err.Error(), "pool_size") {
		t.Errorf("bad configuration: error %v", err)
	}
	if _, err := cache.Open("redis", nil, cache.Options{}); err == nil {
		t.Error("Open accepted a zero peer lifetime")
	}
	cfg := `{"tls": {"enabled": true, "ca_file": "/nonexistent/ca.pem"}}`
	if _, err := cache.Open("redis", json.RawMessage(cfg), cache.Options{PeerLifetime: time.Minute}); err == nil || !strings.HasPrefix(err.Error(), "tls.ca_file: ") {
		t.Errorf("missing CA file: error %v", err)
	}
}

// TestOpenUnreachable checks that a Redis that is not there fails Open at
// once, with its address in the message, so the operator sees it at start.
func TestOpenUnreachable(t *testing.T) {
	requireRedisServer(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	begin := time.Now()
	_, err := cache.Open("redis", json.RawMessage(fmt.Sprintf(`{"addrs": [%q], "dial_timeout": "300ms"}`, addr)), cache.Options{PeerLifetime: time.Minute})
	if err == nil {
		t.Fatal("Open succeeded without a server")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name %s", err, addr)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
}

// peer builds an announce of peer n (IPv4 10.0.0.n, port 6000+n).
func peer(h bittorrent.InfoHash, n int) cache.Announce {
	var id bittorrent.PeerID
	copy(id[:], fmt.Sprintf("-RT0001-%012d", n))
	return cache.Announce{
		InfoHash: h, PeerID: id,
		IPv4: netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}), Port: uint16(6000 + n),
		NumWant: 50,
	}
}

func announce(t *testing.T, s cache.Store, a cache.Announce) cache.Result {
	t.Helper()
	a.PeerIDs = true
	var r cache.Result
	if err := s.Announce(context.Background(), &a, &r); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	return r
}

// TestTwoStores is two tracker instances on one Redis: what one does, the
// other sees, and a client's totals are credited once whichever instance
// it reaches.
func TestTwoStores(t *testing.T) {
	addrs := []string{sharedRedis(t)}
	prefix := testPrefix(t, addrs, false)
	a := openStore(t, addrs, false, prefix, cache.Options{}, "")
	defer a.Close()
	b := openStore(t, addrs, false, prefix, cache.Options{}, "")
	defer b.Close()
	h := bittorrent.InfoHash{1, 2, 3}

	seed := peer(h, 1)
	seed.Seeder = true
	seed.Uploaded = 1000
	announce(t, a, seed)
	r := announce(t, b, peer(h, 2))
	if id, _ := r.Peers4.ID(0); r.Peers4.Len() != 1 || id != seed.PeerID || r.Peers4.At(0) != netip.AddrPortFrom(seed.IPv4, seed.Port) {
		t.Fatalf("instance B handed out %x (ids %x), want the seeder announced to A", r.Peers4.Compact, r.Peers4.IDs)
	}
	if r.Complete != 1 || r.Incomplete != 1 {
		t.Errorf("instance B counts %d/%d, want 1/1", r.Complete, r.Incomplete)
	}

	// The seeder's next announce reaches B: B knows its last totals.
	seed.Uploaded = 5000
	r = announce(t, b, seed)
	if !r.Known || r.PrevUploaded != 1000 {
		t.Errorf("through B: Known %v, PrevUploaded %d; want true, 1000", r.Known, r.PrevUploaded)
	}
	seed.Uploaded = 7000
	r = announce(t, a, seed)
	if !r.Known || r.PrevUploaded != 5000 {
		t.Errorf("back through A: Known %v, PrevUploaded %d; want true, 5000", r.Known, r.PrevUploaded)
	}

	// A stop sent to B removes the seeder for A.
	stop := seed
	stop.Event = bittorrent.Stopped
	announce(t, b, stop)
	r = announce(t, a, peer(h, 2))
	if r.Peers4.Len() != 0 || r.Complete != 0 || r.Incomplete != 1 {
		t.Errorf("after a stop through B, A answers %x with counts %d/%d", r.Peers4.Compact, r.Complete, r.Incomplete)
	}
	got, err := a.Scrape(context.Background(), []bittorrent.InfoHash{h}, nil)
	if err != nil || len(got) != 1 || got[0].Complete != 0 || got[0].Incomplete != 1 {
		t.Errorf("scrape through A after the stop: %+v, %v", got, err)
	}
}

// TestKeys checks the key layout, the TTL backstop, and that a swarm
// leaves no key behind once it is forgotten, through the reaper as well
// as through reads.
func TestKeys(t *testing.T) {
	addrs := []string{sharedRedis(t)}
	prefix := testPrefix(t, addrs, false)
	var mu sync.Mutex
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	const life = time.Minute
	s := openStore(t, addrs, false, prefix, cache.Options{PeerLifetime: life, Now: clock}, `"reap_interval": "100ms"`)
	defer s.Close()

	h1, h2 := bittorrent.InfoHash{0xaa}, bittorrent.InfoHash{0xbb}
	a := peer(h1, 1)
	a.IPv6 = netip.MustParseAddr("2001:db8::1")
	announce(t, s, a)
	seeder := peer(h1, 2)
	seeder.Seeder = true
	announce(t, s, seeder)
	announce(t, s, peer(h2, 3))

	keys := countKeys(t, addrs, false, prefix)
	slices.Sort(keys)
	tag1 := prefix + "{aa00000000000000000000000000000000000000}"
	tag2 := prefix + "{bb00000000000000000000000000000000000000}"
	want := []string{tag1 + ":d4", tag1 + ":d6", tag1 + ":p", tag1 + ":s4", tag2 + ":d4", tag2 + ":p"}
	// The reaper may have taken its lease already.
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == prefix+"reaper" })
	if !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	c := rawClient(t, addrs, false)
	defer c.Close()
	for _, k := range want {
		ttl, err := c.Do(context.Background(), c.B().Pttl().Key(k).Build()).AsInt64()
		if err != nil || ttl <= 0 || ttl > 2*life.Milliseconds() {
			t.Errorf("PTTL %s = %d, %v; want within (0, %d]", k, ttl, err, 2*life.Milliseconds())
		}
	}

	// TTLs are refreshed once half a lifetime has gone since the last
	// refresh (Redis's time, so the test shortens the TTL by hand).
	ctx := context.Background()
	c.Do(ctx, c.B().Pexpire().Key(tag1+":p").Milliseconds(life.Milliseconds()).Build())
	c.Do(ctx, c.B().Pexpire().Key(tag1+":d4").Milliseconds(life.Milliseconds()).Build())
	announce(t, s, peer(h1, 1))
	for _, k := range []string{tag1 + ":p", tag1 + ":d4"} {
		if ttl, err := c.Do(ctx, c.B().Pttl().Key(k).Build()).AsInt64(); err != nil || ttl < 2*life.Milliseconds()-5000 {
			t.Errorf("PTTL %s after a refresh = %d, %v; want about %d", k, ttl, err, 2*life.Milliseconds())
		}
	}

	// Everyone leaves h1; nobody asks about h2 again. A lifetime later
	// the reaper has removed both swarms' keys, without any read.
	for _, p := range []cache.Announce{a, seeder} {
		p.Event = bittorrent.Stopped
		announce(t, s, p)
	}
	advance(life + 2*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys := slices.DeleteFunc(countKeys(t, addrs, false, prefix), func(k string) bool { return k == prefix+"reaper" })
		if len(keys) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys left 10s after the swarms expired: %v", keys)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBinaryTotals checks that totals beyond what a Lua number holds
// exactly come back intact.
func TestBinaryTotals(t *testing.T) {
	addrs := []string{sharedRedis(t)}
	s := openStore(t, addrs, false, testPrefix(t, addrs, false), cache.Options{}, "")
	defer s.Close()
	a := peer(bittorrent.InfoHash{7}, 1)
	a.Uploaded, a.Downloaded = 1<<64-1, 1<<53+1
	announce(t, s, a)
	r := announce(t, s, a)
	if r.PrevUploaded != a.Uploaded || r.PrevDownloaded != a.Downloaded {
		t.Errorf("totals came back as %d, %d; want %d, %d", r.PrevUploaded, r.PrevDownloaded, a.Uploaded, a.Downloaded)
	}
}

// TestClientOption checks how pool_size and the timeouts reach the client.
func TestClientOption(t *testing.T) {
	for size, want := range map[int]int{1: -1, 2: 1, 4: 2, 256: 8} {
		c := defaultConfig()
		c.poolSize = size
		opt, err := clientOption(c)
		if err != nil {
			t.Fatal(err)
		}
		if opt.PipelineMultiplex != want || opt.BlockingPoolSize != size {
			t.Errorf("pool_size %d: PipelineMultiplex %d, BlockingPoolSize %d; want %d, %d", size, opt.PipelineMultiplex, opt.BlockingPoolSize, want, size)
		}
	}
	c := defaultConfig()
	c.dialTimeout, c.readTimeout, c.writeTimeout = 2*time.Second, 300*time.Millisecond, 700*time.Millisecond
	opt, err := clientOption(c)
	if err != nil {
		t.Fatal(err)
	}
	if opt.Dialer.Timeout != 2*time.Second || opt.ConnWriteTimeout != 700*time.Millisecond || !opt.ForceSingleClient || opt.TLSConfig != nil {
		t.Errorf("options %+v", opt)
	}
}
