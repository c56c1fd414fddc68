package tracker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/redis"
	"github.com/chihaya/chihaya/storage"
)

// These tests run SharedPolicies over real Redis: the shared test server
// (CHIHAYA_REDIS_ADDR, default 127.0.0.1:6379, which scripts/start-services
// starts) and, for the outage, a redis-server the test starts itself. The
// stores are opened with a random key prefix and write no keys: no
// announces go through them, and the reaper, which would take a lease key,
// does not run within a test.

func sharedRedisAddr() string {
	if addr := os.Getenv("CHIHAYA_REDIS_ADDR"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

func randomPrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "chihaya-test:" + hex.EncodeToString(b[:]) + ":"
}

// openRedis opens a redis cache store, closed when the test ends. When
// Redis does not answer, the test fails under CI (CI set) and is skipped
// elsewhere.
//
// The timeouts are short for the outage test's test-owned server, which
// is gone for a moment, and generous for the shared one: on a loaded
// machine a subscription whose keepalive goes unanswered within them is
// dropped, and the changes published until it is back are lost (which
// production covers with a reload).
func openRedis(t *testing.T, addr, prefix string) cache.Store {
	t.Helper()
	timeout := "2s"
	if addr != sharedRedisAddr() {
		timeout = "300ms"
	}
	cfg := fmt.Sprintf(`{"addrs": [%q], "key_prefix": %q, "reap_interval": "1h",
		"dial_timeout": %[3]q, "read_timeout": %[3]q, "write_timeout": %[3]q}`, addr, prefix, timeout)
	st, err := cache.Open("redis", json.RawMessage(cfg), cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Redis at %s: %v; CI must provide it (scripts/start-services)", addr, err)
		}
		t.Skipf("Redis at %s: %v; run scripts/start-services to start it", addr, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// instance is one tracker process's policy side.
type instance struct {
	priv     *Private
	shared   *SharedPolicy
	resyncs  atomic.Int32
	onResync atomic.Pointer[func()] // what a resync does besides counting
}

// newInstance starts a SharedPolicy over a fresh store on addr under
// prefix and waits for its subscription.
func newInstance(t *testing.T, addr, prefix string) *instance {
	t.Helper()
	store := openRedis(t, addr, prefix)
	tr := New(Config{AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute, DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 10}, store)
	in := &instance{priv: NewPrivate(tr, PrivateConfig{PeerLifetime: time.Hour, DeletionMemory: time.Hour}, newStatsLog())}
	in.priv.Replace(&storage.Snapshot{})
	in.shared = NewSharedPolicy(in.priv, store.(cache.Broadcaster), SharedConfig{Resync: func() {
		if f := in.onResync.Load(); f != nil {
			(*f)()
		}
		in.resyncs.Add(1)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.shared.Run(ctx) }()
	// Registered after the store's cleanup, so it runs before it.
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context ending")
		}
	})
	select {
	case <-in.shared.Ready():
	case err := <-done:
		t.Fatalf("Run returned %v before subscribing", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not subscribed within 5s")
	}
	return in
}

func (in *instance) whitelist() []string { return *in.priv.whitelist.Load() }

// state is what an instance's policy holds, for comparisons.
type state struct {
	Users     map[string]storage.User
	Torrents  map[bittorrent.InfoHash]storage.Torrent
	Tokens    []storage.Token
	Deleted   map[bittorrent.InfoHash]int
	Whitelist []string
	Interval  time.Duration
	Jitter    time.Duration
}

func (in *instance) state() state {
	p := in.priv
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := state{
		Users:     map[string]storage.User{},
		Torrents:  map[bittorrent.InfoHash]storage.Torrent{},
		Deleted:   map[bittorrent.InfoHash]int{},
		Whitelist: slices.Clone(*p.whitelist.Load()),
		Interval:  p.AnnounceInterval(),
		Jitter:    p.AnnounceJitter(),
	}
	for k, e := range p.users.All() {
		s.Users[*k] = *e.info.Load()
	}
	for h, e := range p.torrents.All() {
		s.Torrents[*h] = *e.info.Load()
	}
	for tok := range p.tokens {
		s.Tokens = append(s.Tokens, tok.token())
	}
	slices.SortFunc(s.Tokens, func(a, b storage.Token) int { return int(a.UserID) - int(b.UserID) })
	for h, d := range p.deleted {
		s.Deleted[h] = d.reason
	}
	return s
}

// within polls cond until it holds, failing the test after d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var barriers atomic.Int64

// barrier returns once receiver has applied a change published by
// sender after everything sender published before, which the cache
// delivers in order. Anything that reached the cache before sender's
// change, the receiver's own changes included, has been handed to the
// receiver by then too.
func barrier(t *testing.T, sender, receiver *instance, wait time.Duration) {
	t.Helper()
	d := time.Hour + time.Duration(barriers.Add(1))
	sender.shared.SetAnnounceJitter(d)
	within(t, wait, "barrier", func() bool { return receiver.priv.AnnounceJitter() == d })
}

// TestSharedPolicy: every mutating Policy method applied to one instance
// reaches the other within a second, both ways; the instances end up
// with the same state, each having ignored the echo of its own changes;
// an instance under another key prefix hears nothing.
func TestSharedPolicy(t *testing.T) {
	addr := sharedRedisAddr()
	prefix := randomPrefix()
	a, b := newInstance(t, addr, prefix), newInstance(t, addr, prefix)
	other := newInstance(t, addr, randomPrefix())
	otherBefore := other.state()

	user := storage.User{ID: 10, Passkey: "passkey-of-user-10-0000000000000", CanLeech: true}
	v1, v2 := bittorrent.InfoHash{0xa1, 1}, bittorrent.InfoHash{0xa2, 2}
	tor := storage.Torrent{ID: 7, InfoHash: v1, InfoHashV2: v2, Leech: storage.Free, UpMultiplier: 1.5, DownMultiplier: 0.25, Snatches: 3}
	other1 := storage.Torrent{ID: 8, InfoHash: bittorrent.InfoHash{0xb1}, UpMultiplier: 1, DownMultiplier: 1}
	binary := "\xff\x00-BIN"

	steps := []struct {
		name   string
		on, to *instance
		change func(p storage.Policy)
		check  func(in *instance) bool
	}{
		{"PutUser", a, b, func(p storage.Policy) { p.PutUser(user) },
			func(in *instance) bool { u, ok := in.priv.User(user.Passkey); return ok && u == user }},
		{"UpdateUser", a, b, func(p storage.Policy) { p.UpdateUser(user.Passkey, false, true) },
			func(in *instance) bool { u, _ := in.priv.User(user.Passkey); return !u.CanLeech && u.Protected }},
		{"PutTorrent", a, b, func(p storage.Policy) { p.PutTorrent(tor); p.PutTorrent(other1) },
			func(in *instance) bool {
				t1, ok1 := in.priv.Torrent(v2)
				t2, ok2 := in.priv.Torrent(other1.InfoHash)
				return ok1 && t1 == tor && ok2 && t2 == other1
			}},
		{"SetLeech", a, b, func(p storage.Policy) { p.SetLeech(v1, storage.Neutral) },
			func(in *instance) bool { t, _ := in.priv.Torrent(v1); return t.Leech == storage.Neutral }},
		{"AddToken", a, b, func(p storage.Policy) {
			p.AddToken(storage.Token{UserID: 10, TorrentID: 7})
			p.AddToken(storage.Token{UserID: 11, TorrentID: 7})
		},
			func(in *instance) bool { return slices.Equal(in.priv.TokenHolders(7), []uint32{10, 11}) }},
		{"RemoveToken", b, a, func(p storage.Policy) { p.RemoveToken(storage.Token{UserID: 10, TorrentID: 7}) },
			func(in *instance) bool { return slices.Equal(in.priv.TokenHolders(7), []uint32{11}) }},
		{"ReplaceWhitelist", a, b, func(p storage.Policy) { p.ReplaceWhitelist([]string{"-TR", "-qB", binary}) },
			func(in *instance) bool { return slices.Equal(in.whitelist(), []string{"-TR", "-qB", binary}) }},
		{"RemoveWhitelist", a, b, func(p storage.Policy) { p.RemoveWhitelist("-qB") },
			func(in *instance) bool { return slices.Equal(in.whitelist(), []string{"-TR", binary}) }},
		{"AddWhitelist", b, a, func(p storage.Policy) { p.AddWhitelist("-DE") },
			func(in *instance) bool { return slices.Equal(in.whitelist(), []string{"-TR", binary, "-DE"}) }},
		{"SetAnnounceInterval", a, b, func(p storage.Policy) { p.SetAnnounceInterval(17 * time.Minute) },
			func(in *instance) bool { return in.priv.AnnounceInterval() == 17*time.Minute }},
		{"SetAnnounceJitter", a, b, func(p storage.Policy) { p.SetAnnounceJitter(3 * time.Minute) },
			func(in *instance) bool { return in.priv.AnnounceJitter() == 3*time.Minute }},
		{"ChangePasskey", a, b, func(p storage.Policy) { p.ChangePasskey(user.Passkey, "new-passkey-of-user-10-000000000") },
			func(in *instance) bool {
				_, old := in.priv.User(user.Passkey)
				u, ok := in.priv.User("new-passkey-of-user-10-000000000")
				return !old && ok && u.ID == 10 && u.Protected
			}},
		{"DeleteTorrent", b, a, func(p storage.Policy) { p.DeleteTorrent(v2, 1) },
			func(in *instance) bool {
				_, known1 := in.priv.Torrent(v1)
				_, known2 := in.priv.Torrent(v2)
				return !known1 && !known2 && in.state().Deleted[v2] == 1
			}},
		{"RemoveUser", a, b, func(p storage.Policy) { p.RemoveUser("new-passkey-of-user-10-000000000") },
			func(in *instance) bool { _, ok := in.priv.User("new-passkey-of-user-10-000000000"); return !ok }},
	}
	for _, s := range steps {
		s.change(s.on.shared)
		if !s.check(s.on) {
			t.Fatalf("%s: not applied at once on the instance called", s.name)
		}
		within(t, time.Second, s.name+" reaching the other instance", func() bool { return s.check(s.to) })
	}

	// Each has been handed back its own changes by now (b has seen a's
	// last change, so a's changes were in Redis before b's marker, and
	// the other way round); applying them again would have doubled the
	// whitelist entries.
	barrier(t, b, a, time.Second)
	barrier(t, a, b, time.Second)
	if sa, sb := a.state(), b.state(); !reflect.DeepEqual(sa, sb) {
		t.Errorf("the instances differ:\n a: %+v\n b: %+v", sa, sb)
	}
	if got := a.whitelist(); !slices.Equal(got, []string{"-TR", binary, "-DE"}) {
		t.Errorf("whitelist on a %q: an echo was applied", got)
	}
	if got := other.state(); !reflect.DeepEqual(got, otherBefore) {
		t.Errorf("an instance under another key prefix changed: %+v", got)
	}

	// An empty whitelist travels as one (it allows every client).
	a.shared.ReplaceWhitelist(nil)
	within(t, time.Second, "empty whitelist", func() bool { return len(b.whitelist()) == 0 })
}

// publishRaw publishes msg on prefix's channel through a store of its
// own, as another instance (or anything else on the Redis) could.
func publishRaw(t *testing.T, pub cache.Broadcaster, msg string) {
	t.Helper()
	if err := pub.Publish(context.Background(), []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// TestSharedPolicyMessages: messages carrying this instance's id are
// skipped, several events in one message apply in order, a passkey change
// applied twice does no harm, what cannot be read is ignored without a
// panic and without stopping the instance, a change delivered twice
// applies once, and a gap in a sender's changes asks for a resync.
func TestSharedPolicyMessages(t *testing.T) {
	addr := sharedRedisAddr()
	prefix := randomPrefix()
	a := newInstance(t, addr, prefix)
	pub := openRedis(t, addr, prefix).(cache.Broadcaster)
	mark := 0
	// settle publishes a marker and waits for a to have applied it, and
	// so everything published before.
	settle := func() {
		t.Helper()
		mark++
		publishRaw(t, pub, fmt.Sprintf(`{"from":"test","op":"set_announce_jitter","ns":%d}`, mark))
		within(t, time.Second, "marker", func() bool { return a.priv.AnnounceJitter() == time.Duration(mark) })
	}

	// Its own id: skipped.
	publishRaw(t, pub, fmt.Sprintf(`{"from":%q,"op":"add_whitelist","prefix":"-EC"}`, a.shared.ID()))
	// Several events in one message, in order.
	publishRaw(t, pub, `{"from":"x","op":"put_user","user":{"id":5,"passkey":"k1","can_leech":true,"protected":false}}
{"from":"x","op":"change_passkey","passkey":"k1","new_passkey":"k2"}
{"from":"x","op":"add_whitelist","prefix":"-OK"}`)
	// The same passkey change again: the old passkey is gone, nothing
	// happens.
	publishRaw(t, pub, `{"from":"x","op":"change_passkey","passkey":"k1","new_passkey":"k2"}`)
	settle()
	if u, ok := a.priv.User("k2"); !ok || u.ID != 5 || !u.CanLeech {
		t.Errorf("user k2: %+v %v, want id 5 who may leech", u, ok)
	}
	if _, ok := a.priv.User("k1"); ok {
		t.Error("user k1 still known after the passkey change")
	}
	if got := a.whitelist(); !slices.Equal(got, []string{"-OK"}) {
		t.Errorf("whitelist %q, want [-OK]: a message with the instance's own id was applied", got)
	}

	before := a.state()
	for _, m := range []string{
		"", "not json", "null", "[]", "42", `"string"`, "{", `{"op":`, "\xff\xfe",
		`{"from":"x"}`,
		`{"from":"x","op":"no_such_op","prefix":"-NO"}`,
		`{"from":"x","op":"put_user"}`,
		`{"from":"x","op":"put_user","user":null}`,
		`{"from":"x","op":"put_user","user":{"id":6}}`,
		`{"from":"x","op":"put_user","user":"k3"}`,
		`{"from":"x","op":"update_user","can_leech":false}`,
		`{"from":"x","op":"remove_user"}`,
		`{"from":"x","op":"change_passkey","passkey":"k2"}`,
		`{"from":"x","op":"change_passkey","passkey":"k2","new_passkey":"\u4e2d"}`,
		`{"from":"x","op":"put_torrent"}`,
		`{"from":"x","op":"put_torrent","torrent":{"id":9,"info_hash":"zz"}}`,
		`{"from":"x","op":"put_torrent","torrent":{"id":9,"info_hash":"0102"}}`,
		`{"from":"x","op":"put_torrent","torrent":{"id":9,"info_hash":"0101010101010101010101010101010101010101","info_hash_v2":"xyz"}}`,
		`{"from":"x","op":"put_torrent","torrent":{"id":9,"info_hash":"0101010101010101010101010101010101010101","leech":7}}`,
		`{"from":"x","op":"put_torrent","torrent":{"id":9,"info_hash":"0101010101010101010101010101010101010101","up_multiplier":-1}}`,
		`{"from":"x","op":"put_torrent","torrent":{"id":-9,"info_hash":"0101010101010101010101010101010101010101"}}`,
		`{"from":"x","op":"put_torrent","torrent":{"id":99999999999,"info_hash":"0101010101010101010101010101010101010101"}}`,
		`{"from":"x","op":"set_leech","info_hash":"0101","leech":1}`,
		`{"from":"x","op":"set_leech","info_hash":"0101010101010101010101010101010101010101","leech":300}`,
		`{"from":"x","op":"delete_torrent"}`,
		`{"from":"x","op":"add_token"}`,
		`{"from":"x","op":"add_token","token":[1,2]}`,
		`{"from":"x","op":"remove_token","token":null}`,
		`{"from":"x","op":"replace_whitelist"}`,
		`{"from":"x","op":"replace_whitelist","prefixes":null}`,
		`{"from":"x","op":"replace_whitelist","prefixes":"-AB"}`,
		`{"from":"x","op":"set_announce_interval"}`,
		`{"from":"x","op":"set_announce_interval","ns":-5}`,
		`{"from":"x","op":"set_announce_interval","ns":"1h"}`,
		`{"from":"x","op":"set_announce_jitter","ns":-1}`,
		`{"from":"x","op":"set_announce_jitter","ns":1e30}`,
		// A broken event ends its message: what follows is dropped too.
		`{"from":"x","op":"add_whitelist","prefix":"-A1"}` + "\ngarbage\n" + `{"from":"x","op":"add_whitelist","prefix":"-A2"}`,
	} {
		publishRaw(t, pub, m)
	}
	settle()
	after := a.state()
	if want := append(slices.Clone(before.Whitelist), "-A1"); !slices.Equal(after.Whitelist, want) {
		t.Errorf("whitelist after the malformed messages %q, want %q", after.Whitelist, want)
	}
	after.Whitelist, before.Whitelist = nil, nil
	after.Jitter, before.Jitter = 0, 0
	if !reflect.DeepEqual(after, before) {
		t.Errorf("malformed messages changed the policy:\n before: %+v\n after:  %+v", before, after)
	}

	// Sequence numbers: a change delivered twice (a retried publish)
	// applies once; a gap asks for a resync.
	wl := a.whitelist()
	publishRaw(t, pub, `{"from":"y","seq":1,"op":"add_whitelist","prefix":"-S1"}`)
	publishRaw(t, pub, `{"from":"y","seq":1,"op":"add_whitelist","prefix":"-S1"}`)
	publishRaw(t, pub, `{"from":"y","seq":2,"op":"add_whitelist","prefix":"-S2"}`+"\n"+`{"from":"y","seq":2,"op":"add_whitelist","prefix":"-S2"}`)
	publishRaw(t, pub, `{"from":"z","seq":7,"op":"add_whitelist","prefix":"-Z7"}`) // the first seen of z
	settle()
	if got, want := a.whitelist(), append(slices.Clone(wl), "-S1", "-S2", "-Z7"); !slices.Equal(got, want) {
		t.Errorf("after changes delivered twice the whitelist is %q, want %q", got, want)
	}
	if n := a.resyncs.Load(); n != 0 {
		t.Errorf("%d resyncs without a gap", n)
	}
	publishRaw(t, pub, `{"from":"y","seq":5,"op":"add_whitelist","prefix":"-S5"}`)
	settle()
	within(t, time.Second, "a resync after a gap in the sequence numbers", func() bool { return a.resyncs.Load() == 1 })
	if got := a.whitelist(); !slices.Contains(got, "-S5") {
		t.Errorf("the change after a gap was not applied: whitelist %q", got)
	}
}

// TestSharedPolicyOrder: concurrent changes on one instance reach the
// other in the order they took effect, so both end up alike, also with
// far more changes than fit in one message.
func TestSharedPolicyOrder(t *testing.T) {
	addr := sharedRedisAddr()
	prefix := randomPrefix()
	a, b := newInstance(t, addr, prefix), newInstance(t, addr, prefix)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				h := bittorrent.InfoHash{byte(i % 7)}
				a.shared.PutTorrent(storage.Torrent{ID: uint32(i % 7), InfoHash: h, Snatches: uint32(g*1000 + i), UpMultiplier: 1, DownMultiplier: 1})
				a.shared.SetLeech(h, storage.Leech(i%3))
				a.shared.AddWhitelist(strconv.Itoa(g))
				a.shared.RemoveWhitelist(strconv.Itoa((g + 1) % 8))
			}
		})
	}
	wg.Wait()
	// 16,000 changes take a while to apply on a loaded machine under
	// the race detector.
	barrier(t, a, b, 20*time.Second)
	barrier(t, b, a, 5*time.Second) // b's marker reaches a after a's echoes
	if sa, sb := a.state(), b.state(); !reflect.DeepEqual(sa, sb) {
		t.Errorf("after 16,000 concurrent changes the instances differ (subscriptions lost and back: a %d, b %d):\n a: %+v\n b: %+v",
			a.resyncs.Load(), b.resyncs.Load(), sa, sb)
	}
}

// TestSharedPolicyOutage kills the Redis two instances share. A change
// made meanwhile applies at once where it was made. Once Redis is back,
// both instances, whose subscriptions were cut, resync, as cmd/chihaya
// does by reloading from storage: whether the change itself reaches the
// other instance depends on which of them reconnects first (pub/sub keeps
// nothing for a subscriber that is not there), but the reload, which sees
// the site's database, has it. Changes flow again afterwards.
func TestSharedPolicyOutage(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found; CI must provide it (scripts/start-services installs it)")
		}
		t.Skip("redis-server not found; run scripts/start-services to install it")
	}
	srv := startRedisServer(t)
	// db is the site's database, which a resync reloads.
	var mu sync.Mutex
	db := &storage.Snapshot{}
	reload := func(in *instance) func() {
		return func() {
			mu.Lock()
			snap := &storage.Snapshot{Torrents: slices.Clone(db.Torrents)}
			mu.Unlock()
			in.priv.Replace(snap)
		}
	}
	a, b := newInstance(t, srv.addr, "p:"), newInstance(t, srv.addr, "p:")
	for _, in := range []*instance{a, b} {
		f := reload(in)
		in.onResync.Store(&f)
	}
	a.shared.SetAnnounceInterval(21 * time.Minute)
	within(t, time.Second, "before the outage", func() bool { return b.priv.AnnounceInterval() == 21*time.Minute })

	srv.kill(t)
	tor := storage.Torrent{ID: 3, InfoHash: bittorrent.InfoHash{3}, UpMultiplier: 1, DownMultiplier: 1}
	mu.Lock()
	db.Torrents = append(db.Torrents, tor)
	mu.Unlock()
	a.shared.PutTorrent(tor)
	if _, ok := a.priv.Torrent(tor.InfoHash); !ok {
		t.Fatal("a change made while Redis is down did not apply locally")
	}
	time.Sleep(300 * time.Millisecond)
	srv.start(t)
	begin := time.Now()
	within(t, 15*time.Second, "both instances resyncing", func() bool { return a.resyncs.Load() >= 1 && b.resyncs.Load() >= 1 })
	within(t, 15*time.Second, "the change made during the outage reaching the other instance", func() bool {
		_, ok := b.priv.Torrent(tor.InfoHash)
		return ok
	})
	t.Logf("both back %v after the restart", time.Since(begin).Round(time.Millisecond))
	b.shared.DeleteTorrent(tor.InfoHash, -1)
	within(t, time.Second, "a change after the outage", func() bool { _, ok := a.priv.Torrent(tor.InfoHash); return !ok })
}

// redisServer is a redis-server process the test started.
type redisServer struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &redisServer{addr: addr, dir: t.TempDir()}
	s.start(t)
	t.Cleanup(func() { s.kill(t) })
	return s
}

func (s *redisServer) start(t *testing.T) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			t.Fatalf("redis-server exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server not listening after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) kill(t *testing.T) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}
