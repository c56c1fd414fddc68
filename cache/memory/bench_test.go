package memory

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// populate fills a store with swarms × perSwarm peers, one in five a seeder,
// and returns one announce per peer in random order, so that consecutive
// benchmark iterations touch unrelated swarms as real traffic does.
func populate(b *testing.B, swarms, perSwarm int) (*store, []cache.Announce) {
	b.Helper()
	s, err := driver{}.Open(nil, cache.Options{PeerLifetime: 45 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	st := s.(*store)

	announces := make([]cache.Announce, 0, swarms*perSwarm)
	var r cache.Result
	for i := range swarms {
		h := hash(i)
		for n := range perSwarm {
			a := cache.Announce{
				InfoHash: h,
				PeerID:   peerID(n),
				IPv4:     netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}),
				Port:     6881,
				Seeder:   n%5 == 0,
				NumWant:  50,
			}
			r.Peers4, r.Peers6 = r.Peers4[:0], r.Peers6[:0]
			if err := st.Announce(context.Background(), &a, &r); err != nil {
				b.Fatal(err)
			}
			announces = append(announces, a)
		}
	}
	rand.Shuffle(len(announces), func(i, j int) { announces[i], announces[j] = announces[j], announces[i] })
	return st, announces
}

func newResult() cache.Result {
	return cache.Result{Peers4: make([]bittorrent.Peer, 0, 50), Peers6: make([]bittorrent.Peer, 0, 50)}
}

// BenchmarkAnnounce measures the common case: a peer already in the swarm
// re-announcing and asking for 50 peers.
func BenchmarkAnnounce(b *testing.B) {
	st, announces := populate(b, 1000, 50)
	r := newResult()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Peers4, r.Peers6 = r.Peers4[:0], r.Peers6[:0]
		if err := st.Announce(ctx, &announces[i], &r); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(announces) {
			i = 0
		}
	}
}

// BenchmarkAnnounceParallel is BenchmarkAnnounce from every core at once,
// which shows the cost of the shard locks.
func BenchmarkAnnounceParallel(b *testing.B) {
	st, announces := populate(b, 1000, 50)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := newResult()
		// Announce only reads its request, so the goroutines share them;
		// random starting points keep them on different swarms.
		i := rand.IntN(len(announces))
		for pb.Next() {
			r.Peers4, r.Peers6 = r.Peers4[:0], r.Peers6[:0]
			if err := st.Announce(ctx, &announces[i], &r); err != nil {
				b.Error(err)
				return
			}
			if i++; i == len(announces) {
				i = 0
			}
		}
	})
}

// BenchmarkScrape measures a scrape of ten known swarms.
func BenchmarkScrape(b *testing.B) {
	const perScrape = 10
	st, announces := populate(b, 1000, 50)
	hashes := make([]bittorrent.InfoHash, 0, len(announces))
	for _, a := range announces {
		hashes = append(hashes, a.InfoHash)
	}
	dst := make([]bittorrent.Scrape, 0, perScrape)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i+perScrape > len(hashes) {
			i = 0
		}
		var err error
		if dst, err = st.Scrape(ctx, hashes[i:i+perScrape], dst[:0]); err != nil {
			b.Fatal(err)
		}
		i += perScrape
	}
}

// BenchmarkMemoryPerPeer reports the heap a peer costs, everything
// included (records, index maps, swarms, slice slack), with 10,000 swarms
// of 100 IPv4 peers. Each iteration builds a whole store; -benchtime=1x
// measures it once.
func BenchmarkMemoryPerPeer(b *testing.B) {
	const swarms, perSwarm = 10_000, 100
	var perPeer float64
	for b.Loop() {
		before := heapAlloc()
		s, err := driver{}.Open(nil, cache.Options{PeerLifetime: 45 * time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		var r cache.Result
		for i := range swarms {
			h := hash(i)
			for n := range perSwarm {
				a := cache.Announce{
					InfoHash: h,
					PeerID:   peerID(n),
					IPv4:     netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}),
					Port:     6881,
				}
				if err := s.Announce(context.Background(), &a, &r); err != nil {
					b.Fatal(err)
				}
			}
		}
		perPeer = float64(heapAlloc()-before) / (swarms * perSwarm)
		runtime.KeepAlive(s)
		s.Close()
	}
	b.ReportMetric(perPeer, "B/peer")
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
