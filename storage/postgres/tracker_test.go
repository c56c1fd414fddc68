package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	"github.com/chihaya/chihaya/storage"
	"github.com/chihaya/chihaya/storage/postgres"
	"github.com/chihaya/chihaya/tracker"
)

// These tests drive the driver through the real tracker, wired as
// cmd/chihaya wires it: tracker.New over the memory cache, tracker.NewPrivate
// recording into a storage.Flusher that writes to the store. Announces go
// in, rows come out, and the tests read them back with SQL.

var ctx = context.Background()

// The fixtures' passkeys (testdata/fixtures.sql).
const (
	alice     = "alice000000000000000000000000000"
	bob       = "bob00000000000000000000000000000"
	noleech   = "noleech0000000000000000000000000"
	protected = "protected00000000000000000000000"
)

func hash(b byte) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for i := range h {
		h[i] = b
	}
	return h
}

// The fixtures' torrents, by hash.
var (
	normalHash  = hash(1) // id 1
	freeHash    = hash(2) // id 2
	neutralHash = hash(3) // id 3
	hybridV2    = hash(5) // id 4 (v1 hash(4)), the first 20 bytes of its v2 hash
	doubleHash  = hash(6) // id 5: multipliers 2 and 0.5
)

// env is a private tracker on a test database.
type env struct {
	t       *testing.T
	db      *postgres.TestDB
	store   *postgres.Store
	tracker *tracker.Tracker
	policy  *tracker.Private
	flusher *storage.Flusher
}

// quiet is a logger for the flusher that drops its retry warnings, which
// the fault test provokes on purpose.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newEnv starts a tracker on db with the store configured by extra. Start
// and Load run as at tracker start; the flusher is not started: tests
// flush when they want to look.
func newEnv(t *testing.T, db *postgres.TestDB, extra map[string]any) *env {
	t.Helper()
	return newEnvWith(t, db, extra, storage.FlusherConfig{Interval: time.Hour, Timeout: time.Minute, MaxBackoff: time.Hour, MaxPeerRows: 1 << 20})
}

// newEnvWith is newEnv with a flusher configured by fc.
func newEnvWith(t *testing.T, db *postgres.TestDB, extra map[string]any, fc storage.FlusherConfig) *env {
	t.Helper()
	s := db.Open(t, extra)
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	swarms, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { swarms.Close() })
	tr := tracker.New(tracker.Config{AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute,
		DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 10}, swarms)
	f := storage.NewFlusher(s, fc, quiet)
	p := tracker.NewPrivate(tr, tracker.PrivateConfig{PeerLifetime: time.Hour, DeletionMemory: time.Hour}, f)
	p.Replace(snap)
	return &env{t: t, db: db, store: s, tracker: tr, policy: p, flusher: f}
}

// watch runs the store's Watch until the test ends.
func (e *env) watch() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.store.Watch(ctx, e.policy) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Watch: %v", err)
		}
	})
}

// ann is one announce.
type ann struct {
	passkey  string
	hash     bittorrent.InfoHash
	peer     int
	v6       bool
	up, down uint64
	left     uint64
	event    bittorrent.Event
}

func (e *env) announce(a ann) error {
	req := &bittorrent.AnnounceRequest{
		InfoHash: a.hash, Port: 6881, Uploaded: a.up, Downloaded: a.down, Left: a.left,
		Event: a.event, NumWant: -1, Compact: true, Passkey: a.passkey, UserAgent: "test/1.0",
	}
	copy(req.PeerID[:], fmt.Sprintf("-TR3000-%012d", a.peer))
	if a.v6 {
		req.IPv6 = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(a.peer)})
	} else {
		req.IPv4 = netip.AddrFrom4([4]byte{10, 0, 0, byte(a.peer)})
	}
	req.Source = req.IPv4
	if !req.Source.IsValid() {
		req.Source = req.IPv6
	}
	return e.tracker.Announce(ctx, req, &bittorrent.AnnounceResponse{})
}

func (e *env) ok(a ann) {
	e.t.Helper()
	if err := e.announce(a); err != nil {
		e.t.Fatalf("announce %+v: %v", a, err)
	}
}

// flush writes everything pending.
func (e *env) flush() {
	e.t.Helper()
	if err := e.flusher.Flush(ctx); err != nil {
		e.t.Fatalf("flush: %v", err)
	}
}

// user returns a user's totals in user_stats, -1/-1 without a row.
func (e *env) user(id int) (up, down int64) {
	e.t.Helper()
	v := e.db.Ints(e.t, "SELECT (SELECT uploaded FROM user_stats WHERE user_id = $1), (SELECT downloaded FROM user_stats WHERE user_id = $1)", id)
	return v[0], v[1]
}

func newFixtures(t *testing.T) *postgres.TestDB {
	postgres.RequirePostgres(t)
	return postgres.NewTestDB(t, postgres.BaseDSN(), true, true)
}

