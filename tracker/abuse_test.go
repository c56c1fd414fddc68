package tracker

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// withLimits reconfigures the private environment's tracker with a
// bad-request budget and puts its limiters on the environment's clock.
func (e *privateEnv) withLimits(badPerMinute, announcesPerMinute int) {
	cfg := *e.tr.cfg.Load()
	cfg.BadRequestsPerMinute, cfg.AnnouncesPerMinute = badPerMinute, announcesPerMinute
	e.tr.limits.now = func() int64 { return e.clock.Now().UnixNano() }
	e.tr.Reconfigure(cfg)
}

func (e *privateEnv) peerRows() int {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	e.stats.take()
	return len(e.stats.peers)
}

// Guessing passkeys from one address is cut off after the budget, before
// any work; others are not affected; the budget refills with time.
func TestPrivateBadRequestLimit(t *testing.T) {
	e := newPrivateEnv(t)
	e.withLimits(5, 0)
	guess := func(peer int, passkey string) error {
		_, err := e.announce(ann{user: storage.User{Passkey: passkey}, hash: normalHash, peer: peer})
		return err
	}
	for i := range 5 {
		if err := guess(1, "guess-"+string(rune('a'+i))); err != errPasskeyNotFound {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	if err := guess(1, "guess-f"); err != errTooManyBad {
		t.Fatalf("6th guess: %v, want %q", err, errTooManyBad)
	}
	// The right passkey from the same address is refused too, without
	// touching swarm or statistics.
	rows := e.peerRows()
	if _, err := e.announce(ann{user: alice, hash: normalHash, peer: 1}); err != errTooManyBad {
		t.Fatalf("valid announce from a blocked address: %v", err)
	}
	var scrape bittorrent.ScrapeResponse
	if err := e.tr.Scrape(context.Background(), &bittorrent.ScrapeRequest{Passkey: alice.Passkey, InfoHashes: []bittorrent.InfoHash{normalHash}, Source: addr4peer(1)}, &scrape); err != errTooManyBad {
		t.Fatalf("scrape from a blocked address: %v", err)
	}
	if e.peerRows() != rows {
		t.Fatal("a refused announce reached the statistics")
	}
	if _, err := e.announce(ann{user: alice, hash: normalHash, peer: 2}); err != nil {
		t.Fatalf("another address is refused: %v", err)
	}
	// 60 s / 5 = 12 s for one more try.
	e.clock.add(11 * time.Second)
	if err := guess(1, "guess-g"); err != errTooManyBad {
		t.Fatalf("after 11 s: %v", err)
	}
	e.clock.add(time.Second)
	if err := guess(1, "guess-h"); err != errPasskeyNotFound {
		t.Fatalf("after 12 s the next guess must be looked at: %v", err)
	}
	if err := guess(1, "guess-i"); err != errTooManyBad {
		t.Fatalf("the refilled token was spent, want blocked again: %v", err)
	}
	e.clock.add(time.Minute)
	e.ok(ann{user: alice, hash: normalHash, peer: 1})
}

func addr4peer(peer int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(peer)}) }

// Unregistered torrents and bad scrapes count; a refused leecher, a valid
// user, does not.
func TestPrivateBadRequestKinds(t *testing.T) {
	e := newPrivateEnv(t)
	e.withLimits(3, 0)
	for range 10 {
		_, err := e.announce(ann{user: noleech, hash: normalHash, peer: 3, left: 10})
		if err != errLeechForbidden {
			t.Fatalf("refused leecher: %v", err)
		}
	}
	for i := range 2 {
		if _, err := e.announce(ann{user: alice, hash: bittorrent.InfoHash{0xee, byte(i)}, peer: 4}); err != errUnregistered {
			t.Fatalf("unregistered: %v", err)
		}
	}
	var resp bittorrent.ScrapeResponse
	err := e.tr.Scrape(context.Background(), &bittorrent.ScrapeRequest{Passkey: "nobody", InfoHashes: []bittorrent.InfoHash{normalHash}, Source: addr4peer(4)}, &resp)
	if err != errPasskeyNotFound {
		t.Fatalf("scrape with an unknown passkey: %v", err)
	}
	if _, err := e.announce(ann{user: alice, hash: normalHash, peer: 4}); err != errTooManyBad {
		t.Fatalf("after two unregistered torrents and a bad scrape: %v", err)
	}
	// What a frontend could not parse counts too, and is answered with
	// the refusal once the budget is spent.
	malformed := bittorrent.ClientError("invalid info_hash: need 20 bytes, got 3")
	src := addr4peer(5)
	for i := range 3 {
		if err := e.tr.Malformed(src, malformed); err != malformed {
			t.Fatalf("malformed %d: %v", i+1, err)
		}
	}
	if err := e.tr.Malformed(src, malformed); err != errTooManyBad {
		t.Fatalf("4th malformed: %v", err)
	}
	internal := errors.New("redis down")
	if err := e.tr.Malformed(addr4peer(6), internal); err != internal {
		t.Fatalf("a tracker error was taken for a bad request: %v", err)
	}
}

