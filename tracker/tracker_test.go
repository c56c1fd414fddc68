package tracker

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
)

func newTracker(t *testing.T, cfg Config) *Tracker {
	t.Helper()
	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return New(cfg, store)
}

var testConfig = Config{
	AnnounceInterval:    30 * time.Minute,
	MinAnnounceInterval: 10 * time.Minute,
	DefaultNumWant:      5,
	MaxNumWant:          8,
	MaxScrapeInfoHashes: 2,
}

func peer(i int, left uint64) *bittorrent.AnnounceRequest {
	req := &bittorrent.AnnounceRequest{
		InfoHash: bittorrent.InfoHash{1},
		IPv4:     netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
		Port:     6881,
		Left:     left,
		NumWant:  -1,
	}
	copy(req.PeerID[:], fmt.Sprintf("-TT0001-%012d", i))
	return req
}

func TestNumWantDefaultAndCap(t *testing.T) {
	tr := newTracker(t, testConfig)
	ctx := context.Background()
	for i := range 20 {
		if err := tr.Announce(ctx, peer(i, 0), &bittorrent.AnnounceResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		numWant int32
		event   bittorrent.Event
		want    int
	}{
		{-1, bittorrent.None, 5},
		{0, bittorrent.None, 0},
		{3, bittorrent.None, 3},
		{1000, bittorrent.None, 8},
		{1000, bittorrent.Stopped, 0},
	} {
		req := peer(100, 1)
		req.NumWant, req.Event = tt.numWant, tt.event
		var resp bittorrent.AnnounceResponse
		if err := tr.Announce(ctx, req, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Peers4.Len() != tt.want {
			t.Errorf("numwant %d event %v: got %d peers, want %d", tt.numWant, tt.event, resp.Peers4.Len(), tt.want)
		}
	}
}

func TestIntervalJitter(t *testing.T) {
	cfg := testConfig
	cfg.AnnounceJitter = 5 * time.Minute
	tr := newTracker(t, cfg)
	seen := map[time.Duration]bool{}
	for i := range 50 {
		var resp bittorrent.AnnounceResponse
		if err := tr.Announce(context.Background(), peer(i, 0), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Interval < cfg.AnnounceInterval || resp.Interval >= cfg.AnnounceInterval+cfg.AnnounceJitter {
			t.Fatalf("interval %v outside [%v, %v)", resp.Interval, cfg.AnnounceInterval, cfg.AnnounceInterval+cfg.AnnounceJitter)
		}
		if resp.MinInterval != cfg.MinAnnounceInterval {
			t.Fatalf("min interval %v", resp.MinInterval)
		}
		seen[resp.Interval] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct intervals in 50 announces: the jitter does not spread clients", len(seen))
	}
}

func TestAnnounceRefusals(t *testing.T) {
	tr := newTracker(t, testConfig)
	req := peer(1, 0)
	req.Port = 0
	err := tr.Announce(context.Background(), req, &bittorrent.AnnounceResponse{})
	if _, ok := err.(bittorrent.ClientError); !ok {
		t.Errorf("port 0: %v", err)
	}
	req.Event = bittorrent.Stopped
	if err := tr.Announce(context.Background(), req, &bittorrent.AnnounceResponse{}); err != nil {
		t.Errorf("a stop with port 0 must be accepted so the peer leaves: %v", err)
	}
	req = peer(1, 0)
	req.IPv4 = netip.Addr{}
	if _, ok := tr.Announce(context.Background(), req, &bittorrent.AnnounceResponse{}).(bittorrent.ClientError); !ok {
		t.Errorf("an announce without an address must be refused")
	}
}

func TestScrapeSortsAndDeduplicates(t *testing.T) {
	tr := newTracker(t, testConfig)
	ctx := context.Background()
	for _, h := range []byte{3, 1} {
		req := peer(int(h), 0)
		req.InfoHash = bittorrent.InfoHash{h}
		if err := tr.Announce(ctx, req, &bittorrent.AnnounceResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	req := &bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{{3}, {1}, {3}, {1}}}
	var resp bittorrent.ScrapeResponse
	if err := tr.Scrape(ctx, req, &resp); err != nil {
		t.Fatalf("four hashes that are two distinct ones are within a cap of two: %v", err)
	}
	if len(resp.Files) != 2 || resp.Files[0].InfoHash != (bittorrent.InfoHash{1}) || resp.Files[1].InfoHash != (bittorrent.InfoHash{3}) {
		t.Fatalf("files = %v", resp.Files)
	}
	req = &bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{{1}, {2}, {3}}}
	if _, ok := tr.Scrape(ctx, req, &resp).(bittorrent.ClientError); !ok {
		t.Errorf("three distinct hashes over a cap of two must be refused")
	}
}

func TestHashLists(t *testing.T) {
	tr := newTracker(t, testConfig)
	ctx := context.Background()
	listed, other := bittorrent.InfoHash{1}, bittorrent.InfoHash{2}
	announce := func(h bittorrent.InfoHash) error {
		req := peer(1, 0)
		req.InfoHash = h
		return tr.Announce(ctx, req, &bittorrent.AnnounceResponse{})
	}
	if err := announce(other); err != nil {
		t.Fatal(err)
	}
	tr.SetHashList(&HashList{Allow: true, Hashes: map[bittorrent.InfoHash]struct{}{listed: {}}})
	if err := announce(listed); err != nil {
		t.Fatalf("allow list refused a listed hash: %v", err)
	}
	if err := announce(other); err == nil || !strings.HasPrefix(err.Error(), "Unregistered torrent") {
		t.Fatalf("allow list let an unlisted hash in: %v", err)
	}
	var resp bittorrent.ScrapeResponse
	if err := tr.Scrape(ctx, &bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{listed, other}}, &resp); err != nil || len(resp.Files) != 1 || resp.Files[0].InfoHash != listed {
		t.Fatalf("scrape under an allow list: %+v %v", resp.Files, err)
	}
	tr.SetHashList(&HashList{Allow: false, Hashes: map[bittorrent.InfoHash]struct{}{listed: {}}})
	if err := announce(listed); err == nil || !strings.HasPrefix(err.Error(), "Blocked torrent") {
		t.Fatalf("deny list let a listed hash in: %v", err)
	}
	if err := announce(other); err != nil {
		t.Fatalf("deny list refused an unlisted hash: %v", err)
	}
	tr.SetHashList(nil)
	if err := announce(listed); err != nil {
		t.Fatalf("no list: %v", err)
	}
}

func TestReconfigureKeepsSwarms(t *testing.T) {
	tr := newTracker(t, testConfig)
	ctx := context.Background()
	if err := tr.Announce(ctx, peer(1, 0), &bittorrent.AnnounceResponse{}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig
	cfg.AnnounceInterval, cfg.MinAnnounceInterval, cfg.MaxNumWant, cfg.DefaultNumWant = time.Hour, time.Minute, 1, 1
	tr.Reconfigure(cfg)
	var resp bittorrent.AnnounceResponse
	if err := tr.Announce(ctx, peer(2, 1), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Interval != time.Hour || resp.MinInterval != time.Minute || resp.Peers4.Len() != 1 || resp.Complete != 1 {
		t.Fatalf("after Reconfigure: %+v", resp)
	}
}

// seenAnnounces passes announces through to a real cache and keeps the last
// one, to show what the tracker hands the cache.
type seenAnnounces struct {
	Swarms
	last cache.Announce
}

func (s *seenAnnounces) Announce(ctx context.Context, a *cache.Announce, r *cache.Result) error {
	s.last = *a
	return s.Swarms.Announce(ctx, a, r)
}

// An open tracker has no use for a peer's transfer totals; storing them would
// cost the memory cache 16 bytes for nearly every real client.
func TestOpenTrackerStoresNoTotals(t *testing.T) {
	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	seen := &seenAnnounces{Swarms: store}
	tr := New(testConfig, seen)
	req := peer(1, 10)
	req.Uploaded, req.Downloaded = 1<<30, 1<<20
	if err := tr.Announce(context.Background(), req, &bittorrent.AnnounceResponse{}); err != nil {
		t.Fatal(err)
	}
	if seen.last.Uploaded != 0 || seen.last.Downloaded != 0 {
		t.Errorf("cache got totals %d/%d from an open tracker; want none", seen.last.Uploaded, seen.last.Downloaded)
	}
	if seen.last.InfoHash != req.InfoHash || seen.last.Port != req.Port {
		t.Errorf("cache got %+v", seen.last)
	}
}

// hintedStore is a swarm store that records the hints it is given.
type hintedStore struct {
	Swarms
	hinted []bittorrent.InfoHash
}

func (s *hintedStore) Warm(hashes []bittorrent.InfoHash) { s.hinted = append(s.hinted, hashes...) }

// A frontend's hint reaches a store that takes hints; one that does not is
// left alone.
func TestWarmReachesTheStore(t *testing.T) {
	store := &hintedStore{Swarms: newTracker(t, testConfig).swarms}
	hashes := []bittorrent.InfoHash{{1}, {2}}
	New(testConfig, store).Warm(hashes, nil, nil)
	if len(store.hinted) != 2 || store.hinted[0] != hashes[0] || store.hinted[1] != hashes[1] {
		t.Fatalf("store hinted %v, want %v", store.hinted, hashes)
	}
	New(testConfig, store.Swarms.(cache.Store)).Warm(hashes, nil, nil) // the memory store: must not panic
	New(testConfig, struct{ Swarms }{store}).Warm(hashes, nil, nil)    // no Warm: dropped
	if len(store.hinted) != 2 {
		t.Fatalf("a store without Warm was hinted through its wrapper: %v", store.hinted)
	}
}
