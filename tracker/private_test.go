package tracker

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/storage"
)

// statsLog records what the rules hand to storage.
type statsLog struct {
	mu       sync.Mutex
	sources  storage.Sources
	users    map[uint32]storage.UserDelta
	torrents []storage.TorrentStats
	peers    []storage.PeerRow
	snatches []storage.Snatch
	tokens   map[storage.Token]int64
	expired  []storage.Token
}

func newStatsLog() *statsLog {
	return &statsLog{users: map[uint32]storage.UserDelta{}, tokens: map[storage.Token]int64{}}
}

func (s *statsLog) AddPeer(p storage.PeerRow) {
	s.mu.Lock()
	s.peers = append(s.peers, p)
	s.mu.Unlock()
}
func (s *statsLog) SetSources(src storage.Sources) {
	s.mu.Lock()
	s.sources = src
	s.mu.Unlock()
}

// take moves the rows pending in the sources into the log, as a Flusher's
// write would. The caller holds s.mu.
func (s *statsLog) take() {
	if s.sources.Users != nil {
		for _, d := range s.sources.Users.Take(nil) {
			u := s.users[d.UserID]
			u.UserID, u.Uploaded, u.Downloaded = d.UserID, u.Uploaded+d.Uploaded, u.Downloaded+d.Downloaded
			s.users[d.UserID] = u
		}
	}
	if s.sources.Torrents != nil {
		s.torrents = s.sources.Torrents.Take(s.torrents)
	}
	if s.sources.Peers != nil {
		s.peers = s.sources.Peers.Take(s.peers)
	}
}

func (s *statsLog) AddSnatch(sn storage.Snatch) {
	s.mu.Lock()
	s.snatches = append(s.snatches, sn)
	s.mu.Unlock()
}
func (s *statsLog) AddTokenUse(t storage.TokenUse) {
	s.mu.Lock()
	s.tokens[storage.Token{UserID: t.UserID, TorrentID: t.TorrentID}] += t.Downloaded
	s.mu.Unlock()
}
func (s *statsLog) ExpireToken(t storage.Token) {
	s.mu.Lock()
	s.expired = append(s.expired, t)
	s.mu.Unlock()
}
func (s *statsLog) Pending() storage.Pending { return storage.Pending{} }

func (s *statsLog) lastPeer() storage.PeerRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.take()
	return s.peers[len(s.peers)-1]
}

func (s *statsLog) lastTorrent() storage.TorrentStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.take()
	return s.torrents[len(s.torrents)-1]
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type privateEnv struct {
	t     *testing.T
	tr    *Tracker
	p     *Private
	stats *statsLog
	clock *fakeClock
}

// The fixtures: passkeys name the users.
var (
	alice     = storage.User{ID: 1, Passkey: "alice-passkey-0000000000000000000", CanLeech: true}
	bob       = storage.User{ID: 2, Passkey: "bob-passkey-000000000000000000000", CanLeech: true}
	noleech   = storage.User{ID: 3, Passkey: "noleech-passkey-00000000000000000", CanLeech: false}
	protected = storage.User{ID: 4, Passkey: "protected-passkey-000000000000000", CanLeech: true, Protected: true}

	normalHash  = bittorrent.InfoHash{1}
	freeHash    = bittorrent.InfoHash{2}
	neutralHash = bittorrent.InfoHash{3}
	hybridV1    = bittorrent.InfoHash{4}
	hybridV2    = bittorrent.InfoHash{5}
	doubleHash  = bittorrent.InfoHash{6}
)