func TestAnnounceDeltas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	e.ok(ann{passkey: alice, hash: normalHash, peer: 1, up: 1000, down: 500, left: 10, event: bittorrent.Started})
	e.flush()
	if up, down := e.user(1); up != 1000 || down != 500 {
		t.Fatalf("the first announce sets a baseline, yet alice has %d/%d (fixture 1000/500)", up, down)
	}
	e.ok(ann{passkey: alice, hash: normalHash, peer: 1, up: 1500, down: 800, left: 10})
	// Dual stack: the same session over IPv6 reports the same totals and
	// is credited once.
	e.ok(ann{passkey: alice, hash: normalHash, peer: 1, v6: true, up: 1500, down: 800, left: 10})
	e.flush()
	if up, down := e.user(1); up != 1500 || down != 800 {
		t.Fatalf("after +500/+300 over IPv4 and the same totals over IPv6: %d/%d, want 1500/800", up, down)
	}
	// Deltas of several announces are summed into one row per flush.
	e.ok(ann{passkey: alice, hash: normalHash, peer: 1, up: 1600, down: 800, left: 10})
	e.ok(ann{passkey: alice, hash: normalHash, peer: 1, up: 1650, down: 810, left: 10, event: bittorrent.Stopped})
	e.flush()
	if up, down := e.user(1); up != 1650 || down != 810 {
		t.Fatalf("after +150/+10 in two announces: %d/%d, want 1650/810", up, down)
	}
	v := e.db.Ints(t, "SELECT active::int, uploaded, downloaded, remaining, announces FROM peers WHERE user_id = 1 AND torrent_id = 1")
	if v[0] != 0 || v[1] != 1650 || v[2] != 810 || v[3] != 10 || v[4] != 5 {
		t.Errorf("alice's peer row after the stop: %v, want inactive with the client's totals 1650/810, 10 left, 5 announces", v)
	}
	if got := e.db.Text(t, "SELECT host(ip) FROM peers WHERE user_id = 1"); got != "2001:db8::1" && got != "10.0.0.1" {
		t.Errorf("peer ip %s", got)
	}
	if v := e.db.Ints(t, "SELECT seeders, leechers, balance FROM torrent_stats WHERE torrent_id = 1"); v[0] != 0 || v[1] != 0 || v[2] != 650-310 {
		t.Errorf("torrent 1 after the stop: %v, want 0 seeders, 0 leechers, balance 340", v)
	}
}

func TestAnnounceLeechStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	move := func(h bittorrent.InfoHash, up, down uint64) {
		e.ok(ann{passkey: bob, hash: h, peer: 2, left: 10, event: bittorrent.Started})
		e.ok(ann{passkey: bob, hash: h, peer: 2, up: up, down: down, left: 10})
	}
	move(freeHash, 100, 200)
	e.flush()
	if up, down := e.user(2); up != 100 || down != 0 {
		t.Errorf("freeleech: %d/%d, want the upload only", up, down)
	}
	move(neutralHash, 100, 200)
	e.flush()
	if up, down := e.user(2); up != 100 || down != 0 {
		t.Errorf("neutral: %d/%d, want nothing more", up, down)
	}
	move(doubleHash, 100, 200)
	e.flush()
	if up, down := e.user(2); up != 300 || down != 100 {
		t.Errorf("multipliers 2 and 0.5: %d/%d, want 300/100", up, down)
	}
	// The v2 hash of a hybrid torrent reaches the same torrent.
	move(hybridV2, 10, 0)
	e.flush()
	if n := e.db.Int(t, "SELECT count(*) FROM peers WHERE torrent_id = 4 AND user_id = 2"); n != 1 {
		t.Errorf("announce by v2 hash: %d peer rows for torrent 4", n)
	}
	if up, _ := e.user(2); up != 310 {
		t.Errorf("hybrid torrent: up %d, want 310", up)
	}
}

func TestAnnounceTokensAndSnatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	// Bob holds a token for the normal torrent.
	e.ok(ann{passkey: bob, hash: normalHash, peer: 2, left: 1000, event: bittorrent.Started})
	e.ok(ann{passkey: bob, hash: normalHash, peer: 2, up: 50, down: 400, left: 600})
	e.flush()
	if up, down := e.user(2); up != 50 || down != 0 {
		t.Errorf("token: %d/%d, want the upload only", up, down)
	}
	if v := e.db.Ints(t, "SELECT downloaded, expired::int FROM tokens WHERE user_id = 2 AND torrent_id = 1"); v[0] != 400 || v[1] != 0 {
		t.Errorf("token row %v, want 400 spared, not expired", v)
	}
	// Completing the download uses the token up and counts one snatch.
	e.ok(ann{passkey: bob, hash: normalHash, peer: 2, up: 50, down: 1000, left: 0, event: bittorrent.Completed})
	e.ok(ann{passkey: bob, hash: normalHash, peer: 2, up: 60, down: 1000, left: 0, event: bittorrent.Completed})
	e.flush()
	if v := e.db.Ints(t, "SELECT downloaded, expired::int FROM tokens WHERE user_id = 2 AND torrent_id = 1"); v[0] != 1000 || v[1] != 1 {
		t.Errorf("token row after completion %v, want 1000 spared and expired", v)
	}
	if n := e.db.Int(t, "SELECT count(*) FROM snatches WHERE user_id = 2 AND torrent_id = 1 AND ip = '10.0.0.2'"); n != 1 {
		t.Errorf("%d snatch rows, want 1: a second completed counts nothing", n)
	}
	if v := e.db.Ints(t, "SELECT snatches, seeders, (last_seeded IS NOT NULL)::int FROM torrent_stats WHERE torrent_id = 1"); v[0] != 11 || v[1] != 1 || v[2] != 1 {
		t.Errorf("torrent 1: %v, want 11 snatches (10+1), 1 seeder, last_seeded set", v)
	}
	// Once the token is used up, bob's downloads count again.
	e.ok(ann{passkey: bob, hash: normalHash, peer: 3, left: 10, event: bittorrent.Started})
	e.ok(ann{passkey: bob, hash: normalHash, peer: 3, down: 5, left: 5})
	e.flush()
	if _, down := e.user(2); down != 5 {
		t.Errorf("bob's download after his token was used up: %d, want 5", down)
	}
}

func TestAnnounceLeechDisabledAndProtected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	if err := e.announce(ann{passkey: noleech, hash: normalHash, peer: 3, left: 10, event: bittorrent.Started}); err == nil || err.Error() != "Access denied, leeching forbidden" {
		t.Fatalf("leech-disabled user downloading: %v", err)
	}
	e.ok(ann{passkey: noleech, hash: normalHash, peer: 3, left: 0, event: bittorrent.Started})
	e.ok(ann{passkey: noleech, hash: normalHash, peer: 3, up: 70, left: 0})
	if err := e.announce(ann{passkey: "disabled000000000000000000000000", hash: normalHash, peer: 5}); err == nil || err.Error() != "Passkey not found" {
		t.Fatalf("disabled user: %v", err)
	}
	e.ok(ann{passkey: protected, hash: normalHash, peer: 4, left: 10, event: bittorrent.Started})
	e.ok(ann{passkey: protected, hash: normalHash, peer: 4, left: 0, event: bittorrent.Completed})
	e.flush()
	if up, _ := e.user(3); up != 70 {
		t.Errorf("leech-disabled user seeding: up %d, want 70", up)
	}
	if v := e.db.Ints(t, "SELECT count(*), count(ip) FROM peers WHERE user_id = 4"); v[0] != 1 || v[1] != 0 {
		t.Errorf("protected user's peers: %v rows/with ip, want 1 row with a NULL ip", v)
	}
	if v := e.db.Ints(t, "SELECT count(*), count(ip) FROM snatches WHERE user_id = 4"); v[0] != 1 || v[1] != 0 {
		t.Errorf("protected user's snatches: %v rows/with ip, want 1 row with a NULL ip", v)
	}
}

// Rows of a user deleted while the tracker still knows them, and of a
// deleted torrent, are left out of every table without failing a batch.
func TestAnnounceDeletedRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	e.ok(ann{passkey: alice, hash: freeHash, peer: 1, left: 10, event: bittorrent.Started})
	e.ok(ann{passkey: bob, hash: normalHash, peer: 2, left: 10, event: bittorrent.Started})
	e.ok(ann{passkey: alice, hash: freeHash, peer: 1, up: 5, left: 0, event: bittorrent.Completed})
	e.ok(ann{passkey: bob, hash: normalHash, peer: 2, up: 7, left: 0, event: bittorrent.Completed})
	// Nobody listens: the tracker still knows both.
	e.db.Exec(t, "DELETE FROM users WHERE id = 1; DELETE FROM torrents WHERE id = 1")
	e.flush()
	for _, st := range e.flusher.Stats() {
		if st.Dropped != 0 || st.Pending != 0 {
			t.Errorf("%s queue: %+v, want everything written, nothing dropped", st.Name, st)
		}
	}
	if n := e.db.Int(t, "SELECT count(*) FROM peers"); n != 0 {
		t.Errorf("%d peers, want 0", n)
	}
	if n := e.db.Int(t, "SELECT count(*) FROM snatches"); n != 0 {
		t.Errorf("%d snatches, want 0", n)
	}
	if n := e.db.Int(t, "SELECT count(*) FROM torrent_stats WHERE torrent_id = 2"); n != 1 {
		t.Errorf("the free torrent (alive) has %d stats rows, want 1", n)
	}
}
