package tracker

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/storage"
)

// discard is a storage.Writer that accepts everything, so the benchmark
// measures the rules and the flusher's bookkeeping, not a database.
type discard struct{}

func (discard) WriteUsers(context.Context, []storage.UserDelta) error       { return nil }
func (discard) WriteTorrents(context.Context, []storage.TorrentStats) error { return nil }
func (discard) WritePeers(context.Context, []storage.PeerRow) error         { return nil }
func (discard) WriteSnatches(context.Context, []storage.Snatch) error       { return nil }
func (discard) WriteTokens(context.Context, []storage.TokenUse) error       { return nil }
func (discard) ExpireTokens(context.Context, []storage.Token) error         { return nil }

// benchmarkAnnounce re-announces peers of 10,000 swarms of 20 (30 %
// seeders), each announce moving a few bytes, numwant 50; in private mode
// the 200,000 peers belong to 10,000 users, 20 each, as in the load tool's
// model (make bench). The peers take
// turns in a shuffled order, as the load tool's do, so that each announce
// finds its swarm as cold in the CPU's caches as on a real tracker; in
// order, a swarm's 20 announces would share one fetch of its memory.
func benchmarkAnnounce(b *testing.B, private, warm bool) {
	const batch = 32
	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	tr := New(Config{AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute, DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 10}, store)
	const torrents, peers, users = 10000, 20, 10000
	var snap storage.Snapshot
	for i := range torrents {
		snap.Torrents = append(snap.Torrents, storage.Torrent{ID: uint32(i + 1), InfoHash: bittorrent.InfoHash{byte(i), byte(i >> 8), 1}})
	}
	for i := range users {
		snap.Users = append(snap.Users, storage.User{ID: uint32(i + 1), Passkey: fmt.Sprintf("%032d", i), CanLeech: true})
	}
	if private {
		f := storage.NewFlusher(discard{}, storage.FlusherConfig{Interval: 100 * time.Millisecond, Timeout: time.Second, MaxBackoff: time.Second, MaxPeerRows: 1 << 20}, slog.New(slog.DiscardHandler))
		f.Start()
		defer f.Close(context.Background())
		p := NewPrivate(tr, PrivateConfig{PeerLifetime: time.Hour, DeletionMemory: time.Hour}, f)
		p.Replace(&snap)
		// As cmd/chihaya runs it: it keeps the clock announces read.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go p.Run(ctx, time.Minute)
	}
	reqs := make([]bittorrent.AnnounceRequest, torrents*peers)
	for i := range reqs {
		t, u := i/peers, i%peers
		r := &reqs[i]
		r.InfoHash = snap.Torrents[t].InfoHash
		copy(r.PeerID[:], fmt.Sprintf("-BE0001-%012d", u))
		r.IPv4 = netip.AddrFrom4([4]byte{10, byte(u), byte(t >> 8), byte(t)})
		r.Port, r.NumWant, r.Compact = 6881, 50, true
		r.Passkey = snap.Users[i%users].Passkey
		if u%10 >= 3 {
			r.Left = 1000
		}
	}
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(reqs))
	ctx := context.Background()
	var resp bittorrent.AnnounceResponse
	for i := range reqs {
		resp.Reset()
		if err := tr.Announce(ctx, &reqs[i], &resp); err != nil {
			b.Fatal(err)
		}
	}
	var hashes []bittorrent.InfoHash
	var ids []bittorrent.PeerID
	var passkeys []string
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if warm && i%batch == 0 {
			// The next batch's hashes, peer ids and passkeys, as
			// the UDP frontend gives them for a read of packets.
			hashes, ids, passkeys = hashes[:0], ids[:0], passkeys[:0]
			for j := i; j < i+batch; j++ {
				r := &reqs[order[j%len(order)]]
				hashes = append(hashes, r.InfoHash)
				ids = append(ids, r.PeerID)
				passkeys = append(passkeys, r.Passkey)
			}
			tr.Warm(hashes, ids, passkeys)
		}
		r := &reqs[order[i%len(order)]]
		r.Uploaded += 100
		resp.Reset()
		if err := tr.Announce(ctx, r, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnnounceOpen and BenchmarkAnnouncePrivate run the same load
// through the open and the private rules, one announce at a time.
func BenchmarkAnnounceOpen(b *testing.B)    { benchmarkAnnounce(b, false, false) }
func BenchmarkAnnouncePrivate(b *testing.B) { benchmarkAnnounce(b, true, false) }

// BenchmarkAnnounceBatch runs them as the UDP frontend does: in batches of
// 32 whose hashes, peer ids and passkeys are hinted first (Tracker.Warm), so that the
// cache misses of a batch's swarms, registry entries, users and sessions
// overlap.
func BenchmarkAnnounceBatch(b *testing.B) {
	b.Run("open", func(b *testing.B) { benchmarkAnnounce(b, false, true) })
	b.Run("private", func(b *testing.B) { benchmarkAnnounce(b, true, true) })
}

// BenchmarkLiveUpdate is the private rules' session step alone: peers of
// 10,000 swarms of 20 re-announcing in a shuffled order, so that each
// update finds its swarm's sessions cold. Every peer is its own user, as on
// a private tracker, or all are one user, as when the load tool announces
// with one passkey.
func BenchmarkLiveUpdate(b *testing.B) {
	b.Run("users=each", func(b *testing.B) { benchmarkLiveUpdate(b, true) })
	b.Run("users=one", func(b *testing.B) { benchmarkLiveUpdate(b, false) })
}

func benchmarkLiveUpdate(b *testing.B, userEach bool) {
	l, as := liveBench(userEach)
	var last storage.PeerRow
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(as))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		a := &as[order[i%len(order)]]
		a.uploaded += 100
		a.known, a.prevUp = true, a.uploaded-100
		l.update(a, &last, noCounters)
	}
}