func newPrivateEnv(t *testing.T) *privateEnv {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tr := New(Config{AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute, DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 10}, store)
	stats := newStatsLog()
	p := NewPrivate(tr, PrivateConfig{
		PeerLifetime:   time.Hour,
		DeletionMemory: 24 * time.Hour,
		DeletionMessage: func(r int) string {
			if r < 0 {
				return "Unregistered torrent"
			}
			return "Unregistered torrent: " + map[int]string{0: "Dupe", 1: "Trump"}[r]
		},
		Now: clock.Now,
	}, stats)
	p.Replace(&storage.Snapshot{
		Users: []storage.User{alice, bob, noleech, protected},
		Torrents: []storage.Torrent{
			{ID: 10, InfoHash: normalHash, Snatches: 7},
			{ID: 11, InfoHash: freeHash, Leech: storage.Free},
			{ID: 12, InfoHash: neutralHash, Leech: storage.Neutral},
			{ID: 13, InfoHash: hybridV1, InfoHashV2: hybridV2},
			{ID: 14, InfoHash: doubleHash, UpMultiplier: 2, DownMultiplier: 0.5},
		},
		Tokens: []storage.Token{{UserID: 2, TorrentID: 10}},
	})
	return &privateEnv{t: t, tr: tr, p: p, stats: stats, clock: clock}
}

type ann struct {
	user       storage.User
	hash       bittorrent.InfoHash
	peer       int
	v6         bool
	up, down   uint64
	left       uint64
	event      bittorrent.Event
	nonCompact bool
}

func (e *privateEnv) request(a ann) *bittorrent.AnnounceRequest {
	req := &bittorrent.AnnounceRequest{
		InfoHash: a.hash, Port: 6881, Uploaded: a.up, Downloaded: a.down, Left: a.left,
		Event: a.event, NumWant: -1, Compact: !a.nonCompact, Passkey: a.user.Passkey,
		UserAgent: "test/1.0",
	}
	copy(req.PeerID[:], fmt.Sprintf("-TR3000-%012d", a.peer))
	if a.v6 {
		req.IPv6 = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(a.peer)})
	} else {
		req.IPv4 = netip.AddrFrom4([4]byte{10, 0, 0, byte(a.peer)})
	}
	req.Source = req.IPv4
	return req
}

func (e *privateEnv) announce(a ann) (*bittorrent.AnnounceResponse, error) {
	var resp bittorrent.AnnounceResponse
	err := e.tr.Announce(context.Background(), e.request(a), &resp)
	return &resp, err
}

func (e *privateEnv) ok(a ann) *bittorrent.AnnounceResponse {
	e.t.Helper()
	resp, err := e.announce(a)
	if err != nil {
		e.t.Fatalf("announce %+v: %v", a, err)
	}
	return resp
}

func (e *privateEnv) user(id uint32) storage.UserDelta {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	e.stats.take()
	return e.stats.users[id]
}