func TestAnnounceRateLimit(t *testing.T) {
	tr := newTracker(t, testConfig)
	cfg := testConfig
	cfg.AnnouncesPerMinute, cfg.BadRequestsPerMinute = 3, 1
	tr.Reconfigure(cfg)
	now := int64(0)
	tr.limits.now = func() int64 { return now }
	ctx := context.Background()
	req := peer(1, 0)
	req.Source = req.IPv4
	for i := range 3 {
		if err := tr.Announce(ctx, req, &bittorrent.AnnounceResponse{}); err != nil {
			t.Fatalf("announce %d: %v", i+1, err)
		}
	}
	for range 5 {
		if err := tr.Announce(ctx, req, &bittorrent.AnnounceResponse{}); err != errTooManyAnnounces {
			t.Fatalf("4th announce in a minute: %v", err)
		}
	}
	// Scrapes are not announces; and the refusals above did not spend
	// the bad-request budget of 1.
	if err := tr.Scrape(ctx, &bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{{1}}, Source: req.Source}, &bittorrent.ScrapeResponse{}); err != nil {
		t.Fatalf("scrape: %v", err)
	}
	other := peer(2, 0)
	other.Source = other.IPv4
	if err := tr.Announce(ctx, other, &bittorrent.AnnounceResponse{}); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now += int64(20 * time.Second)
	if err := tr.Announce(ctx, req, &bittorrent.AnnounceResponse{}); err != nil {
		t.Fatalf("after 20 s: %v", err)
	}
	cfg.AnnouncesPerMinute = 0
	tr.Reconfigure(cfg)
	for range 10 {
		if err := tr.Announce(ctx, req, &bittorrent.AnnounceResponse{}); err != nil {
			t.Fatalf("limit turned off: %v", err)
		}
	}
}

func TestMinPortAndBlockedClients(t *testing.T) {
	tr := newTracker(t, testConfig)
	cfg := testConfig
	cfg.MinPort = 1024
	cfg.BlockedPeerIDPrefixes = []string{"-XX", "M7-"}
	tr.Reconfigure(cfg)
	ctx := context.Background()
	try := func(port uint16, id string, event bittorrent.Event) error {
		req := peer(1, 0)
		req.Port, req.Event = port, event
		copy(req.PeerID[:], id)
		return tr.Announce(ctx, req, &bittorrent.AnnounceResponse{})
	}
	if err := try(80, "-TT0001-", bittorrent.None); err == nil || err.Error() != "invalid port: below 1024" {
		t.Errorf("port 80: %v", err)
	}
	if err := try(1023, "-TT0001-", bittorrent.Started); err == nil || err.Error() != "invalid port: below 1024" {
		t.Errorf("port 1023: %v", err)
	}
	if err := try(1024, "-TT0001-", bittorrent.None); err != nil {
		t.Errorf("port 1024: %v", err)
	}
	if err := try(80, "-TT0001-", bittorrent.Stopped); err != nil {
		t.Errorf("a stop must pass so the peer can leave: %v", err)
	}
	for _, id := range []string{"-XX0001-", "M7-4-0--"} {
		if err := try(6881, id, bittorrent.None); err != errClientBlocked {
			t.Errorf("%s: %v", id, err)
		}
	}
	for _, id := range []string{"-TX0001-", "M6-4-0--", "-xx0001-"} {
		if err := try(6881, id, bittorrent.None); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	tr.Reconfigure(testConfig)
	if err := try(80, "-XX0001-", bittorrent.None); err != nil {
		t.Errorf("rules removed by a reload still apply: %v", err)
	}
}

// With the limits on, an announce allocates no more than without them.
func TestLimitsDoNotAllocate(t *testing.T) {
	tr := newTracker(t, testConfig)
	ctx := context.Background()
	req := peer(1, 0)
	req.Source = req.IPv4
	var resp bittorrent.AnnounceResponse
	measure := func() float64 {
		return testing.AllocsPerRun(200, func() {
			resp.Reset()
			if err := tr.Announce(ctx, req, &resp); err != nil {
				t.Fatal(err)
			}
		})
	}
	before := measure()
	cfg := testConfig
	cfg.BadRequestsPerMinute, cfg.AnnouncesPerMinute = 60, 1_000_000
	cfg.MinPort, cfg.BlockedPeerIDPrefixes = 1024, []string{"-XX", "-YY"}
	tr.Reconfigure(cfg)
	if after := measure(); after > before {
		t.Errorf("%v allocations per announce with the limits on, %v without", after, before)
	}
}