func noCounters(uint32, int32, int32) {}

// liveBench returns a live table holding a session for each peer of
// 10,000 torrents of 20 (30 % seeding), of 20 users, one peer each per
// torrent, or of one user; and the announces that made them.
func liveBench(userEach bool) (*liveTable, []liveAnnounce) {
	const torrents, peers = 10000, 20
	now := time.Unix(1_700_000_000, 0)
	entries := make([]torrentEntry, torrents)
	as := make([]liveAnnounce, torrents*peers)
	for i := range as {
		t, u := i/peers, i%peers
		a := &as[i]
		*a = liveAnnounce{
			entry: &entries[t], torrent: uint32(t + 1), user: 1, now: now, lifetime: time.Hour,
			seeding: u%10 < 3, addr: netip.AddrFrom4([4]byte{10, byte(u), byte(t >> 8), byte(t)}), port: 6881,
		}
		if userEach {
			a.user = uint32(u + 1)
		}
		copy(a.peer[:], fmt.Sprintf("-BE0001-%012d", u))
	}
	l := &liveTable{}
	l.init(func(storage.PeerRow) {})
	var last storage.PeerRow
	for i := range as {
		l.update(&as[i], &last, noCounters)
	}
	return l, as
}

// BenchmarkLiveTake measures what a flush of the per-peer rows costs the
// tracker: taking 200,000 pending rows (10,000 torrents × 20 peers) into
// the batch. "empty batch" is a flusher's first batches, whose slice has
// no room yet; "reused batch" is the steady state, where the flusher hands
// back the slice of an earlier batch. ns/op is per row.
func BenchmarkLiveTake(b *testing.B) {
	for _, reuse := range []bool{false, true} {
		name := "empty batch"
		if reuse {
			name = "reused batch"
		}
		b.Run(name, func(b *testing.B) {
			l, as := liveBench(true)
			var last storage.PeerRow
			var batch []storage.PeerRow
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				for i := range as {
					l.update(&as[i], &last, noCounters)
				}
				if !reuse {
					batch = nil
				}
				b.StartTimer()
				batch = l.Take(batch[:0])
			}
			if len(batch) != len(as) {
				b.Fatalf("took %d rows, want %d", len(batch), len(as))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(as)), "ns/row")
		})
	}
}