func TestPrivateRefusals(t *testing.T) {
	e := newPrivateEnv(t)
	e.p.ReplaceWhitelist([]string{"-TR", "-qB"})
	tests := []struct {
		name string
		a    ann
		want string
	}{
		{"unknown passkey", ann{user: storage.User{Passkey: "nobody"}, hash: normalHash, peer: 1}, "Passkey not found"},
		{"no passkey", ann{hash: normalHash, peer: 1}, "Passkey not found"},
		{"unregistered", ann{user: alice, hash: bittorrent.InfoHash{99}, peer: 1}, "Unregistered torrent"},
		{"not compact", ann{user: alice, hash: normalHash, peer: 1, nonCompact: true}, "Your client does not support compact announces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.announce(tt.a)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	req := e.request(ann{user: alice, hash: normalHash, peer: 1})
	copy(req.PeerID[:], "-XX0001-")
	if err := e.tr.Announce(context.Background(), req, &bittorrent.AnnounceResponse{}); err == nil || err.Error() != "Your client is not on the whitelist" {
		t.Fatalf("client off the whitelist: %v", err)
	}
	e.p.RemoveWhitelist("-TR")
	if _, err := e.announce(ann{user: alice, hash: normalHash, peer: 1}); err == nil {
		t.Fatal("a removed prefix still admits")
	}
	e.p.AddWhitelist("-TR3")
	e.ok(ann{user: alice, hash: normalHash, peer: 1})
	e.p.ReplaceWhitelist(nil)
	if !e.p.whitelisted(req.PeerID) {
		t.Fatal("an empty whitelist must admit every client")
	}

	e.p.DeleteTorrent(normalHash, 1)
	if _, err := e.announce(ann{user: alice, hash: normalHash, peer: 1}); err == nil || err.Error() != "Unregistered torrent: Trump" {
		t.Fatalf("deleted torrent: %v", err)
	}
	e.clock.add(25 * time.Hour)
	if _, err := e.announce(ann{user: alice, hash: normalHash, peer: 1}); err == nil || err.Error() != "Unregistered torrent" {
		t.Fatalf("deleted long ago: %v", err)
	}
}

func TestPrivateDeltas(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 1000, down: 500, left: 10, event: bittorrent.Started})
	if u := e.user(1); u != (storage.UserDelta{}) {
		t.Fatalf("the first announce set a baseline but credited %+v", u)
	}
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 1500, down: 800, left: 10})
	if u := e.user(1); u.Uploaded != 500 || u.Downloaded != 300 {
		t.Fatalf("after +500/+300: %+v", u)
	}
	// Dual stack: the same session over IPv6 reports the same totals.
	e.ok(ann{user: alice, hash: normalHash, peer: 1, v6: true, up: 1500, down: 800, left: 10})
	if u := e.user(1); u.Uploaded != 500 || u.Downloaded != 300 {
		t.Fatalf("the IPv6 announce of the same session was credited again: %+v", u)
	}
	// Counters restarted: no credit, new baseline.
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 100, down: 0, left: 10})
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 150, down: 10, left: 10})
	if u := e.user(1); u.Uploaded != 550 || u.Downloaded != 310 {
		t.Fatalf("after a counter reset and +50/+10: %+v", u)
	}
	// A started event begins a new session even for a known peer.
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 170, down: 10, left: 10, event: bittorrent.Started})
	if u := e.user(1); u.Uploaded != 550 {
		t.Fatalf("a started announce was credited: %+v", u)
	}
	// A stop is credited, then the peer is gone.
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 220, down: 10, left: 10, event: bittorrent.Stopped})
	if u := e.user(1); u.Uploaded != 600 {
		t.Fatalf("the stop's transfer was not credited: %+v", u)
	}
	if row := e.stats.lastPeer(); row.Active {
		t.Errorf("the stopped peer's row is active: %+v", row)
	}
	// Another user's peer with the same peer id starts from its own
	// baseline.
	e.ok(ann{user: bob, hash: normalHash, peer: 1, up: 9999, left: 10, event: bittorrent.Started})
	if u := e.user(2); u != (storage.UserDelta{}) {
		t.Fatalf("bob was credited on his first announce: %+v", u)
	}
}

func TestPrivateLeechStates(t *testing.T) {
	e := newPrivateEnv(t)
	start := func(u storage.User, h bittorrent.InfoHash) {
		e.ok(ann{user: u, hash: h, peer: int(u.ID), left: 10, event: bittorrent.Started})
	}
	move := func(u storage.User, h bittorrent.InfoHash, up, down uint64) {
		e.ok(ann{user: u, hash: h, peer: int(u.ID), up: up, down: down, left: 10})
	}
	start(alice, freeHash)
	move(alice, freeHash, 100, 200)
	if u := e.user(1); u.Uploaded != 100 || u.Downloaded != 0 {
		t.Errorf("freeleech: %+v, want upload only", u)
	}
	start(alice, neutralHash)
	move(alice, neutralHash, 100, 200)
	if u := e.user(1); u.Uploaded != 100 || u.Downloaded != 0 {
		t.Errorf("neutral: %+v, want nothing more", u)
	}
	start(alice, doubleHash)
	move(alice, doubleHash, 100, 200)
	if u := e.user(1); u.Uploaded != 300 || u.Downloaded != 100 {
		t.Errorf("multipliers 2 and 0.5: %+v", u)
	}
	// Bob holds a token for the normal torrent.
	start(bob, normalHash)
	move(bob, normalHash, 50, 400)
	if u := e.user(2); u.Uploaded != 50 || u.Downloaded != 0 {
		t.Errorf("token: %+v, want upload only", u)
	}
	if got := e.stats.tokens[storage.Token{UserID: 2, TorrentID: 10}]; got != 400 {
		t.Errorf("token use %d, want 400", got)
	}
	// Completing the download uses the token up.
	e.ok(ann{user: bob, hash: normalHash, peer: 2, up: 50, down: 500, left: 0, event: bittorrent.Completed})
	if len(e.stats.expired) != 1 || e.stats.expired[0] != (storage.Token{UserID: 2, TorrentID: 10}) {
		t.Errorf("expired tokens %v", e.stats.expired)
	}
	if holders := e.p.TokenHolders(10); len(holders) != 0 {
		t.Errorf("token still held after completion: %v", holders)
	}
	if len(e.stats.snatches) != 1 || e.stats.snatches[0].UserID != 2 || e.stats.snatches[0].Addr != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("snatches %+v", e.stats.snatches)
	}
	if ts := e.stats.lastTorrent(); ts.Snatches != 1 || ts.Seeders != 1 || ts.Seeded.IsZero() {
		t.Errorf("torrent row after the completion: %+v", ts)
	}
	e.ok(ann{user: bob, hash: normalHash, peer: 2, up: 60, down: 500, left: 0, event: bittorrent.Completed})
	if len(e.stats.snatches) != 1 {
		t.Errorf("a second completed counted a second snatch")
	}
}

