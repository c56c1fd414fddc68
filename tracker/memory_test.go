package tracker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/storage"
)

// benchmarkPeerMemory stores torrents×peers peers and reports the heap they
// take per peer: the figure that decides how many peers an instance can
// hold. Private mode adds the live sessions and their pending rows to the
// cache's records. Each torrent has a session of every user, each with its
// own peer id.
func benchmarkPeerMemory(b *testing.B, private bool, torrents, peers int) {
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()

		store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		tr := New(Config{AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute, DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 10}, store)
		var snap storage.Snapshot
		for i := range torrents {
			snap.Torrents = append(snap.Torrents, storage.Torrent{ID: uint32(i + 1), InfoHash: bittorrent.InfoHash{byte(i), byte(i >> 8), 2}})
		}
		for i := range peers {
			snap.Users = append(snap.Users, storage.User{ID: uint32(i + 1), Passkey: fmt.Sprintf("%032d", i), CanLeech: true})
		}
		var f *storage.Flusher
		if private {
			// The flusher never writes during the fill, as when the
			// database is slower than the announces: every peer's row
			// is pending.
			f = storage.NewFlusher(discard{}, storage.FlusherConfig{Interval: time.Hour, Timeout: time.Second, MaxBackoff: time.Second, MaxPeerRows: 1 << 20}, slog.New(slog.DiscardHandler))
			p := NewPrivate(tr, PrivateConfig{PeerLifetime: time.Hour, DeletionMemory: time.Hour}, f)
			p.Replace(&snap)
		}
		ctx := context.Background()
		var resp bittorrent.AnnounceResponse
		var req bittorrent.AnnounceRequest
		for i := range torrents * peers {
			t, u := i/peers, i%peers
			req.Reset()
			req.InfoHash = snap.Torrents[t].InfoHash
			copy(req.PeerID[:], fmt.Sprintf("-BE0001-%012d", i))
			req.IPv4 = netip.AddrFrom4([4]byte{byte(10 + u>>8), byte(u), byte(t >> 8), byte(t)})
			req.Port, req.NumWant, req.Compact = 6881, 50, true
			req.Uploaded, req.Downloaded = uint64(i)*1000, uint64(i)*10
			req.Passkey = snap.Users[u].Passkey
			// Each HTTP client's agent arrives as its own string.
			req.UserAgent = fmt.Sprintf("Transmission/%d.%02d", 4, i%3)
			req.Event = bittorrent.Started
			if u%10 >= 3 {
				req.Left = 1000
			}
			resp.Reset()
			if err := tr.Announce(ctx, &req, &resp); err != nil {
				b.Fatal(err)
			}
		}

		b.StopTimer()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(torrents*peers), "heap-B/peer")
		runtime.KeepAlive(tr)
		store.Close()
		b.StartTimer()
	}
}

// BenchmarkPeerMemoryOpen and BenchmarkPeerMemoryPrivate report the heap a
// stored peer takes in each mode, 200,000 peers in 10,000 torrents of 20 as
// the load tool's model.
func BenchmarkPeerMemoryOpen(b *testing.B)    { benchmarkPeerMemory(b, false, 10000, 20) }
func BenchmarkPeerMemoryPrivate(b *testing.B) { benchmarkPeerMemory(b, true, 10000, 20) }

// BenchmarkPeerMemoryPrivateBig reports it for the popular torrents of a
// private tracker: 200 swarms of 1,000 sessions, each indexed by key.
func BenchmarkPeerMemoryPrivateBig(b *testing.B) { benchmarkPeerMemory(b, true, 200, 1000) }