func TestPrivateLeechForbidden(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 0})
	_, err := e.announce(ann{user: noleech, hash: normalHash, peer: 3, left: 10, event: bittorrent.Started})
	if err == nil || err.Error() != "Access denied, leeching forbidden" {
		t.Fatalf("leech-disabled user: %v", err)
	}
	// Every refused announce of the session is credited, not only the
	// first: the user's transfer still counts.
	for _, up := range []uint64{1000, 5000, 9000} {
		if _, err := e.announce(ann{user: noleech, hash: normalHash, peer: 3, up: up, left: 10}); err == nil {
			t.Fatal("a refused leecher was let in")
		}
	}
	if u := e.user(3); u.Uploaded != 9000 {
		t.Fatalf("refused leecher credited %+v, want 9000 uploaded over the session", u)
	}
	if row := e.stats.lastPeer(); !row.Active {
		t.Errorf("a refused leecher's row is inactive: %+v", row)
	}
	resp := e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 0})
	if resp.Peers4.Len() != 0 || resp.Incomplete != 0 {
		t.Fatalf("the refused leecher is in the swarm: %+v", resp)
	}
	// Seeding is allowed.
	e.ok(ann{user: noleech, hash: normalHash, peer: 3, left: 0})
}

func TestPrivatePeerRows(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: protected, hash: normalHash, peer: 4, up: 0, left: 10, event: bittorrent.Started})
	row := e.stats.lastPeer()
	if !row.Full || !row.Active || row.Announces != 1 || row.Addr.IsValid() || row.UserAgent != "test/1.0" || row.TorrentID != 10 || row.UserID != 4 {
		t.Fatalf("first row %+v", row)
	}
	e.clock.add(100 * time.Second)
	e.ok(ann{user: protected, hash: normalHash, peer: 4, up: 1000, down: 5000, left: 10})
	row = e.stats.lastPeer()
	if !row.Full || row.Announces != 2 || row.TimeSpent != 100*time.Second || row.UpSpeed != 10 || row.DownSpeed != 50 {
		t.Fatalf("second row %+v", row)
	}
	e.clock.add(100 * time.Second)
	e.ok(ann{user: protected, hash: normalHash, peer: 4, up: 1000, down: 5000, left: 10})
	row = e.stats.lastPeer()
	if row.Full || row.Announces != 3 || row.TimeSpent != 200*time.Second || row.UpSpeed != 0 {
		t.Fatalf("a row with nothing new must be light: %+v", row)
	}
	if seeding, leeching := e.p.UserActivity(4); seeding != 0 || leeching != 1 {
		t.Fatalf("activity %d/%d", seeding, leeching)
	}
}

func TestPrivateHybridTorrent(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: hybridV1, peer: 1, left: 0})
	resp := e.ok(ann{user: bob, hash: hybridV2, peer: 2, left: 10})
	if resp.Peers4.Len() != 1 || resp.Complete != 1 {
		t.Fatalf("v2 announce does not share the v1 swarm: %+v", resp)
	}
	var sr bittorrent.ScrapeResponse
	if err := e.tr.Scrape(context.Background(), &bittorrent.ScrapeRequest{Passkey: alice.Passkey, InfoHashes: []bittorrent.InfoHash{hybridV2, {77}}}, &sr); err != nil {
		t.Fatal(err)
	}
	if len(sr.Files) != 1 || sr.Files[0].InfoHash != hybridV2 || sr.Files[0].Complete != 1 || sr.Files[0].Incomplete != 1 {
		t.Fatalf("scrape by v2 hash: %+v", sr.Files)
	}
	if err := e.tr.Scrape(context.Background(), &bittorrent.ScrapeRequest{Passkey: "x", InfoHashes: []bittorrent.InfoHash{hybridV1}}, &sr); err == nil || err.Error() != "Passkey not found" {
		t.Fatalf("scrape with a bad passkey: %v", err)
	}
}

func TestPrivatePolicyChanges(t *testing.T) {
	e := newPrivateEnv(t)
	carol := storage.User{ID: 9, Passkey: "carol-passkey-00000000000000000000", CanLeech: true}
	if _, err := e.announce(ann{user: carol, hash: normalHash, peer: 9}); err == nil {
		t.Fatal("unknown user admitted")
	}
	e.p.PutUser(carol)
	e.ok(ann{user: carol, hash: normalHash, peer: 9})
	if !e.p.ChangePasskey(carol.Passkey, "carol-new") {
		t.Fatal("ChangePasskey refused a known passkey")
	}
	if _, err := e.announce(ann{user: carol, hash: normalHash, peer: 9}); err == nil {
		t.Fatal("the old passkey still works")
	}
	carol.Passkey = "carol-new"
	e.ok(ann{user: carol, hash: normalHash, peer: 9})
	e.p.UpdateUser(carol.Passkey, false, false)
	if _, err := e.announce(ann{user: carol, hash: normalHash, peer: 9, left: 5}); err == nil {
		t.Fatal("UpdateUser(can_leech false) did not take effect")
	}
	e.p.RemoveUser(carol.Passkey)
	if _, ok := e.p.User(carol.Passkey); ok {
		t.Fatal("removed user still known")
	}

	e.p.PutTorrent(storage.Torrent{ID: 20, InfoHash: bittorrent.InfoHash{20}})
	e.ok(ann{user: alice, hash: bittorrent.InfoHash{20}, peer: 1, left: 0, event: bittorrent.Started})
	e.ok(ann{user: alice, hash: bittorrent.InfoHash{20}, peer: 1, up: 100, left: 0})
	if !e.p.SetLeech(bittorrent.InfoHash{20}, storage.Neutral) {
		t.Fatal("SetLeech refused a known torrent")
	}
	e.ok(ann{user: alice, hash: bittorrent.InfoHash{20}, peer: 1, up: 200, left: 0})
	if u := e.user(1); u.Uploaded != 100 {
		t.Fatalf("neutral after SetLeech still credited: %+v", u)
	}
	// A reload keeps the balance of torrents it keeps.
	a, _ := e.p.TorrentActivity(bittorrent.InfoHash{20})
	if a.Balance != 200 || len(a.Seeders) != 1 || a.Seeders[0] != 1 {
		t.Fatalf("activity %+v", a)
	}
	e.p.Replace(&storage.Snapshot{Users: []storage.User{alice}, Torrents: []storage.Torrent{{ID: 20, InfoHash: bittorrent.InfoHash{20}}}})
	a, _ = e.p.TorrentActivity(bittorrent.InfoHash{20})
	if a.Balance != 200 || a.Torrent.Leech != storage.Normal {
		t.Fatalf("after reload: %+v", a)
	}
	if _, ok := e.p.User(bob.Passkey); ok {
		t.Fatal("a user missing from the reload is still known")
	}
	if _, ok := e.p.Torrent(normalHash); ok {
		t.Fatal("a torrent missing from the reload is still known")
	}

	e.p.SetAnnounceInterval(time.Hour)
	e.p.SetAnnounceJitter(0)
	if resp := e.ok(ann{user: alice, hash: bittorrent.InfoHash{20}, peer: 1, up: 200, left: 0}); resp.Interval != time.Hour {
		t.Fatalf("interval %v after SetAnnounceInterval(1h)", resp.Interval)
	}
	if c := e.p.Counters(); c.Announces == 0 || c.FailedAnnounces == 0 || c.Seeders != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// When peers go silent, their torrent's stored counters drop with them.
func TestPrivateRefreshWritesEmptiedSwarms(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 0})
	e.clock.add(2 * time.Hour)
	e.p.refresh(context.Background())
	ts := e.stats.lastTorrent()
	if ts.TorrentID != 10 || ts.Seeders != 0 || ts.Leechers != 0 {
		t.Fatalf("after expiry the torrent row is %+v, want 0 seeders 0 leechers", ts)
	}
	if seeding, _ := e.p.UserActivity(1); seeding != 0 {
		t.Fatalf("expired peer still counted as seeding")
	}
}

// A peer's row waits in its session until storage takes it: announces in
// between leave one row, still full if any of them needed a full row, and
// a session that ends hands its row over with what was pending.
func TestPrivatePendingPeerRows(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 10, event: bittorrent.Started})
	e.clock.add(10 * time.Second)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 10})
	e.stats.mu.Lock()
	pending := e.stats.sources.Peers.Pending()
	e.stats.mu.Unlock()
	if pending != 1 {
		t.Fatalf("%d rows pending for one peer", pending)
	}
	if row := e.stats.lastPeer(); !row.Full || row.Announces != 2 || len(e.stats.peers) != 1 {
		t.Fatalf("rows %+v: want one full row of two announces", e.stats.peers)
	}

	e.clock.add(10 * time.Second)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 500, left: 10})
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 500, left: 10, event: bittorrent.Stopped})
	e.stats.mu.Lock()
	rows := len(e.stats.peers)
	e.stats.mu.Unlock()
	if rows != 2 {
		t.Fatalf("the stop left %d rows, want the first and the stop's", rows)
	}
	if row := e.stats.lastPeer(); row.Active || !row.Full || row.Uploaded != 500 || row.Announces != 4 || len(e.stats.peers) != 2 {
		t.Fatalf("rows %+v: the stop's row must carry the pending row", e.stats.peers)
	}
}

// Sessions that expire or whose torrent is deleted before their row was
// taken still have it written.
func TestPrivatePendingRowsOfVanishedSessions(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 10})
	e.ok(ann{user: bob, hash: freeHash, peer: 2, left: 10})
	e.p.DeleteTorrent(freeHash, 0)
	e.clock.add(2 * time.Hour)
	e.p.refresh(context.Background())
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	if len(e.stats.peers) != 2 {
		t.Fatalf("rows %+v: want the expired and the deleted torrent's", e.stats.peers)
	}
	if e.stats.sources.Peers.Pending() != 0 {
		t.Fatal("rows pending in sessions that are gone")
	}
}

// A user removed and added again while a delta is pending is written once,
// with both entries' transfer.
func TestPrivateUserRowsOnceEach(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 10})
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 100, left: 10})
	e.p.RemoveUser(alice.Passkey)
	e.p.PutUser(alice)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, up: 300, left: 10})
	rows := e.stats.sources.Users.Take(nil)
	if len(rows) != 1 || rows[0].Uploaded != 300 {
		t.Fatalf("user rows %+v: want one of 300 uploaded", rows)
	}
}

// With the system clock, announces record the time Run last read, not the
// clock each time.
func TestPrivateRecordsRunsClock(t *testing.T) {
	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tr := New(Config{AnnounceInterval: time.Minute, DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 10}, store)
	stats := newStatsLog()
	p := NewPrivate(tr, PrivateConfig{PeerLifetime: time.Hour, DeletionMemory: time.Hour}, stats)
	p.Replace(&storage.Snapshot{Users: []storage.User{alice}, Torrents: []storage.Torrent{{ID: 10, InfoHash: normalHash}}})
	e := &privateEnv{t: t, tr: tr, p: p, stats: stats}
	tick := time.Unix(1_700_000_000, 0)
	p.setTick(tick)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 10})
	if row := stats.lastPeer(); !row.Time.Equal(tick) {
		t.Fatalf("row time %v, want the tick %v", row.Time, tick)
	}
}

// Announces racing on one torrent may store its counters out of order; the
// row written carries the swarm's counters as they are when it is taken.
func TestPrivateTorrentRowsCountTheSwarm(t *testing.T) {
	e := newPrivateEnv(t)
	e.ok(ann{user: alice, hash: normalHash, peer: 1, left: 0})
	e.ok(ann{user: bob, hash: normalHash, peer: 2, left: 10})
	e.p.mu.RLock()
	entry := e.p.torrents.Find(&normalHash)
	e.p.mu.RUnlock()
	// A late store of what an earlier announce saw.
	e.p.count(entry, 0, 1, false, false, e.clock.Now())
	if row := e.stats.lastTorrent(); row.TorrentID != 10 || row.Seeders != 1 || row.Leechers != 1 {
		t.Fatalf("torrent row %+v: want the swarm's 1 seeder and 1 leecher", row)
	}
}

// A batch hint on a private tracker reads only: it registers nothing, starts
// no session and changes no count, whatever it names (registered torrents
// with and without peers, the second hash of a hybrid, unknown hashes,
// more hashes than one round of it takes). Run with the race detector, the
// second half checks that it takes no session memory from under announces
// that create, grow, shrink and delete the same swarms.
func TestPrivateWarmIsOnlyAHint(t *testing.T) {
	e := newPrivateEnv(t)
	for n := range 3 {
		e.ok(ann{user: alice, hash: normalHash, peer: n, left: 10, event: bittorrent.Started})
	}
	hashes := []bittorrent.InfoHash{normalHash, freeHash, hybridV2}
	for i := range 2 * warmChunk {
		hashes = append(hashes, bittorrent.InfoHash{0xee, byte(i)})
	}
	// Peer ids and passkeys for the first few only: a hint may name
	// fewer peers than hashes (scrapes name none), and passkeys that
	// are no user's.
	e.tr.Warm(hashes, []bittorrent.PeerID{e.request(ann{peer: 0}).PeerID, e.request(ann{peer: 99}).PeerID},
		[]string{alice.Passkey, "no-such-passkey", ""})
	var resp bittorrent.ScrapeResponse
	if err := e.tr.Scrape(context.Background(), &bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{normalHash, freeHash}, Passkey: alice.Passkey}, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Files) != 2 || resp.Files[0].Incomplete != 3 || resp.Files[1].Incomplete+resp.Files[1].Complete != 0 {
		t.Fatalf("after the hint, scrape = %+v; want 3 leechers on the first torrent and none on the second", resp.Files)
	}
	if seeders, leechers := e.p.live.totals(); seeders != 0 || leechers != 3 {
		t.Fatalf("after the hint, %d seeding and %d leeching sessions; want 0 and 3", seeders, leechers)
	}

	churn := []bittorrent.InfoHash{normalHash, freeHash, doubleHash}
	// The hint reads the tags of the sessions it names while the
	// announces below add, move and remove them, and the users it names
	// while they are removed, added again and change passkeys.
	carol := storage.User{ID: 3, Passkey: "carol-passkey-00000000000000000000", CanLeech: true}
	churnKeys := []string{bob.Passkey, carol.Passkey, "carol-new-passkey"}
	var ids []bittorrent.PeerID
	for peer := 10; peer < 50; peer++ {
		ids = append(ids, e.request(ann{peer: peer}).PeerID)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 3000 {
			k := i % (len(ids) - len(churn) + 1)
			e.tr.Warm(churn, ids[k:k+len(churn)], churnKeys)
		}
	}()
	for i := range 3000 {
		h := churn[i%len(churn)]
		// Up to 40 sessions a swarm, past the index threshold, then
		// all of them gone.
		peer := 10 + i%40
		switch i % 4 {
		case 0:
			e.p.PutUser(carol)
		case 1:
			e.p.ChangePasskey(carol.Passkey, "carol-new-passkey")
		case 2:
			e.p.RemoveUser("carol-new-passkey")
		}
		e.ok(ann{user: bob, hash: h, peer: peer, left: 10, event: bittorrent.Started})
		if i%80 >= 40 {
			e.ok(ann{user: bob, hash: h, peer: peer, left: 10, event: bittorrent.Stopped})
			e.ok(ann{user: bob, hash: h, peer: 10 + (i+1)%40, left: 10, event: bittorrent.Stopped})
		}
	}
	<-done
}
